"""Numbers as people read and compare them: durations, rates, counts with their noun.

    duration(131.9)          -> "2 min 12 s"
    duration(3850)           -> "1 h 04 min"
    duration(13.14)          -> "13.1 s"
    figure(581.74)           -> "582"
    counted(1, "request")    -> "1 request"
    rate_of(3, 0.1, 1681.4)  -> ""   (three requests in a tenth of a second: no rate to speak of)

For the terminal and the report only: summary.json, `runs` and the JSON logs keep plain
seconds and full precision, for programs.
"""

from __future__ import annotations

import math

# Below these a rate is noise: three requests in 0.1 s are "1,681/s" and one is "0.0/s".
MIN_RATE_COUNT = 10
MIN_RATE_SECONDS = 1.0


def duration(seconds: float) -> str:
    """A duration in the largest units that still tell two nights apart: tenths of a second
    under a minute (hundredths under a tenth), whole seconds under an hour, whole minutes
    beyond; minutes and seconds zero-padded, so that durations line up and compare at a
    glance."""
    if seconds < 0.1:  # a step that took no time to speak of, but not "0.0 s"
        return f"{max(seconds, 0.0):.2f} s"
    if round(seconds, 1) < 60:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60:02d} min"


def figure(value: float) -> str:
    """A measured quantity to three significant digits, with thousands separators: the
    digits beyond say nothing about a rate or a share measured once (581.74 -> "582",
    8640.2 -> "8,640", 12.46 -> "12.5", 25.0 -> "25")."""
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    digits = 2 - math.floor(math.log10(abs(value)))
    rounded = round(value, digits)
    text = f"{rounded:,.{max(digits, 0)}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """`count` with its noun in the right number: "1 request", "2,001 requests"."""
    word = noun if count == 1 else plural or f"{noun}s"
    return f"{count:,} {word}"


def rate_of(count: int, seconds: float, per_second: float | None = None) -> str:
    """ "194/s" for `count` things done in `seconds` (or the rate measured, `per_second`),
    or "" when there were too few of them, or too short a time, for a rate to mean anything."""
    if count < MIN_RATE_COUNT or seconds < MIN_RATE_SECONDS:
        return ""
    rate = count / seconds if per_second is None else per_second
    return f"{figure(rate)}/s" if rate > 0 else ""
