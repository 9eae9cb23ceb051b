"""The project's error hierarchy. The CLI alone turns these into exit codes and one-line messages.

Each message names the value received, what was expected and how to fix it.
"""

from __future__ import annotations


class InstructforgeError(Exception):
    """Base of every error a user can cause or fix; the CLI prints it without a traceback."""

    exit_code = 1


class ConfigError(InstructforgeError):
    """A config file, template or seed file is invalid."""

    exit_code = 2


class ServerError(InstructforgeError):
    """The vLLM server could not be started, died, or never became ready."""


class EngineError(InstructforgeError):
    """Generation cannot go on: bad credentials, unknown model, or no endpoint left."""


class ModelError(InstructforgeError):
    """The bundled model could not be found or prepared."""


class HubError(InstructforgeError):
    """Pushing to or reading from the Hub failed."""


class Interrupted(InstructforgeError):
    """The run was stopped by Ctrl-C or SIGTERM after saving everything finished."""

    exit_code = 130
