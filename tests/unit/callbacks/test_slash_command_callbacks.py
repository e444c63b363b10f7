"""Tests for omnibot.callbacks.slash_command_callbacks, with stand-in slash command containers."""

from omnibot.callbacks import slash_command_callbacks

TADA_URL = "https://emoji.slack-edge.com/T0TEST001/tada/0123456789abcdef.png"
PARSE_ALL = {"text": ["users", "specials", "channels"]}


class StandInContainer:
    """The attributes that callbacks read from a slash command container."""

    def __init__(self, payload=None):
        self.bot = None
        self.event_trace = {"team": "test-team", "bot": "testbot"}
        self.payload = {
            "command": "/bigemoji",
            "text": "",
            "parsed_text": "",
            "user_id": "U0TEST001",
            "channel_id": "C0TEST001",
            "response_url": "http://127.0.0.1:9/response",
        }
        self.payload.update(payload or {})


class EmojiContainer(StandInContainer):
    """A container whose ``emoji_url`` looks names up in a table and records each lookup."""

    def __init__(self, payload=None, emoji=None):
        super().__init__(payload)
        self.emoji = emoji or {}
        self.lookups = []

    def emoji_url(self, name):
        self.lookups.append(name)
        return self.emoji.get(name)


def only_response(result):
    assert set(result) == {"responses"}
    assert len(result["responses"]) == 1
    return result["responses"][0]


# -- echo_callback ------------------------------------------------------------


def test_echo_responds_with_parsed_text():
    container = StandInContainer({"text": "hi <@U0TEST002|bob>", "parsed_text": "hi @bob", "command": "/echo"})

    response = only_response(slash_command_callbacks.echo_callback(container))

    assert response == {"text": "hi @bob", "omnibot_parse": PARSE_ALL}


def test_echo_falls_back_to_text():
    container = StandInContainer({"text": "plain words", "command": "/echo"})
    del container.payload["parsed_text"]

    response = only_response(slash_command_callbacks.echo_callback(container))

    assert response["text"] == "plain words"


def test_echo_without_text():
    for text in ("", "   ", None):
        container = StandInContainer({"text": text, "parsed_text": text, "command": "/echo"})

        response = only_response(slash_command_callbacks.echo_callback(container))

        assert response["text"] == "(nothing to echo)"


# -- tableflip_callback and unfliptable_callback ------------------------------


def test_tableflip_alone():
    response = only_response(slash_command_callbacks.tableflip_callback(StandInContainer({"command": "/tableflip"})))

    assert response == {"response_type": "in_channel", "text": "(╯°□°)╯︵ ┻━┻"}


def test_tableflip_with_text():
    container = StandInContainer({"command": "/tableflip", "text": " mondays "})

    response = only_response(slash_command_callbacks.tableflip_callback(container))

    assert response == {"response_type": "in_channel", "text": "(╯°□°)╯︵ ┻━┻ mondays"}


def test_unfliptable_alone():
    response = only_response(slash_command_callbacks.unfliptable_callback(StandInContainer({"text": None})))

    assert response == {"response_type": "in_channel", "text": "┬─┬ノ( º _ ºノ)"}


def test_unfliptable_with_text():
    container = StandInContainer({"text": "sorry"})

    response = only_response(slash_command_callbacks.unfliptable_callback(container))

    assert response["text"] == "┬─┬ノ( º _ ºノ) sorry"


# -- bigemoji_callback --------------------------------------------------------


def test_bigemoji_uses_payload_url():
    container = StandInContainer({"text": ":tada:", "emoji_url": TADA_URL})

    response = only_response(slash_command_callbacks.bigemoji_callback(container))

    assert response["response_type"] == "in_channel"
    assert response["text"] == ":tada:"
    context, image = response["blocks"]
    assert image == {"type": "image", "image_url": TADA_URL, "alt_text": ":tada:"}
    assert context["type"] == "context"
    assert context["elements"] == [{"type": "mrkdwn", "text": "<@U0TEST001> `/bigemoji :tada:`"}]


def test_bigemoji_without_colons():
    container = EmojiContainer({"text": "tada"}, emoji={"tada": TADA_URL})

    response = only_response(slash_command_callbacks.bigemoji_callback(container))

    assert response["blocks"][1]["image_url"] == TADA_URL
    assert container.lookups == ["tada"]


def test_bigemoji_payload_url_skips_lookup():
    container = EmojiContainer({"text": ":tada:", "emoji_url": TADA_URL}, emoji={})

    slash_command_callbacks.bigemoji_callback(container)

    assert container.lookups == []


def test_bigemoji_follows_alias():
    container = EmojiContainer({"text": ":party:"}, emoji={"party": "alias:tada", "tada": TADA_URL})

    response = only_response(slash_command_callbacks.bigemoji_callback(container))

    assert response["blocks"][1]["image_url"] == TADA_URL
    assert container.lookups == ["party", "tada"]


def test_bigemoji_alias_without_lookup_is_unknown():
    container = StandInContainer({"text": ":party:", "emoji_url": "alias:tada"})

    response = only_response(slash_command_callbacks.bigemoji_callback(container))

    assert response["response_type"] == "ephemeral"


def test_bigemoji_unknown_emoji_is_ephemeral():
    for container in (
        StandInContainer({"text": ":smile:"}),
        EmojiContainer({"text": ":smile:"}),
        StandInContainer({"text": ":smile:", "emoji_url": None}),
        StandInContainer({"text": ":smile:", "emoji_url": "not a url"}),
    ):
        response = only_response(slash_command_callbacks.bigemoji_callback(container))

        assert response == {
            "response_type": "ephemeral",
            "text": "`:smile:` is not a custom emoji of this workspace.",
        }


def test_bigemoji_usage_for_bad_text():
    for text in ("", "   ", None, ":tada: :smile:", "::", "<script>"):
        container = EmojiContainer({"text": text}, emoji={"tada": TADA_URL})

        response = only_response(slash_command_callbacks.bigemoji_callback(container))

        assert response == {"response_type": "ephemeral", "text": "Usage: /bigemoji :emoji_name:"}
        assert container.lookups == []


def test_bigemoji_without_user_id():
    container = StandInContainer({"text": ":tada:", "emoji_url": TADA_URL})
    del container.payload["user_id"]

    response = only_response(slash_command_callbacks.bigemoji_callback(container))

    assert response["blocks"][0]["elements"][0]["text"] == "`/bigemoji :tada:`"
