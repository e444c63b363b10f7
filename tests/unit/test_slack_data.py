"""SlackData lookups against a fake Slack over HTTP, on SQLite and on Redis caches.

Each test counts the fake's calls to show which lookups read through to
Slack and which return cache entries alone.
"""

import pytest

from omnibot.callbacks.slash_command_callbacks import bigemoji_callback
from omnibot.config import load_config_text
from omnibot.containers import Message, SlashCommand
from omnibot.fake_slack import FakeSlack, default_workspace
from omnibot.processing.processor import Processor
from omnibot.runtime import Runtime
from omnibot.settings import Settings
from omnibot.slack import directory
from omnibot.watcher import Outcome, Watcher
from tests import recorders
from tests.support import BASE_CONFIG, credentials_env, message_event

# The backend fixtures run each test on SQLite and, when Redis replies to PING, on Redis.
from tests.unit.backends.conftest import backend, make_cache, redis_namespace, redis_url  # noqa: F401

REACTION_CONFIG = BASE_CONFIG + """
handlers:
  message_handlers:
    - match: "thumbsup"
      match_type: "reaction"
      bots: {"test-team": ["testbot"]}
      callbacks: [{module: "tests.recorders:record"}]
"""


def directory_workspace():
    """Return the default workspace plus users, conversations, messages and emoji for edge cases."""
    workspace = default_workspace()
    workspace["users"] += [
        {"id": "U0GONE001", "name": "gone", "deleted": True, "profile": {"display_name": "gone", "email": "gone@example.com"}},
        {"id": "U0NOMAIL1", "name": "nomail", "profile": {"display_name": "nomail"}},
        {
            "id": "U0HELPER1",
            "name": "helper",
            "is_bot": True,
            "profile": {"display_name": "helper", "email": "helper@example.com", "bot_id": "B0HELPER1", "api_app_id": "A0OTHER01"},
        },
        {
            "id": "U0LEGACY1",
            "name": "testbot-legacy",
            "is_bot": True,
            "profile": {"display_name": "testbot-legacy", "bot_id": "B0LEGACY1", "api_app_id": "A0TEST001"},
        },
        {"id": "U0CAROL01", "name": "carol", "profile": {"display_name": "", "email": "Carol@Example.com"}},
    ]
    workspace["channels"] += [
        {"id": "C0OLD0001", "name": "old-news", "is_archived": True},
        {"id": "G0MPIM001", "name": "mpdm-alice--bob-1", "is_mpim": True, "is_group": False},
        {"id": "D0BOB0001", "is_im": True, "user": "W0TEST002"},
    ]
    workspace["emoji"] = {
        "shipit": "https://emoji.example.com/shipit.png",
        "ship_it": "alias:shipit",
        "ship-it-now": "alias:ship_it",
        "loop-a": "alias:loop-b",
        "loop-b": "alias:loop-a",
        "self-loop": "alias:self-loop",
        "thumbs": "alias:thumbsup",
    }
    workspace["messages"] = {
        "C0TEST001": [
            {"ts": "1700000000.000100", "user": "U0TEST001", "text": "hello from alice"},
            {"ts": "1700000000.000200", "user": "U0BOT0001", "bot_id": "B0TEST001", "text": "posted by testbot"},
            {"ts": "1700000000.000300", "bot_id": "B0LEGACY1", "text": "posted under testbot's older bot id"},
            {"ts": "1700000000.000400", "bot_id": "B0HELPER1", "text": "posted by another app"},
        ]
    }
    return workspace


@pytest.fixture
def fake_slack():
    fake = FakeSlack(directory_workspace()).start()
    yield fake
    fake.stop()


@pytest.fixture
def make_runtime(fake_slack, make_cache, tmp_path):
    """Return a function that builds a runtime on the test's shared cache storage."""

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


@pytest.fixture
def runtime(make_runtime):
    return make_runtime()


@pytest.fixture
def bot(runtime):
    return runtime.config.bot("test-team", "testbot")


@pytest.fixture
def refreshed(runtime, fake_slack):
    """Fill the cache with one watcher pass, then forget the calls it made."""
    outcomes = Watcher(runtime).run_once()
    assert set(outcomes.values()) == {Outcome.REFRESHED}
    fake_slack.clear_calls()
    return runtime


def calls_with(fake_slack, method, **args):
    """Return the fake's calls of ``method`` whose arguments include ``args``."""
    return [call for call in fake_slack.calls(method) if all(call["args"].get(key) == value for key, value in args.items())]


# -- read-through by id --------------------------------------------------------


