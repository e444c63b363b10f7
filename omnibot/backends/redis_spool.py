"""The spool in front of the Redis queue: web threads append lines, one thread per process forwards them to Redis.

With ``QUEUE_SPOOL=1`` on Redis, a put appends the message as one line to a
spool file in ``<data dir>/queue-spool`` (:mod:`omnibot.backends.spool_files`)
and returns its id without a round trip to Redis. A
:class:`SpoolForwarder` thread in each process that opened the queue wakes
when a put appends, waits :data:`_BATCH_DELAY` for more lines, and moves
the new lines into the stream, up to :data:`_MAX_BATCH_LINES` lines or
:data:`_MAX_BATCH_BYTES` per script call. Once a second it also forwards
the files of other processes of the host (a web process that stopped or
died leaves lines) and deletes the files that are forwarded to their end
and that no writer keeps open.

Exactly once: Redis stores how far each file was forwarded, under
``<prefix>:{NAME}:spool_offset:<file name>``. One Lua script per batch
checks that the stored offset is the one the batch was read from, adds the
batch and stores the new offset. A forwarder that finds another offset lost
a race with another process: it continues from the stored offset. A script
that fails adds nothing, unless Redis fails in the middle of it (see the
NOTE at :data:`_FORWARD_SCRIPT`).

De-duplication happens at forward time, as the SQLite spool does it at
import: a line whose claim key is claimed already, by Redis or by an
earlier line of the batch, is dropped and logged. Its claims expire ``ttl``
seconds after the forward.

A host can run one ``omnibot spool-forwarder`` process instead
(:meth:`SpoolForwarder.run_for_host`), which config/gunicorn.conf.py starts
beside the web workers at a lower CPU priority, so that under a burst the
web workers acknowledge first and the lines wait on disk. While it has
the host's lock (:mod:`omnibot.backends.spool_host_lock`) and works, the
threads of the other processes are paused. They forward again within a
second of its exit, or once it has not forwarded for
:data:`_STALE_FORWARDER_AFTER` seconds.

While Redis is unreachable, puts keep succeeding and the lines wait on the
web host's disk. The forwarder retries with a backoff of up to 1 s and
forwards the backlog once Redis is reachable again. A host that never comes back
loses the lines that it had not forwarded.
"""

import atexit
import logging
import os
import threading
import time
import typing
import weakref

from omnibot.backend_outage import OutageLog
from omnibot.backends.redis_connection import RedisClient, translate_errors
from omnibot.backends.redis_records import encode_dead_letter, encode_spooled_message
from omnibot.backends.spool_host_lock import HostForwarderLock, held_by_another, seconds_since_beat
from omnibot.backends.spool_files import (
    count_newlines,
    exclusive_unless_busy,
    list_spool_files,
    open_to_forward,
    read_lines_of,
    read_to_end,
    remove_abandoned_temporaries,
    remove_spool_file,
)
from omnibot.backends.spool_records import UNREADABLE_LINE_KEY, PendingPut, log_duplicate
from omnibot.errors import BackendUnavailable

logger = logging.getLogger(__name__)

# Seconds the thread waits after a put woke it, so that one script call carries the puts of that moment.
_BATCH_DELAY = 0.002

# Seconds between two forwards of every file of the directory when no put of this process wakes the thread.
_POLL_INTERVAL = 1.0

# Seconds the host's forwarder process waits between two passes over the
# directory: the shortest while lines arrive, doubling up to the longest
# while none do. It has no wake-up from the web processes' puts.
_HOST_BUSY_POLL = 0.002
_HOST_IDLE_POLL = 0.02

# Seconds after which the threads take over from a forwarder process that
# has the lock but has not finished a batch or a pass: it is stopped, hung
# or gets no CPU time. Forwarding twice at once is safe, only slower.
# NOTE: a forwarder that is only slow keeps its lock, so on a host that
# stays overloaded the backlog on disk grows as long as the overload lasts.
_STALE_FORWARDER_AFTER = 30.0

# Seconds between two checks for finished files, which cost a few system calls per file.
_CLEANUP_INTERVAL = 1.0

