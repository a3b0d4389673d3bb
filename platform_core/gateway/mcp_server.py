"""The Model Context Protocol at ``/mcp`` (Streamable HTTP), with the official ``mcp`` package.

Agents discover and call plugins as MCP tools. Authenticated with the same API keys as the REST
API (``InvocationEdge`` checks the key of every HTTP request before it reaches the MCP app and
puts the caller in the ASGI scope), and scoped to the key's tenant: a call runs as that tenant,
under its quotas, and is recorded and traced like any invocation (``service.invocation_submit``:
it draws live in the dashboard).

* ``tools/list``: the enabled plugins, with their input and output JSON Schemas;
* ``tools/call``: one invocation; the result as ``structuredContent`` (and as JSON text), a
  failure as ``isError`` with the REST API's error body;
* PPP progress becomes ``notifications/progress`` when the call carried a ``progressToken``;
* ``notifications/cancelled`` for a call cancels its invocation (it ends ``cancelled``).

MCP sessions live in the gateway process that created them: with several gateway processes
(``GATEWAY_PROCESSES``), an MCP client must reach the same process for the whole session.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from typing import Any

import mcp_types as types
from asgiref.sync import sync_to_async
from mcp.server.lowlevel import Server
from mcp.server.transport_security import TransportSecuritySettings

from platform_core.gateway import cancellation, service
from platform_core.invocations.vocabulary import EventKind as K
from platform_core.registry.models import PluginSpec
from platform_core.registry.selectors import plugins_list
from platform_core.tenancy.callers import Caller

log = logging.getLogger(__name__)

CALLER_KEY = "platform.caller"
PATH = "/mcp"


def _tool(plugin: PluginSpec) -> types.Tool:
    input_schema = plugin.input_schema if isinstance(plugin.input_schema, dict) else {}
    if input_schema.get("type") != "object":
        input_schema = {"type": "object", "properties": {}}
    output_schema = plugin.output_schema if isinstance(plugin.output_schema, dict) else None
    if output_schema is not None and output_schema.get("type") != "object":
        output_schema = None  # MCP wants an object at the root; the result still goes as JSON text
    return types.Tool(
        name=plugin.name,
        description=plugin.description or f"The {plugin.name} plugin ({plugin.runtime_id})",
        input_schema=input_schema,
        output_schema=output_schema,
    )


async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
    plugins = await sync_to_async(plugins_list)()
    return types.ListToolsResult(tools=[_tool(plugin) for plugin in plugins])


def _caller(ctx: Any) -> Caller:
    request = ctx.request
    caller = request.scope.get(CALLER_KEY) if request is not None else None
    if not isinstance(caller, Caller):  # the edge lets no request through without one
        raise PermissionError("no authenticated caller")
    return caller


async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
    caller = _caller(ctx)
    invocation_id = str(uuid.uuid4())
    progress: asyncio.Queue[tuple[float, str]] = asyncio.Queue()

    def listener(item: dict[str, Any]) -> None:
        event = item.get("event")
        if event is not None and event.kind == K.PROGRESS and event.data:
            progress.put_nowait((float(event.data.get("percent", 0)), str(event.data.get("message", ""))))

    async def report() -> None:
        while True:
            percent, message = await progress.get()
            with contextlib.suppress(Exception):  # a client gone away; the invocation goes on
                await ctx.session.report_progress(percent, 100.0, message)

    reporter = asyncio.ensure_future(report())
    submit = asyncio.ensure_future(
        service.invocation_submit(
            name=params.name,
            body=json.dumps(params.arguments or {}).encode(),
            caller=caller,
            origin=f"MCP tools/call {params.name}",
            invocation_id=invocation_id,
            listener=listener,
        )
    )
    try:
        outcome = await asyncio.shield(submit)
    except asyncio.CancelledError:  # notifications/cancelled (or the session closed)
        cancellation.cancel_local(invocation_id)
        raise
    finally:
        reporter.cancel()
    status, body, _ = service.answer(outcome, style="invoke", name=params.name)
    if status == 200:
        result = body["result"]
        return types.CallToolResult(
            content=[types.TextContent(text=json.dumps(result))],
            structured_content=result if isinstance(result, dict) else None,
            _meta={"invocation_id": invocation_id},
        )
    return types.CallToolResult(
        content=[types.TextContent(text=json.dumps({**body, "http_status": status}))],
        is_error=True,
        _meta={"invocation_id": invocation_id},
    )


server: Server[Any] = Server(
    "plugin-platform",
    version="1",
    instructions="Each tool is a plugin of the platform; every call is recorded and traced.",
    on_list_tools=list_tools,
    on_call_tool=call_tool,
)
# The edge checks hosts (DJANGO_ALLOWED_HOSTS) and the API key; no browser cookie is honoured here.
application = server.streamable_http_app(
    streamable_http_path=PATH,
    transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
)


_running: asyncio.Event | None = None
_runner: asyncio.Task[None] | None = None


async def _serve_sessions_forever(running: asyncio.Event) -> None:
    async with server.session_manager.run():
        running.set()
        await asyncio.Event().wait()


async def ready() -> None:
    """Start this process's MCP session manager (its task group) unless it runs already."""
    global _running, _runner
    if _runner is None:
        _running = asyncio.Event()
        _runner = asyncio.ensure_future(_serve_sessions_forever(_running))
    assert _running is not None
    await _running.wait()


async def serve(scope: dict[str, Any], receive: Any, send: Any, *, caller: Caller) -> None:
    """Answer one HTTP request of the MCP endpoint for an authenticated ``caller``."""
    await ready()
    await application({**scope, CALLER_KEY: caller}, receive, send)
