"""Hostile Jinja chat templates embedded in a real GGUF: refused or sandboxed, clearly, never a hang."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from reliability_helpers import assert_one_line_error, run_cli, with_strings

from assistant import AssistantError
from assistant.models.chat_template import MAX_RENDER_SECONDS, ChatTemplate, TemplateError
from assistant.models.engine import Engine

HOSTILE = {
    "read_file": "{% include '/etc/passwd' %}",
    "import_module": "{% import 'os' as os %}{{ os.system('id') }}",
    "python_escape": "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "subclasses": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "globals": "{{ lipsum.__globals__['os'].popen('id').read() }}",
    "loop_forever": "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "recursion": "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}",
    "huge_output": "{% for i in range(100000) %}{{ 'x' * 100000 }}{% endfor %}",
    "huge_repeat": "{{ 'x' * 10000000000 }}",
    "power_bomb": "{{ 9 ** 9 ** 9 ** 9 }}",
    "doubling": "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
    "wide_filter": "{{ 'x' | center(100000000000) }}",
    "wide_format": "{{ '%99999999999s' % 'x' }}",
    "wide_method": "{{ '{:>99999999999}'.format('x') }}",
}
# Only fires on longer conversations, so a load-time probe cannot see it; and a compile-time
# bomb for llama-cpp-python's own (unbounded) Jinja, which would otherwise hang the load.
LATE_BOMB = "{% if messages | length > 2 %}{{ 9 ** 9 ** 9 ** 9 }}{% endif %}" + "<|im_start|>assistant\n"


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_template_is_refused_quickly(name: str) -> None:
    started = time.monotonic()
    with pytest.raises(TemplateError) as caught:
        ChatTemplate(HOSTILE[name]).render([{"role": "user", "content": "hi"}])
    elapsed = time.monotonic() - started
    message = str(caught.value)
    assert "chat template" in message and "\n" not in message
    assert "root:" not in message  # nothing of /etc/passwd leaks into the error
    assert elapsed < MAX_RENDER_SECONDS + 5, f"{name} took {elapsed:.1f} s"


def test_real_templates_still_render(smollm_path: Path) -> None:
    from assistant.models.chat_template import fallback_for
    from assistant.models.gguf_info import read_info

    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "x" * 200_000}]
    smol = ChatTemplate(read_info(smollm_path).chat_template).render(messages)
    assert "<|im_start|>user\n" + "x" * 200_000 in smol
    gemma = ChatTemplate(fallback_for("gemma3"), bos_token="<bos>").render(messages)
    assert gemma.startswith("<bos><start_of_turn>user\nBe brief.")


@pytest.fixture(scope="module")
def hostile_files(smollm_path: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("hostile")
    files = {
        name: with_strings(smollm_path, folder / f"{name}.gguf", {"tokenizer.chat_template": HOSTILE[name]})
        for name in ("read_file", "python_escape", "loop_forever", "power_bomb")
    }
    files["late_bomb"] = with_strings(
        smollm_path,
        folder / "late_bomb.gguf",
        {"tokenizer.chat_template": LATE_BOMB, "tokenizer.chat_template.tool_use": "{{ 9 ** 9 ** 9 ** 9 }}"},
    )
    return files


@pytest.mark.parametrize("name", ["read_file", "python_escape", "loop_forever", "power_bomb"])
def test_ask_with_hostile_model_fails_with_one_line(name: str, hostile_files: dict[str, Path], assistant_home: Path):
    started = time.monotonic()
    result = run_cli(assistant_home, "ask", "--model", str(hostile_files[name]), "hi", timeout=90)
    assert_one_line_error(result, "chat template")
    assert "root:" not in result.stdout + result.stderr
    assert time.monotonic() - started < 60


def test_late_bomb_loads_then_is_refused_and_engine_keeps_serving(hostile_files: dict[str, Path]) -> None:
    started = time.monotonic()
    engine = Engine(hostile_files["late_bomb"], n_ctx=512)  # llama-cpp-python does not compile the template
    try:
        assert time.monotonic() - started < 60
        first = engine.complete([{"role": "user", "content": "Say hi"}], max_tokens=4, temperature=0.0)
        assert first
        long = [
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": "b"},
            {"role": "user", "content": "c"},
        ]
        with pytest.raises(AssistantError, match="chat template refused"):
            engine.complete(long, max_tokens=4, temperature=0.0)
        again = engine.complete([{"role": "user", "content": "Say hi"}], max_tokens=4, temperature=0.0)
        assert again == first
    finally:
        engine.close()


def test_llama_cpp_chat_handlers_are_not_used(engine) -> None:  # noqa: ANN001
    """The file's templates are never compiled by llama-cpp-python's unbounded Jinja."""
    import llama_cpp.llama_chat_format as chat_format

    assert chat_format.Jinja2ChatFormatter.__name__ == "Jinja2ChatFormatter"  # restored after loading
    handler = engine.model.llm._chat_handlers.get("chat_template.default")
    with pytest.raises(AssistantError, match="disabled"):
        handler(llama=engine.model.llm, messages=[])
