"""The watcher against a fake Slack that pages its lists, on SQLite and on Redis caches."""

import json
import logging
import math
import threading
import time

import pytest

from omnibot.config import load_config_text
from omnibot.fake_slack import FakeSlack, generate_workspace
from omnibot.fake_slack.state import conversation_type
from omnibot.runtime import Runtime
from omnibot.settings import Settings
from omnibot.slack import directory, listing
from omnibot.watcher import Outcome, Watcher
from tests.support import BASE_CONFIG, credentials_env, wait_until

# The backend fixtures run each test on SQLite and, when Redis replies to PING, on Redis.
from tests.unit.backends.conftest import backend, make_cache, redis_namespace, redis_url  # noqa: F401

TEAM_ID = "T0TEST001"
PAGE_SIZE = 200

# 1,230 users are seven pages of 200; the conversations fill three pages.
USERS = 1230
CHANNELS = 520

REFRESHED_ALL = {("test-team", kind): Outcome.REFRESHED for kind in directory.KINDS}


class RecordingEvent(threading.Event):
    """A stop event that records the timeout of every wait."""

    def __init__(self):
        super().__init__()
        self.waits = []

    def wait(self, timeout=None):
        self.waits.append(timeout)
        return super().wait(timeout)


@pytest.fixture(scope="module")
def workspace():
    return generate_workspace(USERS, CHANNELS)


@pytest.fixture
def fake_slack(workspace):
    fake = FakeSlack(workspace).start()
    yield fake
    fake.stop()


@pytest.fixture
def make_runtime(fake_slack, make_cache, tmp_path):
    """Return a function that builds a runtime on the test's shared cache storage, like a separate process."""

    def build(config_text=BASE_CONFIG):
        environ = credentials_env()
        settings = Settings(slack_api_url=fake_slack.api_url, data_dir=str(tmp_path / "data"), environ=environ)
        config = load_config_text(config_text, environ=environ)
        cache = make_cache()
        # The first connections to a new SQLite file can fail with "database is
        # locked" when they switch it to WAL at the same moment, so this thread
        # opens the file before any other thread does.
        cache.get("warm-up")
        return Runtime(settings, config, cache=cache)

    return build


def listed_conversations(fake_slack):
    """Return the conversations that conversations.list returns with the watcher's arguments."""
    return fake_slack.state.conversations(("public_channel", "private_channel", "im", "mpim"), True)


def cached(cache, kind, name):
    return cache.get(directory.cache_key(TEAM_ID, kind, name))


# -- a full refresh ----------------------------------------------------------------


def test_full_refresh_of_paged_workspace(make_runtime, fake_slack):
    runtime = make_runtime()

    outcomes = Watcher(runtime, page_size=PAGE_SIZE).run_once()

    assert outcomes == REFRESHED_ALL
    user_calls = fake_slack.calls("users.list")
    assert len(user_calls) == math.ceil(USERS / PAGE_SIZE)
    assert "cursor" not in user_calls[0]["args"]
    assert all(call["args"]["cursor"] for call in user_calls[1:])
    assert all(call["args"]["limit"] == str(PAGE_SIZE) for call in user_calls)
    conversations = listed_conversations(fake_slack)
    conversation_calls = fake_slack.calls("conversations.list")
    assert len(conversation_calls) == math.ceil(len(conversations) / PAGE_SIZE)
    assert conversation_calls[0]["args"]["types"] == "public_channel,private_channel,im,mpim"
    assert conversation_calls[0]["args"]["exclude_archived"] == "true"
    assert len(fake_slack.calls("emoji.list")) == 1


def test_full_refresh_stores_every_user(make_runtime, workspace):
    runtime = make_runtime()
    Watcher(runtime, page_size=PAGE_SIZE).run_once()
    cache = runtime.cache

    users = workspace["users"]
    stored = cache.get_many([directory.cache_key(TEAM_ID, "user", user["id"]) for user in users])
    names = cache.get_many([directory.cache_key(TEAM_ID, "user_name", user["profile"]["display_name"] or user["name"]) for user in users])
    emails = cache.get_many([directory.cache_key(TEAM_ID, "user_email", f"{user['name']}@example.com") for user in users])

    assert [json.loads(value)["id"] for value in stored] == [user["id"] for user in users]
    for user, name_entry, email_entry in zip(users, names, emails):
        listed = not user.get("deleted") and not user.get("is_bot")
        assert name_entry == (user["id"] if listed else None), user["id"]
        assert email_entry == (user["id"] if listed else None), user["id"]
    mark = json.loads(cached(cache, "directory", directory.USERS))
    assert mark["count"] == USERS


