"""Slack objects read from the cache backend in the last few seconds, kept in process memory.

A worker looks up the sender, the channel and the bot's identity for every
message. On Redis each lookup is a round trip, and the same few objects are
read again and again. :class:`RecentEntries` keeps the raw JSON text of each
entry for :data:`DEFAULT_TTL` seconds, so a busy process reads each object
from the backend about once per that interval. Entries are the text, not
the decoded object, so each reader decodes its own copy and a callback that
changes its payload changes nothing shared.

An entry can be up to :data:`DEFAULT_TTL` seconds older than the backend's.
The backend's own entries are refreshed by the watcher every few minutes,
so this adds little to how stale a lookup can be.
"""

import threading
import time
import typing

DEFAULT_TTL = 5.0
DEFAULT_MAX_ENTRIES = 10_000


class RecentEntries:
    """Raw cache entries by key, each kept for ``ttl`` seconds.

    Safe to share between threads. When ``max_entries`` is reached, every
    entry is dropped, which costs one backend read per key afterwards.

    Args:
        ttl: Seconds an entry is returned after it was stored.
        max_entries: Entries kept before all are dropped.
    """

    def __init__(self, ttl: float = DEFAULT_TTL, max_entries: int = DEFAULT_MAX_ENTRIES):
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: typing.Dict[str, typing.Tuple[float, str]] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> typing.Optional[str]:
        """Return the entry of ``key`` stored less than ``ttl`` seconds ago, or None."""
        entry = self._entries.get(key)
        if entry is None or entry[0] <= time.monotonic():
            return None
        return entry[1]

    def put(self, key: str, raw: str) -> None:
        """Store ``raw`` as the entry of ``key``."""
        self.put_many({key: raw})

    def put_many(self, entries: typing.Mapping[str, str]) -> None:
        """Store each of ``entries``."""
        expires = time.monotonic() + self.ttl
        with self._lock:
            if len(self._entries) + len(entries) > self.max_entries:
                self._entries.clear()
            for key, raw in entries.items():
                self._entries[key] = (expires, raw)
