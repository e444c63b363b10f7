"""End-to-end events per second and latency: a signed Slack event in, a ``chat.postMessage`` out.

Each measurement starts its own processes on 127.0.0.1: gunicorn for the web
tier, 1 or more ``omnibot worker`` processes, a fresh SQLite data directory
(``sqlite``, with its default spool files, and ``sqlite-direct`` with
``QUEUE_SPOOL=0``) or a fresh
``redis-server`` (``redis``, and ``redis-spool`` with ``QUEUE_SPOOL=1``
and an ``omnibot spool-forwarder`` process, as config/gunicorn.conf.py
starts it), and one fake Slack process shared by all runs.
The load generator POSTs signed ``message`` events to
``/api/v1/slack/event``; an ``echo`` handler replies to each with a
``chat.postMessage`` whose text carries the event's number and its send
time. The latency of an event runs from that send time to the time the
fake Slack recorded the call. All processes share one host, so the load
generator, omnibot, Redis and the fake Slack compete for the same cores.

For each backend and worker count the benchmark runs:

1. a warm-up, which fills the Slack data cache;
2. a maximum-rate run: ``--events`` events from ``--senders`` threads as
   fast as the web tier answers. Its rate is events divided by the time
   from the first send to the last ``chat.postMessage``;
3. a run at ``--load-fraction`` (80 %) of that rate for ``--paced-seconds``
   on an open-loop schedule, whose latencies show omnibot when it is not saturated.

The fake Slack alone, driven by the same load generator, gives the ceiling.

Run from the repository root::

    python -m bench.e2e
    python -m bench.e2e --backends redis --workers 1,2 --events 1000 --json results.json
"""

import argparse
import dataclasses
import json
import os
import platform
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
    format_table,
    message_event,
    percentile,
    run_load,
    signed_json,
    start_gunicorn,
    start_spool_forwarder,
    start_workers,
    stop_all,
    wait_for,
)

SIGNING_SECRET = "bench-signing-secret"
BOT_TOKEN = "xoxb-bench-bot-token"

# Identities of the fake Slack's built-in workspace.
TEAM_ID = "T0TEST001"
APP_ID = "A0TEST001"
BOT_USER = "U0BOT0001"
CHANNEL = "C0TEST001"
USER = "U0TEST001"

