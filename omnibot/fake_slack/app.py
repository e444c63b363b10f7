"""Request routing of the fake Slack server, independent of the HTTP transport.

Routes:
    ``GET|POST /api/<method>``: a Web API method, served from the workspace.
    ``POST /hooks/<anything>``: a ``response_url`` post, which returns ``ok``.
    ``GET|DELETE /_calls``: read or clear the call log.
    ``GET|POST|DELETE /_faults``: list, add or clear injected faults.

Every ``/api/`` and ``/hooks/`` request is recorded in the call log,
including the ones that return an error or a fault. Requests to
``/_calls`` and ``/_faults`` are not recorded.
"""

import dataclasses
import json
import logging
import sys
import threading
import time

from omnibot.fake_slack.calls import describe_call
from omnibot.fake_slack.dispatch import call_method
from omnibot.fake_slack.faults import fault_from_dict
from omnibot.fake_slack.request_args import InvalidBody, parse_args, parse_query

logger = logging.getLogger(__name__)

JSON_TYPE = "application/json; charset=utf-8"
TEXT_TYPE = "text/plain; charset=utf-8"

HOOK_METHOD = "response_url"


@dataclasses.dataclass
class HttpRequest:
    """One request as the transport received it.

    Attributes:
        method: The HTTP method, such as ``POST``.
        target: The request target: path and optional query string.
        headers: A case-insensitive mapping with a ``get`` method.
        body: The raw body bytes.
    """

    method: str
    target: str
    headers: object
    body: bytes = b""


@dataclasses.dataclass
class HttpResponse:
    """An HTTP response to send.

    Attributes:
        status: The HTTP status code.
        body: The encoded body.
        content_type: The ``Content-Type`` header.
        headers: Further headers, such as ``Retry-After``.
        delay: Seconds the transport waits before sending the response.
    """

    status: int
    body: bytes
    content_type: str = JSON_TYPE
    headers: dict = dataclasses.field(default_factory=dict)
    delay: float = 0.0


def json_response(status: int, data, headers: dict | None = None) -> HttpResponse:
    """Encode ``data`` as compact JSON. Values JSON cannot represent, such as dates, become strings."""
    body = json.dumps(data, separators=(",", ":"), default=str).encode("utf-8")
    return HttpResponse(status, body, JSON_TYPE, dict(headers or {}))


def text_response(status: int, text: str, headers: dict | None = None) -> HttpResponse:
    return HttpResponse(status, text.encode("utf-8"), TEXT_TYPE, dict(headers or {}))


