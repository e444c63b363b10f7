"""Tests for omnibot.parser: Slack markup tokens, entity decoding and whitespace."""

import collections

import pytest
from hypothesis import given
from hypothesis import strategies as st

from omnibot import parser

USER_NAMES = {
    "U0TEST001": "alice",
    "U0BOT0001": "testbot",
    "W0BOT0001": "testbot",
    "W0TEST002": "bob",
}
CHANNEL_NAMES = {
    "C0TEST001": "general",
    "G0TEST001": "ops-private",
    "D0TEST001": "alice-dm",
}


class FakeResolver:
    """Name lookups from fixed tables, counting the lookups of each id."""

    def __init__(self, users=None, channels=None):
        self.users = USER_NAMES if users is None else users
        self.channels = CHANNEL_NAMES if channels is None else channels
        self.calls = collections.Counter()

    def user_name(self, user_id):
        self.calls[user_id] += 1
        return self.users.get(user_id)

    def channel_name(self, channel_id):
        self.calls[channel_id] += 1
        return self.channels.get(channel_id)


def parse(text, resolver=None):
    return parser.parse_text(text, FakeResolver() if resolver is None else resolver)


# A message that uses every kind of markup, with the payload fields expected for
# it. The text is exactly what Slack sends: entities encoded, an em dash, a
# non-BMP emoji character, a mailto link whose query has spaces and an encoded
# "&", and a literal "<@U0FAKE001>" that the user typed (so Slack encoded it).
EVERY_KIND_TEXT = (
    "<@U0BOT0001> notify <!subteam^S0TEST001|@oncall-team> and <!here> about "
    "<https://status.example.com/incidents?id=7&amp;view=full|incident #7> — mail "
    "<mailto:alice@example.com|alice@example.com> or "
    "<mailto:team@example.com?subject=Weekly sync&amp;body=hi there|email the team>, "
    "see <#C0TEST001|general> &amp; ping <@U0TEST001|alice> if x &lt; 5 &gt; 2 "
    ":fire: :+1::skin-tone-3: plain <https://example.org> literal &lt;@U0FAKE001&gt; 🚀"
)
EVERY_KIND_EXPECTED = {
    "users": {
        "<@U0BOT0001>": "testbot",
        "<@U0TEST001|alice>": "alice",
    },
    "channels": {
        "<#C0TEST001|general>": "general",
    },
    "subteams": {
        "<!subteam^S0TEST001|@oncall-team>": "oncall-team",
    },
    "specials": {
        "<!here>": "@here",
    },
    "emails": {
        "<mailto:alice@example.com|alice@example.com>": "alice@example.com",
        "<mailto:team@example.com?subject=Weekly sync&amp;body=hi there|email the team>": "team@example.com",
    },
    "urls": {
        "<https://status.example.com/incidents?id=7&amp;view=full|incident #7>": (
            "https://status.example.com/incidents?id=7&view=full"
        ),
        "<https://example.org>": "https://example.org",
    },
    "emojis": {
        ":fire:": "fire",
        ":+1:": "+1",
        ":skin-tone-3:": "skin-tone-3",
    },
    "parsed_text": (
        "@testbot notify @oncall-team and @here about "
        "https://status.example.com/incidents?id=7&view=full — mail alice@example.com "
        "or team@example.com, see #general & ping @alice if x < 5 > 2 "
        ":fire: :+1::skin-tone-3: plain https://example.org literal <@U0FAKE001> 🚀"
    ),
}


@pytest.mark.parametrize("field", sorted(EVERY_KIND_EXPECTED))
def test_every_kind_message_field(field):
    result = parse(EVERY_KIND_TEXT)

    assert result[field] == EVERY_KIND_EXPECTED[field]


def test_every_kind_message_keys():
    result = parse(EVERY_KIND_TEXT)

    assert set(result) == set(parser.PAYLOAD_FIELDS) | {"parsed_text"}


