"""Every error of the mesh: one MeshError base, each kind with the exit code the CLI ends with.

Raise these with a message a user can act on (which file, key, agent or URL,
and what to do); the CLI prints ``str(error)`` in one line and exits with
``error.exit_code``.
"""

from __future__ import annotations

from typing import Any

EXIT_OK = 0
EXIT_FAILURE = 1  # the command ran and what it did failed (a task failed, an agent refused)
EXIT_CONFIG = 2  # mesh.yaml (or the command line) is wrong
EXIT_SERVE = 3  # an agent or tool server could not be started
EXIT_INTERRUPTED = 130


class MeshError(Exception):
    """The base of every error the mesh raises on purpose."""

    exit_code = EXIT_FAILURE


class ConfigError(MeshError):
    """mesh.yaml is wrong; ``problems`` say where and how, one line each."""

    exit_code = EXIT_CONFIG

    def __init__(self, problems: list[Any]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class ModuleImportError(MeshError):
    """A module mesh.yaml names cannot be imported; the message says why, and where when its own code failed."""

    exit_code = EXIT_CONFIG


class AgentModuleError(MeshError):
    """The module named in mesh.yaml cannot be used as an agent; the message says why."""

    exit_code = EXIT_CONFIG


class ToolModuleError(MeshError):
    """The module named in mesh.yaml cannot be used as a tool server; the message says why."""

    exit_code = EXIT_CONFIG


class ServeError(MeshError):
    """An agent or tool server cannot be served; the message says which and why."""

    exit_code = EXIT_SERVE


class PortInUse(ServeError):
    """The port is taken by another process."""


class GuardConfigError(MeshError, ValueError):
    """mesh.yaml's guard sections are invalid; the message names the key."""

    exit_code = EXIT_CONFIG


class GuardError(MeshError):
    """The guard could not give a verdict (unreachable, timed out, model missing, unreadable output)."""


class CliError(MeshError):
    """A failure to report in one line and exit non-zero."""

    def __init__(self, message: str, code: int = EXIT_FAILURE):
        super().__init__(message)
        self.exit_code = code

    @property
    def code(self) -> int:
        return self.exit_code
