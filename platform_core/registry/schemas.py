"""JSON Schema validation of plugin input and output, with compiled validators cached."""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from jsonschema import Draft202012Validator, ValidationError


@lru_cache(maxsize=512)
def _validator(schema_json: str) -> Draft202012Validator:
    return Draft202012Validator(json.loads(schema_json), format_checker=Draft202012Validator.FORMAT_CHECKER)


def validator_for(schema: dict[str, Any]) -> Draft202012Validator:
    """The compiled validator of ``schema`` (one per distinct schema)."""
    return _validator(json.dumps(schema, sort_keys=True))


def schema_errors(
    schema: dict[str, Any] | Draft202012Validator, document: Any, *, limit: int = 10
) -> list[dict[str, str]]:
    """Where ``document`` breaks ``schema``: [{"path": "operand1", "message": ...}], empty when valid."""
    validator = schema if isinstance(schema, Draft202012Validator) else validator_for(schema)
    if validator.is_valid(document):  # the common case, without building error objects
        return []
    problems = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))[:limit]
    missing: dict[tuple[int, int], Iterator[str]] = {}
    return [{"path": _path(error, missing=missing) or "(root)", "message": error.message} for error in problems]


def _path(error: ValidationError, *, missing: dict[tuple[int, int], Iterator[str]]) -> str:
    """Where the problem is; a missing required property is named by its own path (``operand2``).

    jsonschema reports each property missing from a ``required`` list as an error of its own, at
    the object's path, in the list's order: ``missing`` pairs them with the names, so that no one
    has to read the name back out of the (English) message.
    """
    parts = [str(part) for part in error.absolute_path]
    if error.validator == "required" and isinstance(error.instance, dict) and isinstance(error.validator_value, list):
        key = (id(error.instance), id(error.validator_value))
        names = missing.setdefault(key, iter([n for n in error.validator_value if n not in error.instance]))
        if (name := next(names, None)) is not None:
            parts.append(str(name))
    return ".".join(parts)
