"""`assistant distill from-history`: escalated answers in the real SQLite history become a dataset."""

from __future__ import annotations

import json
from pathlib import Path

from assistant.cli.main import main
from assistant.config import database_path
from assistant.storage.store import Store
from distill_tools.prompts import load_records


def test_from_history_exports_escalated_pairs(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    store = Store(database_path())
    one = store.new_conversation("c1")
    store.add_message(one, "user", "What is a monad?")
    store.add_message(one, "assistant", "A local answer.", model="smollm2")
    store.add_message(one, "user", "Explain it with Maybe.")
    store.add_message(one, "assistant", "Maybe chains computations that can fail.", escalated=1, model="big-teacher")
    two = store.new_conversation("c2")
    store.add_message(two, "user", "Sort a list in Python?")
    store.add_message(two, "assistant", "Use sorted(xs).", escalated=1, model="big-teacher")
    store.add_message(two, "user", "Unfinished?")
    store.add_message(two, "assistant", "partial", escalated=1, complete=0)
    store.close()

    out = tmp_path / "history.jsonl"
    assert main(["distill", "from-history", "-o", str(out)]) == 0
    assert "wrote 2 escalated" in capsys.readouterr().out
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["prompt"], r["answer"]) for r in rows] == [
        ("Explain it with Maybe.", "Maybe chains computations that can fail."),
        ("Sort a list in Python?", "Use sorted(xs)."),
    ]
    assert rows[0]["teacher"] == "big-teacher"
    records = load_records([str(out)])  # the training data loader accepts it, answers kept for sequence-level KD
    assert records[1] == {"prompt": "Sort a list in Python?", "answer": "Use sorted(xs)."}
