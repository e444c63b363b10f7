"""List, show, replay and purge dead letters: messages that failed QUEUE_MAX_ATTEMPTS times.

The queue is the one the worker uses: QUEUE_URL, or the SQLite file under
--data-dir ($OMNIBOT_DATA_DIR, default ./var). Replayed messages go back to
the queue with their attempts reset, and a running worker processes them.
--config is accepted as by every command but not read, because QUEUE_URL
and --data-dir alone select the queue.
"""

import argparse
import json
import os
import re
import sys
import time
import typing

from omnibot import backends
from omnibot.cli import add_config_argument
from omnibot.cli.common import settings_from_args
from omnibot.errors import BackendUnavailable

AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_AGE_FORM = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")

# Dead letters read per round by ``replay --all``.
REPLAY_BATCH = 500

# Characters of the last error shown per line by ``list``. ``show`` prints all of it.
LIST_ERROR_WIDTH = 80

REDACTED = "<redacted>"


def add_arguments(parser):
    # Every action takes the queue options, so they may follow the action name.
    common = argparse.ArgumentParser(add_help=False)
    add_config_argument(common)
    common.add_argument("--data-dir", help="folder of the SQLite queue when QUEUE_URL is not set (default: $OMNIBOT_DATA_DIR or ./var)")

    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True

    listing = actions.add_parser("list", parents=[common], help="list dead letters, oldest failure first, with counts and the last error")
    listing.add_argument("--limit", type=int, default=100, help="dead letters to list (default 100)")
    listing.add_argument("--format", choices=("text", "json"), default="text", help="output format (default text)")

    show = actions.add_parser("show", parents=[common], help="print one dead letter: last error, attempts and the queued payload")
    show.add_argument("id", help="the dead letter's message id, as printed by list")
    show.add_argument("--format", choices=("text", "json"), default="text", help="output format (default text)")

    replay = actions.add_parser("replay", parents=[common], help="put dead letters back on the queue with their attempts reset")
    target = replay.add_mutually_exclusive_group(required=True)
    target.add_argument("id", nargs="?", help="the message id to replay")
    target.add_argument("--all", action="store_true", help="replay every dead letter")

    purge = actions.add_parser("purge", parents=[common], help="delete dead letters that failed longer ago than an age")
    purge.add_argument(
        "--older-than",
        required=True,
        type=_age_argument,
        metavar="AGE",
        help="a number and a unit: s, m, h, d or w, such as 30m, 12h or 7d (0s deletes every dead letter)",
    )


def run(args, out=None, err=None):
    """Run one ``omnibot dlq`` action; return the exit status (1 when an id is not found or the queue is unavailable)."""
    out = out or sys.stdout
    err = err or sys.stderr
    settings = settings_from_args(args, data_dir=args.data_dir)

    try:
        path = backends.sqlite_queue_path(settings.queue_url, settings.data_dir)
    except ValueError as error:
        print(f"omnibot dlq: invalid queue setting: {error}", file=err)
        return 1
    if path is not None and not os.path.exists(path):
        print(
            f"omnibot dlq: no queue at {path}; run from omnibot's working directory, "
            "or pass --data-dir or set OMNIBOT_DATA_DIR or QUEUE_URL",
            file=err,
        )
        return 1

    try:
        queue = backends.open_queue(
            settings.queue_url,
            settings.data_dir,
            visibility_timeout=settings.visibility_timeout,
            max_attempts=settings.max_attempts,
            backoff_base=settings.retry_backoff_base,
            # On Redis, only a queue opened with the spool counts the lines that wait in spool files.
            spool=settings.queue_spool,
        )
    except ValueError as error:
        print(f"omnibot dlq: invalid queue setting: {error}", file=err)
        return 1
    except OSError as error:
        # With QUEUE_SPOOL=1 on Redis, opening the queue creates its spool directory.
        print(f"omnibot dlq: cannot open the queue: {error}; check OMNIBOT_DATA_DIR", file=err)
        return 1
    except BackendUnavailable as error:
        # A Redis Cluster URL connects when the queue is opened.
        print(f"omnibot dlq: the queue backend is unavailable ({error}); check QUEUE_URL and retry", file=err)
        return 1

    try:
        return ACTIONS[args.action](queue, args, out, err)
    except BackendUnavailable as error:
        print(f"omnibot dlq: the queue backend is unavailable ({error}); check QUEUE_URL and retry", file=err)
        return 1
    finally:
        queue.close()


