"""Authorization checks: allowed_paths, the Envoy checks, custom checks and load-time errors."""

import logging

import pytest

from omnibot.app import create_app
from omnibot.authnz import envoy_checks
from omnibot.backends import open_cache, open_queue
from omnibot.config import load_config_text
from omnibot.errors import ConfigError
from omnibot.fake_slack import FakeSlack
from omnibot.runtime import Runtime
from omnibot.settings import Settings
from tests.support import credentials_env, signed

FORBIDDEN = "Forbidden: the request did not pass the authorization checks."

TEAMS = """
teams:
  "test-team": "T0TEST001"
bots:
  "test-team":
    "testbot": "A0TEST001"
"""

GET_TEAM = "/api/v1/slack/get_team/test-team"

# The permissions and bindings example of omnibot's envoy_permissions_check
# documentation, unchanged, with both Envoy checks enabled.
OMNIBOT_DOCS_EXAMPLE = """
authorization:
  checks:
    - module: "omnibot.authnz.envoy_checks:envoy_internal_check"
    - module: "omnibot.authnz.envoy_checks:envoy_permissions_check"
  permissions:
    slack_api:
      methods:
        - "POST"
      paths:
        - "/api/v1/slack/event"
        - "/api/v1/slack/slash_command"
        - "/api/v1/slack/interactive"
      # Do not require x-envoy-internal check for this set of paths
      # see (envoy_internal_check)
      internal_only: false
    echobot_slack_action:
      methods:
        - "POST"
      paths:
        - "/api/v2/slack/action/testteam/echobot"
  bindings:
    "envoy":
      - "slack_api"
    "echobot.*":
      - "echobot_slack_action"
teams:
  "testteam": "T0TEST001"
bots:
  "testteam":
    "echobot": "A0TEST001"
"""

ECHOBOT_ACTION = "/api/v2/slack/action/testteam/echobot"
ECHOBOT_POST = {"action": "chat.postMessage", "kwargs": {"channel": "C0TEST001", "text": "hello"}}


# -- checks that tests name in their configs ------------------------------------


def header_equals(name, value):
    """A custom check: allow requests whose header ``name`` is ``value``."""
    from flask import request

    return request.headers.get(name) == value


def raising_check():
    """A custom check with a bug."""
    raise KeyError("x-missing")


# -- fixtures ---------------------------------------------------------------------


@pytest.fixture
def fake_slack():
    fake = FakeSlack().start()
    yield fake
    fake.stop()


@pytest.fixture
def make_client(tmp_path, fake_slack):
    """Return a function that builds a test client of an app using the given config text."""
    runtimes = []

    def make(config_text):
        environ = credentials_env()
        data_dir = str(tmp_path / f"data{len(runtimes)}")
        settings = Settings(slack_api_url=fake_slack.api_url, data_dir=data_dir, environ=environ)
        config = load_config_text(config_text, environ=environ)
        runtime = Runtime(settings, config, open_queue(None, data_dir), open_cache(None, data_dir))
        runtimes.append(runtime)
        client = create_app(runtime).test_client()
        client.runtime = runtime
        return client

    yield make
    for runtime in runtimes:
        runtime.close()


def is_denied(response) -> bool:
    return response.status_code == 403 and (response.get_json() or {}).get("error") == FORBIDDEN


def checks_config(checks_yaml, extra=""):
    return f"authorization:\n  checks:\n{checks_yaml}{extra}{TEAMS}"


# -- no checks ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "method, path",
    [
        # An internal API lookup.
        ("GET", GET_TEAM),
        # An internal API action.
        ("POST", "/api/v2/slack/action/test-team/testbot"),
        # Slack's event route.
        ("POST", "/api/v1/slack/event"),
        # Slack's slash command route.
        ("POST", "/api/v1/slack/slash_command"),
        # Slack's interactive route.
        ("POST", "/api/v1/slack/interactive"),
        # A path no route serves.
        ("GET", "/api/v1/slack/nothing"),
    ],
)
def test_no_checks_denies_every_route(make_client, fake_slack, caplog, method, path):
    client = make_client(TEAMS)

    with caplog.at_level(logging.WARNING, logger="omnibot.app"):
        response = client.open(path, method=method, json={})

    assert is_denied(response)
    assert response.get_json() == {"status": "failure", "error": FORBIDDEN}
    assert any("no authorization checks are configured" in record.getMessage() for record in caplog.records)
    assert fake_slack.calls() == []


