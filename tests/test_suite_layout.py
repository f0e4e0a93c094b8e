"""The suite itself: pytest imports test modules by file name (no packages), so two with one name break collection."""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path


def test_every_test_module_has_its_own_file_name() -> None:
    names = Counter(path.name for path in Path(__file__).parent.rglob("test_*.py"))
    assert [name for name, count in names.items() if count > 1] == []


def _number(node: ast.AST) -> float | None:
    """The value of a literal number, or of a string holding one (a command-line argument)."""
    value = node.value if isinstance(node, ast.Constant) else None
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _sampled_temperatures(scope: ast.AST) -> list[int]:
    """Lines where ``scope`` asks for a literal temperature above 0: ``temperature=T``, ``{"temperature": T}``,
    ``"--temperature", "T"`` in an argument list, or ``ASSISTANT_TEMPERATURE="T"``."""
    losses = {
        id(k)
        for c in ast.walk(scope)
        if isinstance(c, ast.Call) and ast.unparse(c.func).endswith("loss")
        for k in c.keywords
    }  # a distillation loss's temperature samples nothing
    lines = []
    for node in ast.walk(scope):
        if (
            isinstance(node, ast.keyword)
            and id(node) not in losses
            and node.arg in ("temperature", "ASSISTANT_TEMPERATURE")
        ):
            if (value := _number(node.value)) is not None and value > 0:
                lines.append(node.value.lineno)
        elif isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values):
                if isinstance(key, ast.Constant) and key.value == "temperature" and (_number(value) or 0) > 0:
                    lines.append(value.lineno)
        elif isinstance(node, ast.List | ast.Tuple | ast.Call):
            items = node.args if isinstance(node, ast.Call) else node.elts
            for flag, value in zip(items, items[1:]):
                if isinstance(flag, ast.Constant) and flag.value == "--temperature" and (_number(value) or 0) > 0:
                    lines.append(value.lineno)
    return lines


def _seeded_or_marked(function: ast.FunctionDef) -> bool:
    source = ast.unparse(function)
    return "seed" in source or any("samples" in ast.unparse(d) for d in function.decorator_list)


def test_no_test_samples_the_model_without_a_seed() -> None:
    """A literal temperature above 0 in a test needs a seed in the same function, or ``@pytest.mark.samples``:
    a sampled answer differs from run to run, and a test asserting on one fails CI by chance (issue 30). This
    catches what the in-process check in ``conftest.py`` cannot: asks made through a child process."""
    offenders = []
    for path in sorted(Path(__file__).parent.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for function in [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]:
            body = ast.Module(body=function.body, type_ignores=[])
            if (lines := _sampled_temperatures(body)) and not _seeded_or_marked(function):  # type: ignore[arg-type]
                offenders += [f"{path.relative_to(Path(__file__).parent)}:{line} ({function.name})" for line in lines]
    assert offenders == [], "unseeded temperature > 0 (pass a seed or mark @pytest.mark.samples('why')):\n" + "\n".join(
        offenders
    )
