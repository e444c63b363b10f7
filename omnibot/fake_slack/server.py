"""The fake Slack HTTP server and its Python API, :class:`FakeSlack`."""

import copy
import http.server
import logging
import signal
import socket
import threading

from omnibot.fake_slack.app import FakeSlackApp, HttpRequest, json_response
from omnibot.fake_slack.calls import CallLog
from omnibot.fake_slack.faults import Fault, FaultRegistry
from omnibot.fake_slack.state import WorkspaceState
from omnibot.fake_slack.workspace import default_workspace, load_workspace, normalize_workspace

logger = logging.getLogger(__name__)

# Requests with a larger body are rejected with 413.
MAX_BODY_BYTES = 10 * 1024 * 1024

# Seconds an idle keep-alive connection stays open before its thread ends.
IDLE_CONNECTION_TIMEOUT = 300

# Seconds stop() waits for each connection thread and for the accept loop.
STOP_TIMEOUT = 5.0

# Seconds between the accept loop's checks for a stop request. stop() takes
# up to this long, and test suites stop one server per test.
POLL_INTERVAL = 0.01


class _BodyError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class _RequestHandler(http.server.BaseHTTPRequestHandler):
    """Adapts one HTTP/1.1 connection to :meth:`FakeSlackApp.handle`."""

    protocol_version = "HTTP/1.1"
    server_version = "omnibot-fake-slack"
    sys_version = ""
    timeout = IDLE_CONNECTION_TIMEOUT

    # Nagle's algorithm can hold a small response back until the client
    # acknowledges the previous segment, which the client may delay.
    disable_nagle_algorithm = True

    # Buffer the status line, headers and body so they leave in one write.
    wbufsize = 64 * 1024

    def do_GET(self):
        self._serve()

    def do_POST(self):
        self._serve()

    def do_DELETE(self):
        self._serve()

    def do_PUT(self):
        self._serve()

    def do_PATCH(self):
        self._serve()

    def _serve(self) -> None:
        try:
            body = self._read_body()
        except _BodyError as exc:
            logger.info("rejected %s %s from %s: %s", self.command, self.path, self.client_address[0], exc)
            self.close_connection = True
            self._send(json_response(exc.status, {"ok": False, "error": "invalid_request", "detail": str(exc)}))
            return

        request = HttpRequest(self.command, self.path, self.headers, body)
        try:
            response = self.server.app.handle(request)
        except Exception:  # noqa: BLE001 - a bug in one method must not leave the request without a response
            logger.exception("fake Slack failed to handle %s %s", self.command, self.path)
            response = json_response(500, {"ok": False, "error": "internal_error"})

        if response.delay > 0 and self.server.stopping.wait(response.delay):
            # The server is stopping, so the delayed response is dropped and the connection closed.
            self.close_connection = True
            return
        self._send(response)

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._read_chunked_body()

        length_text = self.headers.get("Content-Length")
        if not length_text:
            return b""
        try:
            length = int(length_text)
        except ValueError as exc:
            raise _BodyError(400, f"invalid Content-Length {length_text!r}") from exc
        if length < 0:
            raise _BodyError(400, f"invalid Content-Length {length_text!r}")
        if length > MAX_BODY_BYTES:
            raise _BodyError(413, f"the body of {length} bytes exceeds the maximum of {MAX_BODY_BYTES}")
        return self.rfile.read(length)

    def _read_chunked_body(self) -> bytes:
        chunks = []
        total = 0
        while True:
            size_line = self.rfile.readline(1024)
            try:
                size = int(size_line.split(b";", 1)[0].strip(), 16)
            except ValueError as exc:
                raise _BodyError(400, f"invalid chunk size line {size_line[:40]!r}") from exc

            if size == 0:
                # Skip the optional trailer section up to its empty line.
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(chunks)

            total += size
            if total > MAX_BODY_BYTES:
                raise _BodyError(413, f"the chunked body exceeds the maximum of {MAX_BODY_BYTES} bytes")
            chunks.append(self.rfile.read(size))
            self.rfile.readline(1024)

    def _send(self, response) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(response.body)

    def log_message(self, format, *args):  # noqa: A002 - the name is fixed by BaseHTTPRequestHandler
        logger.debug("%s " + format, self.address_string(), *args)


class _HttpServer(http.server.ThreadingHTTPServer):
    """A thread-per-connection HTTP server that can close its open connections on stop."""

    daemon_threads = True
    block_on_close = False

    # The listen backlog. socketserver's default of 5 overflows when many
    # clients connect at once, and Linux then drops the SYN, which the client
    # resends only after about a second.
    request_queue_size = 1024

    def __init__(self, address: tuple, app: FakeSlackApp):
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _RequestHandler)
        self.app = app
        self.stopping = threading.Event()
        self._connections = {}
        self._connections_lock = threading.Lock()

    def process_request(self, request, client_address):
        thread = threading.Thread(
            target=self._process_connection,
            args=(request, client_address),
            name=f"fake-slack-connection-{client_address[1]}",
            daemon=True,
        )
        with self._connections_lock:
            self._connections[request] = thread
        thread.start()

    def _process_connection(self, request, client_address):
        try:
            self.process_request_thread(request, client_address)
        finally:
            with self._connections_lock:
                self._connections.pop(request, None)

    def handle_error(self, request, client_address):
        # Clients that disconnect early, and connections closed by stop(),
        # end up here. They are normal for a test server.
        logger.debug("connection from %s ended with an error", client_address, exc_info=True)

    def close_connections(self, timeout: float) -> None:
        """Shut down every open connection and wait for its thread to end."""
        with self._connections_lock:
            connections = list(self._connections.items())

        for connection, _ in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # The client already closed it.

        for _, thread in connections:
            thread.join(timeout)
            if thread.is_alive():
                logger.warning("fake Slack connection thread %s did not end within %s s", thread.name, timeout)


