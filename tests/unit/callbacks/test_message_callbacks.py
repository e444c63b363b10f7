"""Tests for omnibot.callbacks.message_callbacks, with stand-in message containers."""

import logging

from omnibot.callbacks import message_callbacks
from omnibot.config.model import Bot, Handler, Team

TEAM = Team(name="test-team", team_id="T0TEST001")

SPECIALS_CHANNELS = {
    "general": {
        "message": "Please don't use {special}: it notifies {member_count} people.",
        "reaction": ":broken_heart:",
    },
    "random": {"message": "No {special} in #random."},
}


class StandInContainer:
    """The attributes that callbacks read from a message container."""

    def __init__(self, payload=None, bot=None):
        self.bot = bot or Bot(team=TEAM, name="testbot", app_id="A0TEST001")
        self.event_trace = {"team": TEAM.name, "bot": self.bot.name}
        self.payload = {
            "bot": {"name": self.bot.name, "bot_id": self.bot.app_id},
            "team": {"name": TEAM.name, "team_id": TEAM.team_id},
            "text": "",
            "parsed_text": "",
            "channel_id": "C0TEST001",
            "channel": {"id": "C0TEST001", "name": "general", "name_normalized": "general", "num_members": 42},
            "ts": "1700000000.000100",
            "thread_ts": None,
            "specials": {},
            "emojis": {},
        }
        self.payload.update(payload or {})


def message_handler(match, match_type, description="", absence=False):
    return Handler(
        kind="message",
        index=0,
        callbacks=(),
        bots=frozenset({(TEAM.name, "testbot")}),
        description=description,
        match=match,
        match_type=match_type,
        absence=absence,
    )


def only_action(result):
    assert len(result["actions"]) == 1
    return result["actions"][0]


# -- help_callback ------------------------------------------------------------


def test_help_lists_commands_and_regexes():
    bot = Bot(team=TEAM, name="testbot", app_id="A0TEST001")
    bot.message_handlers = [
        message_handler("ping", "command", "Answer pong."),
        message_handler("echo", "command"),
        message_handler("(@here|@channel)", "regex", "Warn about broadcasts."),
        message_handler("thumbsup", "reaction", "Thank people."),
        message_handler("^$", "regex", "Empty messages.", absence=True),
    ]

    action = only_action(message_callbacks.help_callback(StandInContainer(bot=bot)))

    assert action["action"] == "chat.postMessage"
    kwargs = action["kwargs"]
    assert "testbot" in kwargs["text"]
    assert "channel" not in kwargs
    commands, regexes = kwargs["attachments"]
    assert commands["title"] == "Commands:"
    assert commands["fields"] == [
        {"title": "ping", "value": "Answer pong.", "short": False},
        {"title": "echo", "value": "(no description)", "short": False},
    ]
    assert commands["fallback"] == "Commands: ping, echo"
    assert regexes["title"] == "Regular expressions:"
    assert [field["title"] for field in regexes["fields"]] == ["(@here|@channel)", "^$"]
    assert regexes["fields"][0]["value"] == "Warn about broadcasts."
    assert "do not match" in regexes["fields"][1]["value"]


def test_help_without_regexes_has_one_attachment():
    bot = Bot(team=TEAM, name="testbot", app_id="A0TEST001")
    bot.message_handlers = [message_handler("ping", "command", "Answer pong.")]

    action = only_action(message_callbacks.help_callback(StandInContainer(bot=bot)))

    assert [attachment["title"] for attachment in action["kwargs"]["attachments"]] == ["Commands:"]


def test_help_for_bot_without_handlers():
    action = only_action(message_callbacks.help_callback(StandInContainer()))

    assert action["kwargs"]["attachments"] == []
    assert action["kwargs"]["text"] == "testbot has no commands."


# -- specials_callback --------------------------------------------------------


