"""`assistant models …` end to end with the real packaged GGUFs, and the broken-file table."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from assistant.cli.main import main
from assistant.config import load, models_dir
from assistant.models.gguf_header import GGML_TYPE_NAMES, GGML_TYPES, HeaderError, NotGGUFError, parse
from assistant.models.gguf_info import FILE_TYPES, ModelFileError, read_info

# name -> (how the file is broken, what the one-line error must say)
BROKEN = {
    "empty": "empty file",
    "tiny": "too small",
    "wrong-magic": "not a GGUF file",
    "text-renamed": "not a GGUF file",
    "bad-version": "unsupported GGUF version",
    "cut-in-header": "truncated",
    "cut-in-metadata": "truncated",
    "cut-in-vocabulary": "truncated",
    "cut-in-tensor-table": "truncated",
    "cut-at-data": "truncated",
    "cut-in-data": "truncated",
    "cut-last-byte": "truncated",
    "absurd-tensor-count": "corrupt header",
    "absurd-metadata-count": "corrupt header",
    "absurd-key-length": "absurd string length",
    "absurd-tensor-shape": "absurd shape",
    "huge-tensor-size": "corrupt header: tensor 'token_embd.weight' overlaps",
    "tensor-offset-past-end": "corrupt header",
    "unaligned-tensor": "not 32-byte aligned",
    "unknown-tensor-type": "unknown tensor type",
    "duplicate-token": "duplicate token",  # llama.cpp would abort the whole process on this one
}


def make_broken_files(source: Path, folder: Path) -> dict[str, Path]:
    """Broken variants of a real GGUF: truncated at several offsets, bad magic, absurd headers."""
    data = source.read_bytes()
    header = parse(source)
    name = b"token_embd.weight"
    info_at = data.index(struct.pack("<Q", len(name)) + name) + 8 + len(name)  # n_dims, dims, type, offset
    head = data[: header.data_start + 64]  # enough for errors found in the header

    def one_char(token: bytes) -> bytes:  # a one-byte token in the vocabulary, between its neighbours' lengths
        return struct.pack("<Q", 1) + token + struct.pack("<Q", 1)

    def patched(base: bytes, offset: int, fmt: str, value: int) -> bytes:
        out = bytearray(base)
        struct.pack_into(fmt, out, offset, value)
        return bytes(out)

    variants = {
        "empty": b"",
        "tiny": data[:10],
        "wrong-magic": b"GGML" + head[4:],
        "text-renamed": b"# notes\nThis is a text file someone renamed to .gguf\n" * 20,
        "bad-version": patched(head, 4, "<I", 99),
        "cut-in-header": data[:20],
        "cut-in-metadata": data[:1000],
        "cut-in-vocabulary": data[:500_000],
        "cut-in-tensor-table": data[: header.data_start - 100],
        "cut-at-data": data[: header.data_start],
        "cut-in-data": data[: len(data) // 2],
        "cut-last-byte": data[:-1],
        "absurd-tensor-count": patched(head, 8, "<Q", 2**50),
        "absurd-metadata-count": patched(head, 16, "<Q", 2**50),
        "absurd-key-length": patched(head, 24, "<Q", 2**62),
        "absurd-tensor-shape": patched(head, info_at + 4, "<Q", 2**40),
        "huge-tensor-size": patched(head, info_at + 4, "<Q", 576 * 1000),
        "tensor-offset-past-end": patched(head, info_at + 4 + 16 + 4, "<Q", 2**60),
        "unaligned-tensor": patched(head, info_at + 4 + 16 + 4, "<Q", 7),
        "unknown-tensor-type": patched(head, info_at + 4 + 16, "<I", 200),
        "duplicate-token": head.replace(one_char(b"q"), one_char(b"u"), 1),  # one flipped bit: 'q' -> 'u'
    }
    assert set(variants) == set(BROKEN)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for key, content in variants.items():
        paths[key] = folder / f"{key}.gguf"
        paths[key].write_bytes(content)
    return paths


@pytest.fixture(scope="module")
def broken(tmp_path_factory: pytest.TempPathFactory, smollm_path: Path) -> dict[str, Path]:
    return make_broken_files(smollm_path, tmp_path_factory.mktemp("broken"))


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_check_refuses_each_broken_file_in_one_line(
    case: str, broken: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["models", "check", str(broken[case])]) == 1
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and captured.out == ""
    assert lines[0].startswith("assistant: error: ") and str(broken[case]) in lines[0]
    assert BROKEN[case] in lines[0]
    with pytest.raises(ModelFileError):
        read_info(broken[case])


def test_check_real_models(smollm_path: Path, gemma_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "check", str(smollm_path)]) == 0
    out = capsys.readouterr().out
    assert "OK — llama, 135M parameters, Q4_1" in out and "vocabulary 49152" in out and "fits" in out
    assert "warning" not in out
    assert main(["models", "check", "--json", str(gemma_path)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["architecture"] == "gemma3" and info["quantization"] == "Q4_K_M"
    assert info["has_chat_template"] is False and "no chat template" in info["warnings"][0]
    assert info["fit"] == "fits" and 0 < info["memory"] < info["available"]


def test_parse_gives_the_friendly_messages_itself(broken: dict[str, Path]) -> None:
    """The not-a-GGUF-at-all cases are refused by the parser, in words a user understands."""
    expected = {
        "empty": "empty file, not a GGUF model",
        "tiny": "10 bytes is too small to be a GGUF model (truncated?)",
        "wrong-magic": "not a GGUF file (magic b'GGML', expected b'GGUF')",
        "bad-version": "unsupported GGUF version 99 (supported: 2, 3)",
        "absurd-tensor-count": f"corrupt header ({2**50} tensors,",
    }
    for case, message in expected.items():
        with pytest.raises(NotGGUFError) as raised:
            parse(broken[case])
        assert str(raised.value).startswith(message) and isinstance(raised.value, HeaderError)
        with pytest.raises(ModelFileError) as wrapped:
            read_info(broken[case])
        assert str(wrapped.value) == f"{broken[case]}: {raised.value}"  # shown as it is, not as "corrupt or …"
    with pytest.raises(HeaderError, match="truncated") as raised:
        parse(broken["cut-in-metadata"])
    assert not isinstance(raised.value, NotGGUFError)


def test_type_tables_match_gguf_py() -> None:
    """GGML_TYPES, GGML_TYPE_NAMES and FILE_TYPES are copies of gguf-py's tables, kept so that
    importing gguf (~150 ms) stays off the chat path: they must agree with the installed package."""
    import gguf

    quant_types = {t.value: t for t in gguf.GGMLQuantizationType}
    for value, (block, size) in GGML_TYPES.items():
        assert value in quant_types, f"ggml type {value} ({GGML_TYPE_NAMES.get(value)}) is unknown to gguf-py"
        assert GGML_TYPE_NAMES[value] == quant_types[value].name, value
        assert (block, size) == gguf.GGML_QUANT_SIZES[quant_types[value]], GGML_TYPE_NAMES[value]
    missing = {t.name: t.value for t in gguf.GGMLQuantizationType if t.value not in GGML_TYPES}
    assert not missing, f"gguf-py knows ggml types the header parser would refuse: {missing}"
    assert set(GGML_TYPE_NAMES) == set(GGML_TYPES)

    file_types = {
        t.value: t.name.removeprefix("MOSTLY_").removeprefix("ALL_")
        for t in gguf.LlamaFileType
        if t is not gguf.LlamaFileType.GUESSED  # a flag or'ed onto the others, not a file type
    }
    assert FILE_TYPES == file_types


def test_header_modules_do_not_import_gguf_py() -> None:
    """The tables above exist so that the chat path never pays for importing gguf-py."""
    code = "import sys, assistant.models.gguf_info; print('gguf' in sys.modules, 'numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120).stdout
    assert out.split() == ["False", "False"]


def test_list_shows_both_packaged_models(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["NAME", "KIND", "ARCH", "PARAMS", "QUANT", "CTX", "SIZE", "ORIGIN", "FIT"]
    smol = next(line for line in lines if " smollm2-135m " in line)
    gemma = next(line for line in lines if " gemma3-270m " in line)
    assert smol.startswith("*") and "llama" in smol and "Q4_1" in smol and "packaged" in smol and "fits" in smol
    assert "gemma3" in gemma and "268M" in gemma and "Q4_K_M" in gemma and "32768" in gemma
    assert " chat " in smol and " base " in gemma and "KIND base: a completion model, not tuned for chat" in lines[-1]
    assert not (models_dir() / "packaged").exists()  # listing writes no weights: Gemma is assembled on first use
    assert main(["models", "list", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["smollm2-135m"]["parameters"] == 134515008 and rows["smollm2-135m"]["default"]
    assert rows["gemma3-270m"]["context_length"] == 32768 and rows["gemma3-270m"]["fit"] == "fits"
    assert rows["gemma3-270m"]["kind"] == "base" and rows["smollm2-135m"]["kind"] == "chat"
    assert rows["gemma3-270m"]["size"] == 253113024


def test_import_use_rm_round_trip(smollm_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "import", str(smollm_path), "--name", "my-smol"]) == 0
    assert "imported my-smol" in capsys.readouterr().out
    copied = models_dir() / "my-smol.gguf"
    assert copied.is_file() and not copied.is_symlink() and copied.read_bytes() == smollm_path.read_bytes()
    assert not list(models_dir().glob(".*partial"))  # the temp file was renamed, not left behind
    assert main(["models", "use", "my-smol"]) == 0
    assert "default model: my-smol" in capsys.readouterr().out
    assert load().model.default == "my-smol"
    assert main(["models", "list", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["my-smol"]["default"] and rows["my-smol"]["origin"] == "imported"
    assert rows["my-smol"]["sha256"] == "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    assert main(["models", "rm", "my-smol"]) == 0
    assert "default is the embedded student again" in capsys.readouterr().out
    assert not copied.exists() and smollm_path.exists()
    assert load().model.default == ""


def test_link_import_and_rm_keeps_the_target(smollm_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "import", str(smollm_path), "--link"]) == 0
    linked = models_dir() / "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert linked.is_symlink() and linked.resolve() == smollm_path.resolve()
    assert main(["models", "rm", "SmolLM2-135M-Instruct.Q4_1"]) == 0
    assert not linked.exists() and not linked.is_symlink() and smollm_path.exists()


def test_bad_names_and_refusals_are_one_line(
    smollm_path: Path, broken: dict[str, Path], assistant_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cases = [
        (["models", "import", str(smollm_path), "--name", "../escape"], "invalid model name"),
        (["models", "import", str(smollm_path), "--name", "a/b"], "invalid model name"),
        (["models", "import", str(smollm_path), "--name", "smollm2-135m"], "already exists"),
        (["models", "import", str(broken["cut-in-data"])], "truncated"),
        (["models", "rm", "smollm2-135m"], "cannot be removed"),
        (["models", "rm", "../../etc/passwd"], "invalid model name"),
        (["models", "rm", "nothing"], "no model named"),
        (["models", "use", "nothing"], "unknown model"),
        (["models", "use", "../x"], "invalid model name"),
    ]
    for argv, message in cases:
        assert main(argv) == 1, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], (argv, err)
    written = [p for p in assistant_home.rglob("*") if p.is_file() and p.suffix == ".gguf"]
    assert written == [] and not (assistant_home.parent / "escape.gguf").exists()


def test_env_override_is_not_persisted_by_use(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASSISTANT_N_CTX", "999")
    assert main(["models", "use", "smollm2-135m"]) == 0
    monkeypatch.delenv("ASSISTANT_N_CTX")
    settings = load()
    assert settings.model.default == "smollm2-135m" and settings.model.n_ctx == 4096


def test_catalog_lists_students_and_teachers(capsys: pytest.CaptureFixture[str]) -> None:
    from assistant.models.registry import PACKAGED, load_catalog, validate_name

    entries = {e.name: e for e in load_catalog()}
    for required in (
        "llama3.2-1b",
        "llama3.2-3b",
        "gemma3-1b",
        "qwen2.5-coder-1.5b",
        "deepseek-r1-distill-qwen-1.5b",
        "smollm2-1.7b",
        "smollm2-135m",
        "gemma3-270m",
    ):
        entry = entries[required]
        validate_name(entry.name)
        assert entry.role in ("student", "teacher") and entry.licence and entry.good_at and entry.file
        assert entry.package or "/" in entry.repo
    for packaged in PACKAGED:
        assert entries[packaged.name].sha256 == packaged.sha256
    assert main(["models", "catalog"]) == 0
    assert "qwen2.5-coder-1.5b" in capsys.readouterr().out


def test_chatting_with_a_base_model_warns_and_llama_cpp_stays_quiet(assistant_home: Path) -> None:
    """Issue 19 row 7: `ask` says Gemma 3 270M is a base model; llama.cpp's log never reaches the terminal."""
    from reliability.reliability_helpers import run_cli

    for model in ("gemma3-270m", "smollm2-135m"):
        done = run_cli(
            assistant_home,
            "ask",
            "--model",
            model,
            "--max-tokens",
            "4",
            "--temperature",
            "0",
            "What is the capital of France?",
            ASSISTANT_THREADS="1",
            timeout=240,
        )
        assert done.returncode == 0, done.stderr
        lines = done.stderr.splitlines()
        assert all(line.startswith("note: ") for line in lines), lines  # no llama_kv_cache_iswa, no load log
        base_note = [line for line in lines if "base (completion) model, not tuned for chat" in line]
        assert len(base_note) == (model == "gemma3-270m"), lines
    catalog = subprocess.run(
        [sys.executable, "-m", "assistant", "models", "catalog"], capture_output=True, text=True, check=True
    ).stdout
    assert "BASE (completion) model, not tuned for chat" in catalog.split("gemma3-270m", 1)[1].split("\n\n")[0]
