"""Recognise Slack's retries and double deliveries so each is processed once.

Slack redelivers an event it believes failed (with ``X-Slack-Retry-Num``),
and one @-mention arrives twice, as a ``message`` and as an ``app_mention``
event with different event ids. The first delivery claims a key in the
cache backend; later ones find it taken.
"""

import logging
import typing

from omnibot.errors import BackendUnavailable

logger = logging.getLogger(__name__)


def event_keys(app_id: str, payload: typing.Mapping) -> typing.List[str]:
    """Return the keys that identify an event delivery for ``app_id``."""
    keys = []
    event_id = payload.get("event_id")
    if isinstance(event_id, str) and event_id:
        keys.append(f"dedup:{{{app_id}}}:event:{event_id}")

    event = payload.get("event")
    if isinstance(event, dict) and event.get("type") in ("message", "app_mention") and not event.get("subtype"):
        channel, ts = event.get("channel"), event.get("ts")
        if isinstance(channel, str) and isinstance(ts, str):
            keys.append(f"dedup:{{{app_id}}}:message:{channel}:{ts}")
    return keys


def interaction_key(app_id: str, kind: str, trigger_id: typing.Optional[str]) -> typing.List[str]:
    """Return the key of a slash command or interactive payload, from its ``trigger_id``."""
    if not trigger_id:
        return []
    return [f"dedup:{{{app_id}}}:{kind}:{trigger_id}"]


def claim(cache, keys: typing.Sequence[str], ttl: float) -> bool:
    """Claim every key in one cache round trip; return False when one was already claimed (a duplicate).

    The other keys may stay claimed, which is harmless because they
    describe the same delivery.
    """
    return cache.add_all(keys, "1", ttl)


def release(cache, keys: typing.Sequence[str]) -> None:
    """Forget claimed keys, so that Slack's retry of a delivery that failed to queue is accepted.

    A cache that is unavailable too is logged, not raised: the caller is
    already responding with an error, and the keys expire on their own.
    """
    try:
        for key in keys:
            cache.delete(key)
    except BackendUnavailable:
        logger.warning("could not release de-duplication keys %s; Slack's retry may be dropped until they expire", keys)
