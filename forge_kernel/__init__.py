"""forge-kernel: a minimal LLM kernel whose every feature is an installable plugin.

Importing this package is cheap: it never imports torch. Heavy modules (the engine, interfaces that
mention tensors) are imported by the code paths that need them.
"""

from forge_kernel.markers import PROJECT_NAME, hookimpl, hookspec

__version__ = "0.1.0"

__all__ = ["PROJECT_NAME", "__version__", "hookimpl", "hookspec"]
