"""The remote teacher for escalation: any OpenAI-compatible chat-completions endpoint, streamed over HTTP.

Used only when the user enabled escalation. The request body is built once
(:class:`EscalationRequest`) so the preview the user approves is byte for byte what is
sent. The API key comes from an environment variable or a key file readable only by
its owner; it is sent in the ``Authorization`` header and nowhere else (not in the
preview, the database, logs or error messages).
"""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from assistant import AssistantError
from assistant.config import TeacherSettings

RETRY_STATUSES = {429, 500, 502, 503, 504}
BACKOFF_S = 0.25


class TeacherError(AssistantError):
    """The teacher cannot be reached or answered with something unusable."""


@dataclass(frozen=True)
class EscalationRequest:
    """Exactly what would leave the device: where, which model, and the body bytes."""

    url: str
    model: str
    messages: list[dict[str, str]]
    body: bytes
    sends_key: bool = False  # an Authorization header goes along (its value is never shown)

    def preview(self) -> str:
        """Human-readable preview: the URL, then the body exactly as it will be sent."""
        key = "Authorization: Bearer *** (your API key)\n" if self.sends_key else ""
        return f"POST {self.url}\n{key}\n{self.body.decode('utf-8')}"


def endpoint(base_url: str) -> str:
    """The chat-completions URL for a base URL such as ``http://host:8080/v1``."""
    url = base_url.rstrip("/")
    return url if url.endswith("/chat/completions") else url + "/chat/completions"


def read_api_key(settings: TeacherSettings) -> str:
    """The key from ``api_key_env`` or ``api_key_file`` (owner-only file); '' when none is set."""
    if settings.api_key_file:
        path = Path(settings.api_key_file).expanduser()
        try:
            mode = path.stat().st_mode
        except OSError as exc:
            raise TeacherError(f"teacher key file {path}: cannot read it ({exc.strerror})") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise TeacherError(
                f"teacher key file {path} has mode {stat.S_IMODE(mode):04o}; "
                f"it must be readable by you alone: chmod 600 {path}"
            )
        return path.read_text(encoding="utf-8").strip()
    if settings.api_key_env:
        return os.environ.get(settings.api_key_env, "").strip()
    return ""


