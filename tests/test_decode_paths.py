"""The engine's fast decode paths give exactly the answers of the plain ones (real SmolLM2-135M and Gemma 3, greedy).

- A JSON-Schema grammar checked on the chosen token first (``sampler``) gives the tokens llama-cpp-python's
  grammar sampler (the whole vocabulary filtered every token) gives, and schema-valid JSON.
- Prompt-lookup drafting (``draft``) gives byte-identical answers to decoding without it: copy-heavy and
  open prompts, stop strings, the token limit, a cancel in the middle of a verified draft, continuing an
  answer (F5) and after a hot-swap.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from assistant.models import schema as schemas
from assistant.models.draft import PromptLookup
from assistant.models.engine import Engine

SOURCE = Path(schemas.__file__).read_text()[:2200]  # a real file to rewrite: ~500 tokens
DOCUMENT = (
    "The Meridian Library opened in 1911 on Harbour Street. It holds 2.4 million volumes, including the "
    "Ashworth collection of maritime charts donated in 1957. Reading rooms are open from 9 am to 8 pm on "
    "weekdays and from 10 am to 4 pm on Saturdays; the library is closed on Sundays. Members may borrow up to "
    "twelve books for three weeks, renewable twice online. The rare books room requires an appointment made "
    "at least two days ahead, and visitors must leave bags in the lockers by the entrance."
)
PROMPTS = [
    f"Rewrite this file exactly, fixing any typos:\n\n{SOURCE}",
    f"Here is a document.\n\n{DOCUMENT}\n\nQuote the sentences about opening hours and borrowing.",
    f"{DOCUMENT}\n\nWhen is the library open, and how many books may a member borrow?",
    "Write a short poem about the sea.",
    "What is the capital of France? Answer in one sentence.",
    "List five fruits, one per line.",
    "Explain what a hash table is.",
    "Repeat the word 'banana' ten times, separated by commas.",
]
SCHEMAS: list[dict[str, Any]] = [
    {"type": "object", "properties": {"city": {"type": "string", "maxLength": 30}}, "required": ["city"]},
    {"type": "object", "properties": {"answer": {"type": "boolean"}}, "required": ["answer"]},
    {"type": "object", "properties": {"colour": {"enum": ["red", "green", "blue"]}, "n": {"type": "integer"}}},
    {"type": "array", "items": {"type": "string", "maxLength": 12}, "maxItems": 3},
]


# Each test runs the engines both ways. Quiet, the slowest takes ~20 s; in a clean-clone suite run beside a
# distillation (load ~3-4 on 2 cores) one took over 240 s and failed its deadline: a hang guard, not a budget.
pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def engines(smollm_path: Path) -> Iterator[tuple[Engine, Engine]]:
    """(drafting, plain) engines on the same file."""
    fast, plain = Engine(smollm_path, n_ctx=2048), Engine(smollm_path, n_ctx=2048, speculate=False)
    fast.weigh_drafts = False  # these tests count drafted tokens: the machine's load must not pause drafting
    fast.draft_sampled = True  # and prove sampled drafting exact (off by default: no faster)
    yield fast, plain
    fast.close()
    plain.close()


def _answer(engine: Engine, messages: list[dict[str, str]], **kwargs: object) -> tuple[list[int], str]:
    deltas = list(engine.stream(messages, **kwargs))  # type: ignore[arg-type]
    return [d.token for d in deltas], "".join(d.text for d in deltas)


def test_drafting_gives_the_plain_answer_and_drafts(engines: tuple[Engine, Engine]) -> None:
    fast, plain = engines
    accepted = 0
    for i, prompt in enumerate(PROMPTS):
        messages = [{"role": "user", "content": prompt}]
        ours = _answer(fast, messages, max_tokens=80, conversation=("p", i))
        stats = fast.stats
        assert ours == _answer(plain, messages, max_tokens=80, conversation=("p", i)), prompt[:40]
        assert plain.stats.drafts == 0 and stats.accepted_tokens <= stats.drafted_tokens
        assert stats.completion_tokens == len(ours[0])
        accepted += stats.accepted_tokens
    assert accepted > 40, "the copy-heavy prompts should have been drafted"


def test_a_prompt_longer_than_two_prefill_chunks_gives_the_plain_answer(engines: tuple[Engine, Engine]) -> None:
    """The batch check once re-decoded the prompt's last tokens in small batches, leaving KV entries that differ
    from the 512-row prefill's: on a 1.4k-token file every answer then drifted from the plain one (token 16 of
    bench_lookup's rewrite). The check now decodes past the prompt's end; the prompt's entries stay the prefill's."""
    from bench.bench_lookup import prompts

    messages = [{"role": "user", "content": prompts(quick=True)["rewrite a file"]}]  # three source files
    path = engines[0].path  # one thread, as bench_lookup ran; fresh engines (the first drafted answer runs the check)
    fresh, plain = Engine(path, n_ctx=2048, threads=1), Engine(path, n_ctx=2048, threads=1, speculate=False)

    def logprobs(engine: Engine) -> list[tuple[int, float]]:  # exact floats: a tie can hide a drift for a while
        return [(d.token, d.logprob) for d in engine.stream(messages, max_tokens=48, conversation="long")]

    try:
        ours = logprobs(fresh)
        assert fresh.stats.prompt_tokens > 1400 and fresh.stats.drafting == "on" and fresh.stats.drafts > 0
        assert ours == logprobs(plain)
    finally:
        fresh.close()
        plain.close()


@pytest.mark.parametrize("temperature", [0.7, 1.2])
def test_sampled_answers_draft_and_are_the_plain_seeded_answer(
    engines: tuple[Engine, Engine], temperature: float
) -> None:
    """At the chat's default temperature too: each drafted position's token is one draw of the seeded sampler, in
    the order decoding alone draws them, so the answer is byte-identical (seeded, to compare; the seed is the
    point of the test) and copy-heavy prompts still draft."""
    fast, plain = engines
    accepted = 0
    for i, prompt in enumerate(PROMPTS[:2]):
        messages = [{"role": "user", "content": prompt}]
        kwargs: dict[str, Any] = {"max_tokens": 64, "temperature": temperature, "seed": 7 + i}
        ours = _answer(fast, messages, conversation=("s", i), **kwargs)
        assert fast.stats.drafting == "on"
        accepted += fast.stats.accepted_tokens
        assert ours == _answer(plain, messages, conversation=("s", i), **kwargs), prompt[:40]
    assert accepted > 10, "copy-heavy prompts should draft when sampling too"


def test_stop_strings_and_token_limit(engines: tuple[Engine, Engine]) -> None:
    fast, plain = engines
    messages = [{"role": "user", "content": PROMPTS[0]}]
    for stop, limit in ((["import"], 120), (["\n\n"], 120), ([], 37), ([], 1), (["def ", "return"], 90)):
        ours = _answer(fast, messages, max_tokens=limit, stop=stop, conversation="stop")
        assert ours == _answer(plain, messages, max_tokens=limit, stop=stop, conversation="stop")
        assert fast.stats.finish_reason == plain.stats.finish_reason
        assert len(ours[0]) <= limit


def _cancelled(engine: Engine, messages: list[dict[str, str]], after: int) -> list[int]:
    tokens = []
    for delta in engine.stream(messages, max_tokens=200, conversation="esc"):
        tokens.append(delta.token)
        if len(tokens) == after:
            engine.cancel()
    assert engine.stats.finish_reason == "cancelled"
    return tokens


def test_cancel_mid_draft_then_continue(engines: tuple[Engine, Engine]) -> None:
    """Esc while a verified draft is being yielded keeps what was shown; F5 then continues identically."""
    fast, plain = engines
    messages = [{"role": "user", "content": PROMPTS[1]}]
    _answer(fast, messages, max_tokens=40, conversation="warm")
    assert fast.stats.accepted_tokens > 3, "the document prompt should draft from its first tokens"
    for after in (7, 13):
        ours, theirs = _cancelled(fast, messages, after), _cancelled(plain, messages, after)
        assert ours == theirs and len(ours) == after
        partial = fast.model.llm.detokenize(ours).decode("utf-8", errors="replace")
        follow = [*messages, {"role": "assistant", "content": partial}]
        kwargs = {"max_tokens": 60, "conversation": "esc", "continue_final": True}
        assert _answer(fast, follow, **kwargs) == _answer(plain, follow, **kwargs)


def test_after_a_hot_swap(smollm_path: Path, gemma_path: Path) -> None:
    """Another model (Gemma 3: its batch kernels differ from 4 rows on) through a swapped engine, same answers."""
    fast, plain = Engine(smollm_path, n_ctx=2048), Engine(gemma_path, n_ctx=2048, speculate=False)
    try:
        fast.swap(gemma_path)
        for i, prompt in enumerate(PROMPTS[:3]):
            messages = [{"role": "user", "content": prompt}]
            assert _answer(fast, messages, max_tokens=60, conversation=i) == _answer(
                plain, messages, max_tokens=60, conversation=i
            )
    finally:
        fast.close()
        plain.close()


def test_grammar_checked_on_the_chosen_token_gives_llama_cpp_python_s_answer(smollm_path: Path) -> None:
    engine = Engine(smollm_path, n_ctx=2048)
    llm = engine.model.llm
    try:
        for i, schema in enumerate(SCHEMAS):
            prompt = f"Name a city and a colour.\n\n{schemas.instruction(schema)}"
            grammar = schemas.grammar_for(schema)
            tokens, text = _answer(engine, [{"role": "user", "content": prompt}], max_tokens=48, grammar=grammar)
            prompt_tokens = engine._prefix.tokens[: engine.stats.prompt_tokens]
            # the reference: llama-cpp-python's sampler chain with the grammar over the whole vocabulary
            reference: list[int] = []
            for token in llm.generate(prompt_tokens, temp=0.0, min_p=0.05, repeat_penalty=1.0, grammar=grammar):
                if engine.model.is_end(token) or len(reference) == 48:
                    break
                reference.append(token)
            assert tokens == reference, f"schema {i}"
            if engine.stats.finish_reason == "stop":
                schemas.check(text, schema)
    finally:
        engine.close()


def test_prompt_lookup_drafts_adapts_and_pauses() -> None:
    drafts = PromptLookup([1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3])
    assert drafts.draft(10) == [4, 5, 6, 7]  # the continuation of the last 3-gram, START_DRAFT long
    drafts.update(4, 4)
    assert drafts.length == 6
    drafts.update(6, 1)
    assert drafts.length == 2
    assert drafts.draft(1) == [4]
    for _ in range(6):  # drafts that keep failing pause drafting
        drafts.update(2, 0)
    assert drafts.draft(10) == []
    assert drafts.stats.drafts == 8 and drafts.stats.accepted == 5
    unmatched = PromptLookup([5, 6, 7])
    assert unmatched.draft(4) == []
    weighed = PromptLookup([1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3])
    weighed.update(4, 4, cost=1.5)  # 5 tokens for 1.5 token-times: worth it
    assert weighed.draft(10) != [] and weighed.efficiency > 2
    weighed.update(4, 1, cost=4.0)
    weighed.update(4, 1, cost=4.0)  # a busy machine: 2 tokens for 4 token-times, twice
    assert weighed.draft(10) == [], "drafts that cost more time than they save pause drafting"


def test_cancel_from_another_thread_during_drafting(engines: tuple[Engine, Engine]) -> None:
    fast, _ = engines
    messages = [{"role": "user", "content": PROMPTS[0]}]
    seen = 0
    for _ in fast.stream(messages, max_tokens=300, conversation="thread"):
        seen += 1
        if seen == 5:
            threading.Thread(target=fast.cancel).start()
    assert fast.stats.finish_reason == "cancelled"
    assert seen <= 5 + 17  # at most the rest of one verified draft


def test_status_bar_shows_the_draft_acceptance() -> None:
    from assistant.tui.widgets.status import StatusInfo, status_line

    shown = status_line(StatusInfo(model="m", tokens_per_s=40.0, ttft_s=0.1, draft_acceptance=0.724), 100).plain
    assert "draft 72%" in shown and "40.0 tok/s" in shown
    assert "draft" not in status_line(StatusInfo(model="m", tokens_per_s=40.0), 100).plain
    assert "draft" not in status_line(StatusInfo(model="m", tokens_per_s=40.0, draft_acceptance=0.7), 30).plain


@pytest.mark.samples("one answer samples to show it did not draft; only that field is read")
def test_ask_json_says_whether_it_drafted_and_why_not(tmp_path: Path, assistant_home: Path) -> None:
    """`ask --json` reports the acceptance of a copy-heavy answer (greedy or sampled), and why an answer did not
    draft (the setting, a schema, or batch kernels that differ under other thread settings), never a silent null."""
    import json
    import os
    import subprocess
    import sys

    from assistant.models.engine import BATCH_DIFFERS, SAMPLED_OFF

    (tmp_path / "doc.txt").write_text(DOCUMENT)

    def ask(*args: str, **env: str) -> dict[str, Any]:
        command = [sys.executable, "-m", "assistant", "ask", "--json", "--max-tokens", "60", *args]
        proc = subprocess.run(command, capture_output=True, text=True, timeout=180, env=os.environ | env)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    copied = ask("-f", str(tmp_path / "doc.txt"), "Quote the sentences about opening hours and borrowing.")
    assert copied["drafting"] == "on" and copied["draft_acceptance"] is not None and copied["draft_length"] > 0
    two = ask("-f", str(tmp_path / "doc.txt"), "Quote the first sentence.", ASSISTANT_DECODE_THREADS="2")
    assert two["drafting"] in ("on", BATCH_DIFFERS)  # machine-dependent; never a silent off
    sampled = ask("--temperature", "0.7", "-f", str(tmp_path / "doc.txt"), "Quote the first sentence.")
    assert sampled["drafting"] == SAMPLED_OFF  # only the drafting field is read: the sampled text may vary
    shaped = ask("--schema", "city", "Name a city.")
    assert shaped["drafting"] == "off: a grammar or schema constrains the answer"
    off = ask("-f", str(tmp_path / "doc.txt"), "Quote the first sentence.", ASSISTANT_SPECULATE="0")
    assert off["drafting"] == "off: model.speculate = false" and off["draft_acceptance"] is None
