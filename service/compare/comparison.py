"""The items of a comparison together: every parameter and metric any of them has, and those
that differ between them (what the dashboard and the CLI highlight)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from service.compare.items import CompareItem

ABSENT = object()


@dataclass
class Comparison:
    items: list[CompareItem]
    omitted: int = 0  # a search's trials left out (past the most one comparison holds)

    @property
    def params(self) -> list[str]:
        return _names(item.params for item in self.items)

    @property
    def metrics(self) -> list[str]:
        """The final metrics' names, then the names of curves with no final value."""
        return _names([*(item.metrics for item in self.items), *(item.series for item in self.items)])

    def differing_params(self) -> list[str]:
        return [name for name in self.params if _differs(item.params.get(name, ABSENT) for item in self.items)]

    def differing_metrics(self) -> list[str]:
        return [name for name in self.metrics if _differs(self.final(item, name) for item in self.items)]

    @staticmethod
    def final(item: CompareItem, name: str) -> Any:
        """An item's final value of a metric: its job's metrics, else the last point of its curve."""
        if name in item.metrics:
            return item.metrics[name]
        series = item.series.get(name)
        return series.points[-1][1] if series and series.points else ABSENT

    def view(self) -> dict[str, Any]:
        return {
            "items": [item.view() for item in self.items],
            "params": self.params,
            "metrics": self.metrics,
            "differ": {"params": self.differing_params(), "metrics": self.differing_metrics()},
            "omitted": self.omitted,
        }


def _names(mappings) -> list[str]:
    """The keys of all the mappings, in the order they first appear."""
    return list(dict.fromkeys(key for mapping in mappings for key in mapping))


def _differs(values) -> bool:
    """Whether the values are not all the same (a missing value differs from any; True from 1)."""
    return len({(type(v) is bool, v) if v is not ABSENT else ABSENT for v in values}) > 1
