"""Turn plain ``@user``, ``#channel`` and ``@here`` text from callbacks into Slack markup.

A callback requests this by putting ``omnibot_parse`` into the kwargs of an action
or response, for example ``{"text": "@here see #general", "omnibot_parse": {"text":
["specials", "channels"]}}``. Slack only notifies people and links conversations
for markup such as ``<!here>``, ``<#C123|general>`` and ``<@U123>``
(https://api.slack.com/reference/surfaces/formatting), so plain names would reach
nobody.
"""

import logging
import re
import typing

logger = logging.getLogger(__name__)

KINDS = ("specials", "channels", "users")
"""The conversions that ``omnibot_parse`` may name."""

SPECIALS = ("here", "channel", "everyone")
"""Broadcast names that become ``<!name>``. They are never looked up as user names."""

# A name starts after a character that cannot be part of a word, an address or
# a URL, so bob@example.com, https://host/#anchor and &#39; contain no name.
# It ends where whitespace or the end of the text follows, with any trailing
# punctuation in between: "@here." and "(@here)" name "here", but
# "@channel-ops" names "channel-ops" and "@here/x" names nothing. Existing
# markup such as <@U123|bob> or <https://host/#x> is matched whole and kept.
# Slack markup starts with "@", "#", "!" or a URL scheme, never with whitespace,
# so the brackets in "x < @here > y" are not markup.
_NAME_PATTERN = re.compile(
    r"""
    (?P<markup><[^<>\s][^<>]*>)
    | (?<![\w@#/&.\-])(?P<sigil>[@\#])(?P<name>[A-Za-z0-9_][A-Za-z0-9._\-]*?)
      (?=[.,!?:;)\]}'"]*(?:\s|$))
    """,
    re.VERBOSE,
)


class MarkupResolver(typing.Protocol):
    """Id lookups by name for :func:`unparse_text`.

    Names are passed without their ``@`` or ``#``. Both methods return None when
    the name is unknown or the lookup failed.
    """

    def user_id_by_name(self, name: str) -> typing.Optional[str]:
        """Return the id of the user with this name, or None."""

    def channel_id_by_name(self, name: str) -> typing.Optional[str]:
        """Return the id of the conversation with this name, or None."""


def unparse_text(
    text: str,
    kinds: typing.Iterable[str],
    resolver: typing.Optional[MarkupResolver],
) -> str:
    """Replace the plain mentions of the given kinds in ``text`` by Slack markup.

    ``specials`` turns ``@here``, ``@channel`` and ``@everyone`` into ``<!here>``,
    ``<!channel>`` and ``<!everyone>``. ``channels`` turns ``#name`` into
    ``<#C123|name>`` and ``users`` turns ``@name`` into ``<@U123>``, for names the
    resolver finds. Unknown names, partial words and text inside existing ``<...>``
    markup stay as written.

    Args:
        text: Plain text written by a callback.
        kinds: Any of :data:`KINDS`.
        resolver: Looks up ids by name; None converts no user or channel. It is
            called at most once per distinct name in one call.

    Returns:
        The converted text.

    Raises:
        ValueError: ``kinds`` contains a name not in :data:`KINDS`.
    """
    requested_kinds = frozenset(kinds)
    unknown = requested_kinds.difference(KINDS)
    if unknown:
        raise ValueError(f"unknown omnibot_parse kinds {sorted(unknown)!r}; expected any of {list(KINDS)!r}")
    if not requested_kinds or ("@" not in text and "#" not in text):
        return text

    convert = _Unparse(requested_kinds, resolver)
    return _NAME_PATTERN.sub(convert.replace_name, text)


def apply_omnibot_parse(kwargs: dict, resolver: typing.Optional[MarkupResolver]) -> dict:
    """Apply the ``omnibot_parse`` instructions of an action's or response's kwargs.

    ``kwargs["omnibot_parse"]`` maps a field name to the kinds to convert in it,
    for example ``{"text": ["specials", "channels", "users"]}``. An unknown kind
    is skipped with a warning, and the known kinds of that field are still
    applied. A missing or non-string field is left as it is, with a warning.

    Args:
        kwargs: The kwargs a callback returned; not modified.
        resolver: Passed to :func:`unparse_text`.

    Returns:
        A shallow copy of ``kwargs`` without ``omnibot_parse``, with each named
        field converted.
    """
    result = dict(kwargs)
    instructions = result.pop("omnibot_parse", None)
    if instructions is None:
        return result
    if not isinstance(instructions, dict):
        logger.warning(
            "omnibot_parse ignored: expected a mapping of field name to kinds, got %s",
            type(instructions).__name__,
        )
        return result

    for field, requested in instructions.items():
        kinds = _known_kinds(field, requested)
        if field not in result:
            logger.warning("omnibot_parse skipped field %r: it is missing from the kwargs", field)
            continue
        value = result[field]
        if not isinstance(value, str):
            logger.warning(
                "omnibot_parse skipped field %r: expected a string, got %s",
                field,
                type(value).__name__,
            )
            continue
        result[field] = unparse_text(value, kinds, resolver)
    return result


def _known_kinds(field: str, requested: typing.Any) -> typing.List[str]:
    """Return the known kinds of one ``omnibot_parse`` entry and warn about the rest."""
    if isinstance(requested, str):
        requested = [requested]
    if not isinstance(requested, (list, tuple)):
        logger.warning(
            "omnibot_parse skipped field %r: expected a list of kinds, got %s",
            field,
            type(requested).__name__,
        )
        return []

    known = [kind for kind in requested if kind in KINDS]
    unknown = [kind for kind in requested if kind not in KINDS]
    if unknown:
        logger.warning(
            "omnibot_parse ignored unknown kinds %r for field %r; expected any of %r",
            unknown,
            field,
            list(KINDS),
        )
    return known


class _Unparse:
    """The requested kinds and lookup caches of one :func:`unparse_text` call."""

    __slots__ = ("_kinds", "_resolver", "_user_ids", "_channel_ids")

    def __init__(self, kinds: typing.FrozenSet[str], resolver: typing.Optional[MarkupResolver]):
        self._kinds = kinds
        self._resolver = resolver
        self._user_ids: typing.Dict[str, typing.Optional[str]] = {}
        self._channel_ids: typing.Dict[str, typing.Optional[str]] = {}

    def replace_name(self, match: typing.Match) -> str:
        """Return the markup for one plain name, or the match unchanged."""
        sigil, name = match.group("sigil", "name")
        if sigil is None:
            return match.group()
        if sigil == "#":
            return self._channel(match.group(), name)
        if name in SPECIALS:
            return f"<!{name}>" if "specials" in self._kinds else match.group()
        return self._user(match.group(), name)

    def _channel(self, written: str, name: str) -> str:
        if "channels" not in self._kinds or self._resolver is None:
            return written
        if name not in self._channel_ids:
            self._channel_ids[name] = self._resolver.channel_id_by_name(name)
        channel_id = self._channel_ids[name]
        return f"<#{channel_id}|{name}>" if channel_id else written

    def _user(self, written: str, name: str) -> str:
        if "users" not in self._kinds or self._resolver is None:
            return written
        if name not in self._user_ids:
            self._user_ids[name] = self._resolver.user_id_by_name(name)
        user_id = self._user_ids[name]
        return f"<@{user_id}>" if user_id else written