# Bounds of one script call. Redis runs no other command while a script runs, so a batch must stay short.
_MAX_BATCH_LINES = 500
_MAX_BATCH_BYTES = 1024 * 1024

# Lifetime of an offset key, renewed by each forward of its file and every
# _OFFSET_REFRESH_INTERVAL while the file exists, so that the keys of a
# host that is gone for good vanish.
_OFFSET_TTL = 3 * 24 * 3600.0
_OFFSET_REFRESH_INTERVAL = 3600.0

# Upper bound in seconds of the wait between two forwards that failed.
_MAX_BACKOFF = 1.0
_MIN_BACKOFF = 0.05

# Seconds a forward waits for the exclusive lock that another process takes
# to check a file before it deletes it. The check takes milliseconds.
_LOCK_WAIT = 1.0

# Seconds that close() and process exit spend on forwarding what is left.
_STOP_TIMEOUT = 5.0

# Seconds an exact put (a Slack retry) spends forwarding the backlog in the
# request thread before it gives up and spools the retry like any put, so
# that the response goes out well within Slack's 3 seconds.
EXACT_FORWARD_BUDGET = 1.0

# Seconds after which a spool file that its writer never renamed, and that
# no process keeps open, is deleted. It contains no acknowledged line.
_ABANDONED_AFTER = 60.0

# Adds one batch of lines of one file to the queue, unless another forwarder
# moved the file's offset since it was read. A line whose claim key exists
# (set by an earlier put, or by an earlier line of this batch) is dropped.
# KEYS: stream, offset key, dead_letters, dead_letters_by_time, then the
#       claim keys of each line in line order
# ARGV: expected offset, new offset, offset ttl in ms, line count, then two
#       values per line: a header, and the record to store. The header of a
#       put is "<claim count>:<claim ttl in ms>", that of an unreadable line
#       "dead:<dead letter id>". Two values and not five, because packing the
#       arguments is a large part of the forwarder's CPU time in redis-py.
# Returns {0, stored offset} when the offset differs, else {1, stream
# length, {outcome of each line: 1 added, 0 duplicate, 2 dead letter}}.
# NOTE: Redis keeps the writes of a script that fails in the middle (out of
# memory, say). The offset is stored last, so such a failure can add lines
# that the retry adds again, but it never skips one.
_FORWARD_SCRIPT = """
local stored = redis.call('GET', KEYS[2]) or '0'
if stored ~= ARGV[1] then
    return {0, stored}
end
local clock = redis.call('TIME')
local now = string.format('%.6f', tonumber(clock[1]) + tonumber(clock[2]) / 1000000)
local outcomes = {}
local key = 5
local arg = 5
for i = 1, tonumber(ARGV[4]) do
    local header, record = ARGV[arg], ARGV[arg + 1]
    arg = arg + 2
    local separator = string.find(header, ':', 1, true)
    local kind = string.sub(header, 1, separator - 1)
    local claims = 0
    if kind == 'dead' then
        local id = string.sub(header, separator + 1)
        redis.call('HSET', KEYS[3], id, record)
        redis.call('ZADD', KEYS[4], now, id)
        outcomes[i] = 2
    else
        claims = tonumber(kind)
        local ttl = string.sub(header, separator + 1)
        local duplicate = claims > 0 and redis.call('EXISTS', unpack(KEYS, key, key + claims - 1)) > 0
        if duplicate then
            outcomes[i] = 0
        else
            redis.call('XADD', KEYS[1], '*', 'message', record)
            for j = key, key + claims - 1 do
                redis.call('SET', KEYS[j], '1', 'PX', ttl)
            end
            outcomes[i] = 1
        end
    end
    key = key + claims
end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
return {1, redis.call('XLEN', KEYS[1]), outcomes}
"""

# Reads the stream length and the offsets of spool files at one instant, so
# that a line counts once, in the stream or in its file. A script and not a
# MULTI transaction, because redis-py's cluster pipeline rejects MGET.
# KEYS: stream, offset keys. Returns {stream length, offset or nil...}.
_SNAPSHOT_SCRIPT = """
local result = {redis.call('XLEN', KEYS[1])}
for i = 2, #KEYS do
    result[i] = redis.call('GET', KEYS[i])
end
return result
"""

