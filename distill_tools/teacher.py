"""Load a teacher: a GGUF file (dequantised by transformers), an HF folder, or a hub id when allowed.

A GGUF teacher is converted once and cached as an HF folder (safetensors) in the data dir, so
later runs load it in seconds.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distill_tools import DistillError


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
    from assistant.config import database_path
    from assistant.registry import Registry, RegistryError, is_packaged
    from assistant.store import Store

    if is_packaged(spec) or "/" not in spec and not candidate.suffix:
        try:
            return "gguf", Registry(Store(database_path())).resolve(spec)
        except RegistryError as exc:
            raise DistillError(f"teacher/student {spec!r}: {exc}") from None
    if candidate.suffix == ".gguf" or spec.startswith((".", "/", "~")):
        raise DistillError(f"{candidate}: no such model file or folder")
    if not allow_download:
        raise DistillError(
            f"{spec!r} is not a local file, folder or registered model; set allow_download = true to fetch it from the hub"
        )
    return "hub", None


def _cache_folder(path: Path) -> Path:
    from assistant.config import data_dir

    stat = path.stat()
    root = Path(os.environ.get("ASSISTANT_DISTILL_CACHE") or data_dir() / "distill" / "hf-cache")
    return root / f"{path.stem}-{stat.st_size}-{int(stat.st_mtime)}"


def load(spec: str, allow_download: bool = False, dtype: str = "float32") -> Loaded:
    """Load a causal LM and its tokenizer in evaluation mode."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

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
    import shutil
    import tempfile

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        model.hf_quantizer = None  # the weights are plain dequantised tensors now
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        if hasattr(model.config, "_name_or_path"):
            model.config._name_or_path = str(path)
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
