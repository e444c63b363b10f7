"""Callbacks that ship with omnibot, for use in the ``callbacks`` of a handler.

A handler names one as ``omnibot.callbacks.<module>:<function>``, for example
``omnibot.callbacks.network_callbacks:http_callback``. Every callback takes the
payload container as its first argument and the handler's ``kwargs`` as keyword
arguments, and returns a dict whose ``actions`` are Slack Web API calls and whose
``responses`` are posted to the payload's ``response_url``. No callback here calls
Slack itself.

Modules:
    message_callbacks: Callbacks for message and reaction handlers.
    network_callbacks: ``http_callback``, which forwards the payload to a backend service.
    slash_command_callbacks: Callbacks for slash command handlers.
    interactive_component_callbacks: Callbacks for interactive component handlers.
"""
