"""Tests of the fake Slack Web API server, over real HTTP on 127.0.0.1."""

import json
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import threading

import pytest
import requests
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

from omnibot.fake_slack import FakeSlack, WorkspaceError, generate_workspace, load_workspace, main

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
SAMPLE_WORKSPACE = REPO_ROOT / "config" / "workspace.yaml"
AUTH = {"Authorization": "Bearer xoxb-test"}
TS_PATTERN = re.compile(r"^\d{10}\.\d{6}$")


@pytest.fixture
def fake():
    slack = FakeSlack().start()
    yield slack
    slack.stop()


@pytest.fixture
def client(fake):
    return WebClient(token="xoxb-test", base_url=fake.api_url)


def start_fake(workspace):
    return FakeSlack(workspace).start()


def api(fake, method, headers=AUTH, **data):
    response = requests.post(fake.api_url + method, data=data, headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def fake_slack_threads():
    return [thread for thread in threading.enumerate() if thread.name.startswith("fake-slack")]


# Workspace files.


def test_sample_workspace_file_loads():
    workspace = load_workspace(SAMPLE_WORKSPACE)

    assert workspace["team"] == {"id": "T0TEST001", "name": "test-team", "domain": "test-team"}
    assert workspace["bot"]["app_id"] == "A0TEST001"
    assert workspace["bot"]["user_id"] == "U0BOT0001"
    assert workspace["bot"]["bot_id"] == "B0TEST001"
    assert [user["id"] for user in workspace["users"]] == ["U0BOT0001", "U0TEST001", "W0TEST002"]
    assert [channel["id"] for channel in workspace["channels"]] == ["C0TEST001", "G0TEST001", "D0TEST001"]
    assert workspace["emoji"]["ship_it"] == "alias:shipit"
    assert workspace["messages"]["C0TEST001"][0]["ts"] == "1700000000.000100"


def test_sample_workspace_served_from_file():
    with FakeSlack.from_file(SAMPLE_WORKSPACE) as slack:
        private = api(slack, "conversations.info", channel="G0TEST001")["channel"]
        history = api(slack, "conversations.history", channel="C0TEST001")

    assert private["is_private"] is True
    assert private["name"] == "ops-private"
    assert [message["text"] for message in history["messages"]] == ["hello from alice"]


def test_json_workspace_file_loads(tmp_path):
    path = tmp_path / "workspace.json"
    path.write_text(json.dumps({"team": {"id": "T0OTHER01", "name": "other"}, "users": [{"id": "U1"}]}))

    workspace = load_workspace(path)

    assert workspace["team"]["id"] == "T0OTHER01"
    assert workspace["team"]["domain"] == "other"
    assert workspace["bot"]["user_id"] == "U0BOT0001"
    assert [user["id"] for user in workspace["users"]] == ["U1", "U0BOT0001"]


@pytest.mark.parametrize(
    "file_name, content, message",
    [
        ("workspace.txt", "team: {}", "unsupported workspace file extension"),
        ("workspace.yaml", "users: [", "invalid YAML"),
        ("workspace.json", "{", "invalid JSON"),
        ("workspace.yaml", "users: {id: U1}", "users must be a list"),
        ("workspace.yaml", "users: [{name: nobody}]", 'users[0]: missing or non-string "id"'),
        ("workspace.yaml", "users: [{id: U1}, {id: U1}]", "duplicate user id U1"),
        ("workspace.yaml", "channels: [{id: D1}]", 'is an IM and needs a "user"'),
        ("workspace.yaml", "accept_any_channel: maybe", "accept_any_channel must be true or false"),
        ("workspace.yaml", "messages: {C1: [{text: hi}]}", 'missing "ts"'),
        ("workspace.yaml", "messages: {C1: [{ts: soon}]}", '"ts" must be a string such as'),
    ],
)
def test_invalid_workspace_file_rejected(tmp_path, file_name, content, message):
    path = tmp_path / file_name
    path.write_text(content)

    with pytest.raises(WorkspaceError) as raised:
        load_workspace(path)

    assert message in str(raised.value)
    assert str(path) in str(raised.value)


# Authentication.


def test_auth_test_returns_bot_identity(client):
    response = client.auth_test()

    assert response["ok"] is True
    assert response["user_id"] == "U0BOT0001"
    assert response["bot_id"] == "B0TEST001"
    assert response["team_id"] == "T0TEST001"
    assert response["team"] == "test-team"
    assert response["user"] == "testbot"


def test_missing_token_returns_not_authed(fake):
    assert api(fake, "auth.test", headers={}) == {"ok": False, "error": "not_authed"}
    assert api(fake, "some.unknownMethod", headers={}) == {"ok": False, "error": "not_authed"}


def test_listed_tokens_reject_other_tokens():
    slack = start_fake({"tokens": ["xoxb-good"]})
    try:
        good = api(slack, "auth.test", headers={"Authorization": "Bearer xoxb-good"})
        bad = api(slack, "auth.test", headers={"Authorization": "Bearer xoxb-bad"})
    finally:
        slack.stop()

    assert good["ok"] is True
    assert bad == {"ok": False, "error": "invalid_auth"}


def test_token_argument_accepted_and_not_recorded(fake):
    response = api(fake, "auth.test", headers={}, token="xoxb-from-form-1234")

    call = fake.calls("auth.test")[0]
    assert response["ok"] is True
    assert "token" not in call["args"]
    assert call["headers"] == {"token_present": True, "token_last4": "1234"}


def test_call_headers_keep_only_token_suffix(fake):
    api(fake, "auth.test", headers={"Authorization": "Bearer xoxb-secret-wxyz"})
    api(fake, "auth.test", headers={})

    with_token, without_token = fake.calls("auth.test")
    assert with_token["headers"] == {"token_present": True, "token_last4": "wxyz"}
    assert without_token["headers"] == {"token_present": False, "token_last4": None}
    assert "xoxb-secret" not in json.dumps(fake.calls())


# Users, bots, team and emoji.


def test_users_info_and_lookup_by_email(client):
    by_id = client.users_info(user="W0TEST002")
    by_email = client.users_lookupByEmail(email="Alice@Example.com")

    assert by_id["user"]["name"] == "bob"
    assert by_id["user"]["deleted"] is False
    assert by_email["user"]["id"] == "U0TEST001"
    assert by_email["user"]["profile"]["display_name"] == "alice"


def test_unknown_user_errors(fake):
    assert api(fake, "users.info", user="U0NOBODY")["error"] == "user_not_found"
    assert api(fake, "users.lookupByEmail", email="nobody@example.com")["error"] == "users_not_found"


def test_users_list_pages_with_cursor():
    slack = start_fake(generate_workspace(users=450, channels=3))
    client = WebClient(token="xoxb-test", base_url=slack.api_url)
    try:
        # slack_sdk's iterator updates and returns the same response object,
        # so each page is read while iterating.
        pages = [(page["members"], page["response_metadata"]["next_cursor"]) for page in client.users_list(limit=200)]
        default_page = client.users_list()
    finally:
        slack.stop()

    assert [len(members) for members, _ in pages] == [200, 200, 50]
    assert pages[0][1] != ""
    assert pages[-1][1] == ""
    ids = [member["id"] for members, _ in pages for member in members]
    assert len(set(ids)) == 450
    assert len(default_page["members"]) == 200


def test_users_list_serves_50000_users():
    slack = start_fake(generate_workspace(users=50_000, channels=10))
    session = requests.Session()
    try:
        count = 0
        cursor = ""
        while True:
            response = session.get(
                slack.api_url + "users.list", params={"limit": 1000, "cursor": cursor}, headers=AUTH, timeout=10
            ).json()
            count += len(response["members"])
            cursor = response["response_metadata"]["next_cursor"]
            if not cursor:
                break
    finally:
        session.close()
        slack.stop()

    assert count == 50_000


def test_users_list_invalid_cursor(fake):
    assert api(fake, "users.list", cursor="not-a-cursor")["error"] == "invalid_cursor"


def test_bots_team_and_emoji(client):
    bot = client.bots_info(bot="B0TEST001")["bot"]
    team = client.team_info()["team"]
    emoji = client.emoji_list()["emoji"]

    assert bot["app_id"] == "A0TEST001"
    assert bot["user_id"] == "U0BOT0001"
    assert team["id"] == "T0TEST001"
    assert team["domain"] == "test-team"
    assert emoji["ship_it"] == "alias:shipit"
    assert emoji["shipit"].startswith("https://")


def test_bots_info_unknown_bot(fake):
    assert api(fake, "bots.info", bot="B0NOBODY")["error"] == "bot_not_found"


# Conversations.


def test_conversations_list_filters():
    workspace = {
        "channels": [
            {"id": "C1", "name": "open"},
            {"id": "C2", "name": "old", "is_archived": True},
            {"id": "G1", "name": "secret"},
            {"id": "D1", "user": "U0TEST001"},
            {"id": "G2", "name": "mpdm-a--b-1", "is_mpim": True},
        ]
    }
    slack = start_fake(workspace)
    client = WebClient(token="xoxb-test", base_url=slack.api_url)
    try:
        default = client.conversations_list()
        private_and_im = client.conversations_list(types="private_channel,im")
        everything = client.conversations_list(types=["public_channel", "private_channel", "mpim", "im"])
        active = client.conversations_list(exclude_archived=True)
        invalid = api(slack, "conversations.list", types="public_channel,nonsense")
    finally:
        slack.stop()

    assert [channel["id"] for channel in default["channels"]] == ["C1", "C2"]
    assert [channel["id"] for channel in private_and_im["channels"]] == ["G1", "D1"]
    assert [channel["id"] for channel in everything["channels"]] == ["C1", "C2", "G1", "D1", "G2"]
    assert [channel["id"] for channel in active["channels"]] == ["C1"]
    assert invalid["error"] == "invalid_types"


def test_conversations_list_pages():
    slack = start_fake(generate_workspace(users=3, channels=250))
    client = WebClient(token="xoxb-test", base_url=slack.api_url)
    try:
        pages = [
            (page["channels"], page["response_metadata"]["next_cursor"])
            for page in client.conversations_list(types="public_channel,private_channel,im", limit=100)
        ]
    finally:
        slack.stop()

    assert [len(channels) for channels, _ in pages] == [100, 100, 50]
    assert pages[-1][1] == ""


def test_conversations_info(client, fake):
    general = client.conversations_info(channel="C0TEST001")["channel"]
    dm = client.conversations_info(channel="D0TEST001")["channel"]

    assert general["name"] == "general"
    assert general["is_channel"] is True
    assert dm["is_im"] is True
    assert dm["user"] == "U0TEST001"
    assert api(fake, "conversations.info", channel="C0UNKNOWN")["error"] == "channel_not_found"


def test_conversations_open_returns_existing_im(client):
    response = client.conversations_open(users="U0TEST001")

    assert response["channel"]["id"] == "D0TEST001"
    assert response["already_open"] is True


def test_conversations_open_creates_im_once(client):
    first = client.conversations_open(users=["W0TEST002"], return_im=True)
    second = client.conversations_open(users="W0TEST002")

    assert first["channel"]["id"].startswith("D")
    assert first["channel"]["is_im"] is True
    assert first["channel"]["user"] == "W0TEST002"
    assert "already_open" not in first
    assert second["channel"] == {"id": first["channel"]["id"]}
    assert second["already_open"] is True


def test_conversations_open_errors(fake):
    assert api(fake, "conversations.open", users="U0NOBODY")["error"] == "user_not_found"
    assert api(fake, "conversations.open")["error"] == "users_list_not_supplied"


def test_conversations_set_topic(client):
    channel = client.conversations_setTopic(channel="C0TEST001", topic="deploys at noon")["channel"]
    stored = client.conversations_info(channel="C0TEST001")["channel"]

    assert channel["topic"]["value"] == "deploys at noon"
    assert channel["topic"]["creator"] == "U0BOT0001"
    assert stored["topic"]["value"] == "deploys at noon"


# Messages.


def test_post_message_stores_message_in_history(client):
    posted = client.chat_postMessage(channel="C0TEST001", text="hello", blocks=[{"type": "divider"}])
    history = client.conversations_history(channel="C0TEST001")

    assert posted["channel"] == "C0TEST001"
    assert TS_PATTERN.match(posted["ts"])
    assert posted["message"]["text"] == "hello"
    assert posted["message"]["bot_id"] == "B0TEST001"
    assert posted["message"]["user"] == "U0BOT0001"
    assert posted["message"]["blocks"] == [{"type": "divider"}]
    assert [message["ts"] for message in history["messages"]] == [posted["ts"]]


def test_post_message_form_blocks_decoded(fake):
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*hi*"}}]
    posted = api(fake, "chat.postMessage", channel="C0TEST001", blocks=json.dumps(blocks))

    assert posted["message"]["blocks"] == blocks
    assert fake.calls("chat.postMessage")[0]["args"]["blocks"] == json.dumps(blocks)


def test_post_message_errors(fake):
    assert api(fake, "chat.postMessage", channel="C0TEST001")["error"] == "no_text"
    assert api(fake, "chat.postMessage", text="hi")["error"] == "channel_not_found"
    assert api(fake, "chat.postMessage", channel="#nowhere", text="hi")["error"] == "channel_not_found"


def test_post_message_accepts_unknown_channel_by_default(fake):
    posted = api(fake, "chat.postMessage", channel="C0ANYTHING", text="hi")
    history = api(fake, "conversations.history", channel="C0ANYTHING")

    assert posted["ok"] is True
    assert [message["ts"] for message in history["messages"]] == [posted["ts"]]


def test_strict_channels_reject_unknown_id():
    slack = start_fake({"accept_any_channel": False})
    try:
        unknown = api(slack, "chat.postMessage", channel="C0ANYTHING", text="hi")
        known = api(slack, "chat.postMessage", channel="C0TEST001", text="hi")
    finally:
        slack.stop()

    assert unknown == {"ok": False, "error": "channel_not_found"}
    assert known["ok"] is True


def test_post_message_by_channel_name_and_user_id(client):
    by_name = client.chat_postMessage(channel="#general", text="by name")
    to_user = client.chat_postMessage(channel="U0TEST001", text="direct")

    assert by_name["channel"] == "C0TEST001"
    assert to_user["channel"] == "D0TEST001"


def test_post_message_to_archived_channel():
    slack = start_fake({"channels": [{"id": "C1", "name": "old", "is_archived": True}]})
    try:
        response = api(slack, "chat.postMessage", channel="C1", text="hi")
    finally:
        slack.stop()

    assert response["error"] == "is_archived"


def test_thread_reply_hidden_from_history(client):
    parent = client.chat_postMessage(channel="C0TEST001", text="parent")
    reply = client.chat_postMessage(channel="C0TEST001", text="reply", thread_ts=parent["ts"])

    history = client.conversations_history(channel="C0TEST001")["messages"]
    replies = client.conversations_replies(channel="C0TEST001", ts=parent["ts"])["messages"]

    assert [message["ts"] for message in history] == [parent["ts"]]
    assert history[0]["reply_count"] == 1
    assert [message["ts"] for message in replies] == [parent["ts"], reply["ts"]]


def test_history_time_range_and_limit(client):
    posted = [client.chat_postMessage(channel="C0TEST001", text=f"m{index}")["ts"] for index in range(5)]

    newest_two = client.conversations_history(channel="C0TEST001", limit=2)
    before_last = client.conversations_history(channel="C0TEST001", latest=posted[4])
    up_to_last = client.conversations_history(channel="C0TEST001", latest=posted[4], inclusive=True)
    middle = client.conversations_history(channel="C0TEST001", oldest=posted[1], latest=posted[3])

    assert [message["ts"] for message in newest_two["messages"]] == [posted[4], posted[3]]
    assert newest_two["has_more"] is True
    assert newest_two["response_metadata"]["next_cursor"] != ""
    assert [message["ts"] for message in before_last["messages"]] == posted[3::-1]
    assert [message["ts"] for message in up_to_last["messages"]] == posted[::-1]
    assert [message["ts"] for message in middle["messages"]] == [posted[2]]


def test_history_pages_with_cursor(client):
    posted = [client.chat_postMessage(channel="C0TEST001", text=f"m{index}")["ts"] for index in range(5)]

    pages = [(page["messages"], page["has_more"]) for page in client.conversations_history(channel="C0TEST001", limit=2)]

    assert [message["ts"] for messages, _ in pages for message in messages] == posted[::-1]
    assert [has_more for _, has_more in pages] == [True, True, False]


def test_history_rejects_invalid_latest(fake):
    assert api(fake, "conversations.history", channel="C0TEST001", latest="yesterday")["error"] == "invalid_ts_latest"


def test_concurrent_posts_get_unique_increasing_ts(fake):
    results = []
    lock = threading.Lock()

    def post_messages():
        with requests.Session() as session:
            for index in range(25):
                response = session.post(
                    fake.api_url + "chat.postMessage",
                    json={"channel": "C0TEST001", "text": str(index)},
                    headers=AUTH,
                    timeout=10,
                ).json()
                with lock:
                    results.append(response["ts"])

    threads = [threading.Thread(target=post_messages) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    history = api(fake, "conversations.history", channel="C0TEST001", limit=1000)["messages"]
    history_ts = [message["ts"] for message in history]
    assert len(set(results)) == 200
    assert sorted(history_ts) == sorted(results)
    assert history_ts == sorted(history_ts, key=lambda ts: tuple(int(part) for part in ts.split(".")), reverse=True)


def test_update_delete_and_reaction(client):
    posted = client.chat_postMessage(channel="C0TEST001", text="draft")

    updated = client.chat_update(channel="C0TEST001", ts=posted["ts"], text="final")
    client.reactions_add(channel="C0TEST001", timestamp=posted["ts"], name="shipit")
    stored = client.conversations_history(channel="C0TEST001")["messages"][0]
    client.chat_delete(channel="C0TEST001", ts=posted["ts"])
    after_delete = client.conversations_history(channel="C0TEST001")["messages"]

    assert updated["ts"] == posted["ts"]
    assert updated["text"] == "final"
    assert stored["text"] == "final"
    assert stored["reactions"] == [{"name": "shipit", "users": ["U0BOT0001"], "count": 1}]
    assert after_delete == []


def test_reaction_twice_returns_already_reacted(fake):
    posted = api(fake, "chat.postMessage", channel="C0TEST001", text="hi")

    first = api(fake, "reactions.add", channel="C0TEST001", timestamp=posted["ts"], name=":tada:")
    second = api(fake, "reactions.add", channel="C0TEST001", timestamp=posted["ts"], name="tada")

    assert first == {"ok": True}
    assert second == {"ok": False, "error": "already_reacted"}


def test_unknown_message_accepted_unless_strict(fake):
    lenient = api(fake, "chat.update", channel="C0TEST001", ts="1700000000.000001", text="x")

    strict = start_fake({"accept_any_channel": False})
    try:
        update = api(strict, "chat.update", channel="C0TEST001", ts="1700000000.000001", text="x")
        delete = api(strict, "chat.delete", channel="C0TEST001", ts="1700000000.000001")
        reaction = api(strict, "reactions.add", channel="C0TEST001", timestamp="1700000000.000001", name="x")
    finally:
        strict.stop()

    assert lenient["ok"] is True
    assert update["error"] == "message_not_found"
    assert delete["error"] == "message_not_found"
    assert reaction["error"] == "message_not_found"


def test_post_ephemeral(client, fake):
    response = client.chat_postEphemeral(channel="C0TEST001", user="U0TEST001", text="only you")

    assert TS_PATTERN.match(response["message_ts"])
    assert client.conversations_history(channel="C0TEST001")["messages"] == []
    assert api(fake, "chat.postEphemeral", channel="C0TEST001", user="U0NOBODY", text="x")["error"] == "user_not_found"


# Dialogs and views.


def test_dialog_open(client, fake):
    response = client.dialog_open(trigger_id="123.456.abc", dialog={"title": "Request", "elements": []})

    assert response["ok"] is True
    assert api(fake, "dialog.open", dialog="{}")["error"] == "missing_trigger"


def test_views_open_and_update(client):
    opened = client.views_open(trigger_id="123.456.abc", view={"type": "modal", "callback_id": "ask", "blocks": []})
    view = opened["view"]
    updated = client.views_update(view_id=view["id"], hash=view["hash"], view={"type": "modal", "blocks": []})

    assert view["id"].startswith("V")
    assert view["callback_id"] == "ask"
    assert view["team_id"] == "T0TEST001"
    assert updated["view"]["id"] == view["id"]
    assert updated["view"]["hash"] != view["hash"]


def test_views_update_hash_conflict(client):
    view = client.views_open(trigger_id="123.456.abc", view={"type": "modal", "blocks": []})["view"]

    with pytest.raises(SlackApiError) as raised:
        client.views_update(view_id=view["id"], hash="0.stale", view={"type": "modal", "blocks": []})

    assert raised.value.response["error"] == "hash_conflict"


def test_views_open_requires_trigger_and_view(fake):
    assert api(fake, "views.open", view="{}")["error"] == "invalid_arguments"
    assert api(fake, "views.open", trigger_id="1.2.a")["error"] == "invalid_arguments"
    assert api(fake, "views.open", trigger_id="1.2.a", view="not json")["error"] == "invalid_arguments"


def test_views_publish_reuses_home_view(client):
    first = client.views_publish(user_id="U0TEST001", view={"type": "home", "blocks": []})["view"]
    second = client.views_publish(user_id="U0TEST001", view={"type": "home", "blocks": [{"type": "divider"}]})["view"]

    assert first["type"] == "home"
    assert second["id"] == first["id"]
    assert second["blocks"] == [{"type": "divider"}]


# Unknown methods, bodies and paths.


def test_unknown_method_returns_ok_and_recorded(fake):
    response = api(fake, "files.remote.add", external_id="x")

    assert response == {"ok": True}
    assert fake.calls("files.remote.add")[0]["args"] == {"external_id": "x"}


def test_unknown_method_rejected_when_strict():
    slack = start_fake({"strict_methods": True})
    try:
        response = api(slack, "files.remote.add")
    finally:
        slack.stop()

    assert response == {"ok": False, "error": "unknown_method"}


def test_get_query_and_json_body_accepted(fake):
    by_query = requests.get(fake.api_url + "users.info", params={"user": "U0TEST001"}, headers=AUTH, timeout=10)
    by_json = requests.post(fake.api_url + "users.info", json={"user": "U0TEST001"}, headers=AUTH, timeout=10)

    assert by_query.json()["user"]["name"] == "alice"
    assert by_json.json()["user"]["name"] == "alice"


def test_chunked_and_multipart_bodies_accepted(fake):
    chunked = requests.post(
        fake.api_url + "chat.postMessage",
        data=iter([b"channel=C0TEST001", b"&text=chunked"]),
        headers={**AUTH, "Content-Type": "application/x-www-form-urlencoded"},
        timeout=10,
    )
    multipart = requests.post(
        fake.api_url + "files.upload",
        data={"channels": "C0TEST001"},
        files={"file": ("notes.txt", b"12345")},
        headers=AUTH,
        timeout=10,
    )

    assert chunked.json()["message"]["text"] == "chunked"
    assert multipart.json() == {"ok": True}
    assert fake.calls("files.upload")[0]["args"] == {"channels": "C0TEST001", "file": "<file notes.txt, 5 bytes>"}


def test_invalid_json_body_returns_invalid_json(fake):
    response = requests.post(
        fake.api_url + "chat.postMessage",
        data=b"{not json",
        headers={**AUTH, "Content-Type": "application/json"},
        timeout=10,
    )

    assert response.json() == {"ok": False, "error": "invalid_json"}
    assert fake.calls()[0]["error"] == "invalid_json"


@pytest.mark.parametrize(
    "length, status",
    [("abc", 400), ("-1", 400), ("20000000", 413)],
)
def test_bad_content_length_rejected(fake, length, status):
    host, port = fake.url.removeprefix("http://").split(":")
    request = f"POST /api/auth.test HTTP/1.1\r\nHost: {host}\r\nContent-Length: {length}\r\n\r\n"

    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(request.encode())
        status_line = connection.makefile("rb").readline().decode()

    assert status_line.split()[1] == str(status)
    assert fake.calls() == []


@pytest.mark.parametrize(
    "method, arguments, error",
    [
        ("users.list", {"limit": {}}, "invalid_arguments"),
        ("users.list", {"cursor": 5}, "invalid_cursor"),
        ("conversations.list", {"types": 7}, "invalid_types"),
        ("conversations.open", {"users": {"U0TEST001": 1}}, "user_not_found"),
        ("views.open", {"trigger_id": "1.2.a", "view": [1]}, "invalid_arguments"),
        ("conversations.history", {"channel": "C0TEST001", "oldest": [1]}, "invalid_ts_oldest"),
    ],
)
def test_wrongly_typed_arguments_return_errors(fake, method, arguments, error):
    response = requests.post(fake.api_url + method, json=arguments, headers=AUTH, timeout=10)

    assert response.status_code == 200
    assert response.json() == {"ok": False, "error": error}


def test_unknown_path_returns_404(fake):
    response = requests.get(fake.url + "/nothing-here", timeout=10)

    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


# response_url hooks.


def test_hook_post_recorded(fake):
    response = requests.post(fake.hook_url("actions/T0TEST001/1/abc"), json={"text": "done"}, timeout=10)

    call = fake.calls("response_url")[0]
    assert response.status_code == 200
    assert response.text == "ok"
    assert call["path"] == "/hooks/actions/T0TEST001/1/abc"
    assert call["args"] == {"text": "done"}


def test_hook_rejects_get(fake):
    assert requests.get(fake.hook_url(), timeout=10).status_code == 405


# Call log.


def test_calls_endpoint_filters_and_clears(fake):
    api(fake, "auth.test")
    api(fake, "chat.postMessage", channel="C0TEST001", text="one")
    api(fake, "chat.postMessage", channel="C0TEST001", text="two")

    everything = requests.get(fake.url + "/_calls", timeout=10).json()
    posts = requests.get(fake.url + "/_calls", params={"method": "chat.postMessage"}, timeout=10).json()
    since_two = requests.get(fake.url + "/_calls", params={"since": 2}, timeout=10).json()
    bad_since = requests.get(fake.url + "/_calls", params={"since": "-1"}, timeout=10)
    cleared = requests.delete(fake.url + "/_calls", timeout=10)

    assert [call["method"] for call in everything["calls"]] == ["auth.test", "chat.postMessage", "chat.postMessage"]
    assert everything["next_since"] == 3
    assert [call["args"]["text"] for call in posts["calls"]] == ["one", "two"]
    assert [call["args"]["text"] for call in since_two["calls"]] == ["two"]
    assert bad_since.status_code == 400
    assert cleared.json() == {"ok": True}
    assert fake.calls() == []


def test_call_record_fields(fake):
    api(fake, "chat.postMessage", channel="C0TEST001", text="hi")

    call = fake.calls()[0]
    assert call["method"] == "chat.postMessage"
    assert call["path"] == "/api/chat.postMessage"
    assert call["args"] == {"channel": "C0TEST001", "text": "hi"}
    assert call["status"] == 200
    assert call["error"] is None
    assert isinstance(call["time"], float)


def test_wait_for_calls_returns_calls(fake):
    poster = threading.Thread(target=api, args=(fake, "chat.postMessage"), kwargs={"channel": "C0TEST001", "text": "x"})
    poster.start()

    calls = fake.wait_for_calls("chat.postMessage", 1, timeout=10)
    poster.join()

    assert [call["args"]["text"] for call in calls] == ["x"]


def test_wait_for_calls_timeout_lists_calls(fake):
    api(fake, "auth.test")

    with pytest.raises(AssertionError) as raised:
        fake.wait_for_calls("chat.postMessage", 1, timeout=0.05)

    assert "0 arrived" in str(raised.value)
    assert "auth.test" in str(raised.value)


def test_verbose_prints_one_line_per_call(capsys):
    with FakeSlack(verbose=True) as slack:
        api(slack, "chat.postMessage", channel="C0TEST001", text="x" * 200)

    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("chat.postMessage channel=C0TEST001 text='")
    assert "x" * 77 + "..." in lines[0]
    assert "x" * 78 not in lines[0]


# Faults.


def test_rate_limit_fault_honoured_by_slack_sdk_retry(fake):
    fake.add_fault("chat.postMessage", status=429, retry_after=0, times=1)
    client = WebClient(
        token="xoxb-test",
        base_url=fake.api_url,
        retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=1)],
    )

    response = client.chat_postMessage(channel="C0TEST001", text="retried")

    assert response["ok"] is True
    assert [call["status"] for call in fake.calls("chat.postMessage")] == [429, 200]


