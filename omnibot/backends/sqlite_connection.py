"""Per-thread SQLite connections in WAL mode, shared by the SQLite queue and cache.

Several processes on one host may open the same file: WAL lets readers run
beside one writer, and the busy timeout makes a writer wait for the lock
instead of failing at once. WAL needs shared memory, so the file must not sit
on a network file system and must not be shared between hosts.
"""

import contextlib
import logging
import os
import sqlite3
import threading
import time
import typing
import weakref

from omnibot.backends.writer_turns import WriterTurns
from omnibot.errors import BackendUnavailable

logger = logging.getLogger(__name__)

# Primary result codes that mean "the database cannot be used right now"
# (locked past the busy timeout, file missing or unreadable, disk full).
# Other errors, such as SQL syntax errors, are bugs and propagate unchanged.
_UNAVAILABLE_CODES = frozenset(
    {
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_READONLY,
        sqlite3.SQLITE_PROTOCOL,
    }
)


class _Connection(sqlite3.Connection):
    """A connection that can be weakly referenced and records who opened it and when."""

    owner_pid: int
    generation: int


class SqliteConnections:
    """Lazily opened connections to one SQLite file, one per thread and process.

    Each connection runs in autocommit mode (``isolation_level=None``) with
    ``journal_mode=WAL`` and ``synchronous=NORMAL``, so a single statement is
    its own transaction and :meth:`write_transaction` starts explicit ones.

    Args:
        path: The database file; its parent directory must exist.
        schema: SQL script of idempotent ``CREATE ... IF NOT EXISTS``
            statements, run once per new connection.
        busy_timeout: Seconds a statement waits for another connection's
            write lock before it fails with :class:`BackendUnavailable`.
    """

    def __init__(self, path: str, schema: str, *, busy_timeout: float = 5.0):
        self.path = path
        self._schema = schema
        self._busy_timeout = busy_timeout
        self._local = threading.local()

        # Weak references, so the connection of a thread that ended is closed
        # by garbage collection once its thread-local slot is gone.
        self._opened: "weakref.WeakSet[_Connection]" = weakref.WeakSet()
        self._opened_lock = threading.Lock()

        # Incremented by close(), so each thread opens a new connection on its next use.
        self._generation = 0

        # Writers of this file take turns on it; see writer().
        self._write_lock = WriterTurns(path + ".writer-lock", timeout=busy_timeout)

        # Connections inherited through fork(), kept referenced so that garbage
        # collection in the child never closes them.
        self._inherited: typing.List[_Connection] = []

    def _enable_wal(self, conn: sqlite3.Connection) -> str:
        """Switch a new connection to WAL and return the journal mode in force.

        Switching needs an exclusive lock, and SQLite answers "database is
        locked" at once, without waiting for the busy timeout, when another
        connection is opening the same new file. Retry until the busy
        timeout has passed.
        """
        deadline = time.monotonic() + self._busy_timeout
        delay = 0.01
        while True:
            try:
                return conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or time.monotonic() >= deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, 0.2)

    @contextlib.contextmanager
    def connection(self) -> typing.Iterator[sqlite3.Connection]:
        """Yield this thread's connection, turning lock and I/O errors into BackendUnavailable."""
        with self._translate_errors():
            yield self._thread_connection()

    @contextlib.contextmanager
    def writer(self) -> typing.Iterator[sqlite3.Connection]:
        """Yield this thread's connection for writing, one thread of this process at a time.

        SQLite's busy handler waits for another connection's write lock by
        sleeping for 1 ms, then longer, so writers that came at once would
        mostly sleep. :class:`WriterTurns` makes omnibot's writers wait for
        each other instead, and they are woken as soon as the lock is free.
        Other programs writing the file still meet SQLite's busy timeout.
        """
        with self._write_lock.turn(), self._translate_errors():
            yield self._thread_connection()

    @contextlib.contextmanager
    def write_transaction(self) -> typing.Iterator[sqlite3.Connection]:
        """Yield this thread's connection inside ``BEGIN IMMEDIATE`` ... ``COMMIT``.

        ``BEGIN IMMEDIATE`` takes the database's write lock before the first
        read, so a read-then-write sequence inside the block is atomic across
        threads and processes. The transaction is rolled back when the block
        raises. Threads of one process take turns, as in :meth:`writer`.
        """
        with self._write_lock.turn(), self._translate_errors():
            conn = self._thread_connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.rollback()
                raise

    def close(self) -> None:
        """Close every connection this object opened in the current process.

        A later call opens new connections, so the object stays usable.
        """
        pid = os.getpid()
        with self._opened_lock:
            self._generation += 1
            opened = [conn for conn in self._opened if conn.owner_pid == pid]
            for conn in opened:
                self._opened.discard(conn)

        for conn in opened:
            conn.close()

    def _thread_connection(self) -> sqlite3.Connection:
        conn = getattr(self._local, "connection", None)

        if conn is not None and conn.owner_pid == os.getpid() and conn.generation == self._generation:
            return conn

        # SQLite forbids using a connection inherited through fork(), so the
        # child opens its own. It never closes the inherited one, which could
        # disturb the parent's use of the file.
        if conn is not None and conn.owner_pid != os.getpid():
            self._inherited.append(conn)

        conn = self._open()
        self._local.connection = conn
        return conn

    def _open(self) -> _Connection:
        # The connect timeout is SQLite's busy timeout. check_same_thread is off
        # only so that close() can close every thread's connection, and each
        # connection is otherwise used by the thread that opened it.
        conn = sqlite3.connect(
            self.path,
            timeout=self._busy_timeout,
            isolation_level=None,
            check_same_thread=False,
            factory=_Connection,
        )
        conn.owner_pid = os.getpid()
        conn.generation = self._generation

        try:
            self._configure(conn)
        except BaseException:
            conn.close()
            raise

        with self._opened_lock:
            self._opened.add(conn)

        return conn

    def _configure(self, conn: sqlite3.Connection) -> None:
        journal_mode = self._enable_wal(conn)
        if journal_mode.lower() != "wal":
            logger.warning(
                "SQLite file %s uses journal_mode=%s because WAL is not available there; "
                "readers and writers will block each other",
                self.path,
                journal_mode,
            )

        # With WAL, NORMAL keeps every committed transaction when a process
        # crashes. Only a power loss or OS crash can roll back the last commits
        # (https://www.sqlite.org/pragma.html#pragma_synchronous).
        conn.execute("PRAGMA synchronous=NORMAL")

        conn.executescript(f"BEGIN IMMEDIATE;\n{self._schema}\nCOMMIT;")

    @contextlib.contextmanager
    def _translate_errors(self) -> typing.Iterator[None]:
        try:
            yield
        except sqlite3.OperationalError as exc:
            code = getattr(exc, "sqlite_errorcode", None)
            if code is None or code & 0xFF not in _UNAVAILABLE_CODES:
                raise

            raise BackendUnavailable(f"SQLite database {self.path} is unavailable: {exc}") from exc
