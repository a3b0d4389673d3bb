"""JSON Schema validation of plugin input and output, with compiled validators cached."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from jsonschema import Draft202012Validator


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
    return [
        {"path": ".".join(str(p) for p in error.absolute_path) or "(root)", "message": error.message}
        for error in problems
    ]
