"""Teacher vs students, measured on the GGUF files in llama.cpp (what the user will actually run).

For each model: the score on a small task set with checkable answers (retention = student score /
teacher score), and on held-out prompts the teacher's greedy answers: mean KL(teacher ‖ model)
over answer positions, top-1 agreement with the teacher, and the model's perplexity on those
answers; plus file size and generation speed. Written as JSON + Markdown + a PNG plot. A figure
that was not measured (no tasks, no held-out prompts) is None in the JSON and "—" elsewhere.
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import llama_cpp
import numpy as np
from tqdm import tqdm

from assistant.models.chat_template import ChatTemplate, fallback_for
from assistant.models.engine import llama_chat_handlers_disabled
from assistant.models.gguf_info import read_info
from assistant.storage.files import atomic_write_text, atomic_writer
from distill_tools import DATA_DIR, DistillError, llama
from distill_tools.progress import interactive


@dataclass
class ModelReport:
    label: str
    path: str
    size_bytes: int
    parameters: int
    task_score: float | None = None  # fraction of tasks answered correctly
    retention: float | None = None  # task score relative to the teacher's
    mean_kl: float | None = None  # the rest: on the teacher's answers to held-out prompts
    top1_agreement: float | None = None
    perplexity: float | None = None
    outside_topk: float | None = None  # the model's probability outside the teacher's top-k tokens (hidden tail)
    tokens_per_s: float | None = None
    answers: list[dict[str, Any]] = field(default_factory=list)


def load_tasks(spec: str) -> list[dict[str, Any]]:
    """Tasks ``{"prompt", "answers": [accepted, ...]}``; ``bundled:tasks`` is the bundled set."""
    path = DATA_DIR / f"{spec.removeprefix('bundled:')}.jsonl" if spec.startswith("bundled:") else Path(spec)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise DistillError(f"{path}: cannot read the task set: {exc.strerror or exc}") from None
    tasks = []
    for number, line in enumerate(lines, 1):
        if line.strip():
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DistillError(f"{path}:{number}: invalid JSON: {exc.msg}") from None
            if not isinstance(item.get("prompt"), str) or not isinstance(item.get("answers"), list):
                raise DistillError(f'{path}:{number}: a task needs "prompt" and a list of accepted "answers"')
            tasks.append(item)
    return tasks


def correct(answer: str, accepted: list[str]) -> bool:
    """Whether any accepted answer appears in ``answer`` as a whole word (case-insensitive)."""
    return any(re.search(rf"(?<![\w.]){re.escape(a.lower())}(?![\w])", answer.lower()) for a in accepted)


class Runner:
    """One GGUF in llama.cpp with its own chat template; greedy generation and per-position logits."""

    def __init__(self, path: Path, n_ctx: int = 1024, threads: int = 0) -> None:
        self.info = read_info(path)
        with llama_chat_handlers_disabled():
            # n_batch=8: here, prompt batches of 64 tokens ran ~20x slower than batches of 8 (measured)
            self.llm = llama.open_model(path, n_ctx, n_threads=threads, n_batch=8, logits_all=True)
        source = self.info.chat_template or fallback_for(self.info.architecture)
        self.template = ChatTemplate(
            source, self.info.bos_token, self.info.eos_token, builtin=not self.info.chat_template
        )
        self.vocab = llama_cpp.llama_model_get_vocab(self.llm.model)
        self._eog = llama_cpp.llama_vocab_is_eog

    def prompt(self, text: str) -> list[int]:
        rendered = self.template.render([{"role": "user", "content": text}])
        return self.llm.tokenize(rendered.encode(), add_bos=False, special=True)

    def generate(self, prompt: list[int], max_new: int) -> list[int]:
        self._feed(prompt)
        tokens: list[int] = []
        while len(tokens) < max_new:
            token = int(np.argmax(self.llm.scores[self.llm.n_tokens - 1]))
            if self._eog(self.vocab, token):
                break
            tokens.append(token)
            self.llm.eval([token])
        return tokens

    def logits(self, prompt: list[int], answer: list[int]) -> np.ndarray:
        """Logits predicting each answer token."""
        self._feed(prompt + answer[:-1])
        return np.array(self.llm.scores[len(prompt) - 1 : len(prompt) - 1 + len(answer)], dtype=np.float64)

    def _feed(self, tokens: list[int]) -> None:
        """Evaluate ``tokens`` from the first one not already in the context: prompts that share a persona's long
        context evaluate it once (llama.cpp drops the KV entries past the kept prefix; their logits are the same)."""
        shared = llama_cpp.Llama.longest_token_prefix(self.llm.input_ids[: self.llm.n_tokens], tokens)
        keep = max(0, min(shared, len(tokens) - 1))  # at least the last token is evaluated: its logits are read
        self.llm.n_tokens = keep
        self.llm.eval(tokens[keep:])

    def text(self, tokens: list[int]) -> str:
        return self.llm.detokenize(tokens).decode("utf-8", errors="replace")

    def close(self) -> None:
        self.llm.close()


def log_softmax(x: np.ndarray) -> np.ndarray:
    """Log-probabilities from logits (last axis), numerically stable."""
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def evaluate(
    teacher: Path,
    students: dict[str, Path],
    tasks: list[dict[str, Any]],
    heldout: list[str],
    max_new_tokens: int = 48,
    top_k: int = 32,
) -> list[ModelReport]:
    """Reports for the teacher (first) and each student, all against the teacher (``top_k``: the teacher's
    tokens a model's probability outside of which is reported as its hidden tail)."""
    models = {"teacher": teacher, **students}
    reports: list[ModelReport] = []
    reference: list[tuple[list[int], list[int], np.ndarray]] = []  # held-out: prompt, teacher answer, teacher log-probs
    steps = len(models) * (len(tasks) + len(heldout))
    with tqdm(total=steps, desc="evaluate", unit="prompt", disable=not interactive()) as bar:
        for label, path in models.items():
            runner = Runner(path)
            try:
                report = ModelReport(label, str(path), path.stat().st_size, runner.info.parameters)
                generated, seconds = 0, 0.0
                for task in tasks:
                    start = time.perf_counter()
                    tokens = runner.generate(runner.prompt(task["prompt"]), max_new_tokens)
                    seconds += time.perf_counter() - start
                    generated += len(tokens)
                    text = runner.text(tokens)
                    report.answers.append(
                        {"prompt": task["prompt"], "answer": text, "correct": correct(text, task["answers"])}
                    )
                    bar.update(1)
                if tasks:
                    report.task_score = sum(a["correct"] for a in report.answers) / len(tasks)
                    report.tokens_per_s = generated / seconds if seconds else None
                if label == "teacher":
                    for prompt_text in heldout:
                        prompt = runner.prompt(prompt_text)
                        answer = runner.generate(prompt, max_new_tokens)
                        if answer:
                            reference.append((prompt, answer, log_softmax(runner.logits(prompt, answer))))
                        bar.update(1)
                else:
                    bar.update(len(heldout))
                compare(runner, reference, report, top_k)
            finally:
                runner.close()
            reports.append(report)
    teacher_score = reports[0].task_score
    for report in reports:
        if teacher_score and report.task_score is not None:
            report.retention = report.task_score / teacher_score
    return reports


def compare(
    runner: Runner, reference: list[tuple[list[int], list[int], np.ndarray]], report: ModelReport, top_k: int
) -> None:
    """Fill ``report``'s KL, top-1 agreement, perplexity and mass outside the teacher's ``top_k``, measured on
    the teacher's answers in ``reference`` (prompt, answer, the teacher's log-probabilities)."""
    kl_sum, agree, nll, outside, positions = 0.0, 0, 0.0, 0.0, 0
    for prompt, answer, teacher_logp in reference:
        logp = log_softmax(runner.logits(prompt, answer))
        kl_sum += float((np.exp(teacher_logp) * (teacher_logp - logp)).sum())
        top = np.argpartition(-teacher_logp, min(top_k, teacher_logp.shape[-1]) - 1, axis=-1)[:, :top_k]
        outside += float((1 - np.exp(np.take_along_axis(logp, top, -1)).sum(-1)).sum())
        agree += int((teacher_logp.argmax(-1) == logp.argmax(-1)).sum())
        nll -= float(logp[np.arange(len(answer)), answer].sum())
        positions += len(answer)
    if positions:
        report.mean_kl, report.top1_agreement = kl_sum / positions, agree / positions
        report.perplexity = math.exp(nll / positions)
        report.outside_topk = outside / positions


# -- the report
def write_report(
    folder: Path,
    reports: list[ModelReport],
    history: list[dict[str, float]] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Path]:
    """report.json, report.md and report.png in ``folder`` (written atomically)."""
    folder.mkdir(parents=True, exist_ok=True)
    document = {"models": [asdict(r) for r in reports], **(extra or {})}
    atomic_write_text(folder / "report.json", json.dumps(document, indent=2, ensure_ascii=False))
    atomic_write_text(folder / "report.md", markdown(reports, extra or {}))
    paths = {"json": folder / "report.json", "markdown": folder / "report.md"}
    if plot(folder / "report.png", reports, history or []):
        paths["plot"] = folder / "report.png"
    return paths


def figure(value: float | None, spec: str) -> str:
    """A measured value formatted, or "—" for one that was not measured."""
    return "—" if value is None else format(value, spec)


def markdown(reports: list[ModelReport], extra: dict[str, Any]) -> str:
    """The report: a table of models, the export check, the timings, then the run's other figures."""
    teacher = reports[0]
    lines = [
        "# Distillation report",
        "",
        "| model | size MB | params M | size vs teacher | task score | retention | mean KL | top-1 agreement "
        "| perplexity | mass outside teacher's top-k | tokens/s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in reports:
        lines.append(
            f"| {r.label} | {r.size_bytes / 1e6:.1f} | {r.parameters / 1e6:.1f} "
            f"| {r.parameters / max(1, teacher.parameters):.0%} "
            f"| {figure(r.task_score, '.1%')} | {figure(r.retention, '.1%')} | {figure(r.mean_kl, '.3f')} "
            f"| {figure(r.top1_agreement, '.1%')} | {figure(r.perplexity, '.2f')} | {figure(r.outside_topk, '.1%')} "
            f"| {figure(r.tokens_per_s, '.0f')} |"
        )
    lines += [
        "",
        "Task score: share of the bundled held-out tasks answered correctly (greedy, llama.cpp). "
        "KL, agreement and perplexity: on the teacher's greedy answers to held-out prompts "
        "(— : not measured, e.g. no held-out prompts).",
    ]
    if check := extra.get("verification"):
        verdict = "passed" if check["passed"] else "FAILED"
        lines += [
            "",
            f"**Export check** ({extra.get('quant', '')} GGUF in llama.cpp vs the torch student): {verdict}, "
            f"top-1 agreement {check['top1_agreement']:.1%}, mean KL {check['mean_kl']:.4f} "
            f"over {check['positions']} positions.",
        ]
    if timings := extra.get("timings_s"):
        lines += ["", "| phase | seconds |", "|---|---|"]
        lines += [
            f"| {phase.removesuffix('_s').replace('_', ' ')} | {seconds:.1f} |" for phase, seconds in timings.items()
        ]
    lines.append("")
    for key, value in extra.items():
        if not isinstance(value, (dict, list)) and value is not None:
            lines.append(f"- {key}: {value}")
    return "\n".join(lines) + "\n"


def plot(path: Path, reports: list[ModelReport], history: list[dict[str, float]]) -> bool:
    """Loss curves and per-model metrics, every bar labelled with its value, in one PNG; False without matplotlib."""
    try:  # here, not at the top: matplotlib is optional, and slow to load
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig = draw(reports, history)
    with atomic_writer(path) as handle:
        fig.savefig(handle, format="png", dpi=100)
    plt.close(fig)
    return True


def draw(reports: list[ModelReport], history: list[dict[str, float]]) -> Any:
    """The report's figure: training loss; task score, retention and top-1 agreement; KL and perplexity."""
    import matplotlib.pyplot as plt  # (as in plot: optional, slow to load)

    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(15, 4.5))
    if history:
        steps = range(1, len(history) + 1)
        for key in ("loss", "kd", "ce"):
            left.plot(steps, [h[key] for h in history], label=key)
        left.set_xlabel("step")
        left.set_title("training loss")
        left.legend()
    else:
        left.set_axis_off()
    labels = [r.label for r in reports]
    _bars(
        middle,
        labels,
        {
            "task score": [r.task_score for r in reports],
            "retention": [r.retention for r in reports],
            "top-1 agreement": [r.top1_agreement for r in reports],
        },
        "{:.0%}",
    )
    middle.set_ylim(0, 1.2)
    middle.set_title("students vs teacher (higher is better)")
    _bars(
        right,
        labels,
        {"KL vs teacher": [r.mean_kl for r in reports], "perplexity": [r.perplexity for r in reports]},
        "{:.2f}",
    )
    right.set_title("KL and perplexity on held-out answers (lower is better)")
    fig.tight_layout()
    return fig


def _bars(axes: Any, labels: list[str], series: dict[str, list[float | None]], spec: str) -> None:
    """Grouped bars, each labelled with its value ("n/a" for a figure that was not measured)."""
    x = np.arange(len(labels))
    width = 0.8 / len(series)
    for i, (name, values) in enumerate(series.items()):
        heights = [v if v is not None else 0.0 for v in values]
        bars = axes.bar(x + (i - (len(series) - 1) / 2) * width, heights, width, label=name)
        axes.bar_label(bars, labels=["n/a" if v is None else spec.format(v) for v in values], fontsize=7, padding=2)
    axes.set_xticks(x, labels, fontsize=8)
    axes.legend(fontsize=8)
