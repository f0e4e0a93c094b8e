"""Reasoning blocks: split whole and streamed, stored whole, left out of later turns, shown only when asked."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from assistant.chat.reasoning import ReasoningFilter, answer_only, split
from assistant.chat.session import Session
from assistant.cli.main import main
from assistant.config import load
from assistant.storage.store import Store

sys.path.insert(0, str(Path(__file__).parent / "reliability"))
from reliability_helpers import with_strings  # noqa: E402 - the GGUF metadata rewriter the template tests use

CASES = [
    ("<think>two and two</think>\n\nIt is 4.", False, ("two and two", "It is 4.")),
    ("  <think>\nhmm\n</think>4", False, ("hmm", "4")),
    ("hmm, two and two</think>4", True, ("hmm, two and two", "4")),  # the template opened the block
    ("still thinking", True, ("still thinking", "")),
    ("<think>cut off mid-thought", False, ("cut off mid-thought", "")),
    ("No reasoning here; <thinking> is not a tag.", False, ("", "No reasoning here; <thinking> is not a tag.")),
    ("<thin", False, ("", "<thin")),
    ("    indented code stays indented", False, ("", "    indented code stays indented")),
]


@pytest.mark.parametrize(("text", "inside", "expected"), CASES)
def test_split_whole_and_streamed(text: str, inside: bool, expected: tuple[str, str]) -> None:
    assert split(text, inside) == expected
    for size in (1, 3, 7):  # the stream gives the same split, whatever the piece boundaries
        stream = ReasoningFilter(starts_inside=inside)
        parts = [stream.feed(text[i : i + size]) for i in range(0, len(text), size)] + [stream.flush()]
        reasoning, answer = "".join(p[0] for p in parts), "".join(p[1] for p in parts)
        assert (reasoning.strip(), answer) == expected


def test_answer_only_leaves_plain_answers_alone() -> None:
    assert answer_only("hmm</think>4") == "4"  # a stored answer whose block the template opened
    assert answer_only("plain <b>text</b>") == "plain <b>text</b>"
    assert answer_only("<think>x</think>y") == "y"


@pytest.mark.timeout(300)
def test_reasoning_is_stored_but_not_sent_back(engine, tmp_path: Path) -> None:  # noqa: ANN001 - the real engine
    """The real model writes a reasoning block (a grammar makes it); the next turn's context leaves it out."""
    from llama_cpp import LlamaGrammar

    store = Store(tmp_path / "h.db")
    session = Session(store, engine, load())
    grammar = 'root ::= "<think>" [a-z ]{3,12} "</think>" [A-Za-z .]{1,12}'
    session.sampling["grammar"] = LlamaGrammar.from_string(grammar)
    answer = "".join(d.text for d in session.send("What is two plus two?", max_tokens=40, temperature=0.0))
    stored = store.messages(session.conversation_id)[-1]["content"]
    assert stored == answer and stored.startswith("<think>") and "</think>" in stored  # stored whole
    session.sampling.pop("grammar")
    list(session.send("And three plus three?", max_tokens=4, temperature=0.0))
    history = session.history()
    earlier = [m["content"] for m in history if m["role"] == "assistant"][0]
    assert earlier == split(stored)[1] and "<think>" not in earlier
    assert engine.stats.prompt_tokens > 0


@pytest.fixture(scope="module")
def opens_thinking(smollm_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SmolLM2 with a template whose generation prompt opens the reasoning block, as R1 distills' do."""
    template = (
        "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
        "'<|im_end|>\\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n<think>\\n' }}{% endif %}"
    )
    folder = tmp_path_factory.mktemp("thinking")
    return with_strings(smollm_path, folder / "thinker.gguf", {"tokenizer.chat_template": template})


@pytest.mark.timeout(300)
def test_ask_prints_reasoning_only_when_asked(opens_thinking: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["ask", "--model", str(opens_thinking), "--max-tokens", "12", "--temperature", "0", "What is 2+2?"]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == ""  # the model never closed its block: all of it is reasoning
    assert "--show-reasoning prints it" in captured.err
    assert main([*args[:-1], "--show-reasoning", "--json", args[-1]]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["answer"] == "" and out["reasoning"].strip()
