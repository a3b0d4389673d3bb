"""huge_result: answers a result of MEGABYTES (over MAX_RESULT_BYTES: 502 invalid_output)."""

from ppp_sdk import InvocationContext

from plugins.hostile import hostile_plugin

plugin = hostile_plugin(
    "huge_result",
    "Return a result of MEGABYTES.",
    {"type": "object", "properties": {"megabytes": {"type": "integer", "minimum": 1, "maximum": 64}}},
)


@plugin.handler
def huge(args: dict, ctx: InvocationContext) -> dict:
    return {"data": "x" * (args.get("megabytes", 16) * 1024 * 1024)}
