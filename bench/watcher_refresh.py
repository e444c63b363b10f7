"""Benchmark one full watcher refresh of a large fake workspace: time and peak memory.

Usage::

    python bench/watcher_refresh.py [--users 50000] [--channels 20000]
                                    [--page-size 1000] [--cache-url URL]

A child process writes the generated workspace to a JSON file, and a fake
Slack (``python -m omnibot.fake_slack``) serves it from another child process
on 127.0.0.1, so this process holds only what the watcher itself holds. The
refresh runs twice, each time into an empty cache: once for the time, and
once under ``tracemalloc`` for the peak of Python allocations (tracing slows
the run down). The maximum resident set size of this process is printed
after each run.

Without ``--cache-url`` the cache is a SQLite file in a temporary directory.
A ``redis://`` URL writes under a unique key prefix that is deleted afterwards.
"""

import argparse
import logging
import os
import platform
import resource
import socket
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid

import requests

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from omnibot.backends.sqlite_cache import SqliteCache  # noqa: E402
from omnibot.config import load_config_text  # noqa: E402
from omnibot.runtime import Runtime  # noqa: E402
from omnibot.settings import Settings  # noqa: E402
from omnibot.watcher import Outcome, Watcher  # noqa: E402

# Placeholders for the fake Slack, which accepts any token. A bot without a
# signing secret (or verification token) is left out of the config.
CREDENTIALS_ENV = {
    "CREDENTIALS_SLACK_OAUTH_BOT_TOKEN_A0TEST001": "xoxb-bench-token",
    "CREDENTIALS_SLACK_SIGNING_SECRET_A0TEST001": "bench-signing-secret",
}

CONFIG = """
teams:
  "test-team": "T0TEST001"
bots:
  "test-team":
    "testbot": "A0TEST001"
primary_bot:
  "test-team": "testbot"
"""

GENERATE = (
    "import json, sys\n"
    "from omnibot.fake_slack import generate_workspace\n"
    "with open(sys.argv[3], 'w', encoding='utf-8') as out:\n"
    "    json.dump(generate_workspace(int(sys.argv[1]), int(sys.argv[2])), out)\n"
)


class RefreshLog(logging.Handler):
    """Collects the watcher's "refreshed <kind>" lines."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.lines = []

    def emit(self, record):
        if record.getMessage().startswith("refreshed "):
            self.lines.append(record.getMessage())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=50_000, help="users in the workspace (default 50000)")
    parser.add_argument("--channels", type=int, default=20_000, help="conversations in the workspace (default 20000)")
    parser.add_argument("--page-size", type=int, default=1000, help="limit of each list call (default 1000)")
    parser.add_argument("--cache-url", help="redis://host:port/db; default: a SQLite file in a temporary directory")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="omnibot-bench-") as folder:
        workspace_path = os.path.join(folder, "workspace.json")
        env = dict(os.environ, PYTHONPATH=REPO)
        subprocess.run(
            [sys.executable, "-c", GENERATE, str(args.users), str(args.channels), workspace_path], env=env, check=True
        )
        port = _free_port()
        fake = subprocess.Popen(
            [sys.executable, "-m", "omnibot.fake_slack", "--port", str(port), "--workspace", workspace_path, "--quiet"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            api_url = f"http://127.0.0.1:{port}/api/"
            _wait_for(api_url)
            print(f"workspace: {args.users} users, {args.channels} conversations, {os.path.getsize(workspace_path) / 1e6:.1f} MB of JSON")
            print(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs; page size {args.page_size}")
            print(f"resident set size before the refresh: {_current_rss_mb():.0f} MB")

            seconds, lines, _, max_rss = _refresh(api_url, folder, "timed", args, trace=False)
            print(f"refresh time: {seconds:.1f} s")
            for line in lines:
                print(f"  {line}")
            print(f"maximum resident set size after the timed run: {max_rss:.0f} MB")

            seconds, _, peak, max_rss = _refresh(api_url, folder, "traced", args, trace=True)
            print(f"peak Python allocations during the refresh (tracemalloc): {peak / 1e6:.1f} MB (traced run {seconds:.1f} s)")
            print(f"maximum resident set size after the traced run: {max_rss:.0f} MB (tracemalloc's own records included)")
        finally:
            fake.terminate()
            fake.wait(timeout=15)
    return 0


def _refresh(api_url, folder, name, args, trace):
    """Refresh every kind into an empty cache.

    Returns:
        (seconds, the watcher's "refreshed" log lines, peak traced bytes or
        None, maximum resident set size in MB right after the refresh).
    """
    settings = Settings(slack_api_url=api_url, data_dir=folder, environ=CREDENTIALS_ENV)
    config = load_config_text(CONFIG, environ=CREDENTIALS_ENV)
    cache, cleanup = _open_cache(args.cache_url, os.path.join(folder, f"{name}.db"))
    runtime = Runtime(settings, config, cache=cache)
    log = RefreshLog()
    peak = None
    logging.getLogger("omnibot.watcher").addHandler(log)
    logging.getLogger("omnibot.watcher").setLevel(logging.INFO)
    try:
        if trace:
            tracemalloc.start()
        started = time.perf_counter()
        outcomes = Watcher(runtime, page_size=args.page_size).run_once()
        seconds = time.perf_counter() - started
        max_rss = _max_rss_mb()
        if trace:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
    finally:
        logging.getLogger("omnibot.watcher").removeHandler(log)
        cleanup()
        cache.close()

    failed = {key: outcome for key, outcome in outcomes.items() if outcome is not Outcome.REFRESHED}
    if failed:
        raise SystemExit(f"the refresh did not complete: {failed}")
    return seconds, log.lines, peak, max_rss


def _open_cache(url, sqlite_path):
    if not url:
        return SqliteCache(sqlite_path), lambda: None

    from omnibot.backends.redis_cache import RedisCache
    from omnibot.backends.redis_connection import create_client

    name = f"bench-{uuid.uuid4().hex}"
    cache = RedisCache(create_client(url), prefix=f"omnibot:{{{name}}}:")

    def delete_keys():
        client = create_client(url)
        try:
            batch = []
            for key in client.scan_iter(match=f"*{{{name}}}*", count=1000):
                batch.append(key)
                if len(batch) == 1000:
                    client.delete(*batch)
                    batch = []
            if batch:
                client.delete(*batch)
        finally:
            client.close()

    return cache, delete_keys


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for(api_url: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.post(api_url + "auth.test", timeout=2).ok:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"the fake Slack at {api_url} did not respond within {timeout:.0f} s; is the port free?")


def _max_rss_mb() -> float:
    """Return the maximum resident set size of this process so far, in MB (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _current_rss_mb() -> float:
    """Return the current resident set size in MB (Linux /proc), or 0 where it cannot be read."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            pages = int(statm.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 1e6
    except (OSError, ValueError, IndexError):
        return 0.0


if __name__ == "__main__":
    sys.exit(main())
