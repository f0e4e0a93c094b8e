"""LoRA adapters (peft) on chosen layers of a student, merged into its weights before the GGUF export: the
base's weights stay frozen and each adapted projection learns a low-rank change only."""

from __future__ import annotations

import warnings
from typing import Any

from distill_tools import DistillError

ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP = ("gate_proj", "up_proj", "down_proj")


def attach(model: Any, layers: list[int], rank: int, alpha: int, attention: bool = True) -> Any:
    """``model`` wrapped with rank-``rank`` adapters on the MLP (and attention) projections of ``layers``; only
    the adapters learn."""
    try:
        from peft import LoraConfig, get_peft_model  # only here: a full fine-tuning run does not need peft
    except ImportError:
        raise DistillError("LoRA needs peft: pip install 'peft>=0.17' (or choose full fine-tuning)") from None
    config = LoraConfig(
        r=rank,
        lora_alpha=alpha,
        lora_dropout=0.0,
        target_modules=list(MLP + ATTENTION if attention else MLP),
        layers_to_transform=layers,
        layers_pattern="layers",
        bias="none",
    )
    with warnings.catch_warnings():  # transformers' deprecation notes, raised from inside peft
        warnings.simplefilter("ignore", FutureWarning)
        return get_peft_model(model, config)


def merge(model: Any, scale: float = 1.0) -> Any:
    """The plain model with the adapters added into its weights (a model without adapters is returned as is).

    ``scale`` < 1 adds only that share of the learned change (weight-space interpolation between the base and the
    fine-tuned model, as in WiSE-FT): the student forgets less of the base and keeps part of what it learned."""
    if not hasattr(model, "merge_and_unload"):
        return model
    if not 0.0 <= scale <= 1.0:
        raise DistillError(f"the adapters' merge scale must be between 0 and 1, not {scale}")
    from peft.tuners.lora import LoraLayer

    for module in model.modules():
        if isinstance(module, LoraLayer):
            module.scale_layer(scale)
    return model.merge_and_unload()
