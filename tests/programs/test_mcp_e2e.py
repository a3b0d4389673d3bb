"""MCP at /mcp, driven by the official MCP Python client against the running gateway."""

from __future__ import annotations

import asyncio
import json

import httpx2
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

pytestmark = pytest.mark.e2e


def _run(coroutine):
    return asyncio.run(coroutine)


async def _session(platform, key: str | None = None):
    client = httpx2.AsyncClient(headers={"Authorization": f"Bearer {key or platform.api_key}"}, timeout=60)
    return client, streamable_http_client(f"{platform.url}/mcp", http_client=client)


async def _with_session(platform, work, key: str | None = None):
    client, transport = await _session(platform, key)
    async with client, transport as streams:
        read, write = streams[0], streams[1]
        async with ClientSession(read, write) as session:
            await session.initialize()
            return await work(session)


def test_tools_list_has_the_plugins_with_their_schemas(programs_platform):
    async def work(session):
        return (await session.list_tools()).tools

    tools = {tool.name: tool for tool in _run(_with_session(programs_platform, work))}
    assert {"subtract_numbers", "slow_count", "divide_numbers"} <= set(tools)
    assert tools["slow_count"].input_schema["properties"]["steps"]["maximum"] == 100
    assert tools["subtract_numbers"].output_schema["type"] == "object"


def test_tools_call_is_an_invocation_with_progress_notifications(programs_platform, papi):
    progress: list[tuple[float, str | None]] = []

    async def on_progress(value, total, message):
        progress.append((value, message))

    async def work(session):
        return await session.call_tool("slow_count", {"steps": 3, "delay_ms": 50}, progress_callback=on_progress)

    result = _run(_with_session(programs_platform, work))
    assert not result.is_error
    assert result.structured_content["counted"] == 3
    assert json.loads(result.content[0].text)["counted"] == 3
    assert [round(p) for p, _ in progress] == [33, 67, 100] and progress[-1][1] == "Counted 3 of 3"
    invocation_id = result.meta["invocation_id"]
    stored = papi.get(f"/api/v1/invocations/{invocation_id}").json()
    assert stored["status"] == "succeeded" and stored["trace"][0]["detail"].startswith("MCP tools/call slow_count")
    assert stored["tenant_id"] == "e2e"


def test_a_failing_call_is_an_error_result(programs_platform):
    async def work(session):
        return (
            await session.call_tool("divide_numbers", {"operand1": 1, "operand2": 0}),
            await session.call_tool("no_such_tool", {}),
            await session.call_tool("slow_count", {"steps": 0}),
        )

    divided, unknown, invalid = _run(_with_session(programs_platform, work))
    assert divided.is_error and json.loads(divided.content[0].text)["error"]["code"] == "division_by_zero"
    assert unknown.is_error and json.loads(unknown.content[0].text)["http_status"] == 404
    assert invalid.is_error and json.loads(invalid.content[0].text)["error"]["code"] == "invalid_input"


def test_a_cancelled_call_cancels_the_invocation(programs_platform, papi):
    async def work(session):
        call = asyncio.ensure_future(session.call_tool("slow_count", {"steps": 100, "delay_ms": 100}))
        await asyncio.sleep(1.5)
        call.cancel()  # the client sends notifications/cancelled
        with pytest.raises(BaseException):  # noqa: B017 — cancelled, in whatever shape the SDK gives it
            await call
        await asyncio.sleep(0.5)

    _run(_with_session(programs_platform, work))

    def latest() -> dict:
        found = papi.get("/api/v1/invocations", params={"plugin": "slow_count", "page_size": 1}).json()
        return found["results"][0]

    from tests.support.platform import wait_for

    wait_for(lambda: latest()["status"] == "cancelled", what="the MCP call's invocation cancelled", timeout_s=20)
    assert latest()["error"]["code"] == "cancelled"


def test_mcp_needs_an_api_key(programs_platform):
    response = httpx2.post(
        f"{programs_platform.url}/mcp",
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        headers={"Accept": "application/json, text/event-stream"},
    )
    assert response.status_code == 401 and response.json()["error"]["code"] == "unauthenticated"
