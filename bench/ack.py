"""Acknowledgements per second of ``POST /api/v1/slack/event``: omnibot against bare Flask and Bolt for Python.

Contestants, each served by gunicorn with the same options
(``-w 2 -k gthread --threads 4 --reuse-port``, no access log) on 127.0.0.1:

- ``bare``: a Flask route that returns 200 and does nothing else;
- ``verifier``: Flask and slack_sdk's ``SignatureVerifier``;
- ``bolt``: Slack Bolt for Python with its Flask adapter, request
  verification on, a no-op ``message`` listener and an ``authorize``
  function that returns a fixed result (it never calls Slack). It runs in
  its own venv, with the Flask, Werkzeug, slack_sdk and gunicorn versions of omnibot's;
- ``omnibot-sqlite`` and ``omnibot-redis``: ``omnibot.wsgi:app`` with its
  defaults, which verifies the signature and puts the event on the queue,
  with its de-duplication keys, before it responds with 200. The SQLite
  run uses a fresh data directory. Its puts go through spool files: each
  event is appended to a spool file, and de-duplicated when a worker
  imports it into the queue (no worker runs here, so that import work is
  not part of the figure). The Redis run uses a fresh ``redis-server``
  with the append-only file on (``appendfsync everysec``), and one Lua
  script per event. No worker consumes the queue.
- ``omnibot-sqlite-direct``: the SQLite queue with ``QUEUE_SPOOL=0``: one
  transaction of the SQLite file per event, shared by concurrent requests.
- ``omnibot-redis-spool``: the same on Redis with ``QUEUE_SPOOL=1``: each
  event is appended to a spool file, and an ``omnibot spool-forwarder``
  process, started beside gunicorn at nice 10 as config/gunicorn.conf.py
  starts it, forwards the new lines to the Redis stream and
  de-duplicates them there. Under the full load of the run it gets less CPU
  than the web workers, so lines wait on disk: the run prints the lines
  not forwarded when wrk ends and how long the forwarder took to catch up.

Load: wrk (``-t2 -c32 -d15s`` after a 3 s warm-up) POSTs signed
``event_callback`` message events of about 1.3 KB. omnibot responds to an event
id it has seen with a duplicate response that skips the queue, so every
request must carry a fresh event. wrk's Lua has no HMAC-SHA256 to sign each
request as Slack does, so this script signs a distinct body for every request in
advance (unique ``event_id`` and message ``ts``), writes them to files, and
a wrk Lua script sends each once. If a run outlasts its bodies, wrk starts
over, omnibot takes those repeats for duplicates, and the result is flagged.
After each omnibot run the queue depth is compared with the number of
requests, which shows that every request was queued. For
``omnibot-redis-spool`` the depth is the stream length, read once the
forwarder has forwarded every spool line to Redis.

Three rounds run the contestants interleaved (A B C D E, A B C D E, ...),
each started afresh. The table gives the median and min-max of each
contestant's requests per second, its median p50 and p99 latency, and
ratios to bare Flask. The 1-minute load average before each run is
recorded, because other programs on the machine skew the figures.

Run from the repository root (wrk must be on PATH)::

    python -m bench.ack
    python -m bench.ack --rounds 1 --duration 5 --contestants bare,omnibot-sqlite
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import typing

from bench.common import (
    REPO,
    PeerUnavailable,
    RedisServer,
    cpu_model,
    format_table,
    installed_version,
    load_average,
    peer_python,
    start_gunicorn,
    start_spool_forwarder,
    stop_all,
)
from omnibot.signing import signature_headers

SIGNING_SECRET = "bench-signing-secret"
TEAM_ID = "T0BENCH01"
APP_ID = "A0BENCH01"
EVENT_PATH = "/api/v1/slack/event"

GUNICORN_ARGS = ["-w", "2", "-k", "gthread", "--threads", "4", "--reuse-port"]
CONTESTANTS = ["bare", "verifier", "bolt", "omnibot-sqlite", "omnibot-sqlite-direct", "omnibot-redis", "omnibot-redis-spool"]
REDIS_CONTESTANTS = ("omnibot-redis", "omnibot-redis-spool")
# QUEUE_SPOOL of the contestants that do not run with the default.
QUEUE_SPOOL_SETTINGS = {"omnibot-sqlite-direct": "0", "omnibot-redis-spool": "1"}

# Seconds the depth check waits for the web processes to forward their spool lines to Redis.
FORWARD_PATIENCE = 60.0
LABELS = {
    "bare": "bare Flask route returning 200",
    "verifier": "bare Flask + slack_sdk SignatureVerifier",
    "bolt": "Bolt for Python, Flask adapter, verification on, no-op listener",
    "omnibot-sqlite": "omnibot, SQLite queue through spool files (default)",
    "omnibot-sqlite-direct": "omnibot, SQLite queue, a transaction per event (QUEUE_SPOOL=0)",
    "omnibot-redis": "omnibot, Redis Streams queue and Redis cache",
    "omnibot-redis-spool": "omnibot, Redis queue through spool files (QUEUE_SPOOL=1)",
}

OMNIBOT_CONFIG = f"""
authorization:
  checks:
    - module: "omnibot.authnz:allowed_paths"
      kwargs: {{paths: ["^/api/v1/slack/"]}}