def test_every_kind_message_lookups():
    resolver = FakeResolver()

    parse(EVERY_KIND_TEXT, resolver)

    # Only the one mention without an embedded name needs a lookup, and the
    # typed "&lt;@U0FAKE001&gt;" is no mention at all.
    assert resolver.calls == {"U0BOT0001": 1}


def test_grid_users_and_private_channel():
    result = parse("<@W0BOT0001> whois <@W0TEST002> and <@U0TEST001|alice> in <#G0TEST001>")

    assert result["users"] == {
        "<@W0BOT0001>": "testbot",
        "<@W0TEST002>": "bob",
        "<@U0TEST001|alice>": "alice",
    }
    assert result["channels"] == {"<#G0TEST001>": "ops-private"}
    assert result["parsed_text"] == "@testbot whois @bob and @alice in #ops-private"


def test_no_break_spaces_kept_in_parsed_text():
    text = "<@U0BOT0001>\u00a0deploy\u00a0api --env\u00a0staging\u00a0"

    result = parse(text)

    assert result["parsed_text"] == "@testbot\u00a0deploy\u00a0api --env\u00a0staging\u00a0"
    assert parser.normalize_whitespace(result["parsed_text"]) == "@testbot deploy api --env staging"


@pytest.mark.parametrize(
    ("text", "users", "parsed_text"),
    [
        # Resolved through the resolver.
        ("hi <@U0TEST001>", {"<@U0TEST001>": "alice"}, "hi @alice"),
        # Enterprise Grid user ids start with W.
        ("hi <@W0TEST002>", {"<@W0TEST002>": "bob"}, "hi @bob"),
        # The embedded name wins over the resolver.
        ("hi <@U0TEST001|al>", {"<@U0TEST001|al>": "al"}, "hi @al"),
        # An empty embedded name means no name.
        ("hi <@U0TEST001|>", {"<@U0TEST001|>": "alice"}, "hi @alice"),
        # An embedded name keeps dots and is entity-decoded.
        ("hi <@U0TEST001|a.l&amp;ice>", {"<@U0TEST001|a.l&amp;ice>": "a.l&ice"}, "hi @a.l&ice"),
        # Unknown ids map to the id and stay raw in parsed_text.
        ("hi <@U0NOBODY1>", {"<@U0NOBODY1>": "U0NOBODY1"}, "hi <@U0NOBODY1>"),
        # Lower-case ids are not Slack ids.
        ("hi <@u0test001>", {}, "hi <@u0test001>"),
    ],
)
def test_user_mentions(text, users, parsed_text):
    result = parse(text)

    assert result["users"] == users
    assert result["parsed_text"] == parsed_text


@pytest.mark.parametrize(
    ("text", "channels", "parsed_text"),
    [
        # Public channel, resolved.
        ("in <#C0TEST001>", {"<#C0TEST001>": "general"}, "in #general"),
        # Private channel (G) and direct message (D) ids.
        ("in <#G0TEST001>", {"<#G0TEST001>": "ops-private"}, "in #ops-private"),
        ("in <#D0TEST001>", {"<#D0TEST001>": "alice-dm"}, "in #alice-dm"),
        # Embedded name.
        ("in <#C0TEST001|gen>", {"<#C0TEST001|gen>": "gen"}, "in #gen"),
        # Empty embedded name.
        ("in <#C0TEST001|>", {"<#C0TEST001|>": "general"}, "in #general"),
        # Unknown ids map to the id and stay raw in parsed_text.
        ("in <#C0NOWHERE>", {"<#C0NOWHERE>": "C0NOWHERE"}, "in <#C0NOWHERE>"),
    ],
)
def test_channel_mentions(text, channels, parsed_text):
    result = parse(text)

    assert result["channels"] == channels
    assert result["parsed_text"] == parsed_text


def test_unresolved_without_resolver():
    result = parser.parse_text("<@U0TEST001> in <#C0TEST001> and <@U0TEST001|alice>", None)

    assert result["users"] == {"<@U0TEST001>": "U0TEST001", "<@U0TEST001|alice>": "alice"}
    assert result["channels"] == {"<#C0TEST001>": "C0TEST001"}
    assert result["parsed_text"] == "<@U0TEST001> in <#C0TEST001> and @alice"


