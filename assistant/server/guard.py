"""What `assistant serve` lets in: the API key or loopback-only callers, and bounded JSON bodies.

With an API key, every request must carry it (compared in constant time); a key no HTTP header can
carry is refused at start. Without one, the server only listens on loopback and refuses requests
naming another Host or Origin (a web page, DNS rebinding). Bodies must be JSON and no larger than
the limit, declared or not. ``--host`` must be an IP address (``[::1]`` as in URLs too) or a host name.
"""

from __future__ import annotations

import hmac
import ipaddress
import re
import socket
from urllib.parse import urlsplit

from starlette.requests import ClientDisconnect, Request

from assistant import AssistantError
from assistant.server.request import ApiError
from assistant.server.response import log

_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")  # one dot-separated part of a host name


def check_api_key(key: str) -> None:
    """Refuse a key no client could send: ``Authorization`` carries printable ASCII, edge spaces stripped."""
    if key and (not all(" " <= char <= "~" for char in key) or key != key.strip()):
        raise AssistantError(
            "the API key (--api-key-env) cannot be sent in an HTTP header, so no client could authenticate: "
            "use printable ASCII without leading or trailing spaces"
        )


def listen_address(host: str) -> str:
    """``--host`` as the socket functions take it (``[::1]``, URL syntax, as ``::1``); one clear error if malformed."""
    bracketed = host.startswith("[") and host.endswith("]")
    bare = host[1:-1] if bracketed else host
    valid = _ip_version(bare) == 6 if bracketed else _ip_version(bare) is not None or _is_host_name(bare)
    if not valid:
        raise AssistantError(
            f"--host {host!r}: not a valid address (use an IP address such as 127.0.0.1 or ::1, or a host name)"
        )
    return bare


def _ip_version(text: str) -> int | None:
    try:
        return ipaddress.ip_address(text).version
    except ValueError:
        return None


def _is_host_name(name: str) -> bool:
    labels = name.removesuffix(".").split(".")
    return 0 < len(name) <= 253 and all(_LABEL.fullmatch(label) for label in labels)


def check_caller(request: Request, api_key: str) -> None:
    """With an API key: check it (constant time). Without: only loopback hosts, never a web page elsewhere."""
    if api_key:
        header = request.headers.get("authorization", "")
        given = header[7:].strip() if header[:7].lower() == "bearer " else ""
        if not hmac.compare_digest(given.encode(), api_key.encode()):
            raise ApiError(401, "invalid or missing API key: send Authorization: Bearer KEY", code="invalid_api_key")
        return
    origin = request.headers.get("origin")
    if not is_loopback_name(_hostname("//" + request.headers.get("host", ""))) or (
        origin and not is_loopback_name(_hostname(origin))
    ):
        raise ApiError(
            403,
            "requests from other hosts or web pages need an API key (serve with --api-key-env)",
            "permission_error",
            code="forbidden",
        )


async def read_body(request: Request, limit: int) -> bytes:
    """The JSON body, at most ``limit`` bytes (415 if not JSON, 413 if larger, 400 if the client left mid-body)."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/json":
        raise ApiError(415, "send the request body as JSON (Content-Type: application/json)")
    too_large = ApiError(
        413, f"the request body is larger than this server's limit of {limit} bytes", code="request_too_large"
    )
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise too_large
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise too_large
    except ClientDisconnect:
        log("a client went away before sending its whole request")
        raise ApiError(400, "the request body was cut short") from None  # nobody is left to read it
    return bytes(body)


def _hostname(url: str) -> str:
    try:
        return urlsplit(url).hostname or ""
    except ValueError:  # e.g. an unclosed "[" in a Host header
        return ""


def is_loopback_name(name: str) -> bool:
    if name.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def is_loopback(host: str) -> bool:
    """Whether every address ``host`` stands for is a loopback address."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return False
    return bool(infos) and all(ipaddress.ip_address(str(info[4][0]).split("%")[0]).is_loopback for info in infos)
