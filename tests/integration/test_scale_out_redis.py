"""Scale-out with real processes: 2 gunicorn web processes and 3 ``omnibot worker`` processes.

2,000 signed events are posted concurrently and each one must reach the fake
Slack as one ``chat.postMessage`` whose text is unique to the event. When one
worker is SIGKILLed midway, every event must still arrive, and none twice:
the messages the killed worker held are delivered again, and their posts
that reached Slack before the kill are found by their metadata marks. The Redis cases use
``REDIS_URL`` (default ``redis://127.0.0.1:6379/0``) with a key prefix of
their own, and are skipped when that server does not reply to PING, unless
``OMNIBOT_REQUIRE_REDIS=1``. The Redis Cluster cases start a cluster of
three primaries on loopback ports with redis-server and redis-cli. The
SQLite cases run the same processes on one host, sharing the SQLite files.
"""

import collections
import concurrent.futures
import os
import shutil
import signal
import threading
import time
import uuid

import pytest
import requests

from omnibot.backends import open_queue
from omnibot.backends.redis_connection import create_client
from omnibot.fake_slack import FakeSlack
from tests.integration.stack import Stack
from tests.unit.backends.local_cluster import LocalCluster
from tests.support import BASE_CONFIG, message_event, signed, wait_until

pytestmark = pytest.mark.slow

EVENTS = 2000
SENDERS = 32
WORKERS = 3
WORKER_THREADS = 4

# Longer than any one message takes here, so that only a killed worker's
# messages are delivered a second time, and short enough for the kill test.
VISIBILITY_TIMEOUT = 10

# The record callback runs first and stores the worker's pid with the payload,
# so a duplicate post can be traced to the worker that was killed.
HANDLERS = """
handlers:
  message_handlers:
    - match: "echo"
      match_type: "command"
      bots: {"test-team": ["testbot"]}
      callbacks:
        - {module: "tests.recorders:record", kwargs: {tag: "scale-out"}}
        - {module: "omnibot.callbacks.message_callbacks:echo_callback"}
"""