def test_specials_posts_message_and_reaction():
    container = StandInContainer({"specials": {"<!here>": "@here"}})

    result = message_callbacks.specials_callback(container, channels=SPECIALS_CHANNELS)

    post, reaction = result["actions"]
    assert post == {
        "action": "chat.postMessage",
        "kwargs": {"text": "Please don't use @here: it notifies 42 people."},
    }
    assert reaction == {
        "action": "reactions.add",
        "kwargs": {"channel": "C0TEST001", "timestamp": "1700000000.000100", "name": "broken_heart"},
    }


def test_specials_recognises_channel_and_everyone():
    for token, special in (("<!channel>", "@channel"), ("<!everyone>", "@everyone")):
        container = StandInContainer({"specials": {token: special}})

        result = message_callbacks.specials_callback(container, channels=SPECIALS_CHANNELS)

        assert result["actions"][0]["kwargs"]["text"].startswith(f"Please don't use {special}:")


def test_specials_names_first_broadcast():
    container = StandInContainer({"specials": {"<!channel>": "@channel", "<!here>": "@here"}})

    result = message_callbacks.specials_callback(container, channels=SPECIALS_CHANNELS)

    assert "@channel" in result["actions"][0]["kwargs"]["text"]


def test_specials_without_reaction_only_posts():
    container = StandInContainer(
        {"specials": {"<!here>": "@here"}, "channel": {"name": "random", "name_normalized": "random"}}
    )

    result = message_callbacks.specials_callback(container, channels=SPECIALS_CHANNELS)

    assert only_action(result)["kwargs"] == {"text": "No @here in #random."}


def test_specials_unknown_member_count_is_many():
    container = StandInContainer({"specials": {"<!here>": "@here"}, "channel": {"name_normalized": "general"}})

    result = message_callbacks.specials_callback(container, channels=SPECIALS_CHANNELS)

    assert result["actions"][0]["kwargs"]["text"] == "Please don't use @here: it notifies many people."


def test_specials_zero_member_count_is_kept():
    container = StandInContainer(
        {"specials": {"<!here>": "@here"}, "channel": {"name_normalized": "general", "num_members": 0}}
    )

    result = message_callbacks.specials_callback(container, channels=SPECIALS_CHANNELS)

    assert "notifies 0 people" in result["actions"][0]["kwargs"]["text"]


def test_specials_falls_back_to_name():
    container = StandInContainer({"specials": {"<!here>": "@here"}, "channel": {"name": "general"}})

    result = message_callbacks.specials_callback(container, channels=SPECIALS_CHANNELS)

    assert len(result["actions"]) == 2


def test_specials_ignores_other_channels():
    container = StandInContainer(
        {"specials": {"<!here>": "@here"}, "channel": {"name": "ops", "name_normalized": "ops"}}
    )

    assert message_callbacks.specials_callback(container, channels=SPECIALS_CHANNELS) == {}


def test_specials_ignores_unknown_channel():
    container = StandInContainer({"specials": {"<!here>": "@here"}, "channel": {}})

    assert message_callbacks.specials_callback(container, channels=SPECIALS_CHANNELS) == {}


def test_specials_ignores_message_without_broadcast():
    for specials in ({}, None, {"<!subteam^S0TEST001>": "@ops"}):
        container = StandInContainer({"specials": specials})

        assert message_callbacks.specials_callback(container, channels=SPECIALS_CHANNELS) == {}


def test_specials_empty_config_posts_default():
    container = StandInContainer({"specials": {"<!here>": "@here"}})

    result = message_callbacks.specials_callback(container, channels={"general": None})

    assert only_action(result)["kwargs"]["text"] == "Please don't use @here in this channel."


def test_specials_invalid_message_posts_default(caplog):
    container = StandInContainer({"specials": {"<!here>": "@here"}})
    channels = {"general": {"message": "{special} pings {members} people {"}}

    with caplog.at_level(logging.ERROR, logger=message_callbacks.__name__):
        result = message_callbacks.specials_callback(container, channels=channels)

    assert only_action(result)["kwargs"]["text"] == "Please don't use @here in this channel."
    assert "invalid message for channel general" in caplog.text


