"""Metrics: statsd packets on a real UDP socket, the Prometheus text, /metrics and rejection logs.

The app runs in the Flask test client with SQLite backends. A worker's
``handle`` processes each queued message in the test's thread, and Slack
lookups go to a fake Slack on loopback. statsd sends are synchronous UDP
writes to 127.0.0.1, so every packet is in the socket's buffer when the
request or the message handling returns.
"""

import json
import logging
import re
import socket
import time
import urllib.parse
import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families

from omnibot.app import create_app
from omnibot.config.loader import load_config_text
from omnibot.fake_slack import FakeSlack
from omnibot.runtime import Runtime
from omnibot.settings import Settings
from omnibot.stats import Stats, metric_name_part
from omnibot.worker import Worker
from tests.support import BASE_CONFIG, credentials_env, message_event, signed

CONFIG = BASE_CONFIG.replace('paths: ["^/api/"]', 'paths: ["^/api/", "^/metrics$"]') + """
handlers:
  message_handlers:
    - match: "status"
      match_type: "command"
      bots: {"test-team": ["testbot"]}
      callbacks: [{module: "tests.recorders:record"}]
    - match: "explode"
      match_type: "command"
      bots: {"test-team": ["testbot"]}
      callbacks: [{module: "tests.recorders:explode"}]
  slash_command_handlers:
    - command: "/echo"
      bots: {"test-team": ["testbot"]}
      callbacks: [{module: "tests.recorders:record"}]
  interactive_component_handlers:
    - callback_id: "my callback"
      bots: {"test-team": ["testbot"]}
      callbacks: [{module: "tests.recorders:record"}]
"""

EVENT_PATH = "/api/v1/slack/event"
FORM = "application/x-www-form-urlencoded"
# A statsd line as pystatsd writes it: name, value and type.
STATSD_LINE = re.compile(r"(?P<name>[^:]+):(?P<value>[^|]+)\|(?P<type>c|ms|g)")


@pytest.fixture(scope="module")
def slack():
    fake = FakeSlack().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def statsd_socket():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    yield sock
    sock.close()


@pytest.fixture(scope="module")
def runtime(slack, statsd_socket, tmp_path_factory):
    settings = Settings(
        data_dir=str(tmp_path_factory.mktemp("stats")),
        slack_api_url=slack.api_url,
        statsd_host="127.0.0.1",
        statsd_port=statsd_socket.getsockname()[1],
        # A failed message goes straight to the dead letters, so no retry reaches a later test.
        max_attempts=1,
    )
    runtime = Runtime(settings, load_config_text(CONFIG, environ=credentials_env()))
    yield runtime
    runtime.close()


@pytest.fixture(scope="module")
def client(runtime):
    return create_app(runtime).test_client()


@pytest.fixture(autouse=True)
def record_file(tmp_path, monkeypatch):
    monkeypatch.setenv("OMNIBOT_TEST_RECORD_FILE", str(tmp_path / "calls.jsonl"))


@pytest.fixture(autouse=True)
def fresh_packets(statsd_socket):
    """Drop the packets of earlier tests."""
    read_packets(statsd_socket)


def read_packets(sock):
    """Return every statsd line waiting in the socket as ``(name, value, type)``."""
    lines = []
    while True:
        try:
            data = sock.recv(65535)
        except BlockingIOError:
            return lines
        for line in data.decode("ascii").splitlines():
            match = STATSD_LINE.fullmatch(line)
            assert match, f"not a statsd line: {line!r}"
            lines.append((match["name"], match["value"], match["type"]))


def values_of(packets, name, kind):
    return [float(value) for packet_name, value, packet_kind in packets if packet_name == name and packet_kind == kind]


def post_event(client, body, headers=None):
    raw, signed_headers = signed(body)
    signed_headers.update(headers or {})
    return client.post(EVENT_PATH, data=raw, headers=signed_headers)


def handle_queued(runtime):
    """Handle every queued message as ``omnibot worker`` would; return how many there were."""
    worker = Worker(runtime, concurrency=1)
    count = 0
    while True:
        delivery = runtime.queue.get(timeout=0)
        if delivery is None:
            return count
        worker.handle(delivery)
        count += 1


def ts_ago(seconds):
    return f"{time.time() - seconds:.6f}"


# -- statsd ---------------------------------------------------------------------


