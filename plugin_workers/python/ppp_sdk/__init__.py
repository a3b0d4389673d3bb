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

from __future__ import annotations

from typing import Any

from ppp_sdk.plugin import Cancelled, InvocationContext, Plugin, PluginError

__all__ = ["Cancelled", "InvocationContext", "Plugin", "PluginError", "serve"]


def __getattr__(name: str) -> Any:
    # serve() needs grpc, ~200 ms to import: imported on first use, so that ``import ppp_sdk``
    # stays light (the zygote must arrange to die with its supervisor before it imports grpc).
    if name == "serve":
        from ppp_sdk.server import serve

        return serve
    raise AttributeError(f"module 'ppp_sdk' has no attribute {name!r}")
