"""forge-plugin-rag: documents in, answers with sources out.

``RAGPipeline("manual").add_document("manual.pdf")`` then ``.query("question")`` (see
:mod:`forge_plugin_rag.pipeline`); ``forge rag`` on the command line; ``/v1/rag/...`` when
serving.
"""

from __future__ import annotations

__all__ = ["RAGPipeline"]


def __getattr__(name: str):
    # lazy: importing the package (entry-point discovery) must not import torch
    if name == "RAGPipeline":
        from forge_plugin_rag.pipeline import RAGPipeline

        return RAGPipeline
    raise AttributeError(name)