def test_no_checks_keeps_healthcheck_open(make_client):
    client = make_client(TEAMS)

    response = client.get("/healthcheck")

    assert response.status_code == 200


def test_empty_checks_list_denies(make_client):
    client = make_client("authorization:\n  checks: []\n" + TEAMS)

    assert is_denied(client.get(GET_TEAM))


# -- allowed_paths -------------------------------------------------------------------


@pytest.mark.parametrize(
    "paths, path, allowed",
    [
        # A regex with a wildcard.
        ('["^/api/v1/slack/get_team/.*"]', GET_TEAM, True),
        # omnibot's docs write paths without ^: they still match from the start.
        ('["/api/v1/slack/get_team/.*"]', GET_TEAM, True),
        # A regex is not searched inside the path.
        ('["get_team"]', GET_TEAM, False),
        # Not anchored at the end: a prefix allows longer paths.
        ('["/api/v1/slack/get_team/test"]', GET_TEAM, True),
        # Anchored at the end with $.
        ('["^/api/v1/slack/get_team/test$"]', GET_TEAM, False),
        # Any regex of the list may match.
        ('["^/nothing$", "^/api/v1/slack/get_team/"]', GET_TEAM, True),
        # No regex matches.
        ('["^/api/v2/"]', GET_TEAM, False),
        # An empty list allows nothing.
        ("[]", GET_TEAM, False),
        # A single string is one regex.
        ('"^/api/v1/slack/get_team/"', GET_TEAM, True),
    ],
)
def test_allowed_paths(make_client, paths, path, allowed):
    client = make_client(
        checks_config(f'    - module: "omnibot.authnz:allowed_paths"\n      kwargs:\n        paths: {paths}\n')
    )

    response = client.get(path)

    assert is_denied(response) is not allowed
    if allowed:
        assert response.status_code == 200


def test_allowed_paths_bad_regex_is_config_error():
    with pytest.raises(ConfigError) as raised:
        load_config_text(
            checks_config('    - module: "omnibot.authnz:allowed_paths"\n      kwargs:\n        paths: ["^/api/(v1"]\n'),
            "omnibot.yaml",
            credentials_env(),
        )

    assert "authorization.checks[0].kwargs.paths[0]: regex '^/api/(v1' does not compile" in str(raised.value)


@pytest.mark.parametrize(
    "paths",
    [
        # A number.
        "7",
        # A list holding a non-string.
        "[1, 2]",
        # A mapping.
        "{a: b}",
    ],
)
def test_allowed_paths_wrong_type_is_config_error(paths):
    with pytest.raises(ConfigError) as raised:
        load_config_text(
            checks_config(f'    - module: "omnibot.authnz:allowed_paths"\n      kwargs:\n        paths: {paths}\n'),
            "omnibot.yaml",
            credentials_env(),
        )

    assert "authorization.checks[0].kwargs.paths" in str(raised.value)


# -- envoy_internal_check --------------------------------------------------------------


INTERNAL_ONLY = '    - module: "omnibot.authnz.envoy_checks:envoy_internal_check"\n'


@pytest.mark.parametrize(
    "headers, allowed",
    [
        # Envoy marks internal requests with exactly "true".
        ({"x-envoy-internal": "true"}, True),
        # Header names are not case-sensitive.
        ({"X-Envoy-Internal": "true"}, True),
        # No header: an external request.
        ({}, False),
        # Any other value is external.
        ({"x-envoy-internal": "false"}, False),
        # The value is compared exactly.
        ({"x-envoy-internal": "True"}, False),
        # Even "1" is not "true".
        ({"x-envoy-internal": "1"}, False),
    ],
)
def test_envoy_internal_check_header(make_client, headers, allowed):
    client = make_client(checks_config(INTERNAL_ONLY))

    response = client.get(GET_TEAM, headers=headers)

    assert is_denied(response) is not allowed


