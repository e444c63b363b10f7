"""Tests for omnibot.callbacks.network_callbacks.http_callback against HTTP servers on 127.0.0.1."""

import base64
import copy
import http.server
import json
import logging
import socket
import threading

import pytest

from omnibot.callbacks import network_callbacks

PAYLOAD = {
    "omnibot_payload_type": "message",
    "bot": {"name": "testbot", "bot_id": "A0TEST001"},
    "team": {"name": "test-team", "team_id": "T0TEST001"},
    "text": "event list",
    "args": "list",
}
RESULT = {"actions": [{"action": "chat.postMessage", "kwargs": {"text": "3 events"}}]}
# No backoff and one retry, so retry tests finish quickly.
FAST_CLIENT = {"retries": 1, "backoff_factor": 0, "timeout": 5, "service": "eventbot"}
HANG = "hang"


class StandInContainer:
    """The attributes that http_callback reads from a container."""

    def __init__(self, payload=PAYLOAD):
        self.bot = None
        self.payload = copy.deepcopy(payload)
        self.event_trace = {"team": "test-team", "bot": "testbot"}


class ScriptedServer:
    """A threaded HTTP server on 127.0.0.1 that responds to each POST with the next scripted reply.

    A reply is ``(status, headers, body)`` or :data:`HANG`, which waits until
    :meth:`stop` and then responds with 200. Once the script is used up, the
    server responds with 200 and :data:`RESULT`. Every request is recorded in ``requests``
    as a dict of ``path``, ``headers`` and ``body``.
    """

    def __init__(self, replies=()):
        self.replies = list(replies)
        self.requests = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/api/v1/eventbot"
        # A short poll interval lets stop() return quickly.
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
        self.thread.start()

    def _next_reply(self, request):
        with self.lock:
            self.requests.append(request)
            if self.replies:
                return self.replies.pop(0)
        return (200, {"Content-Type": "application/json"}, json.dumps(RESULT))

    def _handler_class(self):
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                reply = server._next_reply({"path": self.path, "headers": dict(self.headers), "body": body})
                if reply == HANG:
                    server.stopping.wait(5)
                    reply = (200, {"Content-Type": "application/json"}, json.dumps(RESULT))
                status, headers, text = reply
                data = text.encode()
                try:
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # The client gave up waiting and closed the connection.

            def log_message(self, format, *args):
                pass

        return Handler

    def stop(self):
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve():
    """Return a function that starts a ScriptedServer; every server is stopped after the test."""
    servers = []

    def start(replies=()):
        server = ScriptedServer(replies)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
    network_callbacks.close_sessions()


