"""Leave-cities-out evaluation of any change method from its held-out probability maps.

Numpy (+ onnxruntime for ``predict_heldout``) only. A *method* is a folder
``<method>/fold<k>/<artifact>.card.json`` (one exported model per fold, trained without
fold k's cities, ``models.folds.FOLDS``). ``predict_heldout`` runs each fold's ONNX model on
its held-out cities with the runtime code (``OnnxChangeModel``: normalisation, tiling) and
stores p(change) per city (``<method>/heldout/<city>.npy``, float16; mean over S1 orbits);
``lco_report`` turns stored maps into the table, with nothing fitted on the figure it
reports:

- **nested threshold**: for fold k, the F1-maximising threshold (``LCO_GRID``) over
  the held-out predictions of the OTHER folds (pooled pixels);
- **nested calibration**: for fold k, a Platt map ``sigmoid(a * logit(p) + b)`` fitted on
  the other folds' held-out predictions; the nested threshold is then chosen on the
  calibrated values (F1 barely moves: the map is monotone; calibration is for the state's
  log-likelihood-ratio mapping, measured by the Brier score and the expected calibration
  error of the calibrated p on fold k's cities);
- **shipping**: threshold and calibration fitted on all folds' held-out predictions.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from models.folds import FOLDS
from models.metrics import Counts, best_on_curve, counts_at_thresholds, sum_curves

log = logging.getLogger(__name__)

_EPS = 1e-6
# Candidate thresholds on the (calibrated) p(change). Finer than the 1.0.0 grid (0.05 steps):
# calibrated F1-optimal thresholds of a ~2 % class sit near 0.1-0.3, where 0.05 is coarse.
LCO_GRID: tuple[float, ...] = tuple(round(0.01 * i, 2) for i in range(1, 100))


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p.astype(np.float64), _EPS, 1.0 - _EPS)
    return np.log(p / (1.0 - p))


def apply_platt(p: np.ndarray, ab: tuple[float, float]) -> np.ndarray:
    """sigmoid(a * logit(p) + b), float32."""
    z = ab[0] * logit(p) + ab[1]
    return (1.0 / (1.0 + np.exp(-z))).astype(np.float32)


def fit_platt(p: np.ndarray, y: np.ndarray, iterations: int = 50) -> tuple[float, float]:
    """Platt scaling (logistic regression on logit p) by Newton's method; returns (a, b)."""
    x = logit(p)
    t = y.astype(np.float64)
    a, b = 1.0, 0.0
    for _ in range(iterations):
        z = np.clip(a * x + b, -30, 30)
        q = 1.0 / (1.0 + np.exp(-z))
        w = q * (1 - q) + 1e-9
        g = np.array([np.sum((q - t) * x), np.sum(q - t)])
        h = np.array([[np.sum(w * x * x), np.sum(w * x)], [np.sum(w * x), np.sum(w)]])
        h += np.eye(2) * 1e-6 * len(x)
        step = np.linalg.solve(h, g)
        a, b = a - step[0], b - step[1]
        if np.abs(step).max() < 1e-7:
            break
    return float(a), float(b)


def calibration_error(p: np.ndarray, y: np.ndarray, bins: int = 10) -> tuple[float, float]:
    """(Brier score, expected calibration error with equal-width bins)."""
    brier = float(np.mean((p - y) ** 2))
    idx = np.minimum((p * bins).astype(int), bins - 1)
    ece = 0.0
    for i in range(bins):
        m = idx == i
        if m.any():
            ece += m.mean() * abs(float(p[m].mean()) - float(y[m].mean()))
    return brier, ece


def average_precision(prob: np.ndarray, label: np.ndarray) -> float:
    """Area under the precision-recall curve (step-wise, threshold-free ranking quality)."""
    order = np.argsort(-prob.astype(np.float64), kind="stable")
    y = label[order].astype(np.float64)
    if y.sum() == 0:
        return 0.0
    tp = np.cumsum(y)
    precision = tp / np.arange(1, y.size + 1)
    return float(np.sum(precision * y) / y.sum())


@dataclass
class HeldOut:
    """p(change) and label of the valid pixels of one held-out city."""

    city: str
    fold: int
    prob: np.ndarray  # 1-D float32 over valid pixels
    label: np.ndarray  # 1-D bool
    note: str = ""


