"""The teacher pass and its cache: teacher outputs computed once, kept on disk as safetensors shards.

For every prompt (a record: ``prompt``, and optionally earlier turns ``history`` both see and a ``system`` only the
teacher sees): the teacher's greedy answer (sequence-level KD; a record that already carries an
``answer``, e.g. from ``distill from-history``, keeps it) and, at every answer position (word-level KD),
the teacher's top-k log-probabilities at the loss temperature (float16), their token ids (uint16 when
the vocabulary has at most 65,536 tokens, else int32) and the log of the probability mass outside them
(float32; see ``losses``). A teacher (``torch_teacher.TorchTeacher`` or ``served_teacher.ServedTeacher``)
answers a shard's prompts at once (as token ids, or as chats for a runner with ``wants_messages``, one whose
tokenizer may differ); an interrupted pass resumes shard by shard.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file, save
from tqdm import tqdm

from assistant.storage.files import atomic_write_text, atomic_writer
from distill_tools import prompts
from distill_tools.progress import interactive


@dataclass
class TeacherOutput:
    prompt_ids: list[int]  # as the student sees the prompt
    answer_ids: list[int]  # ends with the end-of-turn token unless cut at max_new_tokens
    topk_logprobs: np.ndarray  # (len(answer_ids), k) float16: teacher log-probabilities (at the loss temperature)
    topk_indices: np.ndarray  # (len(answer_ids), k) uint16 (vocabulary ≤ 65,536) or int32: their token ids
    tail: np.ndarray  # (len(answer_ids),) float32: log of the teacher's probability mass outside its top-k

    @property
    def nbytes(self) -> int:
        return self.topk_logprobs.nbytes + self.topk_indices.nbytes + self.tail.nbytes


def figures(outputs: list[TeacherOutput]) -> tuple[int, float, float]:
    """(answer tokens, cached bytes per answer token, the teacher's mean probability mass outside its top-k)."""
    tokens = sum(len(o.answer_ids) for o in outputs)
    per_token = sum(o.nbytes for o in outputs) / max(1, tokens)
    tail = sum(float(np.exp(o.tail.astype(np.float64)).sum()) for o in outputs) / max(1, tokens)
    return tokens, per_token, tail


def index_dtype(vocab_size: int) -> type:
    """The smallest integer type that holds every token id."""
    return np.uint16 if vocab_size <= 1 << 16 else np.int32


def topk(logits: np.ndarray, k: int, temperature: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(top-k log-probs float16, ids, log tail mass float32) of ``logits`` (positions, vocab) at ``temperature``."""
    vocab = logits.shape[-1]
    k = min(k, vocab)
    scaled = logits.astype(np.float64) / temperature
    shifted = scaled - scaled.max(-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    idx = np.argpartition(-log_probs, k - 1, axis=-1)[:, :k]
    idx = np.take_along_axis(idx, np.argsort(-np.take_along_axis(log_probs, idx, -1), axis=-1), -1)
    top = np.take_along_axis(log_probs, idx, -1)
    rest = log_probs.copy()
    np.put_along_axis(rest, idx, -np.inf, axis=-1)
    peak = rest.max(-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):  # k = vocabulary: no tail at all (−inf)
        tail = np.where(np.isfinite(peak[:, 0]), peak[:, 0] + np.log(np.exp(rest - peak).sum(-1)), -np.inf)
    return top.astype(np.float16), idx.astype(index_dtype(vocab)), tail.astype(np.float32)


def cache_key(teacher_id: str, records: list[dict[str, str]], settings: dict[str, Any]) -> str:
    blob = json.dumps({"teacher": teacher_id, "records": records, "settings": settings}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def teacher_pass(
    records: list[dict[str, str]],
    runner: Any,
    tokenizer: Any,
    folder: Path,
    *,
    template: str,
    max_new_tokens: int,
    top_k: int,
    key: str,
    batch_size: int = 32,
    temperature: float = 1.0,
    on_shard: Any = None,
    mine: Any = None,
) -> list[TeacherOutput]:
    """Run (or resume) the teacher over ``records`` a batch at a time, one cached shard per batch in
    ``folder``; returns all outputs. ``runner.targets(prompts, forced answers, max_new_tokens, top_k, temperature)``
    gives (answer ids, top-k log-probs, ids, log tail) per prompt; ``on_shard(index)`` follows each shard written.
    With ``mine(index)`` (a rank's share under torchrun), only those shards are made and returned."""
    folder.mkdir(parents=True, exist_ok=True)
    meta = folder / "meta.json"
    if meta.exists() and json.loads(meta.read_text()).get("key") != key:
        for old in folder.glob("shard-*.safetensors"):
            old.unlink()
    atomic_write_text(meta, json.dumps({"key": key, "records": len(records)}))
    n_shards = (len(records) + batch_size - 1) // batch_size
    outputs: list[TeacherOutput] = []
    with tqdm(total=len(records), desc="teacher pass", unit="prompt", disable=not interactive()) as bar:
        for shard in range(n_shards):
            path = folder / f"shard-{shard:05d}.safetensors"
            chunk = records[shard * batch_size : (shard + 1) * batch_size]
            if mine is not None and not mine(shard):
                bar.update(len(chunk))
                continue
            if path.exists():
                outputs += read_shard(path)
                bar.update(len(chunk))
                continue
            student_prompts = [chat_ids(tokenizer, messages(r)) for r in chunk]
            seen = [messages(r, template, teacher=True) for r in chunk]
            teacher_prompts = (
                seen if getattr(runner, "wants_messages", False) else [chat_ids(tokenizer, m) for m in seen]
            )
            forced = [prompts.forced_answer(tokenizer, r, max_new_tokens) for r in chunk]
            targets = runner.targets(teacher_prompts, forced, max_new_tokens, top_k, temperature)
            done = [TeacherOutput(p, *t) for p, t in zip(student_prompts, targets)]
            bar.update(len(chunk))
            with atomic_writer(path) as handle:
                handle.write(save(_pack(done)))
            outputs += done
            if on_shard:
                on_shard(shard)
    return outputs


def messages(record: dict[str, Any], template: str = "{prompt}", teacher: bool = False) -> list[dict[str, str]]:
    """A record as a chat: its earlier turns (``history``: [role, text] pairs), then its prompt. The teacher's view
    also has the record's ``system`` (e.g. the passage that answers it) and the prompt rendered by ``template``."""
    turns = [{"role": role, "content": text} for role, text in record.get("history") or ()]
    prompt = prompts.render(template, record["prompt"]) if teacher else record["prompt"]
    system = [{"role": "system", "content": record["system"]}] if teacher and record.get("system") else []
    return system + turns + [{"role": "user", "content": prompt}]


def chat_ids(tokenizer: Any, chat: list[dict[str, str]]) -> list[int]:
    """The chat in the model's own template, generation prompt added, as token ids (``prompts.prompt_ids`` for a
    whole conversation)."""
    text = tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _pack(outputs: list[TeacherOutput]) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {}
    for i, out in enumerate(outputs):
        arrays[f"{i}.prompt"] = np.array(out.prompt_ids, dtype=np.int32)
        arrays[f"{i}.answer"] = np.array(out.answer_ids, dtype=np.int32)
        arrays[f"{i}.logprobs"] = out.topk_logprobs
        arrays[f"{i}.indices"] = out.topk_indices
        arrays[f"{i}.tail"] = out.tail
    return arrays


def read_shard(path: Path) -> list[TeacherOutput]:
    arrays = load_file(str(path))
    count = len({name.split(".")[0] for name in arrays})
    return [
        TeacherOutput(
            arrays[f"{i}.prompt"].tolist(),
            arrays[f"{i}.answer"].tolist(),
            arrays[f"{i}.logprobs"],
            arrays[f"{i}.indices"],
            arrays[f"{i}.tail"],
        )
        for i in range(count)
    ]
