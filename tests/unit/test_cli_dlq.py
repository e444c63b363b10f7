"""``omnibot dlq``: list, show, replay and purge dead letters on the SQLite and Redis queues."""

import json
import os
import sqlite3
import uuid

import pytest

from omnibot import backends
from omnibot.backends.redis_connection import create_client
from omnibot.backends.spool_records import PendingPut
from omnibot.cli import dlq, main
from tests.unit.backends.conftest import redis_url  # noqa: F401 - the fixture skips without Redis

EIGHT_DAYS = 8 * 86400


@pytest.fixture(params=[pytest.param("sqlite", id="sqlite"), pytest.param("redis", id="redis", marks=pytest.mark.redis)])
def queue_url(request, tmp_path, monkeypatch):
    """Point QUEUE_URL (or OMNIBOT_DATA_DIR) at an empty queue of one backend and yield its URL."""
    if request.param == "sqlite":
        monkeypatch.setenv("OMNIBOT_DATA_DIR", str(tmp_path / "data"))
        yield None
        return

    base = request.getfixturevalue("redis_url")
    prefix = f"test-dlq-{uuid.uuid4().hex}"
    url = f"{base}?prefix={prefix}"
    monkeypatch.setenv("QUEUE_URL", url)
    yield url

    client = create_client(base)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def queue(queue_url, tmp_path):
    """The queue that ``omnibot dlq`` opens, with one attempt per message, so one failure dead-letters it."""
    opened = backends.open_queue(queue_url, str(tmp_path / "data"), max_attempts=1)
    opened.depth()  # creates the SQLite file, as the first event would
    yield opened
    opened.close()


def dead_letter(queue, body, error="callback tests.recorders:explode raised RuntimeError: planned"):
    """Put ``body`` on ``queue``, lease it and fail it once; return its message id."""
    message_id = queue.put(body)
    delivery = queue.get(timeout=2)
    assert delivery is not None
    assert delivery.id == message_id
    assert queue.fail(delivery, error) is True
    return message_id


def event_body(event_id, text="hello"):
    return {
        "kind": "event",
        "app_id": "A0TEST001",
        "team_id": "T0TEST001",
        "payload": {
            "token": "legacy-token-value",
            "event_id": event_id,
            "event": {"type": "message", "text": text},
        },
    }


def age_dead_letter(queue, message_id, seconds):
    """Move the failure time of a dead letter ``seconds`` into the past, in the backend's own storage."""
    if hasattr(queue, "path"):
        with sqlite3.connect(queue.path) as connection:
            connection.execute("UPDATE dead_letters SET failed_at = failed_at - ? WHERE id = ?", (seconds, message_id))
        return
    by_time = queue.stream.replace(":stream", ":dead_letters_by_time")
    queue._client.zincrby(by_time, -seconds, message_id)


def run_dlq(capsys, *arguments):
    """Run ``omnibot dlq ARGUMENTS`` in this process; return (exit status, stdout, stderr)."""
    status = main(["dlq", *arguments])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


# -- list and show ---------------------------------------------------------------


def test_list_shows_counts_and_errors(queue, capsys):
    first = dead_letter(queue, event_body("Ev1"), error="callback a:b raised RuntimeError: first failure")
    second = dead_letter(queue, event_body("Ev2"), error="callback a:b timed out after 1 s (CALLBACK_TIMEOUT)")
    queue.put(event_body("Ev3"))

    status, out, _ = run_dlq(capsys, "list")

    assert status == 0
    assert "2 dead letter(s)" in out
    assert "1 ready" in out
    assert first in out
    assert second in out
    assert "first failure" in out
    assert "timed out after 1 s" in out
    assert "event message" in out
    assert out.index(first) < out.index(second)


@pytest.mark.redis
def test_list_counts_redis_spool_lines(redis_url, tmp_path, monkeypatch, capsys):  # noqa: F811 - the fixture
    prefix = f"test-dlq-{uuid.uuid4().hex}"
    data_dir = str(tmp_path / "data")
    spool = backends.redis_spool_directory(data_dir)
    os.makedirs(spool)
    lines = b"".join(PendingPut(f"m{number}", 1.0e9, 0.0, (), json.dumps(event_body(f"Ev{number}"))).to_line() + b"\n" for number in range(2))
    with open(os.path.join(spool, "4242-1-0000000000000001-abcd0123.spool"), "wb") as spool_file:
        spool_file.write(lines)
    monkeypatch.setenv("QUEUE_URL", f"{redis_url}?prefix={prefix}")
    monkeypatch.setenv("QUEUE_SPOOL", "1")
    monkeypatch.setenv("OMNIBOT_DATA_DIR", data_dir)

    try:
        status, out, _ = run_dlq(capsys, "list")
    finally:
        client = create_client(redis_url)
        for key in client.scan_iter(match=f"{prefix}:*"):
            client.delete(key)
        client.close()

    assert status == 0
    assert "2 ready" in out


