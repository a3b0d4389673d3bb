"""The plugins and runtimes the platform ships with (the seed's calculators, demos, and the
Python, Java and Node runtimes).

Loaded into the registry by migrations ``0002`` (plugins) and ``0005`` (runtimes) and by
``manage.py loadplugins`` (idempotent: it creates what is missing and leaves edits made in the
admin alone unless ``--reset``).
"""

from __future__ import annotations

from typing import Any

from platform_core.runtimes import BUILTIN_RUNTIMES, RuntimeSpec

BINARY_INPUT: dict[str, Any] = {
    "type": "object",
    "properties": {"operand1": {"type": "number"}, "operand2": {"type": "number"}},
    "required": ["operand1", "operand2"],
    "additionalProperties": False,
}


def binary_output(operation: str) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "result": {"type": "number"},
            "operation": {"const": operation},
            "operand1": {"type": "number"},
            "operand2": {"type": "number"},
        },
        "required": ["result", "operation", "operand1", "operand2"],
    }


def _calculator(name: str, operation: str, runtime: str, entrypoint: str, image: str, text: str) -> dict[str, Any]:
    return {
        "name": name,
        "operation": operation,
        "runtime": runtime,
        "entrypoint": entrypoint,
        "image": image,
        "description": text,
        "input_schema": BINARY_INPUT,
        "output_schema": binary_output(operation),
        "timeout_s": 30.0,
    }


SLOW_COUNT_INPUT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "steps": {"type": "integer", "minimum": 1, "maximum": 100, "default": 5},
        "delay_ms": {"type": "integer", "minimum": 0, "maximum": 10000, "default": 600},
    },
    "additionalProperties": False,
}
SLOW_COUNT_OUTPUT: dict[str, Any] = {
    "type": "object",
    "properties": {"counted": {"type": "integer"}, "elapsed_ms": {"type": "number"}},
    "required": ["counted", "elapsed_ms"],
}

COUNT_PRIMES_INPUT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "limit": {"type": "integer", "minimum": 2, "maximum": 100_000_000, "default": 1_000_000},
        "list": {"type": "boolean", "default": False, "description": "return the primes too (limit up to 10^7)"},
        "delay_ms": {"type": "integer", "minimum": 0, "maximum": 2000, "default": 0},
    },
    "additionalProperties": False,
}
COUNT_PRIMES_OUTPUT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "count": {"type": "integer"},
        "largest": {"type": "integer"},
        "primes": {"type": "array", "items": {"type": "integer"}},
        "elapsed_ms": {"type": "number"},
    },
    "required": ["count", "largest", "elapsed_ms"],
}

BUILTIN_PLUGINS: list[dict[str, Any]] = [
    _calculator(
        "add_numbers",
        "add",
        "java",
        "platform.workers.AddPluginService",
        "java-plugin-worker:latest",
        "operand1 + operand2 (Java worker).",
    ),
    _calculator(
        "multiply_numbers",
        "multiply",
        "java",
        "platform.workers.MultiplyPluginService",
        "java-plugin-worker:latest",
        "operand1 * operand2 (Java worker).",
    ),
    _calculator(
        "subtract_numbers",
        "subtract",
        "python",
        "plugins.subtract_numbers:plugin",
        "python-plugin-worker:latest",
        "operand1 - operand2 (Python worker).",
    ),
    _calculator(
        "divide_numbers",
        "divide",
        "python",
        "plugins.divide_numbers:plugin",
        "python-plugin-worker:latest",
        "operand1 / operand2 (Python worker); dividing by zero fails.",
    ),
    {
        "name": "slow_count",
        "operation": None,
        "runtime": "python",
        "entrypoint": "plugins.slow_count:plugin",
        "image": "python-plugin-worker:latest",
        "description": "Counts to `steps` with a progress message per step: watch it live.",
        "input_schema": SLOW_COUNT_INPUT,
        "output_schema": SLOW_COUNT_OUTPUT,
        "timeout_s": 120.0,
    },
    {
        "name": "slow_count_java",
        "operation": None,
        "runtime": "java",
        "entrypoint": "platform.workers.SlowCountPluginService",
        "image": "java-plugin-worker:latest",
        "description": "The Java twin of slow_count: a progress message per step.",
        "input_schema": SLOW_COUNT_INPUT,
        "output_schema": SLOW_COUNT_OUTPUT,
        "timeout_s": 120.0,
    },
    {
        "name": "count_primes",
        "operation": None,
        "runtime": "node",
        "entrypoint": "plugins/count_primes",
        "image": "",
        "description": "Counts the primes up to limit (Node.js worker, segmented sieve): a progress message per "
        "segment; delay_ms to watch it live, list for the primes themselves.",
        "input_schema": COUNT_PRIMES_INPUT,
        "output_schema": COUNT_PRIMES_OUTPUT,
        "timeout_s": 120.0,
    },
]


def runtime_fields(spec: RuntimeSpec) -> dict[str, Any]:
    """The ``Runtime`` model's fields (JSON lists and objects) of a spec, name excluded."""
    return spec.as_json()


def builtin_runtimes_load(runtime_model: Any, *, reset: bool = False) -> tuple[int, int]:
    """Create the built-in runtimes that are missing (overwrite them when ``reset``); (created, updated)."""
    entries = [{"name": name, **runtime_fields(spec)} for name, spec in BUILTIN_RUNTIMES.items()]
    return _load(runtime_model, entries, reset)


def builtin_plugins_load(plugin_model: Any, *, reset: bool = False) -> tuple[int, int]:
    """Create the built-in plugins that are missing (and overwrite them when ``reset``).

    Takes the model class so that migrations can pass their historical model (whose
    ``runtime`` is a plain name before migration 0005, a reference to a Runtime after it).
    Returns (created, updated).
    """
    runtime_key = "runtime_id" if plugin_model._meta.get_field("runtime").is_relation else "runtime"
    specs = [{(runtime_key if k == "runtime" else k): v for k, v in spec.items()} for spec in BUILTIN_PLUGINS]
    return _load(plugin_model, specs, reset)


def _load(model: Any, entries: list[dict[str, Any]], reset: bool) -> tuple[int, int]:
    created = updated = 0
    for spec in entries:
        fields = {k: v for k, v in spec.items() if k != "name"}
        if reset:
            _, was_created = model.objects.update_or_create(name=spec["name"], defaults=fields)
            created, updated = created + was_created, updated + (not was_created)
        else:
            _, was_created = model.objects.get_or_create(name=spec["name"], defaults=fields)
            created += was_created
    return created, updated
