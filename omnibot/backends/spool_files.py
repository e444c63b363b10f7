"""Append-only spool files: one line per queued message, each file written by one thread at a time.

A spool file is ``<directory>/<pid>-<thread id>-<creation time>-<random>.spool``,
named after the process and thread that created it. Its writer keeps a
shared ``flock`` on it from before the file appears under that name until
the writer closes it or its process ends, so a reader can
tell a finished file (:func:`writer_finished`) from one still being
written. A writer never opens an existing spool file again: a finished
file only shrinks when it is deleted.

Each record is one line: the record's bytes, which must contain no newline,
then ``\\n``, written with one ``write()`` system call. When the call
writes less than the whole line (the disk is full, say), the writer cuts
the file back to its size before the call, closes it and raises. So a file
contains only whole lines, except at the end of a finished file whose
process died in the middle of a write or whose cut failed.
"""

import contextlib
import fcntl
import logging
import os
import threading
import time
import typing
import uuid
import weakref

from omnibot.errors import BackendUnavailable

logger = logging.getLogger(__name__)

SUFFIX = ".spool"

# Names in the spool directory that are not spool files yet: a writer
# creates its file under such a name, locks it, then renames it.
_TEMPORARY_PREFIX = ".new-"


class SpoolWriter:
    """Appends records to spool files, each file used by one thread at a time.

    The writer keeps a pool of open files per process. A put takes a file
    from the pool, or creates one when the pool is empty, appends its line
    and puts the file back. No lock is taken, and a
    process has about as many files as it has concurrent puts, whether its
    threads live long (gunicorn) or one per request (werkzeug). A file is
    closed, and a new one started later, when it reaches
    ``max_file_bytes`` or when a write to it failed. A process created by
    ``fork()`` starts with an empty pool.

    Args:
        directory: The spool directory, created when missing.
        max_file_bytes: Size at which a file is closed.
    """

    def __init__(self, directory: str, max_file_bytes: int = 8 * 1024 * 1024):
        self.directory = directory
        self.max_file_bytes = max_file_bytes
        # list.append and list.pop are atomic in CPython, so the pool needs no lock.
        self._pool: typing.List[_SpoolFile] = []
        self._pool_pid = os.getpid()
        os.makedirs(directory, exist_ok=True)

    def append(self, record: bytes) -> None:
        """Append ``record`` and a newline to a spool file.

        Raises:
            BackendUnavailable: The line could not be written whole. The
                file is then closed, so that it ends with the last whole line.
        """
        spool_file = self._take()
        try:
            spool_file.append(record + b"\n")
        except BackendUnavailable:
            spool_file.close()
            raise
        if spool_file.size >= self.max_file_bytes:
            spool_file.close()
        else:
            self._pool.append(spool_file)

    def close(self) -> None:
        """Close the files in the pool of this process; a file that a thread is writing now goes back to the pool."""
        while True:
            try:
                spool_file = self._pool.pop()
            except IndexError:
                return
            if spool_file.pid == os.getpid():
                spool_file.close()

    def _take(self) -> "_SpoolFile":
        if self._pool_pid != os.getpid():
            # The parent's files belong to the parent, so drop them, which closes only the child's descriptors.
            self._pool = []
            self._pool_pid = os.getpid()
        try:
            return self._pool.pop()
        except IndexError:
            return _SpoolFile.create(self.directory)


