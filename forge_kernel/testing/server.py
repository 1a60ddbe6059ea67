"""Run a real ``forge serve`` in a subprocess on 127.0.0.1 for integration tests.

::

    def test_my_route(forge_server):
        server = forge_server("--kv-cache", "naive")
        assert httpx.get(server.url + "/my/route").status_code == 200

The server gets its own free port and ``FORGE_HOME``; it is stopped with SIGTERM at teardown
and its exit status and log are checked (a crash during a test fails that test).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

START_TIMEOUT = 180.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(slots=True)
class ForgeServer:
    """A running ``forge serve``: ``url`` (no trailing slash) and ``base_url`` (``/v1``)."""

    process: subprocess.Popen
    port: int
    home: Path
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, wait, and return the exit code (kills after ``timeout``)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def start_server(args: list[str], home: Path, env: dict[str, str] | None = None,
                 ready_path: str = "/v1/models", headers: dict[str, str] | None = None,
                 launcher: list[str] | None = None) -> ForgeServer:
    """Start ``forge serve ARGS`` and wait until ``ready_path`` answers (any non-5xx).

    ``launcher`` is the command that runs the ``forge`` CLI (default ``python -m
    forge_kernel``), e.g. a script that first makes a plugin unimportable."""
    port = free_port()
    home.mkdir(parents=True, exist_ok=True)
    log_path = home / f"serve-{port}.log"
    full_env = {**os.environ, "FORGE_HOME": str(home), "FORGE_LOG_FORMAT": "json",
                **(env or {})}
    cmd = [*(launcher or [sys.executable, "-m", "forge_kernel"]), "serve", "--host", "127.0.0.1",
           "--port", str(port), *args]
    with log_path.open("w") as log:
        process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=full_env)
    server = ForgeServer(process, port, home, log_path, full_env)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"forge serve exited with {process.returncode}:\n{server.log()}")
        try:
            if httpx.get(server.url + ready_path, headers=headers, timeout=2).status_code < 500:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"forge serve did not become ready in {START_TIMEOUT} s:\n{server.log()}")
