"""``forge pull``: bring a model into the store from a path, the Hugging Face Hub or a package.

Accepted references:

* a built-in name (``gemma3-270m``): recorded in place, nothing copied;
* a local path to a ``.gguf`` file or a Hugging Face directory: copied with a progress bar;
* ``owner/repo:FILE`` (one file, e.g. a GGUF) or ``owner/repo`` (a safetensors repository),
  optionally prefixed ``hf:`` or ``hf.co/``: downloaded with ``huggingface_hub`` (its progress
  bars, resumable downloads, ``HF_TOKEN`` and ``HF_ENDPOINT`` settings).

Every pull loads the model through the weight-loader plugins before it is listed, so a corrupt
file is reported (naming the file and the problem) and never registered.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from forge_kernel.errors import ForgeError
from forge_plugin_store.store import BUILTIN_MODELS, ModelRecord, ModelStore

HF_PATTERNS = ["*.safetensors", "*.json", "tokenizer.model", "*.txt", "*.jinja"]
"""Files of a safetensors repository that a pull downloads (weights, configs, tokenizer)."""


class HubUnavailable(ForgeError):
    """The Hugging Face Hub cannot be reached (offline, or HF_HUB_OFFLINE set)."""


def describe_model(path: Path) -> dict[str, Any]:
    """Open ``path`` through the loader plugins and summarize it for the manifest."""
    from forge_kernel.modeling import open_model_source

    source = open_model_source(path)
    try:
        meta = source.metadata
        quant = meta.get("quantization") or {}
        return {
            "format": source.format,
            "architecture": source.config.architecture,
            "parameters": int(meta.get("parameters") or 0),
            "quantization": _quant_label(quant, meta),
            "size_bytes": _size(path),
            "context_length": int(source.config.context_length),
        }
    finally:
        source.close()


def _quant_label(quant: Any, meta: dict[str, Any]) -> str:
    """Short label such as ``Q4_K_M`` (file type) or the dominant tensor type."""
    file_type = meta.get("file_type")
    if isinstance(file_type, int):  # GGUF general.file_type enum, e.g. 15 -> Q4_K_M
        try:
            import gguf

            return gguf.LlamaFileType(file_type).name.removeprefix("MOSTLY_")
        except (ImportError, ValueError):
            pass
    elif file_type:
        return str(file_type)
    if isinstance(quant, dict) and quant:
        def weight(item: tuple[str, Any]) -> float:
            value = item[1]
            return value.get("bytes", 0) if isinstance(value, dict) else float(value)
        return max(quant.items(), key=weight)[0]
    return str(quant or "")


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _copy_with_progress(src: Path, dst: Path) -> None:
    from tqdm import tqdm

    total = _size(src)
    files = [src] if src.is_file() else sorted(p for p in src.rglob("*") if p.is_file())
    with tqdm(total=total, unit="B", unit_scale=True, desc=f"copying {src.name}") as bar:
        for file in files:
            target = dst if src.is_file() else dst / file.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            with file.open("rb") as fin, target.open("wb") as fout:
                while chunk := fin.read(8 << 20):
                    fout.write(chunk)
                    bar.update(len(chunk))
            shutil.copystat(file, target)


def parse_hub_reference(reference: str) -> tuple[str, str | None]:
    """``hf:owner/repo:FILE`` -> ``("owner/repo", "FILE")``; the file part is optional."""
    ref = reference.removeprefix("hf:").removeprefix("hf.co/").removeprefix("huggingface.co/")
    repo, _, filename = ref.partition(":")
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise ForgeError(f"{reference!r} is not a model name, a path or a Hub reference "
                         "(owner/repo or owner/repo:FILE)")
    return repo, filename or None


def _download(repo: str, filename: str | None, staging: Path) -> Path:
    """Download into ``staging`` with huggingface_hub; offline -> :class:`HubUnavailable`."""
    try:
        import huggingface_hub
        from huggingface_hub import errors as hub_errors
    except ImportError:
        raise ForgeError(
            "pulling from the Hub needs huggingface_hub: pip install huggingface_hub"
        ) from None
    target = staging / "model"
    try:
        if filename:
            return Path(huggingface_hub.hf_hub_download(repo, filename, local_dir=target))
        huggingface_hub.snapshot_download(repo, local_dir=target, allow_patterns=HF_PATTERNS)
        return target
    # LocalEntryNotFoundError subclasses EntryNotFoundError in some releases: test it first.
    except hub_errors.LocalEntryNotFoundError:
        raise HubUnavailable(
            f"cannot download {repo}: the Hugging Face Hub is unreachable (offline, or "
            "HF_HUB_OFFLINE=1) and the file is not in the local Hub cache"
        ) from None
    except (hub_errors.RepositoryNotFoundError, hub_errors.EntryNotFoundError,
            hub_errors.RevisionNotFoundError) as exc:
        raise ForgeError(f"{repo}{':' + filename if filename else ''}: not found on the Hub "
                         f"({type(exc).__name__})") from None
    except OSError as exc:  # connection failures surface as OSError subclasses
        raise HubUnavailable(f"cannot download {repo}: {exc}") from None


def pull(reference: str, store: ModelStore | None = None, name: str | None = None) -> ModelRecord:
    """Add ``reference`` to the store under ``name`` (default: the reference itself)."""
    store = store or ModelStore()
    store.clean_partials()
    if reference in BUILTIN_MODELS:
        builtin = BUILTIN_MODELS[reference]
        return store.add(name or reference, f"builtin:{reference}",
                         lambda _staging: builtin.locate(), describe_model)
    local = Path(reference).expanduser()
    if local.exists():
        def fill_local(staging: Path) -> Path:
            target = staging / local.name
            _copy_with_progress(local, target)
            return target
        default_name = local.stem if local.is_file() else local.name
        return store.add(name or default_name, str(local.resolve()), fill_local, describe_model)
    repo, filename = parse_hub_reference(reference)
    label = f"{repo}:{filename}" if filename else repo
    return store.add(name or label, f"hf:{label}",
                     lambda staging: _download(repo, filename, staging), describe_model)
