"""Soak run: signed Slack traffic for N minutes while workers are killed and Slack misbehaves.

    python bench/soak.py --minutes 10

Starts a fake Slack Web API in this process, gunicorn and ``omnibot worker``
processes (tests/integration/stack.py), and sends a mix of message events,
reaction events and slash commands, all signed, plus Slack-style retries of
events already sent. Every minute one worker gets SIGKILL and a new one
starts. On Redis with ``--queue-spool 1`` it also runs ``omnibot
spool-forwarder``, as config/gunicorn.conf.py would, and every other kill
also kills it with SIGKILL and starts a new one, so the web workers' threads
take over in between. The fake Slack responds to 5% of calls with 429 (Retry-After: 1) and
to 2% with 500. After the traffic stops, the run waits for the queue to drain and
prints:

- sent: requests omnibot accepted with HTTP 200 (retries excluded);
- processed: requests whose reply reached the fake Slack (HTTP 200);
- duplicated: requests whose reply reached Slack more than once (must be 0),
  and how many of those ran in a worker that was killed;
- callback_rerun_after_worker_kill: requests whose callback ran in a killed
  worker and again in another, which shows that a kill hit work in hand;
- slack_failed: requests whose reply was attempted but failed even after
  slack_sdk's retries (each attempt hit a fault);
- dead_lettered: requests in the dead-letter store;
- lost: sent requests with no trace at all (must be 0);
- peak RSS (VmHWM) of each process.

Each callback posts ``soak <key>``, where the key is the message ``ts``,
the reaction's ``event_ts`` or the slash command's ``trigger_id``, so every
reply can be traced back to one request.
"""

import argparse
import collections
import json
import os
import random
import signal
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

HANDLERS = """
handlers:
  message_handlers:
    - match: "soak"
      match_type: "command"
      bots: {"test-team": ["testbot"]}
      callbacks: [{module: "bench.soak:soak_reply"}]
    - match: "eyes"
      match_type: "reaction"
      bots: {"test-team": ["testbot"]}
      callbacks: [{module: "bench.soak:soak_reply"}]
  slash_command_handlers:
    - command: "/soak"
      bots: {"test-team": ["testbot"]}
      callbacks: [{module: "bench.soak:soak_reply"}]
"""

EVENT_PATH = "/api/v1/slack/event"
SLASH_PATH = "/api/v1/slack/slash_command"
FORM = "application/x-www-form-urlencoded"
REPLY_PREFIX = "soak "


