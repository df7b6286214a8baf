"""JSON-lines metrics in the run directory: one record per event, appended and flushed at once,
so a killed run keeps everything it logged and a resumed run appends to the same file."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from elm_train.runtime.monitor import RunMonitor


class MetricsSink(Protocol):
    """Where the library's training loops report: anything with this one method."""

    def log(self, stage: str, **values: Any) -> None: ...


class NullMetrics:
    """A sink that drops everything, for library use without a metrics file."""

    def log(self, stage: str, **values: Any) -> None:
        pass


class MetricsLog:
    def __init__(self, path: Path, enabled: bool = True, monitor: RunMonitor | None = None) -> None:
        self.path = path
        self.enabled = enabled
        self.monitor = monitor
        """Live curves (:mod:`elm_train.runtime.monitor`): the training loops send their series there too."""
        if enabled:
            path.parent.mkdir(parents=True, exist_ok=True)

    def log(self, stage: str, **values: Any) -> None:
        if not self.enabled:
            return
        record = {"time": round(time.time(), 3), "stage": stage, **values}
        with self.path.open("a") as f:
            f.write(json.dumps(record, default=float) + "\n")

    def read(self, stage: str | None = None) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        rows = [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
        return [r for r in rows if stage is None or r.get("stage") == stage]
