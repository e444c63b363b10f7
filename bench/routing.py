"""Cost per message of handler matching against 10, 100, 1,000 and 10,000 handlers.

Each size is loaded through the real config loader (YAML, validation, the
per-bot command index), then :func:`omnibot.processing.matching.match_message`
is timed on messages that stand in for the worker's ``Message`` container
(only the attributes matching reads). Command and regex handlers are
measured separately:

- command: N command handlers with distinct ``match`` strings of realistic
  lengths, none a prefix of another; a directed message whose command is the
  last handler's (the worst case of a scan in config order) and one that
  matches none. The same
  messages also go through a plain scan of the handlers in config order,
  the algorithm omnibot used before the index, for comparison.
- regex: N regex handlers (word-bounded ticket patterns); a message that
  matches the last one and one that matches none. Every regex handler must be
  searched, so the cost is also given per handler.

Before timing, the results of the index are checked against the plain scan.

Run from the repository root::

    python -m bench.routing
    python -m bench.routing --sizes 10,100,1000 --json routing.json
"""

import argparse
import json
import os
import sys
import time
import types
import typing

from bench.common import cpu_model, format_table, load_average
from omnibot.config import load_config_text
from omnibot.processing import matching

CREDENTIALS = {
    "CREDENTIALS_SLACK_SIGNING_SECRET_A0BENCH01": "bench-signing-secret",
    "CREDENTIALS_SLACK_OAUTH_BOT_TOKEN_A0BENCH01": "xoxb-bench-token",
}

CONFIG_HEAD = """
teams: {"bench-team": "T0BENCH01"}
bots: {"bench-team": {"benchbot": "A0BENCH01"}}
primary_bot: {"bench-team": "benchbot"}
handlers:
  message_handlers:
"""

CALLBACK = "omnibot.callbacks.message_callbacks:echo_callback"

VERBS = ["deploy", "status", "restart", "rollback", "page", "ticket", "oncall", "scale", "logs", "whois", "q"]


def command_match(number: int) -> str:
    """Return the ``match`` of command handler ``number``: a verb, then a service name or a number.

    Numbers are zero-padded, so no match is a prefix of another and the
    message built for the last handler is matched by that handler only.
    """
    verb = VERBS[number % len(VERBS)]
    return f"{verb} service-{number:05d}" if number % 3 else f"{verb}-{number:05d}"


def regex_match(number: int) -> str:
    return rf"\b(?:TICKET|INC)-{number}\b"


def build_config(kind: str, size: int):
    """Load a config with ``size`` message handlers of ``kind`` (``command`` or ``regex``) through the loader."""
    lines = [CONFIG_HEAD]
    for number in range(size):
        match = command_match(number) if kind == "command" else regex_match(number)
        lines.append(f"    - match: {json.dumps(match)}\n")
        lines.append(f"      match_type: {kind}\n")
        lines.append(f"      bots: {{\"bench-team\": [\"benchbot\"]}}\n")
        lines.append(f"      callbacks: [{{module: \"{CALLBACK}\"}}]\n")
    return load_config_text("".join(lines), environ=CREDENTIALS)


def make_message(bot, text: str):
    """Return an object with the attributes match_message reads, for a directed, top-level message."""
    return types.SimpleNamespace(bot=bot, command_text=text, parsed_text=text, directed=True, mentioned=True, is_reply=False)


def linear_scan(message) -> typing.List[matching.Match]:
    """Match ``message`` by scanning its bot's handlers in config order, without the index."""
    matches = []
    command_matched = False
    for handler in message.bot.message_handlers:
        if message.is_reply and not handler.match_reply:
            continue
        if handler.match_type == "command":
            if command_matched or not (message.directed or (handler.match_mention and message.mentioned)):
                continue
            if message.command_text.startswith(handler.match):
                command_matched = True
                matches.append(matching.Match(handler, "command", handler.match, message.command_text[len(handler.match):].strip()))
        elif handler.match_type == "regex":
            if (handler.pattern.search(message.parsed_text) is not None) != handler.absence:
                matches.append(matching.Match(handler, "regex", handler.match))
    return matches