@pytest.fixture(
    scope="module",
    params=[
        pytest.param("redis", marks=pytest.mark.redis),  # several hosts share one Redis
        pytest.param("redis-cluster", marks=pytest.mark.redis_cluster),  # several hosts share a Redis Cluster
        pytest.param("sqlite"),  # one host shares the SQLite files
    ],
)
def backend_url(request, tmp_path_factory):
    """Yield the QUEUE_URL and CACHE_URL of the module's backend; None selects SQLite files."""
    if request.param == "sqlite":
        yield None
        return

    cluster = None
    if request.param == "redis-cluster":
        cluster = start_cluster(str(tmp_path_factory.mktemp("redis-cluster")))
        url = cluster.url
    else:
        url = request.getfixturevalue("redis_url")
    prefix = f"omnibot-test-{uuid.uuid4().hex}"
    separator = "&" if "?" in url else "?"
    yield f"{url}{separator}prefix={prefix}"

    if cluster is not None:
        cluster.stop()
        return

    client = create_client(url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def start_cluster(directory):
    """Start a local three-primary Redis Cluster, or skip (fail with OMNIBOT_REQUIRE_REDIS=1) without Redis's programs."""
    binaries = {name: shutil.which(name) for name in ("redis-server", "redis-cli")}
    missing = [name for name, path in binaries.items() if path is None]
    if missing:
        message = f"{' and '.join(missing)} not found on PATH; install Redis to run the Redis Cluster scale-out test"
        if os.environ.get("OMNIBOT_REQUIRE_REDIS") == "1":
            pytest.fail(f"{message} (OMNIBOT_REQUIRE_REDIS=1 forbids skipping)")
        pytest.skip(message)

    cluster = LocalCluster(binaries["redis-server"], binaries["redis-cli"], directory)
    try:
        cluster.start()
    except BaseException:
        cluster.stop()
        raise
    return cluster


@pytest.fixture(scope="module")
def slack():
    fake = FakeSlack().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def stack(backend_url, slack, tmp_path_factory):
    stack = Stack(
        str(tmp_path_factory.mktemp("scale-out")),
        BASE_CONFIG + HANDLERS,
        slack.api_url,
        web_workers=2,
        workers=0,
        queue_url=backend_url,
        cache_url=backend_url,
        env={"QUEUE_VISIBILITY_TIMEOUT": str(VISIBILITY_TIMEOUT)},
    )
    stack.start()
    for _ in range(WORKERS):
        stack.start_worker(concurrency=WORKER_THREADS)
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def queue(stack):
    """The stack's queue, opened from the test process to watch its depth."""
    queue = open_queue(stack.env.get("QUEUE_URL"), stack.env["OMNIBOT_DATA_DIR"])
    yield queue
    queue.close()


def scale_out_events(run):
    """Return ``{text: body}`` for EVENTS message events with unique texts, event ids and timestamps."""
    base = time.time_ns() // 1000
    events = {}
    for number in range(EVENTS):
        micros = base + number
        text = f"{run}-{number:05d}"
        ts = f"{micros // 1_000_000}.{micros % 1_000_000:06d}"
        events[text] = message_event(f"<@U0BOT0001> echo {text}", ts=ts, event_id=f"Ev{run}{number:05d}")
    return events


def post_concurrently(stack, bodies, on_progress=None):
    """POST every body, signed, from SENDERS threads; return the HTTP status counts.

    Args:
        on_progress: Called with the number of responses so far after each one.
    """
    local = threading.local()
    done = []
    done_lock = threading.Lock()

    def post(body):
        if not hasattr(local, "session"):
            local.session = requests.Session()
        raw, headers = signed(body)
        status = local.session.post(stack.url + "/api/v1/slack/event", data=raw, headers=headers, timeout=30).status_code
        with done_lock:
            done.append(status)
            count = len(done)
        if on_progress is not None:
            on_progress(count)
        return status

    with concurrent.futures.ThreadPoolExecutor(SENDERS) as pool:
        statuses = list(pool.map(post, bodies))
    return collections.Counter(statuses)


def posted_texts(slack, run):
    """Count the chat.postMessage calls of one run by text."""
    texts = (call["args"].get("text") for call in slack.calls("chat.postMessage"))
    return collections.Counter(text for text in texts if isinstance(text, str) and text.startswith(f"{run}-"))


def wait_all_posted(slack, queue, run, timeout=75):
    """Wait until every event of ``run`` was posted and the queue is empty, so no redelivery can follow."""
    wait_until(lambda: len(posted_texts(slack, run)) >= EVENTS, timeout=timeout, interval=0.5, message=f"{EVENTS} posts of {run}")
    wait_until(lambda: queue.depth() == 0, timeout=timeout, interval=0.2, message="an empty queue")
    return posted_texts(slack, run)


def test_every_event_posted_once(stack, slack, queue):
    run = f"once{uuid.uuid4().hex[:8]}"
    events = scale_out_events(run)

    statuses = post_concurrently(stack, list(events.values()))
    counts = wait_all_posted(slack, queue, run)

    assert statuses == {200: EVENTS}
    assert set(counts) == set(events)
    assert [text for text, count in counts.items() if count > 1] == []


def test_killed_worker_loses_no_event(stack, slack, queue):
    run = f"kill{uuid.uuid4().hex[:8]}"
    events = scale_out_events(run)
    victim = stack.workers[0]
    accepted = [0]
    killed = threading.Event()
    killer = threading.Thread(target=kill_when_busy, args=(stack, victim, run, accepted, killed))

    def count_accepted(count):
        accepted[0] = count

    killer.start()
    statuses = post_concurrently(stack, list(events.values()), on_progress=count_accepted)
    killer.join()
    counts = wait_all_posted(slack, queue, run, timeout=VISIBILITY_TIMEOUT + 75)
    handled_by = handlers_of(stack, run)
    redelivered = [text for text, pids in handled_by.items() if len(pids) > 1]

    assert killed.is_set()
    assert victim.wait(timeout=10) == -signal.SIGKILL
    assert statuses == {200: EVENTS}
    assert set(counts) == set(events)
    # Callbacks of the messages the victim held ran again in another worker;
    # the posts they had made before the kill were found and not repeated.
    assert all(victim.pid in handled_by[text] for text in redelivered)
    assert [text for text, count in counts.items() if count > 1] == []
    skipped = stack.logs().count("Slack already has it from an earlier delivery")
    print(f"{len(redelivered)} messages of the killed worker were processed again, {skipped} posts skipped")


def handlers_of(stack, run):
    """Return ``{text: pids of the workers whose record callback saw it}`` for one run."""
    handled_by = collections.defaultdict(set)
    for call in stack.calls("record"):
        text = call["payload"].get("args") or ""
        if text.startswith(f"{run}-"):
            handled_by[text].add(call["pid"])
    return handled_by


def kill_when_busy(stack, victim, run, accepted, killed, timeout=60):
    """SIGKILL ``victim`` once a third of the events were accepted and it has processed one of ``run``.

    Sets ``killed`` after the signal; leaves it unset when the moment never came.
    """

    def victim_busy():
        if accepted[0] < EVENTS // 3:
            return False
        return any(victim.pid in pids for pids in handlers_of(stack, run).values())

    try:
        wait_until(victim_busy, timeout=timeout, interval=0.25, message=f"worker {victim.pid} to process an event")
    except AssertionError:
        return
    victim.send_signal(signal.SIGKILL)
    killed.set()
