from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from pipeline.errors import ConfigError
from pipeline.rolloutspec import AnalysisStep, Pause, SetWeight
from pipeline.secrets import SecretSource
from pipeline.settings import (
    DEFAULT_ENVIRONMENTS,
    ListenAddress,
    load_settings,
    parse_settings,
    resolve_secrets,
)
from pipeline.units import Percent

pytestmark = pytest.mark.unit

MINIMAL = "cluster: {hosts: 3}\n"


def problems_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_settings(text, "berth.yml")
    return [str(p) for p in caught.value.problems]


def test_minimal_config_gets_the_default_chain() -> None:
    settings = parse_settings(MINIMAL)
    assert tuple(e.name for e in settings.environments) == DEFAULT_ENVIRONMENTS
    assert [e.gate for e in settings.environments] == [
        "none",
        "functional",
        "perf",
        "approval",
        "none",
    ]
    assert settings.listen == (ListenAddress("127.0.0.1", 8420),)
    assert settings.registry.embedded is True
    assert settings.cluster is not None
    assert settings.cluster.hosts == 3
    assert settings.store_url == f"sqlite:///{settings.data_dir / 'berth.db'}"
    prod = settings.environment("prod")
    assert isinstance(prod.rollout.steps[1], AnalysisStep)
    assert prod.rollout.max_surge == Percent(25)


def test_a_full_config_parses_into_typed_objects(tmp_path: Path) -> None:
    settings = parse_settings(
        """
data_dir: state
listen: "[::1]:9000"
store: sqlite:///db/berth.db
hosts:
  - {name: a, address: "10.0.0.1:8421", token: {file: tokens/a}, labels: {zone: x, rack: 1}}
  - {name: b, address: unix:/run/agent.sock}
environments:
  - name: dev
    host_selector: {zone: x}
    variables: {PORT: 8080, MODE: fast}
    secrets: {DB: {env: DEV_DB}}
  - name: prod
    gate: approval
    approval: {required: 2, approvers: [alice, bob]}
    rollout:
      steps:
        - set_weight: 10
        - pause: 90s
        - pause: {duration: 1m}
        - analysis: {window: 1m, checks: {max_error_rate: 2%, max_p99_latency: 250ms}}
        - pause: {}
        - set_weight: 100
      max_surge: 2
      max_unavailable: 50%
apps:
  - {name: web, repo: "git@git.example.com:team/web.git", poll_interval: 30s}
  - {name: demo, path: ../repo, webhook: {provider: gitea, secret: {env: HOOK}}}
api_tokens:
  - {name: ci, token: {env: CI_TOKEN}, scopes: [read, deploy]}
""",
        base_dir=tmp_path / "config",
    )
    assert settings.data_dir == tmp_path / "config" / "state"
    assert settings.store_url == f"sqlite:///{tmp_path / 'config' / 'db' / 'berth.db'}"
    assert str(settings.listen[0]) == "[::1]:9000"
    assert settings.hosts is not None
    assert settings.hosts[0].labels == {"zone": "x", "rack": "1"}
    assert settings.hosts[0].token == SecretSource(file=tmp_path / "config" / "tokens" / "a")
    assert settings.hosts[1].is_unix
    assert settings.environment("dev").variables == {"PORT": "8080", "MODE": "fast"}
    steps = settings.environment("prod").rollout.steps
    assert steps[0] == SetWeight(set_weight=10)
    assert isinstance(steps[1], Pause)
    assert steps[1].pause == timedelta(seconds=90)
    assert isinstance(steps[2], Pause)
    assert steps[2].pause == timedelta(minutes=1)
    assert isinstance(steps[4], Pause)
    assert steps[4].indefinite
    assert settings.environment("prod").rollout.max_unavailable == Percent(50)
    assert settings.app("web").poll_interval == timedelta(seconds=30)
    assert settings.app("demo").path == tmp_path / "repo"
    assert settings.api_tokens[0].scopes == ("read", "deploy")


def test_settings_are_frozen() -> None:
    settings = parse_settings(MINIMAL)
    with pytest.raises(ValueError, match="frozen"):
        settings.data_dir = Path("elsewhere")  # type: ignore[misc]


