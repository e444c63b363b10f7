"""A durable work queue on Redis Streams with one consumer group, shared by any number of hosts.

Keys of the queue ``NAME`` (every name carries the hash tag ``{NAME}``, so a
Redis Cluster keeps them in one slot and the Lua scripts below may use them together):

- ``omnibot:{NAME}:stream``: the stream of unprocessed messages, new or leased.
  Acked entries are deleted, so its length is the backlog and it is never trimmed.
- ``omnibot:{NAME}:delayed`` (sorted set, score = due time) and
  ``omnibot:{NAME}:delayed_messages`` (hash): failed messages waiting for their backoff.
- ``omnibot:{NAME}:dead_letters`` (hash) and ``omnibot:{NAME}:dead_letters_by_time``
  (sorted set, score = failure time): the dead letters.
- ``omnibot:{NAME}:claim:<key>``: the claims of :meth:`RedisQueue.put_unless_claimed`, which expire.
- ``omnibot:{NAME}:spool_offset:<file>``: how far a spool file was forwarded
  into the stream, when puts go through spool files (:mod:`omnibot.backends.redis_spool`).

A stream entry has one field, ``message``: the JSON object ``{"id", "body",
"prior_attempts"}``. The attempt count of a delivery is ``prior_attempts``
plus the entry's delivery count in the group's pending entries list (PEL).
Re-adding a message after a backoff creates a new entry, so ``prior_attempts``
carries the count over. Times in the sorted sets come from the Redis server's
clock, so workers with skewed clocks agree on when a retry is due.
"""

import dataclasses
import json
import logging
import os
import socket
import threading
import time
import typing

import redis

from omnibot.backends.base import DeadLetter, Delivery, Queue
from omnibot.backends.redis_connection import RedisClient, describe_client, socket_timeout_of, translate_errors
from omnibot.backends.redis_lease_renewal import RENEW_SCRIPT, renew_arguments
from omnibot.backends.redis_queue_schedule import MaintenanceSchedule
from omnibot.backends.redis_records import decode_dead_letter, encode_dead_letter, encode_message
from omnibot.backends.redis_spool import EXACT_FORWARD_BUDGET, SpoolForwarder, SpoolKeys
from omnibot.backends.spool_files import SpoolWriter
from omnibot.backends.spool_records import UNREADABLE_LINE_KEY, PendingPut
from omnibot.backends.retry_policy import RetryPolicy
from omnibot.backends.unique_ids import new_id
from omnibot.errors import BackendUnavailable
from omnibot.per_process import PerProcess

logger = logging.getLogger(__name__)

# Reads the Redis server clock as fractional seconds.
_LUA_NOW = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
"""

# Acks, retries or dead-letters one leased entry, but only while the lease is
# still the caller's. A lease is identified by consumer name and delivery
# count, because XACK alone would also ack an entry that another consumer
# re-claimed after the visibility timeout.
# KEYS: stream, delayed, delayed_messages, dead_letters, dead_letters_by_time
# ARGV: group, entry id, consumer, delivery count, outcome (ack|retry|dead),
#       message id, payload to store, backoff seconds
_SETTLE_SCRIPT = (
    """
local lease = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)[1]
if not lease or lease[2] ~= ARGV[3] or lease[4] ~= tonumber(ARGV[4]) then
    return 0
end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
if ARGV[5] == 'ack' then
    return 1
end
"""
    + _LUA_NOW
    + """
if ARGV[5] == 'retry' then
    redis.call('HSET', KEYS[3], ARGV[6], ARGV[7])
    redis.call('ZADD', KEYS[2], string.format('%.6f', now + tonumber(ARGV[8])), ARGV[6])
else
    redis.call('HSET', KEYS[4], ARGV[6], ARGV[7])
    redis.call('ZADD', KEYS[5], string.format('%.6f', now), ARGV[6])