def test_envoy_internal_check_custom_header(make_client):
    client = make_client(
        checks_config(
            '    - module: "omnibot.authnz.envoy_checks:envoy_internal_check"\n'
            '      kwargs:\n        header: "x-nginx-internal"\n'
        )
    )

    assert not is_denied(client.get(GET_TEAM, headers={"x-nginx-internal": "true"}))
    assert is_denied(client.get(GET_TEAM, headers={"x-envoy-internal": "true"}))


EXTERNAL_POLICY = """  permissions:
    public_lookups:
      methods: ["GET"]
      paths: ["^/api/v1/slack/get_team/"]
      internal_only: {internal_only}
"""


@pytest.mark.parametrize(
    "internal_only, method, allowed",
    [
        # internal_only: false opens the covered method and path to external callers.
        ("false", "GET", True),
        # The policy covers GET only, so POST stays internal.
        ("false", "POST", False),
        # internal_only: true keeps them internal.
        ("true", "GET", False),
    ],
)
def test_envoy_internal_check_external_policy(make_client, internal_only, method, allowed):
    client = make_client(checks_config(INTERNAL_ONLY, EXTERNAL_POLICY.format(internal_only=internal_only)))

    response = client.open(GET_TEAM, method=method)

    assert is_denied(response) is not allowed


def test_envoy_internal_check_policy_default_is_internal(make_client):
    policy = '  permissions:\n    lookups:\n      methods: ["GET"]\n      paths: ["^/api/"]\n'
    client = make_client(checks_config(INTERNAL_ONLY, policy))

    assert is_denied(client.get(GET_TEAM))


# -- envoy_permissions_check: omnibot's documented example ------------------------------


@pytest.mark.parametrize(
    "identity, internal, method, path, allowed",
    [
        # An echobot service posts as echobot from inside the mesh.
        ("echobot", True, "POST", ECHOBOT_ACTION, True),
        # The subject regex matches from the start, so echobot-staging is an echobot too.
        ("echobot-staging", True, "POST", ECHOBOT_ACTION, True),
        # The echobot permission is internal only.
        ("echobot", False, "POST", ECHOBOT_ACTION, False),
        # The echobot permission covers POST only.
        ("echobot", True, "GET", ECHOBOT_ACTION, False),
        # The echobot permission covers this one path only.
        ("echobot", True, "GET", "/api/v1/slack/get_team/testteam", False),
        # envoy is bound to slack_api, which does not cover actions.
        ("envoy", True, "POST", ECHOBOT_ACTION, False),
        # A service with no binding.
        ("billing", True, "POST", ECHOBOT_ACTION, False),
        # The subject regex must match from the start of the identity.
        ("my-echobot", True, "POST", ECHOBOT_ACTION, False),
        # No identity header.
        (None, True, "POST", ECHOBOT_ACTION, False),
        # An empty identity is no identity.
        ("", True, "POST", ECHOBOT_ACTION, False),
    ],
)
def test_omnibot_docs_example(make_client, fake_slack, identity, internal, method, path, allowed):
    client = make_client(OMNIBOT_DOCS_EXAMPLE)
    headers = {}
    if identity is not None:
        headers["x-envoy-downstream-service-cluster"] = identity
    if internal:
        headers["x-envoy-internal"] = "true"

    response = client.open(path, method=method, headers=headers, json=ECHOBOT_POST)

    assert is_denied(response) is not allowed
    if allowed:
        assert response.status_code == 200
        assert len(fake_slack.calls("chat.postMessage")) == 1
    else:
        assert fake_slack.calls() == []


def test_omnibot_docs_example_slack_routes_external(make_client):
    client = make_client(OMNIBOT_DOCS_EXAMPLE)
    raw, headers = signed({"type": "url_verification", "token": "unused", "challenge": "c-123"})
    headers["x-envoy-downstream-service-cluster"] = "envoy"

    response = client.post("/api/v1/slack/event", data=raw, headers=headers)

    assert response.status_code == 200
    assert response.get_json() == {"challenge": "c-123"}


@pytest.mark.parametrize(
    "identity",
    [
        # echobot's permission does not cover Slack's routes.
        "echobot",
        # No identity.
        None,
    ],
)
def test_omnibot_docs_example_slack_routes_need_binding(make_client, identity):
    client = make_client(OMNIBOT_DOCS_EXAMPLE)
    raw, headers = signed({"type": "url_verification", "token": "unused", "challenge": "c-123"})
    if identity:
        headers["x-envoy-downstream-service-cluster"] = identity

    assert is_denied(client.post("/api/v1/slack/event", data=raw, headers=headers))


