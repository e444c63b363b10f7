"""A durable work queue in one SQLite file, shared by the processes of one host.

Each message is a row of ``messages``. Its ``available_at`` column is the
time from which a worker may lease it: the enqueue time for a new message,
the lease deadline while a worker holds it, and the end of the backoff after
a failure. So one index lookup ``available_at <= now`` finds new messages,
retries that are due and messages whose worker died.
"""

import json
import logging
import sqlite3
import time
import typing

from omnibot.backends.base import DeadLetter, Delivery, Queue
from omnibot.backends.group_commit import GroupCommit
from omnibot.backends.retry_policy import RetryPolicy
from omnibot.backends.spool_files import SpoolWriter
from omnibot.backends.sqlite_connection import SqliteConnections
from omnibot.backends.sqlite_spool import SCHEMA as SPOOL_SCHEMA, UNREADABLE_LINE_KEY, PendingPut, SpoolImporter
from omnibot.backends.unique_ids import new_id
from omnibot.errors import BackendUnavailable

logger = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    body TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    available_at REAL NOT NULL,
    lease_token TEXT,
    enqueued_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_available_at ON messages (available_at, seq);
CREATE TABLE IF NOT EXISTS dead_letters (
    id TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    error TEXT NOT NULL,
    failed_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS dead_letters_by_failed_at ON dead_letters (failed_at);
CREATE TABLE IF NOT EXISTS claims (
    key TEXT PRIMARY KEY,
    expires_at REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS claims_by_expires_at ON claims (expires_at);
"""

# Expired claims are deleted during a write at most this often, in seconds,
# and at most this many at a time, so that one request does not pay for a
# minute of expired claims.
_CLAIM_PURGE_INTERVAL = 60.0
_CLAIM_PURGE_BATCH = 2000

# Messages per INSERT statement: 4 parameters each, under the limit of 999
# parameters of SQLite before 3.32.
_INSERT_BATCH = 200

# INSERT ... RETURNING came with SQLite 3.35; older versions take two statements to claim.
_HAS_RETURNING = sqlite3.sqlite_version_info >= (3, 35, 0)

# get() polls the file while the queue is empty. The pause grows from the
# first to the max value, so an idle worker costs a few cheap reads per second
# while a message that arrives during a busy period waits at most tens of ms.
_FIRST_POLL_PAUSE = 0.02
_MAX_POLL_PAUSE = 0.05
_POLL_PAUSE_GROWTH = 1.5


class SqliteQueue(Queue):
    """A :class:`Queue` stored in a SQLite file (WAL mode).

    Safe for several threads and several processes on one host. Leasing
    happens inside ``BEGIN IMMEDIATE``, so two workers never lease the same
    message at once. The receipt of a :class:`Delivery` is a random lease
    token, and ack or fail with a token that is no longer current changes nothing.

    Args:
        path: The database file; its directory must exist.
        visibility_timeout: Seconds a leased message stays invisible to other workers.
        max_attempts: Deliveries after which a failed message is dead-lettered.
        backoff_base: Delay in seconds before the second delivery of a failed message.
        backoff_max: Upper bound in seconds of the delay between deliveries.
        busy_timeout: Seconds to wait for another process's write lock
            before raising :class:`~omnibot.errors.BackendUnavailable`.
        spool_puts: Append puts to spool files in ``<path>-spool``
            instead of writing them to the file. :meth:`get` imports the
            spool files of that directory in either case
            (:mod:`omnibot.backends.sqlite_spool`).
    """

    def __init__(
        self,
        path: str,
        *,
        visibility_timeout: float = 60,
        max_attempts: int = 5,
        backoff_base: float = 1.0,
        backoff_max: float = 300.0,
        busy_timeout: float = 5.0,
        spool_puts: bool = False,
    ):
        self.policy = RetryPolicy(visibility_timeout, max_attempts, backoff_base, backoff_max)
        self._db = SqliteConnections(path, _SCHEMA + SPOOL_SCHEMA, busy_timeout=busy_timeout)
        # Every queue imports, so a worker started without QUEUE_SPOOL still takes what a web process spooled.
        self._spool_writer = SpoolWriter(spool_directory(path)) if spool_puts else None
        self._spool_importer = SpoolImporter(spool_directory(path), self._db, self._insert_puts, _dead_letter_spool_line)
        self._puts = GroupCommit(self._write_puts)
        self._leases = GroupCommit(self._write_leases)
        self._acks = GroupCommit(self._write_acks)
        self._next_claim_purge = 0.0

    @property
    def path(self) -> str:
        """The database file."""
        return self._db.path

    def put(self, body: dict) -> str:
        """Insert ``body`` as a new message, ready at once, and return its id.

        Puts of concurrent threads share one transaction (:mod:`group_commit`).
        With WAL and ``synchronous=NORMAL`` the message survives a crash of
        any process once this returns, but not a power loss right after the commit.
        """
        return self._submit(PendingPut(new_id(), time.time(), 0.0, (), json.dumps(body)))

    def put_unless_claimed(
        self, body: dict, claims: typing.Sequence[str], ttl: float, *, exact: bool = False
    ) -> typing.Optional[str]:
        """Claim ``claims`` and insert ``body`` in one transaction; None when a key was claimed already.

        The claims are rows of the ``claims`` table of the same file, so the
        transaction that stores the message also stores its claims. With
        ``exact``, the put imports the spool files first, in a transaction
        of its own, and then writes to the file even when puts go through
        the spool.

        Raises:
            ValueError: When ``ttl`` is not positive.
        """
        if not ttl > 0:
            raise ValueError(f"ttl must be a positive number of seconds, got {ttl!r}")
        put = PendingPut(new_id(), time.time(), float(ttl), tuple(dict.fromkeys(claims)), json.dumps(body))
        if exact:
            # The claims of a line that an earlier put spooled exist only once it is imported.
            self._spool_importer.import_waiting()
            return self._puts.submit(put)
        return self._submit(put)

    def _submit(self, put: PendingPut) -> typing.Optional[str]:
        """Append ``put`` to a spool file and return its id, or write it with the batch it lands in."""
        if self._spool_writer is not None:
            # Claims are checked when a worker imports the line, so a put to the spool always returns an id.
            self._spool_writer.append(put.to_line())
            return put.message_id
        return self._puts.submit(put)

    def _write_puts(self, puts: typing.List[PendingPut]) -> typing.List[typing.Optional[str]]:
        """Write a batch of puts in one transaction and return each message id, or None for a duplicate."""
        with self._db.write_transaction() as conn:
            # Read inside the transaction: the turn may have taken a while.
            return self._insert_puts(conn, puts, time.time())

    def _insert_puts(self, conn, puts: typing.Sequence[PendingPut], now: float) -> typing.List[typing.Optional[str]]:
        """Claim and insert ``puts`` in the open transaction ``conn``; return each message id, or None for a duplicate.

        The claims of each put take one statement, and the messages of the
        whole batch one more. Each call into SQLite lets another thread take
        the GIL while this one holds the file's write turn. A claim expires
        ``ttl`` seconds after this transaction, so a put imported from the
        spool long after it was made still stops the repeats imported after it.
        """
        results = []
        rows = []
        for put in puts:
            if put.claims and not _claim(conn, put.claims, now + put.ttl, now):
                results.append(None)
                continue
            rows.append((put.message_id, put.encoded, now, min(put.received_at, now)))
            results.append(put.message_id)

        for start in range(0, len(rows), _INSERT_BATCH):
            chunk = rows[start:start + _INSERT_BATCH]
            values = ", ".join(["(?, ?, 0, ?, ?)"] * len(chunk))
            conn.execute(
                f"INSERT INTO messages (id, body, attempts, available_at, enqueued_at) VALUES {values}",
                [value for row in chunk for value in row],
            )

        if now >= self._next_claim_purge:
            purged = conn.execute(
                "DELETE FROM claims WHERE key IN (SELECT key FROM claims WHERE expires_at <= ? LIMIT ?)",
                (now, _CLAIM_PURGE_BATCH),
            ).rowcount
            # A full batch means more expired claims wait, so the next write deletes more.
            self._next_claim_purge = now + (0.0 if purged >= _CLAIM_PURGE_BATCH else _CLAIM_PURGE_INTERVAL)
        return results

    def get(self, timeout: float = 1.0) -> typing.Optional[Delivery]:
        """Lease the oldest ready message, polling the file for up to ``timeout`` seconds.

        A message is ready when it is new, its backoff has passed, or its
        previous lease expired. The lease lasts ``visibility_timeout`` seconds
        and counts as one more attempt. A message whose lease expired after its
        last allowed attempt is dead-lettered here instead of being delivered.
        Before it returns None, it imports the spool files, unless another
        thread of this process is importing them at that moment.
        """
        deadline = time.monotonic() + max(timeout, 0.0)
        pause = _FIRST_POLL_PAUSE

        while True:
            delivery = self._lease_next()
            remaining = deadline - time.monotonic()
            # Spool files are imported only when nothing is ready, so a busy
            # queue takes them in large batches and few transactions. The last
            # look before returning None imports even right after another
            # import, so that it leases what was spooled before the call.
            if delivery is None and self._spool_importer.import_due(last_look=remaining <= 0):
                delivery = self._lease_next()
            if delivery is not None:
                return delivery

            if remaining <= 0:
                return None

            time.sleep(min(pause, remaining))
            pause = min(pause * _POLL_PAUSE_GROWTH, _MAX_POLL_PAUSE)

    def ack(self, delivery: Delivery) -> None:
        """Delete the message, unless another worker has leased it since ``delivery`` was handed out.

        Acks of concurrent threads share one transaction, as puts do.
        """
        if not self._acks.submit((delivery.id, delivery.receipt)):
            _log_lost_lease("ack", delivery)

    def _write_acks(self, acks: typing.List[typing.Tuple[str, str]]) -> typing.List[bool]:
        """Delete a batch of acked messages in one transaction; True for each one still leased by its receipt."""
        with self._db.write_transaction() as conn:
            return [
                conn.execute("DELETE FROM messages WHERE id = ? AND lease_token = ?", ack).rowcount == 1
                for ack in acks
            ]

    def extend_leases(self, deliveries: typing.Sequence[Delivery]) -> typing.List[bool]:
        """Move each held lease's deadline to a full visibility timeout from now, in one transaction."""
        if not deliveries:
            return []
        with self._db.write_transaction() as conn:
            deadline = time.time() + self.policy.visibility_timeout
            return [
                conn.execute(
                    "UPDATE messages SET available_at = ? WHERE id = ? AND lease_token = ?",
                    (deadline, delivery.id, delivery.receipt),
                ).rowcount
                == 1
                for delivery in deliveries
            ]

    def fail(self, delivery: Delivery, error: str) -> bool:
        """Schedule the message again after its backoff, or dead-letter it after its last attempt.

        Returns:
            True when the message was dead-lettered. False when it was
            scheduled again, or when the lease had passed to another worker,
            in which case nothing changes.
        """
        now = time.time()

        with self._db.write_transaction() as conn:
            row = conn.execute(
                "SELECT body, attempts FROM messages WHERE id = ? AND lease_token = ?",
                (delivery.id, delivery.receipt),
            ).fetchone()

            if row is None:
                dead_lettered = None
            elif self.policy.is_exhausted(row[1]):
                _move_to_dead_letters(conn, delivery.id, row[0], row[1], error, now)
                dead_lettered = True
            else:
                delay = self.policy.backoff(row[1])
                conn.execute(
                    "UPDATE messages SET available_at = ?, lease_token = NULL WHERE id = ?",
                    (now + delay, delivery.id),
                )
                dead_lettered = False

        if dead_lettered is None:
            _log_lost_lease("fail", delivery)
            return False

        if dead_lettered:
            logger.warning("Message %s moved to the dead letters after %d attempts", delivery.id, row[1])
        else:
            logger.info("Message %s failed attempt %d; it is delivered again in %.3g s", delivery.id, row[1], delay)

        return dead_lettered

    def depth(self) -> int:
        """Return how many messages wait, are leased or wait for a retry (dead letters excluded).

        Lines of the spool files that no worker imported yet count too.
        """
        with self._db.connection() as conn:
            count = conn.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
        return count + self._spool_importer.count_waiting()

    def stats(self) -> typing.Dict[str, int]:
        """Count the messages by state.

        Returns:
            A dict with ``ready``, ``leased``, ``delayed`` (waiting for the
            backoff after a failure) and ``dead`` (dead letters). A message
            whose lease expired counts as ready.
        """
        now = time.time()

        with self._db.connection() as conn:
            ready, leased, delayed = conn.execute(
                "SELECT"
                " COALESCE(SUM(available_at <= :now), 0),"
                " COALESCE(SUM(available_at > :now AND lease_token IS NOT NULL), 0),"
                " COALESCE(SUM(available_at > :now AND lease_token IS NULL), 0)"
                " FROM messages",
                {"now": now},
            ).fetchone()
            dead = conn.execute("SELECT COUNT(*) FROM dead_letters").fetchone()[0]

        return {"ready": ready + self._spool_importer.count_waiting(), "leased": leased, "delayed": delayed, "dead": dead}

    def dead_letters(self, limit: int = 100) -> typing.List[DeadLetter]:
        """List up to ``limit`` dead letters, oldest failure first."""
        # SQLite reads a negative LIMIT as "no limit".
        if limit <= 0:
            return []

        with self._db.connection() as conn:
            rows = conn.execute(
                "SELECT id, body, attempts, error, failed_at FROM dead_letters ORDER BY failed_at, id LIMIT ?",
                (limit,),
            ).fetchall()

        return [_dead_letter_from_row(row) for row in rows]

    def dead_letter(self, message_id: str) -> typing.Optional[DeadLetter]:
        """Return the dead letter ``message_id``, or None when there is none."""
        with self._db.connection() as conn:
            row = conn.execute(
                "SELECT id, body, attempts, error, failed_at FROM dead_letters WHERE id = ?",
                (message_id,),
            ).fetchone()

        return None if row is None else _dead_letter_from_row(row)

    def replay(self, message_id: str) -> bool:
        """Move a dead letter back to the queue, ready at once, keeping its id and resetting its attempts.

        Returns:
            False when ``message_id`` is not a dead letter.

        Raises:
            ValueError: The dead letter is a spool line that could not be
                read, which no worker can process.
        """
        now = time.time()

        with self._db.write_transaction() as conn:
            row = conn.execute("SELECT body FROM dead_letters WHERE id = ?", (message_id,)).fetchone()
            if row is None:
                return False
            body = json.loads(row[0])
            if set(body) == {UNREADABLE_LINE_KEY}:
                raise ValueError(f"dead letter {message_id} is a spool line that could not be read, so no worker can process it")

            conn.execute(
                "INSERT INTO messages (id, body, attempts, available_at, enqueued_at) VALUES (?, ?, 0, ?, ?)",
                (message_id, json.dumps(dict(body, replayed_at=now)), now, now),
            )
            conn.execute("DELETE FROM dead_letters WHERE id = ?", (message_id,))

        logger.info("Dead letter %s replayed", message_id)
        return True

    def purge_dead_letters(self, older_than: float) -> int:
        """Delete the dead letters that failed at least ``older_than`` seconds ago and return their count.

        Raises:
            ValueError: When ``older_than`` is negative.
        """
        if older_than < 0:
            raise ValueError(f"older_than must be 0 seconds or more, got {older_than!r}")

        cutoff = time.time() - older_than
        with self._db.writer() as conn:
            cursor = conn.execute("DELETE FROM dead_letters WHERE failed_at <= ?", (cutoff,))

        return cursor.rowcount

    def close(self) -> None:
        """Close the idle spool files of this process's pool, import them, and close the connections this queue opened.

        The import at close takes the lines that no worker imported yet and
        deletes the closed files, so a clean stop leaves no spool file behind.
        When it fails, the lines wait in the files for the next import.
        """
        if self._spool_writer is not None:
            self._spool_writer.close()
            try:
                self._spool_importer.import_waiting(clean_up=True)
            except BackendUnavailable as error:
                logger.warning("left the spool files in %s for the next import: %s", self._spool_importer.directory, error)
        self._db.close()

    def _lease_next(self) -> typing.Optional[Delivery]:
        # A plain read first, so idle workers polling an empty queue do not
        # take the write lock that put() on the request path needs.
        with self._db.connection() as conn:
            ready = conn.execute("SELECT 1 FROM messages WHERE available_at <= ? LIMIT 1", (time.time(),)).fetchone()
        if ready is None:
            return None

        # Threads of this process that poll at the same time lease their messages in one transaction.
        return self._leases.submit(None)

    def _write_leases(self, requests: typing.List[None]) -> typing.List[typing.Optional[Delivery]]:
        """Lease up to one ready message per request in one transaction; None for each request left without one."""
        expired: typing.List[typing.Tuple[str, int]] = []
        deliveries: typing.List[typing.Optional[Delivery]] = []

        with self._db.write_transaction() as conn:
            now = time.time()
            while len(deliveries) < len(requests):
                row = conn.execute(
                    "SELECT seq, id, body, attempts FROM messages WHERE available_at <= ?"
                    " ORDER BY available_at, seq LIMIT 1",
                    (now,),
                ).fetchone()
                if row is None:
                    break

                seq, message_id, body, attempts = row

                # Its worker leased it for the last allowed attempt and never
                # acked or failed it, so that attempt counts as failed.
                if self.policy.is_exhausted(attempts):
                    error = _expired_lease_error(self.policy.visibility_timeout)
                    _move_to_dead_letters(conn, message_id, body, attempts, error, now)
                    expired.append((message_id, attempts))
                    continue

                token = new_id()
                conn.execute(
                    "UPDATE messages SET attempts = attempts + 1, available_at = ?, lease_token = ? WHERE seq = ?",
                    (now + self.policy.visibility_timeout, token, seq),
                )
                deliveries.append(Delivery(id=message_id, body=json.loads(body), attempts=attempts + 1, receipt=token))

        for message_id, attempts in expired:
            logger.warning(
                "Message %s moved to the dead letters: its lease expired after attempt %d of %d",
                message_id,
                attempts,
                self.policy.max_attempts,
            )

        return deliveries + [None] * (len(requests) - len(deliveries))


def _claim(conn, keys: typing.Sequence[str], expires_at: float, now: float) -> bool:
    """Claim every key when none is claimed (or every claim expired); return False for a duplicate.

    A duplicate claims nothing, as on Redis. With SQLite 3.35 or later, one
    statement inserts the free keys, renews the expired ones and returns
    the keys it took. When it took fewer than all, it deletes them again,
    because a deleted claim means the same as an expired one. Older SQLite
    has no ``RETURNING``, so the keys are checked first.
    """
    rows = ", ".join(["(?, ?)"] * len(keys))
    parameters = [item for key in keys for item in (key, expires_at)]
    parameters.append(now)
    upsert = (
        f"INSERT INTO claims (key, expires_at) VALUES {rows}"
        " ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at WHERE claims.expires_at <= ?"
    )

    if not _HAS_RETURNING:
        marks = ", ".join("?" * len(keys))
        still_claimed = conn.execute(
            f"SELECT 1 FROM claims WHERE key IN ({marks}) AND expires_at > ? LIMIT 1", (*keys, now)
        ).fetchone()
        if still_claimed is not None:
            return False
        return conn.execute(upsert, parameters).rowcount == len(keys)

    took = conn.execute(upsert + " RETURNING key", parameters).fetchall()
    if len(took) == len(keys):
        return True

    if took:
        marks = ", ".join("?" * len(took))
        conn.execute(f"DELETE FROM claims WHERE key IN ({marks})", [row[0] for row in took])
    return False


def _move_to_dead_letters(conn, message_id: str, body: str, attempts: int, error: str, failed_at: float) -> None:
    # REPLACE covers a message that was replayed and then failed again.
    conn.execute(
        "INSERT OR REPLACE INTO dead_letters (id, body, attempts, error, failed_at) VALUES (?, ?, ?, ?, ?)",
        (message_id, body, attempts, error, failed_at),
    )
    conn.execute("DELETE FROM messages WHERE id = ?", (message_id,))


def spool_directory(path: str) -> str:
    """Return the spool directory of the queue file ``path``: beside it, as SQLite's own -wal and -shm files are."""
    return f"{path}-spool"


def _dead_letter_spool_line(conn, message_id: str, text: str, error: str, now: float) -> None:
    _move_to_dead_letters(conn, message_id, json.dumps({UNREADABLE_LINE_KEY: text}), 0, error, now)


def _dead_letter_from_row(row) -> DeadLetter:
    message_id, body, attempts, error, failed_at = row
    return DeadLetter(id=message_id, body=json.loads(body), attempts=attempts, error=error, failed_at=failed_at)


def _expired_lease_error(visibility_timeout: float) -> str:
    return (
        f"lease expired: no ack or fail within the visibility timeout of {visibility_timeout:g} s "
        "(the worker died, or could not renew its lease)"
    )


def _log_lost_lease(operation: str, delivery: Delivery) -> None:
    logger.warning(
        "Ignored %s of message %s (attempt %d): the lease is no longer held, because its visibility "
        "timeout passed and another worker leased the message, or the message was already removed",
        operation,
        delivery.id,
        delivery.attempts,
    )
