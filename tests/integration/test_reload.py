"""Config reload on SIGHUP: ``omnibot serve``, ``omnibot worker`` and the gunicorn master.

Each test edits the config file of running processes, sends SIGHUP, and
checks through the fake Slack which handlers reply.
"""

import os
import signal
import subprocess
import sys

import pytest

from omnibot import backends, reload
from omnibot.config import load_config
from omnibot.runtime import Runtime
from omnibot.settings import Settings
from omnibot.worker import Worker
from tests.integration.serve_process import ServeProcess
from tests.integration.stack import Stack
from tests.support import BASE_CONFIG, REPO, credentials_env, message_event, wait_until

pytestmark = pytest.mark.slow

GUNICORN_CONF = os.path.join(REPO, "config", "gunicorn.conf.py")


def config_with(*handlers):
    """Return BASE_CONFIG with command handlers ``(match, reply text)`` for testbot."""
    text = BASE_CONFIG + "handlers:\n  message_handlers:\n"
    for match, reply in handlers:
        text += f"""
    - match: "{match}"
      match_type: "command"
      bots: {{"test-team": ["testbot"]}}
      callbacks:
        - module: "omnibot.callbacks.message_callbacks:test_callback"
          kwargs:
            text: "{reply}"
"""
    return text


INITIAL = config_with(("ping", "pong"))
RELOADED = config_with(("ping", "pong v2"), ("hello", "hi there"))
INVALID = RELOADED.replace('match_type: "command"', 'match_type: "comand"', 1)


def replies(fake_slack):
    return [call["args"].get("text") for call in fake_slack.calls("chat.postMessage")]


def wait_reply(fake_slack, text):
    wait_until(lambda: text in replies(fake_slack), timeout=15, message=f"a chat.postMessage with {text!r}")


def test_serve_reloads_on_sighup(tmp_path, fake_slack):
    serve = ServeProcess(tmp_path, INITIAL, fake_slack.api_url).start()
    try:
        answered = serve.simulate("message", "@testbot ping")
        assert answered.returncode == 0, answered.stderr
        wait_reply(fake_slack, "pong")

        serve.write_config(RELOADED)
        serve.signal(signal.SIGHUP)
        serve.wait_log("config reloaded from")

        assert serve.simulate("message", "@testbot hello").returncode == 0
        wait_reply(fake_slack, "hi there")
        assert serve.simulate("message", "@testbot ping").returncode == 0
        wait_reply(fake_slack, "pong v2")
        assert serve.process.poll() is None
    finally:
        serve.stop()


def test_serve_keeps_old_config_when_new_is_invalid(tmp_path, fake_slack):
    serve = ServeProcess(tmp_path, RELOADED, fake_slack.api_url).start()
    try:
        serve.write_config(INVALID)
        serve.signal(signal.SIGHUP)
        serve.wait_log("config reload rejected")

        log = serve.log()
        assert "omnibot.yaml:" in log
        assert "handlers.message_handlers[0].match_type: 'comand' is not one of command, regex, reaction" in log
        assert serve.process.poll() is None
        # simulate reads the config too, so it gets a valid copy.
        valid_copy = tmp_path / "valid.yaml"
        valid_copy.write_text(RELOADED, encoding="utf-8")
        answered = serve.simulate("message", "--config", str(valid_copy), "@testbot hello")
        assert answered.returncode == 0, answered.stderr
        wait_reply(fake_slack, "hi there")
    finally:
        serve.stop()


def test_queued_message_uses_config_in_force_when_dequeued(tmp_path, fake_slack):
    config_path = tmp_path / "omnibot.yaml"
    config_path.write_text(INITIAL, encoding="utf-8")
    environ = credentials_env()
    settings = Settings(config_file=str(config_path), data_dir=str(tmp_path), slack_api_url=fake_slack.api_url, environ=environ)
    runtime = Runtime(settings, load_config(str(config_path), environ))
    try:
        body = message_event("<@U0BOT0001> hello")
        runtime.queue.put({"kind": "event", "app_id": "A0TEST001", "team_id": "T0TEST001", "received_at": 0, "payload": body})

        config_path.write_text(RELOADED, encoding="utf-8")
        assert reload.reload_config(runtime) is True

        worker = Worker(runtime, concurrency=1, poll_timeout=0.1)
        worker.handle(runtime.queue.get(timeout=1))
        wait_reply(fake_slack, "hi there")
    finally:
        runtime.close()


