"""Fixtures for the chat UI tests: a real store, the shared real SmolLM2 engine, greedy settings."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from assistant.config import Config, database_path, load
from assistant.models.engine import Engine
from assistant.storage.store import Store
from assistant.tui.app import ChatApp


@pytest.fixture(scope="session")
def engine(smollm_path: Path):
    """The real SmolLM2-135M engine for the UI tests, on one thread.

    With two threads llama.cpp's workers spin-wait on each other; when other jobs share the two
    cores that turns a 1 s answer into 30 s. One thread keeps the UI tests fast on a busy machine.
    """
    eng = Engine(smollm_path, n_ctx=2048, threads=1)
    yield eng
    eng.close()


@pytest.fixture
def tui_config(monkeypatch: pytest.MonkeyPatch) -> Config:
    monkeypatch.setenv("ASSISTANT_TEMPERATURE", "0")
    monkeypatch.setenv("ASSISTANT_MAX_TOKENS", "24")
    return load()


@pytest.fixture
def store(assistant_home: Path):
    s = Store(database_path())
    yield s
    s.close()


@pytest.fixture
def make_app(tui_config: Config, store: Store, engine) -> Callable[..., object]:  # noqa: ANN001
    def factory(**kwargs: object) -> ChatApp:
        return ChatApp(tui_config, store, engine=engine, **kwargs)  # type: ignore[arg-type]

    return factory


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