teams: {{"bench-team": "{TEAM_ID}"}}
bots: {{"bench-team": {{"benchbot": "{APP_ID}"}}}}
primary_bot: {{"bench-team": "benchbot"}}
handlers:
  message_handlers:
    - match: "echo"
      match_type: "command"
      bots: {{"bench-team": ["benchbot"]}}
      callbacks: [{{module: "omnibot.callbacks.message_callbacks:echo_callback"}}]
"""

# A message event as the Events API sends it, with blocks and authorizations,
# about 1.3 KB. EVENT_ID and TS are replaced per request.
EVENT_TEMPLATE = json.dumps(
    {
        "token": "legacy-verification-token-not-used",
        "team_id": TEAM_ID,
        "api_app_id": APP_ID,
        "event": {
            "user": "U0TEST001",
            "type": "message",
            "ts": "TS",
            "text": "<@U0BOT0001> deploy api to production after the canary looks healthy, "
            "see <https://ci.example.com/builds/12345|build 12345> and ping <!subteam^S0ONCALL|@oncall> "
            "if the error rate goes above 1% :rocket:",
            "team": TEAM_ID,
            "blocks": [
                {
                    "type": "rich_text",
                    "block_id": "Xk9dQ",
                    "elements": [
                        {
                            "type": "rich_text_section",
                            "elements": [
                                {"type": "user", "user_id": "U0BOT0001"},
                                {"type": "text", "text": " deploy api to production after the canary looks healthy, see "},
                                {"type": "link", "url": "https://ci.example.com/builds/12345", "text": "build 12345"},
                                {"type": "text", "text": " and ping "},
                                {"type": "usergroup", "usergroup_id": "S0ONCALL"},
                                {"type": "text", "text": " if the error rate goes above 1% "},
                                {"type": "emoji", "name": "rocket", "unicode": "1f680"},
                            ],
                        }
                    ],
                }
            ],
            "channel": "C0TEST001",
            "event_ts": "TS",
            "channel_type": "channel",
        },
        "type": "event_callback",
        "event_id": "EVENT_ID",
        "event_time": 1764806400,
        "authorizations": [
            {
                "enterprise_id": None,
                "team_id": TEAM_ID,
                "user_id": "U0BOT0001",
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
        "is_ext_shared_channel": False,
    }
).replace("%", "%%").replace('"TS"', '"%(ts)s"').replace('"EVENT_ID"', '"%(event_id)s"')

WRK_SCRIPT = r"""
-- Sends each pre-signed request of <prefix>-<thread number>.tsv once, in order.
-- Each line is: timestamp TAB signature TAB body.
local thread_count = 0
local threads = {}

function setup(thread)
  thread_count = thread_count + 1
  thread:set("thread_number", thread_count)
  table.insert(threads, thread)
end

function init(args)
  prepared = {}
  prepared_count = 0
  position = 0
  wrapped = 0
  for line in io.lines(args[1] .. "-" .. thread_number .. ".tsv") do
    local timestamp, signature, body = line:match("^([^\t]*)\t([^\t]*)\t(.*)$")
    prepared_count = prepared_count + 1
    prepared[prepared_count] = wrk.format("POST", args[2], {
      ["Content-Type"] = "application/json",
      ["X-Slack-Request-Timestamp"] = timestamp,
      ["X-Slack-Signature"] = signature,
    }, body)
  end
end

function request()
  position = position + 1
  if position > prepared_count then
    position = 1
    wrapped = wrapped + 1
  end
  return prepared[position]
end

