"""Structured output: a JSON Schema (or llm's concise form) turned into a llama.cpp grammar, and the answer checked.

``parse_schema`` reads what a user gives (a file, a JSON string, or ``'name, age int, tags list'``);
``grammar_for`` builds the llama.cpp grammar that makes the model's sampling follow it; ``check``
parses an answer and validates it against the schema (the subset of JSON Schema that the grammar
enforces: types, properties/required/additionalProperties, items, enum/const, lengths, bounds,
anyOf/oneOf/allOf, local ``$ref``), raising one clear line when it does not conform. The CLI, a
persona and the server's ``response_format`` share these.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from assistant import AssistantError
from assistant.models.grammar_check import GrammarError, verify

CONCISE_TYPES: dict[str, dict[str, Any]] = {
    "str": {"type": "string"},
    "int": {"type": "integer"},
    "float": {"type": "number"},
    "bool": {"type": "boolean"},
    "list": {"type": "array", "items": {"type": "string"}},
}
JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
    "null": (type(None),),
}
MAX_DEPTH, MAX_NODES = 32, 4096  # a schema nested deeper or bigger than this is refused before it is converted
FIELD = re.compile(r"^([A-Za-z_][\w-]*)(?:\s+(\w+))?\s*(?::\s*(.*))?$", re.DOTALL)


class SchemaError(AssistantError):
    """The schema is invalid, or an answer does not conform to it."""


def parse_schema(text: str) -> dict[str, Any]:
    """A schema from a ``.json`` file path, a JSON string, or llm's concise form."""
    text = text.strip()
    if not text:
        raise SchemaError("empty schema")
    if _looks_like_path(text):
        path = Path(text).expanduser()
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise SchemaError(f"cannot read schema file {path}: {getattr(exc, 'strerror', None) or exc}") from None
    if text.lstrip().startswith("{"):
        try:
            schema = json.loads(text)
        except json.JSONDecodeError as exc:
            where = f"line {exc.lineno}, column {exc.colno}"
            raise SchemaError(f"the schema is not valid JSON: {exc.msg} ({where})") from None
        except RecursionError:
            raise SchemaError(f"the schema is nested too deeply (at most {MAX_DEPTH} levels)") from None
    else:
        schema = concise(text)
    _check_schema(schema)
    return schema


def _looks_like_path(text: str) -> bool:
    if text.startswith("{") or "\n" in text or len(text) > 1024:
        return False
    path = Path(text).expanduser()
    return path.suffix == ".json" or path.is_file()


def concise(text: str) -> dict[str, Any]:
    """llm's concise schema: ``'name, age int, bio: a short bio'`` (one field per line when descriptions hold commas).

    Types are str (default), int, float, bool and list (of strings); every field is required.
    """
    parts = text.splitlines() if "\n" in text.strip() else text.split(",")
    properties: dict[str, Any] = {}
    for part in (p.strip() for p in parts):
        if not part:
            continue
        match = FIELD.match(part)
        if not match or (match.group(2) and match.group(2) not in CONCISE_TYPES):
            raise SchemaError(
                f"cannot read schema field {part!r}: write 'name [type][: description]' "
                f"with type one of {', '.join(CONCISE_TYPES)}"
            )
        name, kind, description = match.groups()
        prop = dict(CONCISE_TYPES[kind or "str"])
        if description:
            prop["description"] = description.strip()
        properties[name] = prop
    if not properties:
        raise SchemaError("the schema names no fields")
    return {"type": "object", "properties": properties, "required": list(properties)}


def _check_schema(schema: Any) -> None:
    if not isinstance(schema, dict):
        raise SchemaError("a schema must be a JSON object")
    _check_size(schema)
    kinds = schema.get("type")
    for kind in kinds if isinstance(kinds, list) else [kinds] if kinds is not None else []:
        if kind not in JSON_TYPES:
            raise SchemaError(f"unknown type {kind!r} in the schema (use {', '.join(JSON_TYPES)})")


