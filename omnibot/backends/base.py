"""The interfaces every queue and cache backend implements.

Each backend gives the same guarantees: a message leaves the queue only
after it was acknowledged or dead-lettered; a leased message whose worker
died is delivered again once its visibility timeout has passed; after
``max_attempts`` failed deliveries it moves to the dead-letter store.
"""

import abc
import dataclasses
import typing


@dataclasses.dataclass
class Delivery:
    """One leased message handed to a worker.

    Attributes:
        id: The backend's message id (stable across redeliveries).
        body: The JSON-serialisable dict given to :meth:`Queue.put`.
        attempts: How many times the message has been delivered, this one included.
        receipt: Backend-private data needed to ack or fail this lease.
    """

    id: str
    body: dict
    attempts: int
    receipt: typing.Any = None


@dataclasses.dataclass
class DeadLetter:
    """A message that failed ``max_attempts`` times."""

    id: str
    body: dict
    attempts: int
    error: str
    failed_at: float


class Queue(abc.ABC):
    """A durable at-least-once work queue shared by web processes and workers."""

    @abc.abstractmethod
    def put(self, body: dict) -> str:
        """Store ``body`` durably and return its message id."""

    @abc.abstractmethod
    def put_unless_claimed(
        self, body: dict, claims: typing.Sequence[str], ttl: float, *, exact: bool = False
    ) -> typing.Optional[str]:
        """Claim every key of ``claims`` for ``ttl`` seconds and store ``body``, as one atomic step.

        When a key is already claimed and its claim has not expired, nothing
        is stored and None is returned: the body is a duplicate. Otherwise
        the keys are claimed, the body is stored durably, and its message id
        is returned. A failure stores and claims nothing, so a retry of the
        same body is accepted. Claims are stored beside the messages, so
        all processes that put on one queue share the same claims.

        A queue whose puts go through spool files appends the body and
        returns its id, and checks the claims later, when it moves the line
        into the queue: a duplicate is dropped there. With ``exact`` it
        moves the spooled lines first and then claims and stores in one
        step, so the return value is None for a key that an earlier put
        claimed. Callers set it for a put that is likely a duplicate, such
        as a Slack retry, because it costs a write of the queue store.

        Raises:
            ValueError: When ``ttl`` is not positive.
        """

    def start(self) -> None:
        """Start the background work of this process, if the backend has any.

        A web process calls it as it boots, so that its spool forwarder, on
        Redis with ``QUEUE_SPOOL=1``, forwards lines that a stopped process
        left before the first request comes. Puts and gets start it too.
        """

    @abc.abstractmethod
    def get(self, timeout: float = 1.0) -> typing.Optional[Delivery]:
        """Lease the next ready message, waiting up to ``timeout`` seconds; None when none came."""

    @abc.abstractmethod
    def ack(self, delivery: Delivery) -> None:
        """Remove a processed message for good."""

    @abc.abstractmethod
    def fail(self, delivery: Delivery, error: str) -> bool:
        """Record a failed attempt.

        The message is delivered again after an exponential backoff, or moved
        to the dead-letter store once ``attempts`` reached ``max_attempts``.

        Returns:
            True when the message was dead-lettered.
        """

    @abc.abstractmethod
    def extend_leases(self, deliveries: typing.Sequence[Delivery]) -> typing.List[bool]:
        """Restart the visibility timeout of each lease in ``deliveries`` from now.

        Returns:
            One flag per delivery: True when its lease was still held and now
            lasts a full visibility timeout again, False when it had passed
            to another worker or the message was acked or removed since.
        """

    @abc.abstractmethod
    def depth(self) -> int:
        """Return how many messages wait or are leased (dead letters excluded)."""

    @abc.abstractmethod
    def dead_letters(self, limit: int = 100) -> typing.List[DeadLetter]:
        """List dead letters, oldest first."""

    @abc.abstractmethod
    def dead_letter(self, message_id: str) -> typing.Optional[DeadLetter]:
        """Return one dead letter, or None when the id is unknown."""

    @abc.abstractmethod
    def replay(self, message_id: str) -> bool:
        """Put a dead letter back on the queue with its attempts reset; False when unknown.

        The body gets a ``replayed_at`` field (seconds since the epoch), so the
        worker can tell that an earlier delivery may have done part of the work.

        Raises:
            ValueError: The dead letter is not a message that a worker can
                process (a spool line that could not be read); it stays a
                dead letter.
        """

    @abc.abstractmethod
    def purge_dead_letters(self, older_than: float) -> int:
        """Delete dead letters that failed more than ``older_than`` seconds ago; return the count."""

    def close(self) -> None:
        """Release connections; the default does nothing."""


class Cache(abc.ABC):
    """A shared key-value store with expiry and locks.

    Holds the Slack data cache, de-duplication keys, and the watcher's locks
    and last-run marks. Values are strings; callers encode JSON themselves.
    """

    @abc.abstractmethod
    def get(self, key: str) -> typing.Optional[str]:
        """Return the value of ``key``, or None when it is missing or expired."""

    @abc.abstractmethod
    def get_many(self, keys: typing.Sequence[str]) -> typing.List[typing.Optional[str]]:
        """Return the values of ``keys`` in order, None for each missing one."""

    @abc.abstractmethod
    def set(self, key: str, value: str, ttl: typing.Optional[float] = None) -> None:
        """Store ``value`` under ``key``, expiring after ``ttl`` seconds when given."""

    @abc.abstractmethod
    def set_many(self, items: typing.Mapping[str, str], ttl: typing.Optional[float] = None) -> None:
        """Store several keys in one round trip."""

    @abc.abstractmethod
    def add(self, key: str, value: str, ttl: float) -> bool:
        """Store ``value`` only when ``key`` is absent; True when it was stored (atomic)."""

    def add_all(self, keys: typing.Sequence[str], value: str, ttl: float) -> bool:
        """Store ``value`` under each of ``keys`` that is absent; True when every key was stored.

        Keys that were stored stay stored when another key was present. The
        default calls :meth:`add` for each key and stops at the first present
        one; backends override it to need one round trip.
        """
        return all(self.add(key, value, ttl) for key in keys)

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove ``key`` when present."""

    @abc.abstractmethod
    def lock(self, name: str, timeout: float) -> typing.ContextManager[bool]:
        """Return a context manager that tries once to take the named lock.

        It yields True when this caller holds the lock and False when another
        holder has it. The lock expires after ``timeout`` seconds, so a holder
        that died does not keep it forever.
        """

    def close(self) -> None:
        """Release connections; the default does nothing."""
