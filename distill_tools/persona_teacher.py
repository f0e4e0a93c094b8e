"""The teacher of a persona run (``distill persona NAME --teacher MODEL|URL``).

* none: the persona's base model itself, with the passage as system prompt (logit KD);
* a local model (a registry name or a GGUF file) sharing the student's tokenizer: logit KD, as with the base;
* an OpenAI-compatible endpoint (``http://…``): logit KD from its log-probs where its tokenizer is the student's
  (``served_teacher``'s check), else sequence-level KD on the answers of its chat endpoint.

Every teacher is also asked to write questions (``questions.teacher_questions`` checks what it writes and falls
back to templates). A teacher other than the base answers every question itself; the base model, a weak
teacher, answers the first wording of each fact and learns the others from the context's own words.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assistant.config import TeacherSettings, load
from distill_tools import DistillError, torch_model
from distill_tools.served_teacher import ChatTeacher, ServedTeacher, first_model
from distill_tools.torch_model import Loaded
from distill_tools.torch_teacher import TorchTeacher

TIMEOUT_S, CONNECT_S, RETRIES = 120.0, 5.0, 1  # every request to an endpoint: a deadline, one retry
WRITE_TOKENS = 200  # a teacher's reply with the questions about one claim (ten short lines)


@dataclass
class Teacher:
    """What answers (``runner``, for ``teacher_cache.teacher_pass``) and writes (``ask``) for a persona run."""

    runner: Any
    source: str  # what it is (the cache key and the summary name it)
    kd: str  # logit | sequence | "logit where its log-probs map"
    strong: bool  # not the base model: it answers every question itself
    ask: Callable[[str], str] | None  # its answer to one message (question writing); None: it cannot be asked
    check: str = ""  # what the tokenizer check found

    def close(self) -> None:
        """Free what writing questions loaded (a local model's llama.cpp engine)."""
        if isinstance(self.ask, LocalWriter):
            self.ask.close()


def resolve(spec: str, base: Loaded) -> Teacher:
    """The teacher ``spec`` names ('' = the base model), checked before any long work (one-line errors)."""
    tok = base.tokenizer
    if not spec:
        return Teacher(_runner(base), str(base.gguf_path), "logit", False, local_writer(base))
    if spec.startswith(("http://", "https://")):
        return endpoint(spec, tok)
    loaded = torch_model.load(spec)
    if not same_tokenizer(loaded.tokenizer, tok):
        raise DistillError(
            f"teacher {spec!r} does not share the student's tokenizer: a local teacher is distilled word by word; "
            "serve it behind an OpenAI-compatible endpoint (--teacher http://…) for sequence-level KD"
        )
    return Teacher(_runner(loaded), str(loaded.gguf_path or spec), "logit", True, local_writer(loaded), "same tokens")


def _runner(loaded: Loaded) -> TorchTeacher:
    tok = loaded.tokenizer
    return TorchTeacher(loaded.model, tok.eos_token_id, tok.pad_token_id)


def endpoint(url: str, tok: Any, timeout_s: float = TIMEOUT_S) -> Teacher:
    """A served teacher: logit KD where the server shares the student's tokenizer, sequence-level KD otherwise;
    ``timeout_s``: the deadline of every request."""
    settings = TeacherSettings(url=url, timeout_s=timeout_s, connect_timeout_s=CONNECT_S, retries=RETRIES)
    settings.model = first_model(settings)  # also: is anything there at all
    writer = ChatTeacher(settings, tok)
    served = ServedTeacher(settings, tok)
    try:
        check = served.check_tokenizer()
    except DistillError as exc:
        if "does not share" not in str(exc):
            raise
        return Teacher(writer, url, "sequence", True, writer.ask, "another tokenizer: sequence-level KD on its answers")
    kd = "logit" if check.startswith("same tokens") else "logit where its log-probs map"
    return Teacher(served, url, kd, True, writer.ask, check)


def same_tokenizer(a: Any, b: Any) -> bool:
    """Same vocabulary, same special tokens and the same chat rendering of a probe."""
    probe = [{"role": "user", "content": "Hello, world! 42 Ünïcödé"}]
    if a.get_vocab() != b.get_vocab() or a.eos_token_id != b.eos_token_id:
        return False
    render = [t.apply_chat_template(probe, add_generation_prompt=True, tokenize=False) for t in (a, b)]
    return render[0] == render[1]


class LocalWriter:
    """A local model's greedy answer to one message, in llama.cpp (loaded on first use, closed by ``close``)."""

    def __init__(self, path: Path) -> None:
        self.path: Path = path
        self.engine: Any = None

    def __call__(self, prompt: str) -> str:
        from assistant.models.engine import Engine

        if self.engine is None:
            self.engine = Engine(self.path, n_ctx=2048, threads=load().model.threads)
        pieces = self.engine.stream([{"role": "user", "content": prompt}], max_tokens=WRITE_TOKENS, temperature=0.0)
        return "".join(piece.text for piece in pieces)

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()
            self.engine = None


def local_writer(loaded: Loaded) -> LocalWriter | None:
    return LocalWriter(loaded.gguf_path) if loaded.gguf_path is not None else None


def figures(teacher: Teacher, prompts: Any) -> dict[str, Any]:
    """What the summary says of the teacher and the questions (``prompts``: a ``persona_prompts.PromptSet``)."""
    line = teacher.runner.kd_line() if hasattr(teacher.runner, "kd_line") else ""
    return {
        "teacher": teacher.source,
        "kd": teacher.kd,
        "tokenizer_check": teacher.check,
        "teacher_pass": line,
        "facts": len(prompts.facts),
        "checkable_facts": sum(1 for f in prompts.facts if f.key),
        "per_fact": round(prompts.questions_per_fact, 2),
        "teacher_written_share": round(prompts.teacher_share, 3),
        "writer": prompts.writer or "not asked",
        "heldout_source": prompts.heldout_source,
    }
