"""The spool in front of the SQLite queue: web threads append, workers import into the queue.

With ``QUEUE_SPOOL`` on, a put does not write the SQLite file. The calling
thread appends the message as one line to a spool file that no other
thread is writing (:mod:`omnibot.backends.spool_files`), which is one
``write()`` system call, and returns. When a worker thread finds no ready
message, :class:`SpoolImporter` moves the new lines of the spool files,
up to 1 MB, into the queue in one SQLite transaction, claims included. A
put in the web process thus takes no write turn of the SQLite file and
waits for no other process.

Durability: when ``write()`` returns, the line is in the kernel's page
cache, so it survives a crash of any omnibot process, as a SQLite commit
with ``synchronous=NORMAL`` does. Both can lose the writes of the last
moments to a power loss or a kernel crash.

Exactly once: the transaction that inserts a file's lines also stores how
far the file was read (table ``spool_offsets``). Two workers that import at
once therefore never insert a line twice, and a failed transaction inserts
nothing and moves no offset.

De-duplication happens at import. A put always returns a message id. A
message whose claim key was claimed already, by an earlier import or by
another line of the same import, is dropped at import and logged.
"""

import logging
import os
import threading
import time
import typing
import weakref

from omnibot.backends.spool_files import (
    count_newlines,
    list_spool_files,
    read_lines,
    read_to_end,
    remove_abandoned_temporaries,
    remove_spool_file,
    writer_finished,
)
# sqlite_queue imports UNREADABLE_LINE_KEY and PendingPut from this module.
from omnibot.backends.spool_records import UNREADABLE_LINE_KEY, PendingPut, log_duplicate  # noqa: F401
from omnibot.errors import BackendUnavailable

