"""omnibot.testing: containers built from a few fields, and the result checker."""

import dataclasses

import pytest

from omnibot import backends, testing
from omnibot.callbacks import message_callbacks, slash_command_callbacks
from omnibot.config.loader import load_config_text
from omnibot.config.model import Credentials
from omnibot.containers import Message
from omnibot.slack.client import SlackClients
from omnibot.slack.data import SlackData
from tests.support import BASE_CONFIG, BOT_TOKEN, credentials_env

# -- messages ----------------------------------------------------------------------


def test_message_with_mention_is_directed():
    message = testing.message("@testbot echo hello <@W0TEST002> in <#C0TEST001>")

    payload = message.payload
    assert payload["text"] == "<@U0BOT0001> echo hello <@W0TEST002> in <#C0TEST001>"
    assert payload["parsed_text"] == "@testbot echo hello @bob in #general"
    assert payload["users"] == {"<@U0BOT0001>": "testbot", "<@W0TEST002>": "bob"}
    assert payload["channels"] == {"<#C0TEST001>": "general"}
    assert payload["command_text"] == "echo hello @bob in #general"
    assert payload["directed"] is True
    assert payload["mentioned"] is True
    assert payload["channel"]["name"] == "general"
    assert payload["parsed_user"]["name"] == "alice"
    assert payload["bot"] == {"name": "testbot", "bot_id": "A0TEST001"}
    assert payload["team"] == {"name": "test-team", "team_id": "T0TEST001"}
    assert message.reply_thread_ts == payload["ts"]


def test_message_in_dm_is_directed_without_mention():
    message = testing.message("ping", channel="D0TEST001")

    assert message.directed is True
    assert message.mentioned is False
    assert message.command_text == "ping"
    assert message.reply_thread_ts is None


def test_message_command_match_fills_args():
    message = testing.message("@testbot echo  hello   world", command="echo")

    assert message.payload["match_type"] == "command"
    assert message.payload["command"] == "echo"
    assert message.payload["args"] == "hello world"
    assert message_callbacks.echo_callback(message) == {
        "actions": [{"action": "chat.postMessage", "kwargs": {"text": "hello world"}}]
    }


def test_message_regex_match():
    message = testing.message("deploying to prod now", regex="deploy(ing)?")

    assert message.payload["match_type"] == "regex"
    assert message.payload["regex"] == "deploy(ing)?"
    assert "args" not in message.payload


@pytest.mark.parametrize(
    "text, kwargs",
    [
        # A command in a channel needs the bot's mention.
        ("echo hi", {"command": "echo"}),
        # Another command.
        ("@testbot ping", {"command": "echo"}),
        # A regex that does not occur.
        ("nothing here", {"regex": "deploy"}),
    ],
)
def test_message_that_would_not_match_raises(text, kwargs):
    with pytest.raises(ValueError, match="does not match"):
        testing.message(text, **kwargs)


def test_message_thread_reply():
    message = testing.message("@testbot ping", thread_ts="1700000000.000100")

    assert message.is_reply is True
    assert message.reply_thread_ts == "1700000000.000100"


def test_message_with_own_names():
    data = testing.StubSlackData(
        users={"U0CAROL01": "carol", "U0BOT0001": "opsbot"},
        channels={"C0OPS0001": "ops"},
    )

    message = testing.message("@opsbot hi <@U0CAROL01>", bot="opsbot", user="U0CAROL01", channel="C0OPS0001", slack_data=data)

    assert message.payload["parsed_text"] == "@opsbot hi @carol"
    assert message.payload["channel"]["name"] == "ops"
    assert message.directed is True
    assert message.bot.name == "opsbot"


def test_message_unknown_ids_keep_raw_tokens():
    message = testing.message("hi <@U0NOBODY1>", channel="C0UNKNOWN")

    assert message.payload["parsed_text"] == "hi <@U0NOBODY1>"
    assert message.payload["channel"] == {}


def test_message_with_configured_bot_sees_its_handlers():
    config_text = BASE_CONFIG + """
handlers:
  message_handlers:
    - match: "ping"
      match_type: "command"
      description: "Answer pong."
      bots: {"test-team": ["testbot"]}
      callbacks:
        - module: "omnibot.callbacks.message_callbacks:test_callback"
"""
    config = load_config_text(config_text, "omnibot.yaml", credentials_env())
    bot = config.bot("test-team", "testbot")

    message = testing.message("@testbot what", bot=bot)
    result = message_callbacks.help_callback(message)

    assert message.bot is bot
    assert result["actions"][0]["kwargs"]["attachments"][0]["fields"][0]["title"] == "ping"
    testing.assert_valid_result(result, message)