# -- actions -----------------------------------------------------------------


def list_dead_letters(queue, args, out, err) -> int:
    """Print the dead-letter count, the queue's other counts and up to ``--limit`` dead letters."""
    counts = queue_counts(queue)
    letters = queue.dead_letters(limit=max(args.limit, 0))
    total = counts.get("dead", len(letters))

    if args.format == "json":
        document = {"counts": counts, "dead_letters": [summary(letter) for letter in letters]}
        print(json.dumps(document, indent=2), file=out)
        return 0

    print(f"{total} dead letter(s) in {describe_queue(queue)}", file=out)
    others = ", ".join(f"{counts[name]} {name}" for name in ("ready", "leased", "delayed") if name in counts)
    if others:
        print(f"queue: {others}", file=out)
    if not letters:
        return 0

    print(file=out)
    print(f"{'ID':32}  {'FAILED AT (UTC)':20}  {'AGE':>5}  {'ATTEMPTS':>8}  {'TYPE':30}  LAST ERROR", file=out)
    now = time.time()
    for letter in letters:
        description = describe_body(letter.body)
        error = one_line(letter.error, LIST_ERROR_WIDTH)
        print(
            f"{letter.id:32}  {format_time(letter.failed_at):20}  {format_age(now - letter.failed_at):>5}"
            f"  {letter.attempts:>8}  {description[:30]:30}  {error}",
            file=out,
        )
    if total > len(letters):
        print(f"\nshowing the oldest {len(letters)} of {total}; raise --limit to see more", file=out)
    return 0


def show_dead_letter(queue, args, out, err) -> int:
    """Print one dead letter in full, with ``token`` fields of its body redacted."""
    letter = queue.dead_letter(args.id)
    if letter is None:
        print(f"omnibot dlq: dead letter {args.id} not found; `omnibot dlq list` prints the ids", file=err)
        return 1

    body = redact_tokens(letter.body)
    if args.format == "json":
        document = dict(summary(letter), body=body)
        print(json.dumps(document, indent=2), file=out)
        return 0

    print(f"id:         {letter.id}", file=out)
    print(f"type:       {describe_body(letter.body)}", file=out)
    print(f"failed at:  {format_time(letter.failed_at)} UTC ({format_age(time.time() - letter.failed_at)} ago)", file=out)
    print(f"attempts:   {letter.attempts}", file=out)
    print(f"last error: {letter.error}", file=out)
    print("body:", file=out)
    print(json.dumps(body, indent=2, sort_keys=True), file=out)
    return 0


def replay_dead_letters(queue, args, out, err) -> int:
    """Replay one dead letter, or every dead letter with ``--all``; letters the queue cannot replay are reported."""
    if not args.all:
        try:
            replayed = queue.replay(args.id)
        except ValueError as error:
            print(
                f"omnibot dlq: {error}; `omnibot dlq show {args.id}` prints it and `omnibot dlq purge` deletes it",
                file=err,
            )
            return 1
        if not replayed:
            print(f"omnibot dlq: dead letter {args.id} not found; `omnibot dlq list` prints the ids", file=err)
            return 1
        print(f"replayed {args.id}", file=out)
        return 0

    replayed, skipped = replay_all(queue)
    print(f"replayed {replayed} dead letter(s)", file=out)
    if skipped:
        print(
            f"skipped {skipped} spool line(s) that could not be read and cannot be replayed; "
            "`omnibot dlq show ID` prints one",
            file=out,
        )
    return 0


def replay_all(queue) -> typing.Tuple[int, int]:
    """Replay every dead letter once; return how many were replayed and how many the queue could not replay.

    Each round takes the oldest dead letters. A replayed message that fails
    again while this runs becomes the newest dead letter, so it sorts after
    every letter not yet replayed. The ``seen`` set keeps it from being
    replayed a second time, and a round with nothing new ends the run.
    """
    seen: typing.Set[str] = set()
    replayed = 0
    skipped = 0
    while True:
        batch = [letter.id for letter in queue.dead_letters(limit=REPLAY_BATCH) if letter.id not in seen]
        if not batch:
            return replayed, skipped
        for message_id in batch:
            seen.add(message_id)
            try:
                if queue.replay(message_id):
                    replayed += 1
            except ValueError:
                # The queue cannot replay it (a spool line that could not be read), so it stays a dead letter.
                skipped += 1