def test_full_refresh_stores_every_conversation(make_runtime, fake_slack):
    runtime = make_runtime()
    Watcher(runtime, page_size=PAGE_SIZE).run_once()
    cache = runtime.cache
    conversations = listed_conversations(fake_slack)
    named = [channel for channel in conversations if not channel["is_im"]]

    stored = cache.get_many([directory.cache_key(TEAM_ID, "channel", channel["id"]) for channel in conversations])
    names = cache.get_many([directory.cache_key(TEAM_ID, "channel_name", channel["name"]) for channel in named])

    assert all(value is not None for value in stored)
    assert names == [channel["id"] for channel in named]
    assert json.loads(cached(cache, "ims", "all")) == [channel["id"] for channel in conversations if channel["is_im"]]
    assert cached(cache, "channel_name", "channel-20") is None  # archived, so not listed
    assert {conversation_type(channel) for channel in conversations} == {"public_channel", "private_channel", "im"}


def test_full_refresh_stores_resolved_emoji(make_runtime):
    runtime = make_runtime()
    Watcher(runtime).run_once()

    assert cached(runtime.cache, "emoji", "ship_it") == "https://emoji.example.com/shipit.png"
    assert cached(runtime.cache, "emoji", "partyparrot") == "https://emoji.example.com/partyparrot.gif"


# -- once per period across watchers -------------------------------------------------


def test_second_pass_within_period_skipped(make_runtime, fake_slack):
    watcher = Watcher(make_runtime(), page_size=PAGE_SIZE)
    watcher.run_once()
    fake_slack.clear_calls()

    outcomes = watcher.run_once()

    assert set(outcomes.values()) == {Outcome.RECENT}
    assert fake_slack.calls() == []


