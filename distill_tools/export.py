"""Torch student → GGUF (llama architecture) with gguf-py's writer; quantised; verified in llama.cpp.

Tensors follow llama.cpp's naming, with q_proj/k_proj rows permuted the way its converter does
(``LlamaModel.permute``: HF's rotary layout → GGML's). The tokenizer metadata (vocabulary, merges,
special tokens, chat template) is carried over from the teacher's GGUF, or built from an HF BPE
tokenizer. F32/F16/Q8_0 are written directly (Q8_0 quantised in numpy by gguf-py); Q4_0, Q5_0 and
Q4_K_M are made by llama.cpp's own quantiser from an F16 file, and only for shapes they fit (every
weight row a multiple of the type's block: 32, or 256 for k-quants; otherwise llama.cpp silently
falls back tensor by tensor, so such a request is refused before any work). Everything is written
under a temporary name in the target folder and renamed only after verification passes, so a
failure leaves no half-written GGUF (and a killed export's leftovers are removed by the next run).
The file's metadata names the teacher and the recipe it came from.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import gguf
import llama_cpp
import numpy as np
import torch
from gguf import GGUFReader, GGUFValueType

from assistant.models.gguf_info import FILE_TYPES
from distill_tools import DistillError, llama
from distill_tools.prompts import prompt_ids
from distill_tools.recipe import QUANTS

PROBES = [
    "What is the capital of Italy?",
    "Write a Python function that returns the square of a number.",
    "Explain recursion in one sentence.",
    "List three primary colors.",
]
LAYER_NAMES = {
    "input_layernorm": "attn_norm",
    "post_attention_layernorm": "ffn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}
FTYPES = {name: code for code, name in FILE_TYPES.items() if name in QUANTS}  # GGUF general.file_type of each
LLAMA_QUANTS = {"Q5_0": 32, "Q5_1": 32, "Q4_0": 32, "Q4_1": 32, "Q4_K_M": 256}  # by llama.cpp's quantiser: row block


class ExportError(DistillError):
    """The GGUF could not be written or failed verification."""


@dataclass
class Verification:
    top1_agreement: float
    mean_kl: float
    positions: int
    passed: bool

    def line(self) -> str:
        verdict = "passed" if self.passed else "FAILED"
        return (
            f"verification {verdict}: top-1 agreement {self.top1_agreement:.1%}, mean KL {self.mean_kl:.4f} "
            f"over {self.positions} positions"
        )


def permute(weights: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's q/k permutation (convert_hf_to_gguf.LlamaModel.permute)."""
    pairs = weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
    return pairs.swapaxes(1, 2).reshape(weights.shape)


def gguf_tensors(model: Any) -> dict[str, np.ndarray]:
    """The model's weights as float32 arrays under llama.cpp's tensor names."""
    config = model.config
    if config.model_type not in ("llama", "mistral"):
        raise ExportError(f"export supports llama-architecture models, not {config.model_type!r}")
    state = {k: v.detach().float().cpu().numpy() for k, v in model.state_dict().items()}
    out = {"token_embd.weight": state["model.embed_tokens.weight"], "output_norm.weight": state["model.norm.weight"]}
    if not getattr(config, "tie_word_embeddings", False):
        out["output.weight"] = state["lm_head.weight"]
    for i in range(config.num_hidden_layers):
        for hf, name in LAYER_NAMES.items():
            array = state[f"model.layers.{i}.{hf}.weight"]
            if hf == "self_attn.q_proj":
                array = permute(array, config.num_attention_heads)
            elif hf == "self_attn.k_proj":
                array = permute(array, config.num_key_value_heads)
            out[f"blk.{i}.{name}.weight"] = array
    return out


def row_lengths(hidden: int, intermediate: int, heads: int = 0, head_dim: int = 0) -> dict[str, int]:
    """The row length (input width) of each kind of weight matrix in a llama-architecture model."""
    return {"hidden size": hidden, "MLP width": intermediate, "attention width": heads * head_dim or hidden}


def quant_problem(quant: str, rows: dict[str, int]) -> str:
    """Why ``quant`` does not fit matrices with these row lengths ('' if it does)."""
    block = LLAMA_QUANTS.get(quant)
    bad = {what: n for what, n in rows.items() if block and n % block}
    if not bad:
        return ""
    fits = [q for q, b in LLAMA_QUANTS.items() if all(n % b == 0 for n in rows.values())] + ["Q8_0"]
    shapes = ", ".join(f"{what} {n}" for what, n in bad.items())
    return (
        f"export.quant = {quant} needs weight rows in multiples of {block} values, but this student has {shapes} "
        f"(llama.cpp would silently keep those tensors at higher precision): use {_either(fits)}"
    )


def _either(options: list[str]) -> str:
    return options[0] if len(options) == 1 else f"{', '.join(options[:-1])} or {options[-1]}"


def _rope_theta(config: Any) -> float:
    params = getattr(config, "rope_parameters", None) or {}
    return float(params.get("rope_theta", getattr(config, "rope_theta", 10000.0)))


