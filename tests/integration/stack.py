"""Run omnibot as real processes: gunicorn for the web app and ``omnibot worker``."""

import json
import os
import signal
import subprocess
import sys
import time

import requests

from tests import recorders
from tests.support import REPO, credentials_env, free_port, signed, wait_until


# Bodies above this size may be rejected unread, see Stack.post.
LARGE_BODY_BYTES = 512 * 1024


class Stack:
    """omnibot under gunicorn plus worker processes, against a fake Slack.

    Args:
        tmp_path: A folder for the config, data and logs.
        config_text: The YAML config.
        slack_api_url: Base URL of the fake Slack Web API.
        env: Extra environment variables (credentials default to tests.support's).
        workers: Number of ``omnibot worker`` processes.
    """

    def __init__(self, tmp_path, config_text, slack_api_url, env=None, workers=1, web_workers=1, queue_url=None, cache_url=None):
        self.tmp_path = tmp_path
        self.config_path = os.path.join(tmp_path, "omnibot.yaml")
        with open(self.config_path, "w", encoding="utf-8") as config:
            config.write(config_text)
        self.record_file = os.path.join(tmp_path, "calls.jsonl")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = dict(os.environ)
        for key in list(self.env):
            if key.startswith("CREDENTIALS_SLACK_") or key in ("QUEUE_URL", "CACHE_URL", "LOG_CONFIG_FILE"):
                del self.env[key]
        self.env.update(credentials_env())
        self.env.update(
            CONFIG_FILE=self.config_path,
            OMNIBOT_DATA_DIR=os.path.join(tmp_path, "data"),
            SLACK_API_URL=slack_api_url,
            OMNIBOT_TEST_RECORD_FILE=self.record_file,
            PYTHONPATH=REPO,
            QUEUE_VISIBILITY_TIMEOUT="3",
            QUEUE_RETRY_BACKOFF="0.2",
            LOG_FORMAT="text",
        )
        if queue_url:
            self.env["QUEUE_URL"] = queue_url
        if cache_url:
            self.env["CACHE_URL"] = cache_url
        self.env.update(env or {})
        self.web_workers = web_workers
        self.worker_count = workers
        self.web = None
        self.workers = []
        self.session = requests.Session()

    # -- processes ---------------------------------------------------------

    def start(self):
        """Start gunicorn and the workers; on failure stop whatever started, then raise."""
        try:
            self.start_web()
            for _ in range(self.worker_count):
                self.start_worker()
        except BaseException:
            self.stop()
            raise
        return self

    def start_web(self):
        log = open(os.path.join(self.tmp_path, "web.log"), "ab")
        self.web = subprocess.Popen(
            [
                sys.executable, "-m", "gunicorn",
                "--bind", f"127.0.0.1:{self.port}",
                "--workers", str(self.web_workers),
                "--worker-class", "gthread", "--threads", "4",
                "--graceful-timeout", "5", "--no-control-socket",
                "omnibot.wsgi:app",
            ],
            env=self.env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
        )
        wait_until(self._healthy, timeout=30, message=f"gunicorn on {self.url} (see {log.name})")

    def start_worker(self, concurrency=4):
        log = open(os.path.join(self.tmp_path, f"worker{len(self.workers)}.log"), "ab")
        process = subprocess.Popen(
            [sys.executable, "-m", "omnibot", "worker", "--concurrency", str(concurrency), "--grace-period", "5"],
            env=self.env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
        )
        self.workers.append(process)
        return process

    def _healthy(self):
        if self.web.poll() is not None:
            raise AssertionError(f"gunicorn exited with {self.web.returncode}; see {self.tmp_path}/web.log")
        try:
            return self.session.get(self.url + "/healthcheck", timeout=1).status_code == 200
        except requests.RequestException:
            # Refused before gunicorn listens, or a read timeout while its worker still boots.
            return False

    def stop(self):
        for process in [self.web, *self.workers]:
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in [self.web, *self.workers]:
            if process is None:
                continue
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def logs(self):
        text = ""
        for name in sorted(os.listdir(self.tmp_path)):
            if name.endswith(".log"):
                with open(os.path.join(self.tmp_path, name), encoding="utf-8", errors="replace") as log:
                    text += f"--- {name}\n{log.read()}"
        return text

    # -- requests ----------------------------------------------------------

    def post(self, path, body, headers=None, sign=True, content_type="application/json", secret=None):
        if sign:
            kwargs = {"secret": secret} if secret else {}
            raw, signed_headers = signed(body, content_type=content_type, **kwargs)
        else:
            raw = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
            if isinstance(raw, str):
                raw = raw.encode()
            signed_headers = {"Content-Type": content_type}
        signed_headers.update(headers or {})
        if len(raw) > LARGE_BODY_BYTES:
            # gunicorn closes a connection whose body it did not read (a 413)
            # without saying so, so a large body gets a connection of its own
            # instead of spoiling the session's pooled one for later requests.
            return requests.post(self.url + path, data=raw, headers=dict(signed_headers, Connection="close"), timeout=30)
        return self.session.post(self.url + path, data=raw, headers=signed_headers, timeout=10)

    def post_event(self, body, **kwargs):
        return self.post("/api/v1/slack/event", body, **kwargs)

    def calls(self, callback=None):
        return recorders.read_calls(self.record_file, callback)

    def wait_calls(self, callback, count=1, timeout=15):
        return wait_until(
            lambda: len(self.calls(callback)) >= count and self.calls(callback),
            timeout=timeout,
            message=f"{count} call(s) of {callback}",
        )

    def settle(self, seconds=1.0):
        """Give the worker time to process anything still queued (for negative checks)."""
        time.sleep(seconds)


class ConfiguredStack(Stack):
    """The test stack, with gunicorn reading config/gunicorn.conf.py as in production."""

    def start_web(self):
        log = open(os.path.join(self.tmp_path, "web.log"), "ab")
        self.web = subprocess.Popen(
            [
                sys.executable, "-m", "gunicorn",
                "-c", os.path.join(REPO, "config", "gunicorn.conf.py"),
                "--bind", f"127.0.0.1:{self.port}",
                "--workers", str(self.web_workers),
                "--graceful-timeout", "5",
                "omnibot.wsgi:app",
            ],
            env=self.env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
        )
        wait_until(self._healthy, timeout=30, message=f"gunicorn on {self.url} (see {log.name})")
