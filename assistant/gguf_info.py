"""Read and validate a GGUF file's header before anything hands it to llama.cpp.

Catches empty, non-GGUF, truncated and corrupt files with one clear line, and estimates
the memory a model needs so it can be labelled against this machine's free memory.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from assistant import AssistantError

GGUF_MAGIC = b"GGUF"
MAX_TENSORS = 1_000_000
MAX_KV = 100_000


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

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["has_chat_template"] = bool(self.chat_template)
        data.pop("chat_template")
        return data


def _quick_header_check(path: Path, size: int) -> None:
    if size == 0:
        raise ModelFileError(f"{path}: empty file, not a GGUF model")
    if size < 24:
        raise ModelFileError(f"{path}: {size} bytes is too small to be a GGUF model (truncated?)")
    with path.open("rb") as handle:
        head = handle.read(24)
    if head[:4] != GGUF_MAGIC:
        raise ModelFileError(f"{path}: not a GGUF file (magic {head[:4]!r}, expected b'GGUF')")
    version, n_tensors, n_kv = struct.unpack("<IQQ", head[4:24])
    if version not in (2, 3):
        raise ModelFileError(f"{path}: unsupported GGUF version {version} (supported: 2, 3)")
    if n_tensors > MAX_TENSORS or n_kv > MAX_KV:
        raise ModelFileError(f"{path}: corrupt header ({n_tensors} tensors, {n_kv} metadata keys claimed)")


def _field(reader: Any, key: str, default: Any = None) -> Any:
    field = reader.fields.get(key)
    if field is None or not field.types:
        return default
    try:
        value = field.contents()
    except Exception:
        return default
    return value


def _token(reader: Any, tokens: list[str] | None, key: str) -> str:
    token_id = _field(reader, key)
    if tokens is None or token_id is None or not 0 <= int(token_id) < len(tokens):
        return ""
    return tokens[int(token_id)]


def _quantization(reader: Any) -> str:
    from collections import Counter

    counts: Counter[str] = Counter()
    for tensor in reader.tensors:
        if len(tensor.shape) >= 2:
            counts[tensor.tensor_type.name] += int(tensor.n_elements)
    file_type = _field(reader, "general.file_type")
    if file_type is not None:
        try:
            from gguf import LlamaFileType

            return LlamaFileType(int(file_type)).name.removeprefix("MOSTLY_")
        except ValueError:
            pass
    return counts.most_common(1)[0][0] if counts else "unknown"


def read_info(path: Path | str) -> ModelInfo:
    """Validate a GGUF file and describe it; raise ModelFileError with one clear line."""
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"{path}: no such file")
    if not path.is_file():
        raise ModelFileError(f"{path}: not a file")
    size = path.stat().st_size
    _quick_header_check(path, size)
    try:
        from gguf import GGUFReader

        reader = GGUFReader(path, "r")
    except Exception as exc:  # the reader raises many kinds on corrupt input
        raise ModelFileError(f"{path}: corrupt or truncated GGUF ({type(exc).__name__}: {exc})") from None
    return _describe(path, size, reader)


def _describe(path: Path, size: int, reader: Any) -> ModelInfo:
    if not reader.tensors:
        raise ModelFileError(f"{path}: GGUF file holds no tensors")
    end = max(int(t.data_offset) + int(t.n_bytes) for t in reader.tensors)
    if end > size:
        raise ModelFileError(f"{path}: truncated: tensor data needs {end} bytes, file has {size}")
    arch = str(_field(reader, "general.architecture", "") or "")
    if not arch:
        raise ModelFileError(f"{path}: GGUF file names no architecture (general.architecture)")
    tokens = _field(reader, "tokenizer.ggml.tokens")
    if not tokens:
        raise ModelFileError(f"{path}: GGUF file has no tokenizer vocabulary")
    warnings: list[str] = []
    template = str(_field(reader, "tokenizer.chat_template", "") or "")
    if not template:
        warnings.append(f"no chat template in the file; using the built-in one for '{arch}'")
    embed = next((t for t in reader.tensors if t.name == "token_embd.weight"), None)
    if embed is not None and len(tokens) not in [int(d) for d in embed.shape]:
        raise ModelFileError(
            f"{path}: vocabulary has {len(tokens)} tokens but the embedding has shape {list(embed.shape)}"
        )
    return ModelInfo(
        path=str(path),
        size=size,
        architecture=arch,
        name=str(_field(reader, "general.name", "") or path.stem),
        parameters=sum(int(t.n_elements) for t in reader.tensors),
        quantization=_quantization(reader),
        context_length=int(_field(reader, f"{arch}.context_length", 0) or 0),
        vocab_size=len(tokens),
        n_layers=int(_field(reader, f"{arch}.block_count", 0) or 0),
        embedding_length=int(_field(reader, f"{arch}.embedding_length", 0) or 0),
        chat_template=template,
        bos_token=_token(reader, tokens, "tokenizer.ggml.bos_token_id"),
        eos_token=_token(reader, tokens, "tokenizer.ggml.eos_token_id"),
        warnings=warnings,
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
    import psutil

    return int(psutil.virtual_memory().available)


def sha256_file(path: Path | str, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()
