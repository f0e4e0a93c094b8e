"""Hot-swap with the real packaged models: the conversation survives, failures keep the old model serving."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_models_cli import BROKEN, make_broken_files

from assistant import AssistantError
from assistant.chat.session import Session
from assistant.config import Config, database_path
from assistant.models.chat_template import TemplateError
from assistant.models.engine import Engine, EngineError
from assistant.models.gguf_info import ModelFileError, read_info
from assistant.models.registry import Registry
from assistant.storage.store import Store

N_CTX = 1024
THREADS = 1  # on a shared 2-core machine llama.cpp's spinning thread barrier makes 2 threads ~10x slower


def _config() -> Config:
    config = Config()
    config.generation.temperature = 0.0
    return config


def _ask(session: Session, text: str, max_tokens: int = 6) -> str:
    return "".join(d.text for d in session.send(text, max_tokens=max_tokens))


def _prompt_alone(engine: Engine, text: str) -> int:
    """Tokens the current model's template makes of ``text`` without any history."""
    rendered = engine.model.template.render([{"role": "user", "content": text}])
    return len(engine.model.tokenize(rendered, first=True))


def test_swap_back_and_forth_keeps_the_conversation(smollm_path: Path, gemma_path: Path) -> None:
    store = Store(database_path())
    registry = Registry(store)
    assert {"smollm2-135m", "gemma3-270m"} <= {r.name for r in registry.rows(n_ctx=N_CTX) if r.fit == "fits"}
    assert read_info(smollm_path).chat_template and not read_info(gemma_path).chat_template
    registry.import_file(smollm_path, name="smol")
    registry.import_file(gemma_path, name="gemma", link=True)
    smol, gemma = registry.resolve("smol"), registry.resolve("gemma")

    engine = Engine(smol, n_ctx=N_CTX, threads=THREADS)
    session = Session(store, engine, _config())
    assert _ask(session, "My name is Ada. Say hello.").strip()
    first_model = engine.model

    engine.swap(gemma)
    assert engine.name == "gemma" and first_model.llm._model.model is None  # the old model's memory is freed
    question = "What is my name?"
    assert _ask(session, question).strip()
    stats = engine.stats
    assert stats.reused_tokens == 0  # a fresh model: the whole history was evaluated ...
    assert stats.prompt_tokens > _prompt_alone(engine, question) + 10  # ... and it included the earlier turn
    rendered = engine.model.template.render(session.history())
    assert "<start_of_turn>user\nMy name is Ada." in rendered  # with Gemma's own template

    # given the history, the new model reads it while loading: the next turn evaluates only the new message
    engine.swap(smol, history=session.history(), conversation=session.conversation_id)
    assert _ask(session, "Thanks!").strip()
    stats = engine.stats
    assert stats.prompt_tokens > _prompt_alone(engine, "Thanks!") + 20
    assert stats.reused_tokens > 20 and stats.evaluated_tokens < _prompt_alone(engine, "Thanks!")
    assert _ask(session, "Bye.").strip()
    assert engine.stats.reused_tokens > stats.prompt_tokens  # prefix reuse goes on

    messages = store.messages(session.conversation_id)
    assert [m["role"] for m in messages] == ["user", "assistant"] * 4
    assert [m["model"] for m in messages if m["role"] == "assistant"] == ["smol", "gemma", "smol", "smol"]
    assert all(m["complete"] == 1 and m["content"].strip() for m in messages)
    engine.close()


def test_swap_waits_for_the_answer_in_progress(smollm_path: Path, gemma_path: Path) -> None:
    store = Store(database_path())
    engine = Engine(smollm_path, n_ctx=N_CTX, threads=THREADS)
    session = Session(store, engine, _config())
    stream = session.send("Count from one to ten.", max_tokens=16)
    first = next(stream)
    future = engine.swap_in_background(gemma_path)  # loads beside the model that is answering
    with pytest.raises(TimeoutError):
        future.result(timeout=1.0)  # cannot switch mid-answer
    answer = first.text + "".join(d.text for d in stream)  # the old model finishes its answer
    assert session.last.stats.finish_reason in ("stop", "length") and answer.strip()
    future.result(timeout=60)
    assert engine.name == gemma_path.stem
    assert _ask(session, "And backwards?").strip()
    models = [m["model"] for m in store.messages(session.conversation_id) if m["role"] == "assistant"]
    assert models == ["smollm2-135m", gemma_path.stem]  # the registry's name; a file it does not know, by its stem
    engine.close()


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory: pytest.TempPathFactory, smollm_path: Path) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bad")
    files = make_broken_files(smollm_path, folder)
    data = smollm_path.read_bytes()
    # same length as the original, so every offset in the file stays valid
    unknown_tag = data.replace(b"{% endfor %}", b"{% endfoo %}", 1)
    files["template-syntax-error"] = folder / "template-syntax-error.gguf"
    files["template-syntax-error"].write_bytes(unknown_tag)
    tail = b"{{ '<|im_start|>assistant\n' }}"
    raising = b"{{ raise_exception('no') }}".replace(b" }}", b" " * (len(tail) - 27) + b" }}")
    assert len(raising) == len(tail) and tail in data
    files["template-raises"] = folder / "template-raises.gguf"
    files["template-raises"].write_bytes(data.replace(tail, raising, 1))
    return files


def test_failed_swaps_keep_the_old_model_serving(
    smollm_path: Path, bad_files: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(database_path())
    engine = Engine(smollm_path, n_ctx=N_CTX, threads=THREADS)
    session = Session(store, engine, _config())
    assert _ask(session, "Hi! My name is Ada.").strip()
    serving = engine.model

    for case in BROKEN:
        with pytest.raises(ModelFileError) as failure:
            engine.swap(bad_files[case])
        assert BROKEN[case] in str(failure.value) and "\n" not in str(failure.value)
        assert engine.model is serving
    with pytest.raises((TemplateError, EngineError), match="unknown tag 'endfoo'"):  # llama-cpp-python checks too
        engine.swap(bad_files["template-syntax-error"])
    with pytest.raises(TemplateError, match="chat template raised: no"):
        engine.swap(bad_files["template-raises"])
    with pytest.raises(ModelFileError, match="no such file"):
        engine.swap(tmp_path / "missing.gguf")
    import assistant.models.llama_model

    with monkeypatch.context() as patch:  # a machine with 64 MiB free
        patch.setattr(assistant.models.llama_model, "available_memory", lambda: 64 * 2**20)
        with pytest.raises(EngineError, match="needs about .* GiB free"):
            engine.swap(smollm_path)
    assert engine.model is serving

    assert _ask(session, "What is my name?").strip()  # the same conversation goes on
    messages = store.messages(session.conversation_id)
    assert len(messages) == 4 and all(m["model"] == "smollm2-135m" for m in messages if m["role"] == "assistant")
    assert engine.stats.reused_tokens > 0  # the cached prefix was not disturbed by the failed swaps
    engine.close()


def test_swap_error_is_an_assistant_error_for_the_ui(smollm_path: Path, bad_files: dict[str, Path]) -> None:
    engine = Engine(smollm_path, n_ctx=N_CTX, threads=THREADS)
    future = engine.swap_in_background(bad_files["wrong-magic"])
    with pytest.raises(AssistantError, match="not a GGUF file"):
        future.result(timeout=30)
    assert engine.complete([{"role": "user", "content": "Hi"}], max_tokens=3).strip()
    engine.close()