def test_two_watchers_refresh_each_kind_once(make_runtime, fake_slack):
    watchers = [Watcher(make_runtime(), page_size=PAGE_SIZE) for _ in range(2)]
    # A slow first page keeps the first watcher inside its users lock while the other arrives.
    fake_slack.add_fault("users.list", delay=0.3)
    barrier = threading.Barrier(len(watchers))
    outcomes = []

    def run(watcher):
        barrier.wait()
        outcomes.append(watcher.run_once())

    threads = [threading.Thread(target=run, args=(watcher,)) for watcher in watchers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert len(outcomes) == 2
    for kind in directory.KINDS:
        results = sorted(outcome[("test-team", kind)] for outcome in outcomes)
        assert results.count(Outcome.REFRESHED) == 1, (kind, results)
        assert set(results) - {Outcome.REFRESHED} <= {Outcome.BUSY, Outcome.RECENT}, (kind, results)
    assert len(fake_slack.calls("users.list")) == math.ceil(USERS / PAGE_SIZE)
    assert len(fake_slack.calls("conversations.list")) == math.ceil(len(listed_conversations(fake_slack)) / PAGE_SIZE)
    assert len(fake_slack.calls("emoji.list")) == 1


# -- rate limits and failures ---------------------------------------------------------


def test_rate_limit_waits_for_retry_after(make_runtime, fake_slack, caplog):
    stop = RecordingEvent()
    watcher = Watcher(make_runtime(), page_size=PAGE_SIZE, stop_event=stop)
    fake_slack.add_fault("users.list", status=429, retry_after=1)
    caplog.set_level(logging.WARNING, logger="omnibot.slack.listing")

    outcomes = watcher.run_once()

    assert outcomes == REFRESHED_ALL
    calls = fake_slack.calls("users.list")
    assert [call["status"] for call in calls[:2]] == [429, 200]
    assert len(calls) == math.ceil(USERS / PAGE_SIZE) + 1
    assert stop.waits == [1.0]
    assert "users.list: HTTP 429, Retry-After 1 s; retry 1 of 5" in caplog.text


def test_later_page_retry_keeps_cursor(make_runtime, fake_slack):
    watcher = Watcher(make_runtime(), page_size=PAGE_SIZE)
    # Faults apply in order, so the first page gets the no-op delay and the second page the 429.
    fake_slack.add_fault("conversations.list", delay=0.0)
    fake_slack.add_fault("conversations.list", status=429, retry_after=0)

    outcomes = watcher.run_once()

    assert outcomes == REFRESHED_ALL
    calls = fake_slack.calls("conversations.list")
    assert calls[1]["status"] == 429
    assert calls[2]["args"]["cursor"] == calls[1]["args"]["cursor"]


def test_failed_refresh_retried_next_period(make_runtime, fake_slack, caplog):
    runtime = make_runtime(BASE_CONFIG + "list_provider_update_frequency: 1\n")
    bot = runtime.config.bot("test-team", "testbot")
    watcher = Watcher(runtime, page_size=PAGE_SIZE)
    watcher.run_once()
    fake_slack.add_fault("users.list", status=429, retry_after=0, times=listing.RATE_LIMIT_RETRIES + 1)

    failed = wait_until(
        lambda: watcher.run_once()[("test-team", "users")] is Outcome.FAILED,
        timeout=10,
        message="a users refresh that fails",
    )
    again = watcher.run_once()[("test-team", "users")]

    assert failed
    assert again is Outcome.RECENT
    assert "refreshing users failed after 0 pages: users.list failed: ratelimited (HTTP 429)" in caplog.text
    assert runtime.slack_data.user_id_by_name(bot, "user7") == "U200000007"
    wait_until(
        lambda: watcher.run_once()[("test-team", "users")] is Outcome.REFRESHED,
        timeout=10,
        message="the users refresh of the next period",
    )


def test_missing_scope_is_logged(make_runtime, fake_slack, caplog):
    fake_slack.add_fault("conversations.list", error="missing_scope")

    outcomes = Watcher(make_runtime(), page_size=PAGE_SIZE).run_once()

    assert outcomes[("test-team", "conversations")] is Outcome.FAILED
    assert outcomes[("test-team", "users")] is Outcome.REFRESHED
    assert "conversations.list failed: missing_scope" in caplog.text


def test_team_without_primary_bot_is_skipped(make_runtime, fake_slack, caplog):
    config = BASE_CONFIG.replace('primary_bot:\n  "test-team": "testbot"\n', "")

    outcomes = Watcher(make_runtime(config)).run_once()

    assert set(outcomes.values()) == {Outcome.SKIPPED}
    assert fake_slack.calls() == []
    assert "team test-team has no primary_bot" in caplog.text


# -- the thread ----------------------------------------------------------------------


def test_thread_refreshes_and_stops(make_runtime, fake_slack):
    runtime = make_runtime()
    bot = runtime.config.bot("test-team", "testbot")
    watcher = Watcher(runtime, page_size=PAGE_SIZE).start()

    try:
        wait_until(
            lambda: runtime.slack_data.refreshed_at(bot, directory.EMOJI) is not None,
            message="the watcher thread's first pass",
        )
    finally:
        stopped = watcher.stop(timeout=10)

    assert stopped
    assert runtime.slack_data.refreshed_at(bot, directory.USERS) is not None


def test_stop_ends_retry_after_wait(make_runtime, fake_slack):
    runtime = make_runtime()
    watcher = Watcher(runtime, page_size=PAGE_SIZE)
    fake_slack.add_fault("users.list", status=429, retry_after=60)
    watcher.start()
    fake_slack.wait_for_calls("users.list", 1)

    stopped = watcher.stop(timeout=10)

    assert stopped
    assert len(fake_slack.calls("users.list")) == 1
    # The interrupted kind is due again at once for the next watcher.
    assert cached(runtime.cache, "watcher_run", directory.USERS) is None


# Retries do not depend on the cache backend, and the backoff makes this test
# take 1 to 2 seconds, so it runs on SQLite only.
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_server_error_retried_after_backoff(make_runtime, fake_slack):
    stop = RecordingEvent()
    fake_slack.add_fault("emoji.list", status=503)

    outcomes = Watcher(make_runtime(), stop_event=stop).run_once()

    assert outcomes[("test-team", "emoji")] is Outcome.REFRESHED
    assert [call["status"] for call in fake_slack.calls("emoji.list")] == [503, 200]
    assert len(stop.waits) == 1
    assert 1.0 <= stop.waits[0] <= 2.0


def test_listing_past_deadline_fails(fake_slack):
    stop = threading.Event()
    client = listing.build_client("xoxb-test", fake_slack.api_url, stop, {})
    pages = listing.iterate_pages(
        client, listing.LISTINGS[directory.USERS], page_size=PAGE_SIZE, stop=stop, deadline=time.monotonic() - 1
    )

    with pytest.raises(listing.ListingFailed) as failure:
        next(pages)

    assert failure.value.error == "timed_out"
    assert fake_slack.calls("users.list") == []