def test_rate_limit_fault_without_retry_raises(fake):
    fake.add_fault("chat.postMessage", status=429, times=1)
    client = WebClient(token="xoxb-test", base_url=fake.api_url, retry_handlers=[])

    with pytest.raises(SlackApiError) as raised:
        client.chat_postMessage(channel="C0TEST001", text="limited")

    assert raised.value.response.status_code == 429
    assert raised.value.response["error"] == "ratelimited"
    assert client.chat_postMessage(channel="C0TEST001", text="later")["ok"] is True


def test_rate_limit_fault_sends_retry_after(fake):
    fake.add_fault("auth.test", status=429)
    fake.add_fault("auth.test", status=429, retry_after=7)

    default = requests.post(fake.api_url + "auth.test", headers=AUTH, timeout=10)
    explicit = requests.post(fake.api_url + "auth.test", headers=AUTH, timeout=10)

    assert default.status_code == 429
    assert default.headers["Retry-After"] == "1"
    assert explicit.headers["Retry-After"] == "7"
    assert explicit.json() == {"ok": False, "error": "ratelimited"}


def test_server_error_fault(fake):
    fake.add_fault("users.info", status=500)

    failed = requests.post(fake.api_url + "users.info", data={"user": "U0TEST001"}, headers=AUTH, timeout=10)
    recovered = api(fake, "users.info", user="U0TEST001")

    assert failed.status_code == 500
    assert failed.json() == {"ok": False, "error": "internal_error"}
    assert recovered["ok"] is True


