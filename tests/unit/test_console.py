"""What `run` and the step commands print for people (issue 25, items 4 and 5): a sampled run
leads with its estimates; durations, rates and counts read right; no text is taken for markup;
the deadline's toll agrees with the table below it."""

from __future__ import annotations

import re
from typing import Any

import pytest

from pipeline import console
from pipeline.audit import RunResult
from pipeline.completeness import Completeness
from pipeline.contacts.load import LoadSummary
from pipeline.lake.publish import PublishSummary
from pipeline.ledger import PlanSummary
from pipeline.sinch.models import ALL_STATUSES
from pipeline.steps import CollectSummary, SubmitSummary


def channel(name: str, targets: int = 500, no_response: int = 0) -> dict[str, Any]:
    counts = {status.lower(): 0 for status in ALL_STATUSES}
    reachable = targets // 2
    counts |= {"capability_full": reachable, "no_capability": targets - reachable - no_response}
    counts["no_response"] = no_response
    return {
        "channel": name,
        "targets": targets,
        **counts,
        "reachable_share": reachable / targets,
        "reachable_share_of_answered": reachable / (targets - no_response),
        "not_a_contact": 0,
    }


def estimate(name: str, share: float, stratum: str | None = None) -> dict[str, Any]:
    return {
        "channel": name,
        "stratum": stratum,
        "share": share,
        "low": share - 0.0036,
        "high": share + 0.0041,
        "level": 0.95,
        "sample": 20_000,
        "population": 10_000_000,
        "reachable": int(share * 20_000),
        "no_response": 0,
        "no_response_share": 0.0,
        "reachable_estimate": round(share * 10_000_000),
        "reachable_low": round((share - 0.0036) * 10_000_000),
        "reachable_high": round((share + 0.0041) * 10_000_000),
    }


def finished(**fields: Any) -> RunResult:
    result = RunResult(
        run_id="r1",
        load=LoadSummary(rows=2009, targets=6003, contacts=2001, rejects=8, sources=["a.csv"]),
        plan=PlanSummary(targets=6003, to_query=6003, requests=2001),
        submit=SubmitSummary(accepted=2001, seconds=10.4, rate_per_second=194.3),
        collect=CollectSummary(lag={"p50_seconds": 0.301, "p95_seconds": 0.517}),
        channels=[channel("RCS"), channel("SMS")],
        durations={"load": 0.41, "submit": 131.9, "collect": 149.5, "build": 3850.0},
    )
    for name, value in fields.items():
        setattr(result, name, value)
    return result


def printed(capsys: pytest.CaptureFixture[str], result: RunResult) -> str:
    console.print_run(result, result.channels)
    return capsys.readouterr().out


def test_a_sampled_run_leads_with_its_estimates_of_the_whole_list(
    capsys: pytest.CaptureFixture[str],
) -> None:
    estimates = [
        estimate("RCS", 0.5408),
        estimate("RCS", 0.61, stratum="SE"),  # strata stay in the report
        estimate("SMS", 0.9312),
    ]
    shown = printed(capsys, finished(estimates=estimates))
    lines = shown.splitlines()
    title = next(i for i, line in enumerate(lines) if "Whole list, estimated" in line)
    own = next(i for i, line in enumerate(lines) if "the sample's own counts" in line)
    assert title < own
    assert "from a sample of 20,000 (95% intervals)" in lines[title]
    rcs = next(line for line in lines[title:own] if line.startswith("│ RCS"))
    cells = [cell.strip() for cell in rcs.strip("│").split("│")]
    share, interval = "54.1%", "53.7% - 54.5%"
    contacts, contacts_interval = "5,408,000", "5,372,000 - 5,449,000"
    assert cells == ["RCS", share, interval, contacts, contacts_interval, "10,000,000"]
    assert not any("61.0%" in line for line in lines)
    assert "reachability per channel" not in shown


def test_the_build_step_of_a_sampled_run_shows_its_estimates_first(
    capsys: pytest.CaptureFixture[str],
) -> None:
    console.print_step(finished(estimates=[estimate("SMS", 0.9312)]), "build")
    shown = capsys.readouterr().out
    assert shown.index("Whole list, estimated") < shown.index("Run r1: the sample's own counts")
    assert "9,312,000" in shown


def test_a_full_run_shows_no_estimates(capsys: pytest.CaptureFixture[str]) -> None:
    shown = printed(capsys, finished())
    assert "Run r1: reachability per channel" in shown
    assert "estimated" not in shown.lower()


def test_bracketed_config_keys_reach_the_terminal_whole(
    capsys: pytest.CaptureFixture[str],
) -> None:
    gate = Completeness("r1", queried=6003, no_response=151, max_share=0.02)
    result = finished(completeness=gate, message=gate.message(), status="incomplete")
    result.collect = CollectSummary(contacts={"created": 3})
    shown = printed(capsys, result)
    assert "more than [collect] max_no_response_share 2.0% allows" in shown
    assert "INCOMPLETE: run r1 is incomplete" in shown
    assert "Contacts Sinch had none for ([contacts] create_missing): 3 created" in shown


