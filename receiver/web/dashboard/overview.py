"""The overview's figures: the store's snapshot, and who found the endings of the last
day, hour by hour, drawn as a small SVG bar chart on the server."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from receiver.store import Store

HOUR = 3600
HOURS = 24
RECENT = 3  # hours: a poll share rising over these means webhooks are being lost
MIN_ENDINGS = 5  # fewer endings than this say nothing about a share
RISE = 0.2  # a rise of the poll share by this much (20 points) is worth a warning
SOURCES = ("webhook", "poll", "api")  # how an ending was found; api: an operator's poll


@dataclass(frozen=True)
class Bar:
    hour: int  # whole hours since the epoch
    counts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True)
class Endings:
    """Endings of the last 24 h by source, per hour (oldest first) and in all."""

    bars: list[Bar]

    def totals(self, hours: slice = slice(None)) -> dict[str, int]:
        return {s: sum(b.counts[s] for b in self.bars[hours]) for s in SOURCES}

    def poll_share(self, hours: slice = slice(None)) -> float | None:
        """Of the endings that a webhook or polling found, the share polling found."""
        totals = self.totals(hours)
        found = totals["webhook"] + totals["poll"]
        return totals["poll"] / found if found >= MIN_ENDINGS else None

    def warning(self) -> str | None:
        """Say so when polling finds a rising share of the endings: webhooks are lost."""
        recent, before = self.poll_share(slice(-RECENT, None)), self.poll_share(slice(-RECENT))
        if recent is None:
            return None
        if before is None and recent >= 0.5:
            earlier = "no earlier figure"
        elif before is not None and recent >= before + RISE:
            earlier = f"{before:.0%} in the {HOURS - RECENT} h before"
        else:
            return None
        return (
            f"Polling found {recent:.0%} of the endings in the last {RECENT} h ({earlier}): "
            "GBG's webhooks are probably being lost. Check the Webhook module's URL and "
            "credentials in GBG GO, and this receiver's log for refused webhooks (401, 422)."
        )

    def chart(self, width: int = 960, height: int = 160, left: int = 36) -> dict[str, Any]:
        """Bar geometry for the template: x, width and a stacked (source, y, height) list
        per hour; a tick every 3 hours (UTC) and the scale's lines (0, half, top). No
        bars when nothing ended (the template says so instead)."""
        step = (width - left) / HOURS
        top = max((b.total for b in self.bars), default=0) or 1
        bars = []
        for n, bar in enumerate(self.bars):
            y, parts = float(height), []
            for source in SOURCES:
                h = bar.counts[source] * height / top
                if h:
                    y -= h
                    parts.append((source, round(y, 1), round(h, 1)))
            x = round(left + n * step + 1, 1)
            bars.append({"x": x, "w": round(step - 2, 1), "bar": bar, "parts": parts})
        ticks = [
            {"x": round(left + (n + 0.5) * step, 1), "label": f"{bar.hour % 24:02d}:00"}
            for n, bar in enumerate(self.bars)
            if bar.hour % 3 == 0
        ]
        scale = [
            {"y": round(height - height * f, 1), "label": _scale(top * f)} for f in (0, 0.5, 1)
        ]
        return {
            "width": width,
            "height": height,
            "left": left,
            "top": top,
            "bars": bars,
            "ticks": ticks,
            "scale": scale,
            "empty": not any(b.total for b in self.bars),
        }


def _scale(value: float) -> str:
    return f"{value:g}" if value == int(value) else f"{value:.1f}"


def endings(store: Store, now: float) -> Endings:
    """The last 24 whole-or-partial hours up to ``now``, oldest first, every hour shown."""
    last = int(now // HOUR)
    first = last - HOURS + 1
    counts = {h: dict.fromkeys(SOURCES, 0) for h in range(first, last + 1)}
    for hour, source, n in store.endings_by_hour(first * HOUR):
        if hour in counts and source in counts[hour]:
            counts[hour][source] += n
    return Endings([Bar(h, by_source) for h, by_source in counts.items()])