def test_error_code_fault_counts_times(fake):
    fake.add_fault("chat.postMessage", error="missing_scope", times=2)

    responses = [api(fake, "chat.postMessage", channel="C0TEST001", text="x") for _ in range(3)]

    assert [response.get("error") for response in responses] == ["missing_scope", "missing_scope", None]
    assert api(fake, "conversations.history", channel="C0TEST001")["messages"][0]["ts"] == responses[2]["ts"]


def test_delay_fault_still_responds(fake):
    fake.add_fault("auth.test", delay=0.05)

    assert api(fake, "auth.test")["ok"] is True


def test_faults_over_http(fake):
    added = requests.post(fake.url + "/_faults", json={"method": "*", "error": "fatal_error", "rate": 1.0}, timeout=10)
    listed = requests.get(fake.url + "/_faults", timeout=10).json()
    failing = [api(fake, method) for method in ("auth.test", "team.info")]
    hook = requests.post(fake.hook_url(), json={"text": "x"}, timeout=10)
    cleared = requests.delete(fake.url + "/_faults", timeout=10)
    after = api(fake, "auth.test")

    assert added.status_code == 200
    assert listed["faults"][0]["rate"] == 1.0
    assert failing == [{"ok": False, "error": "fatal_error"}] * 2
    assert hook.text == "fatal_error"
    assert cleared.json() == {"ok": True}
    assert after["ok"] is True