def test_message_parsing_equals_production(fake_slack, tmp_path):
    # The same event through SlackData, a SQLite cache and the fake Slack Web API.
    text = "<@U0BOT0001>: echo hi <@W0TEST002> <#C0TEST001> <!here> :shipit: <mailto:a@example.com|a@example.com>"
    helper = testing.message(text, ts="1700000001.000100")

    bot = dataclasses.replace(testing.make_bot(), credentials=Credentials(bot_token=BOT_TOKEN))
    cache = backends.open_cache(None, str(tmp_path))
    try:
        data = SlackData(cache, SlackClients(fake_slack.api_url))
        event = testing.message_event_body(bot, text, ts="1700000001.000100")["event"]
        production = Message(bot, event, {}, data)
    finally:
        cache.close()

    for field in ("parsed_text", "users", "channels", "specials", "emojis", "emails", "urls", "command_text", "directed", "mentioned", "ts", "channel_id"):
        assert helper.payload[field] == production.payload[field], field
    assert helper.payload["parsed_user"]["name"] == production.payload["parsed_user"]["name"]
    assert helper.payload["channel"]["name"] == production.payload["channel"]["name"]


# -- reactions, slash commands and interactive components --------------------------


def test_reaction():
    reaction = testing.reaction("thumbsup", item_ts="1700000000.000100")

    assert reaction.payload["emoji_name"] == "thumbsup"
    assert reaction.payload["event_type"] == "reaction_added"
    assert reaction.payload["match_type"] == "reaction"
    assert reaction.payload["item_ts"] == "1700000000.000100"
    assert reaction.reply_thread_ts == "1700000000.000100"


def test_slash_command():
    command = testing.slash_command("/echo", "hi  <@W0TEST002>", channel="G0TEST001")

    assert command.payload["command"] == "/echo"
    assert command.payload["text"] == "hi  <@W0TEST002>"
    assert command.payload["parsed_text"] == "hi  @bob"
    assert command.payload["args"] == "hi @bob"
    assert command.payload["channel"]["name"] == "ops-private"
    assert command.payload["parsed_user"]["name"] == "alice"
    assert command.response_url.startswith("https://hooks.slack.invalid/")
    result = slash_command_callbacks.echo_callback(command)
    testing.assert_valid_result(result, command)


def test_block_actions_callback_id_is_the_block_id():
    component = testing.interactive_component("block_actions", callback_id="alerts", value="alert-9")

    payload = component.payload
    assert payload["callback_id"] == "alerts"
    assert payload["routed_by"] == {"key": "callback_id", "value": "alerts"}
    assert payload["routed_action"]["block_id"] == "alerts"
    assert payload["routed_action"]["value"] == "alert-9"
    assert component.channel_id == "C0TEST001"
    assert payload["message"]["parsed_text"] == "A message with a component"


def test_block_actions_action_id_in_a_modal():
    component = testing.interactive_component("block_actions", callback_id="incident", action_id="sev", block_id="sev_block")

    assert component.payload["routed_by"] == {"key": "action_id", "value": "sev"}
    assert component.payload["view"]["callback_id"] == "incident"
    assert component.channel_id is None


def test_view_submission_values():
    values = {"title_block": {"title_input": {"type": "plain_text_input", "value": "db latency"}}}

    component = testing.interactive_component("view_submission", callback_id="incident_create", values=values)

    assert component.payload["callback_id"] == "incident_create"
    assert component.payload["view"]["state"]["values"] == values
    assert component.response_url is None


@pytest.mark.parametrize("payload_type", testing.INTERACTIVE_TYPES)
def test_every_interactive_type_routes(payload_type):
    # block_suggestion routes by action_id; every other type by callback_id.
    ids = {"action_id": "pick"} if payload_type == "block_suggestion" else {"callback_id": "cb"}

    component = testing.interactive_component(payload_type, **ids)

    assert component.payload["type"] == payload_type
    assert component.payload["routed_by"]["value"] in ("pick", "cb")


def test_interactive_unknown_type_raises():
    with pytest.raises(ValueError, match="unknown interactive type"):
        testing.interactive_component("button_click", callback_id="x")


def test_interactive_that_would_not_route_raises():
    with pytest.raises(ValueError, match="would not receive"):
        testing.interactive_component("view_submission", action_id="only_in_block_actions")


def test_interactive_from_slack_payload():
    payload = testing.interactive_payload(testing.make_bot(), "shortcut", callback_id="new_ticket")

    component = testing.interactive_component(payload=payload, callback_id="new_ticket")

    assert component.payload["callback_id"] == "new_ticket"
    assert component.payload["trigger_id"] == payload["trigger_id"]


# -- checking results --------------------------------------------------------------


