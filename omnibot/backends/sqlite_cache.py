"""A key-value cache with expiry and locks in one SQLite file, shared by the processes of one host."""

import contextlib
import logging
import time
import typing
import uuid

from omnibot.backends.base import Cache
from omnibot.backends.sqlite_connection import SqliteConnections
from omnibot.errors import BackendUnavailable

logger = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cache_entries (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    expires_at REAL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS cache_entries_by_expires_at ON cache_entries (expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS cache_locks (
    name TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    expires_at REAL NOT NULL
) WITHOUT ROWID;
"""

# SQLite before 3.32 allows at most 999 parameters in one statement.
_MAX_KEYS_PER_QUERY = 500


class SqliteCache(Cache):
    """A :class:`Cache` stored in a SQLite file (WAL mode).

    Reads skip expired rows. Each cache object also deletes all expired rows
    during a write, at most once per ``purge_interval`` seconds, so expired
    keys do not pile up in the table.

    Args:
        path: The database file; its directory must exist.
        busy_timeout: Seconds to wait for another process's write lock
            before raising :class:`~omnibot.errors.BackendUnavailable`.
        purge_interval: Minimum seconds between two deletions of expired rows.
    """

    def __init__(self, path: str, *, busy_timeout: float = 5.0, purge_interval: float = 60.0):
        self._db = SqliteConnections(path, _SCHEMA, busy_timeout=busy_timeout)
        self._purge_interval = purge_interval
        self._next_purge = 0.0

    @property
    def path(self) -> str:
        """The database file."""
        return self._db.path

    def get(self, key: str) -> typing.Optional[str]:
        """Return the value of ``key``, or None when it is missing or expired."""
        with self._db.connection() as conn:
            row = conn.execute(
                "SELECT value FROM cache_entries WHERE key = ? AND (expires_at IS NULL OR expires_at > ?)",
                (key, time.time()),
            ).fetchone()

        return None if row is None else row[0]

    def get_many(self, keys: typing.Sequence[str]) -> typing.List[typing.Optional[str]]:
        """Return the values of ``keys`` in order, None for each missing or expired one."""
        now = time.time()
        found: typing.Dict[str, str] = {}

        with self._db.connection() as conn:
            for start in range(0, len(keys), _MAX_KEYS_PER_QUERY):
                chunk = list(keys[start : start + _MAX_KEYS_PER_QUERY])
                placeholders = ",".join("?" * len(chunk))
                rows = conn.execute(
                    f"SELECT key, value FROM cache_entries WHERE key IN ({placeholders})"
                    " AND (expires_at IS NULL OR expires_at > ?)",
                    (*chunk, now),
                )
                found.update(rows)

        return [found.get(key) for key in keys]

    def set(self, key: str, value: str, ttl: typing.Optional[float] = None) -> None:
        """Store ``value`` under ``key``, replacing any old value.

        Raises:
            TypeError: When ``value`` is not a str.
            ValueError: When ``ttl`` is given and not positive.
        """
        self.set_many({key: value}, ttl)

    def set_many(self, items: typing.Mapping[str, str], ttl: typing.Optional[float] = None) -> None:
        """Store several keys in one transaction, all with the same ``ttl``.

        Raises:
            TypeError: When a value is not a str.
            ValueError: When ``ttl`` is given and not positive.
        """
        now = time.time()
        expires_at = _expires_at(ttl, now)
        rows = [(key, _checked_value(key, value), expires_at) for key, value in items.items()]

        with self._db.write_transaction() as conn:
            conn.executemany("INSERT OR REPLACE INTO cache_entries (key, value, expires_at) VALUES (?, ?, ?)", rows)
            self._purge_expired_if_due(conn, now)

    def add(self, key: str, value: str, ttl: float) -> bool:
        """Store ``value`` only when ``key`` is missing or expired; True when it was stored.

        Raises:
            TypeError: When ``value`` is not a str.
            ValueError: When ``ttl`` is not positive.
        """
        return self.add_all([key], value, ttl)

    def add_all(self, keys: typing.Sequence[str], value: str, ttl: float) -> bool:
        """Store ``value`` under each of ``keys`` that is missing or expired; True when every key was stored.

        One INSERT ... ON CONFLICT statement, so the write lock is held for a
        single statement. Keys that were stored stay stored when another key
        was present.

        Raises:
            TypeError: When ``value`` is not a str.
            ValueError: When ``ttl`` is not positive.
        """
        now = time.time()
        expires_at = _expires_at(ttl, now)
        unique = list(dict.fromkeys(keys))
        for key in unique:
            _checked_value(key, value)
        if not unique:
            return True

        rows = ", ".join(["(?, ?, ?)"] * len(unique))
        parameters = [item for key in unique for item in (key, value, expires_at)]
        parameters.append(now)

        # The update runs only for an expired row, so the change count is the number of keys stored.
        with self._db.writer() as conn:
            stored = conn.execute(
                f"INSERT INTO cache_entries (key, value, expires_at) VALUES {rows}"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at"
                " WHERE cache_entries.expires_at <= ?",
                parameters,
            ).rowcount
            self._purge_expired_if_due(conn, now)

        return stored == len(unique)

    def delete(self, key: str) -> None:
        """Remove ``key`` when present."""
        with self._db.writer() as conn:
            conn.execute("DELETE FROM cache_entries WHERE key = ?", (key,))

    @contextlib.contextmanager
    def lock(self, name: str, timeout: float) -> typing.Iterator[bool]:
        """Try once, without waiting, to take the lock ``name`` for at most ``timeout`` seconds.

        Yields True when this caller took the lock. On exit the lock is
        released only if this caller still holds it, so a caller whose lock
        expired and was taken by another does not release the other's lock.

        Raises:
            ValueError: When ``timeout`` is not positive.
        """
        owner = uuid.uuid4().hex
        acquired = self._acquire_lock(name, owner, timeout)
        try:
            yield acquired
        finally:
            if acquired:
                self._release_lock(name, owner)

    def close(self) -> None:
        """Close the connections this cache opened in the current process."""
        self._db.close()

    def _acquire_lock(self, name: str, owner: str, timeout: float) -> bool:
        if timeout is None or not timeout > 0:
            raise ValueError(f"lock timeout must be more than 0 seconds, got {timeout!r}")

        now = time.time()
        expires_at = now + timeout

        with self._db.write_transaction() as conn:
            conn.execute("DELETE FROM cache_locks WHERE name = ? AND expires_at <= ?", (name, now))
            cursor = conn.execute(
                "INSERT OR IGNORE INTO cache_locks (name, owner, expires_at) VALUES (?, ?, ?)",
                (name, owner, expires_at),
            )

        return cursor.rowcount == 1

    def _release_lock(self, name: str, owner: str) -> None:
        # The lock expires by itself, so a failed release only delays the next
        # holder, and raising here would hide an exception of the locked block.
        try:
            with self._db.writer() as conn:
                cursor = conn.execute("DELETE FROM cache_locks WHERE name = ? AND owner = ?", (name, owner))
        except BackendUnavailable as exc:
            logger.warning("Could not release lock %r; it is released when it expires: %s", name, exc)
            return

        if cursor.rowcount == 0:
            logger.warning("Lock %r expired before its holder released it", name)

    def _purge_expired_if_due(self, conn, now: float) -> None:
        if time.monotonic() < self._next_purge:
            return

        self._next_purge = time.monotonic() + self._purge_interval
        entries = conn.execute("DELETE FROM cache_entries WHERE expires_at <= ?", (now,)).rowcount
        locks = conn.execute("DELETE FROM cache_locks WHERE expires_at <= ?", (now,)).rowcount
        if entries or locks:
            logger.debug("Deleted %d expired cache entries and %d expired locks", entries, locks)


def _expires_at(ttl: typing.Optional[float], now: float) -> typing.Optional[float]:
    if ttl is None:
        return None

    if not ttl > 0:
        raise ValueError(f"ttl must be more than 0 seconds or None, got {ttl!r}")

    return now + ttl


def _checked_value(key: str, value: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"cache values must be str, got {type(value).__name__} for key {key!r}")

    return value