def test_zero_rate_fault_never_fires(fake):
    fake.add_fault("auth.test", status=500, rate=0.0)

    responses = [api(fake, "auth.test") for _ in range(5)]

    assert all(response["ok"] for response in responses)


def test_hook_fault_returns_status(fake):
    fake.add_fault("response_url", status=404, error="expired_url")

    expired = requests.post(fake.hook_url(), json={"text": "late"}, timeout=10)
    fresh = requests.post(fake.hook_url(), json={"text": "again"}, timeout=10)

    assert expired.status_code == 404
    assert expired.text == "expired_url"
    assert fresh.text == "ok"
    assert [call["status"] for call in fake.calls("response_url")] == [404, 200]


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"status": 429}, 'needs a "method"'),
        ({"method": "auth.test"}, "needs at least one of status, error and delay"),
        ({"method": "auth.test", "status": 42}, "HTTP status from 200 to 599"),
        ({"method": "auth.test", "status": 500, "times": 0}, "times must be a whole number >= 1"),
        ({"method": "auth.test", "status": 500, "rate": 2}, "rate must be a number from 0 to 1"),
        ({"method": "auth.test", "delay": -1}, "delay must be a number of seconds >= 0"),
        ({"method": "auth.test", "status": 500, "count": 1}, "unknown fault fields: count"),
    ],
)
def test_invalid_fault_rejected(fake, spec, message):
    response = requests.post(fake.url + "/_faults", json=spec, timeout=10)

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_fault"
    assert message in response.json()["detail"]