def test_omnibot_docs_example_loads_cleanly():
    config = load_config_text(OMNIBOT_DOCS_EXAMPLE, environ=credentials_env())

    assert config.warnings == []
    assert [check.module for check in config.checks] == [
        "omnibot.authnz.envoy_checks:envoy_internal_check",
        "omnibot.authnz.envoy_checks:envoy_permissions_check",
    ]


# -- envoy_permissions_check: other semantics -----------------------------------------


PERMISSIONS_ONLY = """authorization:
  checks:
    - module: "omnibot.authnz.envoy_checks:envoy_permissions_check"
      kwargs:
        header: "x-caller"
  permissions:
    lookups:
      methods: ["GET"]
      paths: ["^/api/v1/slack/get_team/"]
  bindings:
    "^reports$":
      - "lookups"
    "^ghost$":
      - "undefined_permission"
""" + TEAMS


@pytest.mark.parametrize(
    "identity, allowed",
    [
        # Bound to a permission that covers the request, and no internal check is configured.
        ("reports", True),
        # $ anchors the subject at the end.
        ("reports-v2", False),
        # A binding that names an undefined permission grants nothing.
        ("ghost", False),
    ],
)
def test_envoy_permissions_check_custom_header(make_client, identity, allowed):
    client = make_client(PERMISSIONS_ONLY)

    response = client.get(GET_TEAM, headers={"x-caller": identity})

    assert is_denied(response) is not allowed


def test_envoy_permissions_check_ignores_default_header_when_renamed(make_client):
    client = make_client(PERMISSIONS_ONLY)

    assert is_denied(client.get(GET_TEAM, headers={"x-envoy-downstream-service-cluster": "reports"}))


def test_rules_compiled_once_per_config(make_client, monkeypatch):
    compiled = []
    original = envoy_checks.compile_rules

    def counting_compile_rules(authorization):
        compiled.append(authorization)
        return original(authorization)

    monkeypatch.setattr(envoy_checks, "compile_rules", counting_compile_rules)
    client = make_client(PERMISSIONS_ONLY)

    for _ in range(3):
        assert not is_denied(client.get(GET_TEAM, headers={"x-caller": "reports"}))

    assert len(compiled) == 1


def test_replaced_config_applies_new_bindings(make_client):
    client = make_client(PERMISSIONS_ONLY)
    assert not is_denied(client.get(GET_TEAM, headers={"x-caller": "reports"}))

    replacement = PERMISSIONS_ONLY.replace('"^reports$"', '"^audit$"')
    client.runtime.replace_config(load_config_text(replacement, environ=credentials_env()))

    assert is_denied(client.get(GET_TEAM, headers={"x-caller": "reports"}))
    assert not is_denied(client.get(GET_TEAM, headers={"x-caller": "audit"}))


# -- several checks, custom checks ------------------------------------------------------


BOTH_CHECKS = (
    '    - module: "omnibot.authnz:allowed_paths"\n      kwargs:\n        paths: ["^/api/v1/slack/get_"]\n'
    '    - module: "tests.unit.test_authnz:header_equals"\n      kwargs:\n        name: "x-team"\n        value: "ops"\n'
)


@pytest.mark.parametrize(
    "path, headers, allowed",
    [
        # Both checks pass.
        (GET_TEAM, {"x-team": "ops"}, True),
        # The custom check fails.
        (GET_TEAM, {"x-team": "dev"}, False),
        # allowed_paths fails.
        ("/api/v2/slack/action/test-team/testbot", {"x-team": "ops"}, False),
    ],
)
def test_all_checks_must_pass(make_client, path, headers, allowed):
    client = make_client(checks_config(BOTH_CHECKS))

    response = client.get(path, headers=headers)

    assert is_denied(response) is not allowed


