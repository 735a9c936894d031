"""The fault-injection suite, quick subset, against real services.

Runs ``tools.reliability.runner.run_suite`` (what ``urban-monitor reliability faults``
runs) on its own Kafka broker and PostgreSQL server (started with docker/kafka.sh and
docker/postgres.sh on ports 29092 and 55433, so restarting them harms no other test), with
inference workers as real OS processes: a fault-free reference run, then a worker killed
with SIGKILL mid-scene, a Kafka broker restart mid-stream, failing state-store writes,
duplicated and out-of-order re-deliveries and a webhook target down for an hour of
simulated time. Every row must keep every scene and alert and end in the reference's
state. The full suite (every fault) is ``urban-monitor reliability faults``.
"""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
FAULTS = ["worker-kill", "kafka-restart", "webhook-down", "state-write-failure", "duplicates"]


def test_quick_fault_suite_loses_nothing() -> None:
    from tools.reliability.runner import SuiteOptions, run_suite

    result = run_suite(SuiteOptions(quick=True, root=REPO_ROOT / "var" / "reliability",
                                    progress=False))
    report = result.report()
    print()
    print(report)
    assert [o.fault for o in result.outcomes] == ["reference", *FAULTS], report
    reference = result.outcomes[0]
    assert reference.processed > 50 and reference.alerts > 0, report
    for outcome in result.outcomes:
        assert outcome.lost == 0, report
        assert outcome.duplicates == 0, report
        assert outcome.passed, report
        assert (outcome.processed, outcome.skipped) == (reference.processed, reference.skipped)
    assert all(o.state_equal == "yes" for o in result.outcomes[1:]), report
    # The faults really struck: each row says what it did.
    notes = {o.fault: " ".join(o.notes) for o in result.outcomes}
    assert "kill -9" in notes["worker-kill"]
    assert "docker/kafka.sh start" in notes["kafka-restart"]
    assert "injected write failure" in notes["state-write-failure"]
    assert "0 injected" not in notes["state-write-failure"]
    assert "re-published" in notes["duplicates"]
    assert "receiver back" in notes["webhook-down"]
