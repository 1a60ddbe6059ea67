"""``forge pull``, ``forge list``, ``forge show`` and ``forge rm``: the model store commands."""

from __future__ import annotations

import datetime as dt
import json
import sys

import click

from forge_kernel.errors import ForgeError


def _human_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def _human_count(n: int) -> str:
    if n >= 1e9:
        return f"{n / 1e9:.2f}B"
    if n >= 1e6:
        return f"{n / 1e6:.0f}M"
    return str(n) if n else "-"


def _fail(exc: Exception) -> None:
    click.echo(f"Error: {exc}", err=True)
    sys.exit(1)


@click.command("pull")
@click.argument("reference")
@click.option("--name", help="Store the model under this name instead of REFERENCE.")
def pull_command(reference: str, name: str | None) -> None:
    """Add a model to the store: a built-in name (gemma3-270m), a local PATH, or a Hugging Face
    reference OWNER/REPO (safetensors) or OWNER/REPO:FILE (e.g. a GGUF file)."""
    from forge_plugin_store.pull import pull

    try:
        record = pull(reference, name=name)
    except (ForgeError, KeyError) as exc:
        _fail(exc)
    click.echo(f"pulled {record.name}: {record.architecture}, {_human_count(record.parameters)} "
               f"parameters, {record.quantization or record.format}, "
               f"{_human_bytes(record.size_bytes)}")


@click.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_command(as_json: bool) -> None:
    """List stored models."""
    from dataclasses import asdict

    from forge_plugin_store.store import ModelStore

    records = [record for record, _ in ModelStore().records()]
    if as_json:
        click.echo(json.dumps([asdict(r) for r in records], indent=2))
        return
    header = ("NAME", "ARCHITECTURE", "PARAMETERS", "QUANTIZATION", "SIZE", "MODIFIED")
    rows = [
        (r.name, r.architecture, _human_count(r.parameters), r.quantization or r.format,
         _human_bytes(r.size_bytes),
         dt.datetime.fromtimestamp(r.modified).strftime("%Y-%m-%d %H:%M"))
        for r in records
    ]
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        cells = (str(cell).ljust(width) for cell, width in zip(row, widths, strict=True))
        click.echo("  ".join(cells).rstrip())
    if not records:
        click.echo("(no models yet: `forge pull gemma3-270m` adds the built-in default)", err=True)


@click.command("show")
@click.argument("model", required=False)
@click.option("--template", is_flag=True, help="Print only the chat template.")
def show_command(model: str | None, template: bool) -> None:
    """Show a model's architecture, context length, quantization mix, tokenizer, chat template
    and license. Without MODEL, shows the default model."""
    from forge_kernel.modeling import open_model_source
    from forge_plugin_store.store import ModelStore, resolve_model

    try:
        path = resolve_model(model)
        found = ModelStore().find(model) if model else None
        record = found[0] if found else ModelStore().record_for(path)
        source = open_model_source(path)
    except (ForgeError, KeyError) as exc:
        _fail(exc)
    try:
        meta, cfg, tok = source.metadata, source.config, source.tokenizer
        chat_template = tok.chat_template or meta.get("chat_template")
        if template:
            click.echo(chat_template or "(none: the fallback template is used)")
            return
        lines = [
            ("file", str(source.path)),
            ("format", source.format),
            ("architecture", cfg.architecture),
            ("parameters", _human_count(int(meta.get("parameters") or 0))),
            ("context length", str(cfg.context_length)),
            ("embedding length", str(cfg.hidden_size)),
            ("layers", str(cfg.num_layers)),
            ("attention heads",
             f"{cfg.num_heads} (kv {cfg.num_kv_heads}, head dim {cfg.head_dim})"),
            ("tokenizer", f"{type(tok).__name__}, {tok.vocab_size} tokens, "
                          f"bos={tok.bos_id}, eos={sorted(tok.eos_ids)}"),
            ("chat template", "yes" if chat_template else "none (fallback)"),
            ("license", str(meta.get("license") or "unknown")),
        ]
        width = max(len(k) for k, _ in lines)
        click.echo("  Model")
        for key, value in lines:
            click.echo(f"    {key.ljust(width)}  {value}")
        quant = meta.get("quantization") or {}
        if quant:
            click.echo("  Quantization")
            for qtype, info in sorted(quant.items()):
                if isinstance(info, dict):
                    size = _human_bytes(int(info.get("bytes", 0)))
                    detail = f"{info.get('count', '?')} tensors, {size}"
                else:
                    detail = str(info)
                click.echo(f"    {qtype.ljust(width)}  {detail}")
        if record is not None and record.lineage:
            click.echo("  Lineage")
            for key, value in record.lineage.items():
                text = (", ".join(f"{k}: {v}" for k, v in value.items())
                        if isinstance(value, dict) else str(value))
                click.echo(f"    {key.ljust(width)}  {text}")
    finally:
        source.close()


@click.command("rm")
@click.argument("names", nargs=-1, required=True)
def rm_command(names: tuple[str, ...]) -> None:
    """Remove stored models (built-in files are never deleted, only their store entry)."""
    from forge_plugin_store.store import ModelStore

    store = ModelStore()
    missing = [n for n in names if not store.remove(n)]
    for name in names:
        if name not in missing:
            click.echo(f"deleted {name}")
    if missing:
        click.echo(f"Error: not in the store: {', '.join(missing)} (see `forge list`)", err=True)
        sys.exit(1)