@dataclass
class LcoResult:
    """Pooled and per-city figures of one method."""

    method: str
    pooled: Counts
    per_city: dict[str, Counts]
    thresholds: dict[int, float]
    calibrations: dict[int, tuple[float, float]]
    shipped_threshold: float
    shipped_calibration: tuple[float, float]
    best_global_f1: float  # the oracle: one threshold chosen on the reported cities (not a result)
    brier: float = 0.0
    ece: float = 0.0
    brier_raw: float = 0.0
    ece_raw: float = 0.0
    notes: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "method": self.method,
            "pooled": self.pooled.as_dict(),
            "per_city": {c: v.as_dict() for c, v in self.per_city.items()},
            "nested_thresholds": {f"fold{k}": t for k, t in self.thresholds.items()},
            "nested_calibrations": {f"fold{k}": list(v) for k, v in self.calibrations.items()},
            "shipped_threshold": self.shipped_threshold,
            "shipped_calibration": list(self.shipped_calibration),
            "oracle_single_threshold_f1": round(self.best_global_f1, 4),
            "calibrated_brier": round(self.brier, 5),
            "calibrated_ece": round(self.ece, 5),
            "raw_brier": round(self.brier_raw, 5),
            "raw_ece": round(self.ece_raw, 5),
            "notes": self.notes,
        }


def _subsample(items: list[HeldOut], n: int = 400_000, seed: int = 0) -> tuple:
    p = np.concatenate([h.prob for h in items])
    y = np.concatenate([h.label for h in items])
    if p.size > n:
        idx = np.random.default_rng(seed).choice(p.size, n, replace=False)
        p, y = p[idx], y[idx]
    return p, y


def lco_report(
    method: str,
    heldout: list[HeldOut],
    calibrate: bool = True,
    fallback: LcoResult | None = None,
) -> LcoResult:
    """Nested-threshold (and nested-calibration) leave-cities-out figures of one method.

    Cities marked with a note (no S1: the S2 map stands in) take part in no fit; with
    ``fallback`` (the S2 method's result) their counts are the S2 method's own nested
    counts, as the live state would score them with the S2 model and its threshold.
    """
    stand_in = [h for h in heldout if h.note]
    if fallback is not None:
        heldout = [h for h in heldout if not h.note]
    folds = sorted({h.fold for h in heldout})
    thresholds: dict[int, float] = {}
    calibrations: dict[int, tuple[float, float]] = {}
    per_city: dict[str, Counts] = {}
    pooled = Counts()
    cal_p, cal_y, raw_p = [], [], []
    for k in folds:
        others = [h for h in heldout if h.fold != k]
        own = [h for h in heldout if h.fold == k]
        ab = fit_platt(*_subsample(others)) if calibrate and others else (1.0, 0.0)
        calibrations[k] = ab
        if others:
            curve = sum_curves(
                [counts_at_thresholds(apply_platt(h.prob, ab), h.label, LCO_GRID) for h in others]
            )
            t_index = best_on_curve(curve)
        else:  # a single fold (quick checks): no other fold to choose from, p >= 0.5
            t_index = LCO_GRID.index(0.5)
        thresholds[k] = LCO_GRID[t_index]
        for h in own:
            p = apply_platt(h.prob, ab)
            c = counts_at_thresholds(p, h.label, LCO_GRID)[t_index]
            per_city[h.city] = c
            pooled = pooled + c
            cal_p.append(p)
            cal_y.append(h.label)
            raw_p.append(h.prob)
    if fallback is not None:
        for h in stand_in:
            per_city[h.city] = fallback.per_city[h.city]
            pooled = pooled + fallback.per_city[h.city]
    ab_all = fit_platt(*_subsample(heldout)) if calibrate else (1.0, 0.0)
    every = sum_curves(
        [counts_at_thresholds(apply_platt(h.prob, ab_all), h.label, LCO_GRID) for h in heldout]
    )
    raw_curve = sum_curves([counts_at_thresholds(h.prob, h.label, LCO_GRID) for h in heldout])
    y_all = np.concatenate(cal_y).astype(np.float64)
    brier, ece = calibration_error(np.concatenate(cal_p), y_all)
    brier_raw, ece_raw = calibration_error(np.concatenate(raw_p), y_all)
    return LcoResult(
        method=method,
        pooled=pooled,
        per_city=per_city,
        thresholds=thresholds,
        calibrations=calibrations,
        shipped_threshold=LCO_GRID[best_on_curve(every)],
        shipped_calibration=ab_all,
        best_global_f1=max(c.f1 for c in raw_curve),
        brier=brier,
        ece=ece,
        brier_raw=brier_raw,
        ece_raw=ece_raw,
        notes={h.city: h.note for h in heldout + stand_in if h.note},
    )


def fixed_report(
    method: str, heldout: list[HeldOut], predicted: dict[str, np.ndarray]
) -> LcoResult:
    """Figures of a method without a threshold to choose (binary maps, e.g. Otsu baselines)."""
    per_city = {}
    pooled = Counts()
    for h in heldout:
        pred = predicted[h.city]
        c = Counts(
            int(np.sum(pred & h.label)), int(np.sum(pred & ~h.label)),
            int(np.sum(~pred & h.label)), int(np.sum(~pred & ~h.label)),
        )  # fmt: skip
        per_city[h.city] = c
        pooled = pooled + c
    return LcoResult(method, pooled, per_city, {}, {}, float("nan"), (1.0, 0.0), pooled.f1)