class FakeSlack:
    """A local stand-in for the Slack Web API that records every call.

    Args:
        workspace: The workspace dict to serve (see
            :mod:`omnibot.fake_slack.workspace`). None serves the placeholder
            workspace of :func:`~omnibot.fake_slack.workspace.default_workspace`.
        host: The address to listen on. Keep the loopback default unless
            other machines must reach the fake.
        port: The TCP port. 0 picks a free port when the server starts.
        verbose: Print one line per recorded call to standard output.

    Raises:
        WorkspaceError: The workspace is malformed.

    Attributes:
        state: The live :class:`~omnibot.fake_slack.state.WorkspaceState`,
            including messages posted so far.
    """

    def __init__(self, workspace: dict | None = None, host: str = "127.0.0.1", port: int = 0, verbose: bool = False):
        self.state = WorkspaceState(normalize_workspace(workspace if workspace is not None else default_workspace()))
        self._calls = CallLog()
        self._faults = FaultRegistry()
        self._app = FakeSlackApp(self.state, self._calls, self._faults, verbose)
        self._host = host
        self._port = port

        self._server = None
        self._thread = None
        self._lifecycle_lock = threading.Lock()
        self._stop_requested = threading.Event()

    @classmethod
    def from_file(cls, path, **kwargs) -> "FakeSlack":
        """Create a fake that serves the workspace file at ``path`` (YAML or JSON).

        Raises:
            WorkspaceError: The file cannot be read or is malformed.
        """
        return cls(load_workspace(path), **kwargs)

    def start(self) -> "FakeSlack":
        """Listen and serve requests from a background thread. Return self.

        Raises:
            RuntimeError: The server is already running.
            OSError: The address cannot be bound, for example because the port is in use.
        """
        with self._lifecycle_lock:
            if self._server is not None:
                raise RuntimeError(f"the fake Slack server is already running at {self.url}")

            server = _HttpServer((self._host, self._port), self._app)
            thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": POLL_INTERVAL},
                name="fake-slack-server",
                daemon=True,
            )
            self._server = server
            self._thread = thread
            self._stop_requested.clear()
            thread.start()

        logger.info("fake Slack listening on %s", self.url)
        return self

    def stop(self) -> None:
        """Stop serving, close open connections and free the port. Does nothing when not running."""
        with self._lifecycle_lock:
            server, thread = self._server, self._thread
            if server is None:
                return

            server.stopping.set()
            server.shutdown()
            server.close_connections(STOP_TIMEOUT)
            server.server_close()
            thread.join(STOP_TIMEOUT)
            self._server = None
            self._thread = None
            self._stop_requested.set()

        logger.info("fake Slack stopped")

    def serve_forever(self) -> None:
        """Serve in the foreground until SIGTERM, SIGINT or :meth:`stop` from another thread.

        Starts the server when it is not running yet, and stops it before
        returning. Signal handlers are installed only when called from the
        main thread, and the previous handlers are restored afterwards.
        """
        if self._server is None:
            self.start()

        previous_handlers = {}
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                previous_handlers[signum] = signal.signal(signum, self._on_stop_signal)

        try:
            # A timeout keeps the wait responsive to signals on every platform.
            while not self._stop_requested.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            for signum, handler in previous_handlers.items():
                signal.signal(signum, handler)
            self.stop()

    def _on_stop_signal(self, signum, frame):
        logger.info("fake Slack received signal %s, stopping", signum)
        self._stop_requested.set()

    def __enter__(self) -> "FakeSlack":
        if self._server is None:
            self.start()
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The base URL, such as ``http://127.0.0.1:54321``.

        Raises:
            RuntimeError: The server is not running.
        """
        server = self._server
        if server is None:
            raise RuntimeError("the fake Slack server is not running; call start() first")

        host, port = server.server_address[:2]
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{port}"

    @property
    def api_url(self) -> str:
        """The Web API base URL, ``url + "/api/"``: the value for ``SLACK_API_URL``."""
        return self.url + "/api/"

    def hook_url(self, name: str = "hook") -> str:
        """Return a ``response_url`` that posts to this server, ``url + "/hooks/" + name``."""
        return f"{self.url}/hooks/{name.lstrip('/')}"

    def calls(self, method: str | None = None) -> list:
        """Return copies of the recorded calls in arrival order, optionally only those of one method.

        Hook posts have the method ``response_url``.
        """
        return copy.deepcopy(self._calls.select(method=method))

    def clear_calls(self) -> None:
        """Forget every recorded call."""
        self._calls.clear()

    def wait_for_calls(self, method: str, count: int, timeout: float = 10.0) -> list:
        """Wait until ``count`` calls of ``method`` were recorded and return all calls of that method.

        Raises:
            AssertionError: Fewer calls arrived within ``timeout`` seconds. The
                message lists every call recorded.
        """
        return self._calls.wait_for(method, count, timeout)

    def add_fault(self, method, status=None, error=None, retry_after=None, times=1, rate=None, delay=None) -> None:
        """Make the next calls of ``method`` fail or slow down.

        See :class:`~omnibot.fake_slack.faults.Fault` for the fields.
        Faults apply in the order they were added.

        Raises:
            ValueError: A field is out of range, or none of status, error and delay is set.
        """
        fault = Fault(
            method=method,
            status=status,
            error=error,
            retry_after=retry_after,
            times=times,
            rate=rate,
            delay=delay,
        )
        self._faults.add(fault)

    def clear_faults(self) -> None:
        """Remove every injected fault."""
        self._faults.clear()
