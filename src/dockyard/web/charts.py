"""Charts drawn on the server as SVG: no JavaScript library to vendor, nothing to run in the
browser, and the same markup a test can count bars in.

This module only does the arithmetic (scales, ticks, bar positions); the markup comes from the
``charts/*.html`` templates, which Jinja autoescapes like every page, so a label is text whatever
it contains. Colours come from classes in ``app.css`` (the Content-Security-Policy forbids
``style=`` attributes). Each chart is a ``role="img"`` with a title and a description that state
the totals in words, followed by a ``<details>`` table of every number, for screen readers and
for anyone who wants the figures rather than the picture.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from markupsafe import Markup

from dockyard.registry.units import format_size
from dockyard.web.render import environment

# The daily chart's canvas (viewBox units; the SVG scales to its container's width).
WIDTH = 720
DAILY_HEIGHT = 260
_LEFT, _RIGHT, _TOP, _BOTTOM = 48, 12, 34, 34
# The storage chart: one row per repository, the name in a left column.
_LABEL_WIDTH = 210
_VALUE_WIDTH = 80
_ROW = 24
_BAR = 14
_LABEL_CHARS = 30  # longer names are shortened in the picture; the full name is in each row's title


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    tip: str  # the bar's own <title>: what a pointer hovering it shows


@dataclass(frozen=True, slots=True)
class Tick:
    at: float  # position along the axis, in viewBox units
    label: str


def nice_ceiling(value: float) -> tuple[int, int]:
    """(top, step) of an integer axis reaching ``value`` in at most five steps of 1, 2 or 5 x 10^k."""
    if value <= 0:
        return 1, 1
    rough = value / 4
    magnitude = 10 ** max(0, math.floor(math.log10(rough))) if rough >= 1 else 1
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= rough)
    return int(step * math.ceil(value / step)), int(step)


def _day_label(day: str) -> str:
    return date.fromisoformat(day).strftime("%b %d")


def _plural(n: int, word: str) -> str:
    if n == 1:
        return f"1 {word}"
    return f"{n:,} {word[:-1]}ies" if word.endswith("y") else f"{n:,} {word}{'es' if word.endswith('sh') else 's'}"


def _labelled(count: int, most: int = 8) -> list[int]:
    """Which days get a date under the axis: at most about ``most``, evenly spaced, and the last
    day too unless that would crowd the label before it."""
    every = max(1, math.ceil(count / most))
    chosen = list(range(0, count, every))
    if count and chosen[-1] != count - 1 and (count - 1 - chosen[-1]) * 2 >= every:
        chosen.append(count - 1)
    return chosen


def daily_chart(days: Sequence[Mapping[str, Any]], *, chart_id: str, title: str) -> Markup:
    """Pulls and pushes per day, side by side: ``days`` as ``usage_report`` fills them (every day
    of the window, oldest first, each with ``day``, ``pulls`` and ``pushes``)."""
    points = [(str(d["day"]), int(d["pulls"]), int(d["pushes"])) for d in days]
    top, step = nice_ceiling(max((max(p, q) for _, p, q in points), default=0))
    plot_w, plot_h = WIDTH - _LEFT - _RIGHT, DAILY_HEIGHT - _TOP - _BOTTOM
    slot = plot_w / max(len(points), 1)
    bar_w = slot * 0.4
    baseline = _TOP + plot_h

    def bar(index: int, offset: float, count: int, what: str, day: str) -> Bar:
        height = plot_h * count / top
        x = _LEFT + index * slot + slot * 0.1 + offset
        tip = f"{day}: {_plural(count, what)}"
        return Bar(round(x, 2), round(baseline - height, 2), round(bar_w, 2), round(height, 2), tip)

    pulls = [bar(i, 0, p, "pull", day) for i, (day, p, _) in enumerate(points)]
    pushes = [bar(i, bar_w, q, "push", day) for i, (day, _, q) in enumerate(points)]
    y_ticks = [Tick(round(baseline - plot_h * v / top, 2), f"{v:,}") for v in range(0, top + 1, step)]
    x_ticks = [Tick(round(_LEFT + i * slot + slot / 2, 2), _day_label(points[i][0])) for i in _labelled(len(points))]
    total_pulls, total_pushes = sum(p for _, p, _ in points), sum(q for _, _, q in points)
    if points:
        busiest = max(points, key=lambda point: (point[1] + point[2], point[0]))
        totals = f"{_plural(total_pulls, 'pull')} and {_plural(total_pushes, 'push')}"
        summary = f"From {points[0][0]} to {points[-1][0]}: {totals}."
        if busiest[1] + busiest[2]:
            summary += f" Busiest day {busiest[0]}: {_plural(busiest[1], 'pull')}, {_plural(busiest[2], 'push')}."
    else:
        summary = "No days to show."
    return Markup(
        environment.get_template("charts/daily.html").render(
            id=chart_id,
            title=title,
            summary=summary,
            width=WIDTH,
            height=DAILY_HEIGHT,
            left=_LEFT,
            right=WIDTH - _RIGHT,
            top=_TOP,
            baseline=baseline,
            pulls=pulls,
            pushes=pushes,
            y_ticks=y_ticks,
            x_ticks=x_ticks,
            points=points,
        )
    )


@dataclass(frozen=True, slots=True)
class StorageRow:
    name: str
    label: str  # the name as drawn: shortened when long
    y: float
    unique: Bar
    shared: Bar
    value: str  # stored bytes, written after the bar
    value_x: float


def _shorten(name: str) -> str:
    return name if len(name) <= _LABEL_CHARS else name[: _LABEL_CHARS - 1] + "…"


def storage_chart(rows: Sequence[tuple[str, int, int]], *, chart_id: str, title: str) -> Markup:
    """Horizontal bars, one per repository: its unique bytes, then its shared bytes, stacked.
    ``rows`` are (name, unique_bytes, shared_bytes), drawn in the order given."""
    plot_left = _LABEL_WIDTH
    plot_w = WIDTH - _LABEL_WIDTH - _VALUE_WIDTH
    top = max((u + s for _, u, s in rows), default=0) or 1
    drawn = []
    for index, (name, unique, shared) in enumerate(rows):
        y = _TOP + index * _ROW
        unique_w = plot_w * unique / top
        shared_w = plot_w * shared / top
        tip = f"{name}: {format_size(unique)} unique, {format_size(shared)} shared"
        drawn.append(
            StorageRow(
                name,
                _shorten(name),
                y,
                Bar(plot_left, y, round(unique_w, 2), _BAR, tip),
                Bar(round(plot_left + unique_w, 2), y, round(shared_w, 2), _BAR, tip),
                format_size(unique + shared),
                round(plot_left + unique_w + shared_w + 6, 2),
            )
        )
    height = _TOP + max(len(rows), 1) * _ROW + 8
    unique_total, shared_total = sum(u for _, u, _ in rows), sum(s for _, _, s in rows)
    if rows:
        largest = max(rows, key=lambda row: row[1] + row[2])
        summary = (
            f"{_plural(len(rows), 'repository')}: "
            f"{format_size(unique_total)} unique and {format_size(shared_total)} shared in all; "
            f"the largest is {largest[0]} with {format_size(largest[1] + largest[2])}."
        )
    else:
        summary = "No repositories hold any data yet."
    return Markup(
        environment.get_template("charts/storage.html").render(
            id=chart_id,
            title=title,
            summary=summary,
            width=WIDTH,
            height=height,
            label_right=_LABEL_WIDTH - 8,
            plot_left=plot_left,
            top=_TOP,
            rows=drawn,
            bar_height=_BAR,
            text_offset=_BAR - 3,
            table=rows,
        )
    )
