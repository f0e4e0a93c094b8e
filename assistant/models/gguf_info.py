"""Read and validate a GGUF file's header before anything hands it to llama.cpp.

Catches empty, non-GGUF, truncated and corrupt files with one clear line, and estimates
the memory a model needs so it can be labelled against this machine's free memory.
"""

from __future__ import annotations

import hashlib
import mmap
import re
import struct
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

from assistant import AssistantError
from assistant.models.gguf_header import GGML_TYPE_NAMES, MAX_KV, MAX_TENSORS, Header, HeaderError, NotGGUFError, parse

MAX_TENSOR_GAP = 1 << 20

# llama.cpp's general.file_type values (enum llama_ftype), copied from gguf-py's LlamaFileType so
# importing it stays off the chat path; tests/test_models_cli.py checks it against the gguf package.
FILE_TYPES = {
    0: "F32",
    1: "F16",
    2: "Q4_0",
    3: "Q4_1",
    7: "Q8_0",
    8: "Q5_0",
    9: "Q5_1",
    10: "Q2_K",
    11: "Q3_K_S",
    12: "Q3_K_M",
    13: "Q3_K_L",
    14: "Q4_K_S",
    15: "Q4_K_M",
    16: "Q5_K_S",
    17: "Q5_K_M",
    18: "Q6_K",
    19: "IQ2_XXS",
    20: "IQ2_XS",
    21: "Q2_K_S",
    22: "IQ3_XS",
    23: "IQ3_XXS",
    24: "IQ1_S",
    25: "IQ4_NL",
    26: "IQ3_S",
    27: "IQ3_M",
    28: "IQ2_S",
    29: "IQ2_M",
    30: "IQ4_XS",
    31: "IQ1_M",
    32: "BF16",
    36: "TQ1_0",
    37: "TQ2_0",
    38: "MXFP4_MOE",
    39: "NVFP4",
    40: "Q1_0",
}


class ModelFileError(AssistantError):
    """The file is not a usable GGUF model."""


@dataclass
class ModelInfo:
    path: str
    size: int
    architecture: str
    name: str
    parameters: int
    quantization: str
    context_length: int
    vocab_size: int
    n_layers: int
    embedding_length: int
    chat_template: str
    bos_token: str
    eos_token: str
    warnings: list[str]
    base_model: bool = False  # pretrained for completion, not tuned for chat (see is_base_model)
    teacher: str = ""  # a distilled student: the teacher it learnt from (GGUF key distill.teacher)
    recipe: str = ""  # …and the recipe that made it (distill.recipe)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["has_chat_template"] = bool(self.chat_template)
        data.pop("chat_template")
        return data


INSTRUCT_MARKERS = re.compile(r"(?<![a-z])(instruct|it|chat|sft|dpo|rlhf|assistant)(?![a-z])")


def is_base_model(metadata: dict[str, Any], chat_template: str, file_name: str) -> bool:
    """A base (completion) model: no chat template in the file and no instruct/chat marker in its names.

    Such a model continues text: asked a question it tends to echo it or ramble (Gemma 3 270M, not "-it").
    """
    if chat_template:
        return False
    names = [metadata.get(key) for key in ("general.name", "general.finetune", "general.basename", "general.tags")]
    words = " ".join(str(n) for n in [*names, file_name] if n).lower()
    return not INSTRUCT_MARKERS.search(words)


def base_model_note(name: str) -> str:
    """What to tell someone about to chat with a base model."""
    return (
        f"{name} is a base (completion) model, not tuned for chat: it continues your text and may echo or "
        "repeat it; pick a chat (instruct) model for answers"
    )


def _quantization(header: Header) -> str:
    """The file type if declared, else the most common type among the weight matrices."""
    file_type = header.metadata.get("general.file_type")
    if isinstance(file_type, int) and file_type in FILE_TYPES:
        return FILE_TYPES[file_type]
    counts: Counter[str] = Counter()
    for tensor in header.tensors:
        if len(tensor.shape) >= 2:
            counts[GGML_TYPE_NAMES.get(tensor.type, str(tensor.type))] += tensor.n_elements
    return counts.most_common(1)[0][0] if counts else "unknown"


def read_info(path: Path | str, size: int | None = None) -> ModelInfo:
    """Validate a GGUF file and describe it; raise ModelFileError with one clear line.

    ``size``: the whole model's size when ``path`` is only its first part (a packaged model in chunks).
    """
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"{path}: no such file")
    if not path.is_file():
        raise ModelFileError(f"{path}: not a file")
    size = size or path.stat().st_size
    try:
        header = parse(path, MAX_TENSORS, MAX_KV)
    except NotGGUFError as exc:  # empty, too small, wrong magic or version: the message says it all
        raise ModelFileError(f"{path}: {exc}") from None
    except (HeaderError, ValueError) as exc:
        raise ModelFileError(f"{path}: corrupt or truncated GGUF ({exc})") from None
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return _describe(path, size, header)


