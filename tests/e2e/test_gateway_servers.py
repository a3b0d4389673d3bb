"""The gateway on each supported HTTP server (GATEWAY_SERVER): the API and the live WebSocket work.

uvicorn, the default, is what every other end-to-end test runs on; granian and daphne are the
documented alternatives (README, configuration), so each gets the same two checks here.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.support.platform import Platform

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module", params=["granian", "daphne"])
def served(request):
    platform = Platform(extra_env={"GATEWAY_SERVER": request.param}).start()
    try:
        yield request.param, platform
    finally:
        platform.stop()


def test_it_answers_and_records_an_invocation(served):
    server, platform = served
    assert f"{server}" in platform.log("gateway") or server == "daphne"  # rungateway names its server
    with platform.client() as client:
        response = client.post("/api/v1/calculate/subtract", json={"operand1": 10, "operand2": 5})
        assert response.status_code == 200, response.text
        assert response.json()["result"] == 5.0
        stored = client.get(f"/api/v1/invocations/{response.json()['invocation_id']}")
        assert stored.status_code == 200 and stored.json()["status"] == "succeeded"
        refused = client.post("/api/v1/calculate/subtract", content=b'{"operand1": NaN, "operand2": 1}')
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "invalid_input"


async def test_it_streams_an_invocation_live_to_a_dashboard_websocket(served):
    _, platform = served
    session = platform.staff_session()
    async with (
        connect(
            platform.url.replace("http://", "ws://") + "/ws/live/",
            origin=platform.url,
            additional_headers={"Cookie": f"sessionid={session}"},
        ) as websocket,
        httpx.AsyncClient(
            base_url=platform.url, headers={"Authorization": f"Bearer {platform.api_key}"}, timeout=60
        ) as client,
    ):
        call = asyncio.create_task(client.post("/api/v1/plugins/slow_count/invoke", json={"steps": 3, "delay_ms": 200}))
        received, progress_before_answer = "", False
        async with asyncio.timeout(60):
            while not (
                call.done() and call.result().json()["invocation_id"] in received and "status-succeeded" in received
            ):
                try:
                    received += str(await asyncio.wait_for(websocket.recv(), 0.5))
                except TimeoutError:
                    continue
                progress_before_answer |= 'data-kind="progress"' in received and not call.done()
        response = await call
    assert response.status_code == 200, response.text
    assert progress_before_answer  # streamed while the invocation ran, not after
    assert 'data-kind="progress"' in received
