"""Messages per second through the full message parse, omnibot against Lyft's omnibot 1.0.3.

Both parsers read the same corpus of realistic Slack message texts (user,
channel and subteam mentions with and without labels, broadcasts, e-mail
addresses, links, emoji, HTML entities, plain chat), generated from a fixed
seed. Names come from in-memory dicts on both sides, so the figures compare
the parsers and not the caches behind them:

- omnibot: :func:`omnibot.parser.parse_text` with a dict-backed resolver.
- Lyft's omnibot 1.0.3 (PyPI ``omnibot==1.0.3``): the extract and replace
  functions of ``omnibot.services.slack.parser`` in the order its
  ``Message`` class calls them (users, channels, subteams, specials, emoji,
  e-mails, URLs), with ``slack.get_user`` and ``slack.get_channel`` replaced
  by dict lookups. Its statsd timers are replaced by a no-op client unless
  ``--peer-statsd`` is given, in which case each timer sends a UDP packet to
  127.0.0.1:8125 as the peer does by default.

The peer is installed from PyPI into its own venv on first use (see
``bench/README.md``). Its pinned dependencies do not build on Python 3.11,
so it is installed without them and a ``sitecustomize`` gives its
``yaml.load`` calls a default loader. When that fails, the benchmark prints
why and measures omnibot alone.

Run from the repository root::

    python -m bench.parsing
    python -m bench.parsing --messages 2000 --rounds 3 --json parsing.json

This module imports only the standard library at the top, because the peer
venv runs it too (``--peer-runner``), where ``omnibot`` is Lyft's package.
"""

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import typing

PEER_NAME = "lyft-omnibot-1.0.3"

# pip steps that install Lyft's omnibot 1.0.3 on Python 3.11 (its pins of
# gevent and greenlet do not build there, so it goes in without them).
PEER_INSTALL_STEPS = [
    ["--no-deps", "omnibot==1.0.3"],
    ["pyyaml", "statsd", "redis", "slackclient<2", "flask", "requests", "python-dateutil", "boto3", "gevent"],
]

# Lyft's omnibot 1.0.3 calls yaml.load(stream) without a Loader, which PyYAML 6 rejects.
SITECUSTOMIZE = """
import functools
import yaml

_load = yaml.load


@functools.wraps(_load)
def _load_with_default_loader(stream, Loader=yaml.SafeLoader, **kwargs):
    return _load(stream, Loader=Loader, **kwargs)


yaml.load = _load_with_default_loader
"""

# Lyft's omnibot reads CONFIG_FILE when its settings module is imported and needs teams and bots in it.
PEER_CONFIG = """
teams:
  bench-team: T0BENCH01
bots:
  bench-team:
    benchbot: A0BENCH01
primary_bot:
  bench-team: benchbot
"""


# -- corpus --------------------------------------------------------------------


def build_corpus(count: int, seed: int = 20261204) -> dict:
    """Return ``count`` message texts and the user and channel names they refer to.

    Returns:
        A dict with ``texts`` (list of str), ``users`` (user id to name) and
        ``channels`` (channel id to name), JSON-serialisable so the peer
        runner can read the same corpus.
    """
    rng = random.Random(seed)
    users = {f"U{number:08d}": f"user-{number}" for number in range(1, 501)}
    users.update({f"W{number:08d}": f"guest.{number}" for number in range(1, 51)})
    channels = {f"C{number:08d}": f"channel-{number}" for number in range(1, 301)}
    user_ids = sorted(users)
    channel_ids = sorted(channels)

    def user():
        user_id = rng.choice(user_ids)
        return f"<@{user_id}|{users[user_id]}>" if rng.random() < 0.2 else f"<@{user_id}>"

    def channel():
        channel_id = rng.choice(channel_ids)
        return f"<#{channel_id}|{channels[channel_id]}>" if rng.random() < 0.5 else f"<#{channel_id}>"

    def link():
        path = "/".join(rng.choice(["builds", "pull", "issues", "wiki", "runbooks", "dash"]) for _ in range(2))
        target = f"https://{rng.choice(['ci', 'git', 'docs', 'grafana'])}.example.com/{path}/{rng.randint(1, 99999)}"
        return f"<{target}|{rng.choice(['build', 'PR', 'runbook', 'dashboard'])}>" if rng.random() < 0.4 else f"<{target}>"

    def email():
        address = f"{rng.choice(['alice', 'bob', 'oncall', 'sre-team'])}@example.com"
        return f"<mailto:{address}|{address}>"

    def emoji():
        return rng.choice([":white_check_mark:", ":+1:", ":+1::skin-tone-3:", ":eyes:", ":fire:", ":rocket:", ":tada:"])

    words = (
        "the deploy is done and the canary looks healthy so we can roll out to the remaining hosts "
        "after lunch unless someone objects please check the error rate first thanks"
    ).split()

    def prose(low: int, high: int) -> str:
        return " ".join(rng.choice(words) for _ in range(rng.randint(low, high)))

    templates = [
        lambda: prose(2, 12),
        lambda: f"{user()} can you review {link()} when you have a minute?",
        lambda: f"<!here> standup starts in 5 minutes in {channel()} {emoji()}",
        lambda: f"deploy of {rng.choice(['api', 'web', 'worker'])} finished: {link()} {emoji()}",
        lambda: f"{user()} {user()} please look at {channel()} &amp; {channel()}, {prose(3, 10)}",
        lambda: f"<!subteam^S{rng.randint(1, 99):08d}|@oncall> paging about {link()} (error rate &gt; 5%)",
        lambda: f"mail {email()} or ping {user()} about it, {prose(4, 15)}",
        lambda: f"meeting moved to 10:30 {emoji()} {prose(2, 6)}",
        lambda: f"if a &lt; b &amp;&amp; c &gt; d then {prose(3, 8)}",
        lambda: f"{prose(20, 60)} {link()} {user()} {emoji()}",
        lambda: f"<!channel> {prose(5, 20)} see {link()} and {link()}",
        lambda: f"{user()} echo {prose(1, 5)}",
    ]
    texts = [rng.choice(templates)() for _ in range(count)]
    return {"texts": texts, "users": users, "channels": channels}