def bearer_token(headers) -> str | None:
    """Return the token of an ``Authorization: Bearer <token>`` header, or None."""
    value = headers.get("Authorization") or ""
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class FakeSlackApp:
    """Routes requests to the Web API methods, the call log and the fault registry.

    Args:
        state: The :class:`~omnibot.fake_slack.state.WorkspaceState` to serve.
        calls: The :class:`~omnibot.fake_slack.calls.CallLog` to record into.
        faults: The :class:`~omnibot.fake_slack.faults.FaultRegistry` to consult.
        verbose: Print one line per recorded call to standard output.
    """

    def __init__(self, state, calls, faults, verbose: bool = False):
        self.state = state
        self.calls = calls
        self.faults = faults
        self.verbose = verbose
        self._print_lock = threading.Lock()

    def handle(self, request: HttpRequest) -> HttpResponse:
        """Build the response to one request. Malformed requests get error responses, not exceptions."""
        path, _, query = request.target.partition("?")

        if path.startswith("/api/"):
            return self._handle_api(request, path, query)
        if path.startswith("/hooks/"):
            return self._handle_hook(request, path, query)
        if path == "/_calls":
            return self._handle_calls(request, query)
        if path == "/_faults":
            return self._handle_faults(request)

        detail = "the fake Slack server serves /api/<method>, /hooks/<path>, /_calls and /_faults"
        return json_response(404, {"ok": False, "error": "not_found", "detail": detail})

    def _handle_api(self, request: HttpRequest, path: str, query: str) -> HttpResponse:
        if request.method not in ("GET", "POST"):
            return json_response(405, {"ok": False, "error": "method_not_allowed"}, {"Allow": "GET, POST"})

        method = path[len("/api/") :]
        if not method:
            return json_response(404, {"ok": False, "error": "unknown_method"})

        token = bearer_token(request.headers)
        try:
            args = parse_args(query, request.headers.get("Content-Type") or "", request.body)
            body_error = None
        except InvalidBody as exc:
            args = parse_query(query)
            body_error = exc.error
            logger.info("request to %s has an invalid body: %s", path, exc)

        # A token may also come as an argument. It is never recorded.
        argument_token = args.pop("token", None)
        if token is None and isinstance(argument_token, str) and argument_token:
            token = argument_token

        fault = self.faults.take(method)
        if fault is not None and fault.replaces_response:
            status, error, headers = fault.error_response()
            response = json_response(status, {"ok": False, "error": error}, headers)
        elif body_error is not None:
            status, error = 200, body_error
            response = json_response(200, {"ok": False, "error": body_error})
        else:
            result = call_method(self.state, method, args, token)
            status, error = 200, result.get("error")
            response = json_response(200, result)

        self._record(method, path, args, token, status, error)
        response.delay = _fault_delay(fault)
        return response

    def _handle_hook(self, request: HttpRequest, path: str, query: str) -> HttpResponse:
        if request.method != "POST":
            return text_response(405, "method_not_allowed", {"Allow": "POST"})

        token = bearer_token(request.headers)
        content_type = request.headers.get("Content-Type") or ""
        if not content_type and request.body.lstrip()[:1] in (b"{", b"["):
            content_type = "application/json"
        try:
            args = parse_args(query, content_type, request.body)
            body_error = None
        except InvalidBody as exc:
            args = parse_query(query)
            body_error = "invalid_payload"
            logger.info("response_url post to %s has an invalid body: %s", path, exc)

        fault = self.faults.take(HOOK_METHOD)
        if fault is not None and fault.replaces_response:
            status, error, headers = fault.error_response()
            response = text_response(status, error, headers)
        elif body_error is not None:
            status, error = 400, body_error
            response = text_response(400, body_error)
        else:
            status, error = 200, None
            response = text_response(200, "ok")

        self._record(HOOK_METHOD, path, args, token, status, error)
        response.delay = _fault_delay(fault)
        return response

    def _handle_calls(self, request: HttpRequest, query: str) -> HttpResponse:
        if request.method == "DELETE":
            self.calls.clear()
            return json_response(200, {"ok": True})
        if request.method != "GET":
            return json_response(405, {"ok": False, "error": "method_not_allowed"}, {"Allow": "GET, DELETE"})

        params = parse_query(query)
        method = params.get("method") or None
        since_text = params.get("since") or "0"
        if not isinstance(since_text, str) or not since_text.isdigit():
            detail = f"since must be a call number >= 0, not {since_text!r}"
            return json_response(400, {"ok": False, "error": "invalid_arguments", "detail": detail})

        next_since = self.calls.next_index()
        calls = self.calls.select(method=method, since=int(since_text))
        return json_response(200, {"ok": True, "calls": calls, "next_since": next_since})

    def _handle_faults(self, request: HttpRequest) -> HttpResponse:
        if request.method == "GET":
            return json_response(200, {"ok": True, "faults": self.faults.active()})
        if request.method == "DELETE":
            self.faults.clear()
            return json_response(200, {"ok": True})
        if request.method != "POST":
            return json_response(405, {"ok": False, "error": "method_not_allowed"}, {"Allow": "GET, POST, DELETE"})

        try:
            data = json.loads(request.body or b"null")
            specs = data if isinstance(data, list) else [data]
            faults = [fault_from_dict(spec) for spec in specs]
        except ValueError as exc:
            logger.info("rejected invalid fault: %s", exc)
            return json_response(400, {"ok": False, "error": "invalid_fault", "detail": str(exc)})

        for fault in faults:
            self.faults.add(fault)
        return json_response(200, {"ok": True, "faults": self.faults.active()})

    def _record(self, method: str, path: str, args: dict, token, status: int, error) -> None:
        call = {
            "method": method,
            "path": path,
            "args": args,
            "headers": {"token_present": token is not None, "token_last4": token[-4:] if token else None},
            "status": status,
            "error": error,
            "time": time.time(),
        }
        self.calls.record(call)

        if self.verbose:
            line = describe_call(call)
            with self._print_lock:
                print(line, file=sys.stdout, flush=True)


def _fault_delay(fault) -> float:
    if fault is None or fault.delay is None:
        return 0.0
    return float(fault.delay)
