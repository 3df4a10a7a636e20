"""User errors: problems with what the user handed us (a file, an option, an environment).

Every ``ffnet`` command prints a :class:`UserError` as one line, ``ffnet <domain> <verb>: error: ...``,
and exits with status 2; ``--debug`` (or ``FFNET_DEBUG=1``) shows the traceback instead.
"""
from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix; the message names the file or option, the problem and the fix."""

    def __str__(self) -> str:  # KeyError subclasses would otherwise print the message quoted
        return str(self.args[0]) if self.args else ""


class ConfigError(UserError, KeyError, ValueError):
    """A config or ``--cfg-options`` entry that does not exist or has the wrong kind of value."""


class CheckpointError(UserError, ValueError):
    """A checkpoint file that cannot be read safely, or whose weights do not fit the model."""


class RunFolderBusy(UserError, RuntimeError):
    """A run folder that another live process is using."""


class MissingExtra(UserError, ModuleNotFoundError):
    """An optional dependency of one domain is not installed."""

    def __init__(self, module: str, extra: str):
        super().__init__(f"this needs the {module!r} package, which is not installed: "
                         f"pip install \"ffnet[{extra}]\"")
        self.name = module
        self.extra = extra
