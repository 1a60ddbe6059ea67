"""Start and stop the servers bench_serving.py compares: ``forge serve`` and llama.cpp's
``llama-server`` on the same GGUF file, each on a free local port, one at a time.

Used by ``bench_serving.py --launch``; nothing listens beyond 127.0.0.1.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx

PEER_SERVER = Path.home() / ".cache" / "forge-peer" / "bin" / "llama-server"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def command(name: str, model: Path, port: int, threads: int, parallel: int) -> list[str]:
    """The command line that serves ``model`` as ``name`` (``forge`` or ``llama-server``)."""
    if name == "forge":
        forge = shutil.which("forge") or str(Path(sys.executable).with_name("forge"))
        return [forge, "serve", "--model", str(model), "--port", str(port),
                "--threads", str(threads)]
    if name == "llama-server":
        if not PEER_SERVER.exists():
            raise SystemExit(f"{PEER_SERVER} is missing: run bash ../shared/peer/"
                             f"build-llama-server.sh (or /work/shared/peer/...) first")
        # -c is shared by the -np slots: 288 tokens each (~120 prompt + 128 out), about the
        # 4096-token KV budget forge serve reserves by default, so both hold similar KV memory.
        return [str(PEER_SERVER), "-m", str(model), "--host", "127.0.0.1", "--port", str(port),
                "-c", str(288 * parallel), "-np", str(parallel), "-t", str(threads)]
    raise SystemExit(f"unknown server {name!r} (forge, llama-server)")


@contextmanager
def serving(name: str, model: Path, threads: int, parallel: int, timeout: float = 900.0):
    """Run one server; yields ``(base_url, pid)`` once ``/v1/models`` answers."""
    port = free_port()
    cmd = command(name, model, port, threads, parallel)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace")[-2000:]
                raise SystemExit(f"{name} exited ({proc.returncode}) before serving:\n{err}")
            try:
                if httpx.get(url + "/models", timeout=2.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"{name} did not answer on {url} within {timeout:.0f}s")
            time.sleep(0.5)
        yield url, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
