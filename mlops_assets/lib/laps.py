"""Where a partition's time went: named laps of one stopwatch, for the asset's metadata."""

from __future__ import annotations

import time


class Laps:
    """`lap(name)` closes the stretch since the last lap (or the start) under `name`; a name
    given twice adds up. `seconds()` is every lap plus `total`, rounded to milliseconds."""

    def __init__(self) -> None:
        self._start = self._last = time.perf_counter()
        self._laps: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self._laps[name] = self._laps.get(name, 0.0) + now - self._last
        self._last = now

    def seconds(self) -> dict[str, float]:
        laps = {name: round(s, 3) for name, s in self._laps.items()}
        return laps | {"total": round(self._last - self._start, 3)}