function done(summary, latency, requests)
  local wrapped_total = 0
  for _, thread in ipairs(threads) do
    wrapped_total = wrapped_total + thread:get("wrapped")
  end
  local errors = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests": %d, "duration_us": %d, "status_errors": %d, "connect_errors": %d, ' ..
    '"read_errors": %d, "write_errors": %d, "timeouts": %d, "p50_us": %d, "p99_us": %d, "max_us": %d, "wrapped": %d}\n',
    summary.requests, summary.duration, errors.status, errors.connect, errors.read, errors.write, errors.timeout,
    latency:percentile(50), latency:percentile(99), latency.max, wrapped_total))
end
"""


# -- request bodies ------------------------------------------------------------


def write_bodies(prefix: str, count: int, threads: int, tag: str) -> int:
    """Write ``count`` distinct signed events to ``<prefix>-<n>.tsv``, one file per wrk thread.

    Returns:
        The size of one body in bytes.
    """
    timestamp = int(time.time())
    base = int(time.time() * 1_000_000)
    outputs = [open(f"{prefix}-{number}.tsv", "w", encoding="utf-8") for number in range(1, threads + 1)]
    size = 0
    try:
        for index in range(count):
            micros = base + index
            ts = f"{micros // 1_000_000}.{micros % 1_000_000:06d}"
            body = (EVENT_TEMPLATE % {"ts": ts, "event_id": f"Ev{tag}{index:08d}"}).encode("utf-8")
            signature = signature_headers(SIGNING_SECRET, body, timestamp)["X-Slack-Signature"]
            outputs[index % threads].write(f"{timestamp}\t{signature}\t{body.decode('utf-8')}\n")
            size = len(body)
    finally:
        for output in outputs:
            output.close()
    return size


# -- contestants ---------------------------------------------------------------


def base_environment() -> typing.Dict[str, str]:
    """Return a clean environment: no SLACK_*, CREDENTIALS_*, QUEUE_URL or other variable of this shell."""
    env = {name: os.environ[name] for name in ("PATH", "HOME", "LANG", "TMPDIR") if name in os.environ}
    env.update(PYTHONPATH=REPO, BENCH_SIGNING_SECRET=SIGNING_SECRET)
    return env


def omnibot_environment(directory: str, redis_url: typing.Optional[str]) -> typing.Dict[str, str]:
    """Return the environment of an omnibot contestant, with its config file written to ``directory``."""
    config_path = os.path.join(directory, "omnibot.yaml")
    with open(config_path, "w", encoding="utf-8") as config:
        config.write(OMNIBOT_CONFIG)
    metrics_dir = os.path.join(directory, "prometheus")
    os.makedirs(metrics_dir, exist_ok=True)

    env = base_environment()
    env.update(
        CONFIG_FILE=config_path,
        OMNIBOT_DATA_DIR=os.path.join(directory, "data"),
        # A closed loopback port: nothing on the acknowledgement path may call Slack.
        SLACK_API_URL="http://127.0.0.1:9/api/",
        LOG_FORMAT="json",
        # gunicorn with several workers needs it for /metrics, as config/gunicorn.conf.py sets it.
        PROMETHEUS_MULTIPROC_DIR=metrics_dir,
    )
    env[f"CREDENTIALS_SLACK_SIGNING_SECRET_{APP_ID}"] = SIGNING_SECRET
    env[f"CREDENTIALS_SLACK_OAUTH_BOT_TOKEN_{APP_ID}"] = "xoxb-bench-not-a-real-token"
    if redis_url:
        env["QUEUE_URL"] = redis_url
        env["CACHE_URL"] = redis_url
    return env


class Contestant:
    """One running contestant: its gunicorn, its Redis if any, and how to read its queue depth."""

    def __init__(self, name: str, directory: str, bolt_python: typing.Optional[str]):
        self.name = name
        self.directory = directory
        self.redis = None
        self.web = None
        self.forwarder = None
        self.url = None
        self.env = None
        # Set by queue_depth() for omnibot-redis-spool: lines not forwarded when the load ended, and seconds to forward them.
        self.backlog: typing.Optional[int] = None
        self.catch_up_seconds: typing.Optional[float] = None
        os.makedirs(directory, exist_ok=True)

        if name.startswith("omnibot"):
            if name in REDIS_CONTESTANTS:
                # The append-only file makes the Redis queue durable, as a production Redis would be configured.
                self.redis = RedisServer(directory, ["--appendonly", "yes", "--appendfsync", "everysec"]).start()
            self.env = omnibot_environment(directory, self.redis.url if self.redis else None)
            if name in QUEUE_SPOOL_SETTINGS:
                self.env["QUEUE_SPOOL"] = QUEUE_SPOOL_SETTINGS[name]
            python, app = sys.executable, "omnibot.wsgi:app"
        elif name == "bolt":
            self.env = base_environment()
            python, app = bolt_python, "bench.ack_apps:bolt_app()"
        else:
            self.env = base_environment()
            python, app = sys.executable, f"bench.ack_apps:{name}_app()"

        try:
            if name == "omnibot-redis-spool":
                self.forwarder = start_spool_forwarder(self.env, directory)
            self.web, self.url = start_gunicorn(self.env, directory, GUNICORN_ARGS, app=app, python=python)
        except BaseException:
            stop_all([self.forwarder])
            stop_all([self.redis])
            raise

    def queue_depth(self) -> typing.Optional[int]:
        """Return the number of queued messages of an omnibot contestant; None for the others."""
        if not self.name.startswith("omnibot"):
            return None
        from omnibot import backends

        if self.name == "omnibot-redis-spool":
            return self._forwarded_depth()
        # Any SQLite queue counts the spooled lines too.
        queue = backends.open_queue(self.env.get("QUEUE_URL"), self.env["OMNIBOT_DATA_DIR"], spool=False)
        try:
            return queue.depth()
        finally:
            queue.close()

    def _forwarded_depth(self) -> int:
        """Wait until the forwarder has forwarded every spool line, then return the stream's depth.

        The queue opened here with the spool counts the stream and the lines
        not forwarded yet, but it never forwards: its thread starts only at a
        put or a get. The one opened without the spool counts the stream alone.
        """
        from omnibot import backends

        url, data_dir = self.env["QUEUE_URL"], self.env["OMNIBOT_DATA_DIR"]
        spooled = backends.open_queue(url, data_dir, spool=True)
        stream = backends.open_queue(url, data_dir, spool=False)
        try:
            started = time.monotonic()
            deadline = started + FORWARD_PATIENCE
            while True:
                in_stream, total = stream.depth(), spooled.depth()
                if self.backlog is None:
                    self.backlog = total - in_stream
                if in_stream == total:
                    self.catch_up_seconds = time.monotonic() - started
                if in_stream == total or time.monotonic() > deadline:
                    if in_stream != total:
                        print(f"  {self.name}: {total - in_stream} spool lines not forwarded after {FORWARD_PATIENCE:g} s", flush=True)
                    return in_stream
                time.sleep(0.1)
        finally:
            stream.close()
            spooled.close()

    def stop(self) -> None:
        # The web workers first, as they forward their own last lines when they stop.
        stop_all([self.web])
        stop_all([self.forwarder, self.redis])


# -- load ----------------------------------------------------------------------


def run_wrk(url: str, script: str, prefix: str, threads: int, connections: int, seconds: float, log_path: str) -> dict:
    """Run wrk against ``url`` with the body files of ``prefix`` and return the figures its script prints.

    Raises:
        RuntimeError: wrk failed or printed no result; the message names its log.
    """
    command = [
        "wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s",
        "-s", script, url + EVENT_PATH, "--", prefix, EVENT_PATH,
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(" ".join(command) + "\n" + done.stdout + done.stderr + "\n")
    for line in done.stdout.splitlines():
        if line.startswith("BENCH_RESULT "):
            result = json.loads(line[len("BENCH_RESULT "):])
            result["rate"] = result["requests"] / (result["duration_us"] / 1e6)
            return result
    raise RuntimeError(f"wrk exited with status {done.returncode} and printed no result; see {log_path}")


def measure(name: str, round_dir: str, bodies: str, args, script: str, bolt_python) -> dict:
    """Start ``name``, warm it up, measure it with wrk, check its queue, and stop it."""
    directory = os.path.join(round_dir, name)
    load = load_average()
    print(f"  {name}: load average {load}", flush=True)
    contestant = Contestant(name, directory, bolt_python)
    log_path = os.path.join(directory, "wrk.log")
    try:
        warm = run_wrk(contestant.url, script, os.path.join(bodies, "warm"), args.threads, args.connections, args.warm_up, log_path)
        result = run_wrk(contestant.url, script, os.path.join(bodies, "main"), args.threads, args.connections, args.duration, log_path)
        depth = contestant.queue_depth()
    finally:
        contestant.stop()

    result.update(contestant=name, load=load, warm_requests=warm["requests"], warm_wrapped=warm["wrapped"], queued=depth)
    result.update(backlog=contestant.backlog, catch_up_seconds=contestant.catch_up_seconds)
    note = ""
    if depth is not None:
        note = f", queued {depth} of {warm['requests'] + result['requests']} requests"
    if contestant.backlog is not None:
        caught_up = "not within the patience" if contestant.catch_up_seconds is None else f"in {contestant.catch_up_seconds:.1f} s"
        note += f", {contestant.backlog} lines not forwarded at the end, forwarded {caught_up}"
    print(
        f"  {name}: {result['rate']:.0f} req/s, p50 {result['p50_us'] / 1000:.1f} ms, p99 {result['p99_us'] / 1000:.1f} ms, "
        f"non-2xx {result['status_errors']}, wrapped {result['wrapped']}{note}",
        flush=True,
    )
    return result


# -- report --------------------------------------------------------------------


def summarize(runs: typing.List[dict], contestants: typing.Sequence[str]) -> typing.Dict[str, dict]:
    """Return the median and range of each contestant's rate and its median latencies."""
    summary = {}
    for name in contestants:
        mine = [run for run in runs if run["contestant"] == name]
        if not mine:
            continue
        rates = [run["rate"] for run in mine]
        summary[name] = {
            "rate": statistics.median(rates),
            "rate_min": min(rates),
            "rate_max": max(rates),
            "p50_ms": statistics.median(run["p50_us"] for run in mine) / 1000,
            "p99_ms": statistics.median(run["p99_us"] for run in mine) / 1000,
            "non_2xx": sum(run["status_errors"] for run in mine),
            "socket_errors": sum(run["connect_errors"] + run["read_errors"] + run["write_errors"] + run["timeouts"] for run in mine),
            "wrapped": sum(run["wrapped"] + run["warm_wrapped"] for run in mine),
            "rounds": len(mine),
        }
    return summary


