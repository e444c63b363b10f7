"""Helpers for omnibot's benchmarks: child processes, a fake Slack, signed Slack requests, a load generator.

Every server these helpers start listens on 127.0.0.1 and is a child of the
benchmark process, which stops it by PID. Nothing here contacts Slack.
"""

import dataclasses
import http.client
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import typing
import urllib.parse

from omnibot.signing import signature_headers

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Seconds a child process gets to exit after SIGTERM before it is killed.
STOP_TIMEOUT = 15.0


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listened on a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(predicate: typing.Callable[[], typing.Any], timeout: float, description: str, interval: float = 0.05):
    """Poll ``predicate`` until it returns a truthy value and return that value.

    Raises:
        TimeoutError: ``predicate`` stayed falsy for ``timeout`` seconds; the message contains ``description``.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:g} s waiting for {description}")


class ChildProcess:
    """A command run as a child process with its output in a log file.

    Args:
        name: A short name for messages.
        argv: The command and its arguments.
        log_path: File that receives stdout and stderr (appended).
        env: The environment; None inherits the benchmark's.
        cwd: Working directory; the repository root by default.
    """

    def __init__(self, name: str, argv: typing.Sequence[str], log_path: str, env=None, cwd: str = REPO):
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = env
        self.cwd = cwd
        self.process: typing.Optional[subprocess.Popen] = None

    def start(self) -> "ChildProcess":
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self.argv, env=self.env, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT)
        return self

    @property
    def pid(self) -> int:
        return self.process.pid

    def check_running(self) -> None:
        """Raise RuntimeError, pointing at the log, when the process has exited."""
        if self.process is None or self.process.poll() is not None:
            code = None if self.process is None else self.process.returncode
            raise RuntimeError(f"{self.name} is not running (exit status {code}); see {self.log_path}")

    def stop(self, signum: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> None:
        """Send ``signum``, wait up to ``timeout`` seconds, then SIGKILL the process."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signum)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def http_ok(url: str, timeout: float = 1.0) -> bool:
    """Return whether a GET of ``url`` on loopback returns a 2xx status."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        connection.request("GET", parts.path + (f"?{parts.query}" if parts.query else ""))
        return 200 <= connection.getresponse().status < 300
    except OSError:
        return False
    finally:
        connection.close()


# -- servers -------------------------------------------------------------------


class RedisServer(ChildProcess):
    """A ``redis-server`` on a free loopback port, without persistence unless ``extra_args`` ask for it.

    Args:
        directory: Working directory of the server and folder of its log.
        extra_args: Further ``redis-server`` options, which override the defaults.

    Raises:
        FileNotFoundError: ``redis-server`` is not on PATH.
    """

    def __init__(self, directory: str, extra_args: typing.Sequence[str] = ()):
        binary = shutil.which("redis-server")
        if binary is None:
            raise FileNotFoundError("redis-server is not on PATH; install Redis (e.g. apt-get install redis-server)")
        self.port = free_port()
        argv = [
            binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--dir", directory,
            *extra_args,
        ]
        super().__init__("redis-server", argv, os.path.join(directory, "redis.log"))
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        super().start()
        wait_for(self._answers, 10, f"redis-server on port {self.port} (see {self.log_path})")
        return self

    def _answers(self) -> bool:
        self.check_running()
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False


class FakeSlackProcess(ChildProcess):
    """omnibot's fake Slack Web API in its own process, so it does not share the benchmark's interpreter lock.

    Args:
        log_dir: Folder of its log.
        workspace: Optional workspace file; None serves the built-in test workspace.
    """

    def __init__(self, log_dir: str, workspace: typing.Optional[str] = None):
        self.port = free_port()
        argv = [sys.executable, "-m", "omnibot.fake_slack", "--port", str(self.port), "--quiet"]
        if workspace:
            argv += ["--workspace", workspace]
        super().__init__("fake Slack", argv, os.path.join(log_dir, "fake_slack.log"))
        self.url = f"http://127.0.0.1:{self.port}"
        self.api_url = self.url + "/api/"

    def start(self) -> "FakeSlackProcess":
        super().start()
        wait_for(self._answers, 15, f"the fake Slack on port {self.port} (see {self.log_path})")
        return self

    def fetch_calls(self, since: int = 0, method: typing.Optional[str] = None) -> typing.Tuple[typing.List[dict], int]:
        """Return the calls numbered ``since`` and later (optionally of one method) and the ``since`` of the next fetch.

        A call that arrives during the fetch can appear again in the next one,
        so callers that count calls should de-duplicate them.
        """
        query = {"since": since}
        if method:
            query["method"] = method
        page = self._request("GET", "/_calls?" + urllib.parse.urlencode(query))
        return page["calls"], page["next_since"]

    def clear_calls(self) -> None:
        self._request("DELETE", "/_calls")

    def _answers(self) -> bool:
        self.check_running()
        return http_ok(self.url + "/_calls?method=none")

    def _request(self, method: str, path: str) -> dict:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request(method, path)
            response = connection.getresponse()
            body = response.read()
        finally:
            connection.close()
        if response.status != 200:
            raise RuntimeError(f"fake Slack {method} {path} returned HTTP {response.status}: {body[:200]!r}")
        return json.loads(body)


def start_gunicorn(
    env: typing.Mapping[str, str],
    log_dir: str,
    args: typing.Sequence[str] = ("-w", "2", "-k", "gthread", "--threads", "4"),
    app: str = "omnibot.wsgi:app",
    health_path: str = "/healthcheck",
    python: str = sys.executable,
) -> typing.Tuple[ChildProcess, str]:
    """Start gunicorn on a free loopback port and wait until ``health_path`` returns 2xx.

    Args:
        env: The environment of the web process (CONFIG_FILE, backends, credentials).
        args: gunicorn options besides ``--bind``. The control socket is turned off,
            so benchmarks never clash with another gunicorn over its default path.
        python: The interpreter whose gunicorn runs the app, such as a peer's venv.

    Returns:
        The process and its base URL.
    """
    port = free_port()
    argv = [python, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--no-control-socket", *args, app]
    process = ChildProcess("gunicorn", argv, os.path.join(log_dir, "gunicorn.log"), env=dict(env)).start()
    url = f"http://127.0.0.1:{port}"

    def healthy():
        process.check_running()
        return http_ok(url + health_path)

    try:
        wait_for(healthy, 30, f"gunicorn on {url} (see {process.log_path})")
    except (TimeoutError, RuntimeError):
        process.stop()
        raise
    return process, url


def start_spool_forwarder(env: typing.Mapping[str, str], log_dir: str) -> ChildProcess:
    """Start ``omnibot spool-forwarder``, as config/gunicorn.conf.py starts it beside the web workers (Redis, QUEUE_SPOOL=1)."""
    argv = [sys.executable, "-m", "omnibot", "spool-forwarder"]
    return ChildProcess("spool forwarder", argv, os.path.join(log_dir, "spool-forwarder.log"), env=dict(env)).start()


def start_workers(env: typing.Mapping[str, str], log_dir: str, count: int, concurrency: int) -> typing.List[ChildProcess]:
    """Start ``count`` ``omnibot worker`` processes with ``concurrency`` threads each."""
    workers = []
    for number in range(count):
        argv = [sys.executable, "-m", "omnibot", "worker", "--concurrency", str(concurrency), "--grace-period", "5"]
        log_path = os.path.join(log_dir, f"worker{number}.log")
        workers.append(ChildProcess(f"worker {number}", argv, log_path, env=dict(env)).start())
    return workers


def stop_all(processes: typing.Iterable[typing.Optional[ChildProcess]]) -> None:
    """Send SIGTERM to every process first, then wait for each, so they stop in parallel."""
    running = [process for process in processes if process is not None and process.process is not None]
    for process in running:
        if process.process.poll() is None:
            process.process.send_signal(signal.SIGTERM)
    for process in running:
        process.stop()


# -- Slack requests ------------------------------------------------------------


def parse_backends(parser, value: str, known: typing.Sequence[str] = ("sqlite", "redis")) -> typing.List[str]:
    """Return the backends of a comma-separated ``--backends`` value; stop through ``parser`` when one is not in ``known``.

    The Redis backends (``redis`` and names that start with ``redis-``) also
    need ``redis-server`` on PATH, because each benchmark starts its own.
    """
    backends = [name.strip() for name in value.split(",") if name.strip()]
    unknown = sorted(set(backends) - set(known))
    if unknown:
        parser.error(f"unknown backend(s) {', '.join(unknown)}; use {', '.join(known)}")
    if any(name == "redis" or name.startswith("redis-") for name in backends) and shutil.which("redis-server") is None:
        parser.error("the Redis backends need redis-server on PATH; install Redis or pass --backends sqlite")
    return backends


def signed_json(body: typing.Mapping, secret: str) -> typing.Tuple[bytes, typing.Dict[str, str]]:
    """Encode ``body`` as JSON and return it with Slack's signature headers for ``secret``."""
    raw = json.dumps(body).encode("utf-8")
    headers = {"Content-Type": "application/json"}
    headers.update(signature_headers(secret, raw))
    return raw, headers


