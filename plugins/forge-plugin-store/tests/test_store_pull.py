"""The model store and ``forge pull/list/show/rm`` on real model files.

Hub pulls run the real ``huggingface_hub`` client against a loopback server that speaks the
Hub's file-resolution protocol and serves a model we ship (the default GGUF), so the download
path is exercised end to end without the internet.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import shutil
import threading
from pathlib import Path

import pytest
from forge_plugin_store.pull import HubUnavailable, parse_hub_reference, pull
from forge_plugin_store.store import DEFAULT_MODEL, ModelNotFound, ModelStore, resolve_model

from forge_kernel.errors import ForgeError, ModelFormatError

pytest.importorskip("forge_plugin_gguf", reason="store tests load models through forge-plugin-gguf")

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture()
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("FORGE_HOME", str(tmp_path / "forge-home"))
    return tmp_path / "forge-home"


@pytest.fixture(scope="module")
def default_gguf() -> Path:
    return resolve_model(None)


def _listed(home: Path) -> list[str]:
    return [record.name for record, _ in ModelStore(home / "models").records()]


def _no_partials(home: Path) -> bool:
    root = home / "models"
    return not root.exists() or not any(p.name.startswith(".") for p in root.iterdir())


def test_default_model_resolves_to_packaged_gguf(default_gguf):
    assert default_gguf.suffix == ".gguf" and default_gguf.stat().st_size > 200_000_000
    assert resolve_model(DEFAULT_MODEL) == default_gguf


def test_unknown_model_error_says_how_to_get_it(home):
    with pytest.raises(ModelNotFound, match=r"forge pull nope-model"):
        resolve_model("nope-model")


def test_pull_builtin_records_in_place(home, default_gguf):
    record = pull(DEFAULT_MODEL)
    assert record.architecture == "gemma3"
    assert record.parameters > 200_000_000
    assert record.context_length >= 32768
    assert Path(record.path) == default_gguf  # referenced, not copied
    assert _listed(home) == [DEFAULT_MODEL]
    assert resolve_model(DEFAULT_MODEL) == default_gguf
    assert ModelStore().remove(DEFAULT_MODEL)
    assert default_gguf.exists()  # rm never deletes a packaged file


def test_pull_local_copy_then_rm(home, default_gguf, tmp_path):
    local = tmp_path / "mine.gguf"
    shutil.copyfile(default_gguf, local)
    record = pull(str(local))
    assert record.name == "mine"
    stored = resolve_model("mine")
    assert stored != local and stored.stat().st_size == local.stat().st_size
    assert ModelStore().remove("mine") and not stored.exists()


@pytest.mark.parametrize("damage", ["truncate", "magic"])
def test_corrupt_pull_names_the_file_and_registers_nothing(home, default_gguf, tmp_path, damage):
    bad = tmp_path / f"bad-{damage}.gguf"
    data = default_gguf.read_bytes()
    bad.write_bytes(data[: len(data) // 3] if damage == "truncate" else b"XXXX" + data[4:1 << 20])
    with pytest.raises(ModelFormatError) as info:
        pull(str(bad))
    assert bad.name in str(info.value)
    assert _listed(home) == [] and _no_partials(home)


def test_hub_reference_parsing():
    assert parse_hub_reference("hf:org/repo:model.gguf") == ("org/repo", "model.gguf")
    assert parse_hub_reference("org/repo") == ("org/repo", None)
    with pytest.raises(ForgeError, match="not a model name"):
        parse_hub_reference("justaname")


def test_hub_offline_is_a_clear_error(home, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(HubUnavailable, match="unreachable"):
        pull("someone/some-model:model.gguf")
    assert _listed(home) == [] and _no_partials(home)


class _FakeHub(http.server.BaseHTTPRequestHandler):
    """Serves ``/{owner}/{repo}/resolve/{revision}/{file}`` like the Hub does."""

    files: dict[str, Path] = {}

    def _target(self) -> Path | None:
        parts = self.path.split("?")[0].strip("/").split("/")
        if len(parts) >= 5 and parts[2] == "resolve":
            return self.files.get("/".join([parts[0], parts[1], *parts[4:]]))
        return None

    def _headers(self, path: Path) -> None:
        self.send_header("X-Repo-Commit", COMMIT)
        self.send_header("ETag", '"' + hashlib.sha1(str(path).encode()).hexdigest() + '"')
        self.send_header("Content-Length", str(path.stat().st_size))
        self.end_headers()

    def do_HEAD(self) -> None:  # noqa: N802 (http.server naming)
        path = self._target()
        if path is None:
            self.send_response(404)
            self.send_header("X-Error-Code", "EntryNotFound")
            self.end_headers()
            return
        self.send_response(200)
        self._headers(path)

    def do_GET(self) -> None:  # noqa: N802
        path = self._target()
        if path is None:
            self.send_response(404)
            self.end_headers()
            return
        self.send_response(200)
        self._headers(path)
        with path.open("rb") as fh:
            shutil.copyfileobj(fh, self.wfile)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def fake_hub(monkeypatch, default_gguf):
    _FakeHub.files = {"acme/tiny-gemma/model-q4.gguf": default_gguf}
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FakeHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(hub_constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                        endpoint + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    yield endpoint
    server.shutdown()


def test_hub_pull_downloads_validates_and_lists(home, fake_hub, default_gguf):
    record = pull("hf:acme/tiny-gemma:model-q4.gguf")
    assert record.name == "acme/tiny-gemma:model-q4.gguf"
    assert record.source == "hf:acme/tiny-gemma:model-q4.gguf"
    assert record.architecture == "gemma3"
    path = resolve_model(record.name)
    assert path.stat().st_size == default_gguf.stat().st_size
    _, directory = ModelStore().find(record.name)
    assert path.is_relative_to(directory)  # copied into the store, not left in a cache
    assert json.loads((directory / "manifest.json").read_text())["name"] == record.name


def test_hub_missing_file_is_a_clear_error(home, fake_hub):
    with pytest.raises(ForgeError, match="not found on the Hub"):
        pull("acme/tiny-gemma:absent.gguf")
    assert _listed(home) == [] and _no_partials(home)
