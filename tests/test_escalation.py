"""Escalation end to end over real HTTP on 127.0.0.1: routing, privacy preview, fallbacks, keys.

The student is SmolLM2-135M (the shared ``engine``); the real teacher is llama-cpp-python's
OpenAI-compatible server running Gemma 3 270M; fault cases use a small http.server fake.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from teacher_servers import ANSWER, FakeTeacher, LlamaTeacher, free_port

from assistant import AssistantError
from assistant.chat.escalation.flow import TEACHER_CUT_OFF
from assistant.chat.escalation.teacher import EscalationRequest, RemoteTeacher
from assistant.chat.session import Session
from assistant.config import Config
from assistant.storage.store import Store

FACTUAL = "Who was the second president of Botswana?"
CODING = "Write a Python function that reverses a string."
KEY = "sk-escalation-test-KEY-9f8e7d6c5b4a"
STUDENT = "smollm2-135m"  # the on-device model's registry name, which on-device answers are stored under


@pytest.fixture(scope="session")
def llama_teacher(gemma_path: Path) -> Iterator[LlamaTeacher]:
    server = LlamaTeacher(gemma_path)
    yield server
    server.close()


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeTeacher]:
    server = FakeTeacher()
    yield server
    server.close()


def make_session(engine, tmp_path: Path, url: str, model: str = "fake-teacher", **escalation: object) -> Session:
    config = Config()
    config.teacher.url, config.teacher.model = url, model
    config.teacher.timeout_s, config.teacher.connect_timeout_s, config.teacher.retries = 5.0, 2.0, 1
    for key, value in escalation.items():
        setattr(config.escalation, key, value)
    return Session(Store(tmp_path / "history.db"), engine, config)


def run(session: Session, text: str, **kwargs: object) -> str:
    return "".join(d.text for d in session.send(text, max_tokens=6, temperature=0.0, **kwargs))


def stored(session: Session) -> list[dict]:
    assert session.conversation_id is not None
    return session.store.messages(session.conversation_id)


# -- the real teacher
def test_teacher_client_streams_from_llama_cpp_server(llama_teacher: LlamaTeacher) -> None:
    teacher = RemoteTeacher(Config().teacher.__class__(url=llama_teacher.url, model=llama_teacher.model))
    request = teacher.request([{"role": "user", "content": FACTUAL}], max_tokens=8, temperature=0.0)
    pieces = list(teacher.stream(request))
    assert pieces and "".join(pieces).strip()
    assert teacher.finish_reason in ("stop", "length")


def test_auto_escalates_a_long_tail_fact_and_answers_code_on_device(engine, tmp_path, llama_teacher) -> None:
    session = make_session(engine, tmp_path, llama_teacher.url, llama_teacher.model, policy="auto")
    answer = run(session, FACTUAL)
    turn = session.last
    assert turn.escalated and turn.model == "gemma-3-270m" and answer.strip() and answer == turn.answer
    assert turn.route["reason"].startswith("escalated: low confidence ") and turn.route["kind"] == "factual"
    assert turn.notes == []
    user, answer_row = stored(session)
    assert (user["role"], user["content"]) == ("user", FACTUAL)
    assert answer_row["escalated"] == 1 and answer_row["model"] == "gemma-3-270m"
    assert answer_row["content"] == answer and answer_row["complete"] == 1
    assert json.loads(answer_row["route"])["escalate"] is True

    run(session, CODING)
    turn = session.last
    assert not turn.escalated and turn.model == STUDENT
    assert turn.route["reason"] == "answered on-device: not a factual question"
    last = stored(session)[-1]
    assert last["escalated"] == 0 and last["model"] == STUDENT and last["content"] == turn.answer


def test_cli_escalate_auto_routes_to_the_teacher(llama_teacher, assistant_home: Path, capsys) -> None:
    from assistant.cli.main import main

    (assistant_home / "config.toml").write_text(
        f'[teacher]\nurl = "{llama_teacher.url}"\nmodel = "{llama_teacher.model}"\n'
    )
    assert main(["ask", "--escalate", "auto", "--json", "--max-tokens", "8", "--temperature", "0", FACTUAL]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["escalated"] is True and result["model"] == "gemma-3-270m"
    assert result["route"]["reason"].startswith("escalated: low confidence")


# -- never: the offline guarantee
NEVER_SCRIPT = textwrap.dedent(
    """
    import json, sys
    connects = []
    sys.addaudithook(lambda event, args: connects.append(repr(args[1])) if event == "socket.connect" else None)
    from assistant.config import load
    from assistant.models.engine import Engine
    from assistant.chat.session import Session
    from assistant.storage.store import Store
    student, url, db, question = sys.argv[1:5]
    config = load()
    config.teacher.url, config.teacher.model = url, "fake-teacher"
    session = Session(Store(db), Engine(student, n_ctx=512), config)
    answer = "".join(d.text for d in session.send(question, max_tokens=8, temperature=0.0))
    result = {"policy": config.escalation.policy, "connects": list(connects), "httpx": "httpx" in sys.modules,
              "answer": answer, "escalated": session.last.escalated, "route": session.last.route}
    "".join(d.text for d in session.send(question, max_tokens=8, temperature=0.0, escalate="auto"))
    result["auto_connects"], result["auto_escalated"] = connects, session.last.escalated
    print(json.dumps(result))
    """
)


def test_never_opens_no_socket_and_does_not_load_the_http_client(smollm_path, fake, tmp_path) -> None:
    fake.set("ok")
    command = [sys.executable, "-c", NEVER_SCRIPT, str(smollm_path), fake.url, str(tmp_path / "h.db"), FACTUAL]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["policy"] == "never"
    assert result["connects"] == [] and result["httpx"] is False
    assert result["answer"].strip() and result["escalated"] is False
    assert result["route"] == {"policy": "never", "escalate": False, "reason": "answered on-device"}
    # the audit hook does see connections: the same process, allowed to escalate, connects to the teacher
    assert result["auto_escalated"] is True and len(result["auto_connects"]) >= 1


# -- ask: the privacy preview
def test_ask_sends_exactly_the_previewed_bytes(engine, tmp_path, fake) -> None:
    fake.set("ok")
    shown: list[EscalationRequest] = []
    session = make_session(engine, tmp_path, fake.url, policy="ask")
    answer = run(session, FACTUAL, approve=lambda request: shown.append(request) or True)
    [request] = shown
    [received] = fake.requests
    assert received["body"] == request.body
    assert request.body.decode("utf-8") in request.preview()
    assert request.url == fake.url + "/chat/completions" and request.model == "fake-teacher"
    assert request.messages == [{"role": "user", "content": FACTUAL}]
    assert answer == "".join(ANSWER) and session.last.escalated and session.last.model == "fake-teacher"


def test_ask_declined_sends_nothing_and_answers_on_device(engine, tmp_path, fake) -> None:
    fake.set("ok")
    session = make_session(engine, tmp_path, fake.url, policy="ask")
    answer = run(session, FACTUAL, approve=lambda request: False)
    assert fake.requests == []
    assert answer.strip() and not session.last.escalated and session.last.model == STUDENT
    assert session.last.route["declined"] is True
    assert session.last.notes == ["escalation declined: nothing was sent; answered on-device"]
    run(session, FACTUAL)  # no approver at all (e.g. no terminal): declined too
    assert fake.requests == [] and not session.last.escalated


def ask_cli(home: Path, fake: FakeTeacher, *args: str, stdin: str) -> subprocess.CompletedProcess:
    """The real `assistant ask --escalate ask` with ``stdin`` piped in (no terminal)."""
    from reliability.reliability_helpers import run_cli

    (home / "config.toml").write_text(f'[teacher]\nurl = "{fake.url}"\nmodel = "fake-teacher"\n')
    return run_cli(
        home, "ask", "--escalate", "ask", "--json", "--max-tokens", "4", "--temperature", "0", *args, stdin=stdin
    )


@pytest.mark.parametrize(
    ("stdin", "args", "escalated", "note"),
    [
        ("y\n", (FACTUAL,), True, None),
        ("n\n", (FACTUAL,), False, "escalation declined: nothing was sent"),
        ("", (FACTUAL,), False, "stdin ended without an answer: nothing was sent"),
        (FACTUAL, ("-",), False, "stdin held the question"),
    ],
    ids=["piped-yes", "piped-no", "no-answer", "question-on-stdin"],
)
def test_cli_ask_policy_without_a_terminal(fake, assistant_home: Path, stdin, args, escalated, note) -> None:
    """No terminal: the preview is printed and the answer read from stdin; nobody declines for the user."""
    fake.set("ok")
    done = ask_cli(assistant_home, fake, *args, stdin=stdin)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["escalated"] is escalated and len(fake.requests) == int(escalated)
    if args != ("-",):
        assert "would be sent to fake-teacher" in done.stderr and FACTUAL in done.stderr  # the preview
    if note:
        assert note in result["notes"][0]
    else:
        assert result["answer"] == "".join(ANSWER) and result["route"]["escalate"] is True


def test_only_the_allowed_context_is_sent(engine, tmp_path, fake) -> None:
    fake.set("ok")
    session = make_session(engine, tmp_path, fake.url, policy="auto")
    session.config.generation.system = "You are my private diary assistant. My PIN is 4321."
    run(session, "Hello, I live at 12 Elm Street.", escalate="never")
    run(session, FACTUAL)
    first = json.loads(fake.requests[-1]["body"])["messages"]
    assert first == [{"role": "user", "content": FACTUAL}]  # the question alone: no system prompt, no history
    session.config.escalation.context_turns = 1
    run(session, "Who was the third president of Botswana?")
    sent = json.loads(fake.requests[-1]["body"])["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    assert sent[0]["content"] == FACTUAL and sent[1]["content"] == "".join(ANSWER)
    assert "4321" not in fake.requests[-1]["body"].decode() and "Elm Street" not in fake.requests[-1]["body"].decode()


# -- fallbacks: the student answers, a note says why, nothing hangs or is lost
@pytest.mark.parametrize(
    ("mode", "note"),
    [
        ("down", "teacher unavailable (teacher at http://127.0.0.1:"),
        ("slow", "timed out"),
        ("error500", "HTTP 500"),
        ("garbage", "malformed stream"),
        ("truncated", "the teacher's answer broke off"),
    ],
)
def test_teacher_faults_fall_back_to_the_student(engine, tmp_path, fake, mode: str, note: str) -> None:
    fake.set(mode, delay=3.0)
    url = f"http://127.0.0.1:{free_port()}/v1" if mode == "down" else fake.url
    session = make_session(engine, tmp_path, url, policy="auto")
    session.config.teacher.timeout_s = 0.5
    answer = run(session, FACTUAL)
    turn = session.last
    assert not turn.escalated and turn.model == STUDENT
    assert len(turn.notes) == 1 and note in turn.notes[0] and turn.notes[0].endswith("; answered on-device")
    assert "\n" not in turn.notes[0]
    assert turn.route["escalate"] is True and turn.route["fallback"]
    row = stored(session)[-1]
    assert row["content"] == answer and row["complete"] == 1 and row["escalated"] == 0 and row["model"] == STUDENT
    student_part = answer
    if mode == "truncated":  # what the teacher had sent is kept, clearly separated from the student's answer
        assert answer.startswith("".join(ANSWER[:2]) + TEACHER_CUT_OFF)
        student_part = answer.split(TEACHER_CUT_OFF, 1)[1]
    assert student_part.strip() and turn.stats.completion_tokens > 0


# -- keys and configuration errors
def test_the_api_key_is_sent_but_never_stored(engine, tmp_path, fake, monkeypatch) -> None:
    monkeypatch.setenv("TEACHER_TEST_KEY", KEY)
    fake.set("ok")
    session = make_session(engine, tmp_path, fake.url, policy="auto")
    session.config.teacher.api_key_env = "TEACHER_TEST_KEY"
    run(session, FACTUAL)
    assert fake.requests[0]["headers"]["Authorization"] == f"Bearer {KEY}" and session.last.escalated
    fake.set("echo401")
    run(session, "Who was the third president of Botswana?")
    assert "Bearer ***" in session.last.notes[0] and KEY not in session.last.notes[0]
    session.store.close()
    for path in tmp_path.glob("history.db*"):
        assert KEY.encode() not in path.read_bytes(), path


def test_a_key_file_with_a_loose_mode_is_refused_before_anything_is_stored(engine, tmp_path, fake) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(KEY)
    key_file.chmod(0o640)
    session = make_session(engine, tmp_path, fake.url, policy="auto")
    session.config.teacher.api_key_file = str(key_file)
    with pytest.raises(AssistantError, match="has mode 0640; it must be readable by you alone") as caught:
        run(session, FACTUAL)
    assert KEY not in str(caught.value)
    assert session.conversation_id is None  # nothing stored, nothing lost: fix the mode and ask again


def test_escalation_without_a_teacher_is_a_clear_error(engine, tmp_path) -> None:
    session = make_session(engine, tmp_path, "", model="")
    with pytest.raises(AssistantError, match=r"no teacher configured: set \[teacher\] url and model"):
        run(session, FACTUAL, escalate="auto")
    with pytest.raises(AssistantError, match="unknown escalation policy 'sometimes'"):
        run(session, FACTUAL, escalate="sometimes")


# -- the preview dialog
@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
@pytest.mark.parametrize(("press", "expected"), [("approve", True), ("decline", False), ("escape", False)])
async def test_preview_dialog_shows_the_exact_request(press: str, expected: bool) -> None:
    from textual.app import App
    from textual.widgets import Label, TextArea

    from assistant.config import TeacherSettings
    from assistant.tui.screens.escalation import EscalationScreen

    teacher = RemoteTeacher(TeacherSettings(url="http://127.0.0.1:9/v1", model="big-teacher"))
    request = teacher.request(
        [{"role": "user", "content": FACTUAL + " [b]not markup[/b]"}], max_tokens=9, temperature=0
    )
    results: list[bool] = []

    class Host(App):
        def on_mount(self) -> None:
            self.push_screen(EscalationScreen(request, "escalated: low confidence 0.31"), results.append)

    async with Host().run_test(size=(120, 40)) as pilot:
        for _ in range(100):  # until the dialog is shown and laid out
            await pilot.pause(0.05)
            if isinstance(pilot.app.screen, EscalationScreen) and pilot.app.screen.query_one("#approve").region.width:
                break
        screen = pilot.app.screen
        assert isinstance(screen, EscalationScreen)
        assert screen.query_one("#body", TextArea).text == request.body.decode("utf-8")
        assert str(screen.query_one("#url", Label).render()) == f"POST {request.url}"
        assert "big-teacher" in str(screen.query_one("#model", Label).render())
        if press == "escape":
            await pilot.press("escape")
        else:
            await pilot.click(f"#{press}")
        await pilot.pause()
    assert results == [expected]


@pytest.mark.anyio
async def test_approver_blocks_a_worker_thread_until_the_user_chooses() -> None:
    import asyncio

    from textual.app import App

    from assistant.config import TeacherSettings
    from assistant.tui.screens.escalation import EscalationScreen, approver

    request = RemoteTeacher(TeacherSettings(url="http://127.0.0.1:9/v1", model="t")).request(
        [{"role": "user", "content": FACTUAL}], max_tokens=4, temperature=0
    )
    results: list[bool] = []
    app = App()
    async with app.run_test(size=(80, 24)) as pilot:  # a small terminal: the buttons still fit
        worker = app.run_worker(lambda: results.append(approver(app, lambda: "why")(request)), thread=True)
        for _ in range(100):  # until the dialog is shown and laid out
            await pilot.pause(0.05)
            if isinstance(app.screen, EscalationScreen) and app.screen.query_one("#approve").region.width:
                break
        assert isinstance(app.screen, EscalationScreen) and results == []  # the worker waits for the user
        await pilot.click("#approve")
        await asyncio.wait_for(worker.wait(), 5)
    assert results == [True]
