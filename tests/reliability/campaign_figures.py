"""What the campaign measured, kept for the terminal summary that ``conftest.py`` prints."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field


@dataclass
class CaseRecord:
    """One case of the fault matrix: a fault through one path.

    :param fault: the fault's name.
    :param path: the code path (hook sync, deferrable operator, ...).
    :param outcome: ``result``, the typed error's class name, or ``RAW <class>`` for a library error.
    :param lost: results the server completed that never reached the caller.
    :param duplicates: paid generations beyond one per prompt (re-asks the fault asks for excluded).
    :param requests: HTTP requests the server saw for the case.
    :param raw_errors: errors that escaped as something other than a MiniMax error.
    :param unbounded: endless answers the client never hung up on.
    """

    fault: str
    path: str
    outcome: str
    lost: int
    duplicates: int
    requests: int
    raw_errors: int
    unbounded: int = 0


@dataclass
class Figures:
    """Everything the summary prints."""

    cases: list[CaseRecord] = field(default_factory=list)
    sections: dict[str, dict[str, str]] = field(default_factory=lambda: defaultdict(dict))


FIGURES = Figures()


def _typed(case: CaseRecord) -> bool:
    return case.outcome not in ("result", "HANG") and not case.raw_errors


def _row(name: str, group: list[CaseRecord]) -> str:
    return (
        f"{name:<26} {len(group):>5} {sum(c.outcome == 'result' for c in group):>6} "
        f"{sum(map(_typed, group)):>5} {sum(c.lost for c in group):>4} {sum(c.duplicates for c in group):>3} "
        f"{max(c.requests for c in group):>7} {sum(c.raw_errors for c in group):>3} "
        f"{sum(c.unbounded for c in group):>3}"
    )


def summary_lines() -> list[str]:
    """The campaign's summary table, one line per fault, then per-section figures."""
    lines: list[str] = []
    cases = FIGURES.cases
    if cases:
        by_fault: dict[str, list[CaseRecord]] = defaultdict(list)
        for case in cases:
            by_fault[case.fault].append(case)
        header = (
            f"{'fault':<26} {'paths':>5} {'result':>6} {'typed':>5} {'lost':>4} {'dup':>3} "
            f"{'req max':>7} {'raw':>3} {'unb':>3}  outcomes"
        )
        lines += [header, "-" * len(header)]
        for fault, group in by_fault.items():
            lines.append(f"{_row(fault, group)}  {', '.join(sorted({c.outcome for c in group}))}")
        lines += ["-" * len(header), _row("TOTAL", cases)]
    for section, figures in FIGURES.sections.items():
        lines.append(f"{section}: " + "; ".join(f"{name} {value}" for name, value in figures.items()))
    return lines
