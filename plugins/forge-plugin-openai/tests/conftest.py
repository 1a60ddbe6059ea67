"""One real ``forge serve`` (default model, Gemma 3 270M Q4_K_M) shared by the server tests.

The KV cache is deliberately small (32 blocks x 16 tokens = 512 tokens, ``--max-model-len
512``): 16 concurrent short streams fit, while a burst of long requests must be preempted and
recomputed, so one server covers both. Teardown sends SIGTERM and requires a clean exit.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from forge_kernel.testing.server import ForgeServer, start_server

SERVER_ARGS = ["--threads", "2", "--num-blocks", "32", "--block-size", "16",
               "--max-model-len", "512", "--max-batch-size", "16"]
MODEL = "gemma3-270m"


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ForgeServer]:
    home: Path = tmp_path_factory.mktemp("forge-openai-home")
    srv = start_server(SERVER_ARGS, home)
    yield srv
    code = srv.stop()
    assert code == 0, f"forge serve exited with {code}:\n{srv.log()[-3000:]}"
    assert "shut down" in srv.log()


@pytest.fixture(scope="session")
def client(server: ForgeServer):
    import openai

    return openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0,
                         timeout=120)


@pytest.fixture()
def async_client(server: ForgeServer):
    import openai

    return openai.AsyncOpenAI(base_url=server.base_url, api_key="unused", max_retries=0,
                              timeout=120)


def engine_stats(server: ForgeServer) -> dict:
    return httpx.get(server.base_url + "/forge/stats", timeout=10).json()


def wait_idle(server: ForgeServer, timeout: float = 30.0) -> dict:
    """Poll until no request is in flight and the KV cache is entirely free."""
    deadline = time.monotonic() + timeout
    stats = engine_stats(server)
    while time.monotonic() < deadline:
        stats = engine_stats(server)
        if (stats["num_requests"] == 0 and stats["num_running"] == 0
                and stats["kv_free_tokens"] == stats["kv_capacity_tokens"]):
            return stats
        time.sleep(0.1)
    raise AssertionError(f"engine did not become idle: {stats}")
