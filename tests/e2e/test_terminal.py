"""What the commands show people on a terminal, and what they give programs otherwise.

The commands run through a real pseudo-terminal (`pty`), so `isatty()` is true as it is for an
operator; without one, stdout is JSON and progress goes to the logs on stderr only.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
from pathlib import Path

from pipeline.lake.tables import TABLES
from pipeline.warehouse import model_count
from tests.conftest import REPO, service_env, write_config
from tests.e2e.test_audit import capaudit, small_sample

TERMINAL = {"TERM": "xterm-256color", "COLUMNS": "120", "LINES": "40"}


def on_terminal(*args: str, stdout_piped: bool = False) -> tuple[int, str, str]:
    """Run `capaudit ARGS` with stderr (and stdout, unless `stdout_piped`) on a pseudo-terminal;
    returns the exit code, what the terminal showed and what went to a piped stdout."""
    primary, secondary = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline", *args],
        cwd=REPO,
        env={**service_env(), "PATH": "/usr/bin:/bin", **TERMINAL},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE if stdout_piped else secondary,
        stderr=secondary,
    )
    os.close(secondary)
    shown = bytearray()
    while True:
        ready, _, _ = select.select([primary], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # the terminal closed: every writer has exited
                break
            if not chunk:
                break
            shown += chunk
        elif process.poll() is not None:
            break
    piped = ""
    if process.stdout is not None:
        with process.stdout:
            piped = process.stdout.read().decode()
    process.wait(timeout=60)
    os.close(primary)
    return process.returncode, plain(shown.decode(errors="replace")), piped


def plain(shown: str) -> str:
    """What the terminal showed without colours and cursor moves, one line per redraw."""
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", shown).replace("\r\n", "\n").replace("\r", "\n")


def loaded(tmp_path: Path) -> tuple[Path, Path]:
    small = small_sample(tmp_path, 30)
    return write_config(tmp_path / "c.toml", tmp_path, contacts={"paths": [str(small)]}), small


def test_load_on_a_terminal_shows_progress_and_the_run_s_sentences(tmp_path: Path) -> None:
    cfg, _ = loaded(tmp_path)
    code, shown, _ = on_terminal("load", "--config", str(cfg), "--run-id", "t1")
    assert code == 0, shown
    assert re.search(r"load\S* .*━+.* 100%.* rows 35  rejects \d+  rate [\d,]+/s", shown), shown
    assert "Loaded 35 rows from 1 file: 31 contacts, 93 targets, 4 rejected" in shown
    assert re.search(r"Took: +load \d+\.\d+ s$", shown, re.MULTILINE)
    assert '"rows":' not in shown  # no JSON for people


def test_piped_step_commands_print_json_and_log_progress(tmp_path: Path) -> None:
    cfg, _ = loaded(tmp_path)
    done = capaudit("load", "--config", str(cfg), "--run-id", "p1")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["rows"] == 35
    logged = [json.loads(line) for line in done.stderr.splitlines()]
    progress = [e for e in logged if e["message"].startswith("load progress")]
    assert progress
    assert progress[-1]["rows"] == "35"
    assert progress[-1]["done"] == "100%"  # of the file's bytes
    planned = capaudit("plan", "--config", str(cfg), "--run-id", "p1")
    assert json.loads(planned.stdout)["requests"] == 31
    assert "━" not in done.stdout + planned.stdout


def test_progress_never_reaches_a_piped_stdout(tmp_path: Path) -> None:
    cfg, _ = loaded(tmp_path)
    assert capaudit("load", "--config", str(cfg), "--run-id", "s1").returncode == 0
    code, shown, piped = on_terminal(
        "plan", "--config", str(cfg), "--run-id", "s1", stdout_piped=True
    )
    assert code == 0, shown
    assert re.search(r"plan\S* .*━+.* 3/3", shown), shown  # the bar, on the terminal (stderr)
    assert json.loads(piped)["to_query"] == 93  # stdout: JSON only, no bar, no log line


def test_json_on_a_terminal_when_asked(tmp_path: Path) -> None:
    cfg, _ = loaded(tmp_path)
    code, shown, _ = on_terminal("load", "--config", str(cfg), "--run-id", "j1", "--json")
    assert code == 0, shown
    assert '"rows": 35' in shown
    assert "Loaded 35 rows" not in shown


def test_run_states_each_step_s_time_and_build_report_speak_on_a_terminal(
    tmp_path: Path,
) -> None:
    cfg, _ = loaded(tmp_path)
    code, shown, _ = on_terminal("run", "--config", str(cfg), "--run-id", "r1")
    assert code == 0, shown
    took = re.search(r"^Took: +(.*)$", shown, re.MULTILINE)
    assert took, shown
    steps = re.findall(r"(\w+) \d+\.\d+ s", took.group(1))
    assert steps == ["load", "plan", "submit", "collect", "build", "report", "publish"]
    assert re.search(r"; \d+\.\d s in all$", took.group(1)), took.group(1)
    assert "Planned 93 targets: 0 reused, 93 to query in 31 requests" in shown
    assert re.search(r"submit\S* .*━+.* 31/31 .* accepted 31", shown), shown  # where it ended
    code, shown, _ = on_terminal("build", "--config", str(cfg), "--run-id", "r1")
    assert code == 0, shown
    models = model_count()
    assert re.search(rf"build\S* .*━+.* {models}/{models}", shown), shown  # models done of all
    assert "Run r1: reachability per channel" in shown
    code, shown, _ = on_terminal("report", "--config", str(cfg), "--run-id", "r1")
    assert code == 0, shown
    # files written of all: reachability.csv, CSV + Parquet per channel (3) and for routing,
    # summary.json, index.html
    assert re.search(r"report\S* .*━+.* 11/11", shown), shown
    assert f"Report:    {tmp_path / 'reports' / 'r1' / 'index.html'}" in shown
    code, shown, _ = on_terminal("publish", "--config", str(cfg), "--run-id", "r1")
    assert code == 0, shown
    tables = len(TABLES) + 1  # every table, then the catalog
    assert re.search(rf"publish\S* .*━+.* {tables}/{tables}", shown), shown
    assert re.search(r"^Published r1: \d+ tables", shown, re.MULTILINE), shown
    assert f"Catalog:   {tmp_path / 'warehouse.duckdb'}" in shown


def test_a_sampled_run_leads_with_its_estimates_on_the_terminal(tmp_path: Path) -> None:
    cfg, _ = loaded(tmp_path)
    code, shown, _ = on_terminal("run", "--config", str(cfg), "--run-id", "s1", "--sample", "12")
    assert code == 0, shown
    estimates = shown.index("Whole list, estimated from a sample of 12 (95% intervals)")
    assert estimates < shown.index("Run s1: the sample's own counts per channel")
    table = shown[estimates:].split("reachable: estimated share")[0]
    rows = re.findall(
        r"^│ (WHATSAPP|RCS|SMS) +│ +[\d.]+% │ +[\d.]+% - [\d.]+% │ +\d+ │", table, re.M
    )
    assert sorted(rows) == ["RCS", "SMS", "WHATSAPP"], table
    assert re.search(r"│ +31 │$", table, re.MULTILINE), table  # of the list: 31 contacts


def test_an_incomplete_run_shows_the_config_key_and_the_report_s_no_response(
    tmp_path: Path,
) -> None:
    small = small_sample(tmp_path, 30)
    cfg = write_config(
        tmp_path / "c.toml",
        tmp_path,
        contacts={"paths": [str(small)]},
        simulator={"callback_drop_rate": 0.5, "callback_delay_ms": 50},
        collect={"deadline_seconds": 1, "max_no_response_share": 0.02},
    )
    code, shown, _ = on_terminal("run", "--config", str(cfg), "--run-id", "i1")
    assert code == 3, shown
    # rich markup swallowed "[collect]" on stdout: "more than  max_no_response_share 2.0%"
    incomplete = re.search(r"^INCOMPLETE: run i1 is incomplete: .*$", shown, re.MULTILINE)
    assert incomplete, shown
    assert "more than [collect] max_no_response_share 2.0% allows" in incomplete.group(0)
    unanswered = re.search(r"^(\d+) targets? unanswered at the deadline(.*)$", shown, re.M)
    assert unanswered, shown
    table = [
        [cell.strip() for cell in line.strip("│").split("│")]
        for line in shown.splitlines()
        if re.match(r"│ (WHATSAPP|RCS|SMS) ", line)
    ]
    no_response = sum(int(row[6].replace(",", "")) for row in table)  # the "no response" column
    if unanswered.group(2) == ", reported as NO_RESPONSE":
        assert no_response == int(unanswered.group(1))
    else:  # answers landed between the deadline and the build: the report has fewer
        assert f"; {no_response:,} still without an answer in the report" in unanswered.group(2)