def test_invalid_fault_rejected_by_python_api(fake):
    with pytest.raises(ValueError):
        fake.add_fault("auth.test", status=500, times=0)


# Lifecycle and command line.


def test_url_before_start_raises():
    slack = FakeSlack()

    with pytest.raises(RuntimeError):
        slack.url


def test_start_twice_raises(fake):
    with pytest.raises(RuntimeError):
        fake.start()


def test_stop_closes_keepalive_connections():
    slack = FakeSlack().start()
    session = requests.Session()
    api_url = slack.api_url
    session.post(api_url + "auth.test", headers=AUTH, timeout=10)

    slack.stop()
    session.close()

    assert fake_slack_threads() == []
    with pytest.raises(requests.ConnectionError):
        requests.post(api_url + "auth.test", headers=AUTH, timeout=10)


def test_stop_interrupts_delayed_response():
    slack = FakeSlack().start()
    slack.add_fault("auth.test", delay=600)
    outcome = []

    def call():
        try:
            requests.post(slack.api_url + "auth.test", headers=AUTH, timeout=30)
            outcome.append("responded")
        except requests.ConnectionError:
            outcome.append("connection closed")

    caller = threading.Thread(target=call)
    caller.start()
    slack.wait_for_calls("auth.test", 1)
    slack.stop()
    caller.join(timeout=30)

    assert outcome == ["connection closed"]
    assert fake_slack_threads() == []


