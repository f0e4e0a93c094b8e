"""A schema llama.cpp cannot use is refused in one line, never a crash (issue 26, row 1).

A 250-byte request (``response_format`` with ``{"type": "string", "maxLength": 1001}``) killed `assistant serve`
(exit 139): llama.cpp's grammar parser refused the grammar, returned no sampler, and llama-cpp-python used it. Now
every grammar is read by llama.cpp's own parser in a child process first (``assistant.models.grammar_check``).
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from assistant.storage.store import Store
from bench.serve_process import ServeProcess

ROOT = Path(__file__).resolve().parent.parent
CRASHERS = [  # each one killed the process before: the first two as the issue reported them
    {"type": "string", "maxLength": 1001},
    {"type": "string", "pattern": "^[ab]{0,1500}$"},
    {"type": "string", "maxLength": 1024},  # the server's size check allowed up to 1024
]


def generated_schemas(count: int, seed: int) -> list[dict]:
    """Schemas at and past the edges: repetition bounds, patterns, nesting, refs, enums, combinators."""
    rng = random.Random(seed)
    bound = lambda: rng.choice([0, 1, 7, 64, 500, 999, 1000, 1001, 1024, 2000, 5000, 10**6])  # noqa: E731

    def one(depth: int) -> dict:
        kind = rng.choice(["string", "pattern", "array", "object", "enum", "number", "ref", "anyOf", "nested"])
        if kind == "string":
            return {"type": "string", "minLength": rng.choice([0, 1, 5]), "maxLength": bound()}
        if kind == "pattern":
            atom = rng.choice(["[ab]", "a", "(ab|cd)", "[0-9]", "\\d", "."])
            return {"type": "string", "pattern": f"^{atom}{{{rng.choice([0, 1, 3])},{bound()}}}$"}
        if kind == "array":
            return {"type": "array", "items": one(depth + 1) if depth < 3 else {}, "maxItems": bound()}
        if kind == "object":
            props = {f"k{i}": one(depth + 1) if depth < 3 else {"type": "integer"} for i in range(rng.randint(1, 4))}
            return {"type": "object", "properties": props, "required": list(props)[: rng.randint(0, len(props))]}
        if kind == "enum":
            return {"enum": [f"v{i}" * rng.randint(1, 3) for i in range(rng.choice([1, 3, 50, 2000]))]}
        if kind == "number":
            return {"type": "integer", "minimum": -bound(), "maximum": bound()}
        if kind == "ref":
            return {"$defs": {"a": one(depth + 1) if depth < 3 else {}}, "$ref": rng.choice(["#/$defs/a", "#"])}
        if kind == "anyOf":
            return {"anyOf": [one(depth + 1) if depth < 3 else {"type": "null"} for _ in range(rng.randint(1, 3))]}
        inner: dict = {"type": "string"}
        for _ in range(rng.choice([5, 40, 200])):
            inner = {"type": "array", "items": inner}
        return inner

    return [one(0) for _ in range(count)]


FUZZ = """
import json, sys
from assistant.models.schema import SchemaError, grammar_for
for line in sys.stdin:
    schema = json.loads(line)
    try:
        grammar_for(schema)
        print("ok", flush=True)
    except SchemaError as exc:
        print("refused", str(exc).replace("\\n", " "), flush=True)
"""


@pytest.mark.timeout(600)
def test_generated_schemas_are_each_turned_into_a_grammar_or_refused_in_a_line() -> None:
    """Two hundred generated schemas go through the converter and llama.cpp's parser in one process: it survives
    every one (exit 0, an outcome per schema), each refusal one line, and the known crashers among the refused."""
    schemas = CRASHERS + generated_schemas(200, seed=26)
    lines = "".join(json.dumps(s) + "\n" for s in schemas)
    run = subprocess.run([sys.executable, "-c", FUZZ], input=lines, capture_output=True, text=True, timeout=540)
    assert run.returncode == 0, run.stderr[-2000:]
    outcomes = run.stdout.splitlines()
    assert len(outcomes) == len(schemas)
    assert all(o == "ok" or o.startswith("refused ") for o in outcomes), outcomes
    assert all(o.startswith("refused ") for o in outcomes[: len(CRASHERS)]), outcomes[: len(CRASHERS)]
    accepted = outcomes.count("ok")
    assert 0 < accepted < len(schemas)  # the generator reaches both sides of the limits


@pytest.mark.timeout(300)
def test_ask_with_a_schema_llama_cpp_refuses_is_one_line_and_stores_nothing(assistant_home: Path) -> None:
    sys.path.insert(0, str(ROOT / "tests" / "reliability"))
    from reliability_helpers import assert_one_line_error, run_cli

    for schema in CRASHERS[:2]:
        result = run_cli(assistant_home, "ask", "--max-tokens", "8", "--schema", json.dumps(schema), "hi")
        assert_one_line_error(result)
        assert "llama.cpp refused the grammar" in result.stderr
    assert Store(assistant_home / "assistant.db").conversations() == []  # no empty "incomplete" answer left


@pytest.mark.timeout(300)
def test_the_server_answers_400_and_keeps_serving(tmp_path: Path) -> None:
    with ServeProcess(tmp_path / "home") as server:
        url = f"{server.url}/chat/completions"
        ask = {"model": "smollm2-135m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
        for schema in CRASHERS:
            body = ask | {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}}
            refused = httpx.post(url, json=body, timeout=120)
            assert refused.status_code == 400, refused.text
            assert "llama.cpp refused the grammar" in refused.json()["error"]["message"]
        answered = httpx.post(url, json=ask | {"temperature": 0}, timeout=120)
        assert answered.status_code == 200 and server.process.poll() is None
        assert not any("Traceback" in line for line in server.stderr)
