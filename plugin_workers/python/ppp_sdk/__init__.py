"""Python SDK for Platform-Plugin Protocol (PPP) workers.

A plugin author writes one function and declares it::

    from ppp_sdk import Plugin, PluginError

    plugin = Plugin(
        primitive="subtract_numbers",
        input_schema={...},
        output_schema={...},
    )

    @plugin.handler
    def subtract(args, ctx):
        ctx.progress(50, "Performing...")
        return {"result": args["operand1"] - args["operand2"]}

and runs it: ``python -m ppp_sdk plugins.subtract_numbers:plugin --unix /path/worker.sock``.
A worker imports this SDK and its plugin, nothing of the platform.
"""

from ppp_sdk.plugin import InvocationContext, Plugin, PluginError
from ppp_sdk.server import serve

__all__ = ["InvocationContext", "Plugin", "PluginError", "serve"]
