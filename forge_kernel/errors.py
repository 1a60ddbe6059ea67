"""Exceptions shared by the kernel and plugins. Each carries a message fit to show a user."""


class ForgeError(Exception):
    """Base class of every error forge raises on purpose."""


class PluginError(ForgeError):
    """A plugin failed to import, validate or register."""


class DuplicateImplementationError(PluginError):
    """Two plugins registered the same name for the same kind."""


class UnknownImplementationError(ForgeError):
    """A name was asked for (``--backend foo``) that no loaded plugin registered."""


class MissingPluginError(ForgeError):
    """A command needs a feature whose plugin is not installed."""


class StartupRefused(ForgeError):
    """Raised from ``forge_startup`` by a plugin that refuses to let the server start."""


class ConfigError(ForgeError):
    """A configuration value is invalid; the message names the key and the expected type."""


class QuantizerOptionError(ForgeError, ValueError):
    """A quantizer option that the quantizer does not support, or a value it cannot use."""


class ModelFormatError(ForgeError):
    """A model file is unreadable (truncated, wrong magic, ...); the message names the file."""

    def __init__(self, path: object, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


class ModelNotFound(ForgeError):
    """A model name that is no path, no model a plugin provides, or not the one served.
    HTTP endpoints answer 404 ``model_not_found`` naming ``param``."""

    status = 404
    code = "model_not_found"

    def __init__(self, message: str, param: str | None = "model") -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class KVCacheFull(ForgeError):
    """The KV cache cannot hold the requested tokens; the scheduler preempts and retries."""


class InvalidRequest(ValueError):
    """A request parameter is invalid; endpoints answer 400 with ``param`` set."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


class RequestFailed(RuntimeError):
    """A queued request could not be served (e.g. the scheduler rejected it)."""


class EngineDead(RuntimeError):
    """The engine loop crashed or was shut down; no further requests can run."""