def _check_tensor_layout(path: Path, size: int, header: Header) -> None:
    """Every tensor's data is aligned, overlaps no other and lies inside the file."""
    alignment = header.metadata.get("general.alignment", 32)
    previous_end, previous_name, widest_gap = header.data_start, "the header", 0
    for tensor in sorted(header.tensors, key=lambda t: t.offset):
        if (tensor.offset - header.data_start) % alignment:
            raise ModelFileError(f"{path}: corrupt header: tensor {tensor.name!r} is not {alignment}-byte aligned")
        if tensor.offset < previous_end:
            raise ModelFileError(f"{path}: corrupt header: {previous_name} overlaps tensor {tensor.name!r}")
        widest_gap = max(widest_gap, tensor.offset - previous_end)
        previous_end, previous_name = tensor.offset + tensor.n_bytes, f"tensor {tensor.name!r}"
    if previous_end > size:
        if widest_gap > MAX_TENSOR_GAP:  # tensors are packed back to back: a far-away offset is corruption
            raise ModelFileError(
                f"{path}: corrupt header: tensor data claimed up to byte {previous_end:,}, the file has {size:,}"
            )
        raise ModelFileError(
            f"{path}: truncated: the tensors need {previous_end:,} bytes, the file has {size:,} (incomplete copy?)"
        )


def _check_vocab(path: Path, header: Header, arch: str, vocab_size: int) -> None:
    """The vocabulary, the declared vocab size and the embedding/output matrices agree."""
    embedding_rows: set[int] = set()
    for tensor in header.tensors:
        if tensor.name in ("token_embd.weight", "output.weight"):
            if vocab_size not in tensor.shape:
                raise ModelFileError(
                    f"{path}: vocabulary has {vocab_size} tokens but {tensor.name} has shape {tensor.shape}"
                )
            embedding_rows.update(tensor.shape)
    declared = header.metadata.get(f"{arch}.vocab_size")
    if isinstance(declared, int) and declared != vocab_size and declared not in embedding_rows:
        raise ModelFileError(f"{path}: vocabulary has {vocab_size} tokens but {arch}.vocab_size says {declared}")


def _check_unique_tokens(path: Path, header: Header, vocab_size: int) -> None:
    """No two vocabulary entries with the same text: llama.cpp aborts the whole process on that.

    (GGML_ASSERT id_to_token.size() == token_to_id.size() in llama-vocab.cpp; one flipped bit
    in a token's text is enough.) About 20 ms per 50k tokens.
    """
    unpack = struct.Struct("<Q").unpack_from
    seen: set[bytes] = set()
    add = seen.add
    with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as buffer:
        pos = header._token_array_at
        for _ in range(vocab_size):
            (length,) = unpack(buffer, pos)
            pos += 8
            add(buffer[pos : pos + length])
            pos += length
    if len(seen) != vocab_size:
        raise ModelFileError(
            f"{path}: corrupt vocabulary: {vocab_size - len(seen)} duplicate token(s) among {vocab_size}"
        )


def _describe(path: Path, size: int, header: Header) -> ModelInfo:
    meta = header.metadata
    if not header.tensors:
        raise ModelFileError(f"{path}: GGUF file holds no tensors")
    arch = meta.get("general.architecture")
    if not isinstance(arch, str) or not arch:
        raise ModelFileError(f"{path}: GGUF file names no architecture (general.architecture)")
    vocab_size = header.array_lengths.get("tokenizer.ggml.tokens", 0)
    if not vocab_size:
        raise ModelFileError(f"{path}: GGUF file has no tokenizer vocabulary")
    warnings: list[str] = []
    template = meta.get("tokenizer.chat_template") or ""
    if not isinstance(template, str):
        template = ""
    base = is_base_model(meta, template, path.name)
    if base:
        warnings.append("no chat template and no instruct marker in the file: a base (completion) model, not for chat")
    elif not template:
        warnings.append(f"no chat template in the file; using the built-in one for '{arch}'")
    _check_vocab(path, header, arch, vocab_size)
    _check_unique_tokens(path, header, vocab_size)
    _check_tensor_layout(path, size, header)

    def number(key: str) -> int:
        value = meta.get(key, 0)
        return int(value) if isinstance(value, (int, float)) else 0

    def text(key: str) -> str:
        value = meta.get(key, "")
        return value if isinstance(value, str) else ""

    name = meta.get("general.name")
    return ModelInfo(
        path=str(path),
        size=size,
        architecture=arch,
        name=name if isinstance(name, str) and name else path.stem,
        parameters=sum(t.n_elements for t in header.tensors),
        quantization=_quantization(header),
        context_length=number(f"{arch}.context_length"),
        vocab_size=vocab_size,
        n_layers=number(f"{arch}.block_count"),
        embedding_length=number(f"{arch}.embedding_length"),
        chat_template=template,
        bos_token=header.special_tokens.get("bos", ""),
        eos_token=header.special_tokens.get("eos", ""),
        warnings=warnings,
        base_model=base,
        teacher=text("distill.teacher"),
        recipe=text("distill.recipe"),
    )


def estimate_memory(info: ModelInfo, n_ctx: int) -> int:
    """Bytes needed to run: weights (mmapped) + f16 KV cache + compute buffers (rough)."""
    kv = 2 * info.n_layers * n_ctx * max(info.embedding_length, 1) * 2
    return int(info.size + kv + 64 * 1024 * 1024 + info.vocab_size * 4 * 512)


def fit_label(required: int, available: int) -> str:
    """fits / may be slow / won't fit, against this machine's available memory."""
    if required <= 0.7 * available:
        return "fits"
    if required <= available:
        return "may be slow"
    return "won't fit"


def available_memory() -> int:
    return int(psutil.virtual_memory().available)


def sha256_file(path: Path | str, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()
