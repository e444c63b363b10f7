"""The internal API's logic, independent of Flask.

Backend services call the routes of :mod:`omnibot.routes.api` to look up
Slack users, conversations and IMs, and to call Slack Web API methods as a
configured bot. Each operation of :mod:`omnibot.internal_api.operations`
takes the runtime, the path parameters and the raw body, and returns an
:class:`omnibot.inbound.Answer` whose body is JSON, errors included.
"""

from omnibot.internal_api.operations import (
    get_channel,
    get_ims,
    get_team,
    get_user,
    perform_action,
    send_im,
)

__all__ = ["get_channel", "get_ims", "get_team", "get_user", "perform_action", "send_im"]