def format_summary(summary: typing.Dict[str, dict]) -> str:
    """Return the results table, then each omnibot contestant's standing against the targets."""
    bare = summary.get("bare")
    rows = []
    for name, figures in summary.items():
        ratio = f"{figures['rate'] / bare['rate']:.2f}" if bare else "-"
        rows.append([
            LABELS[name],
            f"{figures['rate']:.0f}",
            f"{figures['rate_min']:.0f}-{figures['rate_max']:.0f}",
            ratio,
            f"{figures['p50_ms']:.1f}",
            f"{figures['p99_ms']:.1f}",
            figures["non_2xx"] + figures["socket_errors"],
            figures["wrapped"],
        ])
    lines = [format_table(["contestant", "req/s", "min-max", "x bare", "p50 ms", "p99 ms", "errors", "wrapped"], rows)]

    bolt = summary.get("bolt")
    for name in ("omnibot-sqlite", "omnibot-sqlite-direct", "omnibot-redis", "omnibot-redis-spool"):
        figures = summary.get(name)
        if not figures or not bare:
            continue
        parts = [f"{figures['rate'] / bare['rate']:.2f}x bare (target 0.85)"]
        if bolt:
            parts.append(f"{figures['rate'] / bolt['rate']:.2f}x Bolt (target 1.3)")
        parts.append(f"p99 {figures['p99_ms'] / bare['p99_ms']:.2f}x bare's (target 2.0 or less)")
        lines.append(f"{name}: " + ", ".join(parts))
    lines.append("errors: non-2xx answers and socket errors; wrapped: times wrk ran out of pre-signed bodies and sent repeats.")
    return "\n".join(lines)


