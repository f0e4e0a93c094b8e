"""Files in the chat UI (issue 18): ``@path`` in the message box (Tab completes it), token counts before
sending, the same one-line refusals as ``ask -f``, attachments stored and shown folded. Real SmolLM2, real SQLite."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Collapsible, Input
from tui_helpers import notices, press_enter, send, wait_idle, wait_until

from assistant.tui.screens.dialogs import TextInputScreen

pytestmark = pytest.mark.anyio


def hint(app) -> str:  # noqa: ANN001
    widget = app.screen.query_one("#attach-hint")
    return "" if widget.has_class("-hidden") else str(widget.render())


async def test_an_at_path_goes_whole_with_its_token_count_and_shows_folded(make_app, store, tmp_path: Path) -> None:  # noqa: ANN001
    notes = tmp_path / "meeting-notes.txt"
    notes.write_text("The launch moved to Thursday.\nBring the blue folder.\n", encoding="utf-8")
    (tmp_path / "meeting-agenda.md").write_text("1. launch\n", encoding="utf-8")
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        app.prompt.focus()
        await pilot.press(*f"When is the launch? @{tmp_path}/meeting-")
        await wait_until(pilot, lambda: hint(app) == "Tab: meeting-agenda.md  meeting-notes.txt", "the completions")
        await pilot.press("n", "tab")  # completes the only match, and a space after it
        assert app.prompt.text == f"When is the launch? @{notes} "
        await wait_until(pilot, lambda: "tokens" in hint(app), "the token count above the box")
        tokens = int(hint(app).split("meeting-notes.txt ")[1].split(" tokens")[0])
        assert tokens > 10

        before = app.turns_done
        press_enter(app)  # as `send` does: press() would wait for the answer
        await wait_idle(pilot, app, turns=before + 1)
        cid = app.session.conversation_id
        question = store.messages(cid)[0]
        assert question["content"].startswith("File meeting-notes.txt:\n```\nThe launch moved to Thursday.\n")
        assert question["content"].endswith("When is the launch? meeting-notes.txt")
        [record] = store.attachments(question["id"])
        assert (record.name, record.size, record.tokens) == ("meeting-notes.txt", notes.stat().st_size, tokens)
        shown = app.chat.views()[0]
        assert shown.source == "When is the launch? meeting-notes.txt"  # the file is folded, not in the text
        fold = shown.query_one(Collapsible)
        assert fold.collapsed and f"meeting-notes.txt · {tokens} tokens" in str(fold.title)

        await pilot.press("up")  # edit and resend: the file goes again with the new question
        assert app.prompt.text == "When is the launch? meeting-notes.txt"
        assert "with its 1 file" in app.prompt.border_title
        app.prompt.text = "What should I bring?"
        await pilot.press("enter")
        await wait_idle(pilot, app, turns=before + 2)
        resent = store.messages(cid)[0]
        assert resent["content"] == question["content"].replace(
            "When is the launch? meeting-notes.txt", "What should I bring?"
        )
        assert [(r.name, r.sha256) for r in store.attachments(resent["id"])] == [("meeting-notes.txt", record.sha256)]
        assert app.chat.views()[0].files[0].name == "meeting-notes.txt"

    app = make_app()  # reopened from the history: still folded above the question
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        shown = app.chat.views()[0]
        assert shown.source == "What should I bring?" and shown.files[0].tokens == tokens
        assert "Bring the blue folder." in shown.files[0].text
        shown.query_one(Collapsible).collapsed = False  # expandable
        await pilot.pause()
        assert shown.query_one(".attachment-text").display


async def test_binary_and_oversized_files_are_refused_with_one_line(make_app, store, tmp_path: Path) -> None:  # noqa: ANN001
    (tmp_path / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR")
    (tmp_path / "huge.txt").write_text("word " * 6000, encoding="utf-8")  # far more than the 2048-token window
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        # (an @path naming no file is text since issue 26 row 21: test_message_box)
        cases = [("photo.png", "photo.png is a binary file; only text files can be attached"), ("huge.txt", "but only")]
        for name, why in cases:
            text = f"Describe @{tmp_path / name}"
            app.prompt.text = text
            await wait_until(pilot, lambda: why in hint(app), f"the hint for {name}")  # noqa: B023
            await send(pilot, app, "")
            await pilot.pause()
            assert app.prompt.text == text and app.turns_done == 0 and not app.generating  # kept, not sent
            last = notices(app)[-1].message
            assert why in last and "\n" not in last
        assert "the message with its files is" in hint(app) and "tokens" in hint(app)
        assert store.conversations() == []

        app.prompt.text = ""
        await pilot.press("ctrl+l")  # the attach dialog: its path field completes with Tab (the suggester)
        assert isinstance(app.screen, TextInputScreen)
        field = app.screen.query_one(Input)
        (tmp_path / "report.md").write_text("# Report\n", encoding="utf-8")
        await pilot.press(*f"{tmp_path}/rep")
        # Input keeps its suggestion in a private reactive (no public reader); Right accepts it
        await wait_until(pilot, lambda: field._suggestion == f"{tmp_path}/report.md", "the path suggestion")
        await pilot.press("right", "enter")
        await wait_until(pilot, lambda: app.prompt.text == f"@{tmp_path}/report.md ", "the @path in the box")