def test_resolver_called_once_per_id():
    resolver = FakeResolver()
    text = "<@U0TEST001> <@U0TEST001> <@U0NOBODY1> <@U0NOBODY1> <#C0TEST001> <#C0TEST001>"

    result = parser.parse_text(text, resolver)

    assert resolver.calls == {"U0TEST001": 1, "U0NOBODY1": 1, "C0TEST001": 1}
    assert result["parsed_text"] == "@alice @alice <@U0NOBODY1> <@U0NOBODY1> #general #general"


def test_resolver_names_not_decoded():
    # A name from the resolver is plain text already; "&amp;" in it is literal.
    resolver = FakeResolver(users={"U0TEST001": "R&amp;D <team>"})

    result = parser.parse_text("<@U0TEST001> &amp;", resolver)

    assert result["users"] == {"<@U0TEST001>": "R&amp;D <team>"}
    assert result["parsed_text"] == "@R&amp;D <team> &"


@pytest.mark.parametrize(
    "token",
    [
        "<!here>",
        "<!here|here>",
        "<!here|@here>",
    ],
)
def test_here_with_and_without_label(token):
    result = parse(f"{token} deploy")

    assert result["specials"] == {token: "@here"}
    assert result["parsed_text"] == "@here deploy"


@pytest.mark.parametrize(
    ("token", "value"),
    [
        ("<!channel>", "@channel"),
        ("<!channel|@channel>", "@channel"),
        ("<!everyone>", "@everyone"),
        ("<!everyone|everyone>", "@everyone"),
    ],
)
def test_channel_and_everyone_specials(token, value):
    result = parse(f"{token} deploy")

    assert result["specials"] == {token: value}
    assert result["parsed_text"] == f"{value} deploy"


@pytest.mark.parametrize(
    ("token", "subteams", "parsed_text"),
    [
        # The label Slack sends carries an "@".
        ("<!subteam^S0TEST001|@oncall-team>", {"<!subteam^S0TEST001|@oncall-team>": "oncall-team"}, "@oncall-team"),
        # A label without "@" is taken as the handle.
        ("<!subteam^S0TEST001|oncall-team>", {"<!subteam^S0TEST001|oncall-team>": "oncall-team"}, "@oncall-team"),
        # No label: the id, and the raw token in parsed_text.
        ("<!subteam^S0TEST001>", {"<!subteam^S0TEST001>": "S0TEST001"}, "<!subteam^S0TEST001>"),
        # An empty label is no label.
        ("<!subteam^S0TEST001|@>", {"<!subteam^S0TEST001|@>": "S0TEST001"}, "<!subteam^S0TEST001|@>"),
    ],
)
def test_subteam_mentions(token, subteams, parsed_text):
    result = parse(f"ping {token}")

    assert result["subteams"] == subteams
    assert result["parsed_text"] == f"ping {parsed_text}"


@pytest.mark.parametrize(
    ("token", "fallback"),
    [
        ("<!date^1392734382^{date_short}|Feb 18, 2014>", "Feb 18, 2014"),
        # With an optional link after the format.
        ("<!date^1392734382^{date_num} {time}^https://example.com|2014-02-18 6:39 AM>", "2014-02-18 6:39 AM"),
        # The fallback is entity-decoded like any text.
        ("<!date^1392734382^{date}|Feb 18 &amp; 19>", "Feb 18 & 19"),
    ],
)
def test_date_uses_fallback(token, fallback):
    result = parse(f"due {token}")

    assert result["parsed_text"] == f"due {fallback}"
    for field in parser.PAYLOAD_FIELDS:
        assert result[field] == {}, field


