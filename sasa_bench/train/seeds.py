"""A model's accuracy over seeds: mean, sample standard deviation and n, never one run.

One seed change moves a small CPU training by many points, so every accuracy sasa_bench prints
is a `SeedSummary` of the training records that differ only in their seed (the fields a resumed
run must keep, `SAME_ON_RESUME`, with the seed left out). The latest record of each seed counts.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sasa_bench.records import Record
from sasa_bench.train.config import SAME_ON_RESUME

#: the config fields that make two training runs the same experiment, apart from the seed
EXPERIMENT_FIELDS = tuple(name for name in SAME_ON_RESUME if name != "seed")


def parse_seeds(text: str) -> tuple[int, ...]:
    """`0,1,2` -> (0, 1, 2); distinct integers >= 0, in the order given."""
    seeds = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit():
            raise ValueError(f"seeds are integers >= 0 joined by commas (0,1,2); got {text!r}")
        if int(part) in seeds:
            raise ValueError(f"seed {part} is given twice in {text!r}")
        seeds.append(int(part))
    return tuple(seeds)


@dataclass(frozen=True)
class SeedSummary:
    model: str
    data: str
    epochs: int
    seeds: tuple[int, ...]
    top1: tuple[float, ...]  # per seed, in the order of `seeds`
    records: tuple[Record, ...]

    @property
    def n(self) -> int:
        return len(self.top1)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.top1)

    @property
    def sd(self) -> float | None:
        """Sample standard deviation (n - 1); None for a single run."""
        return statistics.stdev(self.top1) if self.n > 1 else None

    def text(self, digits: int = 1) -> str:
        """`94.0 ± 2.1 (n=3)`; a single run says so: `61.6 (n=1, one seed)`."""
        if self.sd is None:
            return f"{self.mean:.{digits}f} (n=1, one seed)"
        return f"{self.mean:.{digits}f} ± {self.sd:.{digits}f} (n={self.n})"


def experiment_key(record: Record) -> tuple:
    return (record.model, *(_hashable(record.config.get(name)) for name in EXPERIMENT_FIELDS))


def summarize(records: Iterable[Record], kinds: Sequence[str] = ("train",)) -> list[SeedSummary]:
    """One summary per experiment among the ok `kinds` records with a top-1, in first-seen
    order; the latest record of each seed counts."""
    latest: dict[tuple, dict[int, Record]] = {}
    for record in records:
        if record.kind not in kinds or record.status != "ok" or "top1" not in record.metrics:
            continue
        runs = latest.setdefault(experiment_key(record), {})
        seed = int(record.config.get("seed", 0))
        if seed not in runs or record.created >= runs[seed].created:
            runs[seed] = record
    summaries = []
    for runs in latest.values():
        seeds = tuple(sorted(runs))
        first = runs[seeds[0]]
        summaries.append(
            SeedSummary(
                model=first.model,
                data=str(first.config.get("data", "?")),
                epochs=int(first.config.get("epochs", 0)),
                seeds=seeds,
                top1=tuple(float(runs[s].metrics["top1"]) for s in seeds),
                records=tuple(runs[s] for s in seeds),
            )
        )
    return summaries


def _hashable(value: object) -> object:
    return tuple(value) if isinstance(value, list) else value
