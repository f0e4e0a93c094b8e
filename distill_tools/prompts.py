"""Prompts in: JSONL or text files (bundled ones by name), the held-out split, the chat-formatted token ids,
and the escalated answers of the history as records."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from distill_tools import DATA_DIR, DistillError


def load_records(specs: list[str], limit: int = 0) -> list[dict[str, str]]:
    """Records ``{"prompt", "answer"?}`` from JSONL (keys prompt|question, answer) or text files (one per line).

    With a ``limit``, the files take turns (one record from each in order, round after round), so
    every listed file contributes however long the ones before it are."""
    files = [_read_file(prompt_path(spec)) for spec in specs]
    if not any(files):
        raise DistillError(f"no prompts found in {', '.join(specs)}")
    if not limit:
        return [record for records in files for record in records]
    chosen: list[list[dict[str, str]]] = [[] for _ in files]
    taken, depth = 0, 0
    while taken < limit and any(depth < len(records) for records in files):
        for i, records in enumerate(files):
            if depth < len(records) and taken < limit:
                chosen[i].append(records[depth])
                taken += 1
        depth += 1
    return [record for records in chosen for record in records]


def prompt_path(spec: str) -> Path:
    """The file a ``data.prompts`` entry names (``bundled:NAME`` is a bundled JSONL)."""
    if spec.startswith("bundled:"):
        return DATA_DIR / f"{spec.removeprefix('bundled:')}.jsonl"
    return Path(spec).expanduser()


def render(template: str, prompt: str) -> str:
    """The teacher's view of a prompt: ``{prompt}`` replaced, every other brace left as written."""
    return template.replace("{prompt}", prompt)


def _read_file(path: Path) -> list[dict[str, str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DistillError(f"{path}: no such prompt file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DistillError(f"{path}: cannot read prompts: {exc}") from None
    if path.suffix != ".jsonl":
        return [{"prompt": line.strip()} for line in text.splitlines() if line.strip()]
    records = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DistillError(f"{path}:{number}: invalid JSON: {exc.msg}") from None
        prompt = item.get("prompt", item.get("question")) if isinstance(item, dict) else None
        if not isinstance(prompt, str) or not prompt.strip():
            raise DistillError(f'{path}:{number}: each line needs a non-empty "prompt" (or "question") string')
        record = {"prompt": prompt}
        if isinstance(item.get("answer"), str) and item["answer"].strip():
            record["answer"] = item["answer"]
        records.append(record)
    return records


def split(records: list[dict[str, str]], heldout: int, seed: int) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """(train, held-out): a seeded shuffle, the last ``heldout`` records kept out of training."""
    order = np.random.default_rng(seed).permutation(len(records))
    heldout = min(heldout, max(0, len(records) - 1))
    shuffled = [records[i] for i in order]
    return shuffled[: len(records) - heldout], shuffled[len(records) - heldout :]


def prompt_ids(tokenizer: Any, prompt: str) -> list[int]:
    """The chat-formatted prompt (the model's own template, generation prompt added) as token ids."""
    messages = [{"role": "user", "content": prompt}]
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def from_history(exchanges: list[Any]) -> list[dict[str, Any]]:
    """The history's escalated ``exchanges`` (the assistant reads them: see ``app``) as records: the teacher's
    answer and the user question before it."""
    return [
        {
            "prompt": e.question,
            "answer": e.answer,
            "source": "history",
            "teacher": e.model,
            "conversation_id": e.conversation_id,
            "message_id": e.answer_id,
        }
        for e in exchanges
        if e.question.strip()
    ]


def forced_answer(tokenizer: Any, record: dict[str, str], max_new_tokens: int) -> list[int] | None:
    """A record's given answer (e.g. from the history) as tokens ending with end-of-turn; None to generate."""
    if "answer" not in record:
        return None
    ids = list(tokenizer(record["answer"], add_special_tokens=False)["input_ids"])
    return ids[: max_new_tokens - 1] + [tokenizer.eos_token_id]
