"""context_echo: answers with the context its worker was given (who calls, and the trace it is part of).

Not in the built-in registry: the observability tests register it to check what reaches a
worker (tests/observability/); a plugin author can copy it to see what a handler gets.
"""

from ppp_sdk import InvocationContext, Plugin

plugin = Plugin(
    primitive="context_echo",
    description="Answer with the invocation context the worker received.",
    input_schema={"type": "object"},
    output_schema={
        "type": "object",
        "required": ["tenant_id", "request_id", "traceparent", "tracestate"],
        "properties": {name: {"type": "string"} for name in ("tenant_id", "request_id", "traceparent", "tracestate")},
    },
)


@plugin.handler
def echo(args: dict, ctx: InvocationContext) -> dict:
    context = ctx.context
    return {
        "tenant_id": context.tenant_id,
        "request_id": context.request_id,
        "traceparent": ctx.traceparent,
        "tracestate": ctx.tracestate,
    }
