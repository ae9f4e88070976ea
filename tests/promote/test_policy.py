"""The promotion policy, decided from facts alone (no store, no I/O)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pipeline.promote.policy import (
    Actor,
    AppFacts,
    EnvFacts,
    GateRecord,
    LockFacts,
    Refusal,
    approval_state,
    auto_promotions,
    candidate,
    decide_approval,
    decide_promotion,
)

pytestmark = pytest.mark.unit

ALICE = Actor("alice", frozenset({"deploy"}))
MALLORY = Actor("mallory", frozenset({"deploy"}))
READER = Actor("viewer", frozenset({"read"}))
ROOT = Actor("root", frozenset({"admin"}))
APPROVERS = ("alice", "bob", "carol")


def chain(**changes: EnvFacts) -> AppFacts:
    envs = {
        "dev": EnvFacts("dev", stable_release=12, entered=frozenset({11, 12}),
                        gates={11: GateRecord("passed", "no gate"), 12: GateRecord("passed", "no gate")}),
        "functional-test": EnvFacts("functional-test", gate="functional"),
        "perf-test": EnvFacts("perf-test", gate="perf"),
        "pre-prod": EnvFacts("pre-prod", gate="approval", approvers=APPROVERS),
        "prod": EnvFacts("prod", gate="approval", approvals_required=2, approvers=APPROVERS),
    }  # fmt: skip
    envs.update(changes)
    return AppFacts("demo", tuple(envs.values()))


def failed_functional() -> EnvFacts:
    return EnvFacts(
        "functional-test",
        gate="functional",
        stable_release=12,
        entered=frozenset({12}),
        gates={12: GateRecord("failed", "exit 3")},
    )


def test_the_newest_release_that_passed_is_promoted_by_default() -> None:
    decision = decide_promotion(chain(), "functional-test", ALICE)
    assert decision.allowed
    assert (decision.release, decision.from_env, decision.forced) == (12, "dev", False)


def test_a_release_that_failed_its_gate_is_refused_with_the_reason() -> None:
    decision = decide_promotion(
        chain(**{"functional-test": failed_functional()}), "perf-test", ALICE
    )
    assert not decision.allowed
    assert decision.refusal is Refusal.NOT_PASSED
    assert decision.message == (
        "cannot promote demo to perf-test: release 12 has not passed functional-test "
        "(gate failed: exit 3)"
    )


def test_an_environment_that_is_not_next_is_refused() -> None:
    decision = decide_promotion(chain(), "pre-prod", ALICE, release=12)
    assert not decision.allowed
    assert decision.message == (
        "cannot promote demo to pre-prod: pre-prod is not next for release 12 "
        "(it got as far as dev); it must pass perf-test first"
    )


def test_the_first_environment_and_unknown_ones_are_refused() -> None:
    first = decide_promotion(chain(), "dev", ALICE)
    unknown = decide_promotion(chain(), "staging", ALICE)
    assert (first.allowed, first.refusal) == (False, Refusal.INVALID)
    assert unknown.refusal is Refusal.UNKNOWN
    assert "the chain is dev → functional-test → perf-test → pre-prod → prod" in unknown.message


def test_an_older_release_is_superseded_by_a_newer_one_that_passed() -> None:
    decision = decide_promotion(chain(), "functional-test", ALICE, release=11)
    assert not decision.allowed
    assert "release 11 was superseded by release 12" in decision.message


def test_a_lock_blocks_even_a_forced_promotion() -> None:
    locked = EnvFacts("functional-test", gate="functional", lock=LockFacts("bob", "db migration"))
    for actor, force in ((ALICE, False), (ROOT, True)):
        decision = decide_promotion(
            chain(**{"functional-test": locked}), "functional-test", actor, force=force
        )
        assert decision.refusal is Refusal.LOCKED
        assert "locked by bob (db migration)" in decision.message


def test_force_needs_admin_and_records_what_it_overrode() -> None:
    facts = chain(**{"functional-test": failed_functional()})
    denied = decide_promotion(facts, "perf-test", ALICE, force=True)
    assert (denied.allowed, denied.refusal) == (False, Refusal.FORBIDDEN)
    forced = decide_promotion(facts, "perf-test", ROOT, release=12, force=True)
    assert forced.allowed
    assert forced.forced
    assert forced.overridden == ("release 12 has not passed functional-test (gate failed: exit 3)",)


def test_only_an_environments_approvers_may_promote_there() -> None:
    ready = EnvFacts(
        "pre-prod",
        gate="approval",
        approvers=APPROVERS,
        stable_release=12,
        entered=frozenset({12}),
        approvals={12: ("alice",)},
    )
    facts = chain(**{"pre-prod": ready})
    refused = decide_promotion(facts, "prod", MALLORY)
    assert refused.refusal is Refusal.FORBIDDEN
    assert "mallory may not promote into prod (allowed: alice, bob, carol)" in refused.message
    assert decide_promotion(facts, "prod", ALICE).allowed
    assert decide_promotion(facts, "functional-test", READER).refusal is Refusal.FORBIDDEN


def test_two_of_three_approvals_counting_only_allowed_distinct_people() -> None:
    prod = EnvFacts(
        "prod",
        gate="approval",
        approvals_required=2,
        approvers=APPROVERS,
        stable_release=12,
        entered=frozenset({12}),
        approvals={12: ("alice", "mallory")},
    )
    state = approval_state(prod, 12)
    assert (state.given, state.satisfied, state.missing) == (("alice",), False, 1)
    assert candidate(prod) is None
    both = replace(prod, approvals={12: ("alice", "bob", "alice")})
    assert approval_state(both, 12).satisfied
    assert candidate(both) == 12


def test_approval_rules() -> None:
    pre = EnvFacts("pre-prod", gate="approval", approvers=APPROVERS, stable_release=12)
    facts = chain(**{"pre-prod": pre})
    ok = decide_approval(facts, "pre-prod", ALICE)
    assert ok.allowed
    assert ok.release == 12
    assert decide_approval(facts, "pre-prod", MALLORY).refusal is Refusal.FORBIDDEN
    assert decide_approval(facts, "perf-test", ALICE).refusal is Refusal.INVALID
    other = decide_approval(facts, "pre-prod", ALICE, release=11)
    assert other.refusal is Refusal.CONFLICT
    assert "approvals belong to the release running in pre-prod (release 12)" in other.message


def test_auto_promotion_moves_the_newest_passed_release_and_says_why_it_holds() -> None:
    plans = auto_promotions(chain())
    assert [(p.to_env, p.release, p.held) for p in plans] == [("functional-test", 12, "")]
    locked = EnvFacts("functional-test", gate="functional", lock=LockFacts("bob", "x"))
    held = auto_promotions(chain(**{"functional-test": locked}))
    assert held[0].held == "functional-test is locked by bob"
    pinned = EnvFacts("functional-test", gate="functional", pinned=True)
    assert "pinned" in auto_promotions(chain(**{"functional-test": pinned}))[0].held
    manual = replace(chain().environments[0], auto_promote=False)
    assert auto_promotions(chain(dev=manual)) == []