def test_user_read_through_fills_maps(runtime, bot, fake_slack):
    data = runtime.slack_data

    user = data.user(bot, "U0TEST001")
    fake_slack.clear_calls()

    assert user["name"] == "alice"
    assert data.user_id_by_name(bot, "alice") == "U0TEST001"
    assert data.user_id_by_email(bot, "alice@example.com") == "U0TEST001"
    assert fake_slack.calls() == []


def test_channel_read_through_fills_name_map(runtime, bot, fake_slack):
    data = runtime.slack_data

    data.channel(bot, "G0TEST001")
    fake_slack.clear_calls()

    assert data.channel_id_by_name(bot, "ops-private") == "G0TEST001"
    assert fake_slack.calls() == []


def test_im_read_through_fills_im_map(runtime, bot, fake_slack):
    data = runtime.slack_data

    data.channel(bot, "D0BOB0001")

    assert data.im_for_user(bot, "W0TEST002")["id"] == "D0BOB0001"


# -- lookups by name and email ----------------------------------------------------


@pytest.mark.parametrize(
    "name, user_id",
    [
        # The display name.
        ("alice", "U0TEST001"),
        # A leading @ is ignored.
        ("@alice", "U0TEST001"),
        # An Enterprise Grid W id.
        ("@bob", "W0TEST002"),
        # An empty display name falls back to the user name.
        ("carol", "U0CAROL01"),
        # Names are compared exactly.
        ("Alice", None),
        # A deleted user is not in the name map.
        ("gone", None),
        # Nor is a user without an email.
        ("nomail", None),
        # Nor is a bot user.
        ("helper", None),
        # Nor the bot itself.
        ("testbot", None),
        # An unknown name.
        ("nobody", None),
        # A lone @.
        ("@", None),
    ],
)
def test_user_id_by_name(refreshed, bot, fake_slack, name, user_id):
    assert refreshed.slack_data.user_id_by_name(bot, name) == user_id
    assert fake_slack.calls() == []


@pytest.mark.parametrize(
    "email, user_id",
    [
        # The address as in the profile.
        ("alice@example.com", "U0TEST001"),
        # Emails are compared case-insensitively.
        ("CAROL@example.COM", "U0CAROL01"),
    ],
)
def test_user_id_by_email_from_cache(refreshed, bot, fake_slack, email, user_id):
    assert refreshed.slack_data.user_id_by_email(bot, email) == user_id
    assert fake_slack.calls() == []


@pytest.mark.parametrize(
    "email",
    [
        # A deleted user: users.lookupByEmail finds them, but they are not listed.
        "gone@example.com",
        # A bot user.
        "helper@example.com",
        # No such user.
        "nobody@example.com",
    ],
)
def test_user_id_by_email_not_found(refreshed, bot, fake_slack, email):
    assert refreshed.slack_data.user_id_by_email(bot, email) is None
    assert len(fake_slack.calls("users.lookupByEmail")) == 1


def test_user_id_by_email_reads_through_once(runtime, bot, fake_slack):
    data = runtime.slack_data

    first = data.user_id_by_email(bot, "bob@example.com")
    second = data.user_id_by_email(bot, "Bob@Example.com")

    assert first == second == "W0TEST002"
    assert len(fake_slack.calls("users.lookupByEmail")) == 1
    assert data.user_id_by_name(bot, "bob") == "W0TEST002"


def test_user_id_by_email_failure_is_none(runtime, bot, fake_slack, caplog):
    fake_slack.add_fault("users.lookupByEmail", error="missing_scope")

    assert runtime.slack_data.user_id_by_email(bot, "alice@example.com") is None
    assert "users.lookupByEmail failed: missing_scope" in caplog.text


@pytest.mark.parametrize(
    "name, channel_id",
    [
        # A public channel.
        ("general", "C0TEST001"),
        # A leading # is ignored.
        ("#general", "C0TEST001"),
        # A private channel.
        ("ops-private", "G0TEST001"),
        # A group DM.
        ("mpdm-alice--bob-1", "G0MPIM001"),
        # An archived channel is not listed.
        ("old-news", None),
        # A user id finds the bot's IM with that user, as in Lyft's omnibot.
        ("U0TEST001", "D0TEST001"),
        ("W0TEST002", "D0BOB0001"),
        # An unknown name.
        ("nowhere", None),
        # A lone #.
        ("#", None),
    ],
)
def test_channel_id_by_name(refreshed, bot, fake_slack, name, channel_id):
    assert refreshed.slack_data.channel_id_by_name(bot, name) == channel_id
    assert fake_slack.calls() == []


