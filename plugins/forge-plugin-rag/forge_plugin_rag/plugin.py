"""Hook implementations: the ``[rag]`` config section, ``forge rag`` commands, the ``/v1/rag``
and ``/v1/embeddings`` endpoints and the ``rag_search`` tool. Registration imports nothing
heavy: torch and the embedding model load when a command, request or tool call needs them."""

from __future__ import annotations

from forge_kernel import hookimpl


@hookimpl
def forge_register_config_sections(register) -> None:
    from forge_plugin_rag.config import RagConfig

    register("rag", RagConfig)


@hookimpl
def forge_register_commands(cli) -> None:
    from forge_plugin_rag.cli import rag_group

    cli.add_command(rag_group)


@hookimpl
def forge_register_endpoints(register) -> None:
    from forge_plugin_rag.endpoint import RagEndpoint

    register("rag", RagEndpoint)


@hookimpl
def forge_register_tools(register) -> None:
    from forge_plugin_rag.tool import RetrievalTool

    register(RetrievalTool.name, RetrievalTool)