def _check_size(schema: dict[str, Any]) -> None:
    """At most ``MAX_DEPTH`` levels and ``MAX_NODES`` values (walked without recursion: any depth is safe)."""
    nodes, pending = 0, [(schema, 1)]
    while pending:
        node, depth = pending.pop()
        nodes += 1
        if depth > MAX_DEPTH:
            raise SchemaError(f"the schema is nested too deeply (at most {MAX_DEPTH} levels)")
        if nodes > MAX_NODES:
            raise SchemaError(f"the schema is too large (at most {MAX_NODES} values)")
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        pending.extend((child, depth + 1) for child in children)


def from_response_format(response_format: dict[str, Any] | None) -> dict[str, Any] | None:
    """The schema asked for by an OpenAI-style ``response_format`` (None for plain text)."""
    if not response_format or response_format.get("type") == "text":
        return None
    if response_format.get("type") == "json_object":
        return {"type": "object"}
    if response_format.get("type") == "json_schema":
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if schema is None:
            raise SchemaError("json_schema needs a 'schema' object")
        _check_schema(schema)
        return schema
    raise SchemaError(f"unsupported type {response_format.get('type')!r} (use text, json_object or json_schema)")


def instruction(schema: dict[str, Any]) -> str:
    """What the prompt tells the model, so the constrained answer is also a sensible one."""
    return f"Answer with a JSON value that follows this JSON Schema:\n{json.dumps(schema, ensure_ascii=False)}"


def grammar_for(schema: dict[str, Any]) -> Any:
    """The llama.cpp grammar (``llama_cpp.LlamaGrammar``) that only lets the model write conforming JSON.

    The grammar is read by llama.cpp's parser in a child process first (``grammar_check``): a schema whose grammar
    llama.cpp cannot use is a :class:`SchemaError`, never a crash of this process.
    """
    _check_schema(schema)
    return _grammar(json.dumps(schema))  # key order kept: it is the order the answer follows


# llama-cpp-python's converter lets a JSON string hold raw control characters (a newline in a poem), which no
# strict JSON parser accepts; llama.cpp's own converter excludes them, as this does
LOOSE_CHAR, STRICT_CHAR = r'char ::= [^"\\]', r'char ::= [^"\\\x7F\x00-\x1F]'


def gbnf(schema_json: str) -> str:
    """The GBNF grammar text for a JSON Schema (llama-cpp-python's converter, strings made strict)."""
    from llama_cpp.llama_grammar import json_schema_to_gbnf  # deliberately lazy: a schema is read before a model loads

    try:
        text = json_schema_to_gbnf(schema_json)
    except Exception as exc:  # the converter raises on schema features it does not support
        raise SchemaError(f"llama.cpp cannot turn this schema into a grammar: {exc}") from None
    return text.replace(LOOSE_CHAR, STRICT_CHAR)


@lru_cache(maxsize=16)
def _grammar(schema_json: str) -> Any:
    from llama_cpp import LlamaGrammar  # deliberately lazy, as above

    text = gbnf(schema_json)
    try:
        verify(text)
    except GrammarError as exc:
        raise SchemaError(f"this schema cannot be enforced: {exc}") from None
    return LlamaGrammar.from_string(text, verbose=False)


def check(answer: str, schema: dict[str, Any]) -> Any:
    """The answer parsed as JSON and validated; one clear line if it does not conform."""
    try:
        value = json.loads(answer)
    except json.JSONDecodeError as exc:
        raise SchemaError(f"the answer is not valid JSON ({exc.msg} at character {exc.pos})") from None
    if problem := first_problem(value, schema, schema):
        raise SchemaError(f"the answer does not match the schema: {problem}")
    return value


