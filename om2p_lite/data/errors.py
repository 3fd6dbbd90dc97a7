"""The one exception raised for any bad dataset file: it names the file, the field and the fix.

Not a logger or a warning system: validation stops at the first problem it finds.
"""

from __future__ import annotations


class DatasetError(ValueError):
    """A dataset file failed validation; ``file``, ``field``, ``problem`` and ``fix`` say why."""

    def __init__(self, file: str, field: str, problem: str, fix: str) -> None:
        self.file, self.field, self.problem, self.fix = str(file), field, problem, fix
        super().__init__(f"{self.file}: field '{field}': {problem}. Fix: {fix}")
