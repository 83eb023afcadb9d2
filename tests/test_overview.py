"""The overview's figures without a browser: the hours counted, the share polling found,
when it warns, and the chart's geometry (the browser tests check that it fits a screen;
these, that each bar stands where its hour and counts say)."""

from __future__ import annotations

from typing import Any

from receiver.web.dashboard.overview import HOUR, Bar, Endings, endings

DAY = 20001 * 24  # an hour number at midnight UTC (and not a multiple of 25)


def day(counts: dict[int, dict[str, int]]) -> Endings:
    """24 hours from midnight, each with the counts given for its index (else none)."""
    zero = {"webhook": 0, "poll": 0, "api": 0}
    return Endings([Bar(DAY + n, zero | counts.get(n, {})) for n in range(24)])


def shares(before: tuple[int, int], recent: tuple[int, int]) -> Endings:
    """(webhook, poll) endings in hour 0 and in the last hour."""
    return day(
        {
            0: {"webhook": before[0], "poll": before[1]},
            23: {"webhook": recent[0], "poll": recent[1]},
        }
    )


def test_bars_stack_from_the_bottom_in_a_fixed_order_scaled_to_the_busiest_hour() -> None:
    chart = day({0: {"webhook": 2, "poll": 1, "api": 1}, 3: {"poll": 2}}).chart()
    assert (chart["width"], chart["height"], chart["left"], chart["top"]) == (960, 160, 36, 4)
    assert chart["empty"] is False
    first, second, _, fourth = chart["bars"][:4]
    # 24 slots over 924 px: 38.5 each, a pixel of gap either side.
    assert (first["x"], first["w"]) == (37.0, 36.5)
    assert first["parts"] == [("webhook", 80.0, 80.0), ("poll", 40.0, 40.0), ("api", 0.0, 40.0)]
    assert first["bar"].total == 4
    assert (second["x"], second["parts"]) == (75.5, [])  # an hour with nothing: no rects
    assert (fourth["x"], fourth["parts"]) == (152.5, [("poll", 80.0, 80.0)])
    assert len(chart["bars"]) == 24


def test_a_bar_of_a_third_of_the_top_is_drawn_to_a_tenth_of_a_pixel() -> None:
    chart = day({0: {"webhook": 3}, 1: {"webhook": 1, "api": 1}}).chart()
    assert chart["bars"][1]["parts"] == [("webhook", 106.7, 53.3), ("api", 53.3, 53.3)]
    assert Endings([]).chart()["top"] == 1  # no hours at all: still a scale, no error


def test_ticks_every_three_hours_and_a_scale_of_zero_half_and_top() -> None:
    chart = day({5: {"webhook": 3}}).chart()
    assert [t["label"] for t in chart["ticks"]] == [f"{h:02d}:00" for h in range(0, 24, 3)]
    assert chart["ticks"][1]["x"] == 170.8  # the middle of the fourth slot, 170.75
    assert chart["scale"] == [
        {"y": 160.0, "label": "0"},
        {"y": 80.0, "label": "1.5"},  # half of 3: one decimal, not "1.5000"
        {"y": 0.0, "label": "3"},
    ]


def test_a_day_with_no_endings_is_empty_and_still_draws_a_scale_of_one() -> None:
    chart = day({}).chart(width=480, height=100, left=20)
    assert (chart["empty"], chart["top"]) == (True, 1)
    assert [b["parts"] for b in chart["bars"]] == [[]] * 24
    assert (chart["bars"][1]["x"], chart["bars"][1]["w"]) == (40.2, 17.2)  # 460 px / 24
    assert [s["label"] for s in chart["scale"]] == ["0", "0.5", "1"]


def test_the_poll_share_needs_five_endings_and_ignores_the_operators_polls() -> None:
    assert shares((0, 0), (2, 2)).poll_share() is None  # 4 endings say nothing
    assert shares((0, 0), (2, 3)).poll_share() == 0.6
    with_operator = day({23: {"webhook": 1, "poll": 3, "api": 9}})
    assert with_operator.poll_share() is None  # the operator's 9 count for nothing
    assert with_operator.totals() == {"webhook": 1, "poll": 3, "api": 9}
    assert shares((8, 2), (2, 3)).totals(slice(-3, None)) == {"webhook": 2, "poll": 3, "api": 0}


def test_it_warns_when_polling_finds_twenty_points_more_in_the_last_three_hours() -> None:
    # 20 % before, 40 % in the last 3 h: exactly the rise that is worth a warning.
    assert shares((8, 2), (3, 2)).warning() == (
        "Polling found 40% of the endings in the last 3 h (20% in the 21 h before): "
        "GBG's webhooks are probably being lost. Check the Webhook module's URL and "
        "credentials in GBG GO, and this receiver's log for refused webhooks (401, 422)."
    )
    assert shares((8, 2), (7, 3)).warning() is None  # 30 %: up 10 points only
    assert shares((8, 2), (2, 2)).warning() is None  # 4 recent endings: too few to say


def test_with_no_earlier_figure_it_warns_from_half() -> None:
    assert shares((0, 0), (3, 3)).warning() == (
        "Polling found 50% of the endings in the last 3 h (no earlier figure): "
        "GBG's webhooks are probably being lost. Check the Webhook module's URL and "
        "credentials in GBG GO, and this receiver's log for refused webhooks (401, 422)."
    )
    assert shares((0, 0), (3, 2)).warning() is None  # 40 %
    # Four earlier endings are too few for a figure: the rule is "from half" again.
    assert "(no earlier figure)" in str(shares((2, 2), (3, 3)).warning())


class Recorded:
    """A store that answers endings_by_hour with given rows and notes what it was asked."""

    def __init__(self, rows: list[tuple[int, str, int]]) -> None:
        self.rows = rows
        self.asked: list[float] = []

    def endings_by_hour(self, since: float) -> list[tuple[int, str, int]]:
        self.asked.append(since)
        return self.rows


def test_endings_asks_for_the_last_24_hours_and_keeps_only_known_hours_and_sources() -> None:
    now = (DAY + 30) * HOUR + 1800  # half past an hour
    store: Any = Recorded(
        [
            (DAY + 30, "webhook", 2),
            (DAY + 30, "webhook", 1),  # the same hour and source again: summed
            (DAY + 7, "poll", 4),  # the first hour shown
            (DAY + 6, "poll", 5),  # an hour before the window
            (DAY + 31, "poll", 6),  # an hour after now
            (DAY + 20, "gossip", 7),  # a source the chart does not know
        ]
    )
    found = endings(store, now)
    assert store.asked == [(DAY + 7) * HOUR]
    assert [b.hour for b in found.bars] == list(range(DAY + 7, DAY + 31))
    assert found.bars[-1].counts == {"webhook": 3, "poll": 0, "api": 0}
    assert found.bars[0].counts == {"webhook": 0, "poll": 4, "api": 0}
    assert found.totals() == {"webhook": 3, "poll": 4, "api": 0}
