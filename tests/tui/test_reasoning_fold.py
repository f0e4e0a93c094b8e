"""Reasoning blocks in the chat UI (issue 18): ``<think>…</think>`` streams into a fold above the answer and
stays folded there. SmolLM2-135M is no reasoning model, so a llama.cpp grammar makes the real model write one."""

from __future__ import annotations

import pytest
from llama_cpp import LlamaGrammar
from textual.widgets import Collapsible
from tui_helpers import send, streaming, wait_idle, wait_until

pytestmark = pytest.mark.anyio

THINK_FIRST = r"""root ::= "<think>" [a-z ]{40,80} "</think>" [A-Za-z ,.]{2,40}"""


async def test_reasoning_streams_into_a_fold_above_the_answer(make_app, store, tui_config) -> None:  # noqa: ANN001
    tui_config.generation.max_tokens = 160
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        app.session.sampling["grammar"] = LlamaGrammar.from_string(THINK_FIRST, verbose=False)
        before = await send(pilot, app, "Think it over: what is two plus two?")

        def reasoning_seen() -> bool:
            view = streaming(app)
            return app.turns_done > before or (view is not None and bool(view.reasoning))

        await wait_until(pilot, reasoning_seen, "the reasoning to start streaming")
        view = streaming(app)
        assert view is not None, "the answer finished before its reasoning was seen streaming"
        fold = view.query_one(".reasoning", Collapsible)
        assert fold.display and fold.collapsed and "Thinking…" in str(fold.title)
        assert view.answer == ""  # nothing of it reached the answer
        await wait_idle(pilot, app, turns=before + 1)

        stored = store.messages(app.session.conversation_id)[-1]
        assert stored["content"].startswith("<think>") and "</think>" in stored["content"]  # stored whole
        thought, answer = stored["content"][len("<think>") :].split("</think>")
        assert view.reasoning == thought.strip() and view.answer == answer.strip() and answer.strip()
        assert "Reasoning (" in str(fold.title) and fold.collapsed
        assert view.query_one(".reasoning-text").render().plain == thought.strip()  # type: ignore[attr-defined]
        assert "<think>" not in view.query_one("Markdown").source  # type: ignore[attr-defined]
        await pilot.press("f3")  # copying the answer copies the answer, not the reasoning
        assert app.clipboard == answer.strip()

    app = make_app()  # reopened: folded again, above the answer
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        view = app.chat.views()[-1]
        fold = view.query_one(".reasoning", Collapsible)
        assert fold.display and fold.collapsed and view.reasoning == thought.strip()
        fold.collapsed = False
        await pilot.pause()
        assert view.query_one(".reasoning-text").region.height > 0