def purge_dead_letters(queue, args, out, err) -> int:
    """Delete the dead letters older than ``--older-than`` and print how many went and how many remain."""
    purged = queue.purge_dead_letters(args.older_than)
    remaining = queue_counts(queue).get("dead")
    left = f"; {remaining} remain" if remaining is not None else ""
    print(f"purged {purged} dead letter(s) that failed at least {exact_age(args.older_than)} ago{left}", file=out)
    return 0


ACTIONS = {
    "list": list_dead_letters,
    "show": show_dead_letter,
    "replay": replay_dead_letters,
    "purge": purge_dead_letters,
}


# -- formatting ----------------------------------------------------------------


def parse_age(text: str) -> float:
    """Return the seconds of an age such as ``45s``, ``30m``, ``12h``, ``7d`` or ``2w``.

    Raises:
        ValueError: ``text`` is not a number followed by one of the units.
    """
    match = _AGE_FORM.match(text or "")
    if match is None:
        raise ValueError(f"invalid age {text!r}: give a number and a unit (s, m, h, d or w), such as 30m, 12h or 7d")
    return float(match.group(1)) * AGE_UNITS[match.group(2)]


def _age_argument(text: str) -> float:
    try:
        return parse_age(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def format_age(seconds: float) -> str:
    """Return ``seconds`` in whole units of the largest unit that fits: ``45s``, ``30m``, ``12h``, ``7d`` (rounded down)."""
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def exact_age(seconds: float) -> str:
    """Return ``seconds`` in the largest unit up to days that divides it exactly, such as ``7d`` or ``90m``, else in seconds."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def format_time(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(timestamp))


def one_line(text: str, width: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 3] + "..."


def describe_body(body: typing.Mapping) -> str:
    """Return a short description of a queued envelope, such as ``event message`` or ``slash_command /deploy``."""
    kind = body.get("kind") or "unknown"
    payload = body.get("payload") if isinstance(body.get("payload"), dict) else {}
    if kind == "event":
        event = payload.get("event") if isinstance(payload.get("event"), dict) else {}
        detail = event.get("type")
    elif kind == "slash_command":
        detail = payload.get("command")
    else:
        detail = payload.get("type")
    return f"{kind} {detail}" if isinstance(detail, str) and detail else str(kind)


def summary(letter) -> dict:
    """Return the JSON fields of a dead letter that ``list --format json`` prints."""
    body = letter.body if isinstance(letter.body, dict) else {}
    payload = body.get("payload") if isinstance(body.get("payload"), dict) else {}
    return {
        "id": letter.id,
        "type": describe_body(body),
        "app_id": body.get("app_id"),
        "team_id": body.get("team_id"),
        "event_id": payload.get("event_id"),
        "trigger_id": payload.get("trigger_id"),
        "attempts": letter.attempts,
        "failed_at": letter.failed_at,
        "error": letter.error,
    }


def redact_tokens(value):
    """Return a copy of ``value`` with every ``token`` field replaced, because it contains the legacy verification token."""
    if isinstance(value, dict):
        return {key: REDACTED if key == "token" else redact_tokens(item) for key, item in value.items()}
    if isinstance(value, list):
        return [redact_tokens(item) for item in value]
    return value


def queue_counts(queue) -> typing.Dict[str, int]:
    """Return the queue's message counts by state (``ready``, ``leased``, ``delayed``, ``dead``), or {} when it has none."""
    stats = getattr(queue, "stats", None)
    return dict(stats()) if callable(stats) else {}


def describe_queue(queue) -> str:
    path = getattr(queue, "path", None)
    if path:
        return f"SQLite file {path}"
    stream = getattr(queue, "stream", None)
    if stream:
        return f"Redis stream {stream}"
    return type(queue).__name__
