"""One object per process: created on first use, and again in a child process after fork().

A forked child inherits its parent's objects, but not the threads behind
them, and it must not share their sockets. :class:`PerProcess` keeps the
object with the id of the process that created it, so a child that asks for
it gets a new one.
"""

import os
import typing

T = typing.TypeVar("T")


class PerProcess(typing.Generic[T]):
    """The object that ``factory`` made in the current process.

    No lock guards the creation, because a lock inherited through fork() may
    be held by a parent thread that does not exist in the child. Two threads
    that race on first use may each create an object, and the one whose
    object is replaced keeps using it for that one call.

    Args:
        factory: Called without arguments to create the object.
    """

    def __init__(self, factory: typing.Callable[[], T]):
        self._factory = factory
        self._state: typing.Optional[typing.Tuple[int, T]] = None

    def get(self) -> T:
        """Return this process's object, created now when there is none."""
        state = self._state
        pid = os.getpid()
        if state is None or state[0] != pid:
            # The parent's object is dropped, not closed: closing it here
            # would close only the child's copies of the parent's resources.
            state = (pid, self._factory())
            self._state = state
        return state[1]

    def pop(self) -> typing.Optional[T]:
        """Forget the object. Return it when this process created it, else None."""
        state, self._state = self._state, None
        if state is not None and state[0] == os.getpid():
            return state[1]
        return None
