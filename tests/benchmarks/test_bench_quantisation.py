"""float32 vs static int8 (onnxruntime.quantization), side by side: speed and leave-cities-out F1.

For each shipped architecture the five fold models of its leave-cities-out run
(``var/models/v2/<method>/fold<k>/``, written by ``models crossval --train``) are quantised,
each calibrated on crops of ITS OWN training cities (never its held-out ones); both versions
predict their held-out cities with the runtime code, and the same nested rule
(``models.lco``: threshold and calibration from the other folds) scores both. int8 ships only
where pooled F1 drops by <= 0.01 (``int8_ships``). Figures: ``var/models/v2/quantisation.json``.
Runs for minutes; skipped without the fold models or the OSCD data.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from models.folds import FOLDS
from models.lco import HeldOut, city_labels, fold_of_city, lco_report
from models.oscd import OSCD_CITIES, load_city
from monitor.adapters.onnx_model import OnnxChangeModel

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / ".." / "shared" / "data"
V2 = Path(os.environ.get("URBAN_MONITOR_LCO_DIR", ROOT / "var" / "models" / "v2"))
CASES = {"s2": ("lco_s2", "change_s2"), "dual": ("lco_dual", "change_dual")}
MAX_F1_DROP = 0.01
TILE, BATCH, REPEATS = 256, 4, 3


def _predict(model: OnnxChangeModel, city) -> np.ndarray:
    valid = city.valid
    if model.modality == "s2":
        return model.predict(city.s2_t1, city.s2_t2, valid)
    return np.mean(
        [model.predict_dual(city.s2_t1, city.s2_t2, a, b, valid)
         for a, b in zip(city.s1_t1, city.s1_t2, strict=True)], axis=0,
    )  # fmt: skip


def _mpx_per_s(model: OnnxChangeModel) -> float:
    rng = np.random.default_rng(0)
    inputs = [
        rng.normal(size=(BATCH, i["channels"], TILE, TILE)).astype(np.float32)
        for i in model.card["inputs"]
    ]
    model.run_batch(*inputs)
    best = min(
        (lambda t: (model.run_batch(*inputs), time.perf_counter() - t)[1])(time.perf_counter())
        for _ in range(REPEATS)
    )
    return BATCH * TILE * TILE / best / 1e6


@pytest.mark.benchmark
@pytest.mark.parametrize("arch", list(CASES))
def test_int8_vs_float_speed_and_leave_cities_out_f1(arch: str, tmp_path: Path) -> None:
    pytest.importorskip("onnx", reason="onnx is not installed (pip install -e .[train])")
    from models.quantise import calibration_crops, quantise_static

    method, artifact = CASES[arch]
    if not (DATA / "oscd").is_dir():
        pytest.skip(f"real OSCD data not found at {DATA}")
    if not all((V2 / method / f"fold{k}" / f"{artifact}.onnx").exists() for k in range(len(FOLDS))):
        pytest.skip(f"no fold models under {V2 / method} (models crossval --train)")
    labels = city_labels(DATA / "oscd")
    folds = fold_of_city()
    heldout: dict[str, list[HeldOut]] = {"float32": [], "int8": []}
    speed: dict[str, list[float]] = {"float32": [], "int8": []}
    for k, cities in enumerate(FOLDS):
        onnx_path = V2 / method / f"fold{k}" / f"{artifact}.onnx"
        card = json.loads(onnx_path.with_name(f"{artifact}.card.json").read_text())
        train = [c for c in OSCD_CITIES if c not in cities]
        feeds = calibration_crops(DATA / "oscd", DATA / "oscd-s1", card, train, crops_per_city=4)
        int8_path = quantise_static(
            onnx_path, tmp_path / f"fold{k}" / f"{artifact}_int8.onnx", feeds
        )
        models = {
            "float32": OnnxChangeModel.load(onnx_path),
            "int8": OnnxChangeModel.load(int8_path),
        }
        for kind, model in models.items():
            speed[kind].append(_mpx_per_s(model))
            for name in cities:
                city = load_city(DATA / "oscd", name, DATA / "oscd-s1", model.info.s2_bands)
                if arch != "s2" and not city.has_s1:
                    continue  # cupertino: the S2 model stands in (same for both kinds)
                label, valid = labels[name]
                prob = _predict(model, city)[valid]
                heldout[kind].append(HeldOut(name, folds[name], prob, label[valid]))
    results = {kind: lco_report(f"{arch} {kind}", h) for kind, h in heldout.items()}
    f1 = {kind: r.pooled.f1 for kind, r in results.items()}
    report = {
        "arch": arch,
        "method": str(V2 / method),
        "cities": sorted(h.city for h in heldout["float32"]),
        "pooled_f1": {k: round(v, 4) for k, v in f1.items()},
        "per_city_f1": {
            kind: {c: round(v.f1, 4) for c, v in r.per_city.items()} for kind, r in results.items()
        },
        "mpx_per_s_1_thread": {k: round(float(np.median(v)), 3) for k, v in speed.items()},
        "f1_drop": round(f1["float32"] - f1["int8"], 4),
        "int8_ships": f1["float32"] - f1["int8"] <= MAX_F1_DROP,
    }
    out = V2 / "quantisation.json"
    previous = json.loads(out.read_text()) if out.exists() else {}
    out.write_text(json.dumps(previous | {arch: report}, indent=2))
    print(json.dumps(report, indent=2))
    assert 0.0 < f1["int8"] <= 1.0 and 0.0 < f1["float32"] <= 1.0
    assert all(v > 0 for v in report["mpx_per_s_1_thread"].values())