def message_event(text: str, ts: str, event_id: str, team_id: str, app_id: str, channel: str, user: str) -> dict:
    """Return an Events API ``event_callback`` body carrying one ``message`` event."""
    return {
        "team_id": team_id,
        "api_app_id": app_id,
        "type": "event_callback",
        "event_id": event_id,
        "event_time": int(float(ts)),
        "event": {
            "type": "message",
            "user": user,
            "text": text,
            "ts": ts,
            "event_ts": ts,
            "channel": channel,
            "channel_type": "channel",
        },
    }


# -- load generation -----------------------------------------------------------


@dataclasses.dataclass
class LoadResult:
    """The requests of one load run and their responses.

    Attributes:
        statuses: HTTP status count; ``0`` counts requests that failed without a response.
        started: ``time.time()`` of the first send.
        finished: ``time.time()`` when the last response arrived.
        sent: Number of requests sent.
    """

    statuses: typing.Dict[int, int]
    started: float
    finished: float
    sent: int

    @property
    def rate(self) -> float:
        """Requests per second over the run, from the first send to the last response."""
        return self.sent / max(self.finished - self.started, 1e-9)


def run_load(
    url: str,
    count: int,
    build_request: typing.Callable[[int], typing.Tuple[str, bytes, typing.Dict[str, str]]],
    senders: int,
    rate: typing.Optional[float] = None,
    timeout: float = 30.0,
    reuse_connections: bool = True,
) -> LoadResult:
    """POST ``count`` requests from ``senders`` threads, each on its own keep-alive connection.

    ``build_request(i)`` is called just before request ``i`` is sent and returns
    its path, body and headers, so a request can carry its own send time.

    Args:
        url: Base URL on loopback, such as ``http://127.0.0.1:8080``.
        rate: Requests per second to aim for, with request ``i`` due at
            ``start + i / rate`` (an open-loop schedule). None sends as fast as
            the senders can: each sends its next request when the response to the previous one arrived.
        timeout: Socket timeout of each request in seconds.
        reuse_connections: False opens a new connection for each request
            and closes it after the response, as slack_sdk's WebClient does.
    """
    parts = urllib.parse.urlsplit(url)
    next_index = [0]
    lock = threading.Lock()
    statuses: typing.Dict[int, int] = {}
    start = time.monotonic()
    started_wall = time.time()

    def take_index() -> typing.Optional[int]:
        with lock:
            index = next_index[0]
            if index >= count:
                return None
            next_index[0] += 1
            return index

    def count_status(status: int) -> None:
        with lock:
            statuses[status] = statuses.get(status, 0) + 1

    def sender():
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
        try:
            while True:
                index = take_index()
                if index is None:
                    return
                if rate:
                    delay = start + index / rate - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                path, body, headers = build_request(index)
                try:
                    connection.request("POST", path, body=body, headers=headers)
                    response = connection.getresponse()
                    response.read()
                    count_status(response.status)
                    if not reuse_connections:
                        connection.close()
                except (OSError, http.client.HTTPException):
                    count_status(0)
                    connection.close()
                    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
        finally:
            connection.close()

    threads = [threading.Thread(target=sender, name=f"load-sender-{number}", daemon=True) for number in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return LoadResult(statuses=statuses, started=started_wall, finished=time.time(), sent=count)


# -- peer venvs ----------------------------------------------------------------

# Folder of the peers' venvs; override it with this environment variable.
VENV_ROOT_VARIABLE = "OMNIBOT_BENCH_VENVS"


class PeerUnavailable(RuntimeError):
    """A peer's venv could not be created or its packages could not be installed."""


def peer_python(name: str, install_steps: typing.Sequence[typing.Sequence[str]]) -> str:
    """Return the interpreter of the venv ``name``, creating it on first use.

    Each step is a list of ``pip install`` arguments, run in order. A venv
    whose recorded steps differ from ``install_steps`` is built again, and a
    failed build leaves no venv behind, so the next run tries again.

    Raises:
        PeerUnavailable: venv creation or a pip step failed; the message ends with pip's last output lines.
    """
    root = os.environ.get(VENV_ROOT_VARIABLE) or os.path.join(os.path.expanduser("~"), ".cache", "omnibot-bench", "venvs")
    folder = os.path.join(root, name)
    python = os.path.join(folder, "bin", "python")
    marker = os.path.join(folder, "installed-steps.json")
    expected_steps = json.dumps([list(step) for step in install_steps])

    try:
        with open(marker, encoding="utf-8") as recorded:
            if recorded.read() == expected_steps:
                return python
    except OSError:
        pass

    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(root, exist_ok=True)
    commands = [[sys.executable, "-m", "venv", folder]]
    commands += [[python, "-m", "pip", "install", "--quiet", *step] for step in install_steps]
    for command in commands:
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            shutil.rmtree(folder, ignore_errors=True)
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-8:])
            raise PeerUnavailable(f"{' '.join(command[1:])} failed with exit status {done.returncode}:\n{tail}")

    with open(marker, "w", encoding="utf-8") as recorded:
        recorded.write(expected_steps)
    return python


