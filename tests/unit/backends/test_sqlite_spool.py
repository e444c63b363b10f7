"""The SQLite queue with puts through spool files: de-duplication at import, exactly-once import, damaged files.

The cases every queue backend shares run on the spool too (test_queue.py).
"""

import fcntl
import json
import logging
import multiprocessing
import os
import resource
import signal
import threading
import time

import pytest

from omnibot import backends
from omnibot.app import create_app
from omnibot.backends import sqlite_spool
from omnibot.backends.spool_files import SpoolWriter, list_spool_files
from omnibot.backends.sqlite_queue import SqliteQueue
from omnibot.config import load_config_text
from omnibot.errors import BackendUnavailable
from omnibot.runtime import Runtime
from omnibot.settings import Settings
from tests.support import BASE_CONFIG, credentials_env, message_event, signed

LONG_TTL = 3600.0
LONG_LEASE = 60.0


@pytest.fixture
def paths(tmp_path):
    database = str(tmp_path / "queue.db")
    return database, f"{database}-spool"


@pytest.fixture
def make_spooled(paths):
    opened = []

    def open_queue():
        queue = SqliteQueue(paths[0], spool_puts=True, visibility_timeout=LONG_LEASE)
        opened.append(queue)
        return queue

    yield open_queue
    for queue in opened:
        queue.close()


@pytest.fixture
def every_import_cleans_up(monkeypatch):
    """Check for finished spool files on every import instead of once a second."""
    monkeypatch.setattr(sqlite_spool, "_CLEANUP_INTERVAL", 0.0)


def drain(queue):
    """Get and ack every message the queue delivers; return their bodies in order."""
    bodies = []
    while (delivery := queue.get(timeout=0.2)) is not None:
        bodies.append(delivery.body)
        queue.ack(delivery)
    return bodies


def write_spool_file(directory, name, data):
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, name), "wb") as spool_file:
        spool_file.write(data)


def spool_line(message_id, body, claims=()):
    return sqlite_spool.PendingPut(message_id, 1.0e9, LONG_TTL, tuple(claims), json.dumps(body)).to_line() + b"\n"


def test_put_returns_id_and_message_waits_in_spool(make_spooled, paths):
    queue = make_spooled()

    message_id = queue.put({"n": 1})

    assert message_id
    [size] = list_spool_files(paths[1]).values()
    assert size > 0
    assert queue.stats()["ready"] == 1
    assert queue.depth() == 1
    delivery = queue.get(timeout=1)
    assert delivery.id == message_id
    assert delivery.body == {"n": 1}


def test_get_without_wait_sees_each_new_put(make_spooled):
    queue = make_spooled()

    for number in range(3):
        queue.put({"n": number})
        delivery = queue.get(timeout=0)
        assert delivery is not None
        assert delivery.body == {"n": number}
        queue.ack(delivery)


def test_duplicate_claims_are_dropped_at_import(make_spooled, caplog):
    queue = make_spooled()
    body = {"kind": "event", "payload": {"event_id": "Ev1"}, "retry_num": "1", "retry_reason": "http_timeout"}

    first = queue.put_unless_claimed({"n": 1}, ["event:Ev1", "message:C1:1.0"], LONG_TTL)
    repeat = queue.put_unless_claimed(body, ["event:Ev1"], LONG_TTL)
    other = queue.put_unless_claimed({"n": 3}, ["event:Ev2"], LONG_TTL)

    assert first
    assert repeat
    assert other
    with caplog.at_level(logging.INFO, logger="omnibot.backends.sqlite_spool"):
        assert drain(queue) == [{"n": 1}, {"n": 3}]
    assert f"ignored a duplicate delivery of event Ev1 (retry 1, reason http_timeout), message {repeat}" in caplog.text


def test_exact_put_sees_claims_of_spooled_lines(make_spooled):
    web = make_spooled()
    other_web = make_spooled()
    first = web.put_unless_claimed({"n": 1}, ["event:Ev1"], LONG_TTL)

    repeat = other_web.put_unless_claimed({"n": 2}, ["event:Ev1"], LONG_TTL, exact=True)
    new = other_web.put_unless_claimed({"n": 3}, ["event:Ev2"], LONG_TTL, exact=True)

    assert first
    assert repeat is None
    assert new
    assert other_web.stats()["ready"] == 2
    assert drain(web) == [{"n": 1}, {"n": 3}]