@pytest.fixture
def closed_port():
    """Return a loopback port that was bound and closed, so connecting to it is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    yield port
    network_callbacks.close_sessions()


def json_reply(status, body, **headers):
    return (status, {"Content-Type": "application/json", **headers}, json.dumps(body))


def error_messages(caplog):
    return [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]


def test_http_callback_returns_service_result(serve):
    server = serve()

    result = network_callbacks.http_callback(
        StandInContainer(), request_kwargs={"url": server.url}, client_kwargs=FAST_CLIENT
    )

    assert result == RESULT
    (request,) = server.requests
    assert request["path"] == "/api/v1/eventbot"
    assert request["headers"]["Content-Type"] == "application/json"
    assert json.loads(request["body"]) == PAYLOAD


def test_http_callback_default_client_kwargs(serve):
    server = serve()

    result = network_callbacks.http_callback(StandInContainer(), request_kwargs={"url": server.url})

    assert result == RESULT


def test_http_callback_sends_extra_request_kwargs(serve, caplog):
    server = serve()
    request_kwargs = {
        "url": server.url,
        "headers": {"X-Team": "test-team"},
        "auth": ["omnibot", "s3cret-password"],
        "params": {"source": "omnibot"},
    }

    with caplog.at_level(logging.DEBUG):
        result = network_callbacks.http_callback(
            StandInContainer(), request_kwargs=request_kwargs, client_kwargs=FAST_CLIENT
        )

    assert result == RESULT
    (request,) = server.requests
    assert request["headers"]["X-Team"] == "test-team"
    expected_auth = "Basic " + base64.b64encode(b"omnibot:s3cret-password").decode()
    assert request["headers"]["Authorization"] == expected_auth
    assert request["path"] == "/api/v1/eventbot?source=omnibot"
    assert "s3cret-password" not in caplog.text
    assert expected_auth not in caplog.text
    assert "event list" not in caplog.text


def test_http_callback_leaves_kwargs_unchanged(serve):
    server = serve([json_reply(500, {})])
    request_kwargs = {
        "url": server.url,
        "headers": {"X-Team": "test-team"},
        "auth": ["omnibot", "password"],
        "timeout": 5,
    }
    client_kwargs = dict(FAST_CLIENT)
    request_before = copy.deepcopy(request_kwargs)
    client_before = copy.deepcopy(client_kwargs)

    for _ in range(2):
        network_callbacks.http_callback(StandInContainer(), request_kwargs=request_kwargs, client_kwargs=client_kwargs)

    assert request_kwargs == request_before
    assert isinstance(request_kwargs["auth"], list)
    assert client_kwargs == client_before


def test_http_callback_non_json_answer(serve, caplog):
    server = serve([(200, {"Content-Type": "text/html"}, "<html>oops</html>")])

    with caplog.at_level(logging.ERROR):
        result = network_callbacks.http_callback(
            StandInContainer(), request_kwargs={"url": server.url}, client_kwargs=FAST_CLIENT
        )

    assert result == {}
    (message,) = error_messages(caplog)
    assert "eventbot" in message
    assert "127.0.0.1" in message
    assert "not JSON" in message
    assert "text/html" in message


def test_http_callback_json_list_answer(serve, caplog):
    server = serve([json_reply(200, ["not", "an", "object"])])

    with caplog.at_level(logging.ERROR):
        result = network_callbacks.http_callback(
            StandInContainer(), request_kwargs={"url": server.url}, client_kwargs=FAST_CLIENT
        )

    assert result == {}
    (message,) = error_messages(caplog)
    assert "instead of an object" in message


def test_http_callback_empty_answer(serve, caplog):
    server = serve([(204, {}, ""), (200, {}, "")])

    with caplog.at_level(logging.ERROR):
        for _ in range(2):
            result = network_callbacks.http_callback(
                StandInContainer(), request_kwargs={"url": server.url}, client_kwargs=FAST_CLIENT
            )

            assert result == {}
    assert error_messages(caplog) == []


def test_http_callback_retries_500(serve):
    server = serve([json_reply(500, {"error": "boom"})])

    result = network_callbacks.http_callback(
        StandInContainer(), request_kwargs={"url": server.url}, client_kwargs=FAST_CLIENT
    )

    assert result == RESULT
    assert len(server.requests) == 2
    assert json.loads(server.requests[1]["body"]) == PAYLOAD


def test_http_callback_retries_each_retry_status(serve):
    for status in sorted(network_callbacks.RETRY_STATUSES):
        server = serve([json_reply(status, {})])

        result = network_callbacks.http_callback(
            StandInContainer(), request_kwargs={"url": server.url}, client_kwargs=FAST_CLIENT
        )

        assert result == RESULT, status
        assert len(server.requests) == 2, status


def test_http_callback_gives_up_after_retries(serve, caplog):
    server = serve([json_reply(503, {})] * 5)
    client_kwargs = dict(FAST_CLIENT, retries=2)

    with caplog.at_level(logging.ERROR):
        result = network_callbacks.http_callback(
            StandInContainer(), request_kwargs={"url": server.url}, client_kwargs=client_kwargs
        )

    assert result == {}
    assert len(server.requests) == 3
    (message,) = error_messages(caplog)
    assert "eventbot" in message
    assert "127.0.0.1" in message
    assert "HTTP 503" in message


def test_http_callback_zero_retries(serve):
    server = serve([json_reply(500, {})])
    client_kwargs = dict(FAST_CLIENT, retries=0)

    result = network_callbacks.http_callback(
        StandInContainer(), request_kwargs={"url": server.url}, client_kwargs=client_kwargs
    )

    assert result == {}
    assert len(server.requests) == 1


def test_http_callback_does_not_retry_400(serve, caplog):
    server = serve([json_reply(400, {"error": "bad request"})])

    with caplog.at_level(logging.ERROR):
        result = network_callbacks.http_callback(
            StandInContainer(), request_kwargs={"url": server.url}, client_kwargs=FAST_CLIENT
        )

    assert result == {}
    assert len(server.requests) == 1
    assert "HTTP 400" in error_messages(caplog)[0]


def test_http_callback_retries_429_with_retry_after(serve):
    for retry_after in ("0", "1"):
        server = serve([json_reply(429, {}, **{"Retry-After": retry_after})])

        result = network_callbacks.http_callback(
            StandInContainer(), request_kwargs={"url": server.url}, client_kwargs=FAST_CLIENT
        )

        assert result == RESULT, retry_after
        assert len(server.requests) == 2, retry_after


def test_http_callback_long_retry_after_not_retried(serve, caplog):
    server = serve([json_reply(429, {}, **{"Retry-After": "3600"})])

    with caplog.at_level(logging.ERROR):
        result = network_callbacks.http_callback(
            StandInContainer(), request_kwargs={"url": server.url}, client_kwargs=FAST_CLIENT
        )

    assert result == {}
    assert len(server.requests) == 1
    assert "HTTP 429" in error_messages(caplog)[0]


def test_http_callback_413_with_retry_after_not_retried(serve):
    server = serve([json_reply(413, {}, **{"Retry-After": "0"})])

    result = network_callbacks.http_callback(
        StandInContainer(), request_kwargs={"url": server.url}, client_kwargs=FAST_CLIENT
    )

    assert result == {}
    assert len(server.requests) == 1


def test_http_callback_connection_refused(closed_port, caplog):
    url = f"http://127.0.0.1:{closed_port}/hook?token=url-secret"
    client_kwargs = dict(FAST_CLIENT, retries=2)

    with caplog.at_level(logging.INFO):
        result = network_callbacks.http_callback(
            StandInContainer(), request_kwargs={"url": url}, client_kwargs=client_kwargs
        )

    assert result == {}
    (message,) = error_messages(caplog)
    assert "eventbot" in message
    assert f"127.0.0.1:{closed_port}" in message
    assert "ConnectionError" in message
    assert "Connection refused" in message
    # urllib3 logs the path and query when it retries; this module must not.
    own_records = [record.getMessage() for record in caplog.records if record.name == network_callbacks.__name__]
    assert not any("url-secret" in text for text in own_records)


def test_http_callback_timeout_not_retried(serve, caplog):
    server = serve([HANG])
    client_kwargs = dict(FAST_CLIENT, timeout=0.2)

    with caplog.at_level(logging.ERROR):
        result = network_callbacks.http_callback(
            StandInContainer(), request_kwargs={"url": server.url}, client_kwargs=client_kwargs
        )

    assert result == {}
    assert len(server.requests) == 1
    (message,) = error_messages(caplog)
    assert "ReadTimeout" in message


def test_http_callback_request_kwargs_timeout(serve):
    server = serve([HANG])
    client_kwargs = {key: value for key, value in FAST_CLIENT.items() if key != "timeout"}

    result = network_callbacks.http_callback(
        StandInContainer(), request_kwargs={"url": server.url, "timeout": 0.2}, client_kwargs=client_kwargs
    )

    assert result == {}


def test_http_callback_client_timeout_wins(serve):
    server = serve([HANG])
    client_kwargs = dict(FAST_CLIENT, timeout=[5, 0.2])

    result = network_callbacks.http_callback(
        StandInContainer(), request_kwargs={"url": server.url, "timeout": 30}, client_kwargs=client_kwargs
    )

    assert result == {}


def test_http_callback_ignores_body_kwargs(serve, caplog):
    server = serve()
    request_kwargs = {"url": server.url, "json": {"other": "body"}, "data": "raw"}

    with caplog.at_level(logging.WARNING):
        result = network_callbacks.http_callback(
            StandInContainer(), request_kwargs=request_kwargs, client_kwargs=FAST_CLIENT
        )

    assert result == RESULT
    assert json.loads(server.requests[0]["body"]) == PAYLOAD
    assert "ignored request_kwargs data, json" in caplog.text


def test_http_callback_invalid_kwargs(caplog):
    cases = [
        (None, None),
        ({}, None),
        ({"url": 42}, None),
        ({"url": "http://127.0.0.1:9/"}, {"retries": -1}),
        ({"url": "http://127.0.0.1:9/"}, {"retries": "3"}),
        ({"url": "http://127.0.0.1:9/"}, {"backoff_factor": -0.5}),
        ({"url": "http://127.0.0.1:9/"}, {"timeout": 0}),
        ({"url": "http://127.0.0.1:9/"}, {"timeout": [1, 2, 3]}),
        ({"url": "http://127.0.0.1:9/"}, ["not", "a", "mapping"]),
    ]
    for request_kwargs, client_kwargs in cases:
        caplog.clear()

        with caplog.at_level(logging.ERROR):
            result = network_callbacks.http_callback(
                StandInContainer(), request_kwargs=request_kwargs, client_kwargs=client_kwargs
            )

        assert result == {}, (request_kwargs, client_kwargs)
        assert len(error_messages(caplog)) == 1, (request_kwargs, client_kwargs)


def test_http_callback_invalid_url(caplog):
    with caplog.at_level(logging.ERROR):
        result = network_callbacks.http_callback(
            StandInContainer(), request_kwargs={"url": "no-scheme?token=url-secret"}, client_kwargs=FAST_CLIENT
        )

    assert result == {}
    (message,) = error_messages(caplog)
    assert "MissingSchema" in message
    assert "unknown host" in message
    assert "url-secret" not in caplog.text


def test_http_callback_rejects_cookies(serve):
    server = serve([(200, {"Content-Type": "application/json", "Set-Cookie": "session=abc; Path=/"}, "{}")])

    for _ in range(2):
        network_callbacks.http_callback(
            StandInContainer(), request_kwargs={"url": server.url}, client_kwargs=FAST_CLIENT
        )

    assert "Cookie" not in server.requests[1]["headers"]


def test_http_callback_from_many_threads(serve):
    server = serve()
    results = []

    def call():
        results.append(
            network_callbacks.http_callback(
                StandInContainer(), request_kwargs={"url": server.url}, client_kwargs=FAST_CLIENT
            )
        )

    threads = [threading.Thread(target=call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert results == [RESULT] * 8
    assert len(server.requests) == 8


def test_session_shared_per_retry_policy():
    sessions = []
    barrier = threading.Barrier(8)

    def get_session():
        barrier.wait()
        sessions.append(network_callbacks._session(2, 0.25))

    threads = [threading.Thread(target=get_session) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    try:
        assert len({id(session) for session in sessions}) == 1
        assert network_callbacks._session(3, 0.25) is not sessions[0]
    finally:
        network_callbacks.close_sessions()