logger = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS spool_offsets (
    file TEXT PRIMARY KEY,
    offset INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS spool_line_counts (
    file TEXT PRIMARY KEY,
    lines INTEGER NOT NULL
);
"""

# Seconds between two imports of one process. A worker thread imports when
# it finds nothing ready, and threads poll an empty queue every 20 to 50 ms.
_IMPORT_INTERVAL = 0.005

# Seconds between two checks for finished files, which cost a few system calls per file.
_CLEANUP_INTERVAL = 1.0

# Bytes read by one import, over all files, so that a backlog is imported
# in transactions short enough for the other writers of the SQLite file.
_READ_LIMIT = 1024 * 1024

# Seconds after which a spool file that its writer never renamed, and that
# no process keeps open, is deleted. It contains no acknowledged line.
_ABANDONED_AFTER = 60.0


class SpoolImporter:
    """Imports the spool files of one directory into the SQLite queue that shares their host.

    Args:
        directory: The spool directory.
        db: The queue's :class:`~omnibot.backends.sqlite_connection.SqliteConnections`.
        insert_puts: ``insert_puts(conn, puts, now)`` claims and inserts
            :class:`PendingPut` values in the open transaction ``conn`` and
            returns, for each, the message id or None for a duplicate.
        dead_letter: ``dead_letter(conn, message_id, body, error, now)`` stores
            a line that cannot be read as a dead letter.
    """

    def __init__(self, directory: str, db, insert_puts, dead_letter):
        self.directory = directory
        self._db = db
        self._insert_puts = insert_puts
        self._dead_letter = dead_letter
        self._busy = threading.Lock()
        reference = weakref.ref(self)
        # A lock held by a parent thread at fork() would stay held in the child, which would then never import.
        os.register_at_fork(after_in_child=lambda: _reset_lock(reference))
        self._next_import = 0.0
        self._next_cleanup = 0.0
        # The sizes that this process last imported to the end, so that an import with nothing new skips the transaction.
        self._imported_sizes: typing.Dict[str, int] = {}
        # {file: (offset, newlines before it)}, so that counting a file's lines reads each byte once per process.
        self._counted: typing.Dict[str, typing.Tuple[int, int]] = {}
        self._counted_lock = threading.Lock()

    def import_due(self, last_look: bool = False) -> int:
        """Import new lines unless this process imported less than a few ms ago or is importing now.

        Args:
            last_look: Import even when this process imported a few ms ago,
                but not while another of its threads imports.

        Returns:
            How many lines were read; 0 when the import was skipped.
        """
        now = time.monotonic()
        if (now < self._next_import and not last_look) or not self._busy.acquire(blocking=False):
            return 0
        try:
            self._next_import = now + _IMPORT_INTERVAL
            return self.import_now()
        finally:
            self._busy.release()

    def import_waiting(self, clean_up: bool = False) -> int:
        """Import new lines now, after any import of this process that is running; return how many were read.

        Args:
            clean_up: Also delete the finished files now, as at close,
                instead of at most once a second.

        Raises:
            BackendUnavailable: The SQLite file could not be written.
        """
        with self._busy:
            self._next_import = time.monotonic() + _IMPORT_INTERVAL
            if clean_up:
                self._next_cleanup = 0.0
            return self.import_now()

    def import_now(self) -> int:
        """Import the new lines of every spool file and return how many were read.

        Once a second it also deletes the files that are read to their end
        and that no writer keeps open any more.

        Raises:
            BackendUnavailable: The SQLite file could not be written.
        """
        sizes = list_spool_files(self.directory)
        if not sizes and not self._imported_sizes:
            # No spool files: the common case when puts do not go through the spool.
            return 0
        cleanup = time.monotonic() >= self._next_cleanup
        if not cleanup and all(self._imported_sizes.get(name) == size for name, size in sizes.items()):
            return 0

        imported: typing.Dict[str, int] = {}
        with self._db.write_transaction() as conn:
            offsets = dict(conn.execute("SELECT file, offset FROM spool_offsets").fetchall())
            now = time.time()
            read = 0
            budget = _READ_LIMIT
            for name, size in sorted(sizes.items()):
                offset = offsets.get(name, 0)
                if size > offset and budget > 0:
                    count, end = self._import_file(conn, name, offset, budget, now)
                    read += count
                    budget -= end - offset
                    offset = end
                imported[name] = offset
            finished = self._settle_finished(conn, sizes, imported) if cleanup else []

        # Remembered, and finished files deleted, only once the transaction committed.
        self._imported_sizes = imported
        for name in finished:
            remove_spool_file(os.path.join(self.directory, name))
        if cleanup:
            remove_abandoned_temporaries(self.directory, older_than=_ABANDONED_AFTER)
            self._next_cleanup = time.monotonic() + _CLEANUP_INTERVAL
        return read

    def _import_file(self, conn, name: str, offset: int, limit: int, now: float) -> typing.Tuple[int, int]:
        """Insert the whole lines of one file from ``offset``, about ``limit`` bytes; return how many were read and the new offset."""
        try:
            lines, end = read_lines(os.path.join(self.directory, name), offset, limit)
        except FileNotFoundError:
            # Another process read it to the end and deleted it since the listing.
            return 0, offset
        if not lines:
            return 0, offset

        puts = []
        line_start = offset
        for line in lines:
            try:
                puts.append(PendingPut.from_line(line))
            except ValueError as error:
                logger.error(
                    "moved an unreadable line of spool file %s at byte %d to the dead letters: %s", name, line_start, error
                )
                text = line.decode("utf-8", "replace")
                self._dead_letter(conn, f"spool-{name}-{line_start}", text, f"unreadable spool line: {error}", now)
            line_start += len(line) + 1

        for put, message_id in zip(puts, self._insert_puts(conn, puts, now)):
            if message_id is None:
                log_duplicate(logger, put)

        conn.execute("INSERT OR REPLACE INTO spool_offsets (file, offset) VALUES (?, ?)", (name, end))
        # Lines read so far, for count_waiting(). A file that an import
        # before this table existed began has no row, and is counted by reading.
        if offset == 0:
            conn.execute("INSERT OR REPLACE INTO spool_line_counts (file, lines) VALUES (?, ?)", (name, len(lines)))
        else:
            conn.execute("UPDATE spool_line_counts SET lines = lines + ? WHERE file = ?", (len(lines), name))
        return len(lines), end

    def _settle_finished(self, conn, sizes: typing.Dict[str, int], imported: typing.Dict[str, int]) -> typing.List[str]:
        """Return the files whose writers are gone and that are read to their end, for deletion after the commit.

        The torn end of a file whose writer died is skipped (:func:`read_to_end`).
        The offset of a file is dropped only once the file is gone. A reader
        that found no offset for a file that still exists would import it
        again from its start.
        """
        finished = []
        for name in sizes:
            path = os.path.join(self.directory, name)
            if not writer_finished(path):
                continue
            try:
                # Read again: the listing is older than the transaction, and
                # the writer may have added lines before it closed the file.
                size = os.stat(path).st_size
            except FileNotFoundError:
                continue
            # False when this import stopped at its read limit; the rest comes next time.
            if read_to_end(path, imported[name], size, _READ_LIMIT):
                finished.append(name)

        # Checked now, inside the transaction, because the listing may be older than a file.
        for (name,) in conn.execute("SELECT file FROM spool_offsets").fetchall():
            if not os.path.exists(os.path.join(self.directory, name)):
                conn.execute("DELETE FROM spool_offsets WHERE file = ?", (name,))
                conn.execute("DELETE FROM spool_line_counts WHERE file = ?", (name,))
                imported.pop(name, None)
        return finished

    def count_waiting(self) -> int:
        """Return how many lines of the spool files are not imported yet.

        The lines of a file are its lines in total less the lines imported
        from it, which the import stores. This process remembers how far it
        counted each file, so a call reads only the bytes appended since the
        last call. Duplicates and unreadable lines count too, until an
        import drops them.

        Raises:
            BackendUnavailable: A spool file could not be read.
        """
        sizes = list_spool_files(self.directory)
        with self._counted_lock:
            for name in set(self._counted) - set(sizes):
                del self._counted[name]
        if not sizes:
            return 0
        with self._db.connection() as conn:
            offsets = dict(conn.execute("SELECT file, offset FROM spool_offsets").fetchall())
            imported_lines = dict(conn.execute("SELECT file, lines FROM spool_line_counts").fetchall())

        waiting = 0
        for name, size in sizes.items():
            offset = offsets.get(name, 0)
            if size <= offset:
                continue
            try:
                if offset == 0 or name in imported_lines:
                    # An import after the listing can make this negative.
                    waiting += max(0, self._count_lines(name, size) - imported_lines.get(name, 0))
                else:
                    waiting += count_newlines(os.path.join(self.directory, name), offset, size)
            except FileNotFoundError:
                continue
            except OSError as error:
                raise BackendUnavailable(f"cannot read spool file {name}: {error}") from error
        return waiting

    def _count_lines(self, name: str, size: int) -> int:
        """Return the number of whole lines in the first ``size`` bytes of a spool file, reading only what was not counted yet."""
        with self._counted_lock:
            counted_to, lines = self._counted.get(name, (0, 0))
            if size > counted_to:
                lines += count_newlines(os.path.join(self.directory, name), counted_to, size)
                self._counted[name] = (size, lines)
                return lines
        if size == counted_to:
            return lines
        # Counted further by a call with a newer listing; count this prefix alone.
        return count_newlines(os.path.join(self.directory, name), 0, size)


def _reset_lock(reference: "weakref.ref[SpoolImporter]") -> None:
    importer = reference()
    if importer is not None:
        importer._busy = threading.Lock()
