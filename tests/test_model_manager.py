"""The model manager's server-side calls with the real model: ``use`` loads only when needed, ``unload`` frees."""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant.config import load
from assistant.models.manager import ModelManager, NoModelError
from assistant.storage.store import Store

MODEL = "smollm2-135m"


def test_use_loads_once_and_unload_frees_until_the_next_use(tmp_path: Path) -> None:
    config = load()
    config.model.n_ctx = 512
    models = ModelManager(config, Store(tmp_path / "assistant.db"))
    assert not models.unload()  # nothing loaded: nothing to free
    assert models.use(MODEL) and models.ready
    engine = models.engine
    assert not models.use(MODEL) and models.engine is engine  # already serving: no reload
    assert engine.complete([{"role": "user", "content": "Hi"}], max_tokens=2)
    assert models.unload() and not models.ready and models.name == ""
    with pytest.raises(NoModelError):
        models.engine  # noqa: B018 - the property raises
    assert models.use(MODEL) and models.engine is not engine  # loaded afresh
    assert models.engine.complete([{"role": "user", "content": "Hi"}], max_tokens=2)
    models.close()
