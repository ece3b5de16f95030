"""Landing segments: rotation by size and age, atomic close, torn lines, idempotent ingest."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from pipeline.landing.ingest import ingest_landing
from pipeline.landing.segments import CLOSED_SUFFIX, KIND_CAPABILITY, encode_line, list_segments
from pipeline.landing.writer import LandingWriter
from pipeline.warehouse import open_warehouse


def line(n: int, channel: str = "SMS") -> bytes:
    notification = {
        "request_id": f"r{n}",
        "channel": channel,
        "identity": "+46 70 123 45 67",
        "capability_status": "NO_CAPABILITY",
        "reason": {"code": "RECIPIENT_NOT_REACHABLE"},
    }
    body = orjson.dumps({"capability_notification": notification})
    return encode_line(body, f"nonce-{n}", "w1", KIND_CAPABILITY, datetime.now(UTC))


def write(directory: Path, lines: list[bytes], **options: float) -> LandingWriter:
    """Append `lines` one after another (each its own commit), then close."""

    async def main() -> LandingWriter:
        writer = LandingWriter(directory, writer_id="w1", **options)  # type: ignore[arg-type]
        await writer.start()
        for item in lines:
            await writer.append(item)
        await writer.close()
        return writer

    return asyncio.run(main())


def test_segments_rotate_by_size_and_close_atomically(tmp_path: Path) -> None:
    writer = write(tmp_path, [line(n) for n in range(200)], max_bytes=4096, commit_window_seconds=0)
    segments = list_segments(tmp_path)
    assert len(segments) > 3
    assert all(s.closed and s.path.name.endswith(CLOSED_SUFFIX) for s in segments)
    assert sum(s.path.read_bytes().count(b"\n") for s in segments) == 200
    assert writer.metrics.segments_closed == len(segments)


@pytest.mark.timed  # a 0.2 s age within 0.6 s
def test_segments_rotate_by_age_without_traffic(tmp_path: Path) -> None:
    async def main() -> None:
        writer = LandingWriter(tmp_path, writer_id="w1", max_age_seconds=0.2)
        await writer.start()
        await writer.append(line(1))
        await asyncio.sleep(0.6)  # no more callbacks: the age alone closes the segment
        [first, *later] = list_segments(tmp_path)
        assert first.closed
        assert all(s.size == 0 for s in later)
        await writer.close()

    asyncio.run(main())


def test_torn_last_line_is_skipped_and_ingest_is_idempotent(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    landing.mkdir()
    crashed = landing / "w9-000001.ndjson.open"
    torn = line(2)[:-25]  # a crash in the middle of a write: never acknowledged
    crashed.write_bytes(line(1) + torn)
    with open_warehouse(tmp_path / "w.duckdb") as conn:
        first = ingest_landing(conn, landing)
        again = ingest_landing(conn, landing)
        rows = conn.execute(
            "SELECT request_id, identity, reason_code, deliveries FROM notifications"
        ).fetchall()
    assert (first.lines, again.lines) == (1, 0)
    assert rows == [("r1", "46701234567", "RECIPIENT_NOT_REACHABLE", 1)]


def test_an_open_segment_is_ingested_incrementally(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    landing.mkdir()
    growing = landing / "w1-000001.ndjson.open"
    growing.write_bytes(line(1))
    with open_warehouse(tmp_path / "w.duckdb") as conn:
        ingest_landing(conn, landing)
        with growing.open("ab") as handle:
            handle.write(line(2) + line(1))  # a new one, and a repeated delivery
        ingest_landing(conn, landing)
        growing.rename(landing / "w1-000001.ndjson")  # the writer closes it
        ingest_landing(conn, landing)
        rows = conn.execute(
            "SELECT request_id, deliveries FROM notifications ORDER BY 1"
        ).fetchall()
        closed = conn.execute("SELECT closed FROM landing_files").fetchall()
    assert rows == [("r1", 2), ("r2", 1)]
    assert closed == [(True,)]


def test_segments_larger_than_the_memory_limit_are_ingested_in_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each batch is its own transaction; a callback repeated in a later batch still merges."""
    import pipeline.landing.ingest as ingest_module

    landing = tmp_path / "landing"
    landing.mkdir()
    (landing / "w1-000001.ndjson").write_bytes(line(1) + line(2))
    (landing / "w1-000002.ndjson").write_bytes(line(3) + line(1))  # r1 delivered again
    (landing / "w1-000003.ndjson").write_bytes(line(4))
    batches: list[int] = []
    real_batches = ingest_module.batches

    def spy(slices: list[Any], batch_bytes: int) -> list[list[Any]]:
        made = real_batches(slices, batch_bytes)
        batches.extend(len(batch) for batch in made)
        return made

    monkeypatch.setattr(ingest_module, "memory_limit_bytes", lambda conn: len(line(1)) * 2)
    monkeypatch.setattr(ingest_module, "batches", spy)
    with open_warehouse(tmp_path / "w.duckdb") as conn:
        stats = ingest_landing(conn, landing)
        again = ingest_landing(conn, landing)
        rows = conn.execute(
            "SELECT request_id, deliveries FROM notifications ORDER BY 1"
        ).fetchall()
        files = conn.execute(
            "SELECT segment_id, lines_ingested, closed FROM landing_files ORDER BY 1"
        ).fetchall()
    assert batches == [1, 1, 1]  # two lines a segment: one segment a batch
    assert (stats.segments, stats.lines, stats.notifications_new) == (3, 5, 4)
    assert stats.notifications_repeated == 1
    assert (again.segments, again.lines) == (0, 0)
    assert rows == [("r1", 2), ("r2", 1), ("r3", 1), ("r4", 1)]
    assert files == [("w1-000001", 2, True), ("w1-000002", 2, True), ("w1-000003", 1, True)]


