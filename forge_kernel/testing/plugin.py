"""pytest plugin (``pytest11`` entry point ``forge_kernel``): fixtures for testing forge and
its plugins. Importing it never imports torch."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from forge_kernel.testing.fixtures import (  # noqa: F401 - fixtures registered by import
    forge_cli,
    forge_hook_recorder,
    forge_host,
    register_plugin,
)
from forge_kernel.testing.server import ForgeServer, start_server


@pytest.fixture()
def forge_server(tmp_path: Path) -> Iterator[Callable[..., ForgeServer]]:
    """Factory starting real ``forge serve`` processes on 127.0.0.1; all are stopped (SIGTERM)
    at teardown, and a server that did not exit cleanly fails the test."""
    started: list[ForgeServer] = []

    def start(*args: str, env: dict[str, str] | None = None, home: Path | None = None,
              ready_path: str = "/v1/models", headers: dict[str, str] | None = None
              ) -> ForgeServer:
        server = start_server(list(args), home or tmp_path / f"home{len(started)}", env,
                              ready_path, headers)
        started.append(server)
        return server

    yield start
    for server in started:
        code = server.stop()
        assert code == 0, f"forge serve exited with {code}:\n{server.log()[-3000:]}"
