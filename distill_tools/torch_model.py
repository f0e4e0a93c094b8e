"""Load a teacher: a GGUF file (dequantised by transformers), an HF folder, or a hub id when allowed.

A GGUF teacher is converted once and cached as an HF folder (safetensors) in the data dir, so
later runs load it in seconds.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from assistant.config import data_dir
from assistant.models import registry
from assistant.models.gguf_header import HeaderError, parse
from distill_tools import DistillError
from distill_tools.progress import third_party_bars_hidden


@dataclass
class Loaded:
    """A causal LM with its tokenizer, and where it came from."""

    model: Any
    tokenizer: Any
    source: str
    gguf_path: Path | None = None  # the GGUF it was read from, if any (its tokenizer metadata is reused on export)


def resolve(spec: str, allow_download: bool = False) -> tuple[str, Path | None]:
    """('gguf', path) | ('folder', path) | ('hub', None) for a model name, file, folder or hub id."""
    if not spec:
        raise DistillError("no model given")
    candidate = Path(spec).expanduser()
    if candidate.is_file():
        if candidate.suffix != ".gguf":
            raise DistillError(f"{candidate}: not a GGUF file or an HF model folder")
        return "gguf", candidate
    if candidate.is_dir():
        if not (candidate / "config.json").exists():
            raise DistillError(f"{candidate}: not an HF model folder (no config.json)")
        return "folder", candidate
    if registry.is_packaged(spec) or "/" not in spec and not candidate.suffix:
        try:
            with registry.opened() as models:
                return "gguf", models.resolve(spec)
        except registry.RegistryError as exc:
            raise DistillError(f"teacher/student {spec!r}: {exc}") from None
    if candidate.suffix == ".gguf" or spec.startswith((".", "/", "~")):
        raise DistillError(f"{candidate}: no such model file or folder")
    if not allow_download:
        raise DistillError(
            f"{spec!r} is not a local file, folder or registered model; "
            "set allow_download = true to fetch it from the hub"
        )
    return "hub", None


@dataclass
class Shape:
    """What the checks made before any loading need to know of a model."""

    layers: int
    hidden: int
    intermediate: int
    heads: int
    head_dim: int


def shape(spec: str, allow_download: bool = False) -> Shape | None:
    """A model's shape from its GGUF header or config.json, without loading it; None for a hub id."""
    kind, path = resolve(spec, allow_download)
    if path is None:
        return None
    if kind == "gguf":
        try:
            meta = parse(path).metadata
        except (HeaderError, OSError) as exc:
            raise DistillError(f"{path}: cannot read the model's header: {exc}") from None
        arch = meta.get("general.architecture", "")
        get = lambda key: int(meta.get(f"{arch}.{key}", 0) or 0)  # noqa: E731
        hidden, heads = get("embedding_length"), get("attention.head_count")
        head_dim = get("attention.key_length") or (hidden // heads if heads else 0)
        return Shape(get("block_count"), hidden, get("feed_forward_length"), heads, head_dim)
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise DistillError(f"{path / 'config.json'}: cannot read: {exc}") from None
    hidden, heads = int(config.get("hidden_size", 0)), int(config.get("num_attention_heads", 0))
    return Shape(
        int(config.get("num_hidden_layers", 0)),
        hidden,
        int(config.get("intermediate_size", 0)),
        heads,
        int(config.get("head_dim") or (hidden // heads if heads else 0)),
    )


def _cache_folder(path: Path) -> Path:
    stat = path.stat()
    root = Path(os.environ.get("ASSISTANT_DISTILL_CACHE") or data_dir() / "distill" / "hf-cache")
    return root / f"{path.stem}-{stat.st_size}-{int(stat.st_mtime)}"


def load(spec: str, allow_download: bool = False, dtype: str = "float32") -> Loaded:
    """Load a causal LM and its tokenizer in evaluation mode."""
    kind, path = resolve(spec, allow_download)
    torch_dtype = getattr(torch, dtype)
    try:
        if kind == "gguf":
            assert path is not None
            folder = _cache_folder(path)
            if not (folder / "config.json").exists():
                _convert_gguf(path, folder)
            model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch_dtype)
            tokenizer = AutoTokenizer.from_pretrained(folder)
        else:
            where = str(path) if path else spec
            offline = {"local_files_only": kind != "hub"}
            model = AutoModelForCausalLM.from_pretrained(where, dtype=torch_dtype, **offline)
            tokenizer = AutoTokenizer.from_pretrained(where, **offline)
    except DistillError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise DistillError(f"cannot load model {spec!r}: {str(exc).splitlines()[0]}") from None
    model.eval()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return Loaded(model, tokenizer, spec, path if kind == "gguf" else None)


def _convert_gguf(path: Path, folder: Path) -> None:
    """Dequantise a GGUF through transformers and save it as an HF folder (atomically: temp dir + rename)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        with third_party_bars_hidden():
            model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
            tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        model.hf_quantizer = None  # type: ignore[assignment]  # plain dequantised tensors now (torch's stub says Module)
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        if hasattr(model.config, "_name_or_path"):
            model.config._name_or_path = str(path)
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        try:
            os.replace(tmp, folder)
        except OSError:  # another process (a torchrun rank) converted it first: use theirs
            if not (folder / "config.json").exists():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
