"""Parse Slack message markup into the fields omnibot puts in a message payload.

Slack writes mentions, links and broadcasts as ``<...>`` tokens and escapes only
``&``, ``<`` and ``>`` in the text around them, as ``&amp;``, ``&lt;`` and ``&gt;``
(https://api.slack.com/reference/surfaces/formatting). :func:`parse_text` splits
the raw text at each ``<`` and ends a token at the first ``>`` after it, so a
token is a ``<`` followed by text without ``<`` or ``>`` and then a ``>``. One
compiled pattern per token kind then classifies the text between the brackets,
and emoji are searched only in the text between tokens. Entities are decoded
only afterwards, in the plain text and in each extracted value. Decoding first
would turn a literal ``&lt;@U123&gt;`` that a user typed into a mention that
Slack never sent.
"""

import re
import typing

PAYLOAD_FIELDS = ("users", "channels", "subteams", "specials", "emojis", "emails", "urls")
"""The token maps that :func:`parse_text` returns, in payload order, besides ``parsed_text``."""

# Patterns for the body of one token, the text between "<" and ">", used with
# fullmatch(). A body contains neither "<" nor ">", so ".*" with DOTALL stands
# for "the rest of the body". With CPython 3.11.7, "[^<>]*" costs about 4 ns
# per character, while ".*" with DOTALL jumps to the end of the body at once.
_USER_PATTERN = re.compile(r"@([UW][A-Z0-9]+)(?:\|(.*))?", re.DOTALL)
_CHANNEL_PATTERN = re.compile(r"#([CGD][A-Z0-9]+)(?:\|(.*))?", re.DOTALL)
_SPECIAL_PATTERN = re.compile(r"!(here|channel|everyone)(?:\|.*)?", re.DOTALL)
_SUBTEAM_PATTERN = re.compile(r"!subteam\^(S[A-Z0-9]+)(?:\|(.*))?", re.DOTALL)
_DATE_PATTERN = re.compile(r"!date\^[^|]*\|(.*)", re.DOTALL)
# Any body that starts with "mailto:" is an e-mail link, so e-mail links need no
# pattern. The address runs up to the first "?" or "|".
_MAILTO = "mailto:"
_URL_PATTERN = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*:[^|]*)(?:\|.*)?", re.DOTALL)