def test_list_json_has_counts(queue, capsys):
    message_id = dead_letter(queue, event_body("EvJson"))

    status, out, _ = run_dlq(capsys, "list", "--format", "json")

    assert status == 0
    document = json.loads(out)
    assert document["counts"]["dead"] == 1
    assert [letter["id"] for letter in document["dead_letters"]] == [message_id]
    assert document["dead_letters"][0]["event_id"] == "EvJson"
    assert document["dead_letters"][0]["attempts"] == 1
    assert "RuntimeError: planned" in document["dead_letters"][0]["error"]


def test_list_limit_says_more_exist(queue, capsys):
    for number in range(3):
        dead_letter(queue, event_body(f"EvLimit{number}"))

    status, out, _ = run_dlq(capsys, "list", "--limit", "1")

    assert status == 0
    assert "3 dead letter(s)" in out
    assert "showing the oldest 1 of 3" in out


def test_list_empty_queue(queue, capsys):
    status, out, _ = run_dlq(capsys, "list")

    assert status == 0
    assert "0 dead letter(s)" in out


def test_show_prints_error_and_redacts_token(queue, capsys):
    message_id = dead_letter(queue, event_body("EvShow", text="deploy api"), error="line one\nline two")

    status, out, _ = run_dlq(capsys, "show", message_id)

    assert status == 0
    assert message_id in out
    assert "last error: line one\nline two" in out
    assert "attempts:   1" in out
    assert "deploy api" in out
    assert "legacy-token-value" not in out
    assert dlq.REDACTED in out


def test_show_json_redacts_token(queue, capsys):
    message_id = dead_letter(queue, event_body("EvShowJson"))

    status, out, _ = run_dlq(capsys, "show", message_id, "--format", "json")

    assert status == 0
    document = json.loads(out)
    assert document["id"] == message_id
    assert document["body"]["payload"]["token"] == dlq.REDACTED
    assert document["body"]["payload"]["event_id"] == "EvShowJson"


def test_show_unknown_id_fails(queue, capsys):
    status, out, err = run_dlq(capsys, "show", "no-such-id")

    assert status == 1
    assert out == ""
    assert "no-such-id not found" in err


# -- replay -------------------------------------------------------------------------


def test_replay_one_puts_it_back(queue, capsys):
    replayed = dead_letter(queue, event_body("EvReplay"))
    untouched = dead_letter(queue, event_body("EvUntouched"))

    status, out, _ = run_dlq(capsys, "replay", replayed)

    assert status == 0
    assert f"replayed {replayed}" in out
    assert queue.dead_letter(replayed) is None
    assert queue.dead_letter(untouched) is not None
    delivery = queue.get(timeout=2)
    assert delivery.id == replayed
    assert delivery.attempts == 1
    assert delivery.body == dict(event_body("EvReplay"), replayed_at=delivery.body["replayed_at"])


def test_replay_all(queue, capsys):
    ids = {dead_letter(queue, event_body(f"EvAll{number}")) for number in range(3)}

    status, out, _ = run_dlq(capsys, "replay", "--all")

    assert status == 0
    assert "replayed 3 dead letter(s)" in out
    assert queue.dead_letters() == []
    delivered = {queue.get(timeout=2).id for _ in range(3)}
    assert delivered == ids


def test_replay_all_skips_letters_that_fail_again(queue):
    """A message that fails again during ``replay --all`` is replayed once, not in a loop."""
    ids = [dead_letter(queue, event_body(f"EvLoop{number}")) for number in range(2)]
    original_replay = queue.replay

    def replay_and_fail_again(message_id):
        replayed = original_replay(message_id)
        delivery = queue.get(timeout=2)
        queue.fail(delivery, "failed again")
        return replayed

    queue.replay = replay_and_fail_again

    assert dlq.replay_all(queue) == (2, 0)
    assert sorted(letter.id for letter in queue.dead_letters()) == sorted(ids)


def write_unreadable_spool_line(tmp_path):
    """Leave a spool file whose one line cannot be read, as a damaged file would; return its dead letter id."""
    spool = tmp_path / "data" / "queue.db-spool"
    spool.mkdir(exist_ok=True)
    (spool / "4242-1-0-abc.spool").write_bytes(b"not a spool line\n")
    return "spool-4242-1-0-abc.spool-0"


@pytest.mark.parametrize("queue_url", ["sqlite"], indirect=True)
def test_replay_refuses_unreadable_spool_line(queue, tmp_path, capsys):
    letter_id = write_unreadable_spool_line(tmp_path)
    assert queue.get(timeout=0.5) is None

    status, _, err = run_dlq(capsys, "replay", letter_id)

    assert status == 1
    assert f"dead letter {letter_id} is a spool line that could not be read" in err
    assert [letter.id for letter in queue.dead_letters()] == [letter_id]


@pytest.mark.parametrize("queue_url", ["sqlite"], indirect=True)
def test_replay_all_skips_unreadable_spool_line(queue, tmp_path, capsys):
    letter_id = write_unreadable_spool_line(tmp_path)
    assert queue.get(timeout=0.5) is None
    replayable = dead_letter(queue, event_body("EvReadable"))

    status, out, _ = run_dlq(capsys, "replay", "--all")

    assert status == 0
    assert "replayed 1 dead letter(s)" in out
    assert "skipped 1 spool line(s) that could not be read" in out
    assert [letter.id for letter in queue.dead_letters()] == [letter_id]
    assert queue.get(timeout=2).id == replayable


