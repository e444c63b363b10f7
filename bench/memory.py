"""Peak resident set size of omnibot's processes: web workers and workers under load, the watcher during a large refresh.

Two measurements, each on the SQLite and the Redis backends:

1. End-to-end load: ``bench/e2e.py`` runs as a child process (by default
   with 2 worker processes); this script polls every process it starts and
   records each one's peak resident set size (``VmHWM`` in
   ``/proc/<pid>/status``, which the kernel keeps, so no peak falls between
   two polls). Processes are told apart by their command line: gunicorn's
   master and its web workers, ``omnibot worker``, the fake Slack and
   ``redis-server``.
2. Watcher refresh: ``omnibot watcher --once`` runs as its own process
   against a fake Slack that serves a generated workspace of 50,000 users and
   20,000 conversations, and its ``VmHWM`` is read until it exits.
   ``bench/watcher_refresh.py`` measures the same refresh inside one Python
   process, with tracemalloc.

Linux only (``/proc``). Run from the repository root::

    python -m bench.memory
    python -m bench.memory --backends sqlite --e2e-events 1000 --json memory.json
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import typing

from bench.common import (
    parse_backends,
    REPO,
    FakeSlackProcess,
    RedisServer,
    cpu_model,
    format_table,
    load_average,
    stop_all,
)
from bench.watcher_refresh import CONFIG as WATCHER_CONFIG
from bench.watcher_refresh import CREDENTIALS_ENV as WATCHER_CREDENTIALS
from bench.watcher_refresh import GENERATE as GENERATE_WORKSPACE

POLL_INTERVAL = 0.2


# -- /proc ---------------------------------------------------------------------


def read_status(pid: int) -> typing.Optional[typing.Dict[str, str]]:
    """Return the fields of ``/proc/<pid>/status``, or None when the process is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8") as status:
            return dict(line.rstrip("\n").split(":\t", 1) for line in status if ":\t" in line)
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None


def read_cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return cmdline.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
    except OSError:
        return ""


def children_of(pid: int) -> typing.List[int]:
    """Return the direct children of ``pid``, from ``/proc/<pid>/task/*/children``."""
    found = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as children:
                found += [int(child) for child in children.read().split()]
        except OSError:
            continue
    return found


def descendants_of(pid: int) -> typing.Dict[int, int]:
    """Return every descendant of ``pid`` mapped to its parent's pid."""
    parents = {}
    pending = [pid]
    while pending:
        parent = pending.pop()
        for child in children_of(parent):
            parents[child] = parent
            pending.append(child)
    return parents


def classify(cmdline: str, parent_cmdline: str) -> str:
    """Return the role of a process of the end-to-end run from its command line and its parent's."""
    if "gunicorn" in cmdline:
        return "web worker (gunicorn)" if "gunicorn" in parent_cmdline else "gunicorn master"
    if "omnibot worker" in cmdline:
        return "omnibot worker"
    if "omnibot watcher" in cmdline:
        return "omnibot watcher"
    if "fake_slack" in cmdline:
        return "fake Slack"
    if "redis-server" in cmdline:
        return "redis-server"
    return "other"


class PeakTracker:
    """Polls the descendants of a process and keeps each one's role and peak resident set size (kB)."""

    def __init__(self, root_pid: int):
        self.root_pid = root_pid
        self.peaks: typing.Dict[int, int] = {}
        self.roles: typing.Dict[int, str] = {}

    def poll(self) -> None:
        parents = descendants_of(self.root_pid)
        for pid, parent in parents.items():
            status = read_status(pid)
            if status is None or "VmHWM" not in status:
                continue
            if pid not in self.roles:
                self.roles[pid] = classify(read_cmdline(pid), read_cmdline(parent))
            self.peaks[pid] = max(self.peaks.get(pid, 0), int(status["VmHWM"].split()[0]))

    def by_role(self) -> typing.Dict[str, dict]:
        """Return, per role, the number of processes and the largest and smallest peak in MB."""
        roles: typing.Dict[str, typing.List[int]] = {}
        for pid, peak in self.peaks.items():
            roles.setdefault(self.roles[pid], []).append(peak)
        return {
            role: {"processes": len(peaks), "max_mb": max(peaks) / 1024, "min_mb": min(peaks) / 1024}
            for role, peaks in sorted(roles.items())
        }


# -- measurements --------------------------------------------------------------


def measure_e2e(backend: str, args, log_dir: str) -> dict:
    """Run bench/e2e.py for one backend and return the peak resident set size of each role."""
    command = [
        sys.executable, "-m", "bench.e2e",
        "--backends", backend,
        "--workers", str(args.e2e_workers),
        "--events", str(args.e2e_events),
        "--paced-seconds", str(args.e2e_paced_seconds),
    ]
    log_path = os.path.join(log_dir, f"e2e-{backend}.log")
    load = load_average()
    with open(log_path, "w", encoding="utf-8") as log:
        process = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        tracker = PeakTracker(process.pid)
        while process.poll() is None:
            tracker.poll()
            time.sleep(POLL_INTERVAL)
    if process.returncode != 0:
        raise RuntimeError(f"bench/e2e.py failed with exit status {process.returncode}; see {log_path}")

    with open(log_path, encoding="utf-8") as log:
        summary = [line.rstrip() for line in log if line.startswith(f"{backend}, ")]
    return {"backend": backend, "load": load, "roles": tracker.by_role(), "e2e_summary": summary}