# An emoji name glued to an ASCII letter or digit on either side is not an emoji,
# which keeps times such as 10:30:45 out. A colon may precede it, so
# :+1::skin-tone-3: is two emoji. Each piece of text outside the tokens starts
# after a ">" or a "<" (or at the start) and ends before a "<" (or at the end).
# Neither bracket is a letter or digit, so searching each piece on its own finds
# the same emoji as searching the whole text with the tokens left out.
_EMOJI_PATTERN = re.compile(r":(?<![0-9A-Za-z]:)([a-z0-9_+'\-]+):(?![0-9A-Za-z])")


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
    emojis: typing.Dict[str, str] = {}
    if "<" not in text:
        if ":" in text:
            _add_emojis(text, emojis)
        return {
            "users": {},
            "channels": {},
            "subteams": {},
            "specials": {},
            "emojis": emojis,
            "emails": {},
            "urls": {},
            "parsed_text": decode_entities(text),
        }

    users: typing.Dict[str, str] = {}
    channels: typing.Dict[str, str] = {}
    subteams: typing.Dict[str, str] = {}
    specials: typing.Dict[str, str] = {}
    emails: typing.Dict[str, str] = {}
    urls: typing.Dict[str, str] = {}
    # The resolver's results by id. User ids start with U or W and conversation
    # ids with C, G or D, so one dict serves both.
    names: typing.Dict[str, typing.Optional[str]] = {}

    # pieces alternates the text between tokens, taken from the raw text as it
    # is, and the replacement of each token. A replacement stays entity-encoded
    # like that text, so a resolver's name, or a token kept verbatim, gets its
    # "&" encoded, and one decode of the joined pieces decodes each character
    # once. The loop handles every token kind inline, because handling each
    # token in a method of a per-call object made bench/parsing.py about 10 %
    # slower.
    chunks = iter(text.split("<"))
    plain = next(chunks)
    pieces = [plain]
    if ":" in plain:
        _add_emojis(plain, emojis)
    for chunk in chunks:
        body, closed, plain = chunk.partition(">")
        if not closed:
            # This "<" has no ">" before the next "<" or the end, so it is plain text.
            pieces.append("<")
            plain = chunk
        else:
            token = f"<{body}>"
            # A body that starts with "@", "#" or "!" and fails its patterns is
            # unknown markup, and the URL pattern rejects it too, because a URL
            # starts with a letter.
            first = body[:1]
            if first == "@" and (match := _USER_PATTERN.fullmatch(body)):
                user_id, label = match.groups()
                if label:
                    users[token] = decode_entities(label)
                    pieces.append("@" + label)
                else:
                    if user_id not in names:
                        names[user_id] = resolver.user_name(user_id) if resolver else None
                    name = names[user_id]
                    users[token] = user_id if name is None else name
                    pieces.append(token if name is None else "@" + _encode_ampersands(name))
            elif first == "#" and (match := _CHANNEL_PATTERN.fullmatch(body)):
                channel_id, label = match.groups()
                if label:
                    channels[token] = decode_entities(label)
                    pieces.append("#" + label)
                else:
                    if channel_id not in names:
                        names[channel_id] = resolver.channel_name(channel_id) if resolver else None
                    name = names[channel_id]
                    channels[token] = channel_id if name is None else name
                    pieces.append(token if name is None else "#" + _encode_ampersands(name))
            elif first == "!" and (match := _SPECIAL_PATTERN.fullmatch(body)):
                # The label, if any (``<!here|here>`` or ``<!here|@here>``), is
                # ignored: the broadcast's name alone decides what it is.
                value = "@" + match[1]
                specials[token] = value
                pieces.append(value)
            elif first == "!" and (match := _SUBTEAM_PATTERN.fullmatch(body)):
                subteam_id, label = match.groups()
                handle = label.lstrip("@") if label else ""
                subteams[token] = decode_entities(handle) if handle else subteam_id
                pieces.append("@" + handle if handle else token)
            elif first == "!" and (match := _DATE_PATTERN.fullmatch(body)):
                # A date token renders in each reader's time zone; the fallback
                # text is the only rendering that does not depend on the reader.
                pieces.append(match[1])
            elif body.startswith(_MAILTO):
                address = body[len(_MAILTO):].partition("|")[0].partition("?")[0]
                emails[token] = decode_entities(address)
                pieces.append(address)
            elif match := _URL_PATTERN.fullmatch(body):
                url = match[1]
                urls[token] = decode_entities(url)
                pieces.append(url)
            else:
                # Markup this parser does not know, such as a bot mention
                # <@B...>, is kept exactly as written.
                pieces.append(_encode_ampersands(token))
        pieces.append(plain)
        if ":" in plain:
            _add_emojis(plain, emojis)

    return {
        "users": users,
        "channels": channels,
        "subteams": subteams,
        "specials": specials,
        "emojis": emojis,
        "emails": emails,
        "urls": urls,
        "parsed_text": decode_entities("".join(pieces)),
    }


def _add_emojis(text: str, emojis: typing.Dict[str, str]) -> None:
    """Add each emoji code in ``text``, a piece of text without tokens, to ``emojis``."""
    for name in _EMOJI_PATTERN.findall(text):
        emojis[":" + name + ":"] = name


def _encode_ampersands(text: str) -> str:
    # Only "&" needs encoding: decode_entities leaves a bare "<" or ">" alone.
    if "&" not in text:
        return text
    return text.replace("&", "&amp;")
