"""How well a distilled persona answers without its context, measured on the GGUF files in llama.cpp.

Three models: the teacher (the base model *with* the persona's context as system prompt), the
student and the base model (both *without* it). On held-out questions with known answers: the
share answered correctly; on held-out prompts: KL(teacher ‖ model) and top-1 agreement on the
teacher's greedy answers (the student and the base see the prompt without the context); on the
bundled general tasks: the student's score relative to the base's (no forgetting). Also the
first-turn time to first token and decode speed in the product's own engine.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from assistant.config import load
from assistant.models.engine import Engine
from distill_tools import evaluate

TEACHER, STUDENT, BASE = "teacher (base + context)", "student (no context)", "base (no context)"


def _prompt(runner: evaluate.Runner, text: str, system: str = "") -> list[int]:
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]
    return runner.llm.tokenize(runner.template.render(messages).encode(), add_bos=False, special=True)


def _score(
    runner: evaluate.Runner, tasks: list[dict[str, Any]], system: str, max_new: int, bar: Any
) -> tuple[float, list[dict[str, Any]]]:
    answers = []
    for task in tasks:
        text = runner.text(runner.generate(_prompt(runner, task["prompt"], system), max_new))
        answers.append({"prompt": task["prompt"], "answer": text, "correct": evaluate.correct(text, task["answers"])})
        bar.update(1)
    return (sum(a["correct"] for a in answers) / len(answers) if answers else 0.0), answers


def evaluate_persona(
    base: Path,
    student: Path,
    system: str,
    checkable: list[dict[str, Any]],
    heldout: list[str],
    general: list[dict[str, Any]],
    max_new: int = 40,
    n_ctx: int = 1024,
    top_k: int = 32,
) -> dict[str, Any]:
    """Reports (teacher, student, base) as ``evaluate.ModelReport`` plus the general-task scores.

    ``n_ctx`` must hold the context, a question and ``max_new`` tokens (every position's logits are kept);
    ``top_k``: the teacher top-k the student was trained on (the report gives its mass outside them)."""
    threads = load().model.threads  # a thread per core stalls llama.cpp's barriers on a busy machine
    reference: list[tuple[list[int], list[int], np.ndarray]] = []  # prompt without context, teacher answer, log-probs
    reports: list[evaluate.ModelReport] = []
    general_scores: dict[str, float] = {}
    steps = 3 * len(checkable) + len(heldout) + 2 * len(general)
    with tqdm(total=steps, desc="evaluate", unit="prompt", disable=None) as bar:
        for label, path, context in ((TEACHER, base, system), (STUDENT, student, ""), (BASE, base, "")):
            runner = evaluate.Runner(path, n_ctx=n_ctx, threads=threads)
            try:
                report = evaluate.ModelReport(label, str(path), path.stat().st_size, runner.info.parameters)
                report.task_score, report.answers = _score(runner, checkable, context, max_new, bar)
                if label == TEACHER:
                    for text in heldout:
                        prompt = _prompt(runner, text, system)
                        answer = runner.generate(prompt, max_new)
                        if answer:
                            logits = runner.logits(prompt, answer)
                            reference.append((_prompt(runner, text), answer, evaluate.log_softmax(logits)))
                        bar.update(1)
                    report.mean_kl, report.top1_agreement = 0.0, 1.0
                else:
                    evaluate.compare(runner, reference, report, top_k)
                    general_scores[label], _ = _score(runner, general, "", max_new, bar)
            finally:
                runner.close()
            reports.append(report)
    teacher_score = reports[0].task_score
    for report in reports:
        report.retention = (report.task_score or 0.0) / teacher_score if teacher_score else 0.0
    base_general = general_scores.get(BASE, 0.0)
    return {
        "reports": reports,
        "general": {
            "student": general_scores.get(STUDENT, 0.0),
            "base": base_general,
            "retention": general_scores.get(STUDENT, 0.0) / base_general if base_general else 0.0,
        },
    }


def first_turn(
    path: Path, system: str, questions: list[str], n_ctx: int = 4096, max_tokens: int = 24
) -> dict[str, float]:
    """Median first-turn TTFT, decode tokens/s and prompt tokens, each question in a freshly loaded engine."""
    threads = load().model.threads
    ttft, speed, prompt_tokens = [], [], 0
    for question in questions:
        engine = Engine(path, n_ctx=n_ctx, threads=threads)
        try:
            messages = [{"role": "system", "content": system}] if system else []
            messages.append({"role": "user", "content": question})
            for _ in engine.stream(messages, max_tokens=max_tokens, temperature=0.0):
                pass
            ttft.append(engine.stats.ttft_s)
            if engine.stats.tokens_per_s:
                speed.append(engine.stats.tokens_per_s)
            prompt_tokens = engine.stats.prompt_tokens
        finally:
            engine.close()
    return {
        "ttft_s": statistics.median(ttft),
        "tokens_per_s": statistics.median(speed) if speed else 0.0,
        "prompt_tokens": prompt_tokens,
    }