class RemoteTeacher:
    """A streaming chat client for one OpenAI-compatible endpoint."""

    def __init__(self, settings: TeacherSettings) -> None:
        if not settings.url or not settings.model:
            raise TeacherError("no teacher configured: set [teacher] url and model in config.toml")
        self.settings = settings
        self.url = endpoint(settings.url)
        self.model = settings.model
        self._key = read_api_key(settings)
        self.finish_reason = ""

    def request(self, messages: list[dict[str, str]], *, max_tokens: int, temperature: float) -> EscalationRequest:
        """Build the exact request for ``messages``; nothing is sent yet."""
        body = {
            "model": self.model,
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": temperature,
            "stream": True,
        }
        text = json.dumps(body, ensure_ascii=False, indent=2)
        return EscalationRequest(
            self.url, self.model, [dict(m) for m in messages], text.encode("utf-8"), sends_key=bool(self._key)
        )

    def stream(self, request: EscalationRequest) -> Generator[str, None, None]:
        """Send ``request`` and yield the answer's text pieces.

        Connection failures and 429/5xx answers are retried (``retries`` times, with backoff)
        as long as nothing has been received; every failure ends as one :class:`TeacherError`.
        """
        attempts = max(0, self.settings.retries) + 1
        for attempt in range(attempts):
            try:
                yield from self._attempt(request)
                return
            except _Retryable as exc:  # raised only before any content was received
                if attempt == attempts - 1:
                    message = f"{exc} (after {attempt + 1} attempt(s))"
                else:
                    message = ""
                    time.sleep(BACKOFF_S * 2**attempt)
            except TeacherError as exc:
                message = str(exc)
            if message:  # raised outside the handler: no chained exception can carry the key along
                raise TeacherError(self._scrub(message))

    # -- one attempt
    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        return headers

    def _attempt(self, request: EscalationRequest) -> Iterator[str]:
        settings = self.settings
        timeout = httpx.Timeout(settings.timeout_s, connect=settings.connect_timeout_s)
        where = f"teacher at {self.url}"
        try:
            with httpx.Client(timeout=timeout) as client:
                with client.stream("POST", self.url, content=request.body, headers=self._headers()) as response:
                    if response.status_code >= 400:
                        self._http_error(response, where)
                    kind = response.headers.get("content-type", "")
                    if "text/event-stream" in kind:
                        yield from self._events(response, where)
                    else:
                        yield self._whole(response, where)
        except httpx.ConnectTimeout:
            raise _Retryable(f"{where}: no connection within {settings.connect_timeout_s:g} s") from None
        except httpx.ConnectError as exc:
            raise _Retryable(f"{where}: cannot connect ({_reason(exc)}); is it running?") from None
        except httpx.TimeoutException:
            raise TeacherError(f"{where}: timed out (nothing received for {settings.timeout_s:g} s)") from None
        except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
            raise TeacherError(f"{where}: the stream was cut off ({_reason(exc)})") from None
        except httpx.HTTPError as exc:
            raise TeacherError(self._scrub(f"{where}: {type(exc).__name__}: {_reason(exc)}")) from None

    def _http_error(self, response: httpx.Response, where: str) -> None:
        detail = response.read().decode("utf-8", "replace").strip().replace("\n", " ")[:200]
        message = f"{where}: HTTP {response.status_code}" + (f": {detail}" if detail else "")
        if response.status_code == 401 and not self._key:
            message += " (no API key set: configure [teacher] api_key_env or api_key_file)"
        if response.status_code in RETRY_STATUSES:
            raise _Retryable(self._scrub(message))
        raise TeacherError(self._scrub(message))

    def _events(self, response: httpx.Response, where: str) -> Iterator[str]:
        """Parse server-sent events: ``data: {chunk}`` lines, ending with ``data: [DONE]``."""
        self.finish_reason = ""
        for line in response.iter_lines():
            if not line.startswith("data:"):
                continue  # blank separators, comments (": ping"), event/id fields
            data = line[5:].strip()
            if data == "[DONE]":
                self.finish_reason = self.finish_reason or "stop"
                return
            choice = _choice(_json(data, where), where)
            if content := (choice.get("delta") or {}).get("content"):
                yield content
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        if not self.finish_reason:
            raise TeacherError(f"{where}: the stream ended before the answer was complete (truncated)")

    def _whole(self, response: httpx.Response, where: str) -> str:
        """A server that ignored ``stream``: one JSON completion."""
        choice = _choice(_json(response.read().decode("utf-8", "replace"), where), where)
        content = (choice.get("message") or {}).get("content")
        if not isinstance(content, str):
            raise TeacherError(f"{where}: malformed answer (no message content)")
        self.finish_reason = choice.get("finish_reason") or "stop"
        return content

    def _scrub(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text


class _Retryable(Exception):
    """A failure worth another attempt if nothing was received yet."""


def _reason(exc: Exception) -> str:
    return str(exc) or type(exc).__name__


def _json(data: str, where: str) -> dict:
    try:
        value = json.loads(data)
    except ValueError:
        raise TeacherError(f"{where}: malformed stream (not JSON: {data[:60]!r})") from None
    if not isinstance(value, dict):
        raise TeacherError(f"{where}: malformed stream (expected a JSON object)")
    if "error" in value:
        error = value["error"]
        message = error.get("message", error) if isinstance(error, dict) else error
        raise TeacherError(f"{where}: the teacher reported an error: {str(message)[:200]}")
    return value


def _choice(chunk: dict, where: str) -> dict:
    choices = chunk.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise TeacherError(f"{where}: malformed stream (a chunk without choices)")
    return choices[0]
