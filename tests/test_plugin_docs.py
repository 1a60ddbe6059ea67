"""The plugin-author docs (``docs/plugins``) stay true.

Markers (HTML comments, invisible when rendered) in front of a fenced block say what to check:

* ``<!-- file: PATH -->`` — the block is a verbatim excerpt of ``PATH`` (repository-relative);
* ``<!-- forge-output: [VAR=VALUE ...] forge ARGS -->`` — the block's lines appear, in order,
  in what ``forge ARGS`` prints in a fresh environment holding only forge-kernel and
  forge-fixture-hello (the tutorial's plugin);
* ``<!-- test-module: forge-fixture-hello -->`` — the block is a test module that passes
  against that plugin, installed;
* ``<!-- test-module: dev -->`` — the block is a test module that passes in the development
  environment (every plugin of ``plugins/`` installed).

Besides: every Python block parses and its ``forge_*`` imports resolve, every TOML block
parses, and the plugin template (``docs/plugins/template``) installs, is discovered and passes
its own tests.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from kernel_env import FIXTURE_PLUGINS, make_base_site, pip_install, run_forge

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs" / "plugins"
TEMPLATE = DOCS / "template"
BLOCK = re.compile(
    r"(?:^<!-- (?P<marker>[a-z-]+): (?P<arg>.*?) -->\n)?"
    r"^(?P<indent> *)```(?P<lang>[\w-]*)\n(?P<code>.*?)^(?P=indent)```[ \t]*$",
    re.S | re.M)
LOCAL_PACKAGES = {path.name for path in [*FIXTURE_PLUGINS.glob("*/forge_*"),
                                         *TEMPLATE.glob("forge_*")] if path.is_dir()}
"""Packages the docs import that live in this repository but are not installed in the
development environment (the tutorial's plugin, the template)."""


@dataclass(frozen=True)
class Block:
    doc: Path
    line: int
    lang: str
    code: str
    marker: str | None
    arg: str | None

    def __str__(self) -> str:
        return f"{self.doc.relative_to(REPO)}:{self.line}"


def blocks() -> list[Block]:
    found = []
    for doc in sorted(DOCS.glob("**/*.md")):
        text = doc.read_text()
        for m in BLOCK.finditer(text):
            indent = len(m.group("indent"))
            code = textwrap.dedent(m.group("code")) if indent else m.group("code")
            line = text.count("\n", 0, m.start("indent")) + 1
            found.append(Block(doc, line, m.group("lang"), code, m.group("marker"),
                               m.group("arg")))
    return found


BLOCKS = blocks()


def of(marker: str | None = None, lang: str | None = None) -> list[Block]:
    return [b for b in BLOCKS if (marker is None or b.marker == marker)
            and (lang is None or b.lang == lang)]


def test_docs_exist_and_have_blocks():
    names = {p.name for p in DOCS.glob("*.md")}
    assert {"README.md", "hooks.md", "interfaces.md", "tutorial.md", "testing.md",
            "troubleshooting.md"} <= names
    assert len(of("file")) >= 10 and of("forge-output") and of("test-module")


# -- excerpts and syntax ---------------------------------------------------------------------

@pytest.mark.parametrize("block", of("file"), ids=str)
def test_excerpt_is_verbatim(block):
    source = REPO / block.arg
    assert source.is_file(), f"{block}: {block.arg} does not exist"
    assert block.code in source.read_text(), f"{block}: the block is not an excerpt of {source}"


@pytest.mark.parametrize("block", of(lang="python"), ids=str)
def test_python_block_parses_and_its_forge_imports_resolve(block):
    tree = ast.parse(textwrap.dedent(block.code), filename=str(block))  # excerpts of methods
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            _check_import(block, node.module, [alias.name for alias in node.names])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                _check_import(block, alias.name, [])


def _check_import(block: Block, module: str, names: list[str]) -> None:
    top = module.split(".")[0]
    if not top.startswith("forge_"):
        return
    if importlib.util.find_spec(top) is None:
        assert top in LOCAL_PACKAGES, f"{block}: imports {module}, which does not exist"
        return
    spec = importlib.util.find_spec(module)
    assert spec is not None, f"{block}: imports {module}, which does not exist"
    defined = _top_level_names(Path(spec.origin)) if spec.origin else set()
    for name in names:
        if name in defined or importlib.util.find_spec(f"{module}.{name}") is not None:
            continue
        # not visible statically (set dynamically): import it (may import torch)
        assert hasattr(importlib.import_module(module), name), f"{block}: {module} has no {name}"


def _top_level_names(path: Path) -> set[str]:
    """Names a module defines or imports at top level (read, not imported: cheap)."""
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return names


@pytest.mark.parametrize("block", of(lang="toml"), ids=str)
def test_toml_block_parses(block):
    tomllib.loads(block.code)


# -- the tutorial's plugin, installed --------------------------------------------------------

@pytest.fixture(scope="module")
def hello_sites(tmp_path_factory) -> tuple[Path, Path]:
    """(base site with only forge-kernel, site with forge-fixture-hello pip-installed)."""
    root = tmp_path_factory.mktemp("hello")
    target = root / "site"
    pip_install(target, FIXTURE_PLUGINS / "forge-fixture-hello")
    return make_base_site(root / "base"), target


def _lines_in_order(expected: list[str], actual: list[str]) -> bool:
    it = iter(actual)
    return all(any(line == got for got in it) for line in expected)


@pytest.mark.parametrize("block", of("forge-output"), ids=lambda b: b.arg)
def test_shown_forge_output_is_real(block, hello_sites, tmp_path):
    words = shlex.split(block.arg)
    at = words.index("forge")
    env = dict(word.split("=", 1) for word in words[:at])
    args = words[at + 1:]
    home = tmp_path / "home"
    home.mkdir()
    result = run_forge(list(hello_sites), *args, env=env, home=home)
    actual = [line.rstrip() for line in (result.stdout + result.stderr).splitlines()]
    expected = [line.rstrip() for line in block.code.splitlines()]
    assert _lines_in_order(expected, actual), (
        f"{block}: `{block.arg}` printed\n" + "\n".join(actual))


def _pytest(project: Path, site: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``pytest tests`` in ``project`` with the development environment (plus ``site``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FORGE_")}
    if site is not None:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), env.get("PYTHONPATH")) if p)
    env["FORGE_HOME"] = str(project / "forge-home")
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "tests"],
                          cwd=project, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("block", [b for b in of("test-module") if b.arg != "dev"], ids=str)