end
return 1
"""
)

# Moves up to ARGV[1] due retries back to the stream. Running in one script
# makes the move atomic, so two workers never both re-add one message.
# Returns the seconds until the next retry is due as a string (Redis would
# truncate a Lua number to an integer), or -1 when no retry waits.
# KEYS: delayed, delayed_messages, stream
_PROMOTE_SCRIPT = (
    _LUA_NOW
    + """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', string.format('%.6f', now), 'LIMIT', 0, tonumber(ARGV[1]))
for _, id in ipairs(due) do
    local payload = redis.call('HGET', KEYS[2], id)
    if payload then
        redis.call('XADD', KEYS[3], '*', 'message', payload)
    end
    redis.call('HDEL', KEYS[2], id)
    redis.call('ZREM', KEYS[1], id)
end
local next_retry = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #next_retry == 0 then
    return '-1'
end
return string.format('%.6f', math.max(tonumber(next_retry[2]) - now, 0))
"""
)

# Moves dead letter ARGV[1] back to the stream as ARGV[2]; 0 when it is gone.
# KEYS: dead_letters, dead_letters_by_time, stream
_REPLAY_SCRIPT = """
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then
    return 0
end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('XADD', KEYS[3], '*', 'message', ARGV[2])
return 1
"""

# Deletes up to ARGV[2] dead letters that failed at least ARGV[1] seconds ago.
# KEYS: dead_letters, dead_letters_by_time
_PURGE_SCRIPT = (
    _LUA_NOW
    + """
local cutoff = string.format('%.6f', now - tonumber(ARGV[1]))
local ids = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', cutoff, 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(ids) do
    redis.call('HDEL', KEYS[1], id)
    redis.call('ZREM', KEYS[2], id)
end
return #ids
"""
)

# Deletes the group's consumers whose name starts with ARGV[2] and that hold
# no pending entries. Checking and deleting in one script ensures that no
# entry is read by a consumer between the check and the deletion, which would
# drop it from the PEL and lose it.
# KEYS: stream; ARGV: group, consumer name prefix
_FORGET_CONSUMERS_SCRIPT = """
local removed = 0
for _, fields in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
    local info = {}
    for i = 1, #fields, 2 do
        info[fields[i]] = fields[i + 1]
    end
    if info['pending'] == 0 and string.sub(info['name'], 1, #ARGV[2]) == ARGV[2] then
        redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], info['name'])
        removed = removed + 1
    end
end
return removed
"""

# Appends a message unless one of its claim keys exists, and then sets them
# all. The existence check comes first and XADD before SET, so an error stores
# neither the message nor the claims. Claim keys share the stream's hash tag,
# so on Redis Cluster every key of the script is in one slot.
# KEYS: stream, claim keys...; ARGV: claim ttl in ms, encoded message
# Returns the stream length, or -1 for a duplicate.
_PUT_UNLESS_CLAIMED_SCRIPT = """
for i = 2, #KEYS do
    if redis.call('EXISTS', KEYS[i]) == 1 then
        return -1
    end
end
redis.call('XADD', KEYS[1], '*', 'message', ARGV[2])
for i = 2, #KEYS do
    redis.call('SET', KEYS[i], '1', 'PX', ARGV[1])
