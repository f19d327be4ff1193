"""Training logs: one CSV row per logged step (always), TensorBoard scalars when installed."""
from __future__ import annotations

import csv
import logging
from pathlib import Path

log = logging.getLogger(__name__)


class RunLog:
    """Append-only CSV of scalar metrics; resuming appends to the same file.

    The header is fixed by the first row written; later rows with new keys are rejected
    so a log never silently loses columns.
    """

    def __init__(self, path: str | Path, tensorboard: bool = True):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fields: list[str] | None = None
        if self.path.exists() and self.path.stat().st_size:
            with self.path.open() as f:
                self._fields = next(csv.reader(f))
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(self.path.with_suffix("")) + "_tb")
            except ImportError:
                log.info("tensorboard not installed; logging to %s only", self.path)

    def write(self, row: dict[str, float | int | str]) -> None:
        if self._fields is None:
            self._fields = list(row)
            with self.path.open("w", newline="") as f:
                csv.writer(f).writerow(self._fields)
        extra = set(row) - set(self._fields)
        if extra:
            raise ValueError(f"log row has columns not in {self.path.name}'s header: {sorted(extra)}")
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, self._fields).writerow(row)
        if self._tb is not None and "step" in row:
            for k, v in row.items():
                if k != "step" and isinstance(v, (int, float)):
                    self._tb.add_scalar(k, v, int(row["step"]))

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def read_log(path: str | Path) -> list[dict[str, float]]:
    """Rows of a RunLog CSV with numeric values parsed."""
    with Path(path).open() as f:
        return [{k: float(v) if v not in ("", None) else float("nan") for k, v in r.items()} for r in csv.DictReader(f)]