def describe_versions(bolt_python: typing.Optional[str]) -> str:
    versions = [f"{name} {installed_version(sys.executable, name)}" for name in ("flask", "werkzeug", "gunicorn", "slack_sdk", "redis")]
    if bolt_python:
        versions.append(f"slack-bolt {installed_version(bolt_python, 'slack_bolt')}")
    # "wrk debian/4.1.0-3+b2 [epoll] Copyright ..." and "Redis server v=7.0.15 sha=...": the version words only.
    wrk_words = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False).stdout.split()
    redis_words = subprocess.run(["redis-server", "--version"], capture_output=True, text=True, check=False).stdout.split()
    wrk_version = " ".join(wrk_words[:2]) or "wrk, version unknown"
    redis_version = "redis-server " + (redis_words[2].removeprefix("v=") if len(redis_words) > 2 else "version unknown")
    return ", ".join(versions) + f"; {wrk_version}; {redis_version}"


def bolt_install_steps() -> typing.List[typing.List[str]]:
    """Return the pip steps of the Bolt venv: slack-bolt 1.30.0 and the versions omnibot's venv has of the shared packages."""
    pins = [f"{name}=={installed_version(sys.executable, name)}" for name in ("flask", "werkzeug", "gunicorn", "slack_sdk")]
    return [["slack-bolt==1.30.0", *pins]]


