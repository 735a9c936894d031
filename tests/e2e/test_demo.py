"""`urban-monitor demo` end to end on a small synthetic city: the summary and the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from monitor.cli import main


@pytest.mark.slow
def test_demo_runs_the_whole_pipeline_and_writes_the_report(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "report.html"
    args = ["demo", "--size-km", "1", "--start", "2019-01-01", "--end", "2019-09-30",
            "--seed", "5", "--archive", str(tmp_path / "archive"), "--report", str(report),
            "--no-progress"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "Urban Monitor demo — summary" in out
    scenes = json.loads(out.split("scenes", 1)[1].splitlines()[0])
    assert scenes.get("processed", 0) > 50 and set(scenes) <= {"processed", "skipped"}
    assert "object_f1" in out and "seconds per stage" in out
    html = report.read_text()
    assert "URBAN_MONITOR_DATA" in html and "data:image/png;base64," in html
    assert (tmp_path / "report-run" / "urban-monitor.db").exists()
    # a second demo on the same outputs while the first holds them is refused clearly
    import fcntl

    with open(tmp_path / "report-run" / ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert main(args) == 2
    assert "another demo is running" in capsys.readouterr().err
