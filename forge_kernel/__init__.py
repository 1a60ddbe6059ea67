"""forge-kernel: a minimal LLM kernel whose every feature is an installable plugin.
Importing it never imports torch."""

from forge_kernel.markers import PROJECT_NAME, hookimpl, hookspec

__version__ = "0.1.0"

__all__ = ["PROJECT_NAME", "__version__", "hookimpl", "hookspec"]