# -- omnibot -------------------------------------------------------------------


class DictResolver:
    """A :class:`omnibot.parser.NameResolver` over in-memory dicts (names already cached)."""

    def __init__(self, users: typing.Mapping[str, str], channels: typing.Mapping[str, str]):
        self._users = users
        self._channels = channels

    def user_name(self, user_id: str) -> typing.Optional[str]:
        return self._users.get(user_id)

    def channel_name(self, channel_id: str) -> typing.Optional[str]:
        return self._channels.get(channel_id)


def measure_omnibot(corpus: dict, passes: int) -> dict:
    """Parse every text of ``corpus`` ``passes`` times with omnibot's parser.

    Returns:
        ``rate`` (messages per second) and ``tokens`` (tokens found in one pass, per kind).
    """
    from omnibot.parser import PAYLOAD_FIELDS, parse_text

    texts = corpus["texts"]
    resolver = DictResolver(corpus["users"], corpus["channels"])
    tokens = {field: sum(len(parse_text(text, resolver)[field]) for text in texts) for field in PAYLOAD_FIELDS}

    started = time.perf_counter()
    for _ in range(passes):
        for text in texts:
            parse_text(text, resolver)
    seconds = time.perf_counter() - started
    return {"rate": passes * len(texts) / seconds, "tokens": tokens}


# -- Lyft's omnibot 1.0.3 (runs in the peer venv) -----------------------------


class _NullTimer:
    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        return False


class _NullStatsd:
    """A statsd client whose timers send nothing."""

    def timer(self, name):
        return _NullTimer()


def run_peer(corpus_path: str, passes: int, real_statsd: bool) -> dict:
    """Parse the corpus with Lyft's omnibot 1.0.3 parser; meant to run inside the peer venv.

    Returns:
        The same fields as :func:`measure_omnibot`.
    """
    with open(corpus_path, encoding="utf-8") as source:
        corpus = json.load(source)

    from omnibot.services import slack, stats
    from omnibot.services.slack import parser

    users, channels = corpus["users"], corpus["channels"]
    slack.get_user = lambda bot, user_id: {"id": user_id, "name": users[user_id]} if user_id in users else {}
    slack.get_channel = lambda bot, channel_id: {"id": channel_id, "name": channels[channel_id]} if channel_id in channels else {}
    if not real_statsd:
        stats.STATS_CLIENT = _NullStatsd()

    def parse(text):
        # The calls and their order of Lyft's Message._parse_payload.
        found = {}
        found["users"] = parser.extract_users(text, None)
        parsed = parser.replace_users(text, found["users"])
        found["channels"] = parser.extract_channels(text, None)
        parsed = parser.replace_channels(parsed, found["channels"])
        found["subteams"] = parser.extract_subteams(text, None)
        found["specials"] = parser.extract_specials(text)
        parsed = parser.replace_specials(parsed, found["specials"])
        found["emojis"] = parser.extract_emojis(text)
        found["emails"] = parser.extract_emails(text)
        parsed = parser.replace_emails(parsed, found["emails"])
        found["urls"] = parser.extract_urls(text)
        parser.replace_urls(parsed, found["urls"])
        return found

    texts = corpus["texts"]
    tokens = {}
    for text in texts:
        for field, values in parse(text).items():
            tokens[field] = tokens.get(field, 0) + len(values)

    started = time.perf_counter()
    for _ in range(passes):
        for text in texts:
            parse(text)
    seconds = time.perf_counter() - started
    return {"rate": passes * len(texts) / seconds, "tokens": tokens}