def soak_reply(container):
    """Note the call in $SOAK_CALLS_FILE, then reply with ``soak <key>``; the worker imports this as ``bench.soak:soak_reply``."""
    payload = container.payload
    key = payload.get("trigger_id") or payload.get("ts")

    # One short write with O_APPEND, so lines of concurrent workers do not interleave.
    descriptor = os.open(os.environ["SOAK_CALLS_FILE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(descriptor, f"{key} {os.getpid()}\n".encode())
    finally:
        os.close(descriptor)

    return {"actions": [{"action": "chat.postMessage", "kwargs": {"text": f"{REPLY_PREFIX}{key}"}}]}


# -- traffic ------------------------------------------------------------------------


class Traffic:
    """Builds and sends signed requests, and remembers what omnibot accepted.

    Args:
        url: omnibot's base URL.
    """

    def __init__(self, url):
        self.url = url
        self.accepted = {}
        self.rejected = collections.Counter()
        self.retries_sent = 0
        self._sent_events = []
        self._lock = threading.Lock()
        self._local = threading.local()
        self._counter = 0

    def send_one(self, kind):
        if kind == "retry":
            self._send_retry()
            return
        key, path, raw, content_type = self._build(kind)
        status = self._post(path, raw, content_type)
        with self._lock:
            if status == 200:
                self.accepted[key] = kind
                if kind != "slash":
                    self._sent_events.append((path, raw, content_type))
            else:
                self.rejected[f"{kind} HTTP {status}"] += 1

    def _send_retry(self):
        with self._lock:
            if not self._sent_events:
                return
            path, raw, content_type = random.choice(self._sent_events[-200:])
            self.retries_sent += 1
        status = self._post(path, raw, content_type, {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"})
        if status != 200:
            with self._lock:
                self.rejected[f"retry HTTP {status}"] += 1

    def _build(self, kind):
        from tests.support import LEGACY_TOKEN, message_event

        # Whole seconds and a counter: unique within a run, and shaped like Slack's ts.
        with self._lock:
            self._counter += 1
            ts = f"{int(time.time())}.{self._counter:06d}"
        if kind == "message":
            body = message_event(f"<@U0BOT0001> soak {ts}", ts=ts, event_id=f"EvS{uuid.uuid4().hex}")
            return ts, EVENT_PATH, json.dumps(body).encode(), "application/json"

        if kind == "reaction":
            event = {
                "type": "reaction_added",
                "user": "U0TEST001",
                "reaction": "eyes",
                "item_user": "U0BOT0001",
                "item": {"type": "message", "channel": "C0TEST001", "ts": "1764870000.000900"},
                "event_ts": ts,
            }
            body = dict(message_event("unused"), event=event, event_id=f"EvR{uuid.uuid4().hex}")
            return ts, EVENT_PATH, json.dumps(body).encode(), "application/json"

        trigger_id = f"1.2.{uuid.uuid4().hex}"
        fields = {
            "token": LEGACY_TOKEN,
            "team_id": "T0TEST001",
            "api_app_id": "A0TEST001",
            "channel_id": "C0TEST001",
            "user_id": "U0TEST001",
            "command": "/soak",
            "text": "",
            "response_url": "http://127.0.0.1:9/hooks/unused",
            "trigger_id": trigger_id,
        }
        return trigger_id, SLASH_PATH, urllib.parse.urlencode(fields).encode(), FORM

    def _post(self, path, raw, content_type, extra_headers=None):
        import requests

        from tests.support import signed

        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        _, headers = signed(raw, content_type=content_type)
        headers.update(extra_headers or {})
        try:
            return session.post(self.url + path, data=raw, headers=headers, timeout=10).status_code
        except requests.RequestException as error:
            return type(error).__name__


def run_traffic(traffic, seconds, rate, mix, threads, stop):
    """Send ``rate`` requests per second for ``seconds`` from ``threads`` threads, with kinds drawn from ``mix``."""
    kinds, weights = zip(*mix.items())
    interval = threads / rate
    deadline = time.monotonic() + seconds

    def loop():
        next_send = time.monotonic()
        while not stop.is_set() and time.monotonic() < deadline:
            traffic.send_one(random.choices(kinds, weights)[0])
            next_send += interval
            pause = next_send - time.monotonic()
            if pause > 0:
                stop.wait(pause)

    senders = [threading.Thread(target=loop, name=f"soak-sender-{n}", daemon=True) for n in range(threads)]
    for sender in senders:
        sender.start()
        time.sleep(interval / threads)
    return senders


# -- processes ------------------------------------------------------------------------


def peak_rss_kib(pid):
    """Return the peak resident set size (VmHWM) of ``pid`` in KiB, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def child_pids(pid):
    pids = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as children:
                pids.extend(int(child) for child in children.read().split())
    except OSError:
        pass
    return pids


class PeakMemory:
    """The highest VmHWM seen per process, sampled until each process ends."""

    def __init__(self):
        self.peaks = {}
        self._lock = threading.Lock()

    def sample(self, label, pid):
        value = peak_rss_kib(pid)
        if value is None:
            return
        with self._lock:
            key = (label, pid)
            self.peaks[key] = max(value, self.peaks.get(key, 0))

    def sample_stack(self, stack):
        self.sample("soak driver and fake Slack", os.getpid())
        if stack.web is not None and stack.web.poll() is None:
            self.sample("gunicorn master", stack.web.pid)
            for pid in child_pids(stack.web.pid):
                self.sample("gunicorn worker", pid)
        for worker in stack.workers:
            if worker.poll() is None:
                self.sample("omnibot worker", worker.pid)


def kill_and_replace(stack, memory, log):
    """SIGKILL the oldest running worker and start a new one; return the killed pid."""
    running = [worker for worker in stack.workers if worker.poll() is None]
    if not running:
        stack.start_worker()
        return None
    victim = running[0]
    memory.sample("omnibot worker", victim.pid)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    stack.start_worker()
    log(f"killed worker {victim.pid} with SIGKILL and started worker {stack.workers[-1].pid}")
    return victim.pid


def kill_and_restart_forwarder(forwarder, stack, folder, log):
    """SIGKILL the spool forwarder process and start a new one; the web workers' threads forward in between."""
    from bench.common import start_spool_forwarder

    forwarder.process.send_signal(signal.SIGKILL)
    forwarder.process.wait()
    replacement = start_spool_forwarder(stack.env, folder)
    log(f"killed spool forwarder {forwarder.pid} with SIGKILL and started {replacement.pid}")
    return replacement


# -- results --------------------------------------------------------------------------


def replies_by_key(slack):
    """Return ``{key: [(status, time), ...]}`` of every chat.postMessage that carries a soak reply."""
    replies = collections.defaultdict(list)
    for call in slack.calls("chat.postMessage"):
        text = call["args"].get("text") or ""
        if text.startswith(REPLY_PREFIX):
            replies[text[len(REPLY_PREFIX):]].append((call["status"], call["time"]))
    return replies


def dead_letter_keys(queue):
    keys = set()
    for letter in queue.dead_letters(limit=1_000_000):
        payload = letter.body.get("payload") or {}
        event = payload.get("event") if isinstance(payload.get("event"), dict) else {}
        key = payload.get("trigger_id") or event.get("ts") or event.get("event_ts")
        if key:
            keys.add(key)
    return keys


def wait_for_drain(queue, slack, timeout, quiet_seconds, log):
    """Wait until the queue is empty and Slack saw no new call for ``quiet_seconds``, at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_count, last_change = -1, time.monotonic()
    while time.monotonic() < deadline:
        count = len(slack.calls())
        if count != last_count:
            last_count, last_change = count, time.monotonic()
        if queue.depth() == 0 and time.monotonic() - last_change >= quiet_seconds:
            return True
        time.sleep(0.5)
    log(f"queue still holds {queue.depth()} message(s) after {timeout:.0f} s")
    return False


def summarize(traffic, slack, queue, killed_pids, record_pids):
    replies = replies_by_key(slack)
    dead = dead_letter_keys(queue)
    counts = collections.Counter()
    duplicated_after_kill = 0

    for key in traffic.accepted:
        ran_in = record_pids.get(key, set())
        if len(ran_in) > 1 and ran_in & killed_pids:
            counts["rerun_after_kill"] += 1

        attempts = replies.get(key, [])
        successes = [status for status, _ in attempts if status == 200]
        if len(successes) > 1:
            counts["duplicated"] += 1
            if ran_in & killed_pids:
                duplicated_after_kill += 1
        if successes:
            counts["processed"] += 1
        elif attempts:
            counts["slack_failed"] += 1
        elif key in dead:
            counts["dead_lettered"] += 1
        else:
            counts["lost"] += 1

    by_kind = collections.Counter(traffic.accepted.values())
    return {
        "sent": len(traffic.accepted),
        "sent_by_kind": dict(by_kind),
        "slack_retries_sent": traffic.retries_sent,
        "rejected": dict(traffic.rejected),
        "processed": counts["processed"],
        "duplicated": counts["duplicated"],
        "duplicated_after_worker_kill": duplicated_after_kill,
        "callback_rerun_after_worker_kill": counts["rerun_after_kill"],
        "slack_failed": counts["slack_failed"],
        "dead_lettered": len(dead),
        "lost": counts["lost"],
        "fake_slack_calls": len(slack.calls()),
        "fake_slack_faults": sum(1 for call in slack.calls() if call["status"] != 200),
    }


def worker_pids_by_key(calls_file):
    """Return ``{key: {pid, ...}}``: the worker processes whose callback ran for each key."""
    pids = collections.defaultdict(set)
    if not os.path.exists(calls_file):
        return pids
    with open(calls_file, encoding="utf-8") as calls:
        for line in calls:
            key, _, pid = line.strip().rpartition(" ")
            if key:
                pids[key].add(int(pid))
    return pids


# -- main -----------------------------------------------------------------------------


def parse_args(argv):
    parser = argparse.ArgumentParser(description="Soak omnibot with signed traffic, worker kills and Slack faults.")
    parser.add_argument("--minutes", type=float, default=10.0, help="minutes of traffic (default 10)")
    parser.add_argument("--rate", type=float, default=20.0, help="requests per second, retries included (default 20)")
    parser.add_argument("--workers", type=int, default=2, help="omnibot worker processes (default 2)")
    parser.add_argument("--kill-every", type=float, default=60.0, help="seconds between worker kills (default 60)")
    parser.add_argument("--rate-limit-share", type=float, default=0.05, help="share of Slack calls that get HTTP 429 (default 0.05)")
    parser.add_argument("--server-error-share", type=float, default=0.02, help="share of Slack calls that get HTTP 500 (default 0.02)")
    parser.add_argument("--queue-url", help="QUEUE_URL for omnibot (default: SQLite in a temporary folder); Redis keys stay after the run")
    parser.add_argument("--cache-url", help="CACHE_URL for omnibot (default: SQLite in a temporary folder); Redis keys stay after the run")
    parser.add_argument(
        "--queue-spool",
        choices=("0", "1"),
        help="QUEUE_SPOOL for omnibot (default unset: spool files on SQLite, none on Redis); "
        "1 on Redis also runs omnibot spool-forwarder and kills it at every other worker kill",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder with the logs")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    sys.path.insert(0, REPO)

    from omnibot import backends
    from omnibot.fake_slack import FakeSlack
    from bench.common import start_spool_forwarder, stop_all
    from tests.integration.stack import Stack
    from tests.support import BASE_CONFIG

    def log(message):
        print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    folder = tempfile.mkdtemp(prefix="omnibot-soak-")
    slack = FakeSlack().start()
    slack.add_fault("*", status=429, retry_after=1, rate=args.rate_limit_share)
    slack.add_fault("*", status=500, rate=args.server_error_share)

    # Production-like lease and backoff, so only killed workers cause redeliveries.
    calls_file = os.path.join(folder, "soak_calls.txt")
    env = {"QUEUE_VISIBILITY_TIMEOUT": "30", "QUEUE_RETRY_BACKOFF": "1", "PYTHONPATH": REPO, "SOAK_CALLS_FILE": calls_file}
    if args.queue_spool is not None:
        env["QUEUE_SPOOL"] = args.queue_spool
    stack = Stack(folder, BASE_CONFIG + HANDLERS, slack.api_url, env=env, workers=0, web_workers=2,
                  queue_url=args.queue_url, cache_url=args.cache_url)
    memory = PeakMemory()
    stop = threading.Event()
    killed = set()
    queue = None
    # On Redis with the spool, the process that config/gunicorn.conf.py would start; every other kill also kills it.
    with_forwarder = (args.queue_url or "").startswith("redis") and args.queue_spool == "1"
    forwarder = None
    forwarder_kills = 0

    try:
        stack.start_web()
        if with_forwarder:
            forwarder = start_spool_forwarder(stack.env, folder)
        for _ in range(args.workers):
            stack.start_worker()
        queue = backends.open_queue(args.queue_url, os.path.join(folder, "data"))
        log(f"omnibot on {stack.url}, {args.workers} workers, fake Slack on {slack.api_url}, logs in {folder}")

        traffic = Traffic(stack.url)
        mix = {"message": 0.55, "reaction": 0.2, "slash": 0.2, "retry": 0.05}
        seconds = args.minutes * 60
        senders = run_traffic(traffic, seconds, args.rate, mix, threads=8, stop=stop)

        started = time.monotonic()
        # The first kill comes half an interval in, so a run of N intervals has N kills.
        next_kill = started + args.kill_every / 2
        kills = 0
        while any(sender.is_alive() for sender in senders):
            memory.sample_stack(stack)
            if forwarder is not None:
                memory.sample("spool forwarder", forwarder.pid)
            if time.monotonic() >= next_kill:
                victim = kill_and_replace(stack, memory, log)
                if victim is not None:
                    killed.add(victim)
                if forwarder is not None and kills % 2 == 1:
                    forwarder = kill_and_restart_forwarder(forwarder, stack, folder, log)
                    forwarder_kills += 1
                kills += 1
                next_kill += args.kill_every
            time.sleep(0.5)
        log(f"traffic done: {len(traffic.accepted)} accepted in {time.monotonic() - started:.0f} s; waiting for the queue to drain")

        wait_for_drain(queue, slack, timeout=180, quiet_seconds=5, log=log)
        memory.sample_stack(stack)
        results = summarize(traffic, slack, queue, killed, worker_pids_by_key(calls_file))
        results["worker_kills"] = kills
        results["spool_forwarder_kills"] = forwarder_kills
        results["minutes"] = args.minutes
        results["peak_rss_mib"] = {
            f"{label} {pid}": round(kib / 1024, 1) for (label, pid), kib in sorted(memory.peaks.items())
        }
        print_results(results, args.json)
        # A post made before a worker was killed is found by its metadata mark on the
        # redelivery, so every repeat is a failure, after a kill too.
        return 0 if results["duplicated"] == 0 and results["lost"] == 0 else 1
    finally:
        stop.set()
        if queue is not None:
            queue.close()
        stack.stop()
        stop_all([forwarder])
        slack.stop()
        if not args.keep:
            import shutil

            shutil.rmtree(folder, ignore_errors=True)


def print_results(results, as_json):
    if as_json:
        print(json.dumps(results, indent=2))
        return
    for name in (
        "minutes", "worker_kills", "spool_forwarder_kills", "sent", "sent_by_kind", "slack_retries_sent", "rejected", "processed",
        "duplicated", "duplicated_after_worker_kill", "callback_rerun_after_worker_kill", "slack_failed", "dead_lettered", "lost",
        "fake_slack_calls", "fake_slack_faults",
    ):
        print(f"{name:34} {results[name]}")
    print("peak RSS (VmHWM), MiB:")
    for process, mib in results["peak_rss_mib"].items():
        print(f"  {process:40} {mib}")


if __name__ == "__main__":
    sys.exit(main())
