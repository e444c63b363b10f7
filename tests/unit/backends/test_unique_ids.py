"""Unique ids: unique across threads and processes, and shaped like a UUID's hex."""

import os
import re
import threading

from omnibot.backends.unique_ids import new_id


def test_new_id_is_32_hex_digits():
    assert re.fullmatch(r"[0-9a-f]{32}", new_id())


def test_new_id_differs_between_threads():
    ids = []
    lock = threading.Lock()

    def take():
        mine = [new_id() for _ in range(5000)]
        with lock:
            ids.extend(mine)

    threads = [threading.Thread(target=take) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(set(ids)) == len(ids) == 20000


def test_new_id_prefix_differs_in_a_forked_child():
    parent_id = new_id()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        os.write(write_end, new_id().encode("ascii"))
        os._exit(0)

    os.close(write_end)
    child_id = os.read(read_end, 64).decode("ascii")
    os.close(read_end)
    os.waitpid(pid, 0)

    assert child_id[:16] != parent_id[:16]
    assert new_id()[:16] == parent_id[:16]