def test_tutorial_test_module_passes(block, hello_sites, tmp_path):
    assert block.arg == "forge-fixture-hello"
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_hello.py").write_text(block.code)
    result = _pytest(tmp_path, hello_sites[1])
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"\b\d+ passed\b", result.stdout) and "skipped" not in result.stdout, \
        result.stdout


def test_example_test_modules_pass_in_the_development_environment(tmp_path):
    """The conformance and fixture examples of testing.md, run against this repository's
    plugins (the backend, KV cache, scheduler, loader, architecture and endpoint suites and a
    real ``forge serve``)."""
    examples = [b for b in of("test-module") if b.arg == "dev"]
    assert len(examples) >= 7
    (tmp_path / "tests").mkdir()
    for i, block in enumerate(examples):
        (tmp_path / "tests" / f"test_doc_example_{i}.py").write_text(
            f"# {block}\n{block.code}")
    result = _pytest(tmp_path)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-3000:]
    assert " passed" in result.stdout and "error" not in result.stdout.lower(), result.stdout


# -- the template ----------------------------------------------------------------------------

def test_template_installs_is_discovered_and_passes_its_tests(tmp_path):
    site = tmp_path / "site"
    pip_install(site, TEMPLATE)
    assert (site / "forge_plugin_example" / "plugin.py").is_file()
    project = tmp_path / "project"
    shutil.copytree(TEMPLATE / "tests", project / "tests")
    result = _pytest(project, site)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "failed" not in result.stdout and "skipped" not in result.stdout, result.stdout

    base = make_base_site(tmp_path / "base")
    home = tmp_path / "home"
    home.mkdir()
    listed = run_forge([base, site], "plugins", home=home)
    row = next(line for line in listed.stdout.splitlines() if line.startswith("example "))
    assert row.split() == ["example", "forge-plugin-example", "0.1.0", "tool,", "commands",
                           "loaded"], listed.stdout + listed.stderr
    counted = run_forge([base, site], "word-count", "one two three", home=home)
    assert (counted.returncode, counted.stdout) == (0, "3\n"), counted.stderr


def test_template_is_not_installed_by_the_dev_installer():
    """scripts/install-dev.sh installs every plugin under plugins/: the template must not be
    one of them, nor be picked up by the repository's test run."""
    assert not (REPO / "plugins" / "forge-plugin-example").exists()
    testpaths = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"][
        "ini_options"]["testpaths"]
    assert not any(TEMPLATE.is_relative_to(REPO / p) for p in testpaths)
