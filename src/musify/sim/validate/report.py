"""What ``musify validate`` returns: ``Row`` (one check), ``Report`` and its rendering.

The rows are made by ``structure._violations`` (exact checks) and ``stats._share_row``
and ``stats._StatisticsChecks`` (statistics); ``checker.validate_dir`` returns the
``Report``. The package docstring lists every part of ``musify.sim.validate``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table


@dataclass(frozen=True)
class Row:
    """One check. ``unit`` says how to read the numbers.

    - ``"violations"``: ``observed`` events/pairs/sessions break the rule out of
      ``checked``; ``expected`` 0, tolerance exact.
    - ``"share"``: fractions; ``tolerance`` is the allowed absolute difference.
    - ``"mean"``: a mean; ``tolerance`` as for shares.
    """

    name: str
    kind: str  # "structure" or "statistics"
    unit: str
    passed: bool
    observed: float | None
    expected: float | None
    tolerance: float | None = None
    checked: int = 0
    detail: str = ""
    skipped: bool = False

    def cells(self) -> tuple[str, str, str]:
        if self.skipped:
            return ("–", "–", "–")
        if self.unit == "violations":
            return (f"{int(self.observed or 0):,} of {self.checked:,}", "0", "exact")
        if self.unit == "share":
            return (_pct(self.observed), _pct(self.expected), f"±{_pts(self.tolerance)}")
        return (_num(self.observed), _num(self.expected), f"±{_num(self.tolerance)}")


def _pct(x: float | None) -> str:
    if x is None:
        return "–"
    v = 100.0 * x
    return f"{v:.2f}%" if v >= 1 or v == 0 else f"{v:.3f}%"


def _pts(x: float | None) -> str:
    if x is None:
        return "–"
    v = 100.0 * x
    return f"{v:.2f} pts" if v >= 1 else f"{v:.3f} pts"


def _num(x: float | None) -> str:
    return "–" if x is None else f"{x:,.3f}"


@dataclass
class Report:
    directory: str
    config: str
    counts: dict[str, int]
    sessions: int
    users: int
    rows: list[Row] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.passed for r in self.rows)

    @property
    def failures(self) -> list[Row]:
        return [r for r in self.rows if not r.passed]

    def row(self, name: str) -> Row:
        for r in self.rows:
            if r.name == name:
                return r
        raise KeyError(name)

    def render(self, console: Console) -> None:
        for kind, title in (
            ("structure", "Structure (exact)"),
            ("statistics", "Statistics (vs the config's Markov chain)"),
        ):
            rows = [r for r in self.rows if r.kind == kind]
            if not rows:
                continue
            t = Table(title=f"musify validate: {title}", header_style="bold", title_justify="left")
            t.add_column("", width=1)
            t.add_column("check")
            t.add_column("observed", justify="right")
            t.add_column("expected", justify="right")
            t.add_column("tolerance", justify="right")
            t.add_column("detail", overflow="fold")
            for r in rows:
                mark = "[dim]–[/]" if r.skipped else "[green]✓[/]" if r.passed else "[red]✗[/]"
                obs, exp, tol = r.cells()
                name = r.name if r.passed else f"[red]{r.name}[/]"
                t.add_row(mark, name, obs, exp, tol, r.detail)
            console.print(t)
        n_fail = len(self.failures)
        checks = [r for r in self.rows if not r.skipped]
        c = self.counts
        what = (
            f"{c.get('page_view_events', 0):,} page views, {c.get('listen_events', 0):,} "
            f"listens, {c.get('auth_events', 0):,} auth, {c.get('status_change_events', 0):,} "
            f"status changes; {self.sessions:,} sessions, {self.users:,} identified users"
        )
        if n_fail == 0:
            console.print(
                f"[bold green]✓ all {len(checks)} checks passed[/] ({what})", highlight=False
            )
        else:
            names = ", ".join(r.name for r in self.failures[:5])
            more = f" and {n_fail - 5} more" if n_fail > 5 else ""
            console.print(
                f"[bold red]✗ {n_fail} of {len(checks)} checks failed[/]: {names}{more} ({what})",
                highlight=False,
            )

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "directory": self.directory,
            "config": self.config,
            "counts": dict(self.counts),
            "sessions": self.sessions,
            "users": self.users,
            "passed": sum(r.passed for r in self.rows),
            "failed": len(self.failures),
            "rows": [asdict(r) for r in self.rows],
        }