def test_exact_put_claims_before_spooled_repeat(make_spooled, caplog):
    queue = make_spooled()

    first = queue.put_unless_claimed({"n": 1}, ["event:Ev1"], LONG_TTL, exact=True)
    repeat = queue.put_unless_claimed({"n": 2}, ["event:Ev1"], LONG_TTL)

    assert first
    assert repeat
    with caplog.at_level(logging.INFO, logger="omnibot.backends.sqlite_spool"):
        assert drain(queue) == [{"n": 1}]
    assert f"message {repeat}" in caplog.text


def test_claim_made_before_spooling_stops_later_puts(make_spooled, paths):
    direct = SqliteQueue(paths[0], visibility_timeout=LONG_LEASE)
    try:
        assert direct.put_unless_claimed({"n": 1}, ["event:Ev1"], LONG_TTL) is not None
    finally:
        direct.close()
    queue = make_spooled()

    queue.put_unless_claimed({"n": 2}, ["event:Ev1"], LONG_TTL)

    assert drain(queue) == [{"n": 1}]


def test_queue_without_spool_puts_imports_spool(make_spooled, paths):
    web = make_spooled()
    web.put({"n": 1})
    worker = SqliteQueue(paths[0], visibility_timeout=LONG_LEASE)

    try:
        assert worker.stats()["ready"] == 1
        assert drain(worker) == [{"n": 1}]
    finally:
        worker.close()


def _import_and_collect(database, results):
    queue = SqliteQueue(database, spool_puts=True, visibility_timeout=LONG_LEASE)
    try:
        results.put([body["n"] for body in drain(queue)])
    finally:
        queue.close()


