"""Shipping the all-city models of recipe v2 with their leave-cities-out figures (issue 15).

A shipped artifact is one ONNX graph (``models.networks.ExportHead``): the mean logit of the
all-city networks (several seeds = an ensemble inside the graph), averaged over test-time
flips, then the Platt calibration and the sigmoid. Threshold and calibration are the
*shipping* ones of the method's leave-cities-out run (``<method>/lco.json``, fitted on all
folds' held-out predictions, ``models.lco``): nothing is fitted on the all-city models'
own training cities. The card carries the pooled and per-city leave-cities-out figures of
this method and of every other method and baseline measured (``summary``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from models.export import export_checkpoint

log = logging.getLogger(__name__)

RECIPE_V2 = (
    "recipe v2: per-image robust standardisation per band (runtime code, invariant to per-band "
    "gain/offset such as L1C vs L2A); 64 px crops, half centred on a change pixel; rot90 + "
    "flips; radiometric jitter applied to each date independently (per-band gain/offset, "
    "global illumination, smooth blue-weighted haze, illumination gradient, noise; S1: "
    "gain/offset/noise); weighted BCE (pos_weight 5) + soft dice over valid pixels; AdamW "
    "1e-3 one-cycle, batch 8; EMA of the weights (decay 0.99, what is exported); S2 and S1 "
    "800 steps, the dual stream initialised from them and fine-tuned 300 steps (lr 5e-4)"
)


def ship_model(
    checkpoints: list[Path],
    method_dir: Path,
    out_dir: Path,
    name: str,
    tta: int,
    summary: dict,
    fold_seconds: float | None = None,
    note: str = "",
) -> Path:
    """Export the all-city ``checkpoints`` as ``out_dir/<name>.onnx`` + card (see module doc)."""
    lco = json.loads((Path(method_dir) / "lco.json").read_text())
    calibration = tuple(lco["shipped_calibration"])
    threshold = lco["shipped_threshold"]
    n_folds = len(lco["nested_thresholds"])
    metrics = {
        f"leave-cities-out pooled ({n_folds} folds x 2 cities, nested threshold and "
        f"calibration), this method": lco["pooled"],
        "leave-cities-out per city (this method)": {c: v["f1"] for c, v in lco["per_city"].items()},
        "leave-cities-out calibrated Brier / ECE (this method)": [
            lco["calibrated_brier"],
            lco["calibrated_ece"],
        ],
        "leave-cities-out nested thresholds per fold": lco["nested_thresholds"],
        "leave-cities-out, every method and baseline measured (pooled F1, P, R)": summary,
        "leave-cities-out note": (
            "each city predicted by the fold model that never saw it (exported ONNX, runtime "
            "code); pixels of all held-out cities pooled; threshold and Platt calibration for "
            "fold k fitted on the other folds' held-out predictions only; cities without S1 "
            "(cupertino) are scored with the S2 model in S1/dual rows. " + note
        ),
    }
    extra = {
        "recipe": RECIPE_V2,
        "calibration_note": (
            "p_change is calibrated: Platt map sigmoid(a * mean_logit + b) fitted on all "
            f"{n_folds} folds' held-out (unseen-city) predictions; re-calibrate the state's "
            "LLR mapping for this version"
        ),
    }
    ensemble = [Path(p) for p in checkpoints[1:]]
    path = export_checkpoint(
        Path(checkpoints[0]),
        Path(out_dir),
        name,
        threshold=(
            threshold,
            f"maximises pooled F1 of the calibrated p over all {n_folds} folds' held-out "
            "(unseen-city) predictions (nested leave-cities-out rule)",
        ),
        tta=tta,
        calibration=(float(calibration[0]), float(calibration[1])),
        ensemble=ensemble,
        extra=extra,
    )
    card_path = Path(out_dir) / f"{name}.card.json"
    card = json.loads(card_path.read_text())
    card["metrics"].update(metrics)
    if fold_seconds is not None:
        card["training"]["leave_cities_out_seconds"] = round(fold_seconds, 1)
    card["training"]["ensemble_seconds"] = round(
        sum(
            json.loads((Path(p).parent / "train_summary.json").read_text())["train_seconds"]
            for p in checkpoints
        ),
        1,
    )
    from models.card import write_card

    write_card(card, card_path)
    log.info("shipped %s (threshold %.2f, calibration %s)", path, threshold, calibration)
    return path
