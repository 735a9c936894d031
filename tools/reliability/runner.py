"""Run the fault suite: services up, archive ready, the reference, each fault, the table."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools.reliability.faults import CorruptCog, Fault, WithoutItem, select_faults
from tools.reliability.harness import (
    REPO_ROOT,
    RunRecord,
    SuiteEnvironment,
    Trial,
    archive_params,
    resolve_models,
)
from tools.reliability.infrastructure import DedicatedServices
from tools.reliability.outcome import Outcome, compare, format_details, format_table

log = logging.getLogger(__name__)

DEFAULT_ROOT = REPO_ROOT / "var" / "reliability"


@dataclass
class SuiteOptions:
    only: list[str] | None = None
    quick: bool = False
    root: Path = DEFAULT_ROOT
    workers: int = 2
    keep_services: bool = False
    progress: bool = True


@dataclass
class SuiteResult:
    outcomes: list[Outcome] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return all(o.passed for o in self.outcomes)

    def report(self) -> str:
        return (format_table(self.outcomes) + "\n\n" + format_details(self.outcomes)
                + f"\n\n{sum(o.passed for o in self.outcomes)} of {len(self.outcomes)} rows "
                f"pass; {self.seconds:.0f} s")


def run_suite(opts: SuiteOptions) -> SuiteResult:
    from monitor.synthetic.archive import generate_archive

    started = time.perf_counter()
    faults = select_faults(opts.only, opts.quick)
    services = DedicatedServices(opts.root / "services")
    services.start()
    result = SuiteResult()
    try:
        archive = generate_archive(opts.root / "archive", archive_params(),
                                   progress=opts.progress)
        env = SuiteEnvironment(root=opts.root, services=services, archive=archive,
                               models=resolve_models(opts.root / "models"), workers=opts.workers)
        references: dict[str, RunRecord] = {}

        def reference_for(fault: Fault) -> RunRecord:
            if fault.reference not in references:
                base: Fault = Fault()
                if fault.reference != "reference":
                    assert isinstance(fault, CorruptCog)
                    base = WithoutItem(fault)
                record = Trial(env, base, label=base.name if base.name != "none"
                               else "reference").run()
                references[fault.reference] = record
                result.outcomes.append(compare(record, None, title=base.title))
                log.info("%s", format_table(result.outcomes[-1:]))
            return references[fault.reference]

        reference_for(Fault())
        for fault in faults:
            reference = reference_for(fault)
            trial = Trial(env, fault)
            record = trial.run()
            outcome = compare(record, reference, title=fault.title,
                              expect_state_equal=fault.expect_state_equal,
                              expect_same_provenance=fault.expect_same_provenance,
                              expected_dead_letters=fault.expected_dead_letters(trial.items))
            result.outcomes.append(outcome)
            log.info("%s", format_table([outcome]))
    finally:
        if not opts.keep_services:
            services.stop()
    result.seconds = time.perf_counter() - started
    write_json(opts.root / "faults.json", result)
    return result


def write_json(path: Path, result: SuiteResult) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    payload: dict[str, Any] = {"passed": result.passed, "seconds": round(result.seconds, 1),
                               "rows": [o.as_dict() for o in result.outcomes]}
    path.write_text(json.dumps(payload, indent=2))