def test_event_sends_omnibot_names_and_values(client, runtime, statsd_socket):
    body = message_event("status of <@W0TEST002>", channel="D0TEST001", ts=ts_ago(30))

    assert post_event(client, body).status_code == 200
    acked = read_packets(statsd_socket)
    assert handle_queued(runtime) == 1
    processed = read_packets(statsd_socket)

    assert ("omnibot.sqs.sent", "1", "c") in acked
    assert ("omnibot.sqs.testbot.sent", "1", "c") in acked
    ack_latency = values_of(acked, "omnibot.pre_sqs_delivery_latency", "ms")
    assert len(ack_latency) == 1
    assert ack_latency[0] >= 30000
    assert values_of(acked, "omnibot.pre_sqs_delivery_retry_latency", "ms") == []

    assert ("omnibot.sqs.received", "1", "c") in processed
    delivery_latency = values_of(processed, "omnibot.delivery_latency", "ms")
    assert len(delivery_latency) == 1
    assert delivery_latency[0] >= ack_latency[0]
    assert ("omnibot.event.process.attempt.message", "1", "c") in processed
    assert ("omnibot.event.handled", "1", "c") in processed
    assert len(values_of(processed, "omnibot.process_event", "ms")) == 1
    assert len(values_of(processed, "omnibot.handle_message", "ms")) == 1
    assert len(values_of(processed, "omnibot.parser.extract_users", "ms")) >= 1
    assert not [name for name, _, _ in processed if "failed" in name]


