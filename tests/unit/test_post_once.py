"""Posts of a redelivered message are looked up by their metadata mark and not made twice.

A processor runs against the fake Slack over HTTP. "Redelivery" here means
calling the processor again with the same message id and a higher attempt
number, which is what the worker does after a lease expired.
"""

import json
import logging
import time

import pytest

from omnibot.config import load_config_text
from omnibot.fake_slack import FakeSlack, default_workspace
from omnibot.processing.post_once import EVENT_TYPE
from omnibot.processing.processor import Processor
from omnibot.runtime import Runtime
from omnibot.settings import Settings
from tests.support import APP_ID, BASE_CONFIG, TEAM_ID, credentials_env, message_event

POSTS = {
    "thread": [{"text": "in the thread"}],
    "channel": [{"text": "in the channel", "thread_ts": None}],
    "two": [{"text": "first", "thread_ts": None}, {"text": "second", "thread_ts": None}],
    "user": [{"channel": "U0TEST001", "text": "to alice"}],
    "own-metadata": [
        {"text": "own", "thread_ts": None, "metadata": {"event_type": "deploy", "event_payload": {"id": "7"}}}
    ],
    "by-name": [{"channel": "#general", "text": "by name"}],
}

CONFIG = BASE_CONFIG + "handlers:\n  message_handlers:\n" + "".join(
    f"""
    - match: "{name}"
      match_type: "command"
      bots: {{"test-team": ["testbot"]}}
      callbacks:
        - module: "tests.recorders:post_messages"
          kwargs: {{posts: {json.dumps(posts)}}}
"""
    for name, posts in POSTS.items()
)


@pytest.fixture
def slack():
    fake = FakeSlack(default_workspace()).start()
    yield fake
    fake.stop()


@pytest.fixture
def make_processor(slack, tmp_path):
    runtimes = []

    def build(**settings_fields):
        environ = credentials_env()
        settings = Settings(slack_api_url=slack.api_url, data_dir=str(tmp_path / "data"), environ=environ, **settings_fields)
        runtime = Runtime(settings, load_config_text(CONFIG, environ=environ))
        runtimes.append(runtime)
        return Processor(runtime)

    yield build
    for runtime in runtimes:
        runtime.close()


@pytest.fixture
def processor(make_processor):
    return make_processor()


def envelope(command, channel="C0TEST001"):
    """Return a queued event envelope for ``@testbot <command>``."""
    return {
        "kind": "event",
        "app_id": APP_ID,
        "team_id": TEAM_ID,
        "received_at": time.time(),
        "payload": message_event(f"<@U0BOT0001> {command}", channel=channel),
    }


def posts(slack):
    return slack.calls("chat.postMessage")


def reads(slack):
    return [call for call in slack.calls() if call["method"] in ("conversations.history", "conversations.replies")]


def test_first_delivery_marks_without_reading(slack, processor):
    processor.process(envelope("thread"), "41", attempts=1)

    [post] = posts(slack)
    assert json.loads(post["args"]["metadata"]) == {
        "event_type": EVENT_TYPE,
        "event_payload": {
            "queue_message": "41",
            "received_at": json.loads(post["args"]["metadata"])["event_payload"]["received_at"],
            "post": "message_handlers[0]#0/0",
        },
    }
    assert reads(slack) == []


@pytest.mark.parametrize(
    "command, method",
    [("thread", "conversations.replies"), ("channel", "conversations.history"), ("user", "conversations.history")],
)
def test_redelivery_skips_made_post(slack, processor, caplog, command, method):
    queued = envelope(command)
    processor.process(queued, "42", attempts=1)
    slack.clear_calls()

    with caplog.at_level(logging.INFO, logger="omnibot.processing.results"):
        processor.process(queued, "42", attempts=2)

    assert posts(slack) == []
    assert [call["method"] for call in reads(slack)] == [method]
    assert json.loads(reads(slack)[0]["args"]["include_all_metadata"]) is True
    assert "Slack already has it from an earlier delivery" in caplog.text


def test_redelivery_makes_missing_post(slack, processor):
    processor.process(envelope("channel"), "43", attempts=2)

    assert len(posts(slack)) == 1
    assert len(reads(slack)) == 1


def test_redelivery_makes_only_missing_posts(slack, processor):
    queued = envelope("two")
    processor.process(queued, "44", attempts=1)
    # The first delivery stopped after its first post: drop the second from Slack.
    second = [message for message in slack.state.history("C0TEST001", (0, 0), (2**62, 0), False) if message["text"] == "second"]
    slack.state.delete_message("C0TEST001", second[0]["ts"])
    slack.clear_calls()

    processor.process(queued, "44", attempts=2)

    assert [call["args"]["text"] for call in posts(slack)] == ["second"]


