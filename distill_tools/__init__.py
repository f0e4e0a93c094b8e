"""distill_tools: build a smaller student from a teacher (knowledge distillation), export it to GGUF.

Needs the ``distill`` extra (torch, transformers, safetensors). Importing this package does not
import torch; the modules that need it import it themselves.

Modules: ``recipe`` (the TOML recipe) → ``pipeline`` (the stages) over ``prompts`` (prompt files, split,
chat-formatted ids), ``torch_model`` (loads a causal LM into torch: GGUF, HF folder, hub id), a teacher
(``torch_teacher``: the local torch model; ``served_teacher``: an OpenAI-compatible server),
``teacher_cache`` (the teacher pass and its sharded cache), ``batches`` (training sequences and tensors),
``student`` (pruning), ``losses``, ``train`` (the loop), ``distributed`` (torchrun), ``export`` (GGUF),
``evaluate``; ``persona*`` distil a persona's context.
"""

from __future__ import annotations

from pathlib import Path

from assistant import AssistantError

PACKAGE_DIR = Path(__file__).resolve().parent
DATA_DIR = PACKAGE_DIR / "data"
RECIPES_DIR = PACKAGE_DIR / "recipes"


class DistillError(AssistantError):
    """A distillation input, setting or step is not valid; the message is one clear line."""
