"""Shared helpers for the reliability tests: run the real CLI, edit real GGUF files."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

from assistant.models.gguf_header import SCALARS, STRING

ARRAY = 9
REPO = Path(__file__).resolve().parents[2]


def cli_env(home: Path, **extra: str) -> dict[str, str]:
    """Environment for a CLI subprocess: its own ASSISTANT_HOME, a small context, no stray overrides."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSISTANT_")}
    env.update(ASSISTANT_HOME=str(home), ASSISTANT_N_CTX="512", PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1")
    env.update(ASSISTANT_TEMPERATURE="0")  # greedy unless a test says otherwise (tests/conftest.py)
    env.update(extra)
    return env


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "assistant", *args]


def run_cli(home: Path, *args: str, stdin: str | None = None, timeout: float = 120, **env: str):
    """Run ``assistant ARGS`` to completion; returns the CompletedProcess (text mode)."""
    return subprocess.run(
        cli_command(*args),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=cli_env(home, **env),
        cwd=REPO,
    )


def assert_one_line_error(result: subprocess.CompletedProcess, *needles: str) -> str:
    """The command failed with exactly one clear line on stderr and no traceback."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("assistant: error: "), lines[0]
    for needle in needles:
        assert needle.lower() in lines[0].lower(), (needle, lines[0])
    return lines[0]


# -- GGUF editing (byte level, so tensors are copied untouched)
def _skip_value(data: bytes, pos: int, vtype: int) -> int:
    if vtype in SCALARS:
        return pos + struct.calcsize(SCALARS[vtype])
    if vtype == STRING:
        (length,) = struct.unpack_from("<Q", data, pos)
        return pos + 8 + length
    if vtype == ARRAY:
        item_type, count = struct.unpack_from("<IQ", data, pos)
        pos += 12
        if item_type in SCALARS:
            return pos + count * struct.calcsize(SCALARS[item_type])
        for _ in range(count):
            pos = _skip_value(data, pos, item_type)
        return pos
    raise ValueError(f"unknown GGUF value type {vtype}")


def metadata_layout(data: bytes) -> tuple[int, list[tuple[str, int, int, int]]]:
    """(offset after the metadata, [(key, key_start, value_type, value_start)]) of a GGUF header."""
    _, _, n_kv = struct.unpack_from("<IQQ", data, 4)
    pos, entries = 24, []
    for _ in range(n_kv):
        start = pos
        (length,) = struct.unpack_from("<Q", data, pos)
        key = data[pos + 8 : pos + 8 + length].decode()
        pos += 8 + length
        (vtype,) = struct.unpack_from("<I", data, pos)
        pos += 4
        entries.append((key, start, vtype, pos))
        pos = _skip_value(data, pos, vtype)
    return pos, entries


def header_size(path: Path) -> int:
    """Bytes from the start of the file to the first tensor's data (aligned)."""
    from assistant.models.gguf_header import parse

    return parse(path).data_start


def _string(text: str) -> bytes:
    raw = text.encode("utf-8")
    return struct.pack("<Q", len(raw)) + raw


def with_strings(source: Path, target: Path, strings: dict[str, str]) -> Path:
    """Copy a GGUF, setting string metadata (existing keys replaced, new keys added).

    Tensor infos and data are kept byte for byte; the data section moves to the next aligned
    offset after the new header, so the file stays valid.
    """
    data_start = header_size(source)
    with source.open("rb") as handle:
        head = handle.read(data_start)
    meta_end, entries = metadata_layout(head)
    version, n_tensors, n_kv = struct.unpack_from("<IQQ", head, 4)
    parts, present = [], set()
    for index, (key, start, vtype, value_at) in enumerate(entries):
        end = entries[index + 1][1] if index + 1 < len(entries) else meta_end
        if key in strings:
            present.add(key)
            parts.append(_string(key) + struct.pack("<I", STRING) + _string(strings[key]))
        else:
            parts.append(head[start:end])
    for key, value in strings.items():
        if key not in present:
            parts.append(_string(key) + struct.pack("<I", STRING) + _string(value))
            n_kv += 1
    tensor_infos = _exact_tensor_infos(head, meta_end, n_tensors)
    new_head = head[:4] + struct.pack("<IQQ", version, n_tensors, n_kv) + b"".join(parts) + tensor_infos
    padding = (-len(new_head)) % 32
    with source.open("rb") as src, target.open("wb") as out:
        out.write(new_head + b"\x00" * padding)
        src.seek(data_start)
        shutil.copyfileobj(src, out, 8 << 20)
    return target


def _exact_tensor_infos(head: bytes, pos: int, n_tensors: int) -> bytes:
    start = pos
    for _ in range(n_tensors):
        (length,) = struct.unpack_from("<Q", head, pos)
        pos += 8 + length
        (n_dims,) = struct.unpack_from("<I", head, pos)
        pos += 4 + 8 * n_dims + 4 + 8
    return head[start:pos]


def sparse_copy(source: Path, target: Path, head: bytes, size: int | None = None) -> Path:
    """A file that starts with ``head`` and has the source's size (the rest is a sparse hole)."""
    with target.open("wb") as out:
        out.write(head)
        out.truncate(source.stat().st_size if size is None else size)
    return target
