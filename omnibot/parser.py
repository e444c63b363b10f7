"""Parse Slack message markup into the fields omnibot puts in a message payload.

Slack writes mentions, links and broadcasts as ``<...>`` tokens and escapes only
``&``, ``<`` and ``>`` in the text around them, as ``&amp;``, ``&lt;`` and ``&gt;``
(https://api.slack.com/reference/surfaces/formatting). :func:`parse_text` finds
every token in one pass of one compiled regular expression over the raw text and
decodes entities only afterwards, in the plain text and in each extracted value.
Decoding first would turn a literal ``&lt;@U123&gt;`` that a user typed into a
mention that Slack never sent.
"""

import re
import typing

PAYLOAD_FIELDS = ("users", "channels", "subteams", "specials", "emojis", "emails", "urls")
"""The token maps that :func:`parse_text` returns, in payload order, besides ``parsed_text``."""

# One alternative per token kind. The outer named group of each alternative is
# the one that closes last, so ``match.lastgroup`` names the kind. Every ``<...>``
# alternative excludes ``<`` and ``>`` from its body, so a token never spans
# another token and no quantifier can run on to the last ``>`` of the text.
# Each alternative starts with a literal character (``<`` or ``:``), which lets
# the regex engine skip plain text quickly. A capturing group or a lookbehind in
# front of that character disables this skip, which made searching a short
# plain message several times slower when measured with CPython 3.11.
_TOKEN_PATTERN = re.compile(
    r"""
    <(?:
        (?P<user>@(?P<user_id>[UW][A-Z0-9]+)(?:\|(?P<user_label>[^<>]*))?)
      | (?P<channel>\#(?P<channel_id>[CGD][A-Z0-9]+)(?:\|(?P<channel_label>[^<>]*))?)
      | (?P<special>!(?P<special_name>here|channel|everyone)(?:\|[^<>]*)?)
      | (?P<subteam>!subteam\^(?P<subteam_id>S[A-Z0-9]+)(?:\|(?P<subteam_label>[^<>]*))?)
      | (?P<date>!date\^[^<>|]*\|(?P<date_fallback>[^<>]*))
      | (?P<email>mailto:(?P<email_address>[^<>|?]*)(?:\?[^<>|]*)?(?:\|[^<>]*)?)
      | (?P<url>(?P<url_target>[A-Za-z][A-Za-z0-9+.\-]*:[^<>|]*)(?:\|[^<>]*)?)
      | (?P<other>[^<>]*)
    )>
    # An emoji name glued to an ASCII letter or digit on either side is not an emoji,
    # which keeps times such as 10:30:45 out. A colon may precede it, so
    # :+1::skin-tone-3: is two emoji.
    | :(?<![0-9A-Za-z]:)(?P<emoji>[a-z0-9_+'\-]+):(?![0-9A-Za-z])
    """,
    re.VERBOSE,
)


class NameResolver(typing.Protocol):
    """Name lookups for mentions that carry only an id.

    Both methods return None when the id is unknown or the lookup failed. They
    must not raise: :func:`parse_text` lets an exception propagate to its caller.
    """

    def user_name(self, user_id: str) -> typing.Optional[str]:
        """Return the user's display name, else their name, or None."""

    def channel_name(self, channel_id: str) -> typing.Optional[str]:
        """Return the conversation's name, or None."""


def decode_entities(text: str) -> str:
    """Decode the three HTML entities that Slack writes: ``&lt;``, ``&gt;`` and ``&amp;``.

    ``&amp;`` is decoded last, so ``&amp;lt;`` becomes the literal text ``&lt;``.
    """
    if "&" not in text:
        return text
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def normalize_whitespace(text: str) -> str:
    """Replace each run of Unicode whitespace by one plain space and strip both ends.

    Covers every character for which ``str.isspace()`` is true, including U+00A0
    (no-break space), which arrives in Slack text when users paste a command, and
    U+2007 (figure space) and U+202F (narrow no-break space). Use it for command
    matching and arguments, not for the text passed on to callbacks.
    """
    return " ".join(text.split())


def parse_text(text: str, resolver: typing.Optional[NameResolver]) -> dict:
    """Extract the markup tokens of a Slack message and render it as plain text.

    Args:
        text: The raw ``text`` of a Slack message, entities still encoded.
        resolver: Looks up names for mentions without an embedded ``|name``; None
            leaves every such mention unresolved. It is called at most once per
            distinct id in one call.

    Returns:
        A dict with the keys of :data:`PAYLOAD_FIELDS`, each mapping a raw token as
        it appears in ``text`` to its plain value, and ``parsed_text``: the text
        with each token replaced by its plain form and entities decoded. A user,
        channel or subteam mention whose name is unknown maps to its id and stays
        as the raw token in ``parsed_text``.
    """
    if "<" not in text and ":" not in text:
        return _empty_result(decode_entities(text))

    parse = _Parse(resolver)
    # Every replacement is returned still entity-encoded, like the text around
    # it, so one decode of the whole result decodes each character exactly once.
    encoded_text = _TOKEN_PATTERN.sub(parse.replace_token, text)
    return {
        "users": parse.users,
        "channels": parse.channels,
        "subteams": parse.subteams,
        "specials": parse.specials,
        "emojis": parse.emojis,
        "emails": parse.emails,
        "urls": parse.urls,
        "parsed_text": decode_entities(encoded_text),
    }


