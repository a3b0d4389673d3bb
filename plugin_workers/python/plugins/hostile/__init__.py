"""Plugins that misbehave on purpose, to prove that the platform contains them.

Not in the built-in registry: the reliability tests register them (tests/reliability/hostile.py)
with the limits each case needs, on the process and the docker backend. Each module is one
plugin; what it does and what must stop it is in its docstring and in docs/RELIABILITY.md.

Two of them would harm the machine if nothing contained them, so they check first and refuse
(``PluginError`` code ``not_contained``) instead: the fork bomb forks only inside a pids limit,
the network opener resolves a public name only where its only network interface is loopback.
"""

from __future__ import annotations

from ppp_sdk import Plugin

ANY_OBJECT = {"type": "object"}


def hostile_plugin(primitive: str, description: str, input_schema: dict | None = None) -> Plugin:
    return Plugin(
        primitive=primitive,
        description=description,
        input_schema=input_schema or ANY_OBJECT,
        output_schema=ANY_OBJECT,
    )
