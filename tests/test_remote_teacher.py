"""The teacher client against real HTTP on 127.0.0.1: streaming, errors, retries, keys."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from teacher_servers import ANSWER, FakeTeacher, free_port

from assistant import AssistantError
from assistant.chat.escalation.teacher import RemoteTeacher, TeacherError, endpoint
from assistant.config import TeacherSettings

KEY = "sk-test-0123456789abcdef-SECRET"
MESSAGES = [{"role": "user", "content": "Who was the first president of Botswana?"}]


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeTeacher]:
    server = FakeTeacher()
    yield server
    server.close()


def settings(url: str, **extra: object) -> TeacherSettings:
    values = {"url": url, "model": "big-teacher", "timeout_s": 5.0, "connect_timeout_s": 2.0, "retries": 1}
    values.update(extra)
    return TeacherSettings(**values)  # type: ignore[arg-type]


def ask(teacher: RemoteTeacher) -> str:
    return "".join(teacher.stream(teacher.request(MESSAGES, max_tokens=16, temperature=0.0)))


def test_endpoint_accepts_base_or_full_url() -> None:
    assert endpoint("http://h:1/v1") == "http://h:1/v1/chat/completions"
    assert endpoint("http://h:1/v1/") == "http://h:1/v1/chat/completions"
    assert endpoint("http://h:1/v1/chat/completions") == "http://h:1/v1/chat/completions"


def test_streams_the_answer_and_sends_exactly_the_request_body(fake: FakeTeacher, monkeypatch) -> None:
    fake.set("ok")
    monkeypatch.setenv("TEACHER_TEST_KEY", KEY)
    teacher = RemoteTeacher(settings(fake.url, api_key_env="TEACHER_TEST_KEY"))
    request = teacher.request(MESSAGES, max_tokens=16, temperature=0.0)
    pieces = list(teacher.stream(request))
    assert pieces == ANSWER
    assert teacher.finish_reason == "stop"
    [received] = fake.requests
    assert received["path"] == "/v1/chat/completions"
    assert received["body"] == request.body
    assert json.loads(received["body"]) == {
        "model": "big-teacher", "messages": MESSAGES, "max_tokens": 16, "temperature": 0.0, "stream": True,
    }  # fmt: skip
    assert received["headers"]["Authorization"] == f"Bearer {KEY}"
    assert KEY not in request.preview() and "Bearer ***" in request.preview()
    assert request.body.decode() in request.preview()


def test_a_server_that_ignores_stream_still_works(fake: FakeTeacher) -> None:
    fake.set("json")
    teacher = RemoteTeacher(settings(fake.url))
    assert ask(teacher) == "".join(ANSWER)
    assert "Authorization" not in fake.requests[0]["headers"]


def test_refused_connection_is_one_clear_error_after_bounded_retries() -> None:
    teacher = RemoteTeacher(settings(f"http://127.0.0.1:{free_port()}/v1", retries=2))
    started = time.monotonic()
    with pytest.raises(TeacherError, match=r"cannot connect .*is it running\? \(after 3 attempt\(s\)\)"):
        ask(teacher)
    assert time.monotonic() - started < 5


def test_http_500_is_retried_then_reported(fake: FakeTeacher) -> None:
    fake.set("error500")
    with pytest.raises(TeacherError, match=r"HTTP 500: internal error: teacher overloaded \(after 2 attempt"):
        ask(RemoteTeacher(settings(fake.url, retries=1)))
    assert len(fake.requests) == 2


def test_a_slow_teacher_times_out_without_retrying(fake: FakeTeacher) -> None:
    fake.set("slow", delay=4.0)
    started = time.monotonic()
    with pytest.raises(TeacherError, match=r"timed out \(nothing received for 0.4 s\)"):
        ask(RemoteTeacher(settings(fake.url, timeout_s=0.4)))
    assert time.monotonic() - started < 3.0  # gave up well before the answer came (a busy machine adds seconds)
    assert len(fake.requests) == 1


@pytest.mark.parametrize(
    ("mode", "message"),
    [("garbage", r"malformed stream \(not JSON"), ("truncated", r"stream ended before the answer was complete")],
)
def test_malformed_or_truncated_streams_are_errors(fake: FakeTeacher, mode: str, message: str) -> None:
    fake.set(mode)
    teacher = RemoteTeacher(settings(fake.url))
    received: list[str] = []
    with pytest.raises(TeacherError, match=message):
        for piece in teacher.stream(teacher.request(MESSAGES, max_tokens=16, temperature=0.0)):
            received.append(piece)
    assert received == ([] if mode == "garbage" else ANSWER[:2])
    assert len(fake.requests) == 1  # content had been received (or the answer was garbage): no retry


def test_the_key_never_appears_in_errors_even_if_the_server_echoes_it(fake: FakeTeacher, monkeypatch) -> None:
    fake.set("echo401")
    monkeypatch.setenv("TEACHER_TEST_KEY", KEY)
    with pytest.raises(TeacherError) as caught:
        ask(RemoteTeacher(settings(fake.url, api_key_env="TEACHER_TEST_KEY")))
    assert "HTTP 401: bad credentials: Bearer ***" in str(caught.value)
    assert KEY not in str(caught.value) and caught.value.__cause__ is None and caught.value.__context__ is None


def test_401_without_a_key_says_how_to_set_one(fake: FakeTeacher, monkeypatch) -> None:
    fake.set("echo401")
    monkeypatch.delenv("TEACHER_TEST_KEY", raising=False)
    with pytest.raises(TeacherError, match="no API key set"):
        ask(RemoteTeacher(settings(fake.url, api_key_env="TEACHER_TEST_KEY")))


def test_key_file_must_be_private(fake: FakeTeacher, tmp_path: Path) -> None:
    key_file = tmp_path / "teacher.key"
    key_file.write_text(KEY + "\n")
    key_file.chmod(0o644)
    with pytest.raises(TeacherError, match=r"has mode 0644; it must be readable by you alone: chmod 600") as caught:
        RemoteTeacher(settings(fake.url, api_key_file=str(key_file)))
    assert KEY not in str(caught.value)
    assert isinstance(caught.value, AssistantError)
    key_file.chmod(0o600)
    fake.set("ok")
    assert ask(RemoteTeacher(settings(fake.url, api_key_file=str(key_file)))) == "".join(ANSWER)
    assert fake.requests[0]["headers"]["Authorization"] == f"Bearer {KEY}"


def test_missing_key_file_and_missing_config_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(TeacherError, match="teacher key file .*nope.key: cannot read it"):
        RemoteTeacher(settings("http://127.0.0.1:1/v1", api_key_file=str(tmp_path / "nope.key")))
    with pytest.raises(TeacherError, match=r"no teacher configured: set \[teacher\] url and model"):
        RemoteTeacher(TeacherSettings())
    assert os.environ.get("TEACHER_TEST_KEY") is None