@pytest.mark.parametrize(
    ("token", "address"),
    [
        ("<mailto:bob@example.com>", "bob@example.com"),
        ("<mailto:bob@example.com|Bob>", "bob@example.com"),
        # Spaces and an encoded "&" inside the query stay within one token.
        ("<mailto:bob@example.com?subject=a b&amp;body=c d|write>", "bob@example.com"),
        # The address itself is entity-decoded.
        ("<mailto:r&amp;d@example.com|R&amp;D>", "r&d@example.com"),
    ],
)
def test_mailto_links(token, address):
    result = parse(f"mail {token} now")

    assert result["emails"] == {token: address}
    assert result["urls"] == {}
    assert result["parsed_text"] == f"mail {address} now"


@pytest.mark.parametrize(
    ("token", "url"),
    [
        ("<http://example.com>", "http://example.com"),
        ("<https://example.com/a?b=1&amp;c=2|the page>", "https://example.com/a?b=1&c=2"),
        # Other schemes are links too.
        ("<slack://channel?team=T0TEST001&amp;id=C0TEST001>", "slack://channel?team=T0TEST001&id=C0TEST001"),
        ("<tel:+15550100|call>", "tel:+15550100"),
        # Markup-like text inside a label is part of the label.
        ("<https://example.com/#7|see #7 :fire: @here>", "https://example.com/#7"),
    ],
)
def test_url_links(token, url):
    result = parse(f"see {token} now")

    assert result["urls"] == {token: url}
    assert result["parsed_text"] == f"see {url} now"
    assert result["channels"] == {}
    assert result["emojis"] == {}
    assert result["specials"] == {}


@pytest.mark.parametrize(
    ("text", "emojis"),
    [
        # Plain names, digits and the characters Slack allows in names.
        (":fire: :100: :e-mail: :thumbs_up: :don't:", ["fire", "100", "e-mail", "thumbs_up", "don't"]),
        # Adjacent emoji with a skin tone are two emoji.
        (":+1::skin-tone-3:", ["+1", "skin-tone-3"]),
        (":-1: ok", ["-1"]),
        # Times and ratios are not emoji.
        ("at 10:30:45 or 3:2:1", []),
        # Text glued to a name is not an emoji.
        ("a:fire: :fire:b", []),
        # A URL written without markup has no emoji in it.
        ("go to https://example.com:8080:x now", []),
        # Upper-case letters and spaces are not in emoji names.
        (":Fire: : fire :", []),
        # Tokens inside <...> are never emoji.
        ("<https://example.com/:fire:|:fire:> <@U0TEST001|:smile:>", []),
    ],
)
def test_emoji_detection(text, emojis):
    result = parse(text)

    assert result["emojis"] == {f":{name}:": name for name in emojis}


def test_emoji_kept_in_parsed_text():
    result = parse("ship it :+1::skin-tone-3: :fire:")

    assert result["parsed_text"] == "ship it :+1::skin-tone-3: :fire:"


@pytest.mark.parametrize(
    ("text", "parsed_text"),
    [
        # A mention the user typed as text arrives encoded and stays text.
        ("literal &lt;@U0TEST001&gt;", "literal <@U0TEST001>"),
        ("&lt;!here&gt; &lt;#C0TEST001&gt;", "<!here> <#C0TEST001>"),
        # An encoded entity the user typed decodes once, not twice.
        ("&amp;lt;b&amp;gt; &amp;amp;", "&lt;b&gt; &amp;"),
        # Other entities are not Slack's and stay as written.
        ("&quot;x&quot; &#39;", "&quot;x&quot; &#39;"),
    ],
)
def test_entities_decoded_after_tokenizing(text, parsed_text):
    result = parse(text)

    assert result["parsed_text"] == parsed_text
    for field in parser.PAYLOAD_FIELDS:
        assert result[field] == {}, field


def test_typed_mention_next_to_real_one():
    resolver = FakeResolver()

    result = parser.parse_text("<@U0TEST001> typed &lt;@U0BOT0001&gt; and &lt;!here&gt;", resolver)

    assert result["users"] == {"<@U0TEST001>": "alice"}
    assert result["specials"] == {}
    assert result["parsed_text"] == "@alice typed <@U0BOT0001> and <!here>"
    assert resolver.calls == {"U0TEST001": 1}


