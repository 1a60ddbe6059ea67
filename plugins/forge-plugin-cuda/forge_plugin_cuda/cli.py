"""``forge cuda``: whether the cuda backend can run here, and on what."""

from __future__ import annotations

import sys

import click


@click.command("cuda")
@click.option("--device", type=int, default=None, help="Device index to check (default: the "
              "[cuda] device setting, 0).")
def cuda_command(device: int | None) -> None:
    """Report whether `--backend cuda` can run here (exit 1 with the reason if not)."""
    from forge_plugin_cuda import settings
    from forge_plugin_cuda.availability import cuda_availability

    index = settings.current().device if device is None else device
    ok, reason = cuda_availability(index)
    if not ok:
        click.echo(f"cuda: unavailable: {reason}", err=True)
        sys.exit(1)
    import torch

    free, total = torch.cuda.mem_get_info(index)
    major, minor = torch.cuda.get_device_capability(index)
    try:
        import triton

        kernels = f"Triton {triton.__version__} paged attention"
    except ImportError:
        kernels = "torch paged attention (pip install 'forge-plugin-cuda[triton]' for Triton)"
    click.echo(f"cuda:{index}: {torch.cuda.get_device_name(index)}, compute capability "
               f"{major}.{minor}, {free >> 20} MiB free of {total >> 20} MiB; torch "
               f"{torch.__version__} (CUDA {torch.version.cuda}); {kernels}")