# Each bad input, and exactly what berth says about it.
BAD_INPUTS = [
    pytest.param(
        "",
        ["berth.yml: the file is empty; expected a YAML mapping of keys to values"],
        id="empty file",
    ),
    pytest.param(
        "cluster: {hosts: 3\n",
        ["berth.yml:2:1: not valid YAML: did not find expected ',' or '}'"],
        id="not YAML",
    ),
    pytest.param(
        "- cluster\n- apps\n",
        ["berth.yml:1:1: the top level must be a mapping of keys to values (got a list)"],
        id="list at the top",
    ),
    pytest.param(
        MINIMAL + "environments: [{name: dev}, {name: prod}, {name: dev}]\n",
        [
            'berth.yml: environments/2/name: duplicate environment name "dev" '
            "(also environments/0); names must be unique"
        ],
        id="duplicate environment names",
    ),
    pytest.param(
        "hosts:\n"
        "  - {name: a, address: unix:/run/a.sock, labels: {zone: a}}\n"
        "environments:\n"
        "  - {name: prod, host_selector: {zone: c}}\n",
        [
            "berth.yml: environments/prod/host_selector/zone: no host has label zone=c "
            "(labels in use: zone=a)"
        ],
        id="unknown host label",
    ),
    pytest.param(
        "hosts:\n"
        "  - {name: a, address: unix:/a, labels: {zone: a}}\n"
        "  - {name: b, address: unix:/b, labels: {tier: db}}\n"
        "environments:\n"
        "  - {name: prod, host_selector: {zone: a, tier: db}}\n",
        ["berth.yml: environments/prod/host_selector: no host has all of zone=a, tier=db"],
        id="no host has every label",
    ),
    pytest.param(
        MINIMAL + "apps:\n  - name: demo\n    branch: main\n",
        ["berth.yml: apps/demo: needs repo: (a git URL) or path: (a local repository)"],
        id="app with neither repo nor path",
    ),
    pytest.param(
        MINIMAL + "apps: [{name: demo, repo: 'https://x/y.git', path: here}]\n",
        ["berth.yml: apps/demo: has both repo: and path:; keep one"],
        id="app with both repo and path",
    ),
    pytest.param(
        MINIMAL + "environments:\n  - name: dev\n    replicas: -1\n",
        ["berth.yml: environments/dev/replicas: must be at least 1 (got -1)"],
        id="negative replicas",
    ),
    pytest.param(
        MINIMAL + "environments:\n  - {name: dev, replicas: '2'}\n",
        ['berth.yml: environments/dev/replicas: must be a whole number (got "2")'],
        id="replicas as a string",
    ),
    pytest.param(
        MINIMAL + "environments:\n  - {name: dev, rollout: {steps: [{set_weight: 150}]}}\n",
        ["berth.yml: environments/dev/rollout/steps/0/set_weight: must be at most 100 (got 150)"],
        id="weight above 100",
    ),
    pytest.param(
        MINIMAL
        + "environments:\n"
        + "  - name: dev\n"
        + "    rollout:\n"
        + "      steps: [{set_weight: 50}, {pause: 1m}, {set_weight: 20}, {set_weight: 20}]\n",
        [
            "berth.yml: environments/dev/rollout/steps/2/set_weight: must be more than the "
            "previous weight 50 (got 20); weights must increase step by step",
            "berth.yml: environments/dev/rollout/steps/3/set_weight: must be more than the "
            "previous weight 20 (got 20); weights must increase step by step",
        ],
        id="weights not increasing",
    ),
    pytest.param(
        MINIMAL + "environments:\n  - {name: dev, rollout: {steps: [{pause: 0s}]}}\n",
        ["berth.yml: environments/dev/rollout/steps/0/pause: must be positive (got 0s)"],
        id="pause not positive",
    ),
    pytest.param(
        MINIMAL
        + "environments:\n  - {name: dev, rollout: {steps: [{set_weight: 5, pause: 1m}]}}\n",
        [
            "berth.yml: environments/dev/rollout/steps/0: a rollout step is a mapping with "
            "exactly one key: set_weight: N, pause: DURATION (or {}), or analysis: {...}"
        ],
        id="step with two keys",
    ),
    pytest.param(
        MINIMAL + "environments:\n  - name: dev\n    replics: 2\nregistri: {}\n",
        [
            'berth.yml: environments/dev/replics: unknown key (did you mean "replicas"?)',
            'berth.yml: registri: unknown key (did you mean "registry"?)',
        ],
        id="unknown keys",
    ),
    pytest.param(
        MINIMAL + "frobnicate: blue\n",
        [
            "berth.yml: frobnicate: unknown key (expected one of: api_tokens, apps, chatops, "
            "cluster, data_dir, environments, hosts, listen, registry, store)"
        ],
        id="unknown key without a near miss",
    ),
    pytest.param(
        MINIMAL + "apps: [{name: demo, path: x, poll_interval: 5 minutes}]\n",
        [
            "berth.yml: apps/demo/poll_interval: must be a duration like 90s, 5m or 1h30m "
            '(got "5 minutes")'
        ],
        id="bad duration",
    ),
    pytest.param(
        MINIMAL + "apps: [{name: demo, path: x, poll_interval: 60}]\n",
        [
            "berth.yml: apps/demo/poll_interval: must be a duration like 90s, 5m or 1h30m "
            "(got 60); add a unit, e.g. 60s"
        ],
        id="duration without unit",
    ),
    pytest.param(
        MINIMAL + "environments:\n  - name: dev\n    gate: manual\n",
        [
            'berth.yml: environments/dev/gate: must be one of "none", "functional", "perf" '
            'or "approval" (got "manual")'
        ],
        id="unknown gate",
    ),
    pytest.param(
        MINIMAL
        + "environments:\n"
        + "  - {name: prod, gate: approval, approval: {required: 3, approvers: [a, b]}}\n",
        [
            "berth.yml: environments/prod/approval/required: asks for 3 approvals but only 2 "
            "approvers are allowed; add approvers or lower it"
        ],
        id="more approvals than approvers",
    ),
    pytest.param(
        MINIMAL + "api_tokens: [{name: ci, token: {env: T}, scopes: [read, write]}]\n",
        [
            'berth.yml: api_tokens/ci/scopes/1: must be one of "read", "deploy" or "admin" (got "write")'
        ],
        id="unknown token scope",
    ),
    pytest.param(
        "hosts: [{name: a, address: '10.0.0.1:99'}]\ncluster: {hosts: 2}\n",
        [
            "berth.yml: hosts/a: an agent on a TCP address needs token: (a secret source)",
        ],
        id="tcp host without token",
    ),
    pytest.param(
        "hosts: [{name: a, address: unix:/a}]\ncluster: {hosts: 2}\n",
        ["berth.yml: cluster: set either hosts: (agents) or cluster: (simulated hosts), not both"],
        id="hosts and cluster",
    ),
    pytest.param(
        "listen: 127.0.0.1:8420\n",
        [
            "berth.yml: hosts: is required: list the agents' hosts, or set cluster: {hosts: N} "
            "for simulated hosts on this machine"
        ],
        id="neither hosts nor cluster",
    ),
    pytest.param(
        MINIMAL + "listen: localhost\n",
        [
            'berth.yml: listen: must be HOST:PORT or [IPV6]:PORT, like 127.0.0.1:8420 (got "localhost")'
        ],
        id="bad listen address",
    ),
    pytest.param(
        MINIMAL + "store: postgresql://berth:hunter2@db/berth\n",
        [
            "berth.yml: store: must not contain a password; give it to berth in PGPASSWORD or ~/.pgpass"
        ],
        id="password in store URL",
    ),
    pytest.param(
        MINIMAL + "environments:\n  - {name: dev, secrets: {DB: {env: A, file: b}}}\n",
        [
            "berth.yml: environments/dev/secrets/DB: give exactly one of env: (an environment "
            "variable) or file: (a path) as the secret's source"
        ],
        id="secret with two sources",
    ),
    pytest.param(
        MINIMAL + "environments:\n  - {name: dev, variables: {DEBUG: yes}}\n",
        [
            "berth.yml: environments/dev/variables/DEBUG: must be a string (got true); quote it, "
            "YAML reads yes/no/on/off as booleans and 1.10 as 1.1"
        ],
        id="boolean variable",
    ),
    pytest.param(
        MINIMAL + "environments:\n  - {name: dev, rollout: {max_surge: 0, max_unavailable: 0%}}\n",
        [
            "berth.yml: environments/dev/rollout: max_surge and max_unavailable are both 0, so "
            "no instance could ever be replaced; raise one of them"
        ],
        id="rollout that cannot progress",
    ),
    pytest.param(
        MINIMAL + "environments: [{name: dev, variables: {1: x}}]\n",
        [
            "berth.yml: environments/dev/variables/1: not a valid key: must be a string (got 1); quote it"
        ],
        id="number as a variable name",
    ),
    pytest.param(
        MINIMAL
        + "environments:\n"
        + "  - name: dev\n"
        + "    rollout:\n"
        + "      steps: [{analysis: {window: 1m, interval: 2m, checks: {max_error_rate: 1%}}}]\n",
        [
            "berth.yml: environments/dev/rollout/steps/0/analysis: interval (2m) must not be "
            "longer than window (1m)"
        ],
        id="analysis interval beyond its window",
    ),
    pytest.param(
        MINIMAL + "environments: {dev: {}}\n",
        ["berth.yml: environments: must be a list (got a mapping)"],
        id="environments as a mapping",
    ),
    pytest.param(
        MINIMAL + "environments: []\n",
        ["berth.yml: environments: must have at least one item"],
        id="no environments",
    ),
    pytest.param(
        "cluster: {hosts: 1}\ncluster: {hosts: 2}\n",
        ["berth.yml: cluster: duplicate key (on lines 1 and 2); keep one"],
        id="duplicate YAML key",
    ),
    pytest.param(
        "cluster: {hosts: 1}\nx: " + "[" * 2000 + "]" * 2000 + "\n",
        ["berth.yml:2:1003: not valid YAML: exceeded maximum nesting depth"],
        id="nesting bomb",
    ),
]


