"""Tests for omnibot.unparser: plain @user, #channel and @here text to Slack markup."""

import collections
import copy
import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from omnibot import unparser

ALL_KINDS = ["specials", "channels", "users"]


class FakeResolver:
    """Id lookups from fixed tables, counting the lookups of each name."""

    def __init__(self):
        self.users = {"alice": "U0TEST001", "bob": "W0TEST002", "john.doe": "U0TEST003", "dev_ops-1": "U0TEST004"}
        self.channels = {"general": "C0TEST001", "ops-private": "G0TEST001"}
        self.calls = collections.Counter()

    def user_id_by_name(self, name):
        self.calls["@" + name] += 1
        return self.users.get(name)

    def channel_id_by_name(self, name):
        self.calls["#" + name] += 1
        return self.channels.get(name)


def unparse(text, kinds=ALL_KINDS, resolver=None):
    return unparser.unparse_text(text, kinds, FakeResolver() if resolver is None else resolver)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("@here deploy", "<!here> deploy"),
        ("ping @channel now", "ping <!channel> now"),
        ("@everyone", "<!everyone>"),
        # Trailing punctuation ends the token.
        ("deploy done @here.", "deploy done <!here>."),
        ("@here, @channel! @everyone? @here: @here; (@here)", "<!here>, <!channel>! <!everyone>? <!here>: <!here>; (<!here>)"),
        # A longer name is a different name.
        ("@channel-ops please", "@channel-ops please"),
        ("@heres @here_x @here.now", "@heres @here_x @here.now"),
        # Not a whole token.
        ("@here/x foo@here", "@here/x foo@here"),
        # Angle brackets around spaces are no markup, so the name inside converts.
        ("x < @here > y", "x < <!here> > y"),
    ],
)
def test_specials(text, expected):
    assert unparse(text, ["specials"]) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("see #general", "see <#C0TEST001|general>"),
        ("#ops-private: done", "<#G0TEST001|ops-private>: done"),
        ("#general, #ops-private.", "<#C0TEST001|general>, <#G0TEST001|ops-private>."),
        # Unknown channels stay as written.
        ("see #nowhere and issue #7", "see #nowhere and issue #7"),
        # A "#" inside a URL, an entity or a word is no channel.
        ("https://example.com/#general &#39; a#general", "https://example.com/#general &#39; a#general"),
    ],
)
def test_channels(text, expected):
    assert unparse(text, ["channels"]) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("hi @alice", "hi <@U0TEST001>"),
        ("@bob: look", "<@W0TEST002>: look"),
        # Names with dots, hyphens, underscores and digits; a final dot is punctuation.
        ("thanks @john.doe.", "thanks <@U0TEST003>."),
        ("cc @dev_ops-1", "cc <@U0TEST004>"),
        # Unknown users stay as written.
        ("hi @nobody", "hi @nobody"),
        # An email address is not a mention.
        ("mail alice@example.com", "mail alice@example.com"),
        # Broadcast names are not user names, even with only "users" requested.
        ("@here @alice", "@here <@U0TEST001>"),
    ],
)
def test_users(text, expected):
    assert unparse(text, ["users"]) == expected


def test_all_kinds_together():
    text = "@here: @alice moved #general to @bob's list, see #ops-private (@channel)"

    result = unparse(text)

    assert result == "<!here>: <@U0TEST001> moved <#C0TEST001|general> to @bob's list, see <#G0TEST001|ops-private> (<!channel>)"


@pytest.mark.parametrize(
    "text",
    [
        # Existing markup is left alone, including what looks like names inside it.
        "<@U0TEST001|alice> <#C0TEST001|general> <!here>",
        "<https://example.com/#general|see @alice>",
        "<mailto:alice@example.com|@alice>",
    ],
)
def test_existing_markup_untouched(text):
    assert unparse(text) == text


def test_markup_next_to_plain_names():
    text = "<@U0TEST001> and @alice in <#C0TEST001> and #general"

    assert unparse(text) == "<@U0TEST001> and <@U0TEST001> in <#C0TEST001> and <#C0TEST001|general>"


def test_only_requested_kinds_converted():
    text = "@here @alice #general"

    assert unparse(text, ["specials"]) == "<!here> @alice #general"
    assert unparse(text, ["channels"]) == "@here @alice <#C0TEST001|general>"
    assert unparse(text, []) == text


def test_no_resolver_converts_specials_only():
    result = unparser.unparse_text("@here @alice #general", ALL_KINDS, None)

    assert result == "<!here> @alice #general"


