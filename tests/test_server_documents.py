"""A persona over documents served by `assistant serve` (issue 28): the answer carries its sources as an extra field
that the `openai` SDK keeps (``model_extra``), whole and streamed. A real server on loopback, the real SDK."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import openai
import pytest

from bench.serve_process import ServeProcess

HANDBOOK = Path(__file__).resolve().parent.parent / "bench" / "personas" / "lumen-handbook" / "handbook.md"
QUESTION = [{"role": "user", "content": "What colour badge does a contractor wear?"}]


@pytest.mark.timeout(600)  # two answers with ~450-token prompts on a shared 2-core machine
def test_a_served_persona_over_documents_names_its_sources(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = os.environ | {"ASSISTANT_HOME": str(home)}
    added = subprocess.run(
        [sys.executable, "-m", "assistant", "persona", "add", "wick", "--docs", str(HANDBOOK)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert added.returncode == 0, added.stderr
    lines = HANDBOOK.read_text().splitlines()
    with ServeProcess(home, env={"ASSISTANT_N_CTX": "512"}) as server:  # too small for the handbook whole
        client = openai.OpenAI(base_url=server.url, api_key="not-needed", max_retries=0, timeout=300)
        reply = client.chat.completions.create(model="wick", messages=QUESTION, max_tokens=8)
        assert reply.choices[0].message.content and reply.model == "wick"
        sources = (reply.model_extra or {})["sources"]
        assert sources and all(s["path"] == str(HANDBOOK.resolve()) for s in sources)
        first = sources[0]
        assert "contractors carry orange" in "\n".join(lines[first["start_line"] - 1 : first["end_line"]])
        chunks = list(client.chat.completions.create(model="wick", messages=QUESTION, max_tokens=8, stream=True))
        streamed = [c.model_extra["sources"] for c in chunks if c.model_extra and "sources" in c.model_extra]
        assert streamed == [sources]  # once, with the last chunk; the same passages for the same question
        plain = client.chat.completions.create(model="smollm2-135m", messages=QUESTION, max_tokens=4)
        assert "sources" not in (plain.model_extra or {})  # a plain model's answer is as before