@pytest.mark.parametrize(("text", "expected"), BAD_INPUTS)
def test_bad_inputs_are_reported_exactly(text: str, expected: list[str]) -> None:
    assert problems_of(text) == expected


def test_every_problem_is_reported_at_once_in_document_order() -> None:
    problems = problems_of(
        MINIMAL
        + "listen: nowhere\n"
        + "environments:\n"
        + "  - name: dev\n"
        + "    replicas: 0\n"
        + "    rollout: {steps: [{set_weight: 101}]}\n"
        + "apps: [{name: Demo, path: x}]\n"
    )
    assert problems == [
        'berth.yml: listen: must be HOST:PORT or [IPV6]:PORT, like 127.0.0.1:8420 (got "nowhere")',
        "berth.yml: environments/dev/replicas: must be at least 1 (got 0)",
        "berth.yml: environments/dev/rollout/steps/0/set_weight: must be at most 100 (got 101)",
        "berth.yml: apps/Demo/name: must be lower-case letters, digits and dashes, starting "
        'with a letter (got "Demo")',
    ]


def test_problems_carry_their_position() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_settings(MINIMAL + "environments:\n  - name: dev\n    replicas: -4\n    replics: 1\n")
    replicas, unknown = caught.value.problems
    assert (replicas.line, replicas.column) == (4, 15)
    assert (unknown.line, unknown.column) == (5, 5)
    assert unknown.path == "environments/dev/replics"


