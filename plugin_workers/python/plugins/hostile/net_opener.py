"""net_opener: tries the network: a TCP connection to a loopback port, and a DNS resolution.

Docker: ``--network none`` leaves only its own loopback, where nothing listens, and no route
out. It resolves the public name only when loopback is its only interface, so that it never
sends anything off the machine where it is not contained; elsewhere it refuses.
"""

import socket
from pathlib import Path

from ppp_sdk import InvocationContext, PluginError

from plugins.hostile import hostile_plugin

plugin = hostile_plugin(
    "net_opener",
    "Try to connect to 127.0.0.1:PORT and to resolve a public name.",
    {
        "type": "object",
        "properties": {"port": {"type": "integer", "minimum": 1, "maximum": 65535}, "name": {"type": "string"}},
        "required": ["port"],
    },
)


def interfaces() -> set[str]:
    """This network namespace's interfaces (lo only under --network none)."""
    lines = Path("/proc/net/dev").read_text().splitlines()[2:]
    return {line.split(":", 1)[0].strip() for line in lines}


@plugin.handler
def open_network(args: dict, ctx: InvocationContext) -> dict:
    outcome = {}
    try:
        with socket.create_connection(("127.0.0.1", args["port"]), timeout=2):
            outcome["loopback"] = "connected"
    except OSError as exc:
        outcome["loopback"] = f"failed: {exc}"
    if interfaces() - {"lo"}:
        raise PluginError(
            f"refusing to resolve a public name with interfaces {sorted(interfaces())}", code="not_contained"
        )
    try:
        outcome["resolve"] = f"resolved: {socket.getaddrinfo(args.get('name', 'example.com'), 443)[0][4]}"
    except OSError as exc:
        outcome["resolve"] = f"failed: {exc}"
    return outcome
