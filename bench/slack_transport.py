"""CPU and time per Slack Web API call for three HTTP transports, against the fake Slack.

One thread makes ``--calls`` ``chat.postMessage`` calls, one after another,
to a fake Slack in its own process, with each of these transports:

- ``slack_sdk``: slack_sdk's ``WebClient``, which opens a new connection for
  every call (urllib);
- ``requests``: a ``requests.Session`` with a pooled, kept-alive connection;
- ``omnibot``: :class:`omnibot.slack.client.SlackClients`, a pooled,
  kept-alive urllib3 connection.

For each transport it prints the wall time per call, the CPU time per call of
the calling process (``time.process_time``) and of the fake Slack process
(from ``/proc/<pid>/stat``, so Linux only). The calling process's CPU bounds
how many calls a worker process can make; the fake Slack's CPU stands for
the server's cost of each call. Best of ``--rounds`` rounds by client CPU.

Run from the repository root::

    python -m bench.slack_transport
    python -m bench.slack_transport --calls 5000 --rounds 5 --json transport.json
"""

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import typing

import requests
from slack_sdk import WebClient

from bench.common import FakeSlackProcess, cpu_model, format_table, load_average
from omnibot.slack.client import SlackClients, form_fields

BOT_TOKEN = "xoxb-bench-transport-token"
ARGUMENTS = {"channel": "C0TEST001", "text": "transport benchmark", "blocks": [{"type": "divider"}]}


class _Credentials(typing.NamedTuple):
    bot_token: str
    user_token: typing.Optional[str] = None


class _Bot(typing.NamedTuple):
    """The attributes of a configured bot that SlackClients reads."""

    app_id: str
    credentials: _Credentials


def slack_sdk_caller(api_url: str) -> typing.Callable[[], bool]:
    client = WebClient(token=BOT_TOKEN, base_url=api_url, timeout=10)
    return lambda: client.api_call("chat.postMessage", data=form_fields(ARGUMENTS)).data["ok"]


def requests_caller(api_url: str) -> typing.Callable[[], bool]:
    session = requests.Session()
    headers = {"Authorization": f"Bearer {BOT_TOKEN}"}
    return lambda: session.post(api_url + "chat.postMessage", data=form_fields(ARGUMENTS), headers=headers, timeout=10).json()["ok"]


def omnibot_caller(api_url: str) -> typing.Callable[[], bool]:
    clients = SlackClients(api_url)
    bot = _Bot("A0BENCH01", _Credentials(BOT_TOKEN))
    return lambda: clients.call(bot, "chat.postMessage", ARGUMENTS)["ok"]


TRANSPORTS = {"slack_sdk": slack_sdk_caller, "requests": requests_caller, "omnibot": omnibot_caller}


def process_cpu_seconds(pid: int) -> float:
    """Return the user plus system CPU seconds of process ``pid``."""
    with open(f"/proc/{pid}/stat") as stat:
        # The command name in field 2 may contain spaces, so count from its closing parenthesis.
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(call: typing.Callable[[], bool], calls: int, server_pid: int) -> dict:
    """Make ``calls`` calls and return the wall, client CPU and server CPU microseconds per call."""
    for _ in range(50):
        call()
    wall, cpu, server = time.perf_counter(), time.process_time(), process_cpu_seconds(server_pid)
    for _ in range(calls):
        if not call():
            raise RuntimeError("the fake Slack returned ok: false for chat.postMessage")
    return {
        "wall_us": (time.perf_counter() - wall) * 1e6 / calls,
        "client_cpu_us": (time.process_time() - cpu) * 1e6 / calls,
        "server_cpu_us": (process_cpu_seconds(server_pid) - server) * 1e6 / calls,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls per transport and round (default 2000)")
    parser.add_argument("--rounds", type=int, default=3, help="number of rounds, of which the best by client CPU is printed (default 3)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)

    print(f"host: {cpu_model()}, {os.cpu_count()} cores; Python {platform.python_version()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="omnibot-bench-transport-") as log_dir:
        slack = FakeSlackProcess(log_dir).start()
        try:
            best: typing.Dict[str, dict] = {}
            for round_number in range(1, args.rounds + 1):
                for name, build in TRANSPORTS.items():
                    print(f"round {round_number}, {name}: load average {load_average()}", flush=True)
                    result = measure(build(slack.api_url), args.calls, slack.pid)
                    if name not in best or result["client_cpu_us"] < best[name]["client_cpu_us"]:
                        best[name] = result
        finally:
            slack.stop()

    headers = ["transport", "wall us/call", "client CPU us/call", "fake Slack CPU us/call"]
    rows = [
        [name, f"{result['wall_us']:.0f}", f"{result['client_cpu_us']:.0f}", f"{result['server_cpu_us']:.0f}"]
        for name, result in best.items()
    ]
    print(format_table(headers, rows))
    if args.json:
        with open(args.json, "w") as output:
            json.dump({"settings": vars(args), "results": best}, output, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
