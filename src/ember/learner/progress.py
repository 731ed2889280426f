"""`ProgressCallback`: a live progress bar and the per-epoch metrics table, drawn with rich.

In a terminal or a notebook the table grows above a live bar showing batches done, speed and the
smoothed loss. Elsewhere (a log file, CI) each epoch's row is printed as plain text as it completes.
The loss shown on the bar is read from the device at most `refresh` times a second, so the bar never
slows training down.
"""

from __future__ import annotations

import time
from typing import Any

from ember.learner.callback import Callback

__all__ = ["ProgressCallback", "format_value"]


def format_value(v: Any) -> str:
    """How a table cell shows a value: 6 decimals for floats, mm:ss for times."""
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.6f}"
    return str(v)


def _format_time(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m:02d}:{s:02d}"


class ProgressCallback(Callback):
    """Show training progress. Added by every Learner; silence it with ``learn.no_bar()``.

    Args:
        refresh: how many times a second the bar and its loss are redrawn at most.
        console: a ``rich.console.Console`` to draw on (default: a new one on stdout).
    """

    order = 60

    def __init__(self, refresh: float = 4.0, console: Any = None) -> None:
        self.refresh = refresh
        self.console = console
        self._live = None

    # -- fit -----------------------------------------------------------------------------------------
    def before_fit(self) -> None:
        from rich.console import Console

        if self.learn.silent:
            self._mode = "off"
            return
        self._con = self.console if self.console is not None else Console()
        self._mode = "live" if (self._con.is_terminal or self._con.is_jupyter) else "plain"
        self._names = self.learn.recorder.metric_names
        self._rows: list[list[str]] = []
        self._last_draw = 0.0
        if self._mode == "plain":
            self._con.print(self._plain_line(self._names), highlight=False, soft_wrap=True)
        else:
            self._start_live()

    def _start_live(self) -> None:
        from rich.console import Group
        from rich.live import Live
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[info]}"),
            console=self._con,
            auto_refresh=False,
        )
        self._task = self._bar.add_task("", total=1, info="")
        self._live = Live(Group(self._table(), self._bar), console=self._con, auto_refresh=False, transient=False)
        self._live.start()

    def _table(self) -> Any:
        from rich.table import Table

        table = Table(box=None, header_style="bold", pad_edge=False)
        for n in self._names:
            table.add_column(n, justify="right")
        for r in self._rows:
            table.add_row(*r)
        return table

    def _redraw(self) -> None:
        from rich.console import Group

        if self._live is not None:
            self._live.update(Group(self._table(), self._bar), refresh=True)

    def after_fit(self) -> None:
        if getattr(self, "_mode", "off") == "live" and self._live is not None:
            self._bar.update(self._task, visible=False)
            self._redraw()
            self._live.stop()
            self._live = None

    def after_cancel_fit(self) -> None:
        self.after_fit()

    def cleanup_fit(self) -> None:
        """Stop the live display however the fit ended (an error, Ctrl-C): the terminal gets its output and its
        cursor back."""
        live, self._live = self._live, None
        if live is not None:
            live.stop()

    # -- phases and batches ----------------------------------------------------------------------
    def before_train(self) -> None:
        self._start_phase("train")

    def before_validate(self) -> None:
        self._start_phase("valid")

    def _start_phase(self, name: str) -> None:
        if self._mode != "live":
            return
        desc = f"epoch {self.learn.epoch + 1}/{self.learn.n_epoch} {name}" if self.learn.n_epoch else name
        self._count = 0
        self._bar.reset(self._task, total=max(len(self.learn.dl), 1), description=desc, info="")
        self._redraw()

    def after_batch(self) -> None:
        if self._mode != "live":
            return
        self._count += 1
        now = time.perf_counter()
        if now - self._last_draw < 1.0 / self.refresh:
            return
        self._last_draw = now
        info = ""
        if self.learn.training:
            smooth = self.learn.recorder.smooth_loss
            if smooth is not None:
                info = f"loss {smooth.item():.4f}"  # at most `refresh` syncs a second
        self._bar.update(self._task, completed=self._count, info=info)
        self._redraw()

    # -- epochs ------------------------------------------------------------------------------------
    def after_epoch(self) -> None:
        if self._mode == "off":
            return
        log = self.learn.recorder.log
        row = [format_value(log.get(n)) for n in self._names]
        row[0] = str(log.get("epoch", self.learn.epoch))
        row[-1] = _format_time(log.get("time", 0.0))
        if self._mode == "plain":
            self._con.print(self._plain_line(row), highlight=False, soft_wrap=True)
        else:
            self._rows.append(row)
            self._redraw()

    def _plain_line(self, cells: list[str]) -> str:
        widths = [max(len(n), 9) for n in self._names]
        return "  ".join(c.rjust(w) for c, w in zip(cells, widths))
