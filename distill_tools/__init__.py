"""distill_tools: build a smaller student from a teacher (knowledge distillation), export it to GGUF.

Needs the ``distill`` extra (torch, transformers, safetensors). Importing this package does not
import torch; the modules that need it import it themselves.
"""

from __future__ import annotations

from pathlib import Path

from assistant import AssistantError

PACKAGE_DIR = Path(__file__).resolve().parent
DATA_DIR = PACKAGE_DIR / "data"
RECIPES_DIR = PACKAGE_DIR / "recipes"


class DistillError(AssistantError):
    """A distillation input, setting or step is not valid; the message is one clear line."""