def _tokenizer_fields(teacher_gguf: Path | None, tokenizer: Any) -> list[tuple[str, Any, Any, Any]]:
    """(key, value, type, sub_type) for every tokenizer.* field: copied from the teacher's GGUF if there is one."""
    if teacher_gguf is not None:
        reader = GGUFReader(teacher_gguf)
        fields = []
        for key, field in reader.fields.items():
            if key.startswith("tokenizer."):
                sub = field.types[1] if field.types[0] == GGUFValueType.ARRAY else None
                fields.append((key, field.contents(), field.types[0], sub))
        return fields
    return _hf_tokenizer_fields(tokenizer)


def _hf_tokenizer_fields(tokenizer: Any) -> list[tuple[str, Any, Any, Any]]:
    """A byte-level BPE tokenizer (GPT-2 style, as SmolLM/Llama 3/Qwen use) described for llama.cpp."""
    T = GGUFValueType
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    if spec.get("model", {}).get("type") != "BPE":
        raise ExportError("export of a non-GGUF teacher's tokenizer supports byte-level BPE tokenizers only")
    vocab = tokenizer.get_vocab()
    tokens = [""] * len(vocab)
    for token, index in vocab.items():
        tokens[index] = token
    special = set(tokenizer.all_special_ids) | {t["id"] for t in spec.get("added_tokens", []) if t.get("special")}
    types = [3 if i in special else 1 for i in range(len(tokens))]
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"].get("merges", [])]
    fields = [
        ("tokenizer.ggml.model", "gpt2", T.STRING, None),
        ("tokenizer.ggml.pre", "default", T.STRING, None),
        ("tokenizer.ggml.tokens", tokens, T.ARRAY, T.STRING),
        ("tokenizer.ggml.token_type", types, T.ARRAY, T.INT32),
        ("tokenizer.ggml.merges", merges, T.ARRAY, T.STRING),
        ("tokenizer.ggml.add_bos_token", False, T.BOOL, None),
    ]
    for what in ("bos", "eos", "pad", "unk"):
        if (token_id := getattr(tokenizer, f"{what}_token_id", None)) is not None:
            key = "unknown" if what == "unk" else ("padding" if what == "pad" else what)
            fields.append((f"tokenizer.ggml.{key}_token_id", int(token_id), T.UINT32, None))
    if tokenizer.chat_template:
        fields.append(("tokenizer.chat_template", tokenizer.chat_template, T.STRING, None))
    return fields


def unchanged_tensors(model: Any, base: Any, base_gguf: Path) -> dict[str, Any]:
    """The base GGUF's tensors (as ``GGUFReader`` tensors) that ``model`` holds unchanged from ``base``.

    ``base`` is the torch model loaded from ``base_gguf``; a tensor training left exactly as it was
    can be copied byte for byte, keeping the base's quantisation (size and speed) and adding no error."""
    ours, theirs = gguf_tensors(model), gguf_tensors(base)
    reader = GGUFReader(base_gguf)
    return {
        t.name: t
        for t in reader.tensors
        if t.name in ours and t.name in theirs and np.array_equal(ours[t.name], theirs[t.name])
    }


