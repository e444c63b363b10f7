"""Group commit: the writes that threads of one process submit at once share one transaction.

Each SQLite commit costs a write lock, a few pages appended to the WAL and
system calls, whatever the size of the transaction. When several web
threads enqueue events at the same moment, one of them, the leader, writes
every pending item in one transaction, and the others wait for their
result. A thread that arrives while no write is running becomes the leader
at once, so a lone request waits for no other thread.
"""

import _thread
import copy
import os
import threading
import typing

Item = typing.TypeVar("Item")
Result = typing.TypeVar("Result")


class GroupCommit(typing.Generic[Item, Result]):
    """Run ``write_batch`` on the items submitted by concurrent threads, a batch at a time.

    Args:
        write_batch: Takes a list of items and returns one result per item,
            in order, after making them durable in one transaction. When it
            raises, every item of the batch gets the exception, so the
            function must write all of a batch or none of it.
    """

    def __init__(self, write_batch: typing.Callable[[typing.List[Item]], typing.List[Result]]):
        self._write_batch = write_batch
        self._state: typing.Optional[_ProcessState] = None

    def submit(self, item: Item) -> Result:
        """Write ``item`` with the batch it lands in and return its result.

        Raises:
            Exception: What ``write_batch`` raised for the batch.
        """
        state = self._process_state()
        slot = _Slot(item)
        with state.lock:
            state.pending.append(slot)
            lead = not state.leading
            state.leading = True

        if not lead:
            # Woken once: by the leader that wrote the slot, or to lead the next batch.
            slot.wait()
            if not slot.promoted:
                return slot.outcome(own_batch=False)

        self._lead(state, slot)
        return slot.outcome()

    def _lead(self, state: "_ProcessState", own: "_Slot") -> None:
        """Write one batch (which contains the leader's own slot ``own``), then hand over to the next waiting thread."""
        with state.lock:
            batch, state.pending = state.pending, []

        try:
            results = self._write_batch([slot.item for slot in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"write_batch returned {len(results)} results for {len(batch)} items")
            for slot, result in zip(batch, results):
                slot.result = result
        except BaseException as error:  # noqa: BLE001 - every waiting thread must learn the outcome
            for slot in batch:
                slot.error = error

        for slot in batch:
            if slot is not own:
                slot.promoted = False
                slot.wake()

        with state.lock:
            if state.pending:
                # The next thread in line writes the items that arrived meanwhile.
                successor = state.pending[0]
                successor.promoted = True
                successor.wake()
            else:
                state.leading = False

    def _process_state(self) -> "_ProcessState":
        # A lock inherited through fork() may be held by a thread that does not exist in the child.
        state = self._state
        if state is None or state.pid != os.getpid():
            state = _ProcessState(os.getpid())
            self._state = state
        return state


class _ProcessState:
    """The waiting items of one process and whether a thread is writing them."""

    def __init__(self, pid: int):
        self.pid = pid
        self.lock = threading.Lock()
        self.pending: typing.List[_Slot] = []
        self.leading = False


class _Slot:
    """One submitted item, its result or error once its batch is written, and the lock its thread waits on.

    A thread waits on a plain lock, taken when the slot is made and released
    by :meth:`wake`. A ``threading.Event`` would cost each request an Event,
    a Condition and a waiter lock instead of one C object. A slot is woken
    at most once; a second :meth:`wake` would raise ``RuntimeError``.
    """

    __slots__ = ("item", "promoted", "result", "error", "_waiting")

    def __init__(self, item):
        self.item = item
        self.promoted = False
        self.result = None
        self.error: typing.Optional[BaseException] = None
        self._waiting = _thread.allocate_lock()
        self._waiting.acquire()

    def wait(self) -> None:
        """Block until :meth:`wake` is called."""
        self._waiting.acquire()

    def wake(self) -> None:
        """Let the thread blocked in :meth:`wait` go on."""
        self._waiting.release()

    def outcome(self, own_batch: bool = True):
        """Return the result, or raise the batch's error.

        The thread that wrote the batch raises the error itself. The others
        raise a copy whose cause is that error: threads that raise one object
        at once would add their frames to one traceback. An error that cannot
        be copied is raised as it is.
        """
        if self.error is None:
            return self.result
        if own_batch:
            raise self.error
        try:
            duplicate = copy.copy(self.error)
        except Exception:  # noqa: BLE001 - an exception class whose constructor copy cannot call
            raise self.error
        raise duplicate from self.error