def test_specials_invalid_channel_config(caplog):
    container = StandInContainer({"specials": {"<!here>": "@here"}})

    with caplog.at_level(logging.ERROR, logger=message_callbacks.__name__):
        result = message_callbacks.specials_callback(container, channels={"general": "no broadcasts"})

    assert result == {}
    assert "must be a mapping" in caplog.text


def test_specials_leaves_config_unchanged():
    container = StandInContainer({"specials": {"<!here>": "@here"}})
    channels = {"general": {"message": "No {special}.", "reaction": ":x:"}}

    message_callbacks.specials_callback(container, channels=channels)

    assert channels == {"general": {"message": "No {special}.", "reaction": ":x:"}}


# -- channel_channel_callback -------------------------------------------------


def test_channel_channel_reacts_and_posts():
    container = StandInContainer(
        {"channel": {"name": "channel-channel", "name_normalized": "channel-channel"}, "channel_id": "C0CHAN001"}
    )

    actions = message_callbacks.channel_channel_callback(container)["actions"]

    reactions = [action for action in actions if action["action"] == "reactions.add"]
    assert [reaction["kwargs"]["name"] for reaction in reactions] == list(message_callbacks.CHANNEL_CHANNEL_REACTIONS)
    for reaction in reactions:
        assert reaction["kwargs"]["channel"] == "C0CHAN001"
        assert reaction["kwargs"]["timestamp"] == "1700000000.000100"
    post = actions[-1]
    assert post["action"] == "chat.postMessage"
    assert post["kwargs"]["thread_ts"] is None
    assert "<!here>" in post["kwargs"]["text"]


def test_channel_channel_ignores_other_channels():
    assert message_callbacks.channel_channel_callback(StandInContainer()) == {}
    assert message_callbacks.channel_channel_callback(StandInContainer({"channel": {}})) == {}


# -- congratulations_bot_callback ---------------------------------------------


def test_congratulations_reacts_and_replies_in_thread():
    container = StandInContainer({"channel": {"name": "wins"}})
    emojis = ["tada", "clap"]
    messages = ["Congratulations!", "Well done!"]

    actions = message_callbacks.congratulations_bot_callback(
        container, channels=["wins"], emojis=emojis, messages=messages
    )["actions"]

    reaction, post = actions
    assert reaction["action"] == "reactions.add"
    assert reaction["kwargs"]["name"] in emojis
    assert reaction["kwargs"]["timestamp"] == "1700000000.000100"
    assert reaction["kwargs"]["channel"] == "C0TEST001"
    assert post["action"] == "chat.postMessage"
    assert post["kwargs"]["text"] in messages
    assert post["kwargs"]["thread_ts"] == "1700000000.000100"


def test_congratulations_ignores_other_channels():
    container = StandInContainer()

    result = message_callbacks.congratulations_bot_callback(
        container, channels=["wins"], emojis=["tada"], messages=["Congratulations!"]
    )

    assert result == {}


def test_congratulations_skips_empty_lists():
    container = StandInContainer({"channel": {"name": "wins"}})

    only_messages = message_callbacks.congratulations_bot_callback(
        container, channels=["wins"], emojis=[], messages=["Congratulations!"]
    )
    only_emojis = message_callbacks.congratulations_bot_callback(
        container, channels=["wins"], emojis=["tada"], messages=[]
    )

    assert only_action(only_messages)["action"] == "chat.postMessage"
    assert only_action(only_emojis)["action"] == "reactions.add"


# -- channel_response_callback ------------------------------------------------

RESPONSE_CHANNELS = {
    "general": {"find": ["vpn", "how do i"], "message": "See the VPN guide."},
    "broken": {"message": "no find"},
}


