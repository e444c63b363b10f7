"""Remember which callbacks of a queued message finished, across redeliveries.

When one callback of a handler list raises, the message is retried through
the queue; callbacks that already ran and had their results applied are
skipped on the retry, so their effects happen once. The record is written
only when a callback failed, so the common path costs no cache write. It
is read only on a delivery that follows another one: an attempt after the
first, or a dead letter replayed with ``omnibot dlq replay``, which starts
again at attempt 1 with ``replayed_at`` in its body and must still skip the
callbacks that finished before it was dead-lettered. A worker killed mid-message leaves no
record, so the redelivery runs every callback again. The posts that those
callbacks made before the kill are found by their marks and not made twice
(:mod:`omnibot.processing.post_once`).
"""

import json
import logging

logger = logging.getLogger(__name__)

PROGRESS_TTL = 7 * 24 * 3600.0


class Progress:
    """The finished callbacks of one message.

    Args:
        cache: The cache backend.
        message_id: The queue's id of the message.
        attempts: The delivery number, kept for callers.
        redelivered: Whether an earlier delivery may have finished callbacks;
            the record is read only then.

    Attributes:
        marks: The :class:`omnibot.processing.post_once.PostMarks` of this
            delivery, set by the processor; None marks no post.
    """

    marks = None

    def __init__(self, cache, message_id: str, attempts: int, redelivered: bool = True):
        self._cache = cache
        self._key = f"progress:{{{message_id}}}"
        self._done = set()
        self._stored = False
        raw = cache.get(self._key) if redelivered else None
        if raw:
            self._done = set(json.loads(raw))
            self._stored = True

    def is_done(self, callback_key: str) -> bool:
        return callback_key in self._done

    def mark_done(self, callback_key: str) -> None:
        self._done.add(callback_key)

    def save(self) -> None:
        """Store the finished callbacks before the message goes back to the queue."""
        self._cache.set(self._key, json.dumps(sorted(self._done)), ttl=PROGRESS_TTL)
        self._stored = True

    def forget(self) -> None:
        """Drop the record once the message is processed for good."""
        if self._stored:
            self._cache.delete(self._key)
