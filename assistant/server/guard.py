"""What `assistant serve` lets in: the API key or loopback-only callers, and bounded JSON bodies.

With an API key, every request must carry it (compared in constant time). Without one, the server
only listens on loopback and refuses requests naming another Host or Origin (a web page, DNS
rebinding). Bodies must be JSON and no larger than the limit, declared or not.
"""

from __future__ import annotations

import hmac
import ipaddress
import socket
from urllib.parse import urlsplit

from starlette.requests import Request

from assistant.server.request import ApiError


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
    """The JSON body, at most ``limit`` bytes (415 if not JSON, 413 if larger)."""
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
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large
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
