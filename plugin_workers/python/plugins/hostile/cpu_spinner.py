"""cpu_spinner: spins the CPU forever; the invocation timeout must stop it (504, worker killed)."""

from ppp_sdk import InvocationContext

from plugins.hostile import hostile_plugin

plugin = hostile_plugin("cpu_spinner", "Spin the CPU without end.")


@plugin.handler
def spin(args: dict, ctx: InvocationContext) -> dict:
    ctx.progress(0, "spinning")
    while True:
        pass
