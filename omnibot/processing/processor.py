"""Process one queued message: build its container, match handlers, run callbacks.

Each message kind (``event``, ``slash_command``, ``interactive_component``)
maps to a method registered in :attr:`Processor.kinds`.
"""

import json
import logging
import time
import typing

from omnibot.containers import InteractiveComponent, Message, Reaction, SlashCommand, Unsupported
from omnibot.errors import CallbackError
from omnibot.logs import without_tokens
from omnibot.processing import callbacks, interactive_routing, matching
from omnibot.processing.post_once import PostMarks
from omnibot.processing.progress import Progress
from omnibot.processing.results import ResultApplier
from omnibot.stats import seconds_since

logger = logging.getLogger(__name__)

BUILTIN_HELP = "omnibot.callbacks.message_callbacks:help_callback"

# An event processed this many seconds or more after its event_ts logs a warning.
LATE_DELIVERY_SECONDS = 20.0


class Processor:
    """Turn queued envelopes into callback calls and applied results.

    Args:
        runtime: The :class:`omnibot.runtime.Runtime` of the worker.
    """

    def __init__(self, runtime):
        self.runtime = runtime
        self.results = ResultApplier(runtime)
        self.kinds: typing.Dict[str, typing.Callable] = {
            "event": self._process_event,
            "slash_command": self._process_slash_command,
            "interactive_component": self._process_interactive_component,
        }

    def process(self, envelope: typing.Mapping, message_id: str, attempts: int = 1) -> None:
        """Process one envelope with the config in force now.

        Raises:
            CallbackError: At least one callback raised; the others ran and
                are recorded so a retry skips them.
        """
        kind = envelope.get("kind")
        bot = self.runtime.config.bot_by_app_id(envelope.get("app_id"))
        if bot is None:
            logger.warning(
                "dropped a queued %s for app %r, which the config in force does not define",
                kind,
                envelope.get("app_id"),
            )
            return
        process = self.kinds.get(kind)
        if process is None:
            logger.error("dropped a queued message of unknown kind %r", kind, extra=bot.trace)
            return

        # An attempt after the first, or a replayed dead letter, follows a
        # delivery that may have finished callbacks and made posts.
        redelivered = attempts > 1 or "replayed_at" in envelope
        progress = Progress(self.runtime.cache, message_id, attempts, redelivered)
        progress.marks = PostMarks(
            self.runtime.clients,
            message_id,
            envelope.get("received_at"),
            check=redelivered,
            enabled=self.runtime.settings.post_metadata,
        )
        trace = envelope_trace(bot, envelope)
        if kind == "event":
            self._observe_delivery(envelope, attempts, trace)
        if logger.isEnabledFor(logging.DEBUG):
            payload = json.dumps(without_tokens(envelope.get("payload")), default=str)
            logger.debug("processing message %s: %s", message_id, payload, extra=trace)

        with self.runtime.stats.processing(kind, _subject(kind, envelope.get("payload"))):
            process(bot, envelope, progress)
        progress.forget()

    def _observe_delivery(self, envelope, attempts, trace):
        """Record the event's delay since its event_ts, and warn when it reached :data:`LATE_DELIVERY_SECONDS`."""
        event = _event_of(envelope.get("payload"))
        delay = self.runtime.stats.event_delivered(event.get("event_ts"))
        if delay is None or delay < LATE_DELIVERY_SECONDS:
            return

        before_ack = seconds_since(event.get("event_ts"), envelope.get("received_at"))
        logger.warning(
            "event processed %.1f s after its event_ts "
            "(received by omnibot %s after it; Slack retry %s, reason %s; delivery attempt %d)",
            delay,
            "an unknown time" if before_ack is None else f"{before_ack:.1f} s",
            envelope.get("retry_num") or "none",
            envelope.get("retry_reason") or "none",
            attempts,
            extra=dict(
                trace,
                delay_ms=int(delay * 1000),
                retry_num=envelope.get("retry_num"),
                retry_reason=envelope.get("retry_reason"),
                attempt=attempts,
            ),
        )

    # -- events ------------------------------------------------------------

    def _process_event(self, bot, envelope, progress):
        event = envelope["payload"].get("event") or {}
        event_type = event.get("type")
        trace = envelope_trace(bot, envelope)
        data = self.runtime.slack_data
        stats = self.runtime.stats

        try:
            if event_type in ("message", "app_mention"):
                container = Message(bot, event, trace, data)
                matches = matching.match_message(container)
            elif event_type in ("reaction_added", "reaction_removed"):
                container = Reaction(bot, event, trace, data)
                matches = self._reaction_matches(container)
            else:
                logger.debug("ignored an event of type %s", event_type, extra=trace)
                stats.event_outcome("unsupported")
                return
        except Unsupported as reason:
            logger.debug("ignored event: %s", reason, extra=trace)
            stats.event_outcome("unsupported")
            return

        if matches:
            stats.event_outcome("handled")
            self.run_matches(container, matches, progress)
        elif isinstance(container, Message) and container.directed and not container.is_reply:
            stats.event_outcome("defaulted")
            self._help(container, progress)
        else:
            logger.debug("no handler matched", extra=container.event_trace)
            stats.event_outcome("ignored")

    def _reaction_matches(self, reaction):
        matches = matching.match_reaction(reaction)
        if not matches:
            return []
        payload = reaction.payload
        if not self.runtime.slack_data.is_own_message(
            reaction.bot, payload["item_channel"], payload["item_ts"], payload["item_user"]
        ):
            logger.debug("ignored a reaction to a message the bot did not post", extra=reaction.event_trace)
            return []
        return matches

    def _help(self, message, progress):
        config = self.runtime.config
        if config.help_callback is not None:
            spec = config.help_callback
        elif config.default_to_help:
            spec = _builtin_help_spec()
        else:
            logger.debug("directed message matched no handler and help is off", extra=message.event_trace)
            return
        self.run_callbacks(message, [("help", spec)], progress)

    # -- slash commands and interactive components -------------------------

    def _process_slash_command(self, bot, envelope, progress):
        fields = envelope["payload"]
        command = fields.get("command")
        trace = envelope_trace(bot, envelope)
        handler = bot.slash_command_handler(command) if isinstance(command, str) else None
        if handler is None:
            logger.warning("dropped slash command %s: the config in force has no handler for it", command, extra=trace)
            return

        specs = _queued_specs(handler)
        if not specs:
            logger.info("slash command %s has no queued callbacks in the config in force", command, extra=trace)
            return
        container = SlashCommand(bot, fields, trace, self.runtime.slack_data)
        self.run_callbacks(container, specs, progress, handler.response_type or "ephemeral")

    def _process_interactive_component(self, bot, envelope, progress):
        payload = envelope["payload"]
        trace = envelope_trace(bot, envelope)
        route = interactive_routing.find_route(bot.interactive_handlers, payload, trace)
        if route is None:
            logger.warning("dropped an interactive payload: the config in force has no handler for it", extra=trace)
            return

        handler = route.handler
        trace["handler"] = handler.label
        specs = _queued_specs(handler)
        if not specs:
            logger.info("interactive handler has no queued callbacks in the config in force", extra=trace)
            return
        container = InteractiveComponent(bot, payload, trace, self.runtime.slack_data, route)
        self.run_callbacks(container, specs, progress, handler.response_type or "ephemeral")

    # -- callbacks ---------------------------------------------------------

    def run_matches(self, container, matches, progress, response_type=None):
        """Run the callbacks of every match; see :meth:`run_callbacks`."""
        errors = []
        for match in matches:
            container.set_match(match.match_type, match.value, match.args)
            keyed = [
                (f"{match.handler.label}#{index}", spec)
                for index, spec in enumerate(match.handler.callbacks)
            ]
            try:
                self.run_callbacks(container, keyed, progress, response_type or match.handler.response_type)
            except CallbackError as error:
                errors.append(error)
        if errors:
            raise errors[-1]

    def run_callbacks(self, container, keyed_specs, progress, response_type=None):
        """Call each callback not yet done and apply its result.

        Raises:
            CallbackError: One or more callbacks raised; the progress record
                is saved first so the retry skips the finished ones.
        """
        if not keyed_specs:
            return
        failure = None
        finished = False
        started = time.perf_counter()
        try:
            for key, spec in keyed_specs:
                if progress.is_done(key):
                    logger.info(
                        "skipped callback %s: it finished on an earlier attempt",
                        spec.module,
                        extra=dict(container.event_trace, handler=_handler_label(key), callback=spec.module),
                    )
                    continue
                error = self._run_callback(container, key, spec, progress, response_type)
                if error is not None:
                    failure = error
            finished = True
        finally:
            succeeded = finished and failure is None
            handler = _handler_label(keyed_specs[0][0])
            self.runtime.stats.handler_finished(handler, time.perf_counter() - started, succeeded)

        if failure is not None:
            progress.save()
            raise failure

    def _run_callback(self, container, key, spec, progress, response_type) -> typing.Optional[CallbackError]:
        """Call one callback and apply its result; return its error instead of raising it."""
        trace = dict(container.event_trace, handler=_handler_label(key), callback=spec.module)
        logger.info("calling callback %s", spec.module, extra=trace)
        started = time.perf_counter()
        try:
            result = callbacks.call(spec, container, timeout=self.runtime.settings.callback_timeout)
        except CallbackError as error:
            self.runtime.stats.callback_finished(spec.module, time.perf_counter() - started, False)
            logger.error("%s", error, exc_info=error.__cause__, extra=trace)
            return error

        self.runtime.stats.callback_finished(spec.module, time.perf_counter() - started, True)
        if result:
            self.results.apply(container, result, response_type, progress.marks, key)
        progress.mark_done(key)
        return None


