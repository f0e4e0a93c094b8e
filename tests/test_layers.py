"""The layout's rules: which package may import which, and no import cycles (issue 25).

Data flows one way — front doors (cli, tui, server) → chat (session, escalation) → models (engine, registry) →
storage — and distill_tools is a library of its own beside them. Every import counts, the ones made inside a
function too: a lazy import hides an edge from the reader, not from the graph.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASE = {"assistant", "assistant.config", "assistant.text_safety"}

# package → the packages it may import (besides itself). "assistant" is the root (AssistantError, __version__).
ALLOWED: dict[str, set[str]] = {
    "assistant": set(),
    "assistant.text_safety": {"assistant"},
    "assistant.storage": {"assistant"},
    "assistant.config": {"assistant", "assistant.storage.files"},
    "assistant.models": BASE | {"assistant.storage"},
    "assistant.documents": BASE | {"assistant.storage"},  # your documents' index and its search
    "assistant.chat": BASE | {"assistant.storage", "assistant.models", "assistant.documents"},
    "assistant.server": BASE | {"assistant.storage", "assistant.models", "assistant.chat", "assistant.documents"},
    "assistant.tui": BASE | {"assistant.storage", "assistant.models", "assistant.chat", "assistant.documents"},
    "assistant.cli": BASE
    | {"assistant.storage", "assistant.models", "assistant.chat", "assistant.server", "assistant.tui", "distill_tools"}
    | {"assistant.documents"},
    "assistant.__main__": {"assistant.cli"},
    "distill_tools": {"assistant", "assistant.config", "assistant.storage.files", "assistant.models"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_of(module: str) -> str:
    """The layer a module belongs to: ``assistant.chat.session`` → ``assistant.chat``."""
    parts = module.split(".")
    if parts[0] == "distill_tools":
        return "distill_tools"
    return ".".join(parts[:2]) if len(parts) > 1 else "assistant"


def imports() -> dict[str, set[str]]:
    """Each of our modules → every module of ours it imports (at its top or inside a function)."""
    ours = {module_name(p): p for pkg in ("assistant", "distill_tools") for p in (ROOT / pkg).rglob("*.py")}
    graph: dict[str, set[str]] = defaultdict(set)
    for module, path in ours.items():
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:  # `from a.b import C` names module a.b; `from a import b, c` modules a.b and a.c
                while name and name not in ours:
                    name = name.rpartition(".")[0]
                if name and name != module:
                    graph[module].add(name)
    return {m: graph[m] for m in ours}


def allowed(source: str, target: str) -> bool:
    layer = package_of(source)
    if package_of(target) == layer:
        return True
    return any(target == rule or (rule != "assistant" and target.startswith(rule + ".")) for rule in ALLOWED[layer])


def test_every_package_imports_only_the_layers_below_it() -> None:
    graph = imports()
    assert set(map(package_of, graph)) <= set(ALLOWED), "a new package needs its rule in ALLOWED"
    wrong = sorted(f"{s} imports {t}" for s, targets in graph.items() for t in targets if not allowed(s, t))
    assert wrong == [], "\n".join(wrong)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_cycles() -> None:
    assert (found := cycles(imports())) == [], found


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