def test_other_message_same_place_posts(slack, processor):
    processor.process(envelope("channel"), "45", attempts=1)
    processor.process(envelope("channel"), "46", attempts=2)

    assert len(posts(slack)) == 2


def test_own_metadata_posts_again(slack, processor, caplog):
    queued = envelope("own-metadata")
    processor.process(queued, "47", attempts=1)

    with caplog.at_level(logging.INFO, logger="omnibot.processing.post_once"):
        processor.process(queued, "47", attempts=2)

    assert [json.loads(call["args"]["metadata"])["event_type"] for call in posts(slack)] == ["deploy", "deploy"]
    assert "its callback sets metadata" in caplog.text


def test_channel_name_posts_again(slack, processor, caplog):
    queued = envelope("by-name")
    processor.process(queued, "48", attempts=1)

    with caplog.at_level(logging.INFO, logger="omnibot.processing.post_once"):
        processor.process(queued, "48", attempts=2)

    assert len(posts(slack)) == 2
    assert "is not a conversation id" in caplog.text


def test_failed_read_posts_again(slack, processor, caplog):
    queued = envelope("channel")
    processor.process(queued, "49", attempts=1)
    slack.add_fault("conversations.history", error="access_denied")

    with caplog.at_level(logging.WARNING, logger="omnibot.processing.post_once"):
        processor.process(queued, "49", attempts=2)

    assert len(posts(slack)) == 2
    assert "conversations.history access_denied" in caplog.text


def test_setting_off_marks_nothing(slack, make_processor):
    processor = make_processor(post_metadata=False)
    queued = envelope("channel")

    processor.process(queued, "50", attempts=1)
    processor.process(queued, "50", attempts=2)

    assert [call["args"].get("metadata") for call in posts(slack)] == [None, None]
    assert reads(slack) == []


@pytest.mark.parametrize("raw, expected", [("", True), ("1", True), ("off", False), ("FALSE", False), ("0", False)])
def test_setting_from_environment(raw, expected):
    assert Settings.from_env({"OMNIBOT_POST_METADATA": raw}).post_metadata is expected


def test_setting_invalid_value():
    with pytest.raises(ValueError, match="OMNIBOT_POST_METADATA"):
        Settings.from_env({"OMNIBOT_POST_METADATA": "maybe"})


def test_first_delivery_reads_no_progress(slack, processor, monkeypatch):
    cache = processor.runtime.cache
    keys = []
    original = cache.get
    monkeypatch.setattr(cache, "get", lambda key: keys.append(key) or original(key))

    processor.process(envelope("thread"), "51", attempts=1)
    processor.process(dict(envelope("thread"), replayed_at=time.time()), "52", attempts=1)

    assert [key for key in keys if key.startswith("progress:")] == ["progress:{52}"]


def reshape_marks(slack, reshape):
    """Replace the metadata of every marked message in C0TEST001 with ``reshape(metadata)``."""
    for message in slack.state.history("C0TEST001", (0, 0), (2**62, 0), False):
        if isinstance(message.get("metadata"), dict) and message["metadata"].get("event_type") == EVENT_TYPE:
            slack.state.replace_message("C0TEST001", dict(message, metadata=reshape(message["metadata"])))


@pytest.mark.parametrize(
    "reshape",
    [
        pytest.param(lambda metadata: dict(metadata, app_id="A0TEST001"), id="extra-key"),
        pytest.param(
            lambda metadata: dict(metadata, event_payload=dict(metadata["event_payload"], extra="x")),
            id="extra-payload-key",
        ),
        pytest.param(json.dumps, id="json-string"),
        pytest.param(lambda metadata: dict(metadata, event_payload=json.dumps(metadata["event_payload"])), id="payload-string"),
    ],
)
def test_mark_found_in_another_shape(slack, processor, reshape):
    queued = envelope("channel")
    processor.process(queued, "53", attempts=1)
    reshape_marks(slack, reshape)
    slack.clear_calls()

    processor.process(queued, "53", attempts=2)

    assert posts(slack) == []


def test_other_place_not_a_match(slack, processor):
    queued = envelope("two")
    processor.process(queued, "54", attempts=1)
    first = [message for message in slack.state.history("C0TEST001", (0, 0), (2**62, 0), False) if message["text"] == "first"]
    slack.state.delete_message("C0TEST001", first[0]["ts"])
    reshape_marks(slack, lambda metadata: dict(metadata, app_id="A0TEST001"))
    slack.clear_calls()

    processor.process(queued, "54", attempts=2)

    assert [call["args"]["text"] for call in posts(slack)] == ["first"]
