"""Broken GGUF files: each a clear error, never a crash or a hang; the running model keeps serving.

The corpus is generated from the real SmolLM2 file (its header, with the tensor data as a sparse
hole of the right size) and from a small GGUF written with gguf-py. FUZZ_EXAMPLES sets the
number of hypothesis examples (default 300).
"""

from __future__ import annotations

import os
import random
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability_helpers import header_size, metadata_layout, sparse_copy, with_strings

from assistant import AssistantError
from assistant.models.gguf_info import ModelFileError, ModelInfo, read_info

FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))
LOAD_EACH = """
import sys
from assistant import AssistantError
from assistant.models.engine import Engine
for path in sys.argv[1:]:
    try:
        engine = Engine(path, n_ctx=256)
        engine.complete([{"role": "user", "content": "hi"}], max_tokens=2, temperature=0.0)
        engine.close()
        print("loaded", path.rsplit("/", 1)[-1])
    except AssistantError as exc:
        print("refused", path.rsplit("/", 1)[-1], str(exc)[:120])
"""
FIGURES = {"files": 0, "errors": 0, "accepted": 0, "crashes": 0, "fuzz_iterations": 0}


def check(path: Path) -> ModelInfo | None:
    """read_info gives a ModelInfo or one clear ModelFileError line, quickly; anything else fails the test."""
    FIGURES["files"] += 1
    started = time.monotonic()
    try:
        info = read_info(path)
        FIGURES["accepted"] += 1
        return info
    except ModelFileError as exc:
        FIGURES["errors"] += 1
        assert "\n" not in str(exc) and str(path) in str(exc)
        return None
    except Exception:
        FIGURES["crashes"] += 1
        raise
    finally:
        assert time.monotonic() - started < 10, f"{path} took too long"


@pytest.fixture(scope="module")
def header(smollm_path: Path) -> bytes:
    with smollm_path.open("rb") as handle:
        return handle.read(header_size(smollm_path))