def main(argv: typing.Optional[typing.Sequence[str]] = None) -> int:
    args = parse_arguments(argv)
    if shutil.which("wrk") is None:
        print("wrk is not on PATH; install it (apt-get install wrk). This benchmark needs wrk's Lua scripting.", file=sys.stderr)
        return 2

    bolt_python = None
    if "bolt" in args.contestants:
        try:
            bolt_python = peer_python("slack-bolt-1.30.0", bolt_install_steps())
        except PeerUnavailable as error:
            print(f"Bolt for Python could not be installed, so it is left out:\n{error}", flush=True)
            args.contestants.remove("bolt")

    print(f"host: {cpu_model()}, {os.cpu_count()} cores; Python {sys.version.split()[0]}", flush=True)
    print(f"versions: {describe_versions(bolt_python)}", flush=True)
    print(f"gunicorn {' '.join(GUNICORN_ARGS)}; wrk -t{args.threads} -c{args.connections} -d{args.duration:g}s after {args.warm_up:g} s", flush=True)

    work_dir = tempfile.mkdtemp(prefix="omnibot-bench-ack-")
    script = os.path.join(work_dir, "signed_events.lua")
    with open(script, "w", encoding="utf-8") as output:
        output.write(WRK_SCRIPT)

    runs = []
    try:
        for number in range(1, args.rounds + 1):
            round_dir = os.path.join(work_dir, f"round{number}")
            bodies = os.path.join(round_dir, "bodies")
            os.makedirs(bodies)
            # Signed now, so every timestamp stays within Slack's 5 minutes during the round.
            write_bodies(os.path.join(bodies, "warm"), args.warm_up_requests, args.threads, f"W{number}")
            size = write_bodies(os.path.join(bodies, "main"), args.requests, args.threads, f"M{number}")
            print(f"round {number}: {args.requests} signed bodies of {size} bytes", flush=True)
            for name in args.contestants:
                runs.append(measure(name, round_dir, bodies, args, script, bolt_python))
            shutil.rmtree(bodies, ignore_errors=True)
    finally:
        if not args.keep:
            shutil.rmtree(work_dir, ignore_errors=True)

    summary = summarize(runs, args.contestants)
    print()
    print(format_summary(summary))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as output:
            json.dump({"runs": runs, "summary": summary, "settings": vars(args)}, output, indent=2)
    return 0


def parse_arguments(argv) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--contestants", default=",".join(CONTESTANTS), help=f"comma-separated, from {', '.join(CONTESTANTS)} (default all)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--duration", type=float, default=15, help="seconds of each measured wrk run (default 15)")
    parser.add_argument("--warm-up", type=float, default=3, help="seconds of the wrk warm-up before each run (default 3)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    parser.add_argument("--requests", type=int, default=200_000, help="distinct signed bodies per measured run (default 200000)")
    parser.add_argument("--warm-up-requests", type=int, default=50_000, help="distinct signed bodies per warm-up (default 50000)")
    parser.add_argument("--json", help="also write every run and the summary to this JSON file")
    parser.add_argument("--keep", action="store_true", help="keep the logs and data directory")
    args = parser.parse_args(argv)

    args.contestants = [name.strip() for name in args.contestants.split(",") if name.strip()]
    unknown = sorted(set(args.contestants) - set(CONTESTANTS))
    if unknown:
        parser.error(f"unknown contestant(s) {', '.join(unknown)}; choose from {', '.join(CONTESTANTS)}")
    redis_contestants = [name for name in args.contestants if name in REDIS_CONTESTANTS]
    if redis_contestants and shutil.which("redis-server") is None:
        parser.error(f"{', '.join(redis_contestants)} need redis-server on PATH; install Redis or leave them out")
    return args


if __name__ == "__main__":
    sys.exit(main())
