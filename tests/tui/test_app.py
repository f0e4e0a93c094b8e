"""The chat UI driven by Textual's pilot, with the real SmolLM2-135M student and a real SQLite store."""

from __future__ import annotations

import asyncio

import pytest
from rich.cells import cell_len
from textual.widgets import Input, ListView, OptionList
from tui_helpers import PARTIAL, note_text, notices, seed, seed_incomplete, send, streamed, wait_idle, wait_until

from assistant.config import models_dir
from assistant.tui.app import ChatApp
from assistant.tui.screens.dialogs import ConfirmScreen, TextInputScreen
from assistant.tui.screens.help import HelpScreen
from assistant.tui.screens.models import ModelPickerScreen
from assistant.tui.screens.settings import SettingsScreen
from assistant.tui.widgets.message import MessageView
from assistant.tui.widgets.sidebar import ConversationItem

pytestmark = pytest.mark.anyio


def views(app: ChatApp) -> list[MessageView]:
    return app.chat.views()


async def ask(pilot, app: ChatApp, text: str) -> None:  # noqa: ANN001
    app.prompt.focus()
    done = app.turns_done
    await pilot.press(*text)
    await pilot.press("enter")
    await wait_idle(pilot, app, turns=done + 1)


async def test_question_is_answered_shown_and_stored(make_app, store) -> None:  # noqa: ANN001
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await ask(pilot, app, "What is the capital of France?")
        conversation_id = app.session.conversation_id
        messages = store.messages(conversation_id)
        assert [m["role"] for m in messages] == ["user", "assistant"], [n.message for n in notices(app)]
        assert messages[0]["content"] == "What is the capital of France?"
        answer = messages[1]
        assert answer["content"].strip() and answer["complete"] == 1
        assert answer["finish_reason"] in ("stop", "length")
        shown = views(app)
        assert [v.role for v in shown] == ["user", "assistant"]
        assert shown[1].source == answer["content"]  # every streamed piece made it to the screen
        assert shown[1].message_id == answer["id"] and shown[0].message_id == messages[0]["id"]
        assert app.prompt.text == ""
        await pilot.press("a", "ctrl+j", "b")  # Ctrl+J adds a line instead of sending
        assert app.prompt.text == "a\nb" and not app.generating
        info = app.status.info
        assert info.model == "smollm2-135m" and info.tokens_per_s > 0 and info.context_used > 0  # the registry's name
        assert "on-device only" in app.status.render().plain
        items = app.query(ConversationItem)
        assert [i.conversation_id for i in items] == [conversation_id]


async def stop_a_long_answer(pilot, app) -> None:  # noqa: ANN001
    """Ask for a long answer and press Esc once some of it has streamed."""
    before = await send(pilot, app, "Write a long story about a dragon.")
    await wait_until(
        pilot,
        lambda: app.turns_done > before or len(streamed(app)) >= 20,
        "20 characters of the answer (or its end)",
    )
    assert app.turns_done == before, "the answer finished before it could be stopped"
    await pilot.press("escape")
    await wait_idle(pilot, app, turns=before + 1)


async def test_escape_stops_and_keeps_the_partial_answer(make_app, store, tui_config) -> None:  # noqa: ANN001
    tui_config.generation.max_tokens = 400
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await stop_a_long_answer(pilot, app)
        answer = store.messages(app.session.conversation_id)[-1]
        assert answer["role"] == "assistant" and answer["finish_reason"] == "cancelled"
        assert answer["content"].strip() and answer["completion_tokens"] < 400
        assert views(app)[-1].source == answer["content"]
        assert "stopped" in views(app)[-1].meta


async def test_regenerate_and_edit_and_resend(make_app, store) -> None:  # noqa: ANN001
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await ask(pilot, app, "Name a colour.")
        cid = app.session.conversation_id
        first_answer = store.messages(cid)[-1]
        await pilot.press("ctrl+r")
        await wait_idle(pilot, app, turns=2)
        messages = store.messages(cid)
        assert [m["role"] for m in messages] == ["user", "assistant"]
        assert messages[1]["created"] != first_answer["created"]
        assert len(views(app)) == 2 and views(app)[1].source == messages[1]["content"]

        await pilot.press("up")  # Up in the empty box edits the last message
        assert app.prompt.text == "Name a colour." and app.prompt.editing is not None
        app.prompt.text = "Name a fruit."
        await pilot.press("enter")
        await wait_idle(pilot, app, turns=3)
        messages = store.messages(cid)
        assert [(m["role"], m["content"]) for m in messages][0] == ("user", "Name a fruit.")
        assert len(messages) == 2 and messages[1]["content"].strip()
        assert [v.source for v in views(app)] == [m["content"] for m in messages]


