"""A rich progress bar for scans: attacks done, successes, errors, ETA."""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table


class RichScanProgress:
    """Implements :class:`bastion.redteam.scan.ScanProgress`; use as a context manager."""

    def __init__(self, scan_id: str, *, console: Console | None = None) -> None:
        self.scan_id = scan_id
        self.succeeded = 0
        self.errors = 0
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("[red]{task.fields[succeeded]} succeeded[/red]"),
            TextColumn("[yellow]{task.fields[errors]} errors[/yellow]"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self._task: TaskID | None = None

    def __enter__(self) -> RichScanProgress:
        self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._progress.stop()

    def started(self, total: int, done: int) -> None:
        self._task = self._progress.add_task(
            f"scan {self.scan_id}", total=total, completed=done, succeeded=0, errors=0
        )

    def advanced(self, row: Mapping[str, Any]) -> None:
        if row.get("error") is not None:
            self.errors += 1
        elif row.get("attack_success") is True:
            self.succeeded += 1
        if self._task is not None:
            self._progress.update(
                self._task, advance=1, succeeded=self.succeeded, errors=self.errors
            )


_LEVELS = (
    ("baseline", "Baseline"),
    ("easy", "Easy"),
    ("moderate", "Moderate"),
    ("difficult", "Difficult"),
)


def scorecard_table(document: Mapping[str, Any], *, title: str | None = None) -> Table:
    """Azure's console scorecard: risk category × complexity ASR, then the overall row."""
    card = document.get("scorecard", document)
    joint = card.get("joint_risk_attack_summary") or []
    risk_summary = (card.get("risk_category_summary") or [{}])[0]
    technique = (card.get("attack_technique_summary") or [{}])[0]
    present = [(k, name) for k, name in _LEVELS if f"{k}_asr" in technique]
    table = Table(title=title, show_footer=False)
    table.add_column("Risk category")
    for _, name in present:
        table.add_column(f"{name} ASR", justify="right")
    table.add_column("Attacks", justify="right")
    table.add_column("Successes", justify="right")
    for entry in joint:
        risk = entry["risk_category"]
        cells = []
        for key, _ in present:
            name = "baseline_asr" if key == "baseline" else f"{key}_complexity_asr"
            value = entry.get(name)
            cells.append("" if value is None else f"{value:.2f}%")
        table.add_row(
            risk,
            *cells,
            str(risk_summary.get(f"{risk}_total", "")),
            str(risk_summary.get(f"{risk}_successful_attacks", "")),
        )
    table.add_row(
        "[bold]overall[/bold]",
        *(f"[bold]{technique.get(f'{k}_asr', 0.0):.2f}%[/bold]" for k, _ in present),
        str(technique.get("overall_total", 0)),
        str(technique.get("overall_successful_attacks", 0)),
    )
    return table
