"""What goes into the message box goes out as typed (issue 26, rows 21, 22, 23, 26 and 27): ``@word`` is a file
only when it names one, the user's own text is shown verbatim, an oversized paste is refused before sending,
a paste is text (never keys), and counting a named file's tokens never blocks typing. Real SmolLM2, real SQLite."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from tui_helpers import notices, screen_lines, send, wait_idle, wait_until

pytestmark = pytest.mark.anyio


def hint(app) -> str:  # noqa: ANN001
    widget = app.screen.query_one("#attach-hint")
    return "" if widget.has_class("-hidden") else str(widget.render())


async def test_an_at_word_that_names_no_file_is_text(make_app, store, tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    """Row 21: "@app.route" and "@types/node" were refused ("Not sent / cannot read app.route"). Only an ``@path``
    naming an existing file attaches; anything else is text, and ``@@`` writes an ``@`` that is never a file (for
    a file's name the user means as text). The hint above the box says a path-like word is not a file, so a typo
    in a file name is seen before sending, not after."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("Bring the blue folder.\n", encoding="utf-8")
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        app.prompt.text = "What does @app.route do?"
        await wait_until(pilot, lambda: "app.route" in hint(app), "the hint")
        assert "text" in hint(app) and "⚠" not in hint(app), hint(app)
        app.prompt.text = ""
        await send(pilot, app, "What does @app.route do in Flask, and @types/node? Mail @@notes.txt to @bob.")
        await wait_idle(pilot, app, turns=1)
        assert not [n.message for n in notices(app) if n.severity == "error"]
        question = store.messages(app.session.conversation_id)[0]
        assert question["content"] == "What does @app.route do in Flask, and @types/node? Mail @notes.txt to @bob."
        assert store.attachments(question["id"]) == []
        assert app.chat.views()[0].files == []


async def longest_stall(seconds: float) -> float:
    """The longest the event loop (the app's and the test's) went without running a 20 ms sleep, over ``seconds``."""
    longest, end = 0.0, time.monotonic() + seconds
    while (now := time.monotonic()) < end:
        await asyncio.sleep(0.02)
        longest = max(longest, time.monotonic() - now - 0.02)
    return longest


@pytest.mark.timeout(180)
async def test_a_big_named_file_is_counted_off_the_ui_thread_once(make_app, engine, tmp_path: Path) -> None:  # noqa: ANN001
    """Row 27: naming a 2 MB file made every keystroke take ~2 s (the file was read and tokenised on the UI thread
    each time the typing paused). It is counted in a thread, once per (model, path, size, mtime)."""
    huge = tmp_path / "huge.txt"
    huge.write_text("word " * 400_000, encoding="utf-8")
    counted: list[int] = []  # the length of every text tokenised
    tokenize = engine.model.tokenize

    def counting(text: str, first: bool) -> list[int]:
        counted.append(len(text))
        return tokenize(text, first)

    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(engine.model, "tokenize", counting)
            app.prompt.focus()
            app.prompt.text = f"see @{huge}"
            stall = await longest_stall(2.0)  # the hint's timer fires 0.3 s after the change
            await wait_until(pilot, lambda: "only" in hint(app), "the file to be counted (too big)", 90)
            assert stall < 0.5, f"the UI stood still for {stall:.2f} s while the file was counted"
            big = len([n for n in counted if n > 1_000_000])
            await pilot.press(*" please")
            await wait_until(pilot, lambda: "please" in app.prompt.text and "only" in hint(app), "the hint", 10)
            await asyncio.sleep(1.0)  # the new hint's count has run
            assert len([n for n in counted if n > 1_000_000]) == big, "the file was tokenised again"


async def test_your_own_message_is_shown_as_typed(make_app, store) -> None:  # noqa: ANN001
    """Row 22: a user's message was rendered as Markdown, so "line one⏎line two" showed as one line and backticks,
    stars and a leading '#' vanished. What you typed is shown exactly (answers stay Markdown)."""
    typed = "line one\nline two has `code` and *stars*\n# not a heading"
    conversation = store.new_conversation(title="Lines")
    store.add_message(conversation, "user", typed)
    store.add_message(conversation, "assistant", "Answer with `code`.", finish_reason="stop")
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        lines = [line.strip(" █▊▌▐┃│▎▕") for line in screen_lines(app, app.chat)]
        start = next((i for i, line in enumerate(lines) if line.startswith("line one")), 0)
        assert lines[start : start + 3] == typed.splitlines(), lines
        assert any(line.startswith("Answer with code.") for line in lines), lines  # answers: Markdown


@pytest.mark.timeout(180)
async def test_a_paste_too_long_for_the_context_is_refused_before_sending(make_app, store, engine) -> None:  # noqa: ANN001
    """Row 23: a 3,000-line paste was sent, cut to fit after the answer had streamed, with a toast saying so. It is
    refused at Enter with the numbers (its tokens, the context window), stays in the box, and nothing is stored,
    as an oversized file is."""
    paste = "\n".join(
        f"2024-05-01 12:00:{i % 60:02d} worker-{i % 7} INFO request {i} served in {i % 97} ms" for i in range(3000)
    )
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        app.prompt.text = "Summarise this log:\n" + paste
        app.prompt.focus()
        await pilot.press("enter")
        await wait_until(pilot, lambda: any(n.title == "Not sent" for n in notices(app)), "the refusal", 60)
        assert not app.generating and app.turns_done == 0 and store.conversations() == []
        assert app.prompt.text == "Summarise this log:\n" + paste
        refusal = next(n.message for n in notices(app) if n.title == "Not sent")
        tokens = len(engine.model.tokenize("Summarise this log:\n" + paste, first=False))
        assert f"{tokens:,} tokens" in refusal and f"{engine.n_ctx:,}" in refusal and "\n" not in refusal, refusal
