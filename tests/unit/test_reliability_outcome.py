"""The fault suite's verdict: alerts must equal the reference; only faults that reorder
the catch-up may credit an equal alert to other scenes (its scene ids)."""

from __future__ import annotations

from monitor.domain.events import deterministic_id
from tools.reliability.harness import RunRecord
from tools.reliability.outcome import compare


def _run(name: str, full_hash: str, content_hash: str = "c0ffee") -> RunRecord:
    events = [deterministic_id("alert", "a1", rev) for rev in (1, 2)]
    return RunRecord(name=name, scenes={"item-1": ("processed", None)},
                     alerts={"a1": (2, "confirmed", full_hash)},
                     alert_contents={"a1": (2, "confirmed", content_hash)},
                     alert_events=events, webhook_events=list(events),
                     webhook_status={"delivered": 2}, state_hash="s", state_version=3)


def test_other_scene_ids_fail_a_fault_that_keeps_the_order() -> None:
    out = compare(_run("worker-kill", "bbb"), _run("reference", "aaa"), title="t")
    assert not out.passed and any("differ from the reference" in p for p in out.problems)


def test_other_scene_ids_pass_a_reordering_fault_and_say_so() -> None:
    out = compare(_run("stac-down", "bbb"), _run("reference", "aaa"), title="t",
                  expect_same_provenance=False)
    assert out.passed, out.problems
    assert any("credited to other scenes" in n for n in out.notes)


def test_a_content_difference_fails_even_a_reordering_fault() -> None:
    out = compare(_run("stac-down", "bbb", "other"), _run("reference", "aaa"), title="t",
                  expect_same_provenance=False)
    assert not out.passed and any("differ from the reference" in p for p in out.problems)
