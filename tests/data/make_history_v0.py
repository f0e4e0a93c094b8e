"""Writes history_v0.db: a history database made by the code before numbered migrations (commit 829e7c1).

Run once from a checkout of that commit: ``python tests/data/make_history_v0.py``. Kept so the fixture's
origin is reproducible; the code it calls no longer exists in this form.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from assistant.models.registry import Registry
from assistant.storage.store import Store

TARGET = Path(__file__).with_name("history_v0.db")

TARGET.unlink(missing_ok=True)
store = Store(TARGET)
one = store.new_conversation(title="Closures", model="smollm2-135m", system="Be brief.")
store.add_message(one, "user", "What is a closure in Python?")
store.add_message(
    one,
    "assistant",
    "A function that remembers the variables around it.",
    model="smollm2-135m",
    prompt_tokens=31,
    completion_tokens=11,
    ttft_s=0.0412,
    tokens_per_s=96.5,
    finish_reason="stop",
    route='{"policy": "never", "escalate": false, "reason": "answered on-device"}',
)
store.add_message(one, "user", "Who wrote the Zhuangzi?")
store.add_message(
    one,
    "assistant",
    "Zhuang Zhou, in the 4th century BC.",
    model="big-teacher",
    escalated=1,
    finish_reason="stop",
    route='{"policy": "auto", "escalate": true, "reason": "long-tail fact"}',
)
two = store.new_conversation(title="Unicode ✓ and a half-written answer")
store.add_message(two, "user", "Écris un haïku sur la mer 🌊")
partial = store.add_message(two, "assistant", "", model="smollm2-135m", complete=0)
store.update_message(partial, content="La mer se retire")  # the process died here: complete stays 0
three = store.new_conversation(title="deleted later")
store.add_message(three, "user", "this conversation is deleted")
store.delete_conversation(three)

registry = Registry(store)
info = SimpleNamespace(
    architecture="llama", parameters=134515008, quantization="Q4_1", context_length=8192, size=103530048
)
registry.add("my-student", Path("/models/my-student.gguf"), "distilled", info, sha256="ab" * 32)
registry.add("linked-one", Path("/elsewhere/linked.gguf"), "linked", info)
store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
store.close()
print(f"wrote {TARGET}")
