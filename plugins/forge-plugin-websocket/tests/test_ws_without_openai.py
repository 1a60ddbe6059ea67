"""``/v1/ws`` of a real ``forge serve`` in a process where forge-plugin-openai cannot be
imported at all: the WebSocket plugin depends only on forge-plugin-protocol (and the kernel),
so it serves generations on its own. Driven with the real ``websockets`` client."""

from __future__ import annotations

import asyncio
import json
import sys

import httpx
import pytest
import websockets

from forge_kernel.testing.server import start_server

LAUNCHER = '''\
import importlib.abc
import sys


class BlockOpenAI(importlib.abc.MetaPathFinder):
    """Every import of forge_plugin_openai fails, as if it were not installed."""

    def find_spec(self, name, path=None, target=None):
        if name == "forge_plugin_openai" or name.startswith("forge_plugin_openai."):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)")
        return None


sys.meta_path.insert(0, BlockOpenAI())
from forge_kernel.cli import main

main(prog_name="forge")
'''


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    testing = pytest.importorskip("forge_plugin_models.testing")
    work = tmp_path_factory.mktemp("ws-alone")
    model = testing.write_gguf(testing.make_hf("llama"), work / "tiny-llama.gguf")
    launcher = work / "forge_without_openai.py"
    launcher.write_text(LAUNCHER)
    srv = start_server(["--model", str(model), "--threads", "2", "--kv-cache", "naive"],
                       work / "home", ready_path="/v1/ws/stats",
                       launcher=[sys.executable, str(launcher)])
    yield srv
    assert srv.stop() == 0, srv.log()[-3000:]


def test_the_openai_plugin_is_really_absent(server) -> None:
    log = server.log()
    assert "forge_plugin_openai" in log and "blocked by the test" in log  # skipped, reported
    banner = next(line for line in log.splitlines() if line.startswith("forge serving"))
    endpoints = banner.split("endpoints: ")[1].split(", ")
    assert "websocket" in endpoints and "openai" not in endpoints
    assert httpx.get(server.base_url + "/models", timeout=10).status_code == 404


async def _generate(url: str) -> list[dict]:
    async with websockets.connect(url) as ws:
        await ws.send(json.dumps({"type": "completion", "id": "c1", "prompt": [1, 2, 3],
                                  "max_tokens": 5, "temperature": 0, "ignore_eos": True}))
        await ws.send(json.dumps({"type": "chat.completion", "id": "bad", "messages": []}))
        events = []
        while not any(e.get("id") == "c1" and e["type"] != "delta" for e in events):
            events.append(json.loads(await asyncio.wait_for(ws.recv(), 60)))
        return events


def test_websocket_generation_without_the_openai_plugin(server) -> None:
    events = asyncio.run(_generate(f"ws://127.0.0.1:{server.port}/v1/ws"))
    (bad,) = [e for e in events if e["id"] == "bad"]
    assert bad["type"] == "error" and bad["error"]["param"] == "messages"
    assert bad["error"]["type"] == "invalid_request_error"
    deltas = [e for e in events if e["id"] == "c1" and e["type"] == "delta"]
    done = events[-1]
    assert done["type"] == "done" and done["finish_reason"] == "length"
    assert done["usage"]["completion_tokens"] == 5 and done["usage"]["prompt_tokens"] == 3
    assert done["request_id"].startswith("wscmpl-")
    assert deltas and all(isinstance(d["text"], str) for d in deltas)
