"""Shared helper of the import stand-ins in this folder (not itself a stand-in for anything)."""
from __future__ import annotations


def missing(module: str, why: str):
    """A module ``__getattr__`` that hands out functions raising ``NotImplementedError`` when called.

    Pointcept's other models import these extensions at module level and only call them inside their
    own forward passes, so an import has to succeed while any real use must fail loudly.
    """

    def __getattr__(name: str):
        if name.startswith("__"):
            raise AttributeError(name)

        def unavailable(*args, **kwargs):
            raise NotImplementedError(f"{module}.{name}: {module} here is an import-only stand-in ({why})")

        unavailable.__name__ = name
        return unavailable

    return __getattr__