@pytest.mark.parametrize(
    ("text", "urls", "parsed_text"),
    [
        # Each token ends at its own ">".
        (
            "<https://a.example> and <https://b.example|b>",
            {"<https://a.example>": "https://a.example", "<https://b.example|b>": "https://b.example"},
            "https://a.example and https://b.example",
        ),
        # A stray "<" (not Slack's own text) does not swallow the token after it.
        (
            "a < b <https://a.example>",
            {"<https://a.example>": "https://a.example"},
            "a < b https://a.example",
        ),
    ],
)
def test_tokens_not_greedy(text, urls, parsed_text):
    result = parse(text)

    assert result["urls"] == urls
    assert result["parsed_text"] == parsed_text


@pytest.mark.parametrize(
    "token",
    [
        # A bot id is not a user mention.
        "<@B0TEST001>",
        # Unknown broadcast.
        "<!group>",
        # Not a link: no scheme.
        "<just words>",
        # Unknown markup keeps its "&amp;" exactly as written.
        "<!foo|a &amp; b>",
    ],
)
def test_unknown_markup_kept_raw(token):
    result = parse(f"x {token} y")

    assert result["parsed_text"] == f"x {token} y"
    for field in parser.PAYLOAD_FIELDS:
        assert result[field] == {}, field


def test_unicode_survives():
    text = "deploy 🚀 — done ✅ 日本語:fire: 𝔘"

    result = parse(text)

    assert result["parsed_text"] == text


def test_plain_text_result_shape():
    result = parse("just words, nothing else &amp; more")

    assert result == {
        "users": {},
        "channels": {},
        "subteams": {},
        "specials": {},
        "emojis": {},
        "emails": {},
        "urls": {},
        "parsed_text": "just words, nothing else & more",
    }


def test_result_maps_not_shared_between_calls():
    first = parse("plain")
    first["users"]["x"] = "y"

    second = parse("plain")

    assert second["users"] == {}


def test_empty_text():
    result = parse("")

    assert result["parsed_text"] == ""
    assert result["users"] == {}


# Text built from markup fragments, entities and the characters that delimit tokens.
MARKUP_TEXT = st.lists(
    st.sampled_from(
        list("<>@#!|:^&;?/ -_+'.aZ09\u00a0🚀")
        + ["&lt;", "&gt;", "&amp;", "<@U0TEST001>", "<#C0TEST001|", "<!here>", ":+1:", "mailto:", "https://", "U0", "S0"]
    ),
    max_size=40,
).map("".join)


@given(MARKUP_TEXT)
def test_any_text_parses(text):
    result = parse(text)

    for field in parser.PAYLOAD_FIELDS:
        for token in result[field]:
            assert token in text, (field, token)
    if "<" not in text and ":" not in text:
        assert result["parsed_text"] == parser.decode_entities(text)


@pytest.mark.parametrize(
    ("text", "normalized"),
    [
        # No-break space (U+00A0), as pasted from other apps.
        ("deploy\u00a0api", "deploy api"),
        # Figure space (U+2007) and narrow no-break space (U+202F).
        ("a\u2007b\u202fc", "a b c"),
        # Runs of mixed whitespace collapse to one space; ends are stripped.
        (" \t a \n\u00a0 b \u3000", "a b"),
        ("", ""),
        ("\u00a0\u00a0", ""),
    ],
)
def test_normalize_whitespace(text, normalized):
    assert parser.normalize_whitespace(text) == normalized


@pytest.mark.parametrize(
    ("text", "decoded"),
    [
        ("a &lt;b&gt; &amp; c", "a <b> & c"),
        ("&amp;lt;", "&lt;"),
        ("no entities", "no entities"),
    ],
)
def test_decode_entities(text, decoded):
    assert parser.decode_entities(text) == decoded
