"""Append-only spool files: each thread that queues messages appends one line per message to a file of its own.

A spool file is ``<directory>/<pid>-<thread id>-<creation time>-<random>.spool``. Its
writer holds a shared ``flock`` on it from before the file appears under
that name until the writer closes it or its process ends, so a reader can
tell a finished file (:func:`writer_finished`) from one still being
written. A writer never opens an existing spool file again: a finished
file only shrinks when it is deleted.

Each record is one line: the record's bytes, which must contain no newline,
then ``\\n``, written with one ``write()`` system call. When the call
writes less than the whole line (the disk is full, say), the writer cuts
the file back to its size before the call and raises, so a file holds only
whole lines, except after its process died in the middle of a write.
"""

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
    """Appends records to the spool files of the calling thread.

    Safe for any number of threads, which never wait for each other: each
    writes its own file. A thread starts a new file when its file reaches
    ``max_file_bytes``, and in a process created by ``fork()``.

    Args:
        directory: The spool directory, created when missing.
        max_file_bytes: Size at which a thread closes its file and starts another.
    """

    def __init__(self, directory: str, max_file_bytes: int = 8 * 1024 * 1024):
        self.directory = directory
        self.max_file_bytes = max_file_bytes
        self._local = threading.local()
        os.makedirs(directory, exist_ok=True)

    def append(self, record: bytes) -> None:
        """Append ``record`` and a newline to this thread's spool file.

        Raises:
            BackendUnavailable: The line could not be written whole.
        """
        spool_file = getattr(self._local, "file", None)
        if spool_file is None or spool_file.pid != os.getpid() or spool_file.size >= self.max_file_bytes:
            if spool_file is not None and spool_file.pid == os.getpid():
                spool_file.close()
            spool_file = _SpoolFile.create(self.directory)
            self._local.file = spool_file
        spool_file.append(record + b"\n")

    def close(self) -> None:
        """Close the calling thread's spool file; another thread's file closes when its thread ends."""
        spool_file = getattr(self._local, "file", None)
        self._local.file = None
        if spool_file is not None and spool_file.pid == os.getpid():
            spool_file.close()


class _SpoolFile:
    """One open spool file: its descriptor, which keeps the shared flock, and its size."""

    def __init__(self, path: str, fd: int):
        self.path = path
        self.fd = fd
        self.pid = os.getpid()
        self.size = 0
        # Closes the descriptor, and so releases the lock, when the thread that owns it ends.
        self._finalizer = weakref.finalize(self, os.close, fd)

    @classmethod
    def create(cls, directory: str) -> "_SpoolFile":
        # The creation time makes the files of one thread sort in the order they were written.
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
        """Remove a partly written line, so that the file ends with a whole line."""
        try:
            os.ftruncate(self.fd, self.size)
        except OSError as error:
            logger.error("cannot remove a partly written line from spool file %s: %s", self.path, error)

    def close(self) -> None:
        self._finalizer()


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


def writer_finished(path: str) -> bool:
    """Return True when no process holds the spool file open for writing (its writer closed it or died)."""
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
