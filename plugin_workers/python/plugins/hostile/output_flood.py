"""output_flood: prints megabytes to stdout and sends thousands of log lines, then answers.

What is kept per invocation is bounded (MAX_LOG_BYTES): the invocation succeeds, its
``worker_log`` is cut and ``worker_log_truncated`` is true.
"""

import sys

from ppp_sdk import InvocationContext

from plugins.hostile import hostile_plugin

plugin = hostile_plugin(
    "output_flood",
    "Print MEGABYTES of output and LOG_LINES log messages.",
    {
        "type": "object",
        "properties": {
            "megabytes": {"type": "integer", "minimum": 0, "maximum": 64},
            "log_lines": {"type": "integer", "minimum": 0, "maximum": 100000},
        },
    },
)


@plugin.handler
def flood(args: dict, ctx: InvocationContext) -> dict:
    line = "flood " + "x" * 1017 + "\n"  # 1 KiB
    for _ in range(args.get("megabytes", 4) * 1024):
        sys.stdout.write(line)
    sys.stdout.flush()
    for number in range(args.get("log_lines", 2000)):
        ctx.log(f"log line {number} " + "y" * 200)
    return {"printed_bytes": args.get("megabytes", 4) * 1024 * 1024}
