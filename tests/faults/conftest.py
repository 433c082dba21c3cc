"""The fault suite's tally: every test injects real faults and says which it survived.

At the end of the run one line is printed:
``fault suite: faults injected N, faults survived M, records lost K, bad inputs refused R/A``
(K must be 0, R must be A). A fault counts as survived only once every check on it passed;
records lost are counted as they are measured, before any assertion on them, so a failing
run reports its losses. A bad input counts as refused once its refusal was checked whole:
exit code 2, one line naming the problem, nothing written.
"""

from __future__ import annotations

from collections import Counter

import pytest


class FaultLedger:
    """Counts by fault kind (``driver SIGKILL``, ``worker SIGKILL``, ...)."""

    def __init__(self) -> None:
        self.injected: Counter[str] = Counter()
        self.survived: Counter[str] = Counter()
        self.records_lost = 0
        self.bad_inputs: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()

    def inject(self, kind: str, count: int = 1) -> None:
        self.injected[kind] += count

    def survive(self, kind: str, count: int | None = None) -> None:
        """All (or ``count``) injected faults of ``kind`` survived: call after the checks passed."""
        self.survived[kind] += self.injected[kind] - self.survived[kind] if count is None else count

    def offer(self, kind: str) -> None:
        """A bad input is about to be given to the system."""
        self.bad_inputs[kind] += 1

    def refuse(self, kind: str) -> None:
        """That bad input was refused as it should be (call after the checks passed)."""
        self.refused[kind] += 1

    def lose(self, count: int) -> None:
        self.records_lost += max(0, int(count))

    def line(self) -> str:
        injected, survived = sum(self.injected.values()), sum(self.survived.values())
        offered, refused = sum(self.bad_inputs.values()), sum(self.refused.values())
        return (
            f"fault suite: faults injected {injected}, faults survived {survived}, records lost {self.records_lost}, "
            f"bad inputs refused {refused}/{offered}"
        )


LEDGER = FaultLedger()


@pytest.fixture(scope="session")
def fault_ledger() -> FaultLedger:
    return LEDGER


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if LEDGER.injected or LEDGER.bad_inputs:
        terminalreporter.write_line(LEDGER.line())
