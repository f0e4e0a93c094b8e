"""Checking OpenAI chat-completions requests (assistant.server.request) and stop strings in the engine."""

from __future__ import annotations

import json

import pytest

from assistant.models.engine import _StopScan
from assistant.server.request import ApiError, grammar_for, parse_chat, parse_json

BASE = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def parse(**fields: object):  # noqa: ANN201
    return parse_chat({**BASE, **fields}, max_tokens_limit=100)


def test_a_conversation_splits_into_system_earlier_turns_and_question() -> None:
    request = parse(
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": "No lists."},
            {"role": "user", "content": [{"type": "text", "text": "A"}, {"type": "text", "text": "B"}]},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": "next"},
        ]
    )
    assert request.system == "Be brief.\n\nNo lists."
    assert request.earlier == [("user", "AB"), ("assistant", "ok")] and request.question == "next"
    assert (
        request.key("answer")
        == parse(
            messages=[
                {"role": "system", "content": "Be brief."},
                {"role": "developer", "content": "No lists."},
                {"role": "user", "content": "AB"},
                {"role": "assistant", "content": "ok"},
                {"role": "user", "content": "next"},
                {"role": "assistant", "content": "answer"},
                {"role": "user", "content": "third"},
            ]
        ).key()
    )  # the resent conversation is found under the key its last answer left
    trimmed = parse(
        messages=[
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": " a\n"},
            {"role": "user", "content": "next"},
        ]
    )
    assert trimmed.key() == parse(messages=[{"role": "user", "content": "q"}]).key(" a")  # a client trimmed it


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"model": ""}, "model"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0]"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "messages[0].content"),
        ({"max_tokens": 101}, "max_tokens"),
        ({"max_completion_tokens": 0}, "max_completion_tokens"),
        ({"max_tokens": True}, "max_tokens"),
        ({"temperature": 3}, "temperature"),
        ({"top_p": "x"}, "top_p"),
        ({"temperature": float("nan")}, "temperature"),
        ({"stop": ["a"] * 5}, "stop"),
        ({"stop": [""]}, "stop"),
        ({"seed": 1.5}, "seed"),
        ({"n": 2}, "n"),
        ({"tools": [{"type": "function"}]}, "tools"),
        ({"stream": "yes"}, "stream"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),
        ({"response_format": {"type": "xml"}}, "response_format"),
        ({"response_format": "json"}, "response_format"),
        ({"response_format": {"type": "json_schema", "json_schema": "x"}}, "response_format"),
        ({"response_format": {"type": "json_schema", "json_schema": {"schema": {"type": "thing"}}}}, "response_format"),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"schema": {"type": "array", "minItems": 10**9}},
                }
            },
            "response_format",
        ),
    ],
)
def test_bad_fields_are_400_naming_the_field(fields: dict, param: str) -> None:
    with pytest.raises(ApiError) as error:
        parse(**fields)
    assert error.value.status == 400 and error.value.param == param and error.value.message


def test_bodies_that_are_not_json_objects_are_refused() -> None:
    for body in (b"{", b"[]", b"\xff\xfe", b'"text"'):
        with pytest.raises(ApiError) as error:
            parse_json(body)
        assert error.value.status == 400 and set(error.value.body()["error"]) == {"message", "type", "param", "code"}


def test_sampling_settings_and_formats_are_read() -> None:
    request = parse(
        max_tokens=50,
        temperature=0,
        top_p=1,
        stop="END",
        seed=-1,
        stream=True,
        stream_options={"include_usage": True},
        response_format={"type": "json_object"},
    )
    assert (request.max_tokens, request.temperature, request.top_p, request.stop) == (50, 0.0, 1.0, ["END"])
    assert request.stream and request.include_usage and request.json_schema == {"type": "object"}
    assert 0 <= request.seed < 2**32 - 1
    assert parse(response_format={"type": "text"}).json_schema is None


def test_grammars_from_schemas() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    assert "root" in grammar_for(schema)._grammar and grammar_for({})._grammar  # noqa: SLF001
    with pytest.raises(ApiError, match="not supported"):
        grammar_for({"type": "object", "properties": {"a": {"$ref": "#/nowhere"}}})


def test_stop_strings_are_cut_and_lookalikes_released() -> None:
    scan = _StopScan(["</end>", "STOP"])
    shown = []
    for piece in ["Hello </", "en", "d", "!", " ok ST", "OP more"]:
        text, stopped = scan.feed(piece)
        shown.append(text)
        if stopped:
            break
    assert "".join(shown) == "Hello </end! ok " and stopped  # "</en" + "d!" was no stop string: released
    plain = _StopScan([])
    assert plain.feed("abc") == ("abc", False) and plain.held() == ""
    held = _StopScan(["###"])
    assert held.feed("text #") == ("text ", False) and held.held() == "#"


def test_error_bodies_are_openai_shaped() -> None:
    error = ApiError(404, "no such model", param="model", code="model_not_found")
    assert json.loads(json.dumps(error.body())) == {
        "error": {
            "message": "no such model",
            "type": "invalid_request_error",
            "param": "model",
            "code": "model_not_found",
        }
    }