end
return redis.call('XLEN', KEYS[1])
"""

# XAUTOCLAIM with COUNT 1 inspects at most 10 PEL entries per call (checked on Redis 7.0).
# get() makes at most this many calls before it turns to new messages, and the
# next get() continues the scan where this one stopped.
_MAX_CLAIM_CALLS = 10

# Retries moved back to the stream per promote step.
_PROMOTE_BATCH = 100

# Dead letters deleted per script call by purge_dead_letters().
_PURGE_BATCH = 1000

# Minimum seconds between two warnings about a long stream.
_LENGTH_WARNING_INTERVAL = 60.0


@dataclasses.dataclass(frozen=True)
class StreamLease:
    """The receipt of a :class:`Delivery` from :class:`RedisQueue`.

    Attributes:
        entry_id: The stream entry id, which changes when a retry re-adds the message.
        consumer: The consumer that owns the entry in the PEL.
        delivery_count: The entry's delivery count when it was leased.
        message: The entry's ``message`` field, unchanged, so a retry stores
            the original body even if the worker modified ``Delivery.body``.
    """

    entry_id: str
    consumer: str
    delivery_count: int
    message: str


class RedisQueue(Queue):
    """A :class:`Queue` on a Redis stream with a consumer group (Redis 6.2 or later).

    ``get`` moves due retries back to the stream, claims entries whose lease
    expired (XAUTOCLAIM with the visibility timeout as minimum idle time),
    and reads new entries with ``XREADGROUP ... BLOCK``. The first two steps
    run only when a :class:`MaintenanceSchedule`, one per process, finds them
    due, so that a busy ``get`` is usually one round trip. Consumers are
    named ``host-pid-thread``.

    Args:
        client: A client made by :func:`~omnibot.backends.redis_connection.create_client`;
            it must decode responses to str.
        name: The queue name, used as the hash tag of every key.
        key_prefix: Prefix of every key.
        group: The consumer group that the workers share.
        visibility_timeout: Seconds a leased message stays invisible to other workers.
        max_attempts: Deliveries after which a failed message is dead-lettered.
        backoff_base: Delay in seconds before the second delivery of a failed message.
        backoff_max: Upper bound in seconds of the delay between deliveries.
        max_length_warning: Stream length above which ``put`` logs a warning,
            at most once a minute. Nothing is dropped.
        block_interval: Maximum seconds one blocking read waits before ``get``
            checks again for expired leases and due retries. It must be
            shorter than the client's socket timeout.
        promote_interval: Maximum seconds between two moves of due retries
            to the stream by one process while it calls ``get``. Retries that
            this process scheduled itself are moved when they are due.
        claim_interval: Maximum seconds between two scans for expired leases
            by one process while its reads keep finding new messages. A read
            that finds none makes the next ``get`` scan.
        spool_directory: When given, puts append to spool files in this
            directory, created when missing, and a thread of each process
            that puts or gets forwards them to the stream
            (:mod:`omnibot.backends.redis_spool`).

    Raises:
        ValueError: When a setting is out of range.
    """

    def __init__(
        self,
        client: RedisClient,
        *,
        name: str = "queue",
        key_prefix: str = "omnibot",
        group: str = "omnibot-workers",
        visibility_timeout: float = 60,
        max_attempts: int = 5,
        backoff_base: float = 1.0,
        backoff_max: float = 300.0,
        max_length_warning: int = 100_000,
        block_interval: float = 1.0,
        promote_interval: float = 0.5,
        claim_interval: float = 1.0,
        spool_directory: typing.Optional[str] = None,
    ):
        self.policy = RetryPolicy(visibility_timeout, max_attempts, backoff_base, backoff_max)
        _check_block_interval(client, block_interval)
        self._schedule = PerProcess(lambda: MaintenanceSchedule(promote_interval, claim_interval))
        # Creating this process's schedule now checks the intervals.
        self._schedule.get()

        self.group = group
        self.stream = f"{key_prefix}:{{{name}}}:stream"
        self._delayed = f"{key_prefix}:{{{name}}}:delayed"
        self._delayed_messages = f"{key_prefix}:{{{name}}}:delayed_messages"
        self._dead_letters = f"{key_prefix}:{{{name}}}:dead_letters"
        self._dead_letters_by_time = f"{key_prefix}:{{{name}}}:dead_letters_by_time"
        self._claim_prefix = f"{key_prefix}:{{{name}}}:claim:"

        self._client = client
        self._location = describe_client(client)
        self._max_length_warning = max_length_warning
        self._block_interval = block_interval
        self._group_ready = False
        self._claim_cursor = "0-0"
        self._next_length_warning = 0.0

        self._settle_script = client.register_script(_SETTLE_SCRIPT)
        self._promote_script = client.register_script(_PROMOTE_SCRIPT)
        self._replay_script = client.register_script(_REPLAY_SCRIPT)
        self._purge_script = client.register_script(_PURGE_SCRIPT)
        self._forget_consumers_script = client.register_script(_FORGET_CONSUMERS_SCRIPT)
        self._put_unless_claimed_script = client.register_script(_PUT_UNLESS_CLAIMED_SCRIPT)
        self._renew_script = client.register_script(RENEW_SCRIPT)

        self._spool_writer: typing.Optional[SpoolWriter] = None
        self._forwarder: typing.Optional[SpoolForwarder] = None
        if spool_directory is not None:
            self._spool_writer = SpoolWriter(spool_directory)
            keys = SpoolKeys(
                stream=self.stream,
                dead_letters=self._dead_letters,
                dead_letters_by_time=self._dead_letters_by_time,
                claim_prefix=self._claim_prefix,
                offset_prefix=f"{key_prefix}:{{{name}}}:spool_offset:",
            )
            self._forwarder = SpoolForwarder(spool_directory, client, keys, self._location, self._warn_if_long)

    @property
    def keys(self) -> typing.List[str]:
        """Every fixed Redis key of this queue.

        Claim keys start with ``<prefix>:{<name>}:claim:`` and the offsets of
        spool files with ``<prefix>:{<name>}:spool_offset:``; both expire.
        """
        return [self.stream, self._delayed, self._delayed_messages, self._dead_letters, self._dead_letters_by_time]

    def put(self, body: dict) -> str:
        """Append ``body`` to the stream as a new message and return its id.

        One round trip sends XADD (never with MAXLEN, so nothing unprocessed is
        dropped) and XLEN, to warn when the backlog exceeds ``max_length_warning``.
        With a spool directory, the put appends a line to a spool file instead
        and returns without a round trip.

        Raises:
            BackendUnavailable: Redis, or with a spool directory the spool
                file, could not be written.
        """
        if self._spool_writer is not None:
            return self._spool(PendingPut(new_id(), time.time(), 0.0, (), json.dumps(body)))

        message_id = new_id()
        message = encode_message(message_id, body, prior_attempts=0)

        with translate_errors(self._location):
            pipe = self._client.pipeline(transaction=False)
            pipe.xadd(self.stream, {"message": message})
            pipe.xlen(self.stream)
            _, length = pipe.execute()

        self._warn_if_long(length)
        return message_id

    def put_unless_claimed(
        self, body: dict, claims: typing.Sequence[str], ttl: float, *, exact: bool = False
    ) -> typing.Optional[str]:
        """Claim ``claims`` and append ``body`` in one Lua script (one round trip); None when a key was claimed already.

        With a spool directory, the put appends a line to a spool file and
        returns its id. The claims are checked when the line is forwarded,
        and a duplicate is dropped there. With ``exact`` as well, the put
        first forwards the spool files of this host in the calling thread,
        then runs the script, so its return value is exact, unless the
        backlog takes more than ``EXACT_FORWARD_BUDGET`` seconds: then the
        put is spooled like any other and returns its id.

        Raises:
            ValueError: When ``ttl`` is not positive.
            BackendUnavailable: Redis, or the spool file, could not be written.
        """
        if not ttl > 0:
            raise ValueError(f"ttl must be a positive number of seconds, got {ttl!r}")
        if self._forwarder is not None:
            spooled = PendingPut(new_id(), time.time(), float(ttl), tuple(dict.fromkeys(claims)), json.dumps(body))
            if not exact:
                return self._spool(spooled)
            # A line spooled earlier sets its claim keys only when it is forwarded.
            if self._forwarder.forward_waiting(budget=EXACT_FORWARD_BUDGET) is None:
                logger.info(
                    "the spool backlog was not forwarded within %g s; spooling message %s like any put, "
                    "so that a duplicate is dropped when its line is forwarded",
                    EXACT_FORWARD_BUDGET, spooled.message_id,
                )
                return self._spool(spooled)

        message_id = new_id()
        message = encode_message(message_id, body, prior_attempts=0)
        keys = [self.stream] + [self._claim_prefix + claim for claim in dict.fromkeys(claims)]

        with translate_errors(self._location):
            length = self._put_unless_claimed_script(keys=keys, args=[max(1, int(ttl * 1000)), message])

        if length < 0:
            return None
        self._warn_if_long(length)
        return message_id

    def start(self) -> None:
        """Start this process's spool forwarder, when puts go through spool files."""
        if self._forwarder is not None:
            self._forwarder.start()

    def forward_spool_for_host(self, stopping: threading.Event) -> bool:
        """Forward every spool file of this host until ``stopping`` is set, as ``omnibot spool-forwarder`` does.

        See :meth:`SpoolForwarder.run_for_host`; returns its result.

        Raises:
            ValueError: This queue has no spool directory.
        """
        if self._forwarder is None:
            raise ValueError("this Redis queue does not put through spool files (QUEUE_SPOOL=1)")
        return self._forwarder.run_for_host(stopping)

    def get(self, timeout: float = 1.0) -> typing.Optional[Delivery]:
        """Lease the next message, waiting up to ``timeout`` seconds.

        Each round moves due retries back to the stream and claims an entry
        whose lease expired, when this process's schedule finds these steps
        due, then reads a new entry, blocking for at most ``block_interval``
        and no longer than until the next retry known to this process is due.
        An entry whose lease expired after its last allowed attempt is
        dead-lettered instead of being delivered.
        """
        deadline = time.monotonic() + max(timeout, 0.0)
        consumer = _consumer_name()
        if self._forwarder is not None:
            # A worker process forwards the files that stopped web processes left.
            self._forwarder.start()

        with translate_errors(self._location):
            while True:
                try:
                    delivery = self._get_once(consumer, deadline - time.monotonic())
                except redis.exceptions.ResponseError as exc:
                    # The stream or its group was deleted, e.g. by hand.
                    if not str(exc).startswith("NOGROUP"):
                        raise
                    logger.warning("Consumer group %s of stream %s is missing; creating it again", self.group, self.stream)
                    self._group_ready = False
                    delivery = None

                if delivery is not None or time.monotonic() >= deadline:
                    return delivery

    def ack(self, delivery: Delivery) -> None:
        """Delete the message (XACK and XDEL), unless another consumer has claimed it since."""
        if not self._settle(delivery.receipt, "ack", delivery.id, "", 0.0):
            _log_lost_lease("ack", delivery)

    def fail(self, delivery: Delivery, error: str) -> bool:
        """Schedule the message again after its backoff, or dead-letter it after its last attempt.

        Returns:
            True when the message was dead-lettered. False when it was
            scheduled again, or when the lease had passed to another consumer,
            in which case nothing changes.
        """
        # The lease, not the worker's Delivery object, is the source of the
        # body and the attempt count, since a worker may modify the Delivery.
        lease: StreamLease = delivery.receipt
        original = json.loads(lease.message)
        attempts = original["prior_attempts"] + lease.delivery_count
        dead = self.policy.is_exhausted(attempts)

        if dead:
            record = encode_dead_letter(delivery.id, original["body"], attempts, error)
            settled = self._settle(lease, "dead", delivery.id, record, 0.0)
        else:
            delay = self.policy.backoff(attempts)
            retry = encode_message(delivery.id, original["body"], prior_attempts=attempts)
            settled = self._settle(lease, "retry", delivery.id, retry, delay)

        if not settled:
            _log_lost_lease("fail", delivery)
            return False

        if dead:
            logger.warning("Message %s moved to the dead letters after %d attempts", delivery.id, attempts)
        else:
            # The next get() of this process then wakes when the retry is due.
            self._schedule.get().record_retry(delay)
            logger.info("Message %s failed attempt %d; it is delivered again in %.3g s", delivery.id, attempts, delay)

        return dead

    def extend_leases(self, deliveries: typing.Sequence[Delivery]) -> typing.List[bool]:
        """Reset the idle time of each entry this consumer still owns, in one script (one round trip)."""
        if not deliveries:
            return []
        with translate_errors(self._location):
            renewed = self._renew_script(
                keys=[self.stream], args=renew_arguments(self.group, [delivery.receipt for delivery in deliveries])
            )
        return [bool(flag) for flag in renewed]

    def depth(self) -> int:
        """Return how many messages wait, are leased or wait for a retry (dead letters excluded).

        Lines of this host's spool files that are not forwarded yet count too.
        """
        with translate_errors(self._location):
            pipe = self._client.pipeline(transaction=False)
            pipe.xlen(self.stream)
            pipe.zcard(self._delayed)
            in_stream, delayed = pipe.execute()

        return self._add_spooled(in_stream) + delayed

    def stats(self) -> typing.Dict[str, int]:
        """Count the messages by state.

        Returns:
            A dict with ``ready``, ``leased``, ``delayed`` (waiting for the
            backoff after a failure) and ``dead`` (dead letters). A message
            whose lease expired counts as leased until a worker claims it.
            Lines of this host's spool files that are not forwarded yet count as ready.
        """
        with translate_errors(self._location):
            self._ensure_group()
            pipe = self._client.pipeline(transaction=False)
            pipe.xlen(self.stream)
            pipe.xpending(self.stream, self.group)
            pipe.zcard(self._delayed)
            pipe.hlen(self._dead_letters)
            in_stream, pending, delayed, dead = pipe.execute()

        leased = pending["pending"]
        ready = self._add_spooled(in_stream) - leased
        return {"ready": ready, "leased": leased, "delayed": delayed, "dead": dead}

    def dead_letters(self, limit: int = 100) -> typing.List[DeadLetter]:
        """List up to ``limit`` dead letters, oldest failure first."""
        if limit <= 0:
            return []

        with translate_errors(self._location):
            failures = self._client.zrange(self._dead_letters_by_time, 0, limit - 1, withscores=True)
            if not failures:
                return []
            records = self._client.hmget(self._dead_letters, [message_id for message_id, _ in failures])

        # A record can vanish between the two reads when another process purges or replays it.
        return [
            decode_dead_letter(record, failed_at)
            for (_, failed_at), record in zip(failures, records)
            if record is not None
        ]

    def dead_letter(self, message_id: str) -> typing.Optional[DeadLetter]:
        """Return the dead letter ``message_id``, or None when there is none."""
        with translate_errors(self._location):
            pipe = self._client.pipeline(transaction=False)
            pipe.hget(self._dead_letters, message_id)
            pipe.zscore(self._dead_letters_by_time, message_id)
            record, failed_at = pipe.execute()

        if record is None:
            return None

        return decode_dead_letter(record, failed_at or 0.0)

    def replay(self, message_id: str) -> bool:
        """Move a dead letter back to the stream, keeping its id and resetting its attempts.

        Returns:
            False when ``message_id`` is not a dead letter.

        Raises:
            ValueError: The dead letter is a spool line that could not be
                read, which no worker can process.
        """
        with translate_errors(self._location):
            record = self._client.hget(self._dead_letters, message_id)
            if record is None:
                return False

            original = json.loads(record)["body"]
            if set(original) == {UNREADABLE_LINE_KEY}:
                raise ValueError(f"dead letter {message_id} is a spool line that could not be read, so no worker can process it")
            body = dict(original, replayed_at=time.time())
            message = encode_message(message_id, body, prior_attempts=0)
            replayed = self._replay_script(
                keys=[self._dead_letters, self._dead_letters_by_time, self.stream],
                args=[message_id, message],
            )

        if replayed:
            logger.info("Dead letter %s replayed", message_id)

        return bool(replayed)

    def purge_dead_letters(self, older_than: float) -> int:
        """Delete the dead letters that failed at least ``older_than`` seconds ago and return their count.

        Raises:
            ValueError: When ``older_than`` is negative.
        """
        if older_than < 0:
            raise ValueError(f"older_than must be 0 seconds or more, got {older_than!r}")

        purged = 0
        with translate_errors(self._location):
            while True:
                deleted = self._purge_script(
                    keys=[self._dead_letters, self._dead_letters_by_time],
                    args=[older_than, _PURGE_BATCH],
                )
                purged += deleted
                if deleted < _PURGE_BATCH:
                    return purged

    def close(self) -> None:
        """Remove this process's consumers that hold no entries from the group, then close the client.

        Without this, every restarted process would leave its consumer names
        in the group for good. With a spool directory, this process's
        forwarder first forwards what is left, for at most about 5 seconds.
        """
        if self._forwarder is not None:
            self._spool_writer.close()
            self._forwarder.stop()

        prefix = _consumer_prefixes.get()
        try:
            with translate_errors(self._location):
                self._forget_consumers_script(keys=[self.stream], args=[self.group, prefix])
        except redis.exceptions.ResponseError as exc:
            # The stream or the group does not exist because nothing was ever read.
            logger.debug("No consumers to remove from stream %s: %s", self.stream, exc)
        except BackendUnavailable as exc:
            # Closing must not fail; leftover consumer names only take a little memory.
            logger.warning("Could not remove idle consumers from stream %s: %s", self.stream, exc)

        self._client.close()

    def _spool(self, put: PendingPut) -> str:
        """Append ``put`` to a spool file, wake the forwarder and return the message id."""
        self._spool_writer.append(put.to_line())
        self._forwarder.notify()
        return put.message_id

    def _add_spooled(self, in_stream: int) -> int:
        """Return ``in_stream`` plus the spool lines not forwarded yet, both read at one instant when there are spool files."""
        if self._forwarder is None:
            return in_stream
        snapshot = self._forwarder.stream_length_and_waiting()
        if snapshot is None:
            return in_stream
        length, waiting = snapshot
        return length + waiting

    def _get_once(self, consumer: str, remaining: float) -> typing.Optional[Delivery]:
        self._ensure_group()
        schedule = self._schedule.get()

        if schedule.promote_due():
            next_retry = self._promote_script(
                keys=[self._delayed, self._delayed_messages, self.stream], args=[_PROMOTE_BATCH]
            )
            schedule.record_promote(float(next_retry))

        if schedule.claim_due():
            delivery = self._claim_expired(consumer, schedule)
            if delivery is not None:
                return delivery

        # Wake up in time to move the next retry known to this process to the stream.
        wait = min(remaining, self._block_interval, schedule.seconds_until_retry())
        delivery = self._read_new(consumer, wait)
        if delivery is None:
            schedule.record_idle_read()

        return delivery

    def _ensure_group(self) -> None:
        if self._group_ready:
            return

        # Start at id 0 so that messages put before the group existed are delivered too.
        try:
            self._client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except redis.exceptions.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

        self._group_ready = True

    def _claim_expired(self, consumer: str, schedule: MaintenanceSchedule) -> typing.Optional[Delivery]:
        min_idle_ms = int(self.policy.visibility_timeout * 1000)
        claimed_any = False

        for _ in range(_MAX_CLAIM_CALLS):
            cursor, entries, *_ = self._client.xautoclaim(
                self.stream, self.group, consumer, min_idle_ms, start_id=self._claim_cursor, count=1
            )
            self._claim_cursor = cursor
            claimed_any = claimed_any or bool(entries)

            for entry_id, fields in entries:
                delivery = self._lease_claimed(consumer, entry_id, fields)
                if delivery is not None:
                    # More leases may have expired, so the next get() scans again.
                    schedule.record_claim(complete=False)
                    return delivery

            if cursor == "0-0":
                schedule.record_claim(complete=not claimed_any)
                return None

        schedule.record_claim(complete=False)
        return None

    def _lease_claimed(self, consumer: str, entry_id: str, fields) -> typing.Optional[Delivery]:
        # Redis 6.2 can return a pending entry that was deleted with no fields,
        # and keeps it in the PEL until it is acked. Redis 7.0 drops such
        # entries from the PEL itself and does not return them here.
        if fields is None:
            self._client.xack(self.stream, self.group, entry_id)
            return None

        pending = self._client.xpending_range(self.stream, self.group, min=entry_id, max=entry_id, count=1)
        if not pending or pending[0]["consumer"] != consumer:
            return None

        lease = StreamLease(entry_id, consumer, pending[0]["times_delivered"], fields["message"])
        delivery = _delivery_from_lease(lease)

        # The lease that expired was the last allowed attempt.
        if self.policy.is_exhausted(delivery.attempts - 1):
            self._dead_letter_expired(delivery)
            return None

        return delivery

    def _read_new(self, consumer: str, wait: float) -> typing.Optional[Delivery]:
        # BLOCK 0 would wait forever, so a read with under 1 ms to wait does not block.
        block_ms = int(wait * 1000)
        response = self._client.xreadgroup(
            self.group, consumer, {self.stream: ">"}, count=1, block=block_ms if block_ms > 0 else None
        )
        if not response:
            return None

        _, entries = response[0]
        entry_id, fields = entries[0]
        return _delivery_from_lease(StreamLease(entry_id, consumer, 1, fields["message"]))

    def _dead_letter_expired(self, delivery: Delivery) -> None:
        attempts = delivery.attempts - 1
        error = (
            f"lease expired: no ack or fail within the visibility timeout of {self.policy.visibility_timeout:g} s "
            "(the worker died, or could not renew its lease)"
        )
        record = encode_dead_letter(delivery.id, delivery.body, attempts, error)

        if self._settle(delivery.receipt, "dead", delivery.id, record, 0.0):
            logger.warning(
                "Message %s moved to the dead letters: its lease expired after attempt %d of %d",
                delivery.id,
                attempts,
                self.policy.max_attempts,
            )

    def _settle(self, lease: StreamLease, outcome: str, message_id: str, payload: str, delay: float) -> bool:
        with translate_errors(self._location):
            settled = self._settle_script(
                keys=[self.stream, self._delayed, self._delayed_messages, self._dead_letters, self._dead_letters_by_time],
                args=[self.group, lease.entry_id, lease.consumer, lease.delivery_count, outcome, message_id, payload, delay],
            )

        return bool(settled)

    def _warn_if_long(self, length: int) -> None:
        if length <= self._max_length_warning or time.monotonic() < self._next_length_warning:
            return

        self._next_length_warning = time.monotonic() + _LENGTH_WARNING_INTERVAL
        logger.warning(
            "Stream %s contains %d unprocessed messages, above max_length_warning=%d; "
            "check that the workers are running and keep up",
            self.stream,
            length,
            self._max_length_warning,
        )


