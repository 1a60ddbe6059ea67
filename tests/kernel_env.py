"""Hermetic Python environments for the kernel's entry-point tests.

A "site" is a directory put on ``PYTHONPATH`` of a ``python -S`` subprocess (``-S``: the
development venv's site-packages, with every plugin of the repo, is *not* visible). The base site
holds only forge-kernel and its dependencies (symlinked), so it is exactly "a fresh environment
where only forge-kernel is installed"; plugins are added with a real
``pip install --no-deps --no-build-isolation --target`` of their project, so discovery goes
through the real ``.dist-info/entry_points.txt`` pip writes.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIXTURE_PLUGINS = REPO / "tests" / "plugins"
KERNEL_DEPS = ("pluggy", "click", "structlog", "yaml", "_yaml")


def make_base_site(path: Path) -> Path:
    """forge_kernel plus its import-time dependencies, nothing else."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "forge_kernel").symlink_to(REPO / "forge_kernel")
    for name in KERNEL_DEPS:
        spec = importlib.util.find_spec(name)  # found, not imported (_yaml warns on import)
        if spec is None or spec.origin is None:
            continue
        origin = Path(spec.origin)
        source = origin.parent if origin.name == "__init__.py" else origin
        (path / source.name).symlink_to(source)
    return path


def pip_install(target: Path, *projects: Path) -> None:
    """Install plugin projects into ``target`` with one pip run (each copied first, so no
    build files land in the repo)."""
    works = []
    for project in projects:
        work = target.parent / f"src-{project.name}"
        if work.exists():
            shutil.rmtree(work)
        shutil.copytree(project, work, ignore=shutil.ignore_patterns("*.egg-info", "build",
                                                                      "__pycache__"))
        works.append(str(work))
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                    "--no-build-isolation", "--no-index", "--disable-pip-version-check",
                    "--target", str(target), *works], check=True, capture_output=True,
                   timeout=300)


def run_python(sites: list[Path], code: str, *args: str, env: dict[str, str] | None = None,
               home: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in ``python -S`` with only ``sites`` importable (plus the stdlib)."""
    full_env = {k: v for k, v in os.environ.items()
                if not k.startswith("FORGE_") and k not in ("PYTHONPATH", "PYTHONHOME")}
    full_env["PYTHONPATH"] = os.pathsep.join(str(s) for s in sites)
    if home is not None:
        full_env["FORGE_HOME"] = str(home)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-S", "-c", code, *args], env=full_env,
                          capture_output=True, text=True, timeout=120)


def run_forge(sites: list[Path], *args: str, env: dict[str, str] | None = None,
              home: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``forge ARGS`` in the hermetic environment."""
    code = "from forge_kernel.cli import main; main(prog_name='forge')"
    return run_python(sites, code, *args, env=env, home=home)
