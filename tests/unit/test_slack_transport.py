"""Tests of SlackClients' pooled connections and retries, against HTTP servers on 127.0.0.1."""

import http.server
import json
import logging
import os
import threading
import time
import typing

import pytest

from omnibot.fake_slack import FakeSlack
from omnibot.slack import transport
from omnibot.slack.client import SlackClients

BOT_TOKEN = "xoxb-transport-test-secret"
OK = (200, {"Content-Type": "application/json"}, json.dumps({"ok": True}))

# Script steps besides (status, headers, body) replies.
DROP = "drop"  # Read the request, then close the connection without a response.
CLOSE_AFTER = "close-after"  # Respond with 200, then close the connection although it was kept alive.
HANG = "hang"  # Wait until the server stops, then respond with 200.


class Credentials(typing.NamedTuple):
    bot_token: typing.Optional[str]
    user_token: typing.Optional[str] = None


class Bot(typing.NamedTuple):
    app_id: str
    credentials: Credentials


BOT = Bot("A0TEST001", Credentials(BOT_TOKEN))


class _ClosingHTTPServer(http.server.ThreadingHTTPServer):
    """Sets ``closed`` once a connection's socket is closed, which happens after the handler's finish()."""

    daemon_threads = True
    closed: threading.Event

    def shutdown_request(self, request):
        super().shutdown_request(request)
        self.closed.set()


class CountingServer:
    """An HTTP/1.1 server on 127.0.0.1 that counts the connections it accepts.

    Each request gets the next step of ``script``, and once the script is used
    up, every request gets :data:`OK`. Each request is recorded in ``requests`` as a
    dict of ``path``, ``headers`` (looked up in any case), ``body``,
    ``connection`` (its number, from 1) and ``time`` (``time.monotonic()`` at
    arrival).
    """

    def __init__(self, script=()):
        self.script = list(script)
        self.requests = []
        self.accepted = 0
        self.closed = threading.Event()
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.httpd = _ClosingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self.httpd.closed = self.closed
        self.api_url = f"http://127.0.0.1:{self.httpd.server_port}/api/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
        self.thread.start()

    def _next_step(self, request):
        with self.lock:
            self.requests.append(request)
            return self.script.pop(0) if self.script else OK

    def _handler_class(self):
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                super().setup()
                with server.lock:
                    server.accepted += 1
                    self.connection_number = server.accepted

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                request = {
                    "path": self.path,
                    "headers": self.headers,
                    "body": body.decode(),
                    "connection": self.connection_number,
                    "time": time.monotonic(),
                }
                step = server._next_step(request)
                if step == DROP:
                    self.close_connection = True
                    return
                if step == HANG:
                    server.stopping.wait(10)
                    step = OK
                if step == CLOSE_AFTER:
                    # No "Connection: close" header: the client keeps the
                    # connection in its pool, as with a server's idle timeout.
                    self.close_connection = True
                    step = OK
                status, headers, text = step
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

            def log_message(self, format, *args):  # noqa: A002 - the name is fixed by BaseHTTPRequestHandler
                pass

        return Handler

    def stop(self):
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve():
    """Return a function that starts a CountingServer. Every server is stopped after the test."""
    servers = []

    def start(script=()):
        server = CountingServer(script)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def clients():
    """Return a function that builds SlackClients. Their connections are closed after the test."""
    built = []

    def build(api_url, **kwargs):
        slack_clients = SlackClients(api_url, **kwargs)
        built.append(slack_clients)
        return slack_clients

    yield build
    for slack_clients in built:
        slack_clients.close()


@pytest.fixture
def no_waits(monkeypatch):
    """Make backoff waits and jitter 0 seconds, so that retry tests run quickly. Retry-After is still waited for."""
    monkeypatch.setattr(transport, "BACKOFF_FACTOR", 0.0)
    monkeypatch.setattr(transport, "JITTER", 0.0)


def json_reply(status, body, **headers):
    return (status, {"Content-Type": "application/json", **headers}, json.dumps(body))


def retry_lines(caplog):
    return [record.getMessage() for record in caplog.records if record.getMessage().startswith("retrying Slack API")]


# -- connection reuse --------------------------------------------------------------


def test_calls_from_one_thread_share_connection(serve, clients):
    server = serve()
    slack_clients = clients(server.api_url)

    answers = [slack_clients.call(BOT, "auth.test", {}) for _ in range(5)]

    assert answers == [{"ok": True}] * 5
    assert server.accepted == 1
    assert len(server.requests) == 5


