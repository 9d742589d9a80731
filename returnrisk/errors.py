"""The one base of every error the project raises on purpose.

Each stage's error (``ContractError``, ``ScoringError``, ``RegistryError``, ...) derives from
``ReturnriskError`` and keeps its standard base (``ValueError``, ``RuntimeError``,
``LookupError``), so ``except ValueError`` in callers still works. The CLI catches
``ReturnriskError`` and prints ``report()``: what went wrong, for a person, never a traceback.
"""

from __future__ import annotations


class ReturnriskError(Exception):
    """An error of the project's own (bad input, an operation that cannot be done)."""

    def report(self) -> str:
        """The message for a person (one line unless the error lists several problems)."""
        return str(self)
