"""Run ``omnibot serve`` as a subprocess, and ``omnibot simulate`` against it."""

import os
import signal
import subprocess
import sys

import requests

from tests.support import REPO, credentials_env, free_port, wait_until


class ServeProcess:
    """``omnibot serve`` on a free loopback port with its own data folder and log file.

    Args:
        tmp_path: Folder for the config copy, the SQLite files and ``serve.log``.
        config_text: The YAML config, written to ``<tmp_path>/omnibot.yaml``.
        slack_api_url: Base URL of the fake Slack Web API.
    """

    def __init__(self, tmp_path, config_text, slack_api_url):
        self.tmp_path = str(tmp_path)
        self.config_path = os.path.join(self.tmp_path, "omnibot.yaml")
        self.write_config(config_text)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = os.path.join(self.tmp_path, "serve.log")
        self.env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("CREDENTIALS_SLACK_") and key not in ("QUEUE_URL", "CACHE_URL", "LOG_CONFIG_FILE")
        }
        self.env.update(credentials_env())
        self.env.update(
            CONFIG_FILE=self.config_path,
            SLACK_API_URL=slack_api_url,
            PYTHONPATH=REPO,
            OMNIBOT_TEST_RECORD_FILE=os.path.join(self.tmp_path, "calls.jsonl"),
        )
        self.process = None

    def write_config(self, text):
        with open(self.config_path, "w", encoding="utf-8") as config:
            config.write(text)

    def start(self):
        log = open(self.log_path, "ab")
        command = [
            sys.executable, "-m", "omnibot", "serve",
            "--port", str(self.port),
            "--data-dir", os.path.join(self.tmp_path, "data"),
            "--concurrency", "2",
        ]
        self.process = subprocess.Popen(command, env=self.env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        wait_until(self._healthy, timeout=30, message=f"omnibot serve on {self.url} (see {self.log_path})")
        return self

    def _healthy(self):
        if self.process.poll() is not None:
            raise AssertionError(f"omnibot serve exited with {self.process.returncode}:\n{self.log()}")
        try:
            return requests.get(self.url + "/healthcheck", timeout=1).status_code == 200
        except requests.ConnectionError:
            return False

    def signal(self, signum):
        self.process.send_signal(signum)

    def stop(self):
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def log(self):
        with open(self.log_path, encoding="utf-8", errors="replace") as log:
            return log.read()

    def wait_log(self, text, count=1, timeout=15):
        """Wait until ``text`` occurs ``count`` times in the log."""
        return wait_until(lambda: self.log().count(text) >= count, timeout=timeout, message=f"{text!r} x{count} in {self.log_path}")

    def simulate(self, *argv, url=None):
        """Run ``omnibot simulate`` against ``url`` (default: this server); return the CompletedProcess."""
        command = [sys.executable, "-m", "omnibot", "simulate", *argv, "--url", url or self.url]
        return subprocess.run(command, env=self.env, cwd=REPO, capture_output=True, text=True, timeout=60)