def test_slack_retry_sends_retry_latency(client, statsd_socket):
    body = message_event("status", channel="D0TEST001", ts=ts_ago(5))

    response = post_event(client, body, {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"})
    packets = read_packets(statsd_socket)

    assert response.status_code == 200
    assert len(values_of(packets, "omnibot.pre_sqs_delivery_retry_latency", "ms")) == 1
    assert values_of(packets, "omnibot.pre_sqs_delivery_latency", "ms") == []


def test_failed_callback_counts_failed_attempt(client, runtime, statsd_socket):
    post_event(client, message_event("explode", channel="D0TEST001"))
    handle_queued(runtime)
    packets = read_packets(statsd_socket)

    assert ("omnibot.event.process.attempt.message", "1", "c") in packets
    assert ("omnibot.event.process.failed.message", "1", "c") in packets
    assert len(runtime.queue.dead_letters()) == 1
    runtime.queue.purge_dead_letters(0)
    assert runtime.queue.dead_letters() == []


@pytest.mark.parametrize(
    "text, event_fields, channel, outcome",
    [
        # A directed message that matches no handler falls back to help.
        ("what can you do", {}, "D0TEST001", "defaulted"),
        # A channel message that is not addressed to the bot matches nothing.
        ("just chatting", {}, "C0TEST001", "ignored"),
        # Messages with a subtype are not routed at all.
        ("edited", {"subtype": "message_changed"}, "C0TEST001", "unsupported"),
        # An event type omnibot does not process.
        ("", {"type": "channel_archive"}, "C0TEST001", "unsupported"),
    ],
)
def test_event_outcome_counters(client, runtime, statsd_socket, text, event_fields, channel, outcome):
    post_event(client, message_event(text, channel=channel, **event_fields))
    handle_queued(runtime)
    packets = read_packets(statsd_socket)

    assert (f"omnibot.event.{outcome}", "1", "c") in packets
    others = [name for name, _, _ in packets if name.startswith("omnibot.event.") and name.count(".") == 2]
    assert others == [f"omnibot.event.{outcome}"]


def test_slash_command_names_drop_the_slash(client, runtime, statsd_socket):
    form = {
        "team_id": "T0TEST001",
        "api_app_id": "A0TEST001",
        "channel_id": "C0TEST001",
        "user_id": "U0TEST001",
        "command": "/echo",
        "text": "hi",
        "response_url": "http://127.0.0.1:9/hooks/unused",
        "trigger_id": f"1.2.{uuid.uuid4().hex}",
    }
    raw, headers = signed(urllib.parse.urlencode(form), content_type=FORM)

    assert client.post("/api/v1/slack/slash_command", data=raw, headers=headers).status_code == 200
    handle_queued(runtime)
    packets = read_packets(statsd_socket)

    assert ("omnibot.sqs.sent", "1", "c") in packets
    assert ("omnibot.slash_command.process.attempt.echo", "1", "c") in packets
    assert len(values_of(packets, "omnibot.process_slash_command", "ms")) == 1


def test_interactive_names_replace_spaces(client, runtime, statsd_socket):
    payload = {
        "type": "interactive_message",
        "callback_id": "my callback",
        "api_app_id": "A0TEST001",
        "team": {"id": "T0TEST001"},
        "user": {"id": "U0TEST001"},
        "channel": {"id": "C0TEST001"},
        "actions": [{"name": "approve", "type": "button", "value": "yes"}],
        "response_url": "http://127.0.0.1:9/hooks/unused",
        "trigger_id": f"1.2.{uuid.uuid4().hex}",
    }
    raw, headers = signed(urllib.parse.urlencode({"payload": json.dumps(payload)}), content_type=FORM)

    assert client.post("/api/v1/slack/interactive", data=raw, headers=headers).status_code == 200
    handle_queued(runtime)
    packets = read_packets(statsd_socket)

    assert ("omnibot.interactive_component.process.attempt.my_callback", "1", "c") in packets
    assert len(values_of(packets, "omnibot.process_interactive_component", "ms")) == 1


@pytest.mark.parametrize(
    "value, expected",
    [
        # omnibot named slash command metrics without the slash.
        ("/echo", "echo"),
        # A space or a dot would break the dotted name into other levels.
        ("my callback", "my_callback"),
        ("a.b.c", "a_b_c"),
        # Non-ASCII letters cannot be sent, because pystatsd encodes packets as ASCII.
        ("déploy", "d_ploy"),
        # Nothing usable left.
        ("", "unknown"),
        (None, "unknown"),
        ("///", "unknown"),
    ],
)
def test_metric_name_part(value, expected):
    assert metric_name_part(value) == expected


def test_unset_statsd_host_disables_statsd():
    stats = Stats(Settings())

    stats.incr("sqs.sent")
    stats.event_acknowledged("1700000000.000100", retried=False)

    assert stats.statsd is None


# -- latency warning ------------------------------------------------------------


@pytest.mark.parametrize(
    "age, warned",
    [
        # Older than 20 s: Slack or the queue was slow, so it is logged.
        (45, True),
        # A few seconds is normal.
        (2, False),
    ],
)
def test_late_event_logs_warning(client, runtime, caplog, age, warned):
    retry = {"X-Slack-Retry-Num": "2", "X-Slack-Retry-Reason": "http_timeout"}
    post_event(client, message_event("status", channel="D0TEST001", ts=ts_ago(age)), retry)

    with caplog.at_level(logging.WARNING, logger="omnibot.processing.processor"):
        handle_queued(runtime)

    late = [record for record in caplog.records if "after its event_ts" in record.getMessage()]
    assert len(late) == (1 if warned else 0)
    if warned:
        record = late[0]
        assert record.delay_ms >= age * 1000
        assert record.retry_num == "2"
        assert record.retry_reason == "http_timeout"
        assert record.attempt == 1
        assert record.team == "test-team"
        assert record.event_type == "message"
        assert "retry 2, reason http_timeout" in record.getMessage()


# -- Prometheus -----------------------------------------------------------------


def sample(text, name, **labels):
    """Return the value of one sample of the exposition text, or None when it is absent."""
    expected = {key: str(value) for key, value in labels.items()}
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == name and found.labels == expected:
                return found.value
    return None


def test_metrics_route_counts_event_work(client, runtime):
    before = client.get("/metrics").get_data(as_text=True)
    queued_before = sample(before, "omnibot_messages_queued_total", kind="event", bot="testbot") or 0
    calls_before = sample(before, "omnibot_callback_calls_total", callback="tests.recorders:record", result="ok") or 0

    post_event(client, message_event("status", channel="D0TEST001"))
    handle_queued(runtime)
    response = client.get("/metrics")
    text = response.get_data(as_text=True)

    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    assert sample(text, "omnibot_messages_queued_total", kind="event", bot="testbot") == queued_before + 1
    calls = sample(text, "omnibot_callback_calls_total", callback="tests.recorders:record", result="ok")
    assert calls == calls_before + 1
    assert sample(text, "omnibot_handler_runs_total", handler="message_handlers[0]", result="ok") >= 1
    assert sample(text, "omnibot_messages_finished_total", kind="event", outcome="acked") >= 1
    assert sample(text, "omnibot_http_requests_total", method="POST", route=EVENT_PATH, status="200") >= 1
    durations = sample(text, "omnibot_http_request_duration_seconds_count", method="POST", route=EVENT_PATH, status="200")
    assert durations >= 1
    assert sample(text, "omnibot_queue_messages", state="ready") == 0
    assert sample(text, "omnibot_backend_up", backend="queue") == 1
    assert sample(text, "omnibot_messages_in_progress") == 0


def test_slack_api_error_is_logged_and_counted(client, runtime, slack, caplog):
    bot = runtime.config.bot_by_app_id("A0TEST001")
    slack.add_fault("chat.postMessage", error="channel_not_found")

    with caplog.at_level(logging.WARNING, logger="omnibot.slack.client"):
        answer = runtime.clients.call(
            bot, "chat.postMessage", {"channel": "C0TEST001", "text": "hi"}, fallback=False, trace=bot.trace
        )
    text = client.get("/metrics").get_data(as_text=True)

    assert answer["error"] == "channel_not_found"
    errors = [record for record in caplog.records if getattr(record, "api_method", None) == "chat.postMessage"]
    assert len(errors) == 1
    assert errors[0].api_error == "channel_not_found"
    assert errors[0].team == "test-team"
    assert "channel_not_found" in errors[0].getMessage()
    assert sample(text, "omnibot_slack_api_calls_total", method="chat.postMessage", result="channel_not_found") == 1


def test_slack_http_retry_is_logged(runtime, slack, caplog):
    bot = runtime.config.bot_by_app_id("A0TEST001")
    slack.add_fault("auth.test", status=503)

    with caplog.at_level(logging.WARNING, logger="omnibot.slack.client"):
        answer = runtime.clients.call(bot, "auth.test", {}, fallback=False)

    assert answer["ok"] is True
    retries = [record.getMessage() for record in caplog.records if "retrying Slack API" in record.getMessage()]
    assert retries == ["retrying Slack API auth.test after HTTP 503 (retry 1 of 3)"]


def test_unmatched_paths_share_one_route_label(client):
    client.get("/api/nothing-here")
    client.get("/api/nothing-here-either")
    text = client.get("/metrics").get_data(as_text=True)

    assert sample(text, "omnibot_http_requests_total", method="GET", route="unmatched", status="404") >= 2
    assert "nothing-here" not in text


def test_metrics_route_needs_authorization(slack, tmp_path):
    # BASE_CONFIG allows only ^/api/.
    config = load_config_text(BASE_CONFIG, environ=credentials_env())
    runtime = Runtime(Settings(data_dir=str(tmp_path), slack_api_url=slack.api_url), config)
    try:
        response = create_app(runtime).test_client().get("/metrics")
    finally:
        runtime.close()

    assert response.status_code == 403
    assert "omnibot_" not in response.get_data(as_text=True)


# -- rejected requests ------------------------------------------------------------


@pytest.mark.parametrize(
    "path, body, content_type, reason",
    [
        # A body signed with another secret fails verification.
        (EVENT_PATH, message_event("status"), "application/json", "Request verification failed"),
        # A slash command whose app is not configured.
        (
            "/api/v1/slack/slash_command",
            urllib.parse.urlencode(
                {"team_id": "T0TEST001", "api_app_id": "A0UNKNOWN", "command": "/echo", "trigger_id": "1.2.3"}
            ),
            FORM,
            "does not match any configured app",
        ),
    ],
)
def test_rejected_request_logs_path_reason_app(client, caplog, path, body, content_type, reason):
    raw, headers = signed(body, secret="not-the-configured-secret", content_type=content_type)

    with caplog.at_level(logging.WARNING, logger="omnibot.routes.metrics"):
        response = client.post(path, data=raw, headers=headers)

    assert response.status_code == 403
    rejections = [record for record in caplog.records if record.name == "omnibot.routes.metrics"]
    assert len(rejections) == 1
    record = rejections[0]
    assert record.levelno == logging.WARNING
    assert record.path == path
    assert reason in record.reason
    assert record.app_id == (urllib.parse.parse_qs(body)["api_app_id"][0] if content_type == FORM else "A0TEST001")
    assert record.team_id == "T0TEST001"
    assert "not-the-configured-secret" not in caplog.text
