"""The ``forge`` command line (placeholder until the kernel CLI lands)."""
import click


@click.group()
def main() -> None:
    """forge: run and serve LLMs."""
