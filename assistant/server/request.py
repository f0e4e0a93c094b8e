"""An OpenAI chat-completions request, checked: what `assistant serve` accepts and the errors it answers with.

Every problem with a request becomes an :class:`ApiError` whose message names the field
(``param``) in OpenAI's error shape, so clients show one clear line and SDKs raise their own
exception types (400 ``BadRequestError``, 401 ``AuthenticationError``, 404 ``NotFoundError``…).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from assistant.models.schema import SchemaError, from_response_format
from assistant.models.schema import grammar_for as schema_grammar

ROLES = ("system", "developer", "user", "assistant")
MAX_STOPS = 4
MAX_STOP_CHARS = 256
MAX_SCHEMA_COUNT = 1024  # minItems, maxLength…: grammar size grows with them
MAX_DEPTH = 64  # nesting of the JSON body: far beyond any real request, far below the recursion limit
_SURROGATE = re.compile("[\ud800-\udfff]")  # left in a str by JSON's "\ud800" escape without its pair


@dataclass(eq=False)  # exceptions stay hashable
class ApiError(Exception):
    """An error answered as ``{"error": {"message", "type", "param", "code"}}`` with ``status``."""

    status: int
    message: str
    type: str = "invalid_request_error"
    param: str | None = None
    code: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


@dataclass
class ChatRequest:
    """A checked request: who to ask, the conversation so far, the question and the sampling settings."""

    model: str
    system: str  # the client's system (and developer) messages, joined
    earlier: list[tuple[str, str]]  # (role, content) of the turns before the question
    question: str
    stream: bool = False
    include_usage: bool = False
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    json_schema: dict[str, Any] | None = None  # response_format's schema ({"type": "object"} for json_object)
    logprobs: bool = False  # report each generated token's log-probability

    def key(self, answer: str | None = None) -> str:
        """The conversation's fingerprint before the question, or (given the answer) after this exchange."""
        turns = self.earlier if answer is None else [*self.earlier, ("user", self.question), ("assistant", answer)]
        return fingerprint(self.model, self.system, turns)


