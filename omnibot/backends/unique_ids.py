"""Ids of queued messages and leases, unique across processes and hosts, made without a system call each.

An id is 32 hexadecimal digits, as long as a UUID's: 16 random digits drawn
once per process (again in a child after fork()), then a counter of that
process. Two processes draw the same 64 random bits with a chance of about
one in 10**19 per pair, so ids from different processes or restarts do not
collide in practice. ``uuid.uuid4()`` reads the system's random source for
every id, which on the acknowledgement path costs a system call per event.
"""

import itertools
import os

from omnibot.per_process import PerProcess


class _Sequence:
    """The random prefix and the counter of one process."""

    def __init__(self):
        self.prefix = os.urandom(8).hex()
        self.counter = itertools.count()


_sequences: PerProcess[_Sequence] = PerProcess(_Sequence)


def new_id() -> str:
    """Return an id that no other call, in this or another process, returns."""
    sequence = _sequences.get()
    # next() on itertools.count is one step under the GIL, so threads never get the same number.
    return f"{sequence.prefix}{next(sequence.counter):016x}"