def test_non_capability_events_are_kept_apart(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    landing.mkdir()
    other = encode_line(b'{"message_delivery_report": {}}', "n", "w1", "other", datetime.now(UTC))
    (landing / "w1-000001.ndjson").write_bytes(other + line(1))
    with open_warehouse(tmp_path / "w.duckdb") as conn:
        stats = ingest_landing(conn, landing)
    assert (stats.notifications_new, stats.other_events) == (1, 1)


def test_bad_lines_never_block_ingestion(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    landing.mkdir()
    no_identity = encode_line(
        b'{"capability_notification": {"request_id": "r9", "channel": "WHATSAPP", '
        b'"capability_status": "NO_CAPABILITY"}}',
        "n9",
        "w1",
        KIND_CAPABILITY,
        datetime.now(UTC),
    )
    (landing / "w1-000001.ndjson").write_bytes(line(1) + b"this is not json\n" + no_identity)
    with open_warehouse(tmp_path / "w.duckdb") as conn:
        ingest_landing(conn, landing)
        (landing / "w1-000002.ndjson").write_bytes(line(2))
        ingest_landing(conn, landing)  # later segments still go in
        rows = conn.execute("SELECT request_id, identity FROM notifications ORDER BY 1").fetchall()
    assert rows == [("r1", "46701234567"), ("r2", "46701234567"), ("r9", "")]


def test_a_failed_write_is_cut_off_and_the_next_line_starts_a_clean_segment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pipeline.landing.writer as writer_module

    real_write = os.write
    failing: dict[str, int] = {}

    def disk_full_once(fd: int, data: bytes) -> int:
        if fd == failing.get("fd"):
            failing.pop("fd")
            real_write(fd, bytes(data)[: len(data) // 2])  # half a line reaches the file
            raise OSError(28, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(writer_module.os, "write", disk_full_once)

    async def main() -> None:
        writer = LandingWriter(tmp_path, writer_id="w1")
        await writer.start()
        await writer.append(line(1))
        failing["fd"] = writer._fd
        with pytest.raises(OSError, match="No space left"):
            await writer.append(line(2))
        await writer.append(line(3))
        await writer.close()

    asyncio.run(main())
    landed = [row for s in list_segments(tmp_path) for row in s.path.read_bytes().splitlines()]
    bodies = [orjson.loads(orjson.loads(row)["body"]) for row in landed]
    assert [b["capability_notification"]["request_id"] for b in bodies] == ["r1", "r3"]
    assert len(list_segments(tmp_path)) == 2
