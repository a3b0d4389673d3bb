"""JSON Schema validation of plugin input and output, with compiled validators cached."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import jsonschema
from jsonschema import Draft202012Validator


@lru_cache(maxsize=512)
def _validator(schema_json: str) -> Draft202012Validator:
    import json

    return Draft202012Validator(json.loads(schema_json), format_checker=Draft202012Validator.FORMAT_CHECKER)


def schema_errors(schema: dict[str, Any], document: Any, *, limit: int = 10) -> list[dict[str, str]]:
    """Where ``document`` breaks ``schema``: [{"path": "operand1", "message": ...}], empty when valid."""
    import json

    validator = _validator(json.dumps(schema, sort_keys=True))
    problems = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))[:limit]
    return [
        {"path": ".".join(str(p) for p in error.absolute_path) or "(root)", "message": error.message}
        for error in problems
    ]


__all__ = ["jsonschema", "schema_errors"]
