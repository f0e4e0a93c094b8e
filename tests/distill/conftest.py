"""Shared fixtures for the distill_tools tests: one converted teacher for the whole session."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")


@pytest.fixture(scope="session")
def distill_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("distill-cache")


@pytest.fixture(autouse=True)
def _shared_cache(distill_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The GGUF → HF conversion of the teacher is done once per session, not once per test."""
    monkeypatch.setenv("ASSISTANT_DISTILL_CACHE", str(distill_cache))


@pytest.fixture(scope="session")
def teacher(distill_cache: Path, smollm_path: Path):  # noqa: ANN201
    import os

    os.environ["ASSISTANT_DISTILL_CACHE"] = str(distill_cache)
    from distill_tools.torch_model import load

    return load(str(smollm_path))
