"""Trainers for forge: full SFT, LoRA (PEFT) and DPO, driven by one run spec.

Python API::

    from forge_plugin_train import RunSpec, train
    run = train(RunSpec.from_file("run.yaml"))
"""

from forge_plugin_train.spec import RunSpec

__all__ = ["RunSpec", "train", "resume"]


def train(spec, run_id=None, progress=True):  # noqa: ANN001, ANN201 - lazy import keeps torch out
    """Start a run from ``spec`` (a :class:`RunSpec`); returns its :class:`~.runs.Run`."""
    from forge_plugin_train.api import start

    return start(spec, run_id=run_id, progress=progress)


def resume(run_id, progress=True):  # noqa: ANN001, ANN201
    """Continue run ``run_id`` from its newest valid checkpoint."""
    from forge_plugin_train.api import resume as _resume

    return _resume(run_id, progress=progress)
