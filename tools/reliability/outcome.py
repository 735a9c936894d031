"""Compare a run with its reference and print the table of faults and outcomes.

A row passes when: every discovered scene is terminal (processed, skipped, or
dead-lettered with a reason) and ends as in the reference, except the scenes the fault is
expected to dead-letter; no alert is lost (every revision of every alert in the database
reached the alerts topic and the webhook, and every AlertEvent of the reference is there);
none is duplicated (no event id twice on the topic or at the webhook, no revision the
reference does not have); every webhook delivery arrived; and the final city state equals
the reference's bit for bit (unless the fault is expected to change it, e.g. a scene that
arrives out of order is applied after newer ones).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from tools.reliability.harness import RunRecord


@dataclass
class Outcome:
    fault: str
    title: str
    processed: int = 0
    skipped: int = 0
    dead_lettered: int = 0
    alerts: int = 0
    alert_events: int = 0
    lost: int = 0
    duplicates: int = 0
    state_equal: str = "-"
    passed: bool = True
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def compare(run: RunRecord, reference: RunRecord | None, *, title: str,
            expect_state_equal: bool = True,
            expect_same_provenance: bool = True,
            expected_dead_letters: set[str] | None = None) -> Outcome:
    expected_dead = expected_dead_letters or set()
    statuses = Counter(status for status, _ in run.scenes.values())
    out = Outcome(fault=run.name, title=title, processed=statuses.get("processed", 0),
                  skipped=statuses.get("skipped", 0),
                  dead_lettered=statuses.get("dead_lettered", 0), alerts=len(run.alerts),
                  alert_events=len(set(run.alert_events)), seconds=run.seconds,
                  notes=list(run.notes))
    problems = out.problems
    problems.extend(run.unsettled)
    if not run.scenes:
        problems.append("no scene was discovered")

    # Scenes: terminal, with reasons, and as in the reference.
    for key, (status, reason) in sorted(run.scenes.items()):
        if status in ("dead_lettered", "skipped") and not reason:
            problems.append(f"scene {key} is {status} without a reason")
        if key in expected_dead:
            if status != "dead_lettered":
                problems.append(f"scene {key} should be dead-lettered, it is {status}")
            continue
        if status == "dead_lettered":
            problems.append(f"scene {key} dead-lettered unexpectedly: {reason}")
    missing_dead = {k for k in expected_dead if k not in run.scenes}
    if missing_dead:
        problems.append(f"expected dead-lettered scene(s) never discovered: {sorted(missing_dead)}")
    if len(run.dead_letters) < len(expected_dead):
        problems.append(f"{len(run.dead_letters)} record(s) on the dead-letter topic, "
                        f"{len(expected_dead)} expected")
    if reference is not None:
        for key in sorted(set(reference.scenes) | set(run.scenes)):
            if key in expected_dead:
                continue
            ref = reference.scenes.get(key, ("absent", None))[0]
            got = run.scenes.get(key, ("absent", None))[0]
            if ref != got:
                detail = run.scenes.get(key, (None, None))[1]
                problems.append(f"scene {key}: {ref} in the reference, {got} here"
                                + (f" ({detail[:120]})" if detail else ""))

    # Alerts: none lost, none duplicated.
    expected_events = run.expected_alert_events()
    on_topic = set(run.alert_events)
    at_webhook = set(run.webhook_events)
    lost = (expected_events - on_topic) | (expected_events - at_webhook)
    extra = on_topic - expected_events
    if reference is not None and expect_state_equal:
        lost |= set(reference.alert_events) - on_topic
        extra |= on_topic - set(reference.alert_events)
        ours, theirs = ((run.alerts, reference.alerts) if expect_same_provenance
                        else (run.alert_contents, reference.alert_contents))
        if ours != theirs:
            changed = sorted(k for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k))
            problems.append(f"{len(changed)} alert(s) differ from the reference: "
                            + ", ".join(changed[:3]))
        elif run.alerts != reference.alerts:
            credited = sorted(k for k in run.alerts if run.alerts[k] != reference.alerts.get(k))
            out.notes.append(f"{len(credited)} alert(s) equal to the reference but credited to "
                             "other scenes of the outage window (scene_ids): catch-up order")
    copies = ((len(run.alert_events) - len(on_topic))
              + (len(run.webhook_events) - len(at_webhook)))
    out.lost = len(lost)
    out.duplicates = copies + len(extra)
    if lost:
        problems.append(f"{len(lost)} AlertEvent(s) lost (topic or webhook)")
    if copies:
        problems.append(f"{copies} duplicate AlertEvent cop(ies) on the topic or at the webhook")
    if extra:
        problems.append(f"{len(extra)} AlertEvent id(s) that should not exist")
    failed = {k: v for k, v in run.webhook_status.items() if k != "delivered"}
    if failed:
        problems.append(f"webhook outbox rows not delivered: {failed}")

    # The city state.
    if reference is not None:
        if run.state_hash is None:
            out.state_equal = "no state"
            problems.append("no final state")
        elif run.state_hash == reference.state_hash:
            out.state_equal = "yes"
        elif expect_state_equal:
            out.state_equal = "NO"
            problems.append(f"final state {run.state_hash} (v{run.state_version}) differs from "
                            f"the reference {reference.state_hash} (v{reference.state_version})")
        else:
            out.state_equal = "differs (expected)"
    out.passed = not problems
    return out


def format_table(outcomes: list[Outcome]) -> str:
    header = ("fault", "what was done", "scenes proc/skip/dead", "alerts (events)",
              "lost", "dup", "state equal", "s", "verdict")
    rows = [header]
    for o in outcomes:
        rows.append((o.fault, o.title, f"{o.processed}/{o.skipped}/{o.dead_lettered}",
                     f"{o.alerts} ({o.alert_events})", str(o.lost), str(o.duplicates),
                     o.state_equal, f"{o.seconds:.0f}", "PASS" if o.passed else "FAIL"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = []
    for n, row in enumerate(rows):
        lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True))
                     + " |")
        if n == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def format_details(outcomes: list[Outcome]) -> str:
    lines = []
    for o in outcomes:
        lines.append(f"{o.fault}: " + ("; ".join(o.notes) if o.notes else "no injection"))
        for problem in o.problems:
            lines.append(f"    PROBLEM: {problem}")
    return "\n".join(lines)