def fingerprint(model: str, system: str, turns: list[tuple[str, str]]) -> str:
    """A conversation's identity; blind to surrounding whitespace, which some clients trim from answers."""
    stripped = [(role, text.strip()) for role, text in turns]
    data = json.dumps([model, system.strip(), stripped], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(data.encode("utf-8")).hexdigest()


def invalid(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, param=param, code=code)


def parse_json(body: bytes) -> dict[str, Any]:
    """The body as a JSON object. Text no UTF-8 can hold becomes U+FFFD, as the CLI does with such input:
    bytes that are not UTF-8, and lone surrogates (``"\\ud800"``), which storing or answering could not encode."""
    try:
        data = json.loads(body.decode("utf-8-sig", errors="replace"))
    except RecursionError:
        raise _too_deep() from None
    except ValueError:
        raise invalid("the request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise invalid("the request body must be a JSON object")
    _mend(data)
    return data


def _too_deep() -> ApiError:
    return invalid(f"the request body is nested too deeply (at most {MAX_DEPTH} levels)")


def _mend(data: dict[str, Any]) -> None:
    """Replace lone surrogates in ``data``'s strings (keys too) by U+FFFD, in place; 400 if nested too deeply.

    Iterative, so that no nesting the parser accepted can exhaust the stack here."""
    stack: list[tuple[dict[str, Any] | list[Any], int]] = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise _too_deep()
        if isinstance(node, dict):
            for key in [k for k in node if _SURROGATE.search(k)]:
                node[_SURROGATE.sub("\ufffd", key)] = node.pop(key)
        for slot, value in node.items() if isinstance(node, dict) else enumerate(node):
            if isinstance(value, str):
                node[slot] = _SURROGATE.sub("\ufffd", value)  # type: ignore[index]
            elif isinstance(value, dict | list):
                stack.append((value, depth + 1))


def parse_chat(data: dict[str, Any], max_tokens_limit: int) -> ChatRequest:
    """Check a chat-completions body; unknown fields are ignored, unsupported features refused."""
    model = data.get("model")
    if not isinstance(model, str) or not model:
        raise invalid("'model' is required: one of the names GET /v1/models lists", "model")
    system, turns = _messages(data.get("messages"))
    if not turns or turns[-1][0] != "user":
        raise invalid("the last message must be the user's (an answer is generated for it)", "messages")
    _refuse_unsupported(data)
    stream = _typed(data, "stream", bool, False)
    options = _typed(data, "stream_options", dict, None)
    if options is not None and not stream:
        raise invalid("'stream_options' is only allowed with 'stream': true", "stream_options")
    include_usage = _typed(options or {}, "include_usage", bool, False, "stream_options.include_usage")
    max_tokens = _max_tokens(data, max_tokens_limit)
    temperature = _number(data, "temperature", 0.0, 2.0)
    top_p = _number(data, "top_p", 0.0, 1.0)
    seed = _typed(data, "seed", int, None)
    return ChatRequest(
        model=model,
        system=system,
        earlier=turns[:-1],
        question=turns[-1][1],
        stream=stream,
        include_usage=include_usage,
        max_tokens=max_tokens,
        temperature=temperature,
        top_p=top_p if top_p is None else max(top_p, 1e-6),
        stop=_stop(data.get("stop")),
        seed=None if seed is None else seed % (2**32 - 1),
        json_schema=_response_format(data.get("response_format")),
        logprobs=_logprobs(data),
    )


def _typed(data: dict[str, Any], name: str, kind: type, default: Any, param: str | None = None) -> Any:
    value = data.get(name)
    if value is None:
        return default
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise invalid(f"'{param or name}' must be {_kind_name(kind)}", param or name)
    return value


def _kind_name(kind: type) -> str:
    return {bool: "true or false", int: "an integer", dict: "an object", str: "a string"}.get(kind, kind.__name__)


def _number(data: dict[str, Any], name: str, low: float, high: float) -> float | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise invalid(f"'{name}' must be a number", name)
    if not low <= value <= high:
        raise invalid(f"'{name}' must be between {low:g} and {high:g}", name)
    return float(value)


def _max_tokens(data: dict[str, Any], limit: int) -> int | None:
    name = "max_completion_tokens" if data.get("max_completion_tokens") is not None else "max_tokens"
    value = _typed(data, name, int, None)
    if value is not None and not 1 <= value <= limit:
        raise invalid(f"'{name}' must be between 1 and {limit} on this server", name)
    return value


def _messages(messages: Any) -> tuple[str, list[tuple[str, str]]]:
    """(the system prompt, the user/assistant turns) of an OpenAI message list."""
    if not isinstance(messages, list) or not messages:
        raise invalid("'messages' must be a non-empty list", "messages")
    system: list[str] = []
    turns: list[tuple[str, str]] = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise invalid(f"'{where}' must be an object", where)
        role = message.get("role")
        if role not in ROLES:
            raise invalid(f"'{where}.role' must be one of {', '.join(ROLES)} (tools are not supported)", where)
        text = _content(message.get("content"), f"{where}.content")
        if role in ("system", "developer"):
            system.append(text)
        else:
            turns.append((role, text))
    return "\n\n".join(system), turns


def _content(content: Any, where: str) -> str:
    """A message's text: a string, or a list of text parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise invalid(f"'{where}': only text parts are supported", where)
            texts.append(part["text"])
        return "".join(texts)
    raise invalid(f"'{where}' must be a string or a list of text parts", where)


def _refuse_unsupported(data: dict[str, Any]) -> None:
    n = data.get("n")
    if n is not None and n != 1:
        raise invalid("'n' must be 1: one answer per request", "n")
    for name in ("tools", "functions"):
        if data.get(name):
            raise invalid(f"'{name}' are not supported by this server", name)


def _logprobs(data: dict[str, Any]) -> bool:
    """``logprobs``; ``top_logprobs`` only as 0: the engine keeps the chosen token's logprob, not the others'."""
    logprobs = _typed(data, "logprobs", bool, False)
    top = _typed(data, "top_logprobs", int, None)
    if top is None:
        return logprobs
    if not logprobs:
        raise invalid("'top_logprobs' needs 'logprobs': true", "top_logprobs")
    if top != 0:
        raise invalid(
            "'top_logprobs' must be 0 on this server: it reports the chosen token's logprob, "
            "not the alternatives' (the engine does not keep them)",
            "top_logprobs",
        )
    return logprobs


def _stop(stop: Any) -> list[str]:
    if stop is None:
        return []
    stops = [stop] if isinstance(stop, str) else stop
    if (
        not isinstance(stops, list)
        or len(stops) > MAX_STOPS
        or not all(isinstance(s, str) and 0 < len(s) <= MAX_STOP_CHARS for s in stops)
    ):
        raise invalid(
            f"'stop' must be a string or a list of at most {MAX_STOPS} strings of 1-{MAX_STOP_CHARS} characters", "stop"
        )
    return stops


def _response_format(value: Any) -> dict[str, Any] | None:
    """None for plain text, else the JSON schema the answer must follow ({"type": "object"} for json_object)."""
    if value is not None and not isinstance(value, dict):
        raise invalid("'response_format' must be an object", "response_format")
    try:
        schema = from_response_format(value)
    except SchemaError as exc:
        raise invalid(f"'response_format': {exc}", "response_format") from None
    if schema is not None:
        _check_schema_size(schema)
    return schema


def _check_schema_size(node: Any, depth: int = 0) -> None:
    """Refuse schemas whose grammar would be huge (deep nesting, large repetition counts)."""
    if depth > 32:
        raise invalid("'response_format' schema is nested too deeply", "response_format")
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("minItems", "maxItems", "minLength", "maxLength", "minProperties", "maxProperties") and (
                not isinstance(value, int) or value > MAX_SCHEMA_COUNT
            ):
                raise invalid(
                    f"'response_format' schema: {key} must be an integer <= {MAX_SCHEMA_COUNT}", "response_format"
                )
            _check_schema_size(value, depth + 1)
    elif isinstance(node, list):
        for item in node:
            _check_schema_size(item, depth + 1)


def grammar_for(schema: dict[str, Any]) -> Any:
    """The llama.cpp grammar (``assistant.models.schema``, as for ``ask --schema``) that only lets the model write JSON
    following ``schema``; 400 for a schema it cannot express."""
    try:
        return schema_grammar(schema)
    except SchemaError as exc:
        raise invalid(f"'response_format' schema is not supported: {exc}", "response_format") from None