def measure_watcher(backend: str, args, work_dir: str, workspace_path: str, slack: FakeSlackProcess) -> dict:
    """Run ``omnibot watcher --once`` into an empty cache and return its peak resident set size and time."""
    directory = os.path.join(work_dir, f"watcher-{backend}")
    os.makedirs(directory)
    config_path = os.path.join(directory, "omnibot.yaml")
    with open(config_path, "w", encoding="utf-8") as config:
        config.write(WATCHER_CONFIG)

    redis_server = RedisServer(directory).start() if backend == "redis" else None
    env = {name: os.environ[name] for name in ("PATH", "HOME", "LANG", "TMPDIR") if name in os.environ}
    env.update(WATCHER_CREDENTIALS)
    env.update(
        PYTHONPATH=REPO,
        CONFIG_FILE=config_path,
        OMNIBOT_DATA_DIR=os.path.join(directory, "data"),
        SLACK_API_URL=slack.api_url,
        LOG_FORMAT="json",
    )
    if redis_server:
        env["CACHE_URL"] = env["QUEUE_URL"] = redis_server.url

    load = load_average()
    log_path = os.path.join(directory, "watcher.log")
    try:
        with open(log_path, "w", encoding="utf-8") as log:
            started = time.monotonic()
            process = subprocess.Popen(
                [sys.executable, "-m", "omnibot", "watcher", "--once"], env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT
            )
            peak_kb = 0
            while process.poll() is None:
                status = read_status(process.pid)
                if status and "VmHWM" in status:
                    peak_kb = max(peak_kb, int(status["VmHWM"].split()[0]))
                time.sleep(POLL_INTERVAL / 4)
            seconds = time.monotonic() - started
    finally:
        stop_all([redis_server])
    if process.returncode != 0:
        raise RuntimeError(f"omnibot watcher --once failed with exit status {process.returncode}; see {log_path}")

    # The watcher logs one "refreshed <kind>: <n> entries ..." line per kind, which shows what the peak covers.
    with open(log_path, encoding="utf-8") as log:
        refreshed = [json.loads(line).get("message", "") for line in log if '"refreshed ' in line]
    return {"backend": backend, "load": load, "peak_mb": peak_kb / 1024, "seconds": seconds, "refreshed": refreshed}


def main(argv: typing.Optional[typing.Sequence[str]] = None) -> int:
    args = parse_arguments(argv)
    work_dir = tempfile.mkdtemp(prefix="omnibot-bench-memory-")
    print(f"host: {cpu_model()}, {os.cpu_count()} cores; Python {sys.version.split()[0]}", flush=True)
    results: dict = {"e2e": [], "watcher": []}

    try:
        for backend in args.backends:
            print(f"e2e load, {backend}: load average {load_average()}", flush=True)
            results["e2e"].append(measure_e2e(backend, args, work_dir))

        workspace_path = os.path.join(work_dir, "workspace.json")
        subprocess.run(
            [sys.executable, "-c", GENERATE_WORKSPACE, str(args.users), str(args.channels), workspace_path],
            env=dict(os.environ, PYTHONPATH=REPO),
            check=True,
        )
        slack = FakeSlackProcess(work_dir, workspace_path).start()
        try:
            for backend in args.backends:
                print(f"watcher refresh, {backend}: load average {load_average()}", flush=True)
                results["watcher"].append(measure_watcher(backend, args, work_dir, workspace_path, slack))
        finally:
            stop_all([slack])
    finally:
        if args.keep:
            print(f"logs: {work_dir}")
        else:
            shutil.rmtree(work_dir, ignore_errors=True)

    print()
    print(format_results(results, args))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as output:
            json.dump(results, output, indent=2)
    return 0


def format_results(results: dict, args) -> str:
    rows = []
    for run in results["e2e"]:
        for role, figures in run["roles"].items():
            if role == "other":
                continue
            spread = f"{figures['min_mb']:.0f}-{figures['max_mb']:.0f}" if figures["processes"] > 1 else f"{figures['max_mb']:.0f}"
            rows.append([f"e2e load, {run['backend']}", role, figures["processes"], f"{figures['max_mb']:.0f}", spread, run["load"].split()[0]])
    for run in results["watcher"]:
        rows.append([
            f"{args.users:,} users, {run['backend']}",
            f"omnibot watcher --once ({run['seconds']:.0f} s)",
            1,
            f"{run['peak_mb']:.0f}",
            f"{run['peak_mb']:.0f}",
            run["load"].split()[0],
        ])
    lines = [format_table(["measurement", "process", "count", "peak RSS MB", "per process", "load"], rows)]
    lines.append("peak RSS: VmHWM of /proc/<pid>/status, the largest over the processes of that role; load: 1-minute load average before.")
    for run in results["e2e"]:
        lines += [f"e2e {run['backend']}: {line}" for line in run["e2e_summary"]]
    for run in results["watcher"]:
        lines += [f"watcher {run['backend']}: {line}" for line in run["refreshed"]]
    return "\n".join(lines)


def parse_arguments(argv) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--backends", default="sqlite,redis", help="comma-separated: sqlite, redis (default both)")
    parser.add_argument("--e2e-workers", type=int, default=2, help="omnibot worker processes of the e2e run (default 2)")
    parser.add_argument("--e2e-events", type=int, default=2000, help="events of the e2e maximum-rate run (default 2000)")
    parser.add_argument("--e2e-paced-seconds", type=float, default=10, help="seconds of the e2e paced run (default 10)")
    parser.add_argument("--users", type=int, default=50_000, help="users of the watcher's workspace (default 50000)")
    parser.add_argument("--channels", type=int, default=20_000, help="conversations of the watcher's workspace (default 20000)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--keep", action="store_true", help="keep the logs")
    args = parser.parse_args(argv)

    args.backends = parse_backends(parser, args.backends)
    return args


if __name__ == "__main__":
    sys.exit(main())