def test_resolver_called_once_per_name():
    resolver = FakeResolver()

    result = unparse("@alice @alice @nobody @nobody #general #general #nowhere", resolver=resolver)

    assert result == "<@U0TEST001> <@U0TEST001> @nobody @nobody <#C0TEST001|general> <#C0TEST001|general> #nowhere"
    assert resolver.calls == {"@alice": 1, "@nobody": 1, "#general": 1, "#nowhere": 1}


def test_unknown_kind_rejected():
    with pytest.raises(ValueError, match="bogus"):
        unparse("@here", ["specials", "bogus"])


def test_unicode_survives():
    text = "🚀 @here — ✅"

    assert unparse(text) == "🚀 <!here> — ✅"


@given(
    st.lists(
        st.sampled_from(list("<>@#!|:.,)( -_'aZ09\u00a0") + ["@here", "@alice", "#general", "@nobody", "<@U0TEST001>"]),
        max_size=30,
    ).map("".join)
)
def test_output_converts_to_itself(text):
    converted = unparse(text)

    assert unparse(converted) == converted


def test_apply_converts_named_fields():
    kwargs = {
        "channel": "C0TEST001",
        "text": "@here ask @alice in #general",
        "fallback": "@here",
        "omnibot_parse": {"text": ["specials", "channels", "users"], "fallback": ["specials"]},
    }

    result = unparser.apply_omnibot_parse(kwargs, FakeResolver())

    assert result == {
        "channel": "C0TEST001",
        "text": "<!here> ask <@U0TEST001> in <#C0TEST001|general>",
        "fallback": "<!here>",
    }


def test_apply_leaves_input_unchanged():
    kwargs = {"text": "@here", "blocks": [{"type": "divider"}], "omnibot_parse": {"text": ["specials"]}}
    before = copy.deepcopy(kwargs)

    result = unparser.apply_omnibot_parse(kwargs, FakeResolver())

    assert kwargs == before
    assert result is not kwargs
    assert "omnibot_parse" not in result


def test_apply_without_instructions_copies():
    kwargs = {"text": "@here"}

    result = unparser.apply_omnibot_parse(kwargs, FakeResolver())

    assert result == {"text": "@here"}
    assert result is not kwargs


def test_apply_accepts_single_kind_string():
    result = unparser.apply_omnibot_parse({"text": "@here", "omnibot_parse": {"text": "specials"}}, None)

    assert result == {"text": "<!here>"}


def test_apply_unknown_kind_warns(caplog):
    kwargs = {"text": "@here @alice", "omnibot_parse": {"text": ["specials", "bogus"]}}

    with caplog.at_level(logging.WARNING, logger="omnibot.unparser"):
        result = unparser.apply_omnibot_parse(kwargs, FakeResolver())

    assert result == {"text": "<!here> @alice"}
    assert "bogus" in caplog.text
    assert "'text'" in caplog.text


@pytest.mark.parametrize(
    ("kwargs", "logged"),
    [
        # A field that is not a string is left as it is.
        ({"blocks": [{"type": "divider"}], "omnibot_parse": {"blocks": ["users"]}}, "expected a string, got list"),
        # A field that is missing is skipped.
        ({"text": "@here", "omnibot_parse": {"attachments": ["users"]}}, "'attachments': it is missing"),
        # Kinds that are not a list are skipped.
        ({"text": "@here", "omnibot_parse": {"text": {"specials": True}}}, "expected a list of kinds, got dict"),
        # Instructions that are not a mapping are ignored.
        ({"text": "@here", "omnibot_parse": ["text"]}, "expected a mapping of field name to kinds, got list"),
    ],
)
def test_apply_invalid_instructions_warn(kwargs, logged, caplog):
    expected = {key: value for key, value in kwargs.items() if key != "omnibot_parse"}

    with caplog.at_level(logging.WARNING, logger="omnibot.unparser"):
        result = unparser.apply_omnibot_parse(kwargs, FakeResolver())

    assert result == expected
    assert logged in caplog.text


def test_apply_logs_no_message_text(caplog):
    kwargs = {"text": "secret plans @here", "omnibot_parse": {"text": ["bogus"]}}

    with caplog.at_level(logging.DEBUG, logger="omnibot.unparser"):
        unparser.apply_omnibot_parse(kwargs, FakeResolver())

    assert "secret plans" not in caplog.text