# Renews the lifetime of the offset keys that exist. KEYS: offset keys; ARGV: ttl in ms.
# Raises a file's offset back to one that Redis held before, unless it is
# higher already. KEYS: offset key; ARGV: offset, ttl in ms. Returns the offset.
_RESTORE_OFFSET_SCRIPT = """
local stored = tonumber(redis.call('GET', KEYS[1]) or '0')
if stored < tonumber(ARGV[1]) then
    redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
    return ARGV[1]
end
return tostring(stored)
"""

_REFRESH_OFFSETS_SCRIPT = """
for i = 1, #KEYS do
    redis.call('PEXPIRE', KEYS[i], ARGV[1])
end
return #KEYS
"""


class SpoolKeys(typing.NamedTuple):
    """The Redis keys of one queue that a forward writes; all share the queue's hash tag."""

    stream: str
    dead_letters: str
    dead_letters_by_time: str
    claim_prefix: str
    offset_prefix: str


class _Line(typing.NamedTuple):
    """One parsed line of a batch: a put, or the text of an unreadable line."""

    start: int
    put: typing.Optional[PendingPut]
    text: str
    error: str


class _ProcessState:
    """The forwarder's state in one process; a child of fork() starts with a new one and no thread."""

    def __init__(self, outage: OutageLog) -> None:
        self.pid = os.getpid()
        self.file_prefix = f"{self.pid}-"
        # Held while a forward runs, so that a put with exact=True waits for the thread's forward.
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.thread: typing.Optional[threading.Thread] = None
        # Per process, because a lock that a parent thread held at fork() would stay held in the child.
        self.outage = outage
        # The error of the thread's last forward when it failed, None after a forward that succeeded.
        self.last_error: typing.Optional[BackendUnavailable] = None
        # The offset up to which each file was forwarded, as this process last saw it.
        self.forwarded: typing.Dict[str, int] = {}
        # Offset keys of deleted files whose deletion from Redis failed.
        self.stale_offset_keys: typing.Set[str] = set()
        self.next_cleanup = 0.0
        self.next_offset_refresh = 0.0
        # What the last test of the host's forwarder lock found: "none",
        # "working", "stale" or "unreadable" (the lock file could not be read).
        self.host_forwarder = "none"

    @property
    def delegated(self) -> bool:
        """True while a working forwarder process of the host has its lock and forwards for this process."""
        return self.host_forwarder == "working"


