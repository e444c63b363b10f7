"""Decode the arguments of a Web API request from its query string and body."""

import email.parser
import email.policy
import json
import urllib.parse


class InvalidBody(ValueError):
    """A request body cannot be decoded. ``error`` is the Slack error code to return."""

    def __init__(self, error: str, detail: str):
        super().__init__(f"{error}: {detail}")
        self.error = error


def parse_query(query: str) -> dict:
    """Decode a query string or form body. A repeated name gives a list of its values."""
    args = {}
    for name, value in urllib.parse.parse_qsl(query, keep_blank_values=True):
        if name not in args:
            args[name] = value
        elif isinstance(args[name], list):
            args[name].append(value)
        else:
            args[name] = [args[name], value]
    return args


def parse_args(query: str, content_type: str, body: bytes) -> dict:
    """Merge the query string arguments with the body's; body values win.

    JSON bodies must hold an object. Form bodies may be url-encoded or
    multipart. A multipart file part is recorded as
    ``"<file NAME, N bytes>"``, not as its content.

    Raises:
        InvalidBody: The body is not valid JSON, not a JSON object, or not decodable text.
    """
    args = parse_query(query)
    if not body:
        return args

    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type == "application/json":
        args.update(_parse_json(body))
    elif media_type == "multipart/form-data":
        args.update(_parse_multipart(content_type, body))
    else:
        try:
            args.update(parse_query(body.decode("utf-8")))
        except UnicodeDecodeError as exc:
            raise InvalidBody("invalid_form_data", str(exc)) from exc
    return args


def _parse_json(body: bytes) -> dict:
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise InvalidBody("invalid_json", str(exc)) from exc

    if not isinstance(data, dict):
        raise InvalidBody("invalid_json", "the JSON body must be an object")
    return data


def _parse_multipart(content_type: str, body: bytes) -> dict:
    header = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(header + body)
    if not message.is_multipart():
        raise InvalidBody("invalid_form_data", "the multipart body has no parts")

    args = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not name:
            continue
        payload = part.get_payload(decode=True) or b""
        filename = part.get_filename()
        if filename is not None:
            args[name] = f"<file {filename}, {len(payload)} bytes>"
        else:
            args[name] = payload.decode(part.get_content_charset() or "utf-8", errors="replace")
    return args