def test_reload_config_rejects_invalid_file(tmp_path, caplog):
    config_path = tmp_path / "omnibot.yaml"
    config_path.write_text(INITIAL, encoding="utf-8")
    environ = credentials_env()
    settings = Settings(config_file=str(config_path), data_dir=str(tmp_path), environ=environ)
    runtime = Runtime(settings, load_config(str(config_path), environ), queue=object(), cache=object())
    before = runtime.config

    config_path.write_text(INVALID, encoding="utf-8")
    with caplog.at_level("ERROR", logger="omnibot.reload"):
        assert reload.reload_config(runtime) is False

    assert runtime.config is before
    messages = [record.getMessage() for record in caplog.records]
    assert any("omnibot.yaml:" in message and "'comand' is not one of" in message for message in messages)
    assert any("the previous config stays in force" in message for message in messages)


class ConfiguredGunicornStack(Stack):
    """A Stack whose gunicorn reads config/gunicorn.conf.py, which installs the reload guard."""

    def start_web(self):
        log = open(os.path.join(self.tmp_path, "web.log"), "ab")
        self.web = subprocess.Popen(
            [
                sys.executable, "-m", "gunicorn",
                "-c", GUNICORN_CONF,
                "--bind", f"127.0.0.1:{self.port}",
                "--workers", str(self.web_workers),
                "--graceful-timeout", "5",
                "omnibot.wsgi:app",
            ],
            env=self.env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
        )
        log.close()
        wait_until(self._healthy, timeout=30, message=f"gunicorn on {self.url}")

    def log_text(self, name):
        with open(os.path.join(self.tmp_path, name), encoding="utf-8", errors="replace") as log:
            return log.read()


def stopped_web_workers(stack):
    """Count the "web worker N stopped" lines that config/gunicorn.conf.py logs."""
    log = stack.log_text("web.log")
    return sum(1 for line in log.splitlines() if "web worker" in line and line.rstrip().endswith("stopped"))


def test_gunicorn_and_worker_reload_on_sighup(tmp_path, fake_slack):
    stack = ConfiguredGunicornStack(str(tmp_path), INITIAL, fake_slack.api_url).start()
    try:
        def send(text):
            response = stack.post_event(message_event(text))
            assert response.status_code == 200, response.text

        send("<@U0BOT0001> ping")
        wait_reply(fake_slack, "pong")

        # An invalid file: the master keeps its workers, the worker keeps its config.
        with open(stack.config_path, "w", encoding="utf-8") as config:
            config.write(INVALID)
        stack.web.send_signal(signal.SIGHUP)
        stack.workers[0].send_signal(signal.SIGHUP)
        wait_until(lambda: "keeping the running workers" in stack.log_text("web.log"), message="the master's rejection")
        wait_until(lambda: "config reload rejected" in stack.log_text("worker0.log"), message="the worker's rejection")
        assert stack.web.poll() is None
        assert stack.workers[0].poll() is None
        assert "'comand' is not one of" in stack.log_text("web.log")
        send("<@U0BOT0001> ping")
        wait_until(lambda: replies(fake_slack).count("pong") == 2, message="a second pong")

        # A valid file: new gunicorn workers and the worker's new config.
        with open(stack.config_path, "w", encoding="utf-8") as config:
            config.write(RELOADED)
        stack.web.send_signal(signal.SIGHUP)
        stack.workers[0].send_signal(signal.SIGHUP)
        wait_until(lambda: "Hang up: Master" in stack.log_text("web.log"), message="gunicorn's reload")
        wait_until(lambda: "config reloaded from" in stack.log_text("worker0.log"), message="the worker's reload")
        # The old web worker closes its kept-alive connections as it exits,
        # so the next request waits for it and goes out on a new connection.
        wait_until(lambda: stopped_web_workers(stack) >= 1, message="the old web worker's exit")
        stack.session.close()
        wait_until(stack._healthy, message="gunicorn after its reload")
        send("<@U0BOT0001> hello")
        wait_reply(fake_slack, "hi there")
    finally:
        stack.stop()
