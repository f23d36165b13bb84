"""The one user-error type: a mistake the user can fix, which the CLI prints as a single line."""

from __future__ import annotations


class UserError(ValueError):
    """`<source>: <field>: <problem>; <fix>`: where the mistake is, what is wrong, how to fix it.

    `source` names the input (a scenario file, `--set`, a profile file); code that knows it adds it with
    `at`. The arguments are kept in `args`, so the error pickles across worker processes unchanged.
    """

    def __init__(self, field: str, problem: str, fix: str = "", source: str = "") -> None:
        super().__init__(field, problem, fix, source)
        self.field, self.problem, self.fix, self.source = field, problem, fix, source

    def __str__(self) -> str:
        parts = [p for p in (self.source, self.field, self.problem) if p]
        return ": ".join(parts) + (f"; {self.fix}" if self.fix else "")

    def at(self, source: str) -> UserError:
        """The same error, labelled with where the input came from."""
        return UserError(self.field, self.problem, self.fix, source)