def installed_version(python: str, distribution: str) -> str:
    """Return the version of ``distribution`` in the environment of ``python``, or ``"not installed"``."""
    code = f"import importlib.metadata as m\ntry: print(m.version({distribution!r}))\nexcept m.PackageNotFoundError: print('not installed')"
    done = subprocess.run([python, "-c", code], capture_output=True, text=True, check=False)
    return done.stdout.strip() or "unknown"


# -- the machine ---------------------------------------------------------------


def cpu_model() -> str:
    """Return the first ``model name`` of /proc/cpuinfo, or ``"unknown CPU"``."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def load_average() -> str:
    """Return the 1, 5 and 15 minute load averages as ``"1.20 0.80 0.50"``.

    On a shared machine other programs compete with a benchmark, so each
    benchmark prints this before every measurement.
    """
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


# -- reporting -----------------------------------------------------------------


def percentile(values: typing.Sequence[float], fraction: float) -> float:
    """Return the nearest-rank percentile (``fraction`` from 0 to 1) of ``values``; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(fraction * len(ordered))))
    return ordered[rank - 1]


def format_table(headers: typing.Sequence[str], rows: typing.Sequence[typing.Sequence[typing.Any]]) -> str:
    """Return a plain-text table with right-aligned columns, a header line and a rule."""
    cells = [[str(value) for value in row] for row in rows]
    widths = [max([len(header)] + [len(row[column]) for row in cells]) for column, header in enumerate(headers)]
    lines = ["  ".join(header.rjust(width) for header, width in zip(headers, widths))]
    lines.append("  ".join("-" * width for width in widths))
    lines += ["  ".join(value.rjust(width) for value, width in zip(row, widths)) for row in cells]
    return "\n".join(lines)
