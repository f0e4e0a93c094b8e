"""The persona evaluation end to end on the real packaged model (small: one question of each kind)."""

from __future__ import annotations

from pathlib import Path

import pytest

from distill_tools.persona_eval import evaluate_persona


@pytest.mark.timeout(180)
def test_evaluate_persona_scores_teacher_student_and_base(smollm_path: Path) -> None:
    """It once called the KL comparison without its top-k argument (a TypeError after the whole training)."""
    task = {"prompt": "What is the capital of France?", "answers": ["Paris"]}
    result = evaluate_persona(
        smollm_path,
        smollm_path,
        "You are a geography tutor.",
        [task],
        [task["prompt"]],
        [task],
        max_new=4,
        n_ctx=512,
        top_k=8,
    )
    teacher, student, base = result["reports"]
    assert teacher.mean_kl == 0.0 and teacher.top1_agreement == 1.0
    for report in (student, base):  # the same weights without the system prompt: measured, finite figures
        assert report.mean_kl is not None and report.mean_kl >= 0.0
        assert 0.0 <= report.top1_agreement <= 1.0 and report.outside_topk is not None
    assert set(result["general"]) == {"student", "base", "retention"}