CONFIG = f"""
authorization:
  checks:
    - module: "omnibot.authnz:allowed_paths"
      kwargs: {{paths: ["^/api/v1/slack/event$"]}}
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

EVENT_PATH = "/api/v1/slack/event"

WARM_UP_EVENTS = 100

# QUEUE_SPOOL of the backends that do not run with the default.
QUEUE_SPOOL_SETTINGS = {"sqlite-direct": "0", "redis-spool": "1"}
BACKENDS = ("sqlite", "sqlite-direct", "redis", "redis-spool")


@dataclasses.dataclass
class RunResult:
    """One load run measured end to end.

    Attributes:
        events: Events sent.
        accepted: Events that got HTTP 200.
        posted: Distinct events whose chat.postMessage reached the fake Slack.
        duplicates: Extra chat.postMessage calls for events already posted.
        accept_rate: Events per second that the web tier responded to.
        rate: Events per second from the first send to the last post.
        p50_ms: Median latency from send to post, in milliseconds.
        p99_ms: 99th percentile of that latency, in milliseconds.
        target_rate: The paced rate aimed at; None for a maximum-rate run.
    """

    events: int
    accepted: int
    posted: int
    duplicates: int
    accept_rate: float
    rate: float
    p50_ms: float
    p99_ms: float
    target_rate: typing.Optional[float] = None


class PostCollector:
    """An incremental reader of the fake Slack's chat.postMessage calls of one run.

    Args:
        slack: The fake Slack.
        run: The run's text prefix.
    """

    def __init__(self, slack: FakeSlackProcess, run: str):
        self.slack = slack
        self.prefix = f"{run}-"
        self.received: typing.Dict[str, typing.Tuple[float, float]] = {}
        self.duplicates = 0
        self._since = 0
        self._seen_calls: typing.Set[int] = set()

    def poll(self) -> int:
        """Fetch new calls and return how many distinct events were posted so far."""
        calls, next_since = self.slack.fetch_calls(self._since, "chat.postMessage")
        for call in calls:
            # A call fetched twice (it arrived during the previous fetch) is the same object in the log.
            key = hash((call["time"], json.dumps(call["args"], sort_keys=True)))
            if key in self._seen_calls:
                continue
            self._seen_calls.add(key)
            self._record(call)
        self._since = next_since
        return len(self.received)

    def _record(self, call: dict) -> None:
        text = call["args"].get("text")
        if not isinstance(text, str) or not text.startswith(self.prefix):
            return
        name, _, sent = text.partition(" ")
        if name in self.received:
            self.duplicates += 1
            return
        self.received[name] = (float(sent), float(call["time"]))


def main(argv: typing.Optional[typing.Sequence[str]] = None) -> int:
    args = parse_arguments(argv)
    work_dir = tempfile.mkdtemp(prefix="omnibot-bench-e2e-")
    print(describe_host(), flush=True)
    print(f"logs and data: {work_dir}{'' if args.keep else ' (deleted at the end; pass --keep to keep them)'}", flush=True)

    slack = FakeSlackProcess(work_dir).start()
    results = {"host": describe_host(), "settings": vars(args), "runs": []}
    try:
        ceiling = measure_ceiling(slack, args)
        print(f"fake Slack alone: {ceiling:.0f} chat.postMessage calls/s with {args.senders} senders", flush=True)
        results["fake_slack_ceiling"] = ceiling
        per_call = measure_ceiling(slack, args, reuse_connections=False)
        print(f"fake Slack alone, one connection per call: {per_call:.0f} chat.postMessage calls/s", flush=True)
        results["fake_slack_ceiling_one_connection_per_call"] = per_call

        for backend in args.backends:
            for workers in args.workers:
                cell = measure_cell(slack, backend, workers, args, work_dir)
                results["runs"].append(cell)
                print_cell(cell)
    finally:
        stop_all([slack])

    print()
    print(format_results(results))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as output:
            json.dump(results, output, indent=2)
    if not args.keep:
        shutil.rmtree(work_dir, ignore_errors=True)
    return 0


def parse_arguments(argv) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument(
        "--backends",
        default=",".join(BACKENDS),
        help=(
            "comma-separated: sqlite (through spool files, the default), sqlite-direct (QUEUE_SPOOL=0), "
            "redis, redis-spool (QUEUE_SPOOL=1) (default all four)"
        ),
    )
    parser.add_argument("--workers", default="1,2,4", help="comma-separated worker process counts (default 1,2,4)")
    parser.add_argument("--worker-threads", type=int, default=10, help="threads per worker process (default 10)")
    parser.add_argument(
        "--gunicorn-args",
        default="-w 2 -k gthread --threads 4",
        help="gunicorn options of the web tier (default: -w 2 -k gthread --threads 4)",
    )
    parser.add_argument(
        "--events",
        type=int,
        default=8000,
        help="events of the maximum-rate run (default 8000: long enough that the workers, not the web tier's burst, set the rate)",
    )
    parser.add_argument("--senders", type=int, default=16, help="load generator threads (default 16)")
    parser.add_argument("--load-fraction", type=float, default=0.8, help="paced rate as a fraction of the max (default 0.8)")
    parser.add_argument("--paced-seconds", type=float, default=10.0, help="length of the paced run in seconds (default 10)")
    parser.add_argument("--ceiling-calls", type=int, default=5000, help="calls of the fake Slack ceiling run (default 5000)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--keep", action="store_true", help="keep the logs and data directory")
    args = parser.parse_args(argv)

    args.backends = parse_backends(parser, args.backends, known=BACKENDS)
    try:
        args.workers = [int(count) for count in args.workers.split(",") if count.strip()]
    except ValueError:
        parser.error(f"--workers must be comma-separated integers, got {args.workers!r}")
    if not 0 < args.load_fraction <= 1:
        parser.error(f"--load-fraction must be in (0, 1], got {args.load_fraction}")
    return args


def measure_ceiling(slack: FakeSlackProcess, args, reuse_connections: bool = True) -> float:
    """Return the chat.postMessage calls per second the fake Slack records with nothing else running.

    ``reuse_connections=False`` opens one connection per call, as slack_sdk's
    ``WebClient`` does (omnibot used it before it pooled its connections), which
    costs the fake Slack a thread and a connection per call.
    """
    slack.clear_calls()
    headers = {"Content-Type": "application/json; charset=utf-8", "Authorization": f"Bearer {BOT_TOKEN}"}

    def build(index):
        body = json.dumps({"channel": CHANNEL, "text": f"ceiling-{index}"}).encode()
        return "/api/chat.postMessage", body, headers

    load = run_load(slack.url, args.ceiling_calls, build, args.senders, reuse_connections=reuse_connections)
    calls, _ = slack.fetch_calls(0, "chat.postMessage")
    slack.clear_calls()
    times = [call["time"] for call in calls]
    if len(times) < 2:
        raise RuntimeError(f"the fake Slack recorded {len(times)} of {args.ceiling_calls} ceiling calls")
    return len(times) / max(max(times) - load.started, 1e-9)


def measure_cell(slack: FakeSlackProcess, backend: str, workers: int, args, work_dir: str) -> dict:
    """Start omnibot on ``backend`` with ``workers`` worker processes, measure, and stop it."""
    cell_dir = os.path.join(work_dir, f"{backend}-{workers}")
    os.makedirs(cell_dir)
    print(f"\n{backend}, {workers} worker(s): starting", flush=True)

    load_before = os.getloadavg()[0]
    redis_server = RedisServer(cell_dir).start() if backend.startswith("redis") else None
    env = omnibot_environment(cell_dir, slack.api_url, redis_server.url if redis_server else None)
    if backend in QUEUE_SPOOL_SETTINGS:
        env["QUEUE_SPOOL"] = QUEUE_SPOOL_SETTINGS[backend]
    web = None
    forwarder = None
    worker_processes = []
    try:
        if backend == "redis-spool":
            forwarder = start_spool_forwarder(env, cell_dir)
        web, url = start_gunicorn(env, cell_dir, args.gunicorn_args.split())
        worker_processes = start_workers(env, cell_dir, workers, args.worker_threads)
        sender = EventSender(url)

        run_events(slack, sender, "warmup", WARM_UP_EVENTS, args.senders, None, [web, *worker_processes])
        maximum = run_events(slack, sender, "max", args.events, args.senders, None, [web, *worker_processes])
        target = maximum.rate * args.load_fraction
        paced_events = max(1, int(target * args.paced_seconds))
        paced = run_events(slack, sender, "paced", paced_events, args.senders, target, [web, *worker_processes])
    finally:
        stop_all([web, *worker_processes])
        stop_all([forwarder, redis_server])

    return {
        "backend": backend,
        "workers": workers,
        "max": dataclasses.asdict(maximum),
        "paced": dataclasses.asdict(paced),
        # Other programs on the host skew the figures; a load above the core count means they competed.
        "load_average_before": load_before,
        "load_average_after": os.getloadavg()[0],
    }


def omnibot_environment(cell_dir: str, slack_api_url: str, redis_url: typing.Optional[str]) -> typing.Dict[str, str]:
    """Return the environment of the web and worker processes of one measurement."""
    config_path = os.path.join(cell_dir, "omnibot.yaml")
    with open(config_path, "w", encoding="utf-8") as config:
        config.write(CONFIG)

    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("CREDENTIALS_SLACK_") and name not in ("QUEUE_URL", "CACHE_URL", "QUEUE_SPOOL")
    }
    env.update(
        CONFIG_FILE=config_path,
        OMNIBOT_DATA_DIR=os.path.join(cell_dir, "data"),
        SLACK_API_URL=slack_api_url,
        PYTHONPATH=REPO,
        LOG_FORMAT="json",
    )
    env[f"CREDENTIALS_SLACK_SIGNING_SECRET_{APP_ID}"] = SIGNING_SECRET
    env[f"CREDENTIALS_SLACK_OAUTH_BOT_TOKEN_{APP_ID}"] = BOT_TOKEN
    if redis_url:
        env["QUEUE_URL"] = redis_url
        env["CACHE_URL"] = redis_url
    return env


class EventSender:
    """A builder of signed ``echo`` events whose text carries a run name, a number and the send time.

    Args:
        url: Base URL of the web tier.
    """

    def __init__(self, url: str):
        self.url = url
        # Unique event ids and message timestamps across runs, so de-duplication never drops an event.
        self._next_micros = int(time.time() * 1_000_000)

    def request_builder(self, run: str, count: int):
        base = self._next_micros
        self._next_micros += count

        def build(index: int):
            micros = base + index
            ts = f"{micros // 1_000_000}.{micros % 1_000_000:06d}"
            text = f"<@{BOT_USER}> echo {run}-{index} {time.time():.6f}"
            body = message_event(text, ts, f"Ev{run}{micros}", TEAM_ID, APP_ID, CHANNEL, USER)
            raw, headers = signed_json(body, SIGNING_SECRET)
            return EVENT_PATH, raw, headers

        return build


def run_events(slack, sender: EventSender, name: str, count: int, senders: int, rate, processes) -> RunResult:
    """Send ``count`` events and wait until each was posted to the fake Slack; return the measurements.

    Raises:
        RuntimeError: A process exited, or some events were never posted.
    """
    run = f"{name}{int(time.time() * 1000)}"
    collector = PostCollector(slack, run)
    load = run_load(sender.url, count, sender.request_builder(run, count), senders, rate=rate)
    accepted = load.statuses.get(200, 0)

    def all_posted():
        for process in processes:
            process.check_running()
        return collector.poll() >= accepted

    # Generous: a saturated single worker process drains 8,000 events in well under a minute.
    wait_for(all_posted, timeout=60 + count / 20, description=f"{accepted} posts of run {run}", interval=0.25)

    sent_and_received = list(collector.received.values())
    latencies = [(received - sent) * 1000 for sent, received in sent_and_received]
    first_send = min(sent for sent, _ in sent_and_received)
    last_post = max(received for _, received in sent_and_received)
    return RunResult(
        events=count,
        accepted=accepted,
        posted=len(sent_and_received),
        duplicates=collector.duplicates,
        accept_rate=load.rate,
        rate=len(sent_and_received) / max(last_post - first_send, 1e-9),
        p50_ms=percentile(latencies, 0.50),
        p99_ms=percentile(latencies, 0.99),
        target_rate=rate,
    )


def print_cell(cell: dict) -> None:
    maximum, paced = cell["max"], cell["paced"]
    print(
        f"{cell['backend']}, {cell['workers']} worker(s): max {maximum['rate']:.0f} events/s "
        f"(p50 {maximum['p50_ms']:.0f} ms, p99 {maximum['p99_ms']:.0f} ms); "
        f"at {paced['target_rate']:.0f}/s: p50 {paced['p50_ms']:.1f} ms, p99 {paced['p99_ms']:.1f} ms",
        flush=True,
    )


def format_results(results: dict) -> str:
    headers = [
        "backend", "workers", "max ev/s", "accept/s", "p50 ms", "p99 ms",
        "paced ev/s", "achieved", "p50 ms", "p99 ms", "non-200", "dups", "load",
    ]
    rows = []
    for cell in results["runs"]:
        maximum, paced = cell["max"], cell["paced"]
        failed = (maximum["events"] - maximum["accepted"]) + (paced["events"] - paced["accepted"])
        rows.append([
            cell["backend"],
            cell["workers"],
            f"{maximum['rate']:.0f}",
            f"{maximum['accept_rate']:.0f}",
            f"{maximum['p50_ms']:.0f}",
            f"{maximum['p99_ms']:.0f}",
            f"{paced['target_rate']:.0f}",
            f"{paced['rate']:.0f}",
            f"{paced['p50_ms']:.1f}",
            f"{paced['p99_ms']:.1f}",
            failed,
            maximum["duplicates"] + paced["duplicates"],
            f"{cell['load_average_before']:.1f}-{cell['load_average_after']:.1f}",
        ])
    notes = [
        f"fake Slack alone (the ceiling): {results['fake_slack_ceiling']:.0f} chat.postMessage calls/s on kept-alive connections (as omnibot calls it), "
        f"{results['fake_slack_ceiling_one_connection_per_call']:.0f} with one connection per call (as slack_sdk's WebClient calls it)",
        "max: events/s from the first send to the last post; accept: events/s the web tier responded to;",
        "paced: the target rate and the rate achieved; load: 1-minute load average before and after the measurement.",
    ]
    return format_table(headers, rows) + "\n" + "\n".join(notes)


def describe_host() -> str:
    """Return the CPU model, core count and software versions, for the record."""
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass

    redis_version = "not installed"
    if shutil.which("redis-server"):
        output = subprocess.run(["redis-server", "--version"], capture_output=True, text=True, check=False).stdout
        redis_version = output.split()[2].removeprefix("v=") if len(output.split()) > 2 else output.strip()
    return (
        f"host: {model}, {os.cpu_count()} cores; Python {platform.python_version()}; "
        f"redis-server {redis_version}; {platform.system()} {platform.release()}"
    )


if __name__ == "__main__":
    sys.exit(main())