class _SpoolFile:
    """One open spool file: its descriptor, which keeps the shared flock, and its size."""

    def __init__(self, path: str, fd: int):
        self.path = path
        self.fd = fd
        self.pid = os.getpid()
        self.size = 0
        # Closes the descriptor, and so releases the lock, when the object is dropped.
        self._finalizer = weakref.finalize(self, os.close, fd)

    @classmethod
    def create(cls, directory: str) -> "_SpoolFile":
        # The creation time makes the files of one process sort roughly in the order they were started.
        name = f"{os.getpid()}-{threading.get_ident()}-{time.time_ns():016x}-{uuid.uuid4().hex[:8]}{SUFFIX}"
        temporary = os.path.join(directory, _TEMPORARY_PREFIX + name)
        path = os.path.join(directory, name)
        try:
            fd = os.open(temporary, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        except OSError as error:
            raise BackendUnavailable(f"cannot create a spool file in {directory}: {error}") from error
        try:
            # Locked before it is visible under its final name, so that no
            # reader ever takes the new, empty file for a finished one.
            fcntl.flock(fd, fcntl.LOCK_SH)
            os.rename(temporary, path)
        except OSError as error:
            os.close(fd)
            remove_spool_file(temporary)
            raise BackendUnavailable(f"cannot create spool file {path}: {error}") from error
        return cls(path, fd)

    def append(self, line: bytes) -> None:
        try:
            written = os.write(self.fd, line)
        except OSError as error:
            self._cut_back()
            raise BackendUnavailable(f"cannot write spool file {self.path}: {error}") from error
        if written != len(line):
            self._cut_back()
            raise BackendUnavailable(f"wrote {written} of {len(line)} bytes to spool file {self.path}; is the disk full?")
        self.size += written

    def _cut_back(self) -> None:
        """Remove a partly written line, so that the file ends with a whole line.

        When that fails too, the part stays at the end of the file, which
        the caller closes, and the importer skips it as the torn end of a
        finished file.
        """
        try:
            os.ftruncate(self.fd, self.size)
        except OSError as error:
            logger.error("cannot remove a partly written line from spool file %s: %s", self.path, error)

    def close(self) -> None:
        self._finalizer()


def remove_spool_file(path: str) -> bool:
    """Delete a spool file, and return False when the deletion failed and the file stays.

    A file that is gone already counts as deleted. A failure is logged, not raised.
    """
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
    except OSError as error:
        logger.warning("cannot delete spool file %s: %s", path, error)
        return False
    return True


def list_spool_files(directory: str) -> typing.Dict[str, int]:
    """Return ``{file name: size in bytes}`` of the spool files in ``directory``; empty when it does not exist."""
    sizes = {}
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return sizes
    for entry in entries:
        if not entry.name.endswith(SUFFIX) or entry.name.startswith(_TEMPORARY_PREFIX):
            continue
        try:
            sizes[entry.name] = entry.stat().st_size
        except FileNotFoundError:
            # Deleted by another reader since the listing.
            continue
    return sizes


def read_lines(path: str, start: int, limit: int) -> typing.Tuple[typing.List[bytes], int]:
    """Read the whole lines of ``path`` from byte ``start``, up to about ``limit`` bytes.

    Returns:
        The lines without their newlines, and the offset just after the
        last one (``start`` when there is no whole line yet). A longer
        first line is read whole.
    """
    with open(path, "rb") as spool_file:
        return read_lines_of(spool_file, start, limit)


def read_lines_of(spool_file: typing.BinaryIO, start: int, limit: int) -> typing.Tuple[typing.List[bytes], int]:
    """Read the whole lines of an open spool file as :func:`read_lines` does."""
    spool_file.seek(start)
    data = spool_file.read(limit)
    end = data.rfind(b"\n")
    while end < 0:
        more = spool_file.read(limit)
        if not more:
            return [], start
        data += more
        end = data.rfind(b"\n")
    return data[:end].split(b"\n"), start + end + 1


@contextlib.contextmanager
def open_to_forward(path: str, wait: float) -> typing.Iterator[typing.Optional[typing.BinaryIO]]:
    """Open a spool file for reading and hold a shared ``flock`` on it until the block ends.

    The lock keeps :func:`exclusive_unless_busy` from deleting the file while
    the caller forwards lines it read. Yields None when the file is deleted,
    or when another process kept it locked with :func:`exclusive_unless_busy`
    for ``wait`` seconds, because that process is about to delete it.
    """
    try:
        spool_file = open(path, "rb")
    except FileNotFoundError:
        yield None
        return
    with spool_file:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(spool_file.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    yield None
                    return
                time.sleep(0.001)
        # A file that another process deleted under its exclusive lock after
        # this open has no name left, and its lines are forwarded already.
        yield spool_file if os.fstat(spool_file.fileno()).st_nlink > 0 else None


@contextlib.contextmanager
def exclusive_unless_busy(path: str) -> typing.Iterator[typing.Optional[int]]:
    """Hold an exclusive ``flock`` on a spool file until the block ends, without waiting for it.

    Yields the file's size, or None when a writer or a process that
    forwards the file (:func:`open_to_forward`) holds a lock on it, or when
    it is deleted. The caller may delete the file inside the block.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        yield None
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield None
            return
        status = os.fstat(fd)
        yield status.st_size if status.st_nlink > 0 else None
    finally:
        os.close(fd)


def read_to_end(path: str, offset: int, size: int, limit: int) -> bool:
    """Return True when no whole line of the finished spool file ``path`` follows byte ``offset``.

    A file whose writer died in the middle of a line ends with part of a
    line. That put never returned, so the web process did not acknowledge
    the request and Slack sends it again: the part is skipped with a
    warning. ``size`` is the file's size read after its writer finished,
    and ``limit`` bounds the bytes read to look for a whole line.
    """
    if offset >= size:
        return True
    try:
        lines, _ = read_lines(path, offset, limit)
    except FileNotFoundError:
        return False
    if lines:
        return False
    logger.warning(
        "skipped %d bytes at the end of spool file %s: its writer stopped in the middle of a line",
        size - offset,
        os.path.basename(path),
    )
    return True


def count_newlines(path: str, start: int, end: typing.Optional[int] = None) -> int:
    """Count the newline bytes of ``path`` from byte ``start`` up to byte ``end`` (the end of the file when None)."""
    count = 0
    chunk_size = 1024 * 1024
    with open(path, "rb") as spool_file:
        spool_file.seek(start)
        remaining = None if end is None else end - start
        while remaining is None or remaining > 0:
            chunk = spool_file.read(chunk_size if remaining is None else min(chunk_size, remaining))
            if not chunk:
                break
            count += chunk.count(b"\n")
            if remaining is not None:
                remaining -= len(chunk)
    return count


def remove_abandoned_temporaries(directory: str, older_than: float) -> None:
    """Delete files that a writer created but never renamed, that no process keeps open, and that are older than ``older_than`` seconds.

    A writer appends only after the rename, so such a file contains no line
    that was acknowledged.
    """
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return
    now = time.time()
    for entry in entries:
        if not entry.name.startswith(_TEMPORARY_PREFIX):
            continue
        try:
            abandoned = now - entry.stat().st_mtime > older_than and writer_finished(entry.path)
        except FileNotFoundError:
            continue
        if abandoned:
            remove_spool_file(entry.path)
            logger.info("deleted %s, a spool file that its writer never finished creating", entry.name)


def writer_finished(path: str) -> bool:
    """Return True when no process keeps the spool file open for writing (its writer closed it or died)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True
