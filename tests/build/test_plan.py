"""plan_build: stages, targets, ARGs, and every refusal naming its line."""

from __future__ import annotations

import pytest

from pipeline.build.errors import DockerfileError
from pipeline.build.imagestate import apply_meta, config_document, initial_state
from pipeline.build.plan import plan_build

pytestmark = pytest.mark.unit

MULTI = """\
ARG BASE=busybox
FROM $BASE AS deps
RUN echo deps > /deps
FROM busybox AS unused
RUN echo never
FROM scratch AS final
COPY --from=deps /deps /deps
CMD ["/deps"]
"""


def test_multi_stage_keeps_only_the_stages_the_target_needs() -> None:
    plan = plan_build(MULTI)
    assert [s.name for s in plan.stages] == ["deps", "final"]
    assert plan.stages[0].base == "busybox"
    assert plan.target == 2


def test_target_picks_a_stage_and_build_args_reach_from() -> None:
    plan = plan_build(MULTI, {"BASE": "example.com/base:1"}, target="deps")
    assert [s.name for s in plan.stages] == ["deps"]
    assert plan.stages[0].base == "example.com/base:1"


def test_undefined_target_lists_the_stages() -> None:
    with pytest.raises(
        DockerfileError, match=r"target stage 'nope' is not defined; stages: deps, final, unused"
    ):
        plan_build(MULTI, target="nope")


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("FROM a\nRUN x\nBOGUS y\n", 3, "unknown instruction BOGUS"),
        ("FROM a\nONBUILD RUN x\n", 2, "ONBUILD is not supported"),
        ("FROM a\nRUN --mount=type=cache,target=/c x\n", 2, "RUN --mount is not supported"),
        ("FROM a\nADD https://example.com/f /f\n", 2, "fetching URLs is not supported"),
        ("FROM a\nCOPY ../outside /x\n", 2, "refers outside the build context"),
        ("FROM a\n\nRUN <<EOF\necho\n", 3, "syntax error"),
        ("RUN x\nFROM a\n", 1, "RUN before the first FROM"),
        ("FROM a\nSHELL /bin/sh -c\n", 2, "SHELL needs the JSON form"),
        ("FROM a\nCOPY --bogus=1 a b\n", 2, "COPY has no flag --bogus"),
    ],
)
def test_bad_dockerfiles_name_their_line(text: str, line: int, message: str) -> None:
    with pytest.raises(DockerfileError, match=message) as caught:
        plan_build(text)
    assert caught.value.line == line
    assert str(caught.value).startswith(f"Dockerfile:{line}: ")


def test_absent_source_is_refused_before_anything_runs() -> None:
    with pytest.raises(DockerfileError, match=r"Dockerfile:3: COPY missing.txt: not found"):
        plan_build("FROM a\nCOPY here.txt /\nCOPY missing.txt /\n", context_index={"here.txt"})


def test_metadata_steps_change_the_config_and_expand_variables() -> None:
    plan = plan_build(
        'FROM scratch\nENV APP=/srv NAME="my app"\nWORKDIR $APP/data\nUSER 1000:1000\n'
        'EXPOSE 8080\nLABEL title="$NAME"\nENTRYPOINT ["/bin/app"]\nCMD serve\n'
        "HEALTHCHECK --interval=5s --retries=2 CMD true\nSTOPSIGNAL SIGINT\n"
    )
    state = initial_state(None)
    for step in plan.stages[0].steps:
        state = apply_meta(state, step, plan.source, plan.escape)
    assert state.env_map["NAME"] == "my app"
    assert state.workdir == "/srv/data"
    assert state.user == "1000:1000"
    assert state.exposed == ("8080/tcp",)
    assert dict(state.labels) == {"title": "my app"}
    assert state.entrypoint == ("/bin/app",)
    assert state.cmd == ("/bin/sh", "-c", "serve")
    assert state.healthcheck == {
        "Test": ["CMD-SHELL", "true"],
        "Interval": 5_000_000_000,
        "Retries": 2,
    }
    document = config_document(state, "1970-01-01T00:00:00Z")
    assert b'"WorkingDir":"/srv/data"' in document
    assert b'"StopSignal":"SIGINT"' in document