def write_gguf(
    model: Any,
    tokenizer: Any,
    path: Path,
    quant: str,
    name: str,
    teacher_gguf: Path | None,
    metadata: dict[str, str] | None = None,
    keep: dict[str, Any] | None = None,
) -> None:
    """Write ``model`` as a GGUF at ``path`` (F32, F16 or Q8_0) with extra string ``metadata``.

    ``keep``: tensors copied verbatim from another GGUF (see ``unchanged_tensors``) instead of encoded."""
    config = model.config
    tensors = gguf_tensors(model)
    keep = keep or {}
    writer = gguf.GGUFWriter(path, "llama")
    try:
        writer.add_name(name)
        writer.add_context_length(config.max_position_embeddings)
        writer.add_embedding_length(config.hidden_size)
        writer.add_block_count(config.num_hidden_layers)
        writer.add_feed_forward_length(config.intermediate_size)
        writer.add_head_count(config.num_attention_heads)
        writer.add_head_count_kv(config.num_key_value_heads)
        writer.add_rope_freq_base(_rope_theta(config))
        writer.add_layer_norm_rms_eps(config.rms_norm_eps)
        writer.add_rope_dimension_count(config.hidden_size // config.num_attention_heads)
        writer.add_vocab_size(config.vocab_size)
        writer.add_file_type(FTYPES[quant])
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        for key, value in (metadata or {}).items():
            writer.add_string(key, value)
        for key, value, vtype, sub in _tokenizer_fields(teacher_gguf, tokenizer):
            writer.add_key_value(key, value, vtype, sub)
        for tensor_name, array in tensors.items():
            if (kept := keep.get(tensor_name)) is not None:
                writer.add_tensor(tensor_name, kept.data, raw_shape=kept.data.shape, raw_dtype=kept.tensor_type)
            else:
                writer.add_tensor(tensor_name, *_encode(array, quant))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file(progress=False)
    finally:
        writer.close()


def _encode(array: np.ndarray, quant: str) -> tuple[np.ndarray, Any, Any]:
    """(data, raw_shape, raw_dtype) for add_tensor: 1-D tensors stay F32; matrices take the file's type."""
    if array.ndim < 2 or quant == "F32":
        return array.astype(np.float32), None, None
    if quant == "Q8_0" and array.shape[-1] % 32 == 0:
        qtype = gguf.GGMLQuantizationType.Q8_0
        return gguf.quants.quantize(array, qtype), None, qtype
    return array.astype(np.float16), None, None


def quantize_with_llama_cpp(source: Path, target: Path, quant: str) -> None:
    """llama.cpp's own quantiser, in process, with the product's threads and its log off the terminal."""
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = FTYPES[quant]
    params.nthread = llama.threads()
    with llama.quiet() as log:
        status = llama_cpp.llama_model_quantize(str(source).encode(), str(target).encode(), params)
    if status != 0:
        last = next((line for line in reversed(log) if line.strip()), "no details")
        raise ExportError(f"llama.cpp could not quantise {source.name} to {quant}: {last.strip()}")


def verify(model: Any, tokenizer: Any, path: Path, max_kl: float, min_top1: float) -> Verification:
    """Compare next-token distributions of the torch model and the GGUF in llama.cpp on probe prompts."""
    llm = llama.open_model(path, 512, n_batch=8, logits_all=True)
    agree, kls, positions = 0, [], 0
    try:
        for prompt in PROBES:
            ids = prompt_ids(tokenizer, prompt)
            with torch.no_grad():
                reference = torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), -1)
            llm.reset()
            llm.eval(ids)
            gguf_logits = torch.from_numpy(np.array(llm.scores[: len(ids)]))
            observed = torch.log_softmax(gguf_logits, -1)
            kls.append(float((reference.exp() * (reference - observed)).sum(-1).sum()))
            agree += int((reference.argmax(-1) == observed.argmax(-1)).sum())
            positions += len(ids)
    finally:
        llm.close()
    top1, kl = agree / positions, sum(kls) / positions
    return Verification(top1, kl, positions, top1 >= min_top1 and kl <= max_kl)


def model_rows(model: Any) -> dict[str, int]:
    config = model.config
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return row_lengths(config.hidden_size, config.intermediate_size, config.num_attention_heads, head_dim)


def export(
    model: Any,
    tokenizer: Any,
    target: Path,
    *,
    quant: str = "Q8_0",
    name: str = "student",
    teacher_gguf: Path | None = None,
    max_kl: float = 0.1,
    min_top1: float = 0.8,
    check: bool = True,
    metadata: dict[str, str] | None = None,
    say: Any = None,
    keep: dict[str, Any] | None = None,
) -> Verification | None:
    """Write ``model`` to ``target`` (atomically) as a verified GGUF; raise ExportError on failure.

    ``keep`` (F32/F16/Q8_0 only): tensors copied verbatim from the teacher's GGUF (``unchanged_tensors``)."""
    if quant not in FTYPES:
        raise ExportError(f"unknown quantisation {quant!r} (known: {', '.join(FTYPES)})")
    if problem := quant_problem(quant, model_rows(model)):
        raise ExportError(problem)
    target.parent.mkdir(parents=True, exist_ok=True)
    model = model.float().cpu().eval()
    temps = [_temp(target) for _ in range(2)]
    try:
        if say:
            say(f"export: writing {target.name} ({quant})")
        if quant in LLAMA_QUANTS:
            write_gguf(model, tokenizer, temps[1], "F16", name, teacher_gguf, metadata)
            quantize_with_llama_cpp(temps[1], temps[0], quant)
            temps[1].unlink()
        else:
            write_gguf(model, tokenizer, temps[0], quant, name, teacher_gguf, metadata, keep)
        if say and check:
            say(f"export: checking {target.name} in llama.cpp against the torch model")
        result = verify(model, tokenizer, temps[0], max_kl, min_top1) if check else None
        if result is not None and not result.passed:
            raise ExportError(f"{target.name}: {result.line()} (limits: top-1 ≥ {min_top1:.0%}, KL ≤ {max_kl})")
        os.replace(temps[0], target)
        return result
    except OSError as exc:
        reason = exc.strerror or f"disk full or file size limit reached ({exc})"
        raise ExportError(f"cannot write {target}: {reason}") from None
    finally:
        for temp in temps:
            temp.unlink(missing_ok=True)


def _temp(target: Path) -> Path:
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    os.close(fd)
    return Path(name)


def clean_leftovers(target: Path) -> list[Path]:
    """Remove the temporary files a killed export of ``target`` left behind; returns them."""
    removed = []
    for leftover in target.parent.glob(f".{target.name}.*.partial"):
        leftover.unlink(missing_ok=True)
        removed.append(leftover)
    return removed


def verification_dict(result: Verification | None) -> dict[str, Any] | None:
    return asdict(result) if result else None