def first_problem(value: Any, schema: Any, root: dict[str, Any], where: str = "$") -> str:
    """The first way ``value`` breaks ``schema`` ("" if none)."""
    if schema is True or schema is None or schema == {}:
        return ""
    if schema is False:
        return f"{where} is not allowed"
    if "$ref" in schema:
        return first_problem(value, _resolve(schema["$ref"], root), root, where)
    for check_ in (_check_type, _check_choice, _check_combinators, _check_object, _check_array, _check_scalar):
        if problem := check_(value, schema, root, where):
            return problem
    return ""


def _resolve(ref: str, root: dict[str, Any]) -> Any:
    if not ref.startswith("#"):
        raise SchemaError(f"only local $ref is supported, not {ref!r}")
    node: Any = root
    for part in filter(None, ref[1:].split("/")):
        if not isinstance(node, dict) or part not in node:
            raise SchemaError(f"unresolvable $ref {ref!r}")
        node = node[part]
    return node


def _check_type(value: Any, schema: dict[str, Any], root: dict[str, Any], where: str) -> str:
    kinds = schema.get("type")
    if kinds is None:
        return ""
    kinds = kinds if isinstance(kinds, list) else [kinds]
    if any(_is(value, kind) for kind in kinds):
        return ""
    return f"{where} should be {' or '.join(kinds)}, got {json.dumps(value)[:40]}"


def _is(value: Any, kind: str) -> bool:
    if isinstance(value, bool) and kind in ("integer", "number"):
        return False
    if kind == "integer" and isinstance(value, float):
        return value.is_integer()
    return isinstance(value, JSON_TYPES.get(kind, ()))


def _check_choice(value: Any, schema: dict[str, Any], root: dict[str, Any], where: str) -> str:
    if "const" in schema and value != schema["const"]:
        return f"{where} should be {json.dumps(schema['const'])}"
    if "enum" in schema and value not in schema["enum"]:
        return f"{where} should be one of {json.dumps(schema['enum'])[:80]}"
    return ""


def _check_combinators(value: Any, schema: dict[str, Any], root: dict[str, Any], where: str) -> str:
    for sub in schema.get("allOf", []):
        if problem := first_problem(value, sub, root, where):
            return problem
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if options and all(first_problem(value, sub, root, where) for sub in options):
            return f"{where} matches none of the {key} alternatives"
    return ""


def _check_object(value: Any, schema: dict[str, Any], root: dict[str, Any], where: str) -> str:
    if not isinstance(value, dict):
        return ""
    properties = schema.get("properties", {})
    for name in schema.get("required", []):
        if name not in value:
            return f"{where} lacks the required field {name!r}"
    extra = schema.get("additionalProperties", True)
    for name, item in value.items():
        sub = properties.get(name, extra)
        if sub is False:
            return f"{where} has an unexpected field {name!r}"
        if problem := first_problem(item, sub, root, f"{where}.{name}"):
            return problem
    return ""


def _check_array(value: Any, schema: dict[str, Any], root: dict[str, Any], where: str) -> str:
    if not isinstance(value, list):
        return ""
    if len(value) < schema.get("minItems", 0):
        return f"{where} needs at least {schema['minItems']} items"
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        return f"{where} allows at most {schema['maxItems']} items"
    prefix = schema.get("prefixItems", [])
    for index, item in enumerate(value):
        sub = prefix[index] if index < len(prefix) else schema.get("items", True)
        if problem := first_problem(item, sub, root, f"{where}[{index}]"):
            return problem
    return ""


def _check_scalar(value: Any, schema: dict[str, Any], root: dict[str, Any], where: str) -> str:
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            return f"{where} should have at least {schema['minLength']} characters"
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            return f"{where} should have at most {schema['maxLength']} characters"
        if "pattern" in schema and not re.search(schema["pattern"], value):
            return f"{where} does not match the pattern {schema['pattern']!r}"
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            return f"{where} should be at least {schema['minimum']}"
        if "maximum" in schema and value > schema["maximum"]:
            return f"{where} should be at most {schema['maximum']}"
    return ""
