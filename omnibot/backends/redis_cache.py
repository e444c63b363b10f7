"""A key-value cache with expiry and locks in Redis, shared by any number of hosts.

Values live under ``<prefix>data:<key>`` and locks under ``<prefix>lock:<name>``,
so a cache key can never overwrite a lock. The default prefix ``omnibot:{cache}:``
carries a hash tag, so a Redis Cluster keeps every key in one slot and MGET
and pipelines over many keys work there too.
"""

import contextlib
import logging
import typing

import redis
from redis.lock import Lock

from omnibot.backends.base import Cache
from omnibot.backends.redis_connection import RedisClient, describe_client, translate_errors
from omnibot.errors import BackendUnavailable

logger = logging.getLogger(__name__)


class RedisCache(Cache):
    """A :class:`Cache` in Redis.

    Args:
        client: A client made by :func:`~omnibot.backends.redis_connection.create_client`;
            it must decode responses to str.
        prefix: Prefix of every key; tests pass a unique one.
    """

    def __init__(self, client: RedisClient, *, prefix: str = "omnibot:{cache}:"):
        self._client = client
        self._location = describe_client(client)
        self.prefix = prefix
        self._data_prefix = f"{prefix}data:"
        self._lock_prefix = f"{prefix}lock:"

    def get(self, key: str) -> typing.Optional[str]:
        """Return the value of ``key``, or None when it is missing or expired."""
        with translate_errors(self._location):
            return self._client.get(self._data_prefix + key)

    def get_many(self, keys: typing.Sequence[str]) -> typing.List[typing.Optional[str]]:
        """Return the values of ``keys`` in order (one MGET), None for each missing or expired one."""
        if not keys:
            return []

        with translate_errors(self._location):
            return self._client.mget([self._data_prefix + key for key in keys])

    def set(self, key: str, value: str, ttl: typing.Optional[float] = None) -> None:
        """Store ``value`` under ``key``, replacing any old value and its expiry.

        Raises:
            TypeError: When ``value`` is not a str.
            ValueError: When ``ttl`` is given and not positive.
        """
        expiry_ms = _expiry_ms(ttl)
        _check_value(key, value)

        with translate_errors(self._location):
            self._client.set(self._data_prefix + key, value, px=expiry_ms)

    def set_many(self, items: typing.Mapping[str, str], ttl: typing.Optional[float] = None) -> None:
        """Store several keys in one MULTI/EXEC round trip, all with the same ``ttl``.

        Raises:
            TypeError: When a value is not a str.
            ValueError: When ``ttl`` is given and not positive.
        """
        expiry_ms = _expiry_ms(ttl)
        for key, value in items.items():
            _check_value(key, value)

        if not items:
            return

        with translate_errors(self._location):
            pipe = self._client.pipeline(transaction=True)
            for key, value in items.items():
                pipe.set(self._data_prefix + key, value, px=expiry_ms)
            pipe.execute()

    def add(self, key: str, value: str, ttl: float) -> bool:
        """Store ``value`` only when ``key`` is missing or expired (SET NX); True when it was stored.

        Raises:
            TypeError: When ``value`` is not a str.
            ValueError: When ``ttl`` is not positive.
        """
        expiry_ms = _expiry_ms(ttl)
        _check_value(key, value)

        with translate_errors(self._location):
            return bool(self._client.set(self._data_prefix + key, value, px=expiry_ms, nx=True))

    def add_all(self, keys: typing.Sequence[str], value: str, ttl: float) -> bool:
        """Store ``value`` under each of ``keys`` that is missing (SET NX each, one round trip); True when every key was stored.

        Keys that were stored stay stored when another key was present.

        Raises:
            TypeError: When ``value`` is not a str.
            ValueError: When ``ttl`` is not positive.
        """
        expiry_ms = _expiry_ms(ttl)
        for key in keys:
            _check_value(key, value)
        if not keys:
            return True

        with translate_errors(self._location):
            pipe = self._client.pipeline(transaction=False)
            for key in keys:
                pipe.set(self._data_prefix + key, value, px=expiry_ms, nx=True)
            return all(pipe.execute())

    def delete(self, key: str) -> None:
        """Remove ``key`` when present."""
        with translate_errors(self._location):
            self._client.delete(self._data_prefix + key)

    @contextlib.contextmanager
    def lock(self, name: str, timeout: float) -> typing.Iterator[bool]:
        """Try once, without waiting, to take the lock ``name`` for at most ``timeout`` seconds.

        Yields True when this caller took the lock. On exit the lock is
        released only if this caller still holds it: redis-py's Lock deletes
        the key only when it still contains this caller's random token.

        Raises:
            ValueError: When ``timeout`` is not positive.
        """
        if timeout is None or not timeout > 0:
            raise ValueError(f"lock timeout must be more than 0 seconds, got {timeout!r}")

        # thread_local=False because only this context manager uses the token.
        # redis-py sends the timeout as whole milliseconds, and Redis rejects 0.
        lock = Lock(
            self._client,
            self._lock_prefix + name,
            timeout=max(timeout, 0.001),
            blocking=False,
            thread_local=False,
        )
        with translate_errors(self._location):
            acquired = lock.acquire()

        try:
            yield acquired
        finally:
            if acquired:
                self._release(lock, name)

    def close(self) -> None:
        """Close the client's connections."""
        self._client.close()

    def _release(self, lock: Lock, name: str) -> None:
        # The lock expires by itself, so a failed release only delays the next
        # holder, and raising here would hide an exception of the locked block.
        try:
            with translate_errors(self._location):
                lock.release()
        except redis.exceptions.LockNotOwnedError:
            logger.warning("Lock %r expired before its holder released it", name)
        except BackendUnavailable as exc:
            logger.warning("Could not release lock %r; it is released when it expires: %s", name, exc)


def _expiry_ms(ttl: typing.Optional[float]) -> typing.Optional[int]:
    if ttl is None:
        return None

    if not ttl > 0:
        raise ValueError(f"ttl must be more than 0 seconds or None, got {ttl!r}")

    # Redis rejects PX 0, so a TTL under half a millisecond rounds up to 1 ms.
    return max(1, round(ttl * 1000))


def _check_value(key: str, value: str) -> None:
    if not isinstance(value, str):
        raise TypeError(f"cache values must be str, got {type(value).__name__} for key {key!r}")