def test_resolver_user_id_never_finds_im(refreshed, bot):
    resolver = refreshed.slack_data.resolver(bot)

    assert resolver.channel_id_by_name("U0TEST001") is None
    assert resolver.channel_id_by_name("general") == "C0TEST001"
    assert resolver.user_id_by_name("alice") == "U0TEST001"


def test_stale_channel_name_ignored(refreshed, bot):
    # A name entry left behind by a rename points at a conversation now named otherwise.
    refreshed.cache.set(directory.cache_key("T0TEST001", "channel_name", "announcements"), "C0TEST001")

    assert refreshed.slack_data.channel_id_by_name(bot, "announcements") is None


def test_stale_user_name_ignored(refreshed, bot):
    refreshed.cache.set(directory.cache_key("T0TEST001", "user_name", "alice-old"), "U0TEST001")

    assert refreshed.slack_data.user_id_by_name(bot, "alice-old") is None


def test_name_lookups_never_call_slack(runtime, bot, fake_slack):
    data = runtime.slack_data

    assert data.user_id_by_name(bot, "alice") is None
    assert data.channel_id_by_name(bot, "general") is None
    assert data.refreshed_at(bot, directory.USERS) is None
    assert fake_slack.calls() == []


# -- IMs -------------------------------------------------------------------------


def test_ims_lists_cached_ims(refreshed, bot, fake_slack):
    ims = refreshed.slack_data.ims(bot)

    assert sorted(im["id"] for im in ims) == ["D0BOB0001", "D0TEST001"]
    assert all(im["is_im"] for im in ims)
    assert fake_slack.calls() == []


def test_ims_empty_before_refresh(runtime, bot):
    assert runtime.slack_data.ims(bot) == []


def test_im_for_user(refreshed, bot):
    data = refreshed.slack_data

    assert data.im_for_user(bot, "U0TEST001")["id"] == "D0TEST001"
    assert data.im_for_user(bot, "U0TEST001")["is_user_deleted"] is False
    assert data.im_for_user(bot, "U0CAROL01") is None


# -- emoji -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, url",
    [
        # An image.
        ("shipit", "https://emoji.example.com/shipit.png"),
        # Colons are optional.
        (":shipit:", "https://emoji.example.com/shipit.png"),
        # An alias.
        ("ship_it", "https://emoji.example.com/shipit.png"),
        # An alias of an alias.
        ("ship-it-now", "https://emoji.example.com/shipit.png"),
        # Two aliases of each other.
        ("loop-a", None),
        # An alias of itself.
        ("self-loop", None),
        # An alias of a standard emoji, which has no URL.
        ("thumbs", None),
        # An unknown name.
        ("nope", None),
    ],
)
def test_emoji_url(refreshed, bot, fake_slack, name, url):
    assert refreshed.slack_data.emoji_url(bot, name) == url
    assert fake_slack.calls() == []


def test_emoji_url_cold_reads_through_once(runtime, bot, fake_slack):
    data = runtime.slack_data

    assert data.emoji_url(bot, "ship_it") == "https://emoji.example.com/shipit.png"
    assert data.emoji_url(bot, "nope") is None
    assert data.emoji_url(bot, "shipit") == "https://emoji.example.com/shipit.png"
    assert len(fake_slack.calls("emoji.list")) == 1


def test_bigemoji_posts_cached_alias_url(refreshed, bot, fake_slack):
    fields = {"command": "/bigemoji", "text": ":ship-it-now:", "user_id": "U0TEST001", "channel_id": "C0TEST001"}
    container = SlashCommand(bot, fields, bot.trace, refreshed.slack_data)

    result = bigemoji_callback(container)

    image = result["responses"][0]["blocks"][1]
    assert image["image_url"] == "https://emoji.example.com/shipit.png"
    assert fake_slack.calls() == []


@pytest.mark.parametrize(
    "emoji, expected",
    [
        # Images pass through.
        ({"a": "https://x/a.png"}, {"a": "https://x/a.png"}),
        # A chain of aliases ends at the image.
        ({"a": "alias:b", "b": "alias:c", "c": "https://x/c.png"}, {"a": "https://x/c.png", "b": "https://x/c.png", "c": "https://x/c.png"}),
        # A loop of three has no URL.
        ({"a": "alias:b", "b": "alias:c", "c": "alias:a"}, {}),
        # An alias of a name emoji.list does not have.
        ({"a": "alias:smile"}, {}),
        # A chain longer than ten aliases is treated as a loop.
        ({**{f"e{n}": f"alias:e{n + 1}" for n in range(11)}, "e11": "https://x/e.png"}, {"e11": "https://x/e.png", **{f"e{n}": "https://x/e.png" for n in range(1, 11)}}),
    ],
)
def test_resolve_emoji(emoji, expected):
    assert dict(directory.resolve_emoji(emoji)) == expected