def corpus(smollm_path: Path, head: bytes, folder: Path) -> dict[str, Path]:
    """Named broken files: truncations, bad magic/version, absurd counts and sizes, bit flips."""
    size = smollm_path.stat().st_size
    files: dict[str, Path] = {}

    def add(name: str, data: bytes, total: int | None = None) -> None:
        files[name] = sparse_copy(smollm_path, folder / f"{name}.gguf", data, total)

    add("empty", b"", 0)
    add("three_bytes", b"GGU", 3)
    add("wrong_magic", b"GGML" + head[4:])
    add("text_file", b"hello, I am not a model\n" * 10, 240)
    add("version_99", head[:4] + struct.pack("<I", 99) + head[8:])
    add("absurd_tensor_count", head[:8] + struct.pack("<Q", 2**62) + head[16:])
    add("absurd_kv_count", head[:16] + struct.pack("<Q", 2**62) + head[24:])
    meta_end, entries = metadata_layout(head)
    first_key = entries[0][1]
    add("absurd_key_length", head[:first_key] + struct.pack("<Q", 2**63) + head[first_key + 8 :])
    for key, _, vtype, value_at in entries:
        if key == "tokenizer.ggml.tokens":  # array header: item type (4 bytes), then the count
            add("absurd_token_count", head[: value_at + 4] + struct.pack("<Q", 2**60) + head[value_at + 12 :])
            add("bad_array_type", head[:value_at] + struct.pack("<I", 77) + head[value_at + 4 :])
        if key == "general.architecture":
            add("bad_value_type", head[: value_at - 4] + struct.pack("<I", 200) + head[value_at:])
    # the first tensor: name, n_dims, dims, type, offset
    (name_length,) = struct.unpack_from("<Q", head, meta_end)
    dims_at = meta_end + 8 + name_length
    add("absurd_dims", head[:dims_at] + struct.pack("<I", 1000) + head[dims_at + 4 :])
    add("absurd_shape", head[: dims_at + 4] + struct.pack("<Q", 2**60) + head[dims_at + 12 :])
    (n_dims,) = struct.unpack_from("<I", head, dims_at)
    type_at = dims_at + 4 + 8 * n_dims
    add("unknown_tensor_type", head[:type_at] + struct.pack("<I", 999) + head[type_at + 4 :])
    add("offset_past_end", head[: type_at + 4] + struct.pack("<Q", 2**50) + head[type_at + 12 :])
    add("misaligned_offset", head[: type_at + 4] + struct.pack("<Q", 3) + head[type_at + 12 :])
    for fraction in (0.01, 0.1, 0.3, 0.5, 0.7, 0.9, 0.999):
        cut = int(len(head) * fraction)
        add(f"truncated_header_{fraction}", head[:cut], cut)
    add("truncated_data_half", head, size // 2)
    add("truncated_data_last_byte", head, size - 1)
    rng = random.Random(9)
    for index in range(60):
        flipped = bytearray(head)
        position = rng.randrange(0, min(len(head), 4096)) if index < 30 else rng.randrange(0, len(head))
        flipped[position] ^= 1 << rng.randrange(8)
        add(f"bitflip_{index}_at_{position}", bytes(flipped))
    return files


EXPECTED_ERRORS = {
    "empty": "empty",
    "three_bytes": "too small",
    "wrong_magic": "not a GGUF",
    "text_file": "not a GGUF",
    "version_99": "version 99",
    "absurd_tensor_count": "corrupt",
    "absurd_kv_count": "corrupt",
    "absurd_key_length": "corrupt",
    "absurd_token_count": "corrupt",
    "offset_past_end": "corrupt header",
    "truncated_data_half": "truncated",
    "truncated_data_last_byte": "truncated",
}


def test_broken_model_corpus(smollm_path: Path, header: bytes, engine) -> None:  # noqa: ANN001
    with tempfile.TemporaryDirectory(prefix="broken-gguf-") as folder:  # outside pytest's rotating basetemp
        _check_corpus(corpus(smollm_path, header, Path(folder)), engine)


def _check_corpus(files: dict[str, Path], engine) -> None:  # noqa: ANN001
    accepted = []
    for name, path in files.items():
        info = check(path)
        if name in EXPECTED_ERRORS:
            with pytest.raises(ModelFileError, match=f"(?i){EXPECTED_ERRORS[name]}"):
                read_info(path)
        elif not name.startswith("bitflip"):
            assert info is None, f"{name} was accepted"
        elif info is not None:
            accepted.append(path)  # a flip inside a token's text, say: still a well-formed file
        if path.stat().st_size < 1 << 20:
            path.unlink()
    # the running model keeps serving while broken files are offered to it
    before = engine.complete([{"role": "user", "content": "Say hi"}], max_tokens=4, temperature=0.0)
    for name in ("wrong_magic", "absurd_token_count", "offset_past_end", "truncated_data_half"):
        with pytest.raises(AssistantError):
            engine.swap(files[name])
    assert engine.complete([{"role": "user", "content": "Say hi"}], max_tokens=4, temperature=0.0) == before
    # files the validator lets through go to llama.cpp: in a child process, so a crash would show
    loaded = subprocess.run(
        [sys.executable, "-c", LOAD_EACH, *map(str, accepted[:4])], capture_output=True, text=True, timeout=300
    )
    FIGURES["crashes"] += loaded.returncode != 0
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert loaded.stdout.count("\n") == len(accepted[:4])
    print(f"\nbroken-file figures: {FIGURES}, accepted bit flips: {len(accepted)}, llama.cpp loads:")
    print(loaded.stdout)
    assert FIGURES["crashes"] == 0 and FIGURES["files"] >= 80


def test_huge_metadata_strings(smollm_path: Path, tmp_path: Path) -> None:
    """A 70 MB metadata string is refused by the parser; a 1 MB chat template by the loader."""
    huge = with_strings(smollm_path, tmp_path / "huge.gguf", {"general.description": "x" * (70 << 20)})
    with pytest.raises(ModelFileError, match="absurd string length"):
        read_info(huge)
    huge.unlink()
    big_template = with_strings(smollm_path, tmp_path / "tpl.gguf", {"tokenizer.chat_template": "{# x #}" * 150_000})
    assert read_info(big_template).chat_template
    from assistant.models.engine import Engine

    with pytest.raises(AssistantError, match="chat template is .* characters long"):
        Engine(big_template, n_ctx=256)


def small_gguf(path: Path) -> Path:
    """A tiny but complete GGUF (llama arch, 8-token vocab, one tensor) written with gguf-py."""
    import gguf

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(1)
    writer.add_context_length(64)
    writer.add_embedding_length(16)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list([f"t{i}" for i in range(8)])
    writer.add_bos_token_id(0)
    writer.add_eos_token_id(1)
    writer.add_chat_template("{% for m in messages %}{{ m.content }}{% endfor %}")
    writer.add_tensor("token_embd.weight", np.ones((8, 16), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = small_gguf(tmp_path_factory.mktemp("small") / "small.gguf")
    assert read_info(path).vocab_size == 8
    return path.read_bytes()


mutation = st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=8)


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(
    edits=mutation,
    cut=st.one_of(st.none(), st.integers(0, 10**6)),
    word=st.sampled_from([0, 1, 2**31, 2**63 - 1, 2**64 - 1]),
)
def test_fuzz_gguf_validation(small: bytes, tmp_path_factory: pytest.TempPathFactory, edits, cut, word) -> None:  # noqa: ANN001
    """Random byte edits, truncations and planted absurd 64-bit words in a valid small GGUF."""
    data = bytearray(small)
    for position, value in edits:
        data[position % len(data)] = value
    if word:
        at = edits[0][0] % max(1, len(data) - 8)
        data[at : at + 8] = struct.pack("<Q", word)
    if cut is not None:
        data = data[: cut % (len(data) + 1)]
    path = tmp_path_factory.getbasetemp() / "fuzz.gguf"
    path.write_bytes(bytes(data))
    FIGURES["fuzz_iterations"] += 1
    check(path)


def test_fuzz_ran(small: bytes) -> None:
    print(f"\nfuzz iterations: {FIGURES['fuzz_iterations']}")
    assert FIGURES["fuzz_iterations"] >= min(FUZZ_EXAMPLES, 50)