@pytest.mark.parametrize(
    "result",
    [
        # Nothing to do.
        None,
        # An empty dict.
        {},
        # One action with kwargs of the usual types.
        {"actions": [{"action": "chat.postMessage", "kwargs": {"text": "hi", "blocks": [{"type": "divider"}], "thread_ts": None}}]},
        # A method with three parts.
        {"actions": [{"action": "admin.conversations.archive", "kwargs": {"channel_id": "C1"}}]},
        # omnibot_parse on a string field.
        {"actions": [{"action": "chat.postMessage", "kwargs": {"text": "@here", "omnibot_parse": {"text": ["specials"]}}}]},
    ],
)
def test_valid_results_have_no_problems(result):
    assert testing.result_problems(result, testing.message("hi")) == []


@pytest.mark.parametrize(
    "result, problem",
    [
        # Not a dict.
        (["chat.postMessage"], "result must be a dict, not list"),
        # A typo in the top-level key.
        ({"action": []}, "unknown key 'action'"),
        # actions not a list.
        ({"actions": {"action": "chat.postMessage"}}, "actions must be a list, not dict"),
        # slack_sdk's method name.
        ({"actions": [{"action": "chat_postMessage"}]}, "did you mean 'chat.postMessage'?"),
        # snake case after the dot.
        ({"actions": [{"action": "chat.post_message"}]}, "did you mean 'chat.postMessage'?"),
        # No method name.
        ({"actions": [{"kwargs": {}}]}, "actions[0].action: missing or not a string"),
        # kwargs not a mapping.
        ({"actions": [{"action": "chat.postMessage", "kwargs": ["hi"]}]}, "actions[0].kwargs: must be a mapping"),
        # A channel id given as a number.
        ({"actions": [{"action": "chat.postMessage", "kwargs": {"channel": 5}}]}, "kwargs.channel: must be a string"),
        # blocks as a mapping.
        ({"actions": [{"action": "chat.postMessage", "kwargs": {"blocks": {"type": "divider"}}}]}, "kwargs.blocks: must be a list"),
        # A value that JSON cannot encode.
        ({"actions": [{"action": "chat.postMessage", "kwargs": {"metadata": {1, 2}}}]}, "kwargs.metadata: cannot be encoded as JSON"),
        # An omnibot_parse kind that does not exist.
        ({"actions": [{"action": "chat.postMessage", "kwargs": {"text": "x", "omnibot_parse": {"text": ["everyone"]}}}]}, "omnibot_parse.text: must be a list of"),
        # omnibot_parse naming a missing field.
        ({"actions": [{"action": "chat.postMessage", "kwargs": {"omnibot_parse": {"text": ["users"]}}}]}, "omnibot_parse.text: names a field that is missing"),
        # A response to a message, which has no response_url.
        ({"responses": [{"text": "hi"}]}, "this message payload has no response_url"),
        # An action with a misspelled key.
        ({"actions": [{"action": "chat.postMessage", "kwarg": {}}]}, "actions[0].kwarg: unknown key"),
    ],
)
def test_invalid_results_are_reported(result, problem):
    problems = testing.result_problems(result, testing.message("hi"))

    assert any(problem in found for found in problems), problems


@pytest.mark.parametrize(
    "response, problem",
    [
        # Nothing Slack can show.
        ({"response_type": "ephemeral"}, "has no 'text', 'blocks' or 'attachments'"),
        # An unknown response type.
        ({"text": "hi", "response_type": "public"}, "'public' is not one of in_channel, ephemeral"),
        # replace_original as a string.
        ({"text": "hi", "replace_original": "true"}, "replace_original: must be true or false"),
        # Not a mapping.
        ("hi", "responses[0]: must be a mapping"),
    ],
)
def test_invalid_responses_are_reported(response, problem):
    command = testing.slash_command("/echo", "hi")

    problems = testing.result_problems({"responses": [response]}, command)

    assert any(problem in found for found in problems), problems


@pytest.mark.parametrize(
    "result, problem",
    [
        # A response_action Slack does not know.
        ({"response_action": "close"}, "'close' is not one of errors, update, push, clear"),
        # errors without its mapping.
        ({"response_action": "errors"}, "needs an 'errors' mapping"),
        # update without a view.
        ({"response_action": "update"}, "needs a 'view' mapping"),
    ],
)
def test_invalid_synchronous_results_are_reported(result, problem):
    problems = testing.result_problems(result, synchronous=True)

    assert any(problem in found for found in problems), problems


def test_synchronous_result_may_hold_any_key():
    result = {"response_action": "errors", "errors": {"title_block": "Too short"}}

    assert testing.result_problems(result, synchronous=True) == []


def test_assert_valid_result_lists_every_problem():
    result = {"actions": [{"action": "chat_postMessage", "kwargs": {"channel": 5}}]}

    with pytest.raises(AssertionError) as raised:
        testing.assert_valid_result(result)

    message = str(raised.value)
    assert "actions[0].action: 'chat_postMessage' is not a Slack Web API method name" in message
    assert "actions[0].kwargs.channel: must be a string, not int 5" in message