def test_replay_unknown_id_fails(queue, capsys):
    status, _, err = run_dlq(capsys, "replay", "no-such-id")

    assert status == 1
    assert "no-such-id not found" in err


def test_replay_needs_id_or_all(queue, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["dlq", "replay"])

    assert exit_info.value.code == 2


# -- purge --------------------------------------------------------------------------


def test_purge_older_than_keeps_newer(queue, capsys):
    old = dead_letter(queue, event_body("EvOld"))
    recent = dead_letter(queue, event_body("EvRecent"))
    age_dead_letter(queue, old, EIGHT_DAYS)

    status, out, _ = run_dlq(capsys, "purge", "--older-than", "7d")

    assert status == 0
    assert "purged 1 dead letter(s) that failed at least 7d ago; 1 remain" in out
    assert queue.dead_letter(old) is None
    assert queue.dead_letter(recent) is not None


def test_purge_zero_age_deletes_all(queue, capsys):
    dead_letter(queue, event_body("EvPurge1"))
    dead_letter(queue, event_body("EvPurge2"))

    status, out, _ = run_dlq(capsys, "purge", "--older-than", "0s")

    assert status == 0
    assert "purged 2 dead letter(s)" in out
    assert queue.dead_letters() == []


@pytest.mark.parametrize(
    "age",
    [
        "7",  # no unit
        "7x",  # unknown unit
        "-1d",  # negative
        "d",  # no number
        "",  # empty
    ],
)
def test_purge_rejects_invalid_age(tmp_path, monkeypatch, capsys, age):
    monkeypatch.setenv("OMNIBOT_DATA_DIR", str(tmp_path))

    with pytest.raises(SystemExit) as exit_info:
        main(["dlq", "purge", f"--older-than={age}"])

    assert exit_info.value.code == 2
    assert "invalid age" in capsys.readouterr().err


def test_purge_needs_older_than(tmp_path, monkeypatch):
    monkeypatch.setenv("OMNIBOT_DATA_DIR", str(tmp_path))

    with pytest.raises(SystemExit) as exit_info:
        main(["dlq", "purge"])

    assert exit_info.value.code == 2


# -- ages and failures ----------------------------------------------------------------


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("45s", 45),
        ("30m", 1800),
        ("12h", 43200),
        ("7d", 604800),
        ("2w", 1209600),
        ("1.5h", 5400),  # a decimal number
        (" 7d ", 604800),  # surrounding spaces
        ("0s", 0),
    ],
)
def test_parse_age(text, seconds):
    assert dlq.parse_age(text) == seconds


@pytest.mark.parametrize(
    "seconds, shown",
    [
        (604800, "7d"),
        (1209600, "14d"),  # weeks are shown in days
        (86400 * 3, "3d"),
        (5400, "90m"),
        (45, "45s"),
        (0, "0s"),
        (90.5, "90.5s"),  # not a whole number of minutes
    ],
)
def test_exact_age(seconds, shown):
    assert dlq.exact_age(seconds) == shown


def test_data_dir_option_selects_sqlite_file(tmp_path, capsys):
    data_dir = tmp_path / "elsewhere"
    queue = backends.open_queue(None, str(data_dir), max_attempts=1)
    try:
        message_id = dead_letter(queue, event_body("EvDataDir"))
    finally:
        queue.close()

    status, out, _ = run_dlq(capsys, "list", "--data-dir", str(data_dir))

    assert status == 0
    assert message_id in out
    assert str(data_dir) in out


def test_unavailable_queue_fails(monkeypatch, capsys):
    # Port 1 on loopback has no server, so the connection is refused at once.
    monkeypatch.setenv("QUEUE_URL", "redis://127.0.0.1:1/0")

    status, out, err = run_dlq(capsys, "list")

    assert status == 1
    assert out == ""
    assert "queue backend is unavailable" in err


def test_invalid_queue_url_fails(monkeypatch, capsys):
    monkeypatch.setenv("QUEUE_URL", "ftp://127.0.0.1/queue")

    status, _, err = run_dlq(capsys, "list")

    assert status == 1
    assert "invalid queue setting" in err


def test_missing_sqlite_queue_is_an_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OMNIBOT_DATA_DIR", str(tmp_path / "elsewhere"))

    status, out, err = run_dlq(capsys, "list")

    assert status == 1
    assert out == ""
    assert "no queue at" in err
    assert not (tmp_path / "elsewhere").exists()


def test_invalid_environment_value_exits_2(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("QUEUE_MAX_ATTEMPTS", "five")

    with pytest.raises(SystemExit) as exit_info:
        main(["dlq", "list", "--data-dir", str(tmp_path)])

    assert exit_info.value.code == 2
    assert capsys.readouterr().err == "omnibot: QUEUE_MAX_ATTEMPTS='five' is not an integer\n"