# -- message parsing ----------------------------------------------------------------


def test_message_mentions_cost_one_call(runtime, bot, fake_slack):
    text = "<@W0TEST002> see <#G0TEST001> with <!subteam^S0ONCALL1|@oncall>"

    first = Message(bot, message_event(text)["event"], bot.trace, runtime.slack_data)
    calls_after_first = fake_slack.calls()
    second = Message(bot, message_event(text)["event"], bot.trace, runtime.slack_data)

    assert first.payload["parsed_text"] == "@bob see #ops-private with @oncall"
    assert second.payload["parsed_text"] == "@bob see #ops-private with @oncall"
    assert first.payload["subteams"] == {"<!subteam^S0ONCALL1|@oncall>": "oncall"}
    assert len(calls_with(fake_slack, "users.info", user="W0TEST002")) == 1
    assert len(calls_with(fake_slack, "conversations.info", channel="G0TEST001")) == 1
    assert fake_slack.calls() == calls_after_first


def test_message_after_refresh_makes_no_calls(refreshed, bot, fake_slack):
    event = message_event("<@U0CAROL01> in <#G0MPIM001>", user="W0TEST002")["event"]
    refreshed.slack_data.bot_identity(bot)
    fake_slack.clear_calls()

    message = Message(bot, event, bot.trace, refreshed.slack_data)

    assert message.payload["parsed_text"] == "@carol in #mpdm-alice--bob-1"
    assert message.payload["parsed_user"]["id"] == "W0TEST002"
    assert fake_slack.calls() == []


# -- reactions ----------------------------------------------------------------------


def reaction_envelope(ts, item_user=None):
    event = {
        "type": "reaction_added",
        "user": "U0TEST001",
        "reaction": "thumbsup",
        "item": {"type": "message", "channel": "C0TEST001", "ts": ts},
        "event_ts": "1700000001.000100",
    }
    if item_user:
        event["item_user"] = item_user
    payload = {"team_id": "T0TEST001", "api_app_id": "A0TEST001", "type": "event_callback", "event": event}
    return {"kind": "event", "app_id": "A0TEST001", "team_id": "T0TEST001", "payload": payload}


@pytest.mark.parametrize(
    "ts, item_user, handled, history_calls, bots_info_calls",
    [
        # item_user is the bot's user: no message fetch.
        ("1700000000.000200", "U0BOT0001", True, 0, 0),
        # item_user is someone else: no message fetch either.
        ("1700000000.000200", "U0TEST001", False, 0, 0),
        # No item_user: the message's bot_id is the bot's own.
        ("1700000000.000200", None, True, 1, 0),
        # Another bot id of the same app, found with bots.info.
        ("1700000000.000300", None, True, 1, 1),
        # A bot id of another app.
        ("1700000000.000400", None, False, 1, 1),
        # A message from a person.
        ("1700000000.000100", None, False, 1, 0),
    ],
)
def test_reaction_handler_checks_own_message(
    make_runtime, fake_slack, tmp_path, monkeypatch, ts, item_user, handled, history_calls, bots_info_calls
):
    record_file = tmp_path / "calls.jsonl"
    monkeypatch.setenv("OMNIBOT_TEST_RECORD_FILE", str(record_file))
    processor = Processor(make_runtime(REACTION_CONFIG))

    processor.process(reaction_envelope(ts, item_user), "reaction-1")

    assert len(recorders.read_calls(str(record_file), "record")) == (1 if handled else 0)
    assert len(fake_slack.calls("conversations.history")) == history_calls
    assert len(fake_slack.calls("bots.info")) == bots_info_calls


def test_reaction_check_reuses_cache(make_runtime, fake_slack, tmp_path, monkeypatch):
    monkeypatch.setenv("OMNIBOT_TEST_RECORD_FILE", str(tmp_path / "calls.jsonl"))
    processor = Processor(make_runtime(REACTION_CONFIG))

    processor.process(reaction_envelope("1700000000.000300"), "reaction-1")
    processor.process(reaction_envelope("1700000000.000300"), "reaction-2")

    assert len(recorders.read_calls(str(tmp_path / "calls.jsonl"), "record")) == 2
    assert len(fake_slack.calls("conversations.history")) == 1
    assert len(fake_slack.calls("bots.info")) == 1
