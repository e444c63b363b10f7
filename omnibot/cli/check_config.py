"""Validate a config file exactly as the server would, and print every problem.

Imports every callback and check and tests its kwargs against the
function's signature. Prints one ``file:line: key.path: message`` line per
problem. Exits 1 when there are errors (or warnings, with --strict), 2 when
no file is named, else 0 after a one-line summary.
"""

import os
import sys

from omnibot.config.loader import check_config_text

USAGE_ERROR = 2


def add_arguments(parser):
    parser.add_argument("path", nargs="?", help="config file (default: --config or $CONFIG_FILE)")
    parser.add_argument("--config", metavar="PATH", help="config file, as for the other commands")
    parser.add_argument("--strict", action="store_true", help="also fail on warnings")


def run(args):
    path = args.path or args.config or os.environ.get("CONFIG_FILE")
    if not path:
        print("omnibot check-config: no config file: pass PATH or set CONFIG_FILE", file=sys.stderr)
        return USAGE_ERROR
    try:
        with open(path, encoding="utf-8") as source:
            text = source.read()
    except OSError as error:
        print(f"{path}: cannot read: {error.strerror}", file=sys.stderr)
        return 1
    except UnicodeDecodeError as error:
        print(f"{path}: not UTF-8 text: {error}", file=sys.stderr)
        return 1

    config, problems = check_config_text(text, path)
    for problem in problems:
        print(problem)

    errors = sum(1 for problem in problems if problem.is_error)
    warnings = len(problems) - errors
    if errors or (args.strict and warnings):
        strict = " (--strict fails on warnings)" if args.strict and not errors else ""
        print(f"{path}: {errors} error(s), {warnings} warning(s){strict}", file=sys.stderr)
        return 1

    callbacks = sum(len(handler.callbacks) for handler in config.handlers)
    print(
        f"{path}: OK: {len(config.teams)} teams, {len(config.bots)} bots, "
        f"{len(config.handlers)} handlers, {callbacks} callbacks imported, {warnings} warning(s)"
    )
    return 0
