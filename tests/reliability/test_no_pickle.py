"""No code execution from weights: nothing in the source tree loads a pickle."""

from __future__ import annotations

import ast

from reliability_helpers import REPO

TREES = ("assistant", "distill_tools", "bench", "scripts")
PICKLE_LOADERS = {
    ("pickle", "load"),
    ("pickle", "loads"),
    ("cPickle", "load"),
    ("dill", "load"),
    ("joblib", "load"),
    ("pd", "read_pickle"),
    ("pandas", "read_pickle"),
    ("pickle", "Unpickler"),
}


def _is_true(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def unsafe_calls(source: str, filename: str) -> list[str]:
    """Calls that can run code from a file: pickle loads, torch.load without weights_only=True, torch.save."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        owner = node.func.value.id if isinstance(node.func.value, ast.Name) else ""
        name, where = node.func.attr, f"{filename}:{node.lineno}"
        kwargs = {k.arg: k.value for k in node.keywords}
        if (owner, name) in PICKLE_LOADERS:
            found.append(f"{where}: {owner}.{name}")
        elif owner == "torch" and name == "load" and not _is_true(kwargs.get("weights_only")):
            found.append(f"{where}: torch.load without weights_only=True")
        elif owner in ("np", "numpy") and name == "load" and _is_true(kwargs.get("allow_pickle")):
            found.append(f"{where}: numpy.load(allow_pickle=True)")
    return found


def test_scanner_finds_planted_unsafe_loads() -> None:
    planted = (
        "import pickle, torch, numpy as np\n"
        "pickle.load(f)\ntorch.load(p)\ntorch.load(p, weights_only=False)\npickle.loads(b)\n"
        "np.load(p, allow_pickle=True)\ntorch.load(p, weights_only=True)\n"
    )
    assert len(unsafe_calls(planted, "planted.py")) == 5


def test_source_tree_loads_no_pickles() -> None:
    files = [p for tree in TREES for p in (REPO / tree).rglob("*.py")]
    assert len(files) > 10
    problems = [hit for p in files for hit in unsafe_calls(p.read_text(encoding="utf-8"), str(p.relative_to(REPO)))]
    assert problems == []


def test_checkpoints_are_safetensors() -> None:
    """Model weights in distillation checkpoints go through safetensors (optimizer state may be a
    torch file, which is only ever read back with weights_only=True, checked above)."""
    savers = [p for p in (REPO / "distill_tools").rglob("*.py") if "def save_checkpoint" in p.read_text()]
    assert savers, "no checkpoint writer found in distill_tools"
    for path in savers:
        source = path.read_text()
        body = source[source.index("def save_checkpoint") :].split("\ndef ", 1)[0]
        assert "safetensors" in body and "model.safetensors" in body, path