def test_billion_laughs_in_a_service_config() -> None:
    lines = [MINIMAL.strip(), 'x: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    previous = "a"
    for name in "bcdefghi":
        lines.append(f"x{name}: &{name} [" + ",".join([f"*{previous}"] * 9) + "]")
        previous = name
    (problem,) = problems_of("\n".join(lines))
    assert problem.startswith("berth.yml:2:8: the document expands to more than 100000 values")


def test_load_settings_resolves_against_the_file(tmp_path: Path) -> None:
    config_dir = tmp_path / "etc"
    config_dir.mkdir()
    (config_dir / "berth.yml").write_text(MINIMAL + "data_dir: ../state\n")
    settings = load_settings(config_dir / "berth.yml")
    assert settings.data_dir == tmp_path / "state"
    assert settings.source == str(config_dir / "berth.yml")


def test_load_settings_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_settings(tmp_path / "absent.yml")


# --- secrets -----------------------------------------------------------------------

SECRETS = """
cluster: {hosts: 1}
registry:
  url: https://registry.example.com
  username: {env: REG_USER}
  password: {file: secrets/registry}
environments:
  - name: dev
    secrets:
      DATABASE_URL: {env: DEV_DATABASE_URL}
      API_KEY: {file: secrets/api-key}
  - name: prod
    secrets:
      DATABASE_URL: {env: PROD_DATABASE_URL}
chatops:
  slack: {signing_secret: {env: SLACK_SECRET}}
api_tokens:
  - {name: ci, token: {env: REG_USER}, scopes: [read]}
"""


def test_resolve_secrets_reads_env_and_files(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "registry").write_text("registry-pass\n")
    (tmp_path / "secrets" / "api-key").write_text("key-123")
    settings = parse_settings(SECRETS, base_dir=tmp_path)
    environ = {
        "REG_USER": "robot",
        "DEV_DATABASE_URL": "postgresql://dev",
        "PROD_DATABASE_URL": "postgresql://prod-secret-value",
        "SLACK_SECRET": "slack-signing",
    }
    secrets = resolve_secrets(settings, environ)
    assert len(secrets) == 6  # REG_USER is named twice and read once
    assert settings.registry.password is not None
    assert secrets[settings.registry.password].reveal() == "registry-pass"
    prod_db = secrets[settings.environment("prod").secrets["DATABASE_URL"]]
    assert prod_db.reveal() == "postgresql://prod-secret-value"
    assert prod_db.matches("postgresql://prod-secret-value")
    assert not prod_db.matches("postgresql://prod")
    assert "prod-secret-value" not in repr(prod_db)
    assert "prod-secret-value" not in str(prod_db)
    assert repr(prod_db) == "Secret(from environment variable PROD_DATABASE_URL)"
    assert "prod-secret-value" not in repr(secrets)
    assert "prod-secret-value" not in repr(settings)
    assert sorted(secrets.revealed_values()) == sorted(
        [
            "robot",
            "registry-pass",
            "key-123",
            "postgresql://dev",
            "postgresql://prod-secret-value",
            "slack-signing",
        ]
    )


def test_unresolvable_secrets_are_all_reported(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "api-key").write_text("\n")
    settings = parse_settings(SECRETS, "etc/berth.yml", base_dir=tmp_path)
    with pytest.raises(ConfigError) as caught:
        resolve_secrets(
            settings, {"REG_USER": "robot", "SLACK_SECRET": "", "DEV_DATABASE_URL": "x"}
        )
    registry_file = tmp_path / "secrets" / "registry"
    api_key_file = tmp_path / "secrets" / "api-key"
    assert [str(p) for p in caught.value.problems] == [
        f"etc/berth.yml: registry/password: file {registry_file} does not exist; create it "
        "(readable only by berth) or fix the path",
        f"etc/berth.yml: environments/dev/secrets/API_KEY: file {api_key_file} is empty; "
        "write the secret's value into it",
        "etc/berth.yml: environments/prod/secrets/DATABASE_URL: environment variable "
        "PROD_DATABASE_URL is not set; set it for berth serve (or read the secret from a "
        "file: instead)",
        "etc/berth.yml: chatops/slack/signing_secret: environment variable SLACK_SECRET is "
        "empty; give it the secret's value",
    ]


def test_secret_file_that_cannot_be_read(tmp_path: Path) -> None:
    (tmp_path / "token").mkdir()
    settings = parse_settings(
        "cluster: {hosts: 1}\napi_tokens: [{name: ci, token: {file: token}, scopes: [read]}]\n",
        base_dir=tmp_path,
    )
    with pytest.raises(ConfigError) as caught:
        resolve_secrets(settings, {})
    assert str(caught.value) == (
        f"berth.yml: api_tokens/ci/token: cannot read file {tmp_path / 'token'}: Is a directory"
    )
