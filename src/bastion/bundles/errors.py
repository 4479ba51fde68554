"""Problems found in a bundle, each with its path in the file and a hint to fix it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bastion.errors import InvalidRequest


@dataclass(frozen=True)
class Problem:
    path: str  # e.g. resources.model_serving_endpoints.agent.config.traffic_config.routes[1]
    message: str
    hint: str | None = None
    file: str | None = None

    def __str__(self) -> str:
        where = f"{self.file}: " if self.file else ""
        text = f"{where}{self.path}: {self.message}"
        return f"{text} (hint: {self.hint})" if self.hint else text


class BundleInvalid(InvalidRequest):
    """The bundle has problems; nothing was applied."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"The bundle is not valid ({len(self.problems)} problem(s)):\n{lines}")


def dotted(location: Sequence[object]) -> str:
    """``('a', 'b', 1, 'c')`` → ``a.b[1].c``."""
    out = ""
    for part in location:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out
