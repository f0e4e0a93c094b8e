"""distill_tools: build a smaller student from a teacher (knowledge distillation), export it to GGUF.

Needs the ``distill`` extra (torch, transformers, safetensors). Importing this package does not
import torch, nor do the modules the assistant's command line loads (``cli``, ``persona_cli``, ``recipe``,
``app``, ``progress``, ``distributed``); the others import it at their top.

Modules: ``recipe`` (the TOML recipe) → ``checks`` (everything checked before a model loads) → ``pipeline``
(the phases) over ``prompts`` (prompt files, split, chat-formatted ids), ``torch_model`` (loads a causal LM
into torch: GGUF, HF folder, hub id), a teacher (``torch_teacher``: the local torch model; ``served_teacher``:
an OpenAI-compatible server), ``teacher_cache`` (the teacher pass and its sharded cache), ``batches`` (training
sequences and tensors), ``student`` (pruning), ``losses``, ``answer_head`` and ``train`` (the loop),
``distributed`` and ``sharding`` (torchrun, FSDP), ``export`` (GGUF), ``evaluate``; ``persona*`` distil a
persona's context. Of the assistant it uses the settings, atomic file writes and the models layer (the registry,
llama.cpp as the product runs it); what two commands read of its history and personas comes in through ``app``.
"""

from __future__ import annotations

from pathlib import Path

from assistant import AssistantError

PACKAGE_DIR = Path(__file__).resolve().parent
DATA_DIR = PACKAGE_DIR / "data"
RECIPES_DIR = PACKAGE_DIR / "recipes"


class DistillError(AssistantError):
    """A distillation input, setting or step is not valid; the message is one clear line."""


class Interrupted(DistillError):
    """Ctrl-C stopped a run after saving its state (e.g. a checkpoint); the command exits 130, as after any Ctrl-C."""
