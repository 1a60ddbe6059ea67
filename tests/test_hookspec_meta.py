"""Meta-tests of the plugin API: every hook spec has a docstring, a heading in
``docs/plugins/hooks.md`` followed by its exact signature, and at least one test; every public
class of ``forge_kernel.interfaces`` is documented in ``docs/plugins/interfaces.md`` and every
interface (ABC or Protocol) has a conformance suite or a documented contract there."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import pkgutil
import re
from abc import ABC
from collections.abc import Callable
from pathlib import Path

import pytest

import forge_kernel.interfaces
from forge_kernel import hookspecs
from forge_kernel.markers import PROJECT_NAME
from forge_kernel.plugins import PluginHost
from forge_kernel.testing.conformance import SUITES

REPO = Path(__file__).resolve().parents[1]
HOOKS_DOC = REPO / "docs" / "plugins" / "hooks.md"
INTERFACES_DOC = REPO / "docs" / "plugins" / "interfaces.md"
HEADING = re.compile(r"^(#{1,6}) (.+?)\s*$", re.M)
FENCE = re.compile(r"^ *```[\w-]*\n(.*?)^ *```", re.S | re.M)


def hook_specs() -> dict[str, Callable]:
    """``name -> spec function`` of every hook declared in :mod:`forge_kernel.hookspecs`."""
    marker = f"{PROJECT_NAME}_spec"
    return {name: fn for name, fn in vars(hookspecs).items()
            if inspect.isfunction(fn) and getattr(fn, marker, None) is not None}


SPECS = hook_specs()


def signature_text(fn: Callable) -> str:
    """``def name(arg: Type, ...) -> Ret:`` as written in hookspecs.py (its annotations are
    strings: the module uses ``from __future__ import annotations``)."""
    sig = inspect.signature(fn)
    params = []
    for p in sig.parameters.values():
        text = p.name if p.annotation is p.empty else f"{p.name}: {p.annotation}"
        if p.default is not p.empty:
            text += f" = {p.default!r}"
        params.append(text)
    returns = "" if sig.return_annotation is sig.empty else f" -> {sig.return_annotation}"
    return f"def {fn.__name__}({', '.join(params)}){returns}:"


def sections(path: Path, level: int) -> dict[str, str]:
    """Heading text -> the body up to the next heading of this level or higher."""
    text = path.read_text()
    found = [(m.start(), m.end(), len(m.group(1)), m.group(2)) for m in HEADING.finditer(text)]
    bodies = {}
    for i, (_, end, depth, title) in enumerate(found):
        if depth != level:
            continue
        stop = next((s for s, _, d, _ in found[i + 1:] if d <= level), len(text))
        assert title not in bodies, f"{path.name}: heading {title!r} appears twice"
        bodies[title] = text[end:stop]
    return bodies


# -- (0) the spec list itself ----------------------------------------------------------------

def test_hook_specs_are_the_ones_pluggy_knows():
    assert len(SPECS) >= 14
    pm = PluginHost().pm
    known = {name for name in dir(pm.hook) if name.startswith("forge_")}
    assert set(SPECS) == known
    assert all(name.startswith("forge_") for name in SPECS)


def test_signature_text_is_what_hookspecs_py_says():
    source = inspect.getsource(hookspecs)
    for fn in SPECS.values():
        assert signature_text(fn) in source


# -- (1) a docs heading with the exact signature ---------------------------------------------

@pytest.mark.parametrize("name", sorted(SPECS))
def test_hook_has_a_docs_heading_with_its_exact_signature(name):
    bodies = sections(HOOKS_DOC, 3)
    assert name in bodies, f"docs/plugins/hooks.md has no '### {name}' heading"
    block = FENCE.search(bodies[name])
    assert block is not None, f"'### {name}' is not followed by a code block"
    expected = signature_text(SPECS[name])
    assert expected in block.group(1), (
        f"the code block under '### {name}' must contain the signature\n    {expected}\n"
        f"found:\n{block.group(1)}")


def test_every_hook_heading_is_a_hook():
    stale = [title for title in sections(HOOKS_DOC, 3)
             if title.startswith("forge_") and title not in SPECS]
    assert not stale, f"docs/plugins/hooks.md documents hooks that do not exist: {stale}"


# -- (2) at least one test per hook ----------------------------------------------------------

def collect_test_files() -> list[Path]:
    """The kernel's and the plugins' test modules (not the fixture plugins' sources, which
    implement hooks rather than test them, and not this file)."""
    files = [*REPO.glob("tests/**/*.py"), *REPO.glob("plugins/*/tests/**/*.py")]
    fixtures = REPO / "tests" / "plugins"
    return sorted(f for f in files
                  if fixtures not in f.parents and f.resolve() != Path(__file__).resolve())


def test_every_hook_has_a_test():
    texts = {path: path.read_text(errors="replace") for path in collect_test_files()}
    untested = [name for name in sorted(SPECS)
                if not any(re.search(rf"\b{name}\b", text) for text in texts.values())]
    assert not untested, (
        f"hooks without any test (no test file under tests/ or plugins/*/tests/ mentions "
        f"them): {', '.join(untested)}")


# -- (3) interfaces: a conformance suite or a documented contract ----------------------------

def interface_modules() -> list:
    return [importlib.import_module(f"forge_kernel.interfaces.{info.name}")
            for info in pkgutil.iter_modules(forge_kernel.interfaces.__path__)]


def public_classes() -> dict[str, type]:
    """``module:Name`` -> class, for classes defined (not imported) in the interface modules."""
    found = {}
    for module in interface_modules():
        for name, obj in vars(module).items():
            if inspect.isclass(obj) and obj.__module__ == module.__name__ \
                    and not name.startswith("_"):
                found[f"{module.__name__}:{name}"] = obj
    return found


def is_interface(cls: type) -> bool:
    return issubclass(cls, ABC) or bool(getattr(cls, "_is_protocol", False))


def test_interfaces_are_found():
    interfaces = {key for key, cls in public_classes().items() if is_interface(cls)}
    assert "forge_kernel.interfaces.backend:Backend" in interfaces
    assert "forge_kernel.interfaces.backend:LinearOp" in interfaces  # a Protocol
    assert len(interfaces) >= 10


def test_every_interface_has_a_conformance_suite_or_documented_contract():
    documented = set(sections(INTERFACES_DOC, 3))
    missing = [key for key, cls in sorted(public_classes().items())
               if is_interface(cls) and key not in SUITES and cls.__name__ not in documented]
    assert not missing, (f"interfaces with neither a conformance suite (forge_kernel.testing."
                         f"conformance.SUITES) nor a '### Name' section in "
                         f"docs/plugins/interfaces.md: {missing}")


def test_every_public_interface_class_is_documented():
    documented = set(sections(INTERFACES_DOC, 3))
    missing = sorted(key for key, cls in public_classes().items()
                     if cls.__name__ not in documented)
    assert not missing, f"no '### Name' section in docs/plugins/interfaces.md for: {missing}"


def test_every_suite_exists_and_names_a_real_interface():
    classes = public_classes()
    for interface, suite in SUITES.items():
        assert interface in classes, f"SUITES names {interface}, which does not exist"
        module, name = suite.split(":")
        spec = importlib.util.find_spec(module)
        assert spec is not None and spec.origin, f"no module {module}"
        tree = ast.parse(Path(spec.origin).read_text())  # not imported: several need torch
        defined = {node.name for node in tree.body if isinstance(node, ast.ClassDef)}
        assert name in defined, f"{module} defines no class {name}"


# -- (4) docstrings --------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(SPECS))
def test_hook_spec_has_a_docstring(name):
    doc = inspect.getdoc(SPECS[name])
    assert doc and len(doc.split()) >= 5, f"{name} needs a docstring saying what it is for"