def test_serve_forever_returns_after_stop():
    slack = FakeSlack().start()
    server_thread = threading.Thread(target=slack.serve_forever)
    server_thread.start()
    response = api(slack, "auth.test")

    slack.stop()
    server_thread.join(timeout=30)

    assert response["ok"] is True
    assert not server_thread.is_alive()
    assert fake_slack_threads() == []


def test_cli_serves_until_sigterm():
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    process = subprocess.Popen(
        [sys.executable, "-m", "omnibot.fake_slack", "--port", "0", "--workspace", str(SAMPLE_WORKSPACE)],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first_line = process.stdout.readline()
        url = re.search(r"listening on (http://127\.0\.0\.1:\d+)", first_line).group(1)
        response = requests.post(url + "/api/chat.postMessage", data={"channel": "C0TEST001", "text": "hi"}, headers=AUTH, timeout=10)

        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()

    assert response.json()["ok"] is True
    assert process.returncode == 0, stderr
    assert "chat.postMessage channel=C0TEST001 text='hi'" in stdout
    assert "fake Slack stopped" in stdout


def test_cli_invalid_workspace_exits_2(tmp_path, capsys):
    path = tmp_path / "broken.yaml"
    path.write_text("users: [")

    status = main(["--port", "0", "--workspace", str(path)])

    assert status == 2
    assert "invalid workspace" in capsys.readouterr().err


def test_cli_rejects_invalid_port(capsys):
    with pytest.raises(SystemExit) as raised:
        main(["--port", "70000"])

    assert raised.value.code == 2
    assert "invalid port 70000" in capsys.readouterr().err


def test_generate_workspace_counts():
    workspace = generate_workspace(users=120, channels=40)
    small = generate_workspace(users=2, channels=1)

    assert len(workspace["users"]) == 120
    assert len(workspace["channels"]) == 40
    assert len({user["id"] for user in workspace["users"]}) == 120
    assert any(user.get("deleted") for user in workspace["users"])
    assert any(channel.get("is_archived") for channel in workspace["channels"])
    assert [user["id"] for user in small["users"]] == ["U0BOT0001", "U0TEST001"]
    assert [channel["id"] for channel in small["channels"]] == ["C0TEST001"]


def test_history_and_replies_return_metadata_only_when_asked(client):
    metadata = {"event_type": "omnibot_post", "event_payload": {"post": "x"}}
    parent = client.chat_postMessage(channel="C0TEST001", text="parent", metadata=metadata)["ts"]
    client.chat_postMessage(channel="C0TEST001", text="reply", thread_ts=parent, metadata=metadata)

    plain = client.conversations_history(channel="C0TEST001")["messages"]
    full = client.conversations_history(channel="C0TEST001", include_all_metadata=True)["messages"]
    thread = client.conversations_replies(channel="C0TEST001", ts=parent, include_all_metadata=True)["messages"]

    assert [message.get("metadata") for message in plain] == [None]
    assert [message.get("metadata") for message in full] == [metadata]
    assert [message.get("metadata") for message in thread] == [metadata, metadata]