def test_token_sent_only_in_authorization_header(serve, clients):
    server = serve()
    slack_clients = clients(server.api_url)

    slack_clients.call(BOT, "chat.postMessage", {"channel": "C0TEST001", "text": "hi"})

    request = server.requests[0]
    assert request["path"] == "/api/chat.postMessage"
    assert request["headers"]["Authorization"] == f"Bearer {BOT_TOKEN}"
    assert request["headers"]["Content-Type"] == "application/x-www-form-urlencoded"
    assert request["body"] == "channel=C0TEST001&text=hi"


def test_threads_share_pooled_connections(serve, clients):
    server = serve()
    slack_clients = clients(server.api_url)
    answers = []

    def make_calls():
        for _ in range(10):
            answers.append(slack_clients.call(BOT, "auth.test", {}))

    threads = [threading.Thread(target=make_calls) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert answers == [{"ok": True}] * 40
    # At most one connection per thread that called at the same time.
    assert 1 <= server.accepted <= 4


def test_fake_slack_keeps_connection_alive(clients):
    with FakeSlack() as fake:
        slack_clients = clients(fake.api_url)
        for number in range(5):
            answer = slack_clients.call(BOT, "chat.postMessage", {"channel": "C0TEST001", "text": f"post {number}"})
            assert answer["ok"] is True
        pools = slack_clients._pool.get().pools
        opened = sum(pools[key].num_connections for key in pools.keys())

        assert len(fake.calls("chat.postMessage")) == 5
        assert opened == 1


def test_idle_connection_closed_by_server(serve, clients, caplog):
    server = serve([CLOSE_AFTER])
    slack_clients = clients(server.api_url)

    first = slack_clients.call(BOT, "auth.test", {})
    assert server.closed.wait(5), "the server did not close the first connection"
    with caplog.at_level(logging.WARNING):
        second = slack_clients.call(BOT, "auth.test", {})

    assert first == {"ok": True}
    assert second == {"ok": True}
    assert server.accepted == 2
    assert [request["connection"] for request in server.requests] == [1, 2]
    assert retry_lines(caplog) == []


def test_forked_child_opens_own_connection(serve, clients):
    server = serve()
    slack_clients = clients(server.api_url)
    assert slack_clients.call(BOT, "auth.test", {}) == {"ok": True}
    parent_pool = slack_clients._pool.get()

    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        # The child reports through the pipe and never returns into pytest.
        try:
            os.close(read_end)
            answer = slack_clients.call(BOT, "auth.test", {})
            report = {"answer": answer, "new_pool": slack_clients._pool.get() is not parent_pool}
            os.write(write_end, json.dumps(report).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        report = json.loads(pipe.read() or b"{}")
    os.waitpid(pid, 0)
    after_fork = slack_clients.call(BOT, "auth.test", {})

    assert report == {"answer": {"ok": True}, "new_pool": True}
    assert after_fork == {"ok": True}
    # The parent's first connection, the child's own, and nothing new for the parent's last call.
    assert server.accepted == 2
    assert [request["connection"] for request in server.requests] == [1, 2, 1]


def use_proxy(monkeypatch, url):
    """Set ``HTTP_PROXY`` to ``url`` and clear ``NO_PROXY``, for the clients the test builds next."""
    monkeypatch.setenv("HTTP_PROXY", url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)


def test_proxy_from_environment(serve, clients, monkeypatch):
    proxy = serve()
    use_proxy(monkeypatch, f"http://proxy-user:proxy%3Apassword@127.0.0.1:{proxy.httpd.server_port}")
    # The .invalid name never resolves, so only the proxy is contacted.
    slack_clients = clients("http://slack.invalid/api/")

    answer = slack_clients.call(BOT, "auth.test", {})

    assert answer == {"ok": True}
    request = proxy.requests[0]
    assert request["path"] == "http://slack.invalid/api/auth.test"
    assert request["headers"]["Proxy-Authorization"] == "Basic cHJveHktdXNlcjpwcm94eTpwYXNzd29yZA=="
    assert request["headers"]["Authorization"] == f"Bearer {BOT_TOKEN}"


def test_proxy_without_scheme_is_http(serve, clients, monkeypatch):
    # urllib, which slack_sdk used, takes a proxy without a scheme as an HTTP proxy.
    proxy = serve()
    use_proxy(monkeypatch, f"127.0.0.1:{proxy.httpd.server_port}")
    slack_clients = clients("http://slack.invalid/api/")

    answer = slack_clients.call(BOT, "auth.test", {})

    assert answer == {"ok": True}
    assert proxy.requests[0]["path"] == "http://slack.invalid/api/auth.test"


def test_redirect_is_not_followed(serve, clients):
    elsewhere = serve()
    server = serve([(302, {"Location": elsewhere.api_url + "auth.test"}, "")])
    slack_clients = clients(server.api_url)

    answer = slack_clients.call(BOT, "auth.test", {})

    assert answer == {"ok": False, "error": "http_302"}
    assert elsewhere.requests == []


# -- retries -----------------------------------------------------------------------


def test_rate_limit_waits_retry_after(serve, clients, no_waits, caplog):
    server = serve([json_reply(429, {"ok": False, "error": "ratelimited"}, **{"Retry-After": "1"})])
    slack_clients = clients(server.api_url)

    with caplog.at_level(logging.WARNING):
        answer = slack_clients.call(BOT, "chat.postMessage", {"channel": "C0TEST001", "text": "hi"})

    assert answer == {"ok": True}
    assert len(server.requests) == 2
    # A lower bound only: the retry may come later, never before Retry-After.
    assert server.requests[1]["time"] - server.requests[0]["time"] >= 1.0
    assert retry_lines(caplog) == ["retrying Slack API chat.postMessage after HTTP 429 (retry 1 of 3)"]


def test_server_error_503_is_retried(serve, clients, no_waits, caplog):
    server = serve([(503, {"Content-Type": "text/html"}, "<html>unavailable</html>")])
    slack_clients = clients(server.api_url)

    with caplog.at_level(logging.WARNING):
        answer = slack_clients.call(BOT, "auth.test", {})

    assert answer == {"ok": True}
    assert len(server.requests) == 2
    assert retry_lines(caplog) == ["retrying Slack API auth.test after HTTP 503 (retry 1 of 3)"]


def test_retries_stop_after_three(serve, clients, no_waits, caplog):
    server = serve([json_reply(500, {"ok": False, "error": "internal_error"})] * 4)
    slack_clients = clients(server.api_url)

    with caplog.at_level(logging.WARNING):
        answer = slack_clients.call(BOT, "auth.test", {})

    assert answer == {"ok": False, "error": "internal_error"}
    assert len(server.requests) == 4
    assert retry_lines(caplog) == [
        "retrying Slack API auth.test after HTTP 500 (retry 1 of 3)",
        "retrying Slack API auth.test after HTTP 500 (retry 2 of 3)",
        "retrying Slack API auth.test after HTTP 500 (retry 3 of 3)",
    ]
    assert "Slack API auth.test failed: internal_error" in caplog.text


def test_other_statuses_are_not_retried(serve, clients, no_waits):
    server = serve(
        [
            (502, {"Content-Type": "text/html"}, "<html>bad gateway</html>"),
            (413, {"Retry-After": "0"}, ""),
        ]
    )
    slack_clients = clients(server.api_url)

    bad_gateway = slack_clients.call(BOT, "auth.test", {})
    too_large = slack_clients.call(BOT, "auth.test", {})

    assert bad_gateway == {"ok": False, "error": "http_502"}
    assert too_large == {"ok": False, "error": "http_413"}
    assert len(server.requests) == 2


def test_dropped_connection_is_retried(serve, clients, no_waits, caplog):
    server = serve([DROP])
    slack_clients = clients(server.api_url)

    with caplog.at_level(logging.WARNING):
        answer = slack_clients.call(BOT, "auth.test", {})

    assert answer == {"ok": True}
    assert len(server.requests) == 2
    assert retry_lines(caplog) == ["retrying Slack API auth.test after RemoteDisconnected (retry 1 of 3)"]


def test_refused_connection_is_retried(clients, no_waits, caplog):
    # Bound and closed, so nothing listens on the port.
    server = CountingServer()
    api_url = server.api_url
    server.stop()
    slack_clients = clients(api_url)

    with caplog.at_level(logging.WARNING):
        answer = slack_clients.call(BOT, "auth.test", {})

    assert answer["ok"] is False
    assert answer["error"] == "request_failed"
    assert "Connection refused" in answer["detail"]
    assert len(retry_lines(caplog)) == 3
    assert retry_lines(caplog)[0] == "retrying Slack API auth.test after ConnectionRefusedError (retry 1 of 3)"


def test_read_timeout_is_not_retried(serve, clients, no_waits, caplog):
    server = serve([HANG])
    slack_clients = clients(server.api_url, timeout=0.5)

    with caplog.at_level(logging.WARNING):
        answer = slack_clients.call(BOT, "chat.postMessage", {"channel": "C0TEST001", "text": "hi"})

    assert answer["error"] == "request_failed"
    assert "timed out" in answer["detail"]
    assert len(server.requests) == 1
    assert retry_lines(caplog) == []


# -- responses and secrets ---------------------------------------------------------


def test_body_not_json_object(serve, clients):
    server = serve(
        [
            (200, {"Content-Type": "text/html"}, "<html>hello</html>"),
            (200, {"Content-Type": "application/json"}, "[1, 2]"),
            (404, {"Content-Type": "text/plain"}, "not found"),
            json_reply(404, {"ok": False, "error": "unknown_method"}),
        ]
    )
    slack_clients = clients(server.api_url)

    answers = [slack_clients.call(BOT, "auth.test", {}) for _ in range(4)]

    assert answers == [
        {"ok": False, "error": "invalid_response"},
        {"ok": False, "error": "invalid_response"},
        {"ok": False, "error": "http_404"},
        {"ok": False, "error": "unknown_method"},
    ]


def test_method_name_stays_under_base_url(serve, clients):
    server = serve()
    slack_clients = clients(server.api_url)

    slack_clients.call(BOT, "http://elsewhere.invalid/api/auth.test", {})

    assert server.requests[0]["path"] == "/api/http%3A%2F%2Felsewhere.invalid%2Fapi%2Fauth.test"


def test_user_token_fallback_uses_pool(serve, clients):
    server = serve([json_reply(200, {"ok": False, "error": "not_in_channel"})])
    slack_clients = clients(server.api_url)
    bot = Bot("A0TEST001", Credentials(BOT_TOKEN, "xoxp-transport-test-secret"))

    answer = slack_clients.call(bot, "chat.postMessage", {"channel": "C0TEST001", "text": "hi"})

    assert answer == {"ok": True}
    assert [request["headers"]["Authorization"] for request in server.requests] == [
        f"Bearer {BOT_TOKEN}",
        "Bearer xoxp-transport-test-secret",
    ]
    assert server.accepted == 1


def test_token_not_in_any_log_line(serve, clients, no_waits, caplog):
    server = serve(
        [
            json_reply(429, {"ok": False, "error": "ratelimited"}, **{"Retry-After": "0"}),
            (503, {}, ""),
            DROP,
            json_reply(200, {"ok": False, "error": "channel_not_found"}),
            HANG,
        ]
    )
    slack_clients = clients(server.api_url, timeout=0.5)
    closed = CountingServer()
    closed.stop()
    unreachable = clients(closed.api_url)

    with caplog.at_level(logging.DEBUG):
        slack_clients.call(BOT, "auth.test", {})
        slack_clients.call(BOT, "chat.postMessage", {"channel": "C0TEST001", "text": "hi"}, fallback=False)
        slack_clients.call(BOT, "auth.test", {})
        unreachable.call(BOT, "auth.test", {})

    assert retry_lines(caplog), "no retry was logged"
    assert any("failed" in record.getMessage() for record in caplog.records)
    for record in caplog.records:
        assert BOT_TOKEN not in record.getMessage(), record.name
        assert BOT_TOKEN not in repr(record.__dict__), record.name


def test_token_whitespace_around_removed(serve, clients):
    # A token read from a file often keeps its trailing newline; slack_sdk's WebClient removed it too.
    server = serve()
    slack_clients = clients(server.api_url)
    bot = Bot("A0TEST001", Credentials(f" {BOT_TOKEN}\n"))

    answer = slack_clients.call(bot, "auth.test", {})

    assert answer == {"ok": True}
    assert server.requests[0]["headers"]["Authorization"] == f"Bearer {BOT_TOKEN}"


def test_token_with_newline_not_logged(serve, clients, caplog):
    # http.client rejects a header with a line break inside it, with an error
    # that quotes the header's value.
    server = serve()
    slack_clients = clients(server.api_url)
    bot = Bot("A0TEST001", Credentials(BOT_TOKEN.replace("-", "\n-", 1)))
    secret_part = BOT_TOKEN.split("-", 1)[1]

    with caplog.at_level(logging.DEBUG):
        answer = slack_clients.call(bot, "auth.test", {})

    assert answer["ok"] is False
    assert answer["error"] == "request_failed"
    assert secret_part not in answer["detail"]
    assert server.requests == []
    assert any("failed" in record.getMessage() for record in caplog.records)
    for record in caplog.records:
        assert secret_part not in record.getMessage(), record.name