def measure_peer(python: str, corpus_path: str, work_dir: str, passes: int, real_statsd: bool) -> dict:
    """Run :func:`run_peer` in the peer venv and return its result."""
    site_dir = os.path.join(work_dir, "peer-site")
    os.makedirs(site_dir, exist_ok=True)
    with open(os.path.join(site_dir, "sitecustomize.py"), "w", encoding="utf-8") as site:
        site.write(SITECUSTOMIZE)
    config_path = os.path.join(work_dir, "peer-omnibot.yaml")
    with open(config_path, "w", encoding="utf-8") as config:
        config.write(PEER_CONFIG)

    # Only the peer's own variables: no SLACK_* or CREDENTIALS_* of this shell, no PYTHONPATH into this repository.
    env = {name: value for name, value in os.environ.items() if name in ("PATH", "HOME", "LANG", "TMPDIR")}
    env.update(PYTHONPATH=site_dir, CONFIG_FILE=config_path, STATSD_HOST="127.0.0.1", STATSD_PORT="8125")
    command = [python, os.path.abspath(__file__), "--peer-runner", corpus_path, "--passes", str(passes)]
    if real_statsd:
        command.append("--peer-statsd")
    done = subprocess.run(command, env=env, cwd=work_dir, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the peer runner failed with exit status {done.returncode}:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- main ----------------------------------------------------------------------


def main(argv: typing.Optional[typing.Sequence[str]] = None) -> int:
    args = parse_arguments(argv)
    if args.peer_runner:
        print(json.dumps(run_peer(args.peer_runner, args.passes, args.peer_statsd)))
        return 0

    sys.path.insert(0, REPO)
    from bench.common import PeerUnavailable, cpu_model, format_table, installed_version, load_average, peer_python

    print(f"host: {cpu_model()}, {os.cpu_count()} cores; Python {sys.version.split()[0]}", flush=True)
    corpus = build_corpus(args.messages)
    results: dict = {"messages": args.messages, "passes": args.passes, "rounds": [], "peer_error": None}

    peer = None
    try:
        peer = peer_python(PEER_NAME, PEER_INSTALL_STEPS)
        results["peer_version"] = installed_version(peer, "omnibot")
    except PeerUnavailable as error:
        results["peer_error"] = str(error)
        print(f"Lyft's omnibot 1.0.3 could not be installed, so only omnibot is measured:\n{error}", flush=True)

    with tempfile.TemporaryDirectory(prefix="omnibot-bench-parsing-") as work_dir:
        corpus_path = os.path.join(work_dir, "corpus.json")
        with open(corpus_path, "w", encoding="utf-8") as output:
            json.dump(corpus, output)

        for number in range(1, args.rounds + 1):
            print(f"round {number}: load average {load_average()}", flush=True)
            entry = {"load": load_average(), "omnibot": measure_omnibot(corpus, args.passes)}
            if peer and not results["peer_error"]:
                try:
                    entry["peer"] = measure_peer(peer, corpus_path, work_dir, args.passes, args.peer_statsd)
                except RuntimeError as error:
                    results["peer_error"] = str(error)
                    print(f"Lyft's omnibot 1.0.3 parser could not run, so only omnibot is measured:\n{error}", flush=True)
            results["rounds"].append(entry)

    print()
    print(format_results(results, format_table))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as output:
            json.dump(results, output, indent=2)
    return 0


def format_results(results: dict, format_table) -> str:
    """Return the table of rates (median and min-max over the rounds) and the tokens each parser found."""
    rows = []
    omnibot_rates = [entry["omnibot"]["rate"] for entry in results["rounds"]]
    peer_rates = [entry["peer"]["rate"] for entry in results["rounds"] if "peer" in entry]
    omnibot_median = statistics.median(omnibot_rates)
    rows.append(["omnibot parse_text", f"{omnibot_median:,.0f}", f"{min(omnibot_rates):,.0f}-{max(omnibot_rates):,.0f}", "1.00"])
    if peer_rates:
        peer_median = statistics.median(peer_rates)
        rows.append([
            "Lyft omnibot 1.0.3 parser",
            f"{peer_median:,.0f}",
            f"{min(peer_rates):,.0f}-{max(peer_rates):,.0f}",
            f"{peer_median / omnibot_median:.2f}",
        ])
    lines = [format_table(["parser", "msgs/s median", "min-max", "x omnibot"], rows)]
    if peer_rates:
        lines.append(f"omnibot / Lyft omnibot 1.0.3: {omnibot_median / statistics.median(peer_rates):.1f}x (target: 3x or more)")
    else:
        lines.append(f"Lyft omnibot 1.0.3 not measured: {results['peer_error']}")

    tokens = results["rounds"][0]["omnibot"]["tokens"]
    lines.append("tokens found in one pass, omnibot: " + ", ".join(f"{name} {count}" for name, count in tokens.items()))
    if peer_rates:
        peer_tokens = results["rounds"][0]["peer"]["tokens"]
        lines.append("tokens found in one pass, Lyft:    " + ", ".join(f"{name} {count}" for name, count in peer_tokens.items()))
    lines.append(f"{results['messages']} messages x {results['passes']} passes per round; load average before each round: "
                 + "; ".join(entry["load"] for entry in results["rounds"]))
    return "\n".join(lines)


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_arguments(argv) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--messages", type=int, default=2000, help="messages in the corpus (default 2000)")
    parser.add_argument("--passes", type=int, default=10, help="passes over the corpus per round and parser (default 10)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--peer-statsd", action="store_true", help="keep the peer's statsd timers (UDP to 127.0.0.1:8125)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--peer-runner", metavar="CORPUS", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main())
