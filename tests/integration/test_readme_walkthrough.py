"""README.rst's walk-through, run as written: fake-slack, serve, simulate, and the bot's reply.

The commands are read from README.rst and run with bash in a temporary
folder that contains a copy of ``config/`` and a ``.venv/bin/omnibot`` script
that runs this checkout's omnibot with the test interpreter. Three changes
keep parallel test runs apart: free ports replace 8888 and 8080 (in the
commands and in the copy of ``config/local.env``), and the virtual
environment is not created, because installing packages is not part of
what this test checks.
"""

import os
import re
import shutil
import signal
import subprocess
import sys

import pytest
import requests

from tests.support import REPO, free_port, wait_until

pytestmark = pytest.mark.slow

README = os.path.join(REPO, "README.rst")


def literal_blocks(text):
    """Return the literal block after each ``::`` of reStructuredText, its lines joined by spaces.

    A block is the run of lines indented at least as deep as its first
    non-blank line. It ends at the first non-blank line indented less.
    """
    blocks = []
    lines = text.splitlines()
    for number, line in enumerate(lines):
        if not line.rstrip().endswith("::"):
            continue
        block = []
        indent = None
        for following in lines[number + 1:]:
            if not following.strip():
                continue
            depth = len(following) - len(following.lstrip())
            if indent is None:
                indent = depth
            if depth < indent:
                break
            block.append(following.strip())
        blocks.append(" ".join(block))
    return blocks


def readme_commands():
    """Return README's serve, fake-slack and simulate commands, as written."""
    with open(README, encoding="utf-8") as readme:
        blocks = literal_blocks(readme.read())
    install = next(block for block in blocks if "omnibot serve" in block)
    serve = install[install.index("(set -a"):]
    fake_slack = next(block for block in blocks if "omnibot fake-slack" in block)
    simulate = next(block for block in blocks if "omnibot simulate" in block)
    return serve, fake_slack, simulate


@pytest.fixture
def workdir(tmp_path):
    shutil.copytree(os.path.join(REPO, "config"), tmp_path / "config")
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    shim = bin_dir / "omnibot"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m omnibot "$@"\n', encoding="utf-8")
    shim.chmod(0o755)
    return tmp_path


class Shell:
    """Commands started with bash in their own process group, stopped together."""

    def __init__(self, cwd, env):
        self.cwd = cwd
        self.env = env
        self.processes = []

    def start(self, command, log_name):
        log = open(os.path.join(self.cwd, log_name), "wb")
        process = subprocess.Popen(
            ["bash", "-c", command], cwd=self.cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        self.processes.append(process)
        return process

    def run(self, command):
        return subprocess.run(["bash", "-c", command], cwd=self.cwd, env=self.env, capture_output=True, text=True, timeout=60)

    def read(self, log_name):
        with open(os.path.join(self.cwd, log_name), encoding="utf-8", errors="replace") as log:
            return log.read()

    def stop(self):
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def test_readme_walkthrough(workdir):
    serve_command, fake_slack_command, simulate_command = readme_commands()
    slack_port = free_port()
    omnibot_port = free_port()
    omnibot_url = f"http://127.0.0.1:{omnibot_port}"

    assert "--port 8888" in fake_slack_command
    fake_slack_command = fake_slack_command.replace("--port 8888", f"--port {slack_port}")
    local_env = workdir / "config" / "local.env"
    local_env.write_text(local_env.read_text(encoding="utf-8").replace(":8888/", f":{slack_port}/"), encoding="utf-8")
    assert serve_command.endswith("omnibot serve)")
    serve_command = serve_command[:-1] + f" --port {omnibot_port})"
    assert simulate_command.endswith(")")
    simulate_command = simulate_command[:-1] + f" --url {omnibot_url})"

    env = {key: value for key, value in os.environ.items() if not key.startswith(("CREDENTIALS_SLACK_", "OMNIBOT_"))}
    env["PYTHONPATH"] = REPO
    shell = Shell(str(workdir), env)
    try:
        shell.start(fake_slack_command, "fake_slack.log")
        wait_until(lambda: "listening on" in shell.read("fake_slack.log"), timeout=30, message="the fake Slack")
        shell.start(serve_command, "serve.log")
        wait_until(lambda: "listening on" in shell.read("serve.log"), timeout=30, message="omnibot serve")

        simulated = shell.run(simulate_command)

        assert simulated.returncode == 0, simulated.stdout + simulated.stderr
        assert '{"status": "success"}' in simulated.stdout
        wait_until(lambda: re.search(r"chat\.postMessage .*text='pong'", shell.read("fake_slack.log")), message="the pong reply")
        answer = requests.get(f"http://127.0.0.1:{slack_port}/_calls?method=chat.postMessage", timeout=5).json()
        posts = answer["calls"]
        assert posts[-1]["args"]["text"] == "pong"
        assert posts[-1]["args"]["channel"] == "C0TEST001"
        assert re.fullmatch(r"\d+\.\d{6}", posts[-1]["args"]["thread_ts"])
        serve_log = shell.read("serve.log")
        assert f"listening on {omnibot_url}" in serve_log
        assert "config config/omnibot.yaml" in serve_log
        assert "calling callback omnibot.callbacks.message_callbacks:test_callback" in serve_log
    finally:
        shell.stop()