def fold_of_city() -> dict[str, int]:
    return {c: k for k, pair in enumerate(FOLDS) for c in pair}


def load_heldout(
    method_dir: Path, labels: dict[str, tuple[np.ndarray, np.ndarray]]
) -> list[HeldOut]:
    """Stored held-out maps of a method (``heldout/<city>.npy``) with their labels/valid masks."""
    out = []
    folds = fold_of_city()
    notes = {}
    notes_file = Path(method_dir) / "heldout" / "notes.json"
    if notes_file.exists():
        notes = json.loads(notes_file.read_text())
    for city, (label, valid) in labels.items():
        f = Path(method_dir) / "heldout" / f"{city}.npy"
        if not f.exists():
            continue
        prob = np.load(f).astype(np.float32)
        out.append(
            HeldOut(city, folds[city], prob[valid], label[valid].astype(bool), notes.get(city, ""))
        )
    return out


def render(results: list[LcoResult], cities: list[str]) -> str:
    """Markdown table: pooled F1/P/R/IoU (nested), per-city F1."""
    head = "| method | F1 | P | R | IoU | " + " | ".join(cities) + " | Brier / ECE (cal.) |"
    lines = [head, "|" + "---|" * (6 + len(cities))]
    for r in results:
        per = " | ".join(f"{r.per_city[c].f1:.3f}" if c in r.per_city else "-" for c in cities)
        cal = f"{r.brier:.4f} / {r.ece:.4f}" if r.brier else ""
        p = r.pooled
        lines.append(
            f"| {r.method} | **{p.f1:.3f}** | {p.precision:.3f} | {p.recall:.3f} | {p.iou:.3f} "
            f"| {per} | {cal} |"
        )
    return "\n".join(lines)


def predict_heldout(
    method_dir: Path,
    artifact: str,
    data: Path,
    s1: Path | None,
    folds: list[int] | None = None,
    s2_fallback: Path | None = None,
    threads: int = 1,
) -> list[Path]:
    """Run ``<method>/fold<k>/<artifact>.onnx`` on fold k's held-out cities (runtime code).

    Writes ``<method>/heldout/<city>.npy`` (float16 p(change), NaN outside valid pixels).
    Dual/S1 models on a city without S1 use ``s2_fallback`` (a method folder whose
    ``heldout/<city>.npy`` is copied, with a note), as the state does.
    """
    from models.oscd import load_city
    from monitor.adapters.onnx_model import OnnxChangeModel

    out_dir = Path(method_dir) / "heldout"
    out_dir.mkdir(parents=True, exist_ok=True)
    notes_file = out_dir / "notes.json"
    notes = json.loads(notes_file.read_text()) if notes_file.exists() else {}
    written = []
    for k, cities in enumerate(FOLDS):
        if folds is not None and k not in folds:
            continue
        model = OnnxChangeModel.load(
            Path(method_dir) / f"fold{k}" / f"{artifact}.card.json", threads=threads
        )
        if model.modality != "s2" and s1 is None:
            raise ValueError(f"{artifact} is a {model.modality} model: pass the S1 folder (--s1)")
        for name in cities:
            if name in model.info.train_cities:
                raise RuntimeError(f"fold {k}: {artifact} was trained on held-out city {name}")
            city = load_city(
                data, name, s1 if model.modality != "s2" else None, model.info.s2_bands
            )
            valid = city.valid
            if model.modality == "s2":
                prob = model.predict(city.s2_t1, city.s2_t2, valid)
            elif not city.has_s1:
                if s2_fallback is None:
                    continue
                prob = np.load(Path(s2_fallback) / "heldout" / f"{name}.npy").astype(np.float32)
                notes[name] = f"no S1: S2 model ({Path(s2_fallback).name}) used"
            elif model.modality == "s1":
                prob = np.mean(
                    [
                        model.predict(a, b, valid)
                        for a, b in zip(city.s1_t1, city.s1_t2, strict=True)
                    ],
                    axis=0,
                )
            else:
                prob = np.mean(
                    [model.predict_dual(city.s2_t1, city.s2_t2, a, b, valid)
                     for a, b in zip(city.s1_t1, city.s1_t2, strict=True)], axis=0,
                )  # fmt: skip
            np.save(out_dir / f"{name}.npy", prob.astype(np.float16))
            written.append(out_dir / f"{name}.npy")
    notes_file.write_text(json.dumps(notes, indent=2))
    return written


def city_labels(
    data: Path, cities: list[str] | None = None
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(label, valid) per labelled city of an OSCD-layout folder."""
    from models.oscd import OSCD_CITIES, load_city

    out = {}
    for name in cities or OSCD_CITIES:
        c = load_city(data, name, None, ("B02",))
        if c.label is not None:
            out[name] = (c.label.astype(bool), c.valid)
    return out
