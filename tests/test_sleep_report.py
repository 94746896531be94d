"""The peak-memory figure a night reports is the night's own; stored reports read back typed."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from sleep.report import GateResult, SleepReport, newest_report, peak_rss_bytes, read_report, reset_peak_rss


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM is Linux's")
def test_a_reset_peak_forgets_what_the_process_did_before() -> None:
    big = bytearray(400 * 2**20)
    big[::4096] = b"x" * len(big[::4096])  # touch every page
    before = peak_rss_bytes()
    del big
    assert reset_peak_rss()
    assert peak_rss_bytes() < before - 200 * 2**20


def test_a_saved_report_reads_back_equal(tmp_path: Path) -> None:
    report = SleepReport(outcome="promoted", episodes=3, losses=[2.5, 1.0], stages={"train": 12.0})
    report.add_gate(GateResult("recall", True, 0.8, 0.5))
    report.add_gate(GateResult("retention", False, 0.9, 0.95, "general MC fell"))
    path = report.save(tmp_path)
    back = read_report(path)
    assert back == report
    assert back is not None and back.failed_gates() == ["retention 0.9 (threshold 0.95): general MC fell"]
    assert newest_report(tmp_path) == report


def test_a_damaged_or_older_report_reads_what_it_can(tmp_path: Path) -> None:
    stored = {
        "outcome": "rejected",
        "steps": "forty",  # the wrong type: read as missing
        "losses": [3, 2.5],
        "examples": {"augment": 4},
        "gates": {"recall": {"passed": True, "value": "high"}, "drift": "yes"},
        "written_by_a_later_version": 1,
    }
    (tmp_path / "sleep-20240101-000000.json").write_text(json.dumps(stored))
    report = newest_report(tmp_path)
    assert report is not None
    assert (report.outcome, report.steps, report.losses, report.examples) == ("rejected", 0, [3, 2.5], {"augment": 4})
    assert report.gates == {"recall": GateResult("recall", True)}
    # What the file lacks is unknown, not "now" or "failed".
    assert (report.started, report.id) == ("", "") and SleepReport.from_dict({}).outcome == ""
    (tmp_path / "sleep-20240102-000000.json").write_text("[1, 2")
    assert newest_report(tmp_path) is None
    assert newest_report(tmp_path / "none") is None
