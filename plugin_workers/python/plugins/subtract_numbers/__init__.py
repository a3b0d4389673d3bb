"""subtract_numbers: operand1 - operand2, as in the seed's Python worker."""

from ppp_sdk import InvocationContext, Plugin
from ppp_sdk.plugin import require_number

# Its input and output schemas are the registry's (platform_core/registry/builtin.py): the gateway
# validates against them, so the worker does not repeat them.
plugin = Plugin(
    primitive="subtract_numbers",
    description="Subtract operand2 from operand1.",
    # Microseconds of arithmetic: run on the worker's event loop, no thread hop.
    inline=True,
    ready_message="Subtract plugin ready",
)


@plugin.handler
def subtract(args: dict, ctx: InvocationContext) -> dict:
    operand1, operand2 = require_number(args, "operand1"), require_number(args, "operand2")
    ctx.log(f"Subtracting {operand2} from {operand1}")
    ctx.progress(50, "Performing...")
    return {"result": operand1 - operand2, "operation": "subtract", "operand1": operand1, "operand2": operand2}