def test_channel_response_matches_whole_word():
    container = StandInContainer({"parsed_text": "the vpn is down"})

    result = message_callbacks.channel_response_callback(container, channels=RESPONSE_CHANNELS)

    assert only_action(result) == {"action": "chat.postMessage", "kwargs": {"text": "See the VPN guide."}}


def test_channel_response_word_inside_word_is_no_match():
    container = StandInContainer({"parsed_text": "openvpnclient crashed"})

    assert message_callbacks.channel_response_callback(container, channels=RESPONSE_CHANNELS) == {}


def test_channel_response_matches_phrase_anywhere():
    container = StandInContainer({"parsed_text": "so how do icons work?"})

    result = message_callbacks.channel_response_callback(container, channels=RESPONSE_CHANNELS)

    assert only_action(result)["kwargs"]["text"] == "See the VPN guide."


def test_channel_response_single_find_string():
    container = StandInContainer({"parsed_text": "vpn please"})

    result = message_callbacks.channel_response_callback(
        container, channels={"general": {"find": "vpn", "message": "Guide."}}
    )

    assert only_action(result)["kwargs"]["text"] == "Guide."


def test_channel_response_no_match_or_channel():
    unmatched = StandInContainer({"parsed_text": "hello"})
    elsewhere = StandInContainer({"parsed_text": "vpn", "channel": {"name_normalized": "ops"}})
    empty = StandInContainer({"parsed_text": ""})

    assert message_callbacks.channel_response_callback(unmatched, channels=RESPONSE_CHANNELS) == {}
    assert message_callbacks.channel_response_callback(elsewhere, channels=RESPONSE_CHANNELS) == {}
    assert message_callbacks.channel_response_callback(empty, channels=RESPONSE_CHANNELS) == {}


def test_channel_response_missing_find_logs(caplog):
    container = StandInContainer({"parsed_text": "no find", "channel": {"name_normalized": "broken"}})

    with caplog.at_level(logging.ERROR, logger=message_callbacks.__name__):
        result = message_callbacks.channel_response_callback(container, channels=RESPONSE_CHANNELS)

    assert result == {}
    assert "channel broken needs both find and message" in caplog.text


# -- example, test and echo callbacks -----------------------------------------


def test_example_topic_sets_topic_to_args():
    container = StandInContainer({"args": "Release day"})

    action = only_action(message_callbacks.example_topic_callback(container))

    assert action == {
        "action": "conversations.setTopic",
        "kwargs": {"channel": "C0TEST001", "topic": "Release day"},
    }


def test_example_topic_without_args_clears_topic():
    action = only_action(message_callbacks.example_topic_callback(StandInContainer()))

    assert action["kwargs"]["topic"] == ""


def test_example_attachment_posts_attachment():
    action = only_action(message_callbacks.example_attachment_callback(StandInContainer()))

    assert action["action"] == "chat.postMessage"
    (attachment,) = action["kwargs"]["attachments"]
    assert attachment["fallback"]
    assert attachment["fields"]


def test_test_callback_posts_text():
    pong = only_action(message_callbacks.test_callback(StandInContainer(), text="pong"))
    number = only_action(message_callbacks.test_callback(StandInContainer(), text=42))
    empty = only_action(message_callbacks.test_callback(StandInContainer()))

    assert pong == {"action": "chat.postMessage", "kwargs": {"text": "pong"}}
    assert number["kwargs"]["text"] == "42"
    assert empty["kwargs"]["text"] == ""


def test_echo_posts_args():
    container = StandInContainer({"args": "  hello @here world "})

    action = only_action(message_callbacks.echo_callback(container))

    assert action == {"action": "chat.postMessage", "kwargs": {"text": "hello @here world"}}


def test_echo_without_args():
    for payload in ({}, {"args": ""}, {"args": None}, {"args": "   "}):
        action = only_action(message_callbacks.echo_callback(StandInContainer(payload)))

        assert action["kwargs"]["text"] == "(nothing to echo)"
