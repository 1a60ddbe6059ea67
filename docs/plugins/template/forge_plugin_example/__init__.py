"""forge-plugin-example: a template for forge plugins (a tool and a command)."""

__version__ = "0.1.0"