def envelope_trace(bot, envelope: typing.Mapping) -> typing.Dict[str, typing.Any]:
    """Return the logging context of a queued message: its bot and the ids of its payload.

    Args:
        bot: The message's bot, or None when the config in force lacks it
            (the context then names only the app id as ``bot_id``).
    """
    trace = dict(bot.trace) if bot is not None else {"bot_id": envelope.get("app_id")}
    kind = envelope.get("kind")
    payload = envelope.get("payload")
    payload = payload if isinstance(payload, dict) else {}

    if kind == "event":
        event = _event_of(payload)
        channel = event.get("channel")
        trace.update(
            event_type=event.get("type"),
            event_ts=event.get("event_ts"),
            channel_id=channel if isinstance(channel, str) else None,
        )
    elif kind == "slash_command":
        trace.update(
            command=payload.get("command"),
            trigger_id=payload.get("trigger_id"),
            channel_id=payload.get("channel_id"),
        )
    elif kind == "interactive_component":
        channel = payload.get("channel")
        trace.update(
            component_type=payload.get("type"),
            callback_id=interactive_routing.callback_id_of(payload),
            trigger_id=payload.get("trigger_id"),
            channel_id=channel.get("id") if isinstance(channel, dict) else None,
        )
    return trace


def _event_of(payload) -> typing.Mapping:
    event = payload.get("event") if isinstance(payload, dict) else None
    return event if isinstance(event, dict) else {}


def _subject(kind, payload) -> typing.Any:
    """Return the name that omnibot's per-message statsd counters end with: event type, command or callback_id."""
    payload = payload if isinstance(payload, dict) else {}
    if kind == "event":
        return _event_of(payload).get("type")
    if kind == "slash_command":
        return payload.get("command")
    return interactive_routing.callback_id_of(payload)


def _handler_label(callback_key: str) -> str:
    """Return the handler part of a progress key such as ``message_handlers[2]#0``, or ``help``."""
    return callback_key.rsplit("#", 1)[0]


def _queued_specs(handler):
    """Return the keyed callbacks of ``handler`` that run in the worker; synchronous ones ran in the request."""
    return [
        (f"{handler.label}#{index}", spec)
        for index, spec in enumerate(handler.callbacks)
        if not spec.synchronous
    ]


def _builtin_help_spec():
    from omnibot.config.model import CallbackSpec

    return CallbackSpec(module=BUILTIN_HELP, kwargs={})
