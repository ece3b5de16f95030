"""Durations, rates and counts as people read and compare them (issue 25, item 5)."""

from __future__ import annotations

import pytest

from pipeline.progress import StepProgress
from pipeline.readable import counted, duration, figure, rate_of


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0.04, "0.04 s"),
        (0.3012, "0.3 s"),
        (0.96, "1.0 s"),
        (13.14, "13.1 s"),
        (59.94, "59.9 s"),
        (59.96, "1 min 00 s"),  # never "60.0 s"
        (131.9, "2 min 12 s"),
        (149.5, "2 min 30 s"),  # told apart from 131.9 s: "2 min" both, before
        (3599.6, "1 h 00 min"),
        (3850, "1 h 04 min"),
        (6 * 3600, "6 h 00 min"),
        (26 * 3600 + 59, "26 h 01 min"),
    ],
)
def test_durations_read_in_the_units_that_tell_nights_apart(seconds: float, shown: str) -> None:
    assert duration(seconds) == shown


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (581.74, "582"),
        (8640.2, "8,640"),
        (12.46, "12.5"),
        (25.0, "25"),
        (0.754, "0.754"),
        (999.6, "1,000"),
        (0, "0"),
    ],
)
def test_figures_keep_three_significant_digits(value: float, shown: str) -> None:
    assert figure(value) == shown


def test_counts_take_their_noun_in_the_right_number() -> None:
    assert counted(1, "request") == "1 request"
    assert counted(0, "request") == "0 requests"
    assert counted(2001, "request") == "2,001 requests"
    assert counted(1, "file") == "1 file"
    assert counted(3, "night") == "3 nights"
    assert counted(2, "strategy", "strategies") == "2 strategies"


def test_a_rate_is_shown_only_where_it_means_something() -> None:
    assert rate_of(1, 0.1, 0.0) == ""  # "Sent 1 requests in 0.1s (0.0/s)"
    assert rate_of(10, 0.1, 8640.2) == ""  # ten requests in a tenth of a second: no rate
    assert rate_of(3, 30.0) == ""  # three of anything: no rate either
    assert rate_of(2001, 10.4, 194.3) == "194/s"
    assert rate_of(2001, 10.4) == "192/s"  # from the count when no measured rate is given
    assert rate_of(50, 5.0, 0.0) == ""


def test_progress_fields_show_their_brackets(capsys: pytest.CaptureFixture[str]) -> None:
    """A progress field is plain text: "[collect]" is a config section, not rich markup."""
    with StepProgress("collect", 10, console=True) as progress:
        progress.update(5, waiting="[collect] deadline_seconds")
    assert "waiting [collect] deadline_seconds" in capsys.readouterr().err
