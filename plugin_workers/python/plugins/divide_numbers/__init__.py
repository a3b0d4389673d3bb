"""divide_numbers: operand1 / operand2; division by zero is a plugin failure, not a crash."""

from ppp_sdk import InvocationContext, Plugin, PluginError
from ppp_sdk.plugin import require_number

# Its input and output schemas are the registry's (platform_core/registry/builtin.py): the gateway
# validates against them, so the worker does not repeat them.
plugin = Plugin(
    primitive="divide_numbers",
    description="Divide operand1 by operand2.",
    # Microseconds of arithmetic: run on the worker's event loop, no thread hop.
    inline=True,
    ready_message="Divide plugin ready",
)


@plugin.handler
def divide(args: dict, ctx: InvocationContext) -> dict:
    operand1, operand2 = require_number(args, "operand1"), require_number(args, "operand2")
    if operand2 == 0:
        raise PluginError(f"cannot divide {operand1} by zero", code="division_by_zero")
    ctx.log(f"Dividing {operand1} by {operand2}")
    ctx.progress(50, "Performing...")
    return {"result": operand1 / operand2, "operation": "divide", "operand1": operand1, "operand2": operand2}