class SpoolForwarder:
    """Forwards the lines of the spool files of one directory into a Redis queue.

    Every process that uses it runs one daemon thread, started by
    :meth:`notify` or :meth:`start`, and again in a child after fork().
    The thread stops, after forwarding what is left, at :meth:`stop` or at
    process exit.

    Args:
        directory: The spool directory.
        client: The queue's Redis client.
        keys: The queue's keys.
        location: Where Redis is, without a password, for error messages.
        on_length: Called with the stream length after each batch.
    """

    def __init__(
        self,
        directory: str,
        client: RedisClient,
        keys: SpoolKeys,
        location: str,
        on_length: typing.Callable[[int], None],
    ):
        self.directory = directory
        self._client = client
        self._keys = keys
        self._location = location
        self._on_length = on_length
        self._forward_script = client.register_script(_FORWARD_SCRIPT)
        self._refresh_script = client.register_script(_REFRESH_OFFSETS_SCRIPT)
        self._restore_script = client.register_script(_RESTORE_OFFSET_SCRIPT)
        self._snapshot_script = client.register_script(_SNAPSHOT_SCRIPT)
        self._outage_name = f"Redis queue at {location}, spool forwarder"
        self._state: typing.Optional[_ProcessState] = None
        self._closed = False
        # The host's forwarder lock, while run_for_host() has it.
        self._host_lock: typing.Optional[HostForwarderLock] = None

        # A lock held by a parent thread at fork() would stay held in the child.
        self._start_lock = threading.Lock()
        reference = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _reset_start_lock(reference))
        # Inherited by children of fork(), where stop() acts on the child's own thread.
        atexit.register(_stop_at_exit, reference)

    def notify(self) -> None:
        """Wake this process's thread, starting it when needed, because a put appended a line."""
        state = self.start()
        if not state.delegated and not state.wake.is_set():
            state.wake.set()

    def start(self) -> _ProcessState:
        """Start this process's thread unless it runs or the forwarder is stopped; return the process's state."""
        state = self._current()
        if state.thread is not None or self._closed:
            return state
        with self._start_lock:
            if state.thread is None and not self._closed:
                state.thread = threading.Thread(
                    target=self._run, args=(state,), name="omnibot-spool-forwarder", daemon=True
                )
                state.thread.start()
        return state

    def forward_waiting(self, budget: typing.Optional[float] = None) -> typing.Optional[int]:
        """Forward the new lines of every spool file now, in the calling thread; return how many lines were sent.

        Returns None instead when ``budget`` ran out, and lines may be left.

        Args:
            budget: Seconds after which no further batch starts; None forwards everything.

        Raises:
            BackendUnavailable: Redis could not be reached, or the last
                forward of this process's thread failed and the thread has
                not reached Redis since. The lines stay in the files.
        """
        state = self._current()
        deadline = None if budget is None else time.monotonic() + budget
        # The thread or another request may be forwarding a large batch; that wait counts against the budget.
        if not state.lock.acquire(timeout=-1 if budget is None else budget):
            return None
        try:
            if state.last_error is not None and not state.delegated:
                # Trying again here would add the client's timeouts to the
                # wait for the thread's own failed attempt, and a web request
                # would pass Slack's 3-second limit instead of getting a 503.
                raise BackendUnavailable(
                    f"{state.last_error} (the spool forwarder's last attempt failed, and it tries again within {_MAX_BACKOFF:g} s)"
                ) from state.last_error
            sent = self._forward(state, own_only=False, deadline=deadline)
            if deadline is not None and time.monotonic() >= deadline:
                return None
            return sent
        finally:
            state.lock.release()

    def stream_length_and_waiting(self) -> typing.Optional[typing.Tuple[int, int]]:
        """Return the stream length and how many lines of the spool files are not forwarded yet, at one instant.

        Duplicates and unreadable lines count too, until a forward drops
        them. It reads every byte not forwarded yet, so it costs as much as
        the backlog is large. Returns None when there are no spool files.

        Raises:
            BackendUnavailable: Redis could not be reached, or a spool file could not be read.
        """
        names = sorted(list_spool_files(self.directory))
        if not names:
            return None
        with translate_errors(self._location):
            length, *offsets = self._snapshot_script(keys=[self._keys.stream, *map(self._offset_key, names)])
        waiting = sum(self._count_lines(name, int(offset or 0)) for name, offset in zip(names, offsets))
        return int(length), waiting

    def stop(self, timeout: typing.Optional[float] = None) -> None:
        """Stop this process's thread and forward what is left, for at most about ``timeout`` seconds (default 5).

        When Redis stays unreachable, the lines stay in the files and are
        logged; any process that opens the queue with the spool forwards
        them later.

        NOTE: the bound is checked between attempts. One attempt can last
        the client's socket timeout times its tries: under 2 s with the web
        tier's fail-fast client, but up to about 20 s with the default client.
        """
        self._closed = True
        state = self._state
        if state is None or state.pid != os.getpid():
            return
        timeout = _STOP_TIMEOUT if timeout is None else timeout
        deadline = time.monotonic() + timeout
        state.stopping.set()
        thread = state.thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

        backoff = _MIN_BACKOFF
        while True:
            try:
                # The files that the queue closed before are finished now.
                self._forward_and_clean_up(state, own_only=True)
                state.last_error = None
                return
            except BackendUnavailable as error:
                if time.monotonic() + backoff >= deadline:
                    waiting = self._count_lines_locally(state)
                    if waiting == "0":
                        # Only the cleanup failed; no line waits.
                        return
                    logger.error(
                        "stopped forwarding with %s lines of this process still in spool files in %s (%s); "
                        "a process that opens the queue with QUEUE_SPOOL=1 forwards them once Redis is reachable",
                        waiting,
                        self.directory,
                        error,
                    )
                    return
                time.sleep(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF)

    # -- the thread -----------------------------------------------------------

    def _current(self) -> _ProcessState:
        state = self._state
        if state is not None and state.pid == os.getpid():
            return state
        with self._start_lock:
            if self._state is None or self._state.pid != os.getpid():
                self._state = _ProcessState(OutageLog(logger, self._outage_name))
            return self._state

    def _run(self, state: _ProcessState) -> None:
        """Forward on each wake-up and every second until stopped; retry with a backoff while Redis is unreachable."""
        backoff = 0.0
        next_full_pass = 0.0
        while not state.stopping.is_set():
            if backoff:
                state.stopping.wait(backoff)
            elif state.wake.wait(max(0.0, next_full_pass - time.monotonic())):
                time.sleep(_BATCH_DELAY)
            if state.stopping.is_set():
                return
            state.wake.clear()

            full_pass = time.monotonic() >= next_full_pass or backoff > 0
            if full_pass and self._check_delegation(state):
                next_full_pass = time.monotonic() + _POLL_INTERVAL
                continue
            try:
                with state.lock:
                    self._forward(state, own_only=not full_pass)
                    if full_pass:
                        self._clean_up_due(state)
            except BackendUnavailable as error:
                backoff = min(max(backoff * 2, _MIN_BACKOFF), _MAX_BACKOFF)
                state.last_error = error
                state.outage.failed(error, backoff)
                continue
            except Exception:
                # The thread must outlive any error: the lines stay in the
                # files, and a thread that died would never forward them.
                backoff = _MAX_BACKOFF
                logger.exception("forwarding spool files in %s failed; retrying in %.1f s", self.directory, backoff)
                continue

            state.last_error = None
            if backoff:
                state.outage.reached()
            backoff = 0.0
            if full_pass:
                next_full_pass = time.monotonic() + _POLL_INTERVAL

    def _check_delegation(self, state: _ProcessState) -> bool:
        """Return True while a working forwarder process of the host has its lock, and log each change."""
        idle = 0.0
        try:
            locked = held_by_another(self.directory)
            if locked:
                idle = seconds_since_beat(self.directory)
        except OSError as error:
            if state.host_forwarder != "unreadable":
                logger.warning(
                    "cannot test the spool forwarder lock in %s (%s); the forwarder thread of process %d forwards its lines",
                    self.directory, error, state.pid,
                )
            state.host_forwarder = "unreadable"
            return False
        if not locked:
            found = "none"
        elif idle > _STALE_FORWARDER_AFTER:
            found = "stale"
        else:
            found = "working"

        if found != state.host_forwarder:
            state.host_forwarder = found
            if found == "working":
                # The forwarder process reaches Redis now; a failure of this
                # thread from before would make exact puts fail at once.
                state.last_error = None
                logger.info(
                    "an omnibot spool-forwarder process is forwarding the spool files in %s; the forwarder thread of process %d is paused",
                    self.directory, state.pid,
                )
            elif found == "stale":
                logger.warning(
                    "the omnibot spool-forwarder process has the lock in %s but has not forwarded for %.0f s (stopped, hung or without CPU time); "
                    "the forwarder thread of process %d is forwarding",
                    self.directory, idle, state.pid,
                )
            else:
                logger.warning(
                    "no omnibot spool-forwarder process has the lock in %s (it stopped or died); the forwarder thread of process %d is forwarding again",
                    self.directory, state.pid,
                )
        return state.delegated

    def run_for_host(self, stopping: threading.Event) -> bool:
        """Forward every spool file of the directory until ``stopping`` is set, as the host's only forwarder.

        Takes the host's forwarder lock first, waiting while another process
        has it, so that the web processes' threads pause. Passes over
        the directory every :data:`_HOST_BUSY_POLL` to :data:`_HOST_IDLE_POLL`
        seconds, and deletes finished files once a second. When stopping, it
        forwards once more and releases the lock; what it could not forward,
        the web processes forward.

        Returns:
            False when ``stopping`` was set before the lock was free, else True.
        """
        lock = HostForwarderLock(self.directory)
        if not lock.acquire(stopping):
            return False
        self._host_lock = lock
        state = self._current()
        logger.info("forwarding the spool files in %s to the Redis queue at %s", self.directory, self._location)
        try:
            self._forward_until(state, stopping, lock)
            try:
                self._forward_and_clean_up(state, own_only=False)
            except BackendUnavailable as error:
                logger.error(
                    "stopped forwarding with %s lines still in spool files in %s (%s); the web processes forward them once Redis is reachable",
                    self._count_lines_locally(state, own_only=False),
                    self.directory,
                    error,
                )
        finally:
            self._host_lock = None
            lock.release()
        return True

    def _forward_until(self, state: _ProcessState, stopping: threading.Event, lock: HostForwarderLock) -> None:
        """Forward, clean up and wait until ``stopping`` is set, backing off while Redis is unreachable."""
        delay = _HOST_IDLE_POLL
        backoff = 0.0
        while not stopping.is_set():
            try:
                with state.lock:
                    sent = self._forward(state, own_only=False)
                    self._clean_up_due(state)
            except BackendUnavailable as error:
                backoff = min(max(backoff * 2, _MIN_BACKOFF), _MAX_BACKOFF)
                state.outage.failed(error, backoff)
                # Alive, only Redis is not: the threads that would take over could not reach it either.
                lock.beat()
                stopping.wait(backoff)
                continue
            except Exception:
                backoff = _MAX_BACKOFF
                logger.exception("forwarding spool files in %s failed; retrying in %.1f s", self.directory, backoff)
                stopping.wait(backoff)
                continue

            if backoff:
                state.outage.reached()
            backoff = 0.0
            lock.beat()
            delay = _HOST_BUSY_POLL if sent else min(delay * 2, _HOST_IDLE_POLL)
            stopping.wait(delay)

    # -- forwarding -----------------------------------------------------------

    def _forward_and_clean_up(self, state: _ProcessState, own_only: bool) -> None:
        """Forward once more and delete the finished files now, as at a stop, under ``state.lock``."""
        with state.lock:
            self._forward(state, own_only=own_only)
            state.next_cleanup = 0.0
            self._clean_up_due(state)

    def _forward(self, state: _ProcessState, own_only: bool, deadline: typing.Optional[float] = None) -> int:
        """Forward the new lines of this process's files, or of every file; the caller must have acquired ``state.lock``.

        No batch starts after ``deadline`` (a ``time.monotonic()`` value), if given.
        """
        sizes = list_spool_files(self.directory)
        if own_only:
            sizes = {name: size for name, size in sizes.items() if name.startswith(state.file_prefix)}
        # Sorted, so that the files of one process go roughly in the order they were started.
        changed = [name for name in sorted(sizes) if state.forwarded.get(name) != sizes[name]]
        if not changed:
            return 0

        sent = 0
        with translate_errors(self._location):
            # An offset this process stored or read is only a guess, because
            # another process may have moved it since, but the script checks
            # it. Reading only the unknown ones saves a round trip per forward.
            unknown = [name for name in changed if name not in state.forwarded]
            offsets = self._read_offsets(unknown) if unknown else {}
            offsets.update((name, state.forwarded[name]) for name in changed if name in state.forwarded)
            for name in changed:
                if deadline is not None and time.monotonic() >= deadline:
                    break
                count, offset = self._forward_file(name, offsets[name], sizes[name], deadline)
                state.forwarded[name] = offset
                sent += count
        return sent

    def _forward_file(self, name: str, offset: int, size: int, deadline: typing.Optional[float] = None) -> typing.Tuple[int, int]:
        """Forward the whole lines of one file from ``offset`` up to about ``size``; return the count and the new offset.

        The file stays open with a shared lock until its last batch ran.
        Without it, another process could delete the file and its offset key
        between the read and the script, and a script that expects offset 0
        would find no key and add the lines a second time.
        """
        sent = 0
        with open_to_forward(os.path.join(self.directory, name), _LOCK_WAIT) as spool_file:
            if spool_file is None:
                # Another process forwarded it to the end and deletes it, or has deleted it since the listing.
                return sent, offset
            while offset < size and (deadline is None or time.monotonic() < deadline):
                lines, end = read_lines_of(spool_file, offset, _MAX_BATCH_BYTES)
                if not lines:
                    break

                start = offset
                for batch_start in range(0, len(lines), _MAX_BATCH_LINES):
                    if deadline is not None and time.monotonic() >= deadline:
                        offset = start
                        break
                    batch = lines[batch_start:batch_start + _MAX_BATCH_LINES]
                    batch_end = start + sum(len(line) + 1 for line in batch)
                    stored = self._forward_batch(name, start, batch, batch_end)
                    if stored is not None and stored < start:
                        offset = self._restore_offset(name, start, stored)
                        break
                    if stored is not None:
                        # Another forwarder moved the offset: continue from there.
                        offset = stored
                        break
                    sent += len(batch)
                    start = batch_end
                else:
                    offset = end
        return sent, offset

    def _restore_offset(self, name: str, seen: int, stored: int) -> int:
        """Raise the offset of a file that went back in Redis to ``seen``, and return the offset to continue from.

        Every offset this process uses was read from Redis or stored by one
        of its scripts, and offsets only grow. While this process holds the
        file's lock no other process deletes the key, so a lower stored
        offset means Redis lost it: a restart without persistence, a
        failover to a replica that lagged, or the key expired. Continuing
        from the stored offset would add the lines before ``seen`` again.
        """
        logger.warning(
            "the offset of spool file %s in Redis went back from %d to %d (Redis lost data or the key expired); "
            "continuing from %d, so lines forwarded before are not added again",
            name,
            seen,
            stored,
            seen,
        )
        return int(self._restore_script(keys=[self._offset_key(name)], args=[seen, int(_OFFSET_TTL * 1000)]))

    def _forward_batch(self, name: str, start: int, lines: typing.List[bytes], end: int) -> typing.Optional[int]:
        """Run the script for one batch; return None when it was added, or the stored offset when another forwarder moved it."""
        parsed = _parse_lines(lines, start)
        keys = [self._keys.stream, self._offset_key(name), self._keys.dead_letters, self._keys.dead_letters_by_time]
        args: typing.List[typing.Union[str, int]] = [start, end, int(_OFFSET_TTL * 1000), len(parsed)]
        for line in parsed:
            if line.put is None:
                message_id = _dead_letter_id(name, line.start)
                record = encode_dead_letter(message_id, {UNREADABLE_LINE_KEY: line.text}, 0, f"unreadable spool line: {line.error}")
                args += [f"dead:{message_id}", record]
                continue
            claims = list(dict.fromkeys(line.put.claims))
            keys += [self._keys.claim_prefix + claim for claim in claims]
            record = encode_spooled_message(line.put.message_id, line.put.encoded)
            args += [f"{len(claims)}:{max(1, int(line.put.ttl * 1000))}", record]

        reply = self._forward_script(keys=keys, args=args)
        if int(reply[0]) == 0:
            return int(reply[1])

        for line, outcome in zip(parsed, reply[2]):
            if outcome == 0:
                log_duplicate(logger, line.put)
            elif outcome == 2:
                logger.error(
                    "moved an unreadable line of spool file %s at byte %d to the dead letters as %s: %s",
                    name, line.start, _dead_letter_id(name, line.start), line.error,
                )
        self._on_length(int(reply[1]))
        host_lock = self._host_lock
        if host_lock is not None:
            # A pass over a large backlog takes many batches, so each one shows that this process works.
            host_lock.beat()
        return None

    def _read_offsets(self, names: typing.Sequence[str]) -> typing.Dict[str, int]:
        values = self._client.mget([self._offset_key(name) for name in names])
        return {name: int(value) if value is not None else 0 for name, value in zip(names, values)}

    def _offset_key(self, name: str) -> str:
        return self._keys.offset_prefix + name

    # -- cleanup --------------------------------------------------------------

    def _clean_up_due(self, state: _ProcessState) -> None:
        """Once a second, delete finished files and their offset keys; once an hour, renew the offset keys."""
        now = time.monotonic()
        if now < state.next_cleanup:
            return
        state.next_cleanup = now + _CLEANUP_INTERVAL

        sizes = list_spool_files(self.directory)
        deleted = self._delete_finished_files(state, sizes)
        for name in deleted:
            state.forwarded.pop(name, None)
        # Deleted only once the file is gone: a forwarder that found no
        # offset for a file that still exists would forward it again from its start.
        state.stale_offset_keys.update(self._offset_key(name) for name in deleted)
        for name in list(state.forwarded):
            if name not in sizes:
                del state.forwarded[name]
        remove_abandoned_temporaries(self.directory, older_than=_ABANDONED_AFTER)

        with translate_errors(self._location):
            if state.stale_offset_keys:
                self._client.delete(*state.stale_offset_keys)
                state.stale_offset_keys.clear()
            if now >= state.next_offset_refresh and sizes:
                self._refresh_script(
                    keys=[self._offset_key(name) for name in sizes if name not in deleted],
                    args=[int(_OFFSET_TTL * 1000)],
                )
                state.next_offset_refresh = now + _OFFSET_REFRESH_INTERVAL

    def _delete_finished_files(self, state: _ProcessState, sizes: typing.Dict[str, int]) -> typing.List[str]:
        """Delete the files whose writers are gone and that are forwarded to their end; return their names.

        A file is checked and deleted while this process holds its exclusive
        lock, so no other process is forwarding lines that it read from the
        file, and a process that opens it afterwards finds it deleted.

        The torn end of a file whose writer died is skipped (:func:`read_to_end`).
        """
        deleted = []
        for name in sizes:
            offset = state.forwarded.get(name)
            if offset is None:
                continue
            path = os.path.join(self.directory, name)
            with exclusive_unless_busy(path) as size:
                # The size is read under the lock, because the listing is older
                # and the writer may have added lines before it closed the file.
                # read_to_end() is False while lines that this process has not seen forwarded remain; the next pass takes them.
                if size is None or not read_to_end(path, offset, size, _MAX_BATCH_BYTES):
                    continue
                # A file that stays keeps its offset key, or the next forward would add its lines again.
                if not remove_spool_file(path):
                    continue
            deleted.append(name)
        return deleted

    # -- counting -------------------------------------------------------------

    def _count_lines(self, name: str, offset: int) -> int:
        try:
            return count_newlines(os.path.join(self.directory, name), offset)
        except FileNotFoundError:
            return 0
        except OSError as error:
            raise BackendUnavailable(f"cannot read spool file {name}: {error}") from error

    def _count_lines_locally(self, state: _ProcessState, own_only: bool = True) -> str:
        """Return the count of lines of this process's files, or of every file, past the offsets it last saw, read without Redis.

        Returns "an unknown number of" when a file cannot be read, because the result goes into a log line.
        """
        sizes = list_spool_files(self.directory)
        try:
            return str(sum(
                self._count_lines(name, state.forwarded.get(name, 0))
                for name in sizes
                if not own_only or name.startswith(state.file_prefix)
            ))
        except BackendUnavailable:
            return "an unknown number of"


def _parse_lines(lines: typing.List[bytes], start: int) -> typing.List[_Line]:
    parsed = []
    for line in lines:
        try:
            parsed.append(_Line(start, PendingPut.from_line(line), "", ""))
        except ValueError as error:
            parsed.append(_Line(start, None, line.decode("utf-8", "replace"), str(error)))
        start += len(line) + 1
    return parsed


def _dead_letter_id(name: str, start: int) -> str:
    """Return the dead-letter id of the unreadable line at byte ``start`` of file ``name``, as the SQLite spool names it."""
    return f"spool-{name}-{start}"


def _reset_start_lock(reference: "weakref.ref[SpoolForwarder]") -> None:
    forwarder = reference()
    if forwarder is not None:
        forwarder._start_lock = threading.Lock()


def _stop_at_exit(reference: "weakref.ref[SpoolForwarder]") -> None:
    forwarder = reference()
    if forwarder is not None:
        forwarder.stop()
