"""The served teacher against llama.cpp's own server (``llama-server``), not only llama-cpp-python's: its
``/tokenize`` passes the tokenizer check, its log-probs (OpenAI ``content`` entries carrying token ids) give
word-level targets that match the local torch pass, and a server with Gemma's tokenizer is refused.

Optional: needs a ``llama-server`` binary. ``scripts/build-llama-server.sh`` builds one from the llama.cpp that the
pinned llama-cpp-python vendors (into ~/.cache/assistant, where these tests find it); ``ASSISTANT_LLAMA_SERVER`` or
``PATH`` may name another.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from bench.serve_process import ChildServer
from distill_tools import DistillError

sys.path.insert(0, str(Path(__file__).parent))
from test_served_teacher import MAX_TOL, MEAN_TOL, TIE, TRAIN, _pass, agreement, local_teacher, served  # noqa: E402


def llama_server_binary() -> Path | None:
    named = os.environ.get("ASSISTANT_LLAMA_SERVER") or shutil.which("llama-server")
    if named:
        return Path(named)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "assistant"
    built = sorted(cache.glob("llama-server-*/llama-server"))
    return built[-1] if built else None


BINARY = llama_server_binary()
pytestmark = pytest.mark.skipif(
    BINARY is None, reason="no llama-server binary (scripts/build-llama-server.sh builds one, ~10 min)"
)


class LlamaServer(ChildServer):
    """``llama-server`` serving a GGUF on a loopback port it picks (it prints the address it listens on)."""

    def __init__(self, model: Path, alias: str) -> None:
        command = [
            str(BINARY), "-m", str(model), "--alias", alias, "--host", "127.0.0.1", "--port", "0",
            "-c", "4096", "-np", "4", "-t", "1",
        ]  # fmt: skip
        super().__init__(
            command, re.compile(r"listening on (http://127\.0\.0\.1:\d+)"), timeout=90, name="llama-server"
        )
        self.url, self.model = self.ready.group(1) + "/v1", alias


@pytest.fixture(scope="module")
def smollm_llama_server(smollm_path: Path) -> Iterator[LlamaServer]:
    server = LlamaServer(smollm_path, "smollm2")
    yield server
    server.stop()


@pytest.mark.timeout(300)
def test_llama_server_teacher_pass_matches_the_local_pass(
    teacher,  # noqa: ANN001
    smollm_llama_server: LlamaServer,
    tmp_path: Path,
) -> None:
    tok = teacher.tokenizer
    runner = served(smollm_llama_server, tok)
    assert runner.check_tokenizer().startswith("same tokens")  # through llama.cpp's /tokenize and /detokenize
    remote = _pass(runner, tok, tmp_path / "r", TRAIN, batch_size=len(TRAIN))
    assert runner.word_level == len(TRAIN) and runner.sequence_level == 0
    local = _pass(local_teacher(teacher.model, tok), tok, tmp_path / "l", TRAIN, batch_size=len(TRAIN))
    same = agreement(local, remote, tok.eos_token_id)
    print(f"llama-server vs torch: {same.identical}/{len(TRAIN)} answers identical, mean |Δ log p| "
          f"{np.mean(same.diffs):.3f}, max {max(same.diffs):.3f}")  # fmt: skip
    assert same.identical >= len(TRAIN) // 2
    # llama.cpp's server gives the log-probs of the end-of-turn it stops on: a real target there, not a one-hot
    stops = [o for o in remote if o.answer_ids[-1] == tok.eos_token_id]
    assert stops and all(np.isfinite(o.topk_logprobs[-1].astype(float)).sum() > 1 for o in stops)
    assert all(local_gap < TIE for local_gap, _ in same.flip_gaps), same
    assert same.leading_missing == 0
    assert np.mean(same.diffs) < MEAN_TOL and max(same.diffs) < MAX_TOL, same


@pytest.mark.timeout(180)
def test_llama_server_with_another_tokenizer_is_refused(teacher, gemma_path: Path) -> None:  # noqa: ANN001
    server = LlamaServer(gemma_path, "gemma-3-270m")
    try:
        with pytest.raises(DistillError, match="does not share the student's tokenizer"):
            served(server, teacher.tokenizer).check_tokenizer()
    finally:
        server.stop()