def time_per_call(function, argument, min_seconds: float) -> float:
    """Return the best of 5 measurements of one call of ``function(argument)``, in microseconds."""
    calls = 1
    while True:
        started = time.perf_counter()
        for _ in range(calls):
            function(argument)
        if time.perf_counter() - started >= min_seconds / 5:
            break
        calls *= 2

    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(calls):
            function(argument)
        best = min(best, (time.perf_counter() - started) / calls)
    return best * 1e6


def measure(kind: str, size: int, min_seconds: float) -> dict:
    """Time matching for one handler kind and count; raise AssertionError when the index and the scan disagree."""
    started = time.perf_counter()
    config = build_config(kind, size)
    load_seconds = time.perf_counter() - started
    bot = config.bot("bench-team", "benchbot")

    if kind == "command":
        hit = make_message(bot, f"{command_match(size - 1)} now please")
    else:
        hit = make_message(bot, f"can someone look at INC-{size - 1} before the release")
    miss = make_message(bot, "what is for lunch today")

    for message in (hit, miss):
        indexed = [(found.handler.index, found.args) for found in matching.match_message(message)]
        scanned = [(found.handler.index, found.args) for found in linear_scan(message)]
        if indexed != scanned:
            raise AssertionError(f"{kind} x {size}: the index found {indexed}, the scan {scanned}")
    if not matching.match_message(hit):
        raise AssertionError(f"{kind} x {size}: the message meant to match the last handler matched nothing")

    result = {
        "kind": kind,
        "handlers": size,
        "load_seconds": load_seconds,
        "hit_us": time_per_call(matching.match_message, hit, min_seconds),
        "miss_us": time_per_call(matching.match_message, miss, min_seconds),
    }
    if kind == "command":
        result["scan_hit_us"] = time_per_call(linear_scan, hit, min_seconds)
        result["scan_miss_us"] = time_per_call(linear_scan, miss, min_seconds)
    return result


def main(argv: typing.Optional[typing.Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--sizes", default="10,100,1000,10000", help="comma-separated handler counts (default 10,100,1000,10000)")
    parser.add_argument("--min-seconds", type=float, default=0.5, help="time spent measuring each figure (default 0.5)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    sizes = [int(size) for size in args.sizes.split(",") if size.strip()]

    print(f"host: {cpu_model()}, {os.cpu_count()} cores; Python {sys.version.split()[0]}; load average {load_average()}", flush=True)
    results = []
    for kind in ("command", "regex"):
        for size in sizes:
            result = measure(kind, size, args.min_seconds)
            results.append(result)
            print(f"{kind} x {size}: measured (config load {result['load_seconds']:.2f} s)", flush=True)

    print()
    print(format_results(results))
    print(f"load average after: {load_average()}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as output:
            json.dump(results, output, indent=2)
    return 0


def format_results(results: typing.List[dict]) -> str:
    """Return one table for command routing and one for regex routing, in microseconds per message."""
    command_rows = [
        [
            result["handlers"],
            f"{result['hit_us']:.2f}",
            f"{result['miss_us']:.2f}",
            f"{result['scan_hit_us']:.1f}",
            f"{result['scan_miss_us']:.1f}",
        ]
        for result in results
        if result["kind"] == "command"
    ]
    regex_rows = [
        [
            result["handlers"],
            f"{result['hit_us']:.1f}",
            f"{result['miss_us']:.1f}",
            f"{result['hit_us'] * 1000 / result['handlers']:.0f}",
            f"{result['miss_us'] * 1000 / result['handlers']:.0f}",
        ]
        for result in results
        if result["kind"] == "regex"
    ]
    return "\n".join(
        [
            "command handlers (us per message; index = omnibot, scan = handlers in config order without the index)",
            format_table(["handlers", "index hit", "index miss", "scan hit", "scan miss"], command_rows),
            "",
            "regex handlers (us per message, and ns per handler)",
            format_table(["handlers", "hit", "miss", "ns/handler hit", "ns/handler miss"], regex_rows),
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