def test_processes_importing_at_once_import_each_line_once(paths):
    writer = SpoolWriter(paths[1])
    count = 600

    def put_many(start):
        for number in range(start, count, 3):
            writer.append(sqlite_spool.PendingPut(f"m{number}", 1.0e9, 0.0, (), json.dumps({"n": number})).to_line())
        # Closes this thread's file, so the imports below see three finished files.
        writer.close()

    threads = [threading.Thread(target=put_many, args=(start,)) for start in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Each close ends the files idle at that moment, so the threads leave several files.
    assert len(list_spool_files(paths[1])) > 1

    context = multiprocessing.get_context("fork")
    results = context.Queue()
    workers = [context.Process(target=_import_and_collect, args=(paths[0], results)) for _ in range(3)]
    for worker in workers:
        worker.start()
    delivered = [number for _ in workers for number in results.get(timeout=60)]
    for worker in workers:
        worker.join(timeout=30)

    assert sorted(delivered) == list(range(count))
    writer.close()


def test_import_deletes_only_finished_files(make_spooled, paths, every_import_cleans_up):
    closed = make_spooled()
    closed.put({"n": 1})
    closed.close()
    closed_files = set(list_spool_files(paths[1]))
    still_open = make_spooled()
    still_open.put({"n": 2})
    [open_file] = [name for name in list_spool_files(paths[1]) if name not in closed_files]

    assert sorted(body["n"] for body in drain(still_open)) == [1, 2]
    assert still_open.get(timeout=0.1) is None

    assert list(list_spool_files(paths[1])) == [open_file]


def test_threads_share_few_files(make_spooled, paths):
    queue = make_spooled()

    # One short thread per put, as werkzeug's development server runs requests.
    for number in range(20):
        thread = threading.Thread(target=queue.put, args=({"n": number},))
        thread.start()
        thread.join()

    assert len(list_spool_files(paths[1])) == 1
    assert [body["n"] for body in drain(queue)] == list(range(20))


def test_lines_added_before_close_are_imported(make_spooled, paths, monkeypatch, every_import_cleans_up):
    writer = SpoolWriter(paths[1])
    writer.append(spool_line("m1", {"n": 1}).rstrip(b"\n"))
    queue = make_spooled()
    assert drain(queue) == [{"n": 1}]

    # The next import lists the file before the writer adds a line and closes it.
    stale_listing = list_spool_files(paths[1])
    writer.append(spool_line("m2", {"n": 2}).rstrip(b"\n"))
    writer.close()
    listings = [stale_listing]
    monkeypatch.setattr(
        sqlite_spool, "list_spool_files", lambda directory: listings.pop() if listings else list_spool_files(directory)
    )

    assert drain(queue) == [{"n": 2}]


def test_claim_outlives_late_import(make_spooled):
    queue = make_spooled()

    queue.put_unless_claimed({"n": 1}, ["event:Ev1"], 0.2)
    time.sleep(0.3)
    queue.put_unless_claimed({"n": 2}, ["event:Ev1"], 0.2)

    assert drain(queue) == [{"n": 1}]


def test_torn_last_line_of_dead_writer_is_skipped(make_spooled, paths, every_import_cleans_up, caplog):
    whole = spool_line("m1", {"n": 1})
    write_spool_file(paths[1], "4242-1-abc.spool", whole + spool_line("m2", {"n": 2})[:20])
    queue = make_spooled()

    with caplog.at_level(logging.WARNING, logger="omnibot.backends.sqlite_spool"):
        assert drain(queue) == [{"n": 1}]

    assert list_spool_files(paths[1]) == {}
    assert "skipped 20 bytes at the end of spool file 4242-1-abc.spool" in caplog.text
    assert queue.stats()["ready"] == 0


def test_unreadable_lines_go_to_dead_letters(make_spooled, paths, caplog):
    not_an_object = spool_line("m2", {"n": 2}).replace(b'{"n": 2}', b"[2]")
    data = b"not a spool line\n" + b"also not one\n" + not_an_object + spool_line("m1", {"n": 1})
    write_spool_file(paths[1], "4242-2-abc.spool", data)
    queue = make_spooled()

    with caplog.at_level(logging.ERROR, logger="omnibot.backends.sqlite_spool"):
        assert drain(queue) == [{"n": 1}]

    letters = sorted(queue.dead_letters(), key=lambda letter: letter.id)
    assert [letter.id for letter in letters] == ["spool-4242-2-abc.spool-0", "spool-4242-2-abc.spool-17", "spool-4242-2-abc.spool-30"]
    assert letters[0].body == {"unreadable_spool_line": "not a spool line"}
    assert letters[2].error == "unreadable spool line: the message body is not a JSON object"
    assert all(letter.error.startswith("unreadable spool line") for letter in letters)
    assert "moved an unreadable line of spool file 4242-2-abc.spool at byte 0 to the dead letters" in caplog.text

    with pytest.raises(ValueError, match="is a spool line that could not be read"):
        queue.replay(letters[0].id)
    assert len(queue.dead_letters()) == 3


def test_large_backlog_is_imported_in_several_transactions(make_spooled, paths, monkeypatch):
    monkeypatch.setattr(sqlite_spool, "_READ_LIMIT", 256)
    write_spool_file(paths[1], "4242-3-abc.spool", b"".join(spool_line(f"m{n}", {"n": n}) for n in range(40)))
    queue = make_spooled()

    assert queue.stats()["ready"] == 40
    assert [body["n"] for body in drain(queue)] == list(range(40))


def test_waiting_count_follows_partial_imports(make_spooled, paths, monkeypatch):
    monkeypatch.setattr(sqlite_spool, "_READ_LIMIT", 256)
    write_spool_file(paths[1], "4242-3-abc.spool", b"".join(spool_line(f"m{n}", {"n": n}) for n in range(40)))
    queue = make_spooled()
    assert queue.stats()["ready"] == 40

    queue._spool_importer.import_now()
    with queue._db.connection() as conn:
        [(imported,)] = conn.execute("SELECT lines FROM spool_line_counts").fetchall()
    assert 0 < imported < 40
    assert queue.stats()["ready"] == 40

    with open(os.path.join(paths[1], "4242-3-abc.spool"), "ab") as spool_file:
        spool_file.write(spool_line("m40", {"n": 40}) + b'{"torn":')
    assert queue.stats()["ready"] == 41
    assert queue.depth() == 41


def test_waiting_count_without_line_counts_reads_file(make_spooled, paths):
    write_spool_file(paths[1], "4242-3-abc.spool", b"".join(spool_line(f"m{n}", {"n": n}) for n in range(5)))
    path = os.path.join(paths[1], "4242-3-abc.spool")
    queue = make_spooled()

    with open(path, "ab") as spool_file:
        # A writer's lock, so that the import does not delete the file it read to the end.
        fcntl.flock(spool_file.fileno(), fcntl.LOCK_SH)
        queue._spool_importer.import_now()
        # A file whose import began before the line counts were stored has an offset and no count.
        with queue._db.connection() as conn:
            conn.execute("DELETE FROM spool_line_counts")
        spool_file.write(spool_line("m5", {"n": 5}) + spool_line("m6", {"n": 6}))
        spool_file.flush()

        assert queue.stats()["ready"] == 7
        assert queue.depth() == 7
        assert queue._spool_importer.count_waiting() == 2


def _append_past_file_size_limit(directory, limit, outcome):
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    writer = SpoolWriter(directory)
    try:
        for number in range(1000):
            writer.append(json.dumps({"n": number, "pad": "x" * 30}).encode())
    except BackendUnavailable as error:
        outcome.put(str(error))
    else:
        outcome.put("no error")


def test_incomplete_write_is_cut_back_and_raises(paths):
    context = multiprocessing.get_context("fork")
    outcome = context.Queue()
    child = context.Process(target=_append_past_file_size_limit, args=(paths[1], 1000, outcome))
    child.start()
    message = outcome.get(timeout=30)
    child.join(timeout=30)

    assert "spool file" in message
    [(name, size)] = list_spool_files(paths[1]).items()
    with open(os.path.join(paths[1], name), "rb") as spool_file:
        data = spool_file.read()
    assert size < 1000
    assert data.endswith(b"\n")
    assert all(json.loads(line)["pad"] for line in data.splitlines())


def test_event_route_queues_through_spool(tmp_path):
    environ = credentials_env()
    settings = Settings(data_dir=str(tmp_path / "data"), queue_spool=True, environ=environ)
    runtime = Runtime(settings, load_config_text(BASE_CONFIG, environ=environ))
    client = create_app(runtime).test_client()
    raw, headers = signed(message_event("hello"))

    try:
        first = client.post("/api/v1/slack/event", data=raw, headers=headers)
        repeat = client.post("/api/v1/slack/event", data=raw, headers=dict(headers, **{"X-Slack-Retry-Num": "1"}))

        assert first.get_json() == {"status": "success"}
        assert repeat.get_json() == {"status": "success", "duplicate": True}
        assert os.listdir(str(tmp_path / "data" / "queue.db-spool"))
        assert [body["payload"]["event"]["text"] for body in drain(runtime.queue)] == ["hello"]
    finally:
        runtime.close()


def test_writer_starts_new_file_at_size_limit(make_spooled, paths, every_import_cleans_up):
    writer = SpoolWriter(paths[1], max_file_bytes=200)
    for number in range(10):
        writer.append(spool_line(f"m{number}", {"n": number}).rstrip(b"\n"))
    assert len(list_spool_files(paths[1])) > 1
    queue = make_spooled()

    assert [body["n"] for body in drain(queue)] == list(range(10))
    assert queue.get(timeout=0.1) is None

    assert len(list_spool_files(paths[1])) == 1
    writer.close()
    assert queue.get(timeout=0.1) is None
    assert list_spool_files(paths[1]) == {}


def test_queue_spool_setting_opens_spool_beside_database(tmp_path, caplog):
    settings = Settings.from_env({"QUEUE_SPOOL": "1", "OMNIBOT_DATA_DIR": str(tmp_path)})
    queue = backends.open_queue(None, settings.data_dir, spool=settings.queue_spool)

    try:
        queue.put({"n": 1})
        assert len(list_spool_files(str(tmp_path / "queue.db-spool"))) == 1
    finally:
        queue.close()


def test_queue_spool_unset_means_on_for_sqlite(tmp_path):
    settings = Settings.from_env({"OMNIBOT_DATA_DIR": str(tmp_path)})
    assert settings.queue_spool is None
    queue = backends.open_queue(None, settings.data_dir, spool=settings.queue_spool)

    try:
        queue.put({"n": 1})
        assert len(list_spool_files(str(tmp_path / "queue.db-spool"))) == 1
    finally:
        queue.close()


def test_queue_spool_off_writes_database(tmp_path):
    settings = Settings.from_env({"QUEUE_SPOOL": "0", "OMNIBOT_DATA_DIR": str(tmp_path)})
    queue = backends.open_queue(None, settings.data_dir, spool=settings.queue_spool)

    try:
        queue.put({"n": 1})
        assert list_spool_files(str(tmp_path / "queue.db-spool")) == {}
        assert queue.depth() == 1
    finally:
        queue.close()


def test_close_imports_and_deletes_own_files(make_spooled, paths):
    web = make_spooled()
    web.put({"n": 1})
    web.put({"n": 2})

    web.close()

    assert list_spool_files(paths[1]) == {}
    assert drain(make_spooled()) == [{"n": 1}, {"n": 2}]