def _empty_result(parsed_text: str) -> dict:
    result: typing.Dict[str, typing.Any] = {field: {} for field in PAYLOAD_FIELDS}
    result["parsed_text"] = parsed_text
    return result


def _encode_ampersands(text: str) -> str:
    # Only "&" needs encoding: decode_entities leaves a bare "<" or ">" alone.
    if "&" not in text:
        return text
    return text.replace("&", "&amp;")


class _Parse:
    """The token maps and name caches of one :func:`parse_text` call.

    Each handler records its token and returns the token's text for
    ``parsed_text`` still entity-encoded, because parse_text decodes the whole
    text once at the end. Parts of the raw message are returned as they are.
    Text from elsewhere, a resolver's name or a token kept verbatim, gets its
    ``&`` encoded so that the final decode restores it unchanged.
    """

    __slots__ = PAYLOAD_FIELDS + ("_resolver", "_user_names", "_channel_names")

    def __init__(self, resolver: typing.Optional[NameResolver]):
        self._resolver = resolver
        self._user_names: typing.Dict[str, typing.Optional[str]] = {}
        self._channel_names: typing.Dict[str, typing.Optional[str]] = {}
        self.users: typing.Dict[str, str] = {}
        self.channels: typing.Dict[str, str] = {}
        self.subteams: typing.Dict[str, str] = {}
        self.specials: typing.Dict[str, str] = {}
        self.emojis: typing.Dict[str, str] = {}
        self.emails: typing.Dict[str, str] = {}
        self.urls: typing.Dict[str, str] = {}

    def replace_token(self, match: typing.Match) -> str:
        """Record one token in its map and return its encoded text for ``parsed_text``."""
        return _TOKEN_HANDLERS[match.lastgroup](self, match)

    def _user(self, match: typing.Match) -> str:
        token, user_id, label = match.group(0, "user_id", "user_label")
        if label:
            self.users[token] = decode_entities(label)
            return "@" + label

        name = self._user_name(user_id)
        if name is None:
            self.users[token] = user_id
            return token
        self.users[token] = name
        return "@" + _encode_ampersands(name)

    def _channel(self, match: typing.Match) -> str:
        token, channel_id, label = match.group(0, "channel_id", "channel_label")
        if label:
            self.channels[token] = decode_entities(label)
            return "#" + label

        name = self._channel_name(channel_id)
        if name is None:
            self.channels[token] = channel_id
            return token
        self.channels[token] = name
        return "#" + _encode_ampersands(name)

    def _special(self, match: typing.Match) -> str:
        # The label, if any (``<!here|here>`` or ``<!here|@here>``), is ignored:
        # the broadcast's name alone decides what it is.
        token, name = match.group(0, "special_name")
        value = "@" + name
        self.specials[token] = value
        return value

    def _subteam(self, match: typing.Match) -> str:
        token, subteam_id, label = match.group(0, "subteam_id", "subteam_label")
        handle = label.lstrip("@") if label else ""
        if not handle:
            self.subteams[token] = subteam_id
            return token
        self.subteams[token] = decode_entities(handle)
        return "@" + handle

    def _date(self, match: typing.Match) -> str:
        # A date token renders in each reader's time zone; the fallback text is
        # the only rendering that does not depend on the reader.
        return match.group("date_fallback")

    def _email(self, match: typing.Match) -> str:
        token, address = match.group(0, "email_address")
        self.emails[token] = decode_entities(address)
        return address

    def _url(self, match: typing.Match) -> str:
        token, url = match.group(0, "url_target")
        self.urls[token] = decode_entities(url)
        return url

    def _other(self, match: typing.Match) -> str:
        # Markup this parser does not know, such as a bot mention <@B...>, is
        # kept exactly as written.
        return _encode_ampersands(match.group())

    def _emoji(self, match: typing.Match) -> str:
        token, name = match.group(0, "emoji")
        self.emojis[token] = name
        return token

    def _user_name(self, user_id: str) -> typing.Optional[str]:
        if user_id not in self._user_names:
            resolver = self._resolver
            self._user_names[user_id] = resolver.user_name(user_id) if resolver else None
        return self._user_names[user_id]

    def _channel_name(self, channel_id: str) -> typing.Optional[str]:
        if channel_id not in self._channel_names:
            resolver = self._resolver
            self._channel_names[channel_id] = resolver.channel_name(channel_id) if resolver else None
        return self._channel_names[channel_id]


_TOKEN_HANDLERS = {
    "user": _Parse._user,
    "channel": _Parse._channel,
    "special": _Parse._special,
    "subteam": _Parse._subteam,
    "date": _Parse._date,
    "email": _Parse._email,
    "url": _Parse._url,
    "other": _Parse._other,
    "emoji": _Parse._emoji,
}
