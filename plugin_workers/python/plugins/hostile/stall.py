"""stall: reports some progress, then never answers; the invocation timeout must stop it (504)."""

import threading

from ppp_sdk import InvocationContext

from plugins.hostile import hostile_plugin

plugin = hostile_plugin("stall", "Report progress, then hang forever.")


@plugin.handler
def stall(args: dict, ctx: InvocationContext) -> dict:
    ctx.progress(10, "started, and that is all")
    threading.Event().wait()  # forever
    return {}
