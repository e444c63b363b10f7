"""``omnibot simulate``: every kind against a running ``omnibot serve`` and the fake Slack."""

import json
import time

import pytest

from omnibot.fake_slack import FakeSlack
from tests import recorders
from tests.integration.serve_process import ServeProcess
from tests.support import BASE_CONFIG, wait_until

pytestmark = pytest.mark.slow

CONFIG = BASE_CONFIG + """
handlers:
  message_handlers:
    - match: "ping"
      match_type: "command"
      bots: {"test-team": ["testbot"]}
      callbacks:
        - module: "omnibot.callbacks.message_callbacks:test_callback"
          kwargs: {text: "pong"}
    - match: "thumbsup"
      match_type: "reaction"
      bots: {"test-team": ["testbot"]}
      callbacks:
        - module: "omnibot.callbacks.message_callbacks:test_callback"
          kwargs: {text: "Thanks!"}
  slash_command_handlers:
    - command: "/echo"
      bots: {"test-team": ["testbot"]}
      callbacks:
        - module: "omnibot.callbacks.slash_command_callbacks:echo_callback"
  interactive_component_handlers:
    - callback_id: "alerts"
      bots: {"test-team": ["testbot"]}
      callbacks:
        - module: "tests.recorders:respond"
          kwargs: {text: "acknowledged"}
    - callback_id: "incident_create"
      bots: {"test-team": ["testbot"]}
      callbacks:
        - module: "tests.recorders:validate_incident"
          synchronous: true
    - action_id: "pick"
      bots: {"test-team": ["testbot"]}
      callbacks:
        - module: "tests.recorders:suggest_options"
          synchronous: true
    - callback_id: "new_ticket"
      bots: {"test-team": ["testbot"]}
      callbacks:
        - module: "tests.recorders:record_view"
"""


@pytest.fixture(scope="module")
def slack():
    fake = FakeSlack().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def serve(tmp_path_factory, slack):
    process = ServeProcess(tmp_path_factory.mktemp("simulate"), CONFIG, slack.api_url).start()
    yield process
    process.stop()


def simulate_ok(serve, *argv):
    result = serve.simulate(*argv)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"POST {serve.url}/api/v1/slack/")
    assert lines[0].endswith("-> HTTP 200")
    return lines[1]


def post_texts(slack):
    return [call["args"].get("text") for call in slack.calls("chat.postMessage")]


def test_message(serve, slack):
    answer = simulate_ok(serve, "message", "@testbot ping")

    assert json.loads(answer) == {"status": "success"}
    wait_until(lambda: "pong" in post_texts(slack), message="pong")
    post = next(call for call in slack.calls("chat.postMessage") if call["args"].get("text") == "pong")
    assert post["args"]["channel"] == "C0TEST001"
    assert post["args"]["thread_ts"]
    # The access line of the request is plain text, without terminal colour codes.
    assert '"POST /api/v1/slack/event HTTP/1.1" 200' in serve.log()
    assert "\x1b[" not in serve.log()


def test_resent_message_is_a_duplicate(serve, slack):
    ts = "1796400000.000100"
    first = simulate_ok(serve, "message", "--ts", ts, "--event-id", "EvSIMRESEND1", "@testbot ping")
    retry = simulate_ok(serve, "message", "--ts", ts, "--event-id", "EvSIMRESEND1", "--retry-num", "1", "@testbot ping")
    other_id = simulate_ok(serve, "message", "--ts", ts, "--event-id", "EvSIMRESEND2", "@testbot ping")

    assert json.loads(first) == {"status": "success"}
    assert json.loads(retry) == {"status": "success", "duplicate": True}
    # Not a Slack retry, so it goes through the spool and is dropped when a worker imports it.
    assert json.loads(other_id) == {"status": "success"}
    wait_until(lambda: [c for c in slack.calls("chat.postMessage") if c["args"].get("thread_ts") == ts], message="the reply")
    time.sleep(1.0)
    assert len([c for c in slack.calls("chat.postMessage") if c["args"].get("thread_ts") == ts]) == 1
    assert "ignored a duplicate delivery of event EvSIMRESEND1 (retry 1, reason http_timeout)" in serve.log()
    assert "ignored a duplicate delivery of event EvSIMRESEND2 (not marked as a Slack retry)" in serve.log()


def test_slash_command_posts_to_response_url(serve, slack):
    answer = simulate_ok(serve, "slash", "--command", "/echo", "hello <@W0TEST002>")

    assert answer == "(empty body)"
    hooks = wait_until(lambda: slack.calls("response_url"), message="a response_url post")
    assert hooks[-1]["path"].startswith("/hooks/simulate/commands/")
    # echo_callback requests omnibot_parse, which turns @bob back into a mention.
    assert hooks[-1]["args"]["text"] == "hello <@W0TEST002>"


def test_slash_command_without_handler(serve):
    answer = simulate_ok(serve, "slash", "--command", "/nothing")

    assert "does not have any omnibot handler" in json.loads(answer)["text"]


def test_block_actions(serve, slack):
    simulate_ok(serve, "interactive", "--callback-id", "alerts", "--type", "block_actions", "--value", "alert-9")

    wait_until(lambda: "acknowledged" in post_texts(slack), message="the respond callback's post")
    calls = recorders.read_calls(serve.env["OMNIBOT_TEST_RECORD_FILE"], "respond")
    assert calls[-1]["payload"]["routed_action"]["value"] == "alert-9"


def test_view_submission_synchronous_errors(serve):
    answer = simulate_ok(
        serve, "interactive", "--type", "view_submission", "--callback-id", "incident_create", "--values", '{"title_block": {}}'
    )

    assert json.loads(answer) == {"response_action": "errors", "errors": {"title_block": "Title is required"}}


def test_block_suggestion_options(serve):
    answer = simulate_ok(serve, "interactive", "--type", "block_suggestion", "--action-id", "pick", "--value", "db")

    assert [option["value"] for option in json.loads(answer)["options"]] == ["db1", "db2"]


def test_shortcut(serve):
    simulate_ok(serve, "interactive", "--type", "shortcut", "--callback-id", "new_ticket")

    calls = wait_until(
        lambda: recorders.read_calls(serve.env["OMNIBOT_TEST_RECORD_FILE"], "record_view"), message="record_view"
    )
    assert calls[-1]["payload"]["type"] == "shortcut"


def test_reaction_to_bot_message(serve, slack):
    simulate_ok(serve, "reaction", "--emoji", "thumbsup", "--ts", "1700000000.000200")

    wait_until(lambda: "Thanks!" in post_texts(slack), message="the reaction's thank-you")
    post = next(call for call in slack.calls("chat.postMessage") if call["args"].get("text") == "Thanks!")
    assert post["args"]["thread_ts"] == "1700000000.000200"


def test_unreachable_url_exits_1(serve):
    result = serve.simulate("message", "ping", url="http://127.0.0.1:9")

    assert result.returncode == 1
    assert "cannot reach http://127.0.0.1:9/api/v1/slack/event" in result.stderr


def test_bad_values_json_exits_1(serve):
    result = serve.simulate("interactive", "--type", "view_submission", "--values", "{not json")

    assert result.returncode == 1
    assert "--values is not valid JSON" in result.stderr
