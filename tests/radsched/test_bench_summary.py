"""The benchmarks' summary (``python -m bench``, bench/_results.py) from result files, without
running a benchmark: the table a reader sees, the docs table it replaces, and "not measured"."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bench import _results
from bench.__main__ import benchmarks, main

ROOT = Path(__file__).resolve().parents[2]


def _file(directory: Path, bench: str, rows: dict[str, tuple[str, float]], run: str = "") -> None:
    directory.mkdir(parents=True, exist_ok=True)
    data = {
        "bench": bench,
        "run": run,
        "finished": "2026-12-07 15:00 UTC",
        "command": f"python -m bench.{bench} --seconds 1",
        "rows": [
            {
                "target_id": tid,
                "what": _results.BY_ID[tid].what,
                "measured": measured,
                "target": _results.BY_ID[tid].target,
                "ratio": ratio,
                "met": _results.BY_ID[tid].met(ratio),
                "command": f"python -m bench.{bench} --seconds 1",
            }
            for tid, (measured, ratio) in rows.items()
        ],
    }
    (directory / f"{bench}.json").write_text(json.dumps(data))


def _row(text: str, what: str) -> list[str]:
    """The cells of the table row that starts with ``what``."""
    line = next(x for x in text.splitlines() if x.startswith(f"| {what}"))
    return [c.strip() for c in line.strip("|").split(" | ")]


def test_table_shows_each_target_with_its_ratio_and_verdict(tmp_path: Path) -> None:
    _file(
        tmp_path,
        "mllp",
        {
            "16.1-node-1": ("uvloop 12,000 vs node 10,000 msgs/s", 1.2),
            "16.1-node-8": ("uvloop 30,000 vs node 40,000 msgs/s", 0.75),
        },
    )
    _file(tmp_path, "intake", {"16.2-ceiling": ("2,300 vs 10,000 commits/s", 0.23)})
    _file(tmp_path, "gateway", {"16.3-p99": ("20.0 ms", 1.0)})
    text = _results.summary(_results.load(tmp_path), "heading")

    node1 = _results.BY_ID["16.1-node-1"]
    assert _row(text, node1.what) == [
        f"{node1.what} (16)",
        "uvloop 12,000 vs node 10,000 msgs/s",
        "1.20×",
        "> 1× node",
        "yes",
        "`bench.mllp`",
    ]
    assert _row(text, _results.BY_ID["16.1-node-8"].what)[2:5] == ["0.75×", "> 1× node", "no"]
    assert _row(text, _results.BY_ID["16.2-ceiling"].what)[2:5] == [
        "23.0%",
        "≥ 20% of the ceiling",
        "yes",
    ]
    # A bound that includes equality is met at it.
    assert _row(text, _results.BY_ID["16.3-p99"].what)[2:5] == ["1.00×", "≤ 20 ms", "yes"]
    # Every target has its row, measured or not, and the commands are listed under the table.
    rows = [x for x in text.splitlines() if x.startswith("| ")][1:]  # without the header
    assert len(rows) == len(_results.TARGETS)
    assert f"4 of {len(_results.TARGETS)} targets measured, 3 met." in text
    assert "- `bench.mllp`, 2026-12-07 15:00 UTC: `python -m bench.mllp --seconds 1`" in text


def test_unmeasured_targets_say_so_without_a_figure(tmp_path: Path) -> None:
    _file(tmp_path, "ack", {"16.1-ack": ("build_ack AE 13.2 µs vs parse 16.3 µs", 0.81)})
    text = _results.table(_results.load(tmp_path))
    outbox = _row(text, _results.BY_ID["16.5-siu"].what)
    assert outbox[1:3] == ["not measured", "—"]
    assert outbox[4:] == ["—", "`bench.outbox`"]
    assert _row(text, _results.BY_ID["16.4-orders"].what)[1] == "not measured"
    assert _row(text, _results.BY_ID["16.4-orders"].what)[5] == "`bench.twoproc`"


def test_record_and_save_write_the_rows_a_summary_reads(tmp_path: Path) -> None:
    _results._rows.clear()
    try:
        _results.record("16.2-p99", "14.0 ms", 0.7)
        _results.record("6-siu", "900 SIU/s", 0.9)
        path = _results.save("intake", tmp_path / "intake.json")
    finally:
        _results._rows.clear()
    data = json.loads(path.read_text())
    assert [{k: v for k, v in row.items() if k != "command"} for row in data["rows"]] == [
        {
            "target_id": "16.2-p99",
            "what": "durable intake p99 at 8 connections",
            "measured": "14.0 ms",
            "target": "< 20 ms",
            "ratio": 0.7,
            "met": True,
        },
        {
            "target_id": "6-siu",
            "what": "SIU to one EMR",
            "measured": "900 SIU/s",
            "target": "≥ 1,000 SIU/s",
            "ratio": 0.9,
            "met": False,
        },
    ]
    assert all(row["command"].startswith("python -m bench.") for row in data["rows"])


def test_the_docs_table_is_replaced_and_the_rest_of_the_file_kept(tmp_path: Path) -> None:
    doc = tmp_path / "performance.md"
    shutil.copy(ROOT / "docs" / "performance.md", doc)
    before = doc.read_text()
    _file(
        tmp_path / "results", "ack", {"16.1-ack": ("build_ack AE 13.2 µs vs parse 16.3 µs", 0.81)}
    )
    block = _results.summary(_results.load(tmp_path / "results"), "From one run, 2026-12-07.")
    _results.rewrite_doc(doc, block)
    after = doc.read_text()

    summary = after.split("## Summary against the targets", 1)[1].split("\n## ", 1)[0]
    assert "From one run, 2026-12-07." in summary
    assert "| `build_ack` vs the parse of the same message (slowest case) (16) |" in summary
    assert "645/s, p99 20.7 ms" not in summary  # the old table's figures are gone
    assert summary.count("| target (issue) |") == 1
    # Everything outside the markers is as it was, including the prose after the table.
    outside = before.split(_results.SUMMARY_START)[0], before.split(_results.SUMMARY_END)[1]
    assert after.startswith(outside[0]) and after.endswith(outside[1])
    _results.rewrite_doc(doc, block)
    assert doc.read_text() == after  # a second rewrite changes nothing


def test_a_benchmark_that_fails_leaves_its_targets_not_measured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An old result file of the benchmark is not shown as this run's figure."""
    monkeypatch.setenv("RADSCHED_BENCH_RESULTS", str(tmp_path))
    _file(tmp_path, "ack", {"16.1-ack": ("stale 99.9 µs", 0.5)})
    monkeypatch.chdir(ROOT)
    # bench.ack refuses the option at once, before measuring anything.
    status = main(["--only", "ack", "--no-docs", "--", "--rounds", "not-a-number"])
    out = capsys.readouterr().out
    assert status == 1
    assert "failed: bench.ack" in out
    assert _row(out, _results.BY_ID["16.1-ack"].what)[1] == "not measured"
    assert "stale" not in out
    assert not (tmp_path / "ack.json").exists()


def test_summary_prints_the_last_results_and_runs_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RADSCHED_BENCH_RESULTS", str(tmp_path))
    _file(tmp_path, "day", {"16.6-p99": ("310.0 ms", 0.31)})
    assert main(["--summary"]) == 0
    out = capsys.readouterr().out
    assert _row(out, _results.BY_ID["16.6-p99"].what)[1:5] == [
        "310.0 ms",
        "0.31×",
        "< 1 s",
        "yes",
    ]
    assert _row(out, _results.BY_ID["16.1-ack"].what)[1] == "not measured"


def test_only_rejects_a_name_that_is_no_benchmark(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--only", "mllp,nosuch"])
    assert "no such benchmark: nosuch" in capsys.readouterr().err


def test_every_target_names_a_benchmark_that_exists() -> None:
    names = set(benchmarks())
    assert {t.bench for t in _results.TARGETS} <= names
    assert len({t.id for t in _results.TARGETS}) == len(_results.TARGETS)
