"""A fast, bounded parser of a GGUF file's header: metadata and tensor table.

gguf-py's GGUFReader materialises every metadata array (a 49k-token vocabulary becomes
Python objects) and takes seconds; this reads only what validation needs, skips big arrays
without decoding them, and checks every length against the file size, so corrupt input
fails fast with a clear message instead of allocating or hanging.
"""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# GGUF value types -> struct format of scalars
SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
STRING, ARRAY = 8, 9
MAX_STRING = 64 * 1024 * 1024
TOKENS = "tokenizer.ggml.tokens"
MAGIC = b"GGUF"
FIXED_HEADER = 24  # magic, version, tensor count, metadata count
MAX_TENSORS = 1_000_000
MAX_KV = 100_000
SPECIAL_TOKEN_IDS = ("tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id")

# ggml tensor types -> (elements per block, bytes per block), from ggml's type traits. Copied
# from gguf-py (GGMLQuantizationType, GGML_QUANT_SIZES) so importing it stays off the chat path;
# tests/test_models_cli.py checks both tables against the installed gguf package.
GGML_TYPES: dict[int, tuple[int, int]] = {
    0: (1, 4),
    1: (1, 2),
    2: (32, 18),
    3: (32, 20),
    6: (32, 22),
    7: (32, 24),
    8: (32, 34),
    9: (32, 40),
    10: (256, 84),
    11: (256, 110),
    12: (256, 144),
    13: (256, 176),
    14: (256, 210),
    15: (256, 292),
    16: (256, 66),
    17: (256, 74),
    18: (256, 98),
    19: (256, 50),
    20: (32, 18),
    21: (256, 110),
    22: (256, 82),
    23: (256, 136),
    24: (1, 1),
    25: (1, 2),
    26: (1, 4),
    27: (1, 8),
    28: (1, 8),
    29: (256, 56),
    30: (1, 2),
    34: (256, 54),
    35: (256, 66),
    39: (32, 17),
    40: (64, 36),
    41: (128, 18),
}
GGML_TYPE_NAMES = {
    0: "F32",
    1: "F16",
    2: "Q4_0",
    3: "Q4_1",
    6: "Q5_0",
    7: "Q5_1",
    8: "Q8_0",
    9: "Q8_1",
    10: "Q2_K",
    11: "Q3_K",
    12: "Q4_K",
    13: "Q5_K",
    14: "Q6_K",
    15: "Q8_K",
    16: "IQ2_XXS",
    17: "IQ2_XS",
    18: "IQ3_XXS",
    19: "IQ1_S",
    20: "IQ4_NL",
    21: "IQ3_S",
    22: "IQ2_S",
    23: "IQ4_XS",
    24: "I8",
    25: "I16",
    26: "I32",
    27: "I64",
    28: "F64",
    29: "IQ1_M",
    30: "BF16",
    34: "TQ1_0",
    35: "TQ2_0",
    39: "MXFP4",
    40: "NVFP4",
    41: "Q1_0",
}


class HeaderError(ValueError):
    """The header is malformed; the message says where."""


class NotGGUFError(HeaderError):
    """The file is not a GGUF this parser reads at all (empty, too small, wrong magic or version,
    absurd counts); the message is a whole sentence, meant to be shown as it is."""


@dataclass
class Tensor:
    name: str
    shape: list[int]
    type: int
    offset: int  # absolute offset of the data in the file
    n_bytes: int

    @property
    def n_elements(self) -> int:
        count = 1
        for dim in self.shape:
            count *= dim
        return count


@dataclass
class Header:
    version: int
    metadata: dict[str, Any] = field(default_factory=dict)
    array_lengths: dict[str, int] = field(default_factory=dict)
    tensors: list[Tensor] = field(default_factory=list)
    data_start: int = 0
    special_tokens: dict[str, str] = field(default_factory=dict)  # "bos"/"eos" -> token text
    _token_array_at: int = -1


class _Cursor:
    def __init__(self, buffer: Any, size: int) -> None:
        self.buffer, self.size, self.pos = buffer, size, 0

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > self.size:
            raise HeaderError(f"truncated while reading {what} at byte {self.pos}")
        data = self.buffer[self.pos : self.pos + n]
        self.pos += n
        return data

    def unpack(self, fmt: str, what: str) -> Any:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), what))[0]

    def string(self, what: str) -> str:
        length = self.unpack("<Q", what)
        if length > MAX_STRING:
            raise HeaderError(f"{what}: absurd string length {length}")
        return self.take(length, what).decode("utf-8", errors="replace")

    def skip_strings(self, count: int, what: str) -> None:
        pos, size, buffer, unpack = self.pos, self.size, self.buffer, struct.unpack_from
        for _ in range(count):
            if pos + 8 > size:
                raise HeaderError(f"truncated while reading {what} at byte {pos}")
            (length,) = unpack("<Q", buffer, pos)
            pos += 8 + length
            if length > MAX_STRING or pos > size:
                raise HeaderError(f"truncated or corrupt string array {what} at byte {pos}")
        self.pos = pos