def _check_block_interval(client: RedisClient, block_interval: float) -> None:
    if not block_interval > 0:
        raise ValueError(f"block_interval must be more than 0 seconds, got {block_interval!r}")

    socket_timeout = socket_timeout_of(client)
    if socket_timeout is not None and block_interval >= socket_timeout:
        raise ValueError(
            f"block_interval ({block_interval!r} s) must be shorter than the client's "
            f"socket_timeout ({socket_timeout!r} s), or blocking reads time out"
        )


def _consumer_prefix() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-"


# Read once per process, because the host name costs a system call and get() needs it on every call.
_consumer_prefixes: PerProcess[str] = PerProcess(_consumer_prefix)


def _consumer_name() -> str:
    """Return this thread's consumer name in the group: host name, process id and thread id."""
    return f"{_consumer_prefixes.get()}{threading.get_ident()}"


def _delivery_from_lease(lease: StreamLease) -> Delivery:
    message = json.loads(lease.message)
    return Delivery(
        id=message["id"],
        body=message["body"],
        attempts=message["prior_attempts"] + lease.delivery_count,
        receipt=lease,
    )


def _log_lost_lease(operation: str, delivery: Delivery) -> None:
    logger.warning(
        "Ignored %s of message %s (attempt %d): the lease is no longer held, because its visibility "
        "timeout passed and another worker claimed the message, or the message was already removed",
        operation,
        delivery.id,
        delivery.attempts,
    )
