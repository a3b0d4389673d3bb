"""slow_count: counts to ``steps``, one progress message per step, for watching progress live."""

import time

from ppp_sdk import InvocationContext, Plugin

plugin = Plugin(
    primitive="slow_count",
    description="Count from 1 to steps, sleeping delay_ms between steps, reporting progress.",
    input_schema={
        "type": "object",
        "properties": {
            "steps": {"type": "integer", "minimum": 1, "maximum": 100, "default": 5},
            "delay_ms": {"type": "integer", "minimum": 0, "maximum": 10000, "default": 600},
        },
        "additionalProperties": False,
    },
    output_schema={
        "type": "object",
        "properties": {"counted": {"type": "integer"}, "elapsed_ms": {"type": "number"}},
        "required": ["counted", "elapsed_ms"],
    },
    ready_message="Slow counter ready",
)


@plugin.handler
def count(args: dict, ctx: InvocationContext) -> dict:
    steps, delay = int(args.get("steps", 5)), int(args.get("delay_ms", 600)) / 1000
    started = time.monotonic()
    for step in range(1, steps + 1):
        time.sleep(delay)
        ctx.progress(100 * step / steps, f"Counted {step} of {steps}")
    return {"counted": steps, "elapsed_ms": round((time.monotonic() - started) * 1000, 1)}