def _value(cur: _Cursor, vtype: int, key: str) -> Any:
    if vtype in SCALARS:
        return cur.unpack(SCALARS[vtype], key)
    if vtype == STRING:
        return cur.string(key)
    raise HeaderError(f"metadata {key!r}: unknown value type {vtype}")


def _array(cur: _Cursor, key: str, header: Header) -> Any:
    item_type = cur.unpack("<I", key)
    count = cur.unpack("<Q", key)
    if count > cur.size:
        raise HeaderError(f"metadata {key!r}: array claims {count} items, more than the file could hold")
    header.array_lengths[key] = count
    if item_type == STRING:
        if key == TOKENS:
            header._token_array_at = cur.pos
        cur.skip_strings(count, key)
        return None
    if item_type in SCALARS:
        cur.take(count * struct.calcsize(SCALARS[item_type]), key)
        return None
    if item_type == ARRAY:
        for _ in range(count):
            _array(cur, key, header)
        return None
    raise HeaderError(f"metadata {key!r}: unknown array item type {item_type}")


def _read_special_tokens(cur: _Cursor, header: Header) -> None:
    """Decode just the BOS/EOS token texts from the (skipped) vocabulary array."""
    if header._token_array_at < 0:
        return
    end = cur.pos
    for key in SPECIAL_TOKEN_IDS:
        token_id = header.metadata.get(key)
        if not isinstance(token_id, int) or not 0 <= token_id < header.array_lengths.get(TOKENS, 0):
            continue
        cur.pos = header._token_array_at
        cur.skip_strings(token_id, TOKENS)
        header.special_tokens[key.split(".")[-1].removesuffix("_token_id")] = cur.string(TOKENS)
    cur.pos = end


def _tensor_bytes(ggml_type: int, n_elements: int, name: str) -> int:
    traits = GGML_TYPES.get(ggml_type)
    if traits is None:
        raise HeaderError(f"tensor {name!r}: unknown tensor type {ggml_type}")
    block, size = traits
    if n_elements % block:
        raise HeaderError(f"tensor {name!r}: {n_elements} elements is not a multiple of the block size {block}")
    return n_elements // block * size


def parse(path: Path | str, max_tensors: int = MAX_TENSORS, max_kv: int = MAX_KV) -> Header:
    """Parse the header of a GGUF file (memory-mapped; nothing big is copied).

    Raises NotGGUFError for a file that is not a readable GGUF at all, HeaderError (its base)
    for a GGUF whose header is corrupt or truncated, OSError if the file cannot be read.
    """
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size == 0:
            raise NotGGUFError("empty file, not a GGUF model")
        if size < FIXED_HEADER:
            raise NotGGUFError(f"{size} bytes is too small to be a GGUF model (truncated?)")
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as buffer:
            return _parse(_Cursor(buffer, size), max_tensors, max_kv)


def _parse(cur: _Cursor, max_tensors: int, max_kv: int) -> Header:
    magic = cur.take(4, "magic")
    if magic != MAGIC:
        raise NotGGUFError(f"not a GGUF file (magic {magic!r}, expected {MAGIC!r})")
    header = Header(version=cur.unpack("<I", "version"))
    if header.version not in (2, 3):
        raise NotGGUFError(f"unsupported GGUF version {header.version} (supported: 2, 3)")
    n_tensors, n_kv = cur.unpack("<Q", "tensor count"), cur.unpack("<Q", "metadata count")
    if n_tensors > max_tensors or n_kv > max_kv:
        raise NotGGUFError(f"corrupt header ({n_tensors} tensors, {n_kv} metadata keys claimed)")
    for _ in range(n_kv):
        key = cur.string("metadata key")
        vtype = cur.unpack("<I", f"type of {key!r}")
        header.metadata[key] = _array(cur, key, header) if vtype == ARRAY else _value(cur, vtype, key)
    infos = []
    for _ in range(n_tensors):
        name = cur.string("tensor name")
        n_dims = cur.unpack("<I", f"dimensions of {name!r}")
        if n_dims > 8:
            raise HeaderError(f"tensor {name!r}: {n_dims} dimensions")
        shape = [cur.unpack("<Q", f"shape of {name!r}") for _ in range(n_dims)]
        if any(d > cur.size * 64 for d in shape):
            raise HeaderError(f"tensor {name!r}: absurd shape {shape}")
        infos.append((name, shape, cur.unpack("<I", f"type of {name!r}"), cur.unpack("<Q", f"offset of {name!r}")))
    _read_special_tokens(cur, header)
    alignment = header.metadata.get("general.alignment", 32)
    if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
        raise HeaderError(f"bad general.alignment {alignment!r}")
    header.data_start = (cur.pos + alignment - 1) // alignment * alignment
    for name, shape, ggml_type, offset in infos:
        tensor = Tensor(name, shape, ggml_type, header.data_start + offset, 0)
        tensor.n_bytes = _tensor_bytes(ggml_type, tensor.n_elements, name)
        header.tensors.append(tensor)
    return header