def test_durations_rates_and_plurals_read_right(capsys: pytest.CaptureFixture[str]) -> None:
    shown = printed(capsys, finished())
    assert "Loaded 2,009 rows from 1 file: 2,001 contacts, 6,003 targets, 8 rejected" in shown
    assert "Sent 2,001 requests in 10.4 s (194/s): 2,001 accepted, 0 failed" in shown
    assert "Callbacks: lag from acceptance p50 0.3 s, p95 0.5 s\n" in shown
    took = re.search(r"^Took: +(.*)$", shown, re.MULTILINE)
    assert took is not None
    assert took.group(1) == (
        "load 0.4 s, submit 2 min 12 s, collect 2 min 30 s, build 1 h 04 min; 1 h 09 min in all"
    )
    one = finished(submit=SubmitSummary(accepted=1, seconds=0.1, rate_per_second=0.0))
    assert "Sent 1 request in 0.1 s: 1 accepted, 0 failed" in printed(capsys, one)
    ten = finished(submit=SubmitSummary(accepted=10, seconds=0.1, rate_per_second=8640.2))
    assert "Sent 10 requests in 0.1 s: 10 accepted" in printed(capsys, ten)
    again = finished(
        submit=SubmitSummary(accepted=2150, seconds=10.4, rate_per_second=207.0, reasked=149),
        collect=CollectSummary(lag={"p50_seconds": 0.301, "p95_seconds": 0.517}, requeried=4),
    )
    shown = printed(capsys, again)
    assert "2,150 accepted, 0 failed; 149 transient failures re-asked among them" in shown
    assert "p95 0.5 s; 4 transient failures re-queried after sending" in shown


def test_a_window_s_rate_reads_without_nested_brackets_or_spurious_decimals(
    capsys: pytest.CaptureFixture[str],
) -> None:
    window = {
        "window_seconds": 6 * 3600,
        "callback_rate_per_second": 581.74,
        "rate_source": "configuration, as run n1 was not held back by callbacks",
        "queried_targets": 1,
        "reused_stale": 0,
        "deferred": 0,
        "by_priority": {"never_answered": 1},
    }
    result = finished(plan=PlanSummary(targets=1, to_query=1, requests=1, window=window))
    shown = printed(capsys, result)
    assert (
        "Window 6 h 00 min at 582 callbacks/s (configuration, as run n1 was not held back by "
        "callbacks): 1 target to query (1 never answered)"
    ) in shown
    assert not re.search(r"\([^()]*\(", shown.replace("(s)", ""))  # no bracket in a bracket
    assert "Planned 1 target: 0 reused, 1 to query in 1 request" in shown


# (NO_RESPONSE targets in the build, or None before it; what the collect sentence says)
DEADLINE_TOLLS = [
    (
        0,
        "73 targets unanswered at the deadline; 0 still without an answer in the report; "
        "their answers landed before the build",
    ),
    (73, "73 targets unanswered at the deadline, reported as NO_RESPONSE"),
    (
        None,
        "73 targets unanswered at the deadline; the build reports those still without an "
        "answer as NO_RESPONSE",
    ),
]


@pytest.mark.parametrize(("built", "said"), DEADLINE_TOLLS)
def test_the_deadline_s_toll_is_what_the_report_shows(
    capsys: pytest.CaptureFixture[str], built: int | None, said: str
) -> None:
    collected = CollectSummary(outstanding=73, deadline_passed=True)
    statuses = {} if built is None else {"CAPABILITY_FULL": 5930, "NO_RESPONSE": built}
    result = finished(collect=collected, statuses=statuses)
    console.print_step(result, "collect")
    assert said in capsys.readouterr().out


def test_publish_reads_in_whole_units(capsys: pytest.CaptureFixture[str]) -> None:
    console.print_publish(
        PublishSummary(runs=["r1"], rows={"runs": 1}, catalog="w.duckdb", seconds=0.2)
    )
    assert "Published r1: 1 table, 1 row in 0.2 s" in capsys.readouterr().out


def test_a_dry_run_of_a_sample_states_its_interval_in_percentage_points(
    capsys: pytest.CaptureFixture[str],
) -> None:
    result = finished(plan=PlanSummary(targets=1500, reused=1495, to_query=5, requests=3))
    result.estimate = {
        "query_seconds": 0.015,
        "callback_seconds": 0.008,
        "callback_rate_per_second": 581.74,
        "sample_half_width": 0.03802,
    }
    console.print_plan(result)
    shown = capsys.readouterr().out
    assert "Estimated: 0.01 s to send at the query rate; 0.01 s for the callbacks at 582/s" in shown
    assert "A 95% interval of at most ±3.8 percentage points (a share near 50%" in shown
