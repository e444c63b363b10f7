"""/metrics under gunicorn with 2 workers and config/gunicorn.conf.py, plus an ``omnibot worker``.

All three processes write their Prometheus values to one
PROMETHEUS_MULTIPROC_DIR, so a scrape served by either web worker must
show the sum over every process.
"""

import concurrent.futures
import glob
import os
import re

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from omnibot.fake_slack import FakeSlack
from tests.integration.stack import ConfiguredStack
from tests.support import BASE_CONFIG, message_event, wait_until

CONFIG = BASE_CONFIG.replace('paths: ["^/api/"]', 'paths: ["^/api/", "^/metrics$"]') + """
handlers:
  message_handlers:
    - match: "status"
      match_type: "command"
      bots: {"test-team": ["testbot"]}
      callbacks: [{module: "tests.recorders:record"}]
"""

TEAM_ROUTE = "/api/v1/slack/get_team/<team_name>"
BATCH = 10
MAX_BATCHES = 10


@pytest.fixture(scope="module")
def slack():
    fake = FakeSlack().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def metrics_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("prometheus"))


@pytest.fixture(scope="module")
def stack(slack, metrics_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("metrics-stack")
    stack = ConfiguredStack(
        str(folder), CONFIG, slack.api_url, web_workers=2, env={"PROMETHEUS_MULTIPROC_DIR": metrics_dir}
    )
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


def scrape(stack):
    """Return the samples of one /metrics scrape as ``{(name, sorted label items): value}``."""
    response = requests.get(stack.url + "/metrics", timeout=5)
    assert response.status_code == 200, response.text
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def counter_pids(metrics_dir):
    """Return the pids that wrote a counter file in the multi-process folder."""
    names = (os.path.basename(path) for path in glob.glob(os.path.join(metrics_dir, "counter_*.db")))
    return {int(re.fullmatch(r"counter_(\d+)\.db", name).group(1)) for name in names}


def get_team(url):
    # A new connection per request, so the kernel spreads them over both workers.
    return requests.get(url, timeout=5).status_code


def test_request_counts_add_up_across_workers(stack, metrics_dir):
    worker_pids = {process.pid for process in stack.workers}
    url = stack.url + "/api/v1/slack/get_team/test-team"
    sent = 0

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        for _ in range(MAX_BATCHES):
            statuses = list(pool.map(get_team, [url] * BATCH))
            assert statuses == [200] * BATCH
            sent += BATCH
            if len(counter_pids(metrics_dir) - worker_pids) >= 2:
                break

    assert len(counter_pids(metrics_dir) - worker_pids) >= 2, "every request went to one gunicorn worker"
    labels = {"method": "GET", "route": TEAM_ROUTE, "status": "200"}
    # Several scrapes, so that both workers are likely to serve one.
    for _ in range(4):
        samples = scrape(stack)
        assert value(samples, "omnibot_http_requests_total", **labels) == sent
        assert value(samples, "omnibot_http_request_duration_seconds_count", **labels) == sent


def test_worker_metrics_appear_in_web_scrape(stack):
    before = scrape(stack)
    stack.post_event(message_event("status", channel="D0TEST001"))
    stack.wait_calls("record")

    wait_until(
        lambda: value(scrape(stack), "omnibot_messages_finished_total", kind="event", outcome="acked")
        > value(before, "omnibot_messages_finished_total", kind="event", outcome="acked"),
        message="the worker's ack in /metrics",
    )
    samples = scrape(stack)

    def grew(name, **labels):
        return value(samples, name, **labels) - value(before, name, **labels)

    assert grew("omnibot_messages_queued_total", kind="event", bot="testbot") == 1
    assert grew("omnibot_messages_received_total", kind="event") == 1
    assert grew("omnibot_events_total", outcome="handled") == 1
    assert grew("omnibot_callback_calls_total", callback="tests.recorders:record", result="ok") == 1
    assert grew("omnibot_handler_runs_total", handler="message_handlers[0]", result="ok") == 1
    assert grew("omnibot_event_ack_delay_seconds_count", retry="false") == 1
    assert value(samples, "omnibot_queue_messages", state="ready") == 0
    assert value(samples, "omnibot_backend_up", backend="queue") == 1


def test_web_workers_log_start(stack):
    starts = re.findall(r"web worker (\d+) started", stack.logs())

    assert len(set(starts)) == 2


def test_gunicorn_logs_its_address(stack):
    lines = re.findall(r"gunicorn \d+ serving omnibot on (\S+) with 2 workers of \d+ threads", stack.logs())

    assert lines == [stack.url.split("//", 1)[1]]
