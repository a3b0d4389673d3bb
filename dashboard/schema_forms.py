"""HTML forms generated from a plugin's input JSON Schema, and their posts turned back into JSON.

Values are converted by the type the schema declares and otherwise passed on as typed, so that
the gateway's own schema validation judges them and its message is shown next to the field.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

# The whole arguments document, for schemas that are not an object with properties.
WHOLE_DOCUMENT = "__arguments__"
_SIMPLE_TYPES = {"number", "integer", "string", "boolean"}


@dataclass
class FormField:
    name: str
    kind: str  # number | integer | string | boolean | enum | json
    label: str
    required: bool = False
    description: str = ""
    value: str = ""
    choices: list[tuple[str, str]] = field(default_factory=list)  # (JSON-encoded value, label)
    minimum: Any = None
    maximum: Any = None
    error: str = ""

    @property
    def input_id(self) -> str:
        return f"field-{self.name}"


def _initial(kind: str, schema: Mapping[str, Any]) -> str:
    if "default" not in schema:
        return ""
    default = schema["default"]
    if kind == "json" or kind == "enum":
        return json.dumps(default, indent=1 if kind == "json" else None)
    if kind == "boolean":
        return "true" if default else "false"
    return str(default)


def _kind(schema: Mapping[str, Any]) -> str:
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return "enum"
    kind = schema.get("type")
    return kind if isinstance(kind, str) and kind in _SIMPLE_TYPES else "json"


def form_fields(schema: Mapping[str, Any]) -> list[FormField]:
    """One field per property of an object schema; a single JSON field for anything else."""
    properties = schema.get("properties") if schema.get("type") == "object" else None
    if not isinstance(properties, dict) or not properties:
        initial = json.dumps(schema.get("default", {}), indent=1)
        return [FormField(WHOLE_DOCUMENT, "json", "Arguments (JSON)", required=True, value=initial)]
    required = set(schema.get("required") or [])
    fields = []
    for name, prop in properties.items():
        prop = prop if isinstance(prop, dict) else {}
        kind = _kind(prop)
        fields.append(
            FormField(
                name=name,
                kind=kind,
                label=str(prop.get("title") or name),
                required=name in required,
                description=str(prop.get("description", "")),
                value=_initial(kind, prop),
                choices=[(json.dumps(v), str(v)) for v in prop.get("enum", [])] if kind == "enum" else [],
                minimum=prop.get("minimum"),
                maximum=prop.get("maximum"),
            )
        )
    return fields


def fields_filled(fields: list[FormField], arguments: Any) -> list[FormField]:
    """``fields`` showing ``arguments`` (an earlier invocation's, to run it again)."""
    for form_field in fields:
        if form_field.name == WHOLE_DOCUMENT:
            form_field.value = json.dumps(arguments, indent=1)
        elif isinstance(arguments, dict) and form_field.name in arguments:
            form_field.value = _shown(form_field.kind, arguments[form_field.name])
        elif isinstance(arguments, dict):
            form_field.value = ""
    return fields


def _shown(kind: str, value: Any) -> str:
    """A JSON value as its form field shows it (the inverse of ``field_value``)."""
    if kind == "boolean" and isinstance(value, bool):
        return "true" if value else "false"
    if kind in {"number", "integer", "string"} and not isinstance(value, dict | list | bool) and value is not None:
        return str(value)
    return json.dumps(value, indent=1 if kind == "json" else None)


def _number(text: str, *, integer: bool) -> Any:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return text
    if not math.isfinite(number):
        return text
    return int(number) if integer and number.is_integer() else number


def field_value(form_field: FormField, raw: str) -> tuple[bool, Any]:
    """(present, value) of one posted field; raises ValueError for JSON that does not parse."""
    text = raw.strip() if form_field.kind != "string" else raw
    if text == "" and not (form_field.kind == "string" and form_field.required):
        return False, None
    if form_field.kind in {"number", "integer"}:
        return True, _number(text, integer=form_field.kind == "integer")
    if form_field.kind == "boolean":
        return True, {"true": True, "false": False}.get(text, text)
    if form_field.kind in {"enum", "json"}:
        try:
            return True, json.loads(text)
        except ValueError as exc:
            if form_field.kind == "enum":
                return True, text
            raise ValueError(f"not valid JSON: {exc}") from None
    return True, text


def arguments_from_post(fields: list[FormField], data: Mapping[str, str]) -> tuple[Any, dict[str, str]]:
    """The arguments document from a posted form, and the fields whose JSON did not parse.

    The fields keep what was typed (``value``) so that the form is shown again as sent.
    """
    arguments: dict[str, Any] = {}
    problems: dict[str, str] = {}
    for form_field in fields:
        raw = data.get(form_field.name, "")
        form_field.value = raw
        try:
            present, value = field_value(form_field, raw)
        except ValueError as exc:
            problems[form_field.name] = str(exc)
            continue
        if form_field.name == WHOLE_DOCUMENT:
            return value, problems
        if present:
            arguments[form_field.name] = value
    return arguments, problems


def errors_by_field(
    details: Iterable[Mapping[str, str]] | None, names: Iterable[str]
) -> tuple[dict[str, str], list[str]]:
    """The gateway's 400 ``details`` ([{path, message}]) placed next to form fields.

    ``path`` is the field (or ``field.sub.path``), a missing required field's included. What fits
    no field is returned apart.
    """
    known = set(names)
    by_field: dict[str, str] = {}
    general: list[str] = []
    for problem in details or []:
        path, message = str(problem.get("path", "")), str(problem.get("message", ""))
        name = path.split(".", 1)[0]
        if name in known:
            by_field.setdefault(name, message)
        elif WHOLE_DOCUMENT in known:
            by_field.setdefault(WHOLE_DOCUMENT, f"{path}: {message}")
        else:
            general.append(f"{path}: {message}")
    return by_field, general
