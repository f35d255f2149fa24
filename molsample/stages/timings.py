"""CPU and wall seconds per stage, summed over every invocation of a run (``<run>/timings.json``)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from molsample.io.atomic import write_text_atomic

__all__ = ["StageTimings"]


@dataclasses.dataclass
class StageTimings:
    """CPU and wall seconds per stage name, summed over invocations; stored as JSON."""

    cpu_s: dict[str, float] = dataclasses.field(default_factory=dict)
    wall_s: dict[str, float] = dataclasses.field(default_factory=dict)
    invocations: int = 0

    FILE = "timings.json"

    @classmethod
    def load(cls, run_dir: Path) -> StageTimings:
        """The totals stored in ``run_dir`` (empty when there are none or the file is unreadable)."""
        path = Path(run_dir) / cls.FILE
        try:
            blob = json.loads(path.read_text())
            return cls({k: float(v) for k, v in blob["cpu_s"].items()},
                       {k: float(v) for k, v in blob["wall_s"].items()}, int(blob.get("invocations", 0)))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return cls()

    def add(self, name: str, cpu: float, wall: float) -> None:
        """Add ``cpu`` and ``wall`` seconds to stage ``name``."""
        self.cpu_s[name] = self.cpu_s.get(name, 0.0) + cpu
        self.wall_s[name] = self.wall_s.get(name, 0.0) + wall

    def save(self, run_dir: Path) -> None:
        """Write the totals to ``run_dir/timings.json`` (atomically)."""
        write_text_atomic(Path(run_dir) / self.FILE, json.dumps(dataclasses.asdict(self), indent=1) + "\n")

    @property
    def total_cpu_s(self) -> float:
        return sum(self.cpu_s.values())

    @property
    def total_wall_s(self) -> float:
        return sum(self.wall_s.values())
