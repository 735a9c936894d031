"""Leave-cities-out cross-validation over the ten labelled OSCD cities.

Five folds, two held-out cities each, fixed up front (alphabetical pairs i and i + 5), so
every city is held out exactly once. Fold artifacts live under ``var/models/folds/`` (not
shipped): ``fold<k>/<arch>/model.pt`` and the exported ``fold<k>/<arch>.onnx`` + card.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)

FOLDS: tuple[tuple[str, str], ...] = (
    ("abudhabi", "cupertino"),
    ("beihai", "mumbai"),
    ("bercy", "paris"),
    ("bordeaux", "pisa"),
    ("rennes", "saclay_e"),
)
DEFAULT_FOLDS_DIR = Path("var/models/folds")

# Fixed up front (not tuned on held-out cities): single-modality streams train
# S2S1_EPOCHS x STEPS steps, the dual stream starts from them and fine-tunes DUAL_EPOCHS.
S2S1_EPOCHS = 16
DUAL_EPOCHS = 6
STEPS_PER_EPOCH = 20


def train_fold(
    fold: int,
    data: str,
    s1: str,
    folds_dir: Path = DEFAULT_FOLDS_DIR,
    seed: int = 0,
    threads: int = 1,
    archs: tuple[str, ...] = ("s2", "s1", "dual"),
    skip_existing: bool = False,
    epochs: dict[str, int] | None = None,
) -> dict[str, Path]:
    """Train (and export) S2, S1 and dual networks with the fold's cities held out.

    ``fold`` = -1 trains on all ten cities (the shipped models) into ``folds_dir/all``.
    ``skip_existing`` keeps a network whose ``model.pt`` exists (resumes an interrupted run).
    ``epochs`` overrides the epochs of some architectures (e.g. {"s2": 32}); a dual network
    whose S2/S1 streams are not in ``archs`` starts from ``folds_dir/<fold>/<s2|s1>``.
    """
    from models.export import export_checkpoint  # torch: imported only when training
    from models.training import TrainConfig, train

    holdout = list(FOLDS[fold]) if fold >= 0 else []
    base = folds_dir / (f"fold{fold}" if fold >= 0 else "all")
    paths: dict[str, Path] = {}
    for arch in archs:
        done = base / arch / "model.pt"
        if skip_existing and done.exists():
            log.info("%s exists: not retrained", done)
            paths[arch] = done
            if not (base / f"change_{arch}.onnx").exists():
                export_checkpoint(done, base)
            continue
        cfg = TrainConfig(
            arch=arch,
            data=data,
            s1=s1,
            epochs=(epochs or {}).get(arch, DUAL_EPOCHS if arch == "dual" else S2S1_EPOCHS),
            steps_per_epoch=STEPS_PER_EPOCH,
            seed=seed,
            threads=threads,
            holdout=holdout,
            out=str(base / arch),
        )
        if arch == "dual":
            cfg.init_s2 = str(paths.get("s2", base / "s2" / "model.pt"))
            cfg.init_s1 = str(paths.get("s1", base / "s1" / "model.pt"))
        paths[arch] = train(cfg)
        export_checkpoint(paths[arch], base)
    return paths


ROW_OF_ARCH = {"s2": "S2 Siamese U-Net", "s1": "S1 Siamese U-Net", "dual": "S1+S2 dual-stream"}


def ship_models(folds_dir: Path, out_dir: Path, source: str = "all") -> list[Path]:
    """Export the all-city models with the leave-cities-out figures of their architecture.

    Reads ``folds_dir/crossval.json`` (written by ``crossval_report``) and the checkpoints
    ``folds_dir/<source>/<arch>/model.pt`` (``source`` = "all", or a fold as a stop-gap).
    The card's threshold is the one maximising pooled F1 over all folds' held-out (unseen
    city) predictions; the checkpoint's in-sample threshold stays in the card for reference.
    """
    from models.evaluation import THRESHOLD_METHOD
    from models.export import export_checkpoint  # torch

    report = json.loads((folds_dir / "crossval.json").read_text())
    n = len(report["folds"])
    shipped = []
    for arch, row in ROW_OF_ARCH.items():
        ckpt = folds_dir / source / arch / "model.pt"
        if not ckpt.exists():
            log.warning("no all-city %s checkpoint at %s: not shipped", arch, ckpt)
            continue
        metrics: dict = {
            f"leave-cities-out pooled ({n} folds x 2 cities, nested thresholds), {row}": report[
                "pooled"
            ][row]
        }
        for name, value in report["pooled"].items():
            if "Otsu" in name:  # classical baselines: Otsu threshold per image, nothing tuned
                metrics[f"leave-cities-out pooled ({n} folds x 2 cities), baseline {name}"] = value
        if row in report.get("pooled_in_sample", {}):
            key = f"leave-cities-out pooled ({n} folds x 2 cities, in-sample thresholds), {row}"
            metrics[key] = report["pooled_in_sample"][row]
        metrics["leave-cities-out thresholds per fold (nested)"] = {
            fold: t.get(row) for fold, t in report["thresholds"]["nested_per_fold"].items()
        }
        metrics["leave-cities-out note"] = (
            "each city predicted by the fold model that never saw it; pixels of all held-out "
            "cities pooled; cities without S1 (cupertino) use the S2 model in S1/dual rows; "
            f"hyper-parameters fixed up front; {THRESHOLD_METHOD}"
        )
        (ckpt.parent / "metrics.json").write_text(json.dumps(metrics, indent=2))
        threshold = (
            report["thresholds"]["shipped"][row],
            f"maximises pooled F1 over all {n} folds' held-out (unseen-city) predictions "
            "(nested leave-cities-out); the in-sample choice is threshold_in_sample",
        )
        shipped.append(export_checkpoint(ckpt, out_dir, threshold=threshold))
    return shipped