def test_raising_check_denies_and_logs(make_client, caplog):
    client = make_client(checks_config('    - module: "tests.unit.test_authnz:raising_check"\n'))

    with caplog.at_level(logging.ERROR, logger="omnibot.authnz"):
        response = client.get(GET_TEAM)

    assert is_denied(response)
    errors = [record for record in caplog.records if record.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "tests.unit.test_authnz:raising_check" in errors[0].getMessage()
    assert errors[0].exc_info is not None


# -- the denial log -------------------------------------------------------------------------


def test_denial_log_names_request_and_caller(make_client, caplog):
    client = make_client(OMNIBOT_DOCS_EXAMPLE)
    headers = {
        "x-envoy-downstream-service-cluster": "billing",
        "x-envoy-internal": "true",
        "Authorization": "Bearer s3cr3t-bearer",
        "Cookie": "session=s3cr3t-cookie",
    }

    with caplog.at_level(logging.DEBUG):
        response = client.post(ECHOBOT_ACTION, headers=headers, json=ECHOBOT_POST)

    assert is_denied(response)
    denials = [record for record in caplog.records if record.name == "omnibot.app"]
    assert len(denials) == 1
    message = denials[0].getMessage()
    assert denials[0].levelno == logging.WARNING
    assert "POST" in message
    assert ECHOBOT_ACTION in message
    assert "'billing'" in message
    assert "envoy_permissions_check" in message
    assert all("s3cr3t" not in record.getMessage() for record in caplog.records)


def test_denial_log_skips_internal_header_value(make_client, caplog):
    client = make_client(checks_config(INTERNAL_ONLY))

    with caplog.at_level(logging.DEBUG):
        response = client.get(GET_TEAM, headers={"x-envoy-internal": "s3cr3t-value"})

    assert is_denied(response)
    assert all("s3cr3t" not in record.getMessage() for record in caplog.records)


def test_denial_log_identity_from_renamed_header(make_client, caplog):
    client = make_client(PERMISSIONS_ONLY)

    with caplog.at_level(logging.WARNING, logger="omnibot.app"):
        client.get(GET_TEAM, headers={"x-caller": "billing"})

    assert "'billing'" in caplog.records[0].getMessage()


def test_denial_log_cuts_long_identity(make_client, caplog):
    client = make_client(PERMISSIONS_ONLY)

    with caplog.at_level(logging.WARNING, logger="omnibot.app"):
        client.get(GET_TEAM, headers={"x-caller": "b" * 1000})

    message = caplog.records[0].getMessage()
    assert "b" * 128 + "..." in message
    assert "b" * 129 not in message


def test_denial_log_without_identity(make_client, caplog):
    client = make_client(checks_config(INTERNAL_ONLY))

    with caplog.at_level(logging.WARNING, logger="omnibot.app"):
        client.get(GET_TEAM)

    assert "for caller unknown" in caplog.records[0].getMessage()


# -- config errors at load ---------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization, expected",
    [
        # The check's module does not exist.
        ('  checks:\n    - module: "omnibot.no_such_module:check"\n', "not found"),
        # The module has no such function.
        ('  checks:\n    - module: "omnibot.authnz:no_such_check"\n', "has no attribute"),
        # The kwargs do not fit the function's signature.
        (
            '  checks:\n    - module: "omnibot.authnz:allowed_paths"\n      kwargs:\n        path: ["^/api/"]\n',
            "does not accept the configured kwargs",
        ),
        # Not of the form package.module:function.
        ('  checks:\n    - module: "omnibot.authnz.allowed_paths"\n', "package.module:function"),
        # A permission's path regex does not compile.
        (
            '  checks:\n    - module: "omnibot.authnz.envoy_checks:envoy_permissions_check"\n'
            '  permissions:\n    p:\n      methods: ["GET"]\n      paths: ["^/api/(v1"]\n',
            "does not compile",
        ),
        # A binding's subject regex does not compile.
        (
            '  checks:\n    - module: "omnibot.authnz.envoy_checks:envoy_permissions_check"\n'
            '  bindings:\n    "svc[":\n      - p\n',
            "does not compile",
        ),
    ],
)
def test_bad_check_config_fails_at_load(authorization, expected):
    with pytest.raises(ConfigError) as raised:
        load_config_text("authorization:\n" + authorization + TEAMS, environ=credentials_env())

    assert expected in str(raised.value)
