"""``forge train`` (start / ``--resume`` / ``export``) and ``forge runs list|show``.

Flags are dotted run-spec overrides, so ``forge train --spec run.yaml --lr 1e-3`` and a spec
file with ``optimizer: {lr: 1e-3}`` build the same :class:`~forge_plugin_train.spec.RunSpec`.
"""

from __future__ import annotations

import json
import time
from typing import Any

import click

FLAGS: dict[str, str] = {
    "model": "model", "data": "data.path", "method": "method", "steps": "steps",
    "epochs": "epochs", "lr": "optimizer.lr", "batch_size": "batch_size",
    "grad_accum": "grad_accum", "max_length": "data.max_length", "precision": "precision",
    "seed": "seed", "name": "name", "output": "output", "eval_fraction": "data.eval_fraction",
    "checkpoint_every": "checkpoint.every", "strategy": "distributed.strategy",
}


def _parse_set(items: tuple[str, ...]) -> dict[str, Any]:
    import yaml

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--set")
        out[key] = yaml.safe_load(value)
    return out


@click.group("train", invoke_without_command=True)
@click.option("--spec", "spec_path", type=click.Path(dir_okay=False),
              help="YAML/JSON run spec; flags override its fields.")
@click.option("--resume", "resume_ref", metavar="RUN",
              help="Continue RUN from its newest checkpoint.")
@click.option("--model", help="'default', a .gguf file or a Hugging Face model directory.")
@click.option("--data", help="Training file (.jsonl, .json, .txt).")
@click.option("--method", type=click.Choice(["sft", "lora", "qlora", "dpo"]))
@click.option("--steps", type=int)
@click.option("--epochs", type=float)
@click.option("--lr", type=float)
@click.option("--batch-size", type=int)
@click.option("--grad-accum", type=int)
@click.option("--max-length", type=int)
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16", "fp16"]))
@click.option("--seed", type=int)
@click.option("--name")
@click.option("--output", help="Also copy the final adapter/weights here.")
@click.option("--eval-fraction", type=float)
@click.option("--checkpoint-every", type=int)
@click.option("--strategy", type=click.Choice(["none", "ddp", "fsdp"]),
              help="Under torchrun: data parallel or fully sharded.")
@click.option("--packing/--no-packing", default=None)
@click.option("--gradient-checkpointing/--no-gradient-checkpointing", default=None)
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Any run-spec field, e.g. --set lora.r=16 --set schedule.name=cosine.")
@click.option("--progress/--no-progress", default=True)
@click.pass_context
def train_group(ctx: click.Context, spec_path: str | None, resume_ref: str | None,
                sets: tuple[str, ...], progress: bool, packing: bool | None,
                gradient_checkpointing: bool | None, **flags: Any) -> None:
    """Fine-tune a model (sft, lora, qlora, dpo) from a run spec and/or flags."""
    if ctx.invoked_subcommand is not None:
        return
    from forge_plugin_train import api
    from forge_plugin_train.spec import RunSpec

    overrides = {FLAGS[k]: v for k, v in flags.items() if v is not None}
    if packing is not None:
        overrides["data.packing"] = packing
    if gradient_checkpointing is not None:
        overrides["gradient_checkpointing"] = gradient_checkpointing
    overrides.update(_parse_set(sets))
    if resume_ref:
        if spec_path or overrides:
            raise click.UsageError("--resume takes no other spec flags (the run keeps its spec)")
        run = api.resume(resume_ref, progress=progress)
    else:
        if spec_path:
            spec = RunSpec.from_file(spec_path, overrides=overrides)
        else:
            if "data.path" not in overrides:
                raise click.UsageError("give --spec FILE or at least --data FILE")
            spec = RunSpec.from_dict({}, source="flags", overrides=overrides)
        run = api.start(spec, progress=progress)
    if _is_main():
        click.echo(f"run {run.id} {run.state}: {run.info.get('final')}")


def _is_main() -> bool:
    import os

    return os.environ.get("RANK", "0") == "0"


@train_group.command("export")
@click.argument("run_ref", metavar="RUN")
@click.option("--merge/--no-merge", default=True, help="Fold the LoRA adapter into the weights.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="Default: RUN/export.")
@click.option("--gguf", "gguf_type", default=None,
              help="Also write a GGUF of this type through a registered quantizer plugin.")
def export_command(run_ref: str, merge: bool, out_dir: str | None, gguf_type: str | None) -> None:
    """Write RUN's model as a standalone safetensors directory (servable by `forge serve`)."""
    from forge_plugin_train.export import export

    for line in export(run_ref, merge=merge, out=out_dir, gguf_type=gguf_type):
        click.echo(line)


@click.group("runs")
def runs_group() -> None:
    """Training runs recorded under FORGE_HOME."""


@runs_group.command("list")
@click.option("--json", "as_json", is_flag=True)
def list_command(as_json: bool) -> None:
    """Every run, newest first: id, name, method, state, progress, last loss."""
    from forge_plugin_train.runs import list_runs

    rows = []
    for run in list_runs():
        last = next((m for m in reversed(run.metrics()) if "loss" in m), {})
        rows.append({"id": run.id, "name": run.info.get("name") or "", "method":
                     run.info.get("method", ""), "state": run.state,
                     "step": f"{run.info.get('step', 0)}/{run.info.get('total_steps', '?')}",
                     "loss": f"{last['loss']:.4f}" if "loss" in last else "",
                     "created": time.strftime("%Y-%m-%d %H:%M",
                                              time.gmtime(run.info.get("created", 0)))})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no training runs yet (forge train --help)")
        return
    cols = list(rows[0])
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    click.echo("  ".join(c.upper().ljust(widths[c]) for c in cols))
    for row in rows:
        click.echo("  ".join(str(row[c]).ljust(widths[c]) for c in cols))


@runs_group.command("show")
@click.argument("run_ref", metavar="RUN")
def show_command(run_ref: str) -> None:
    """RUN's record (state, parent model, dataset hash, environment), artifacts, last metrics."""
    from forge_plugin_train import checkpoint as ckpt
    from forge_plugin_train.runs import Run

    run = Run.load(run_ref)
    info = {**run.info, "state": run.state, "dir": str(run.dir)}
    info["checkpoints"] = sorted(p.name for p in (run.dir / "checkpoints").iterdir()
                                 if p.is_dir() and not p.name.endswith(".partial")) \
        if (run.dir / "checkpoints").is_dir() else []
    info["latest_checkpoint"] = str(ckpt.latest(run.dir / "checkpoints") or "")
    metrics = run.metrics()
    info["last_metrics"] = metrics[-1] if metrics else None
    click.echo(json.dumps(info, indent=2, sort_keys=True, default=str))


def main() -> None:
    """Entry point of ``python -m forge_plugin_train``: errors as one line, exit status 2."""
    from forge_kernel.errors import ForgeError

    try:
        train_group.main(standalone_mode=False)
    except ForgeError as exc:
        click.echo(f"Error: {exc}", err=True)
        raise SystemExit(2) from None
    except click.exceptions.Abort:
        raise SystemExit(130) from None
    except click.ClickException as exc:
        exc.show()
        raise SystemExit(exc.exit_code) from None