async def test_incomplete_answer_is_marked_and_continued_in_place(make_app, store) -> None:  # noqa: ANN001
    conversation, answer_id = seed_incomplete(store)
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        question, last = views(app)
        assert last.resumable and last.message_id == answer_id and not question.resumable
        assert note_text(last) == "⚠ incomplete — press F5 to continue or Ctrl+R to regenerate"
        assert "incomplete" in last.meta
        await pilot.press("f5")
        await wait_idle(pilot, app, turns=1)
        rows = store.messages(conversation)
        assert [r["id"] for r in rows] == [rows[0]["id"], answer_id]  # no new message: the same one grew
        answer = rows[1]
        assert answer["content"].startswith(PARTIAL) and len(answer["content"]) > len(PARTIAL)
        assert answer["complete"] == 1 and answer["finish_reason"] in ("stop", "length")
        assert views(app)[-1] is last and last.source == answer["content"] and not last.streaming
        assert last.resumable == (answer["finish_reason"] == "length")  # cut at the limit again: still offered
        assert "incomplete" not in last.meta and "continuing" not in last.meta


async def test_stopped_answer_continues_from_the_kv_cache_on_click(make_app, store, tui_config, engine) -> None:  # noqa
    tui_config.generation.max_tokens = 400
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await stop_a_long_answer(pilot, app)
        stopped = store.messages(app.session.conversation_id)[-1]
        assert stopped["finish_reason"] == "cancelled"
        last = views(app)[-1]
        note = note_text(last)
        assert last.resumable and note.startswith("⚠ incomplete")
        tui_config.generation.max_tokens = 8
        await pilot.click(last.query_one(".resume-note"), offset=(cell_len(note[: note.index("continue")]) + 2, 0))
        await wait_idle(pilot, app, turns=2)
        assert engine.stats.evaluated_tokens == 1  # the prompt + partial answer were still in the KV cache
        answer = store.message(stopped["id"])
        assert answer["content"].startswith(stopped["content"]) and len(answer["content"]) > len(stopped["content"])
        assert answer["completion_tokens"] == stopped["completion_tokens"] + 8
        assert answer["complete"] == 1 and answer["finish_reason"] == "length"
        assert len(store.messages(app.session.conversation_id)) == 2 and last.source == answer["content"]


async def test_incomplete_answer_is_regenerated_by_configured_keys(make_app, store, tui_config) -> None:  # noqa: ANN001
    conversation, answer_id = seed_incomplete(store)
    partial = store.message(answer_id)
    tui_config.ui.keys = {"continue_answer": "ctrl+t", "regenerate": "f9"}
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        assert note_text(views(app)[-1]) == "⚠ incomplete — press Ctrl+T to continue or F9 to regenerate"
        await pilot.press("f5")  # no longer bound: nothing happens
        assert app.turns_done == 0 and not app.generating
        await pilot.press("f9")
        await wait_idle(pilot, app, turns=1)
        rows = store.messages(conversation)
        assert len(rows) == 2 and rows[1]["created"] != partial["created"]  # replaced by a new answer
        assert rows[1]["complete"] == 1 and rows[1]["content"] != PARTIAL
        assert [v.source for v in views(app)] == [r["content"] for r in rows]
        assert views(app)[-1].resumable == (rows[1]["finish_reason"] == "length")
        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen)
        assert "| `ctrl+t` | Continue an incomplete answer | `continue_answer` |" in app.screen.markdown


async def test_new_switch_rename_delete_and_search(make_app, store) -> None:  # noqa: ANN001
    first, second = seed(store)
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        # the latest conversation opens on start, the list is newest first
        assert app.session.conversation_id == second
        assert [i.conversation_id for i in app.query(ConversationItem)] == [second, first]
        assert views(app)[0].source == "What is a monad?"

        # switch by selecting in the sidebar
        listing = app.query_one("#conversations", ListView)
        listing.focus()
        listing.index = 1
        await pilot.press("enter")
        await pilot.pause()
        assert app.session.conversation_id == first
        assert "reversed" in views(app)[1].source
        assert app.status.info.tokens_per_s == 50.0

        # new conversation
        await pilot.press("ctrl+n")
        assert app.session.conversation_id is None and not views(app)
        assert app.query_one("#welcome")

        # search jumps to the matching message
        await pilot.press("ctrl+f")
        await pilot.press(*"chain")
        results = app.query_one("#results", OptionList)
        assert results.option_count == 1 and results.display
        await pilot.press("enter")  # focus the results
        await pilot.press("enter")  # open the highlighted result
        await pilot.pause()
        assert app.session.conversation_id == second
        found = [v for v in views(app) if v.has_class("-found")]
        assert len(found) == 1 and "chain" in found[0].source

        # rename (keeps the order), then delete with confirmation
        await pilot.press("escape")  # leave the search
        app.prompt.focus()
        await pilot.press("f2")
        assert isinstance(app.screen, TextInputScreen)
        app.screen.query_one(Input).value = "Monads, explained"
        await pilot.press("enter")
        await asyncio.wait_for(app.workers.wait_for_complete(), 120)
        await pilot.pause()
        assert store.conversation(second)["title"] == "Monads, explained"
        assert [i.conversation_id for i in app.query(ConversationItem)] == [second, first]

        await pilot.press("f8")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("escape")  # cancel: nothing deleted
        assert store.conversation(second)
        await pilot.press("f8")
        await pilot.click("#yes")
        await asyncio.wait_for(app.workers.wait_for_complete(), 120)
        await pilot.pause()
        assert [c["id"] for c in store.conversations()] == [first]
        assert app.session.conversation_id is None
        assert [i.conversation_id for i in app.query(ConversationItem)] == [first]


