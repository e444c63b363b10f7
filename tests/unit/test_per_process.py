"""PerProcess gives each process its own object, also after fork()."""

import os

from omnibot.per_process import PerProcess


def test_one_object_per_process():
    objects = PerProcess(object)

    assert objects.get() is objects.get()


def test_pop_forgets_object():
    objects = PerProcess(object)
    first = objects.get()

    assert objects.pop() is first
    assert objects.pop() is None
    assert objects.get() is not first


def test_forked_child_gets_new_object():
    objects = PerProcess(object)
    parent = objects.get()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        fresh = objects.get() is not parent and objects.pop() is not parent
        os.write(write_end, b"1" if fresh else b"0")
        os._exit(0)

    os.close(write_end)
    os.waitpid(pid, 0)
    child_report = os.read(read_end, 1)
    os.close(read_end)

    assert child_report == b"1"
    assert objects.get() is parent