async def test_model_output_control_characters_are_harmless(make_app, store) -> None:  # noqa: ANN001
    cid = store.new_conversation(title="escapes")
    store.add_message(cid, "user", "hi")
    store.add_message(cid, "assistant", "red \x1b[31mtext\x1b[0m \x1b]52;c;ZXZpbA==\x07done\x07\x08")
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        shown = views(app)[-1].source
        assert shown == "red text done"
        assert "\x1b" not in app.export_screenshot()


async def test_copy_answer_and_code_block(make_app, store) -> None:  # noqa: ANN001
    seed(store)
    app = make_app(open_latest=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await app.open_conversation(store.conversations()[-1]["id"])  # the one with code
        await pilot.press("f4")
        assert app.clipboard == "items = [1, 2, 3]\nprint(items[::-1])"
        await pilot.press("f3")
        assert app.clipboard.startswith("Use slicing") and app.clipboard.endswith("original list.")


async def test_settings_are_saved(make_app, store, tui_config) -> None:  # noqa: ANN001
    first, _ = seed(store)
    app = make_app()
    async with app.run_test(size=(100, 32)) as pilot:
        await app.open_conversation(first)
        await pilot.press("ctrl+s")
        screen = app.screen
        assert isinstance(screen, SettingsScreen)
        screen.query_one("#system").text = "You are a pirate."
        screen.query_one("#temperature", Input).value = "9"
        await pilot.press("ctrl+s")
        assert "temperature must be between 0 and 5" in str(screen.query_one("#settings-error").render())
        screen.query_one("#temperature", Input).value = "0.3"
        screen.query_one("#max-tokens", Input).value = "77"
        screen.query_one("#theme").value = "textual-light"
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert not isinstance(app.screen, SettingsScreen)
        assert store.conversation(first)["system"] == "You are a pirate."
        assert app.theme == "textual-light"
        saved = tui_config.path.read_text()
        assert "temperature = 0.3" in saved and "max_tokens = 77" in saved and 'theme = "textual-light"' in saved
        assert app.session.history()[0] == {"role": "system", "content": "You are a pirate."}


async def test_model_picker_keeps_the_old_model_on_error_and_notices_new_files(
    make_app, engine, assistant_home
) -> None:  # noqa: ANN001,E501
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        models = models_dir()
        models.mkdir(parents=True, exist_ok=True)
        bad = models / "broken-student.gguf"
        bad.write_bytes(b"GGUF" + b"\0" * 60)  # a new file, e.g. half-written by a distillation run
        app.chat_screen.model_switch.poll()
        app.chat_screen.model_switch.poll()  # same size twice: announced
        await pilot.pause()
        assert any("broken-student.gguf" in n.message for n in notices(app))

        await pilot.press("ctrl+o")
        picker = app.screen
        assert isinstance(picker, ModelPickerScreen)
        ids = [picker.query_one(OptionList).get_option_at_index(i).id for i in range(len(picker.choices))]
        assert "smollm2-135m" in ids and "gemma3-270m" in ids and str(bad.resolve()) in ids
        picker.query_one(OptionList).highlighted = ids.index(str(bad.resolve()))
        await pilot.press("enter")
        await asyncio.wait_for(app.workers.wait_for_complete(), 120)
        await pilot.pause()
        assert app.engine is engine and engine.name == "SmolLM2-135M-Instruct.Q4_1"
        errors = [n for n in notices(app) if n.severity == "error"]
        assert errors and "keeps serving" in errors[-1].message


async def test_keys_come_from_the_config(make_app, store, tui_config) -> None:  # noqa: ANN001
    seed(store)
    tui_config.ui.keys = {"new_conversation": "ctrl+t", "no_such_action": "f9"}
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        assert app.session.conversation_id is not None
        await pilot.press("ctrl+n")  # no longer bound
        assert app.session.conversation_id is not None
        await pilot.press("ctrl+t")
        assert app.session.conversation_id is None
        assert any("no_such_action" in n.message for n in notices(app))
        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen) and "| `ctrl+t` | New chat |" in app.screen.markdown


async def test_command_palette_lists_every_action(make_app) -> None:  # noqa: ANN001
    app = make_app()
    async with app.run_test(size=(80, 24)):
        titles = {c.title for c in app.get_system_commands(app.screen)}
    for title in (
        "New conversation",
        "Switch model",
        "Settings",
        "Search history",
        "Stop answer",
        "Regenerate answer",
        "Continue answer",
        "Edit last message",
        "Copy code block",
        "Delete conversation",
        "Help",
    ):
        assert title in titles
