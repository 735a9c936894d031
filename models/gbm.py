"""A non-deep change learner: LightGBM on per-pixel multi-scale features, as ONE ONNX graph.

Training (torch + lightgbm, training-time only): the fixed feature module
(``models.features.PixelFeatures``) turns each normalised city pair into per-pixel features;
a class- and city-balanced sample of pixels of the training cities trains a gradient-boosted
tree ensemble. Export: the feature module (torch -> ONNX) and the trees (onnxmltools ->
``ai.onnx.ml.TreeEnsembleClassifier``) are merged into one graph with the same inputs and
output as the networks (``reference``, ``observation`` [, ``s1_reference``,
``s1_observation``] -> ``p_change`` (N, 1, H, W)), so the runtime needs onnxruntime only.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


@dataclass
class GbmConfig:
    """Everything that defines a tree-ensemble training run (fixed up front)."""

    arch: str = "s2"  # "s2" or "dual" (S2 + S1 features)
    bands: str = "6"  # band set (models.oscd.BAND_SETS)
    pos_per_city: int = 6000  # change pixels sampled per city (all if fewer)
    neg_per_city: int = 24000  # no-change pixels sampled per city
    num_rounds: int = 300
    learning_rate: float = 0.05
    num_leaves: int = 31
    min_data_in_leaf: int = 400
    feature_fraction: float = 0.6
    bagging_fraction: float = 0.7
    lambda_l2: float = 10.0
    seed: int = 0
    threads: int = 1
    holdout: list[str] = field(default_factory=list)
    data: str = "../shared/data/oscd"
    s1: str | None = None
    out: str = "var/models/gbm"


def city_features(module, inputs: list[np.ndarray]) -> np.ndarray:
    """(F, H, W) float32 features of one city from its normalised (C, H, W) inputs."""
    import torch

    with torch.no_grad():
        f = module(*[torch.from_numpy(np.ascontiguousarray(a))[None] for a in inputs])
    return f[0].numpy()


def sample_pixels(
    label: np.ndarray, valid: np.ndarray, n_pos: int, n_neg: int, rng: np.random.Generator
) -> np.ndarray:
    """Flat indices of up to ``n_pos`` change and ``n_neg`` no-change valid pixels."""
    flat_l, flat_v = label.ravel().astype(bool), valid.ravel()
    pos = np.flatnonzero(flat_l & flat_v)
    neg = np.flatnonzero(~flat_l & flat_v)
    pos = rng.choice(pos, min(n_pos, pos.size), replace=False) if pos.size else pos
    neg = rng.choice(neg, min(n_neg, neg.size), replace=False)
    return np.concatenate([pos, neg])


def _city_inputs(city, arch: str, orbit: int | None) -> list[np.ndarray]:
    """Normalised inputs of a PreparedCity (``orbit`` for S1)."""
    inputs = [city.s2_t1, city.s2_t2]
    if arch == "dual":
        inputs += [city.s1_t1[orbit], city.s1_t2[orbit]]
    return inputs


def train_gbm(cfg: GbmConfig, cities: list | None = None) -> Path:
    """Train one tree ensemble; writes ``<out>/gbm.txt`` + ``train_summary.json``."""
    import lightgbm as lgb
    import torch

    from models.features import PixelFeatures
    from models.oscd import BAND_SETS, list_cities
    from models.training import load_prepared

    torch.set_num_threads(cfg.threads)
    rng = np.random.default_rng(cfg.seed)
    bands = BAND_SETS[cfg.bands]
    if cities is None:
        names = [n for n in list_cities(Path(cfg.data)) if n not in set(cfg.holdout)]
        cities = load_prepared(cfg.data, cfg.s1 if cfg.arch == "dual" else None, names, cfg.bands)
    if cfg.arch == "dual":
        cities = [c for c in cities if c.s1_t1]
    module = PixelFeatures(bands, with_s1=cfg.arch == "dual").eval()
    start = time.perf_counter()
    xs, ys = [], []
    for city in cities:
        orbits = range(len(city.s1_t1)) if cfg.arch == "dual" else [None]
        for o in orbits:
            # several orbits: each gets its share of the city's sample
            n = len(orbits)
            idx = sample_pixels(
                city.label, city.valid, cfg.pos_per_city // n, cfg.neg_per_city // n, rng
            )
            f = city_features(module, _city_inputs(city, cfg.arch, o))
            xs.append(f.reshape(f.shape[0], -1)[:, idx].T.copy())
            ys.append(city.label.ravel()[idx])
    X, y = np.concatenate(xs), np.concatenate(ys).astype(np.float32)
    params = {
        "objective": "binary",
        "learning_rate": cfg.learning_rate,
        "num_leaves": cfg.num_leaves,
        "min_data_in_leaf": cfg.min_data_in_leaf,
        "feature_fraction": cfg.feature_fraction,
        "bagging_fraction": cfg.bagging_fraction,
        "bagging_freq": 1,
        "lambda_l2": cfg.lambda_l2,
        "num_threads": cfg.threads,
        "seed": cfg.seed,
        "verbose": -1,
    }
    booster = lgb.train(params, lgb.Dataset(X, y, feature_name=module.names), cfg.num_rounds)
    seconds = time.perf_counter() - start
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    booster.save_model(str(out / "gbm.txt"))
    summary = {
        "config": asdict(cfg),
        "arch": cfg.arch,
        "bands": list(bands),
        "train_cities": [c.name for c in cities],
        "train_seconds": seconds,
        "samples": int(len(y)),
        "positive_share": float(y.mean()),
        "feature_names": module.names,
    }
    (out / "train_summary.json").write_text(json.dumps(summary, indent=2))
    log.info("trained gbm %s on %d pixels in %.0f s -> %s", cfg.arch, len(y), seconds, out)
    return out / "gbm.txt"


def export_gbm(
    model_dir: Path,
    onnx_path: Path,
    calibration: tuple[float, float] | None = None,
) -> Path:
    """One ONNX graph: feature module + trees (+ Platt calibration) -> ``p_change``.

    ``calibration`` = (a, b): p = sigmoid(a * logit(p_trees) + b), fitted elsewhere.
    """
    import lightgbm as lgb
    import onnx
    import onnxmltools
    import torch
    from onnx import TensorProto, helper
    from onnxmltools.convert.common.data_types import FloatTensorType

    from models.export import INPUT_NAMES, OPSET, OUTPUT_NAME
    from models.features import FlatPixelFeatures, PixelFeatures

    summary = json.loads((Path(model_dir) / "train_summary.json").read_text())
    arch, bands = summary["arch"], tuple(summary["bands"])
    booster = lgb.Booster(model_file=str(Path(model_dir) / "gbm.txt"))
    module = FlatPixelFeatures(PixelFeatures(bands, with_s1=arch == "dual")).eval()
    names = INPUT_NAMES[arch]
    channels = [len(bands), len(bands)] + ([1, 1] if arch == "dual" else [])
    example = tuple(torch.zeros(1, c, 16, 16) for c in channels)
    onnx_path = Path(onnx_path)
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    feat_path = onnx_path.with_suffix(".features.onnx")
    torch.onnx.export(
        module, example, str(feat_path), input_names=names,
        output_names=["features", "out_shape"],
        dynamic_axes={n: {0: "batch", 2: "height", 3: "width"} for n in names}
        | {"features": {0: "pixels"}},
        opset_version=OPSET, dynamo=False,
    )  # fmt: skip
    feats = onnx.load(str(feat_path))
    feat_path.unlink()
    n_feat = module.features.n_features
    trees = onnxmltools.convert_lightgbm(
        booster,
        initial_types=[("features", FloatTensorType([None, n_feat]))],
        zipmap=False,
        target_opset=15,  # the converter's highest; the merged graph declares OPSET
    )
    tree_graph = trees.graph
    prob_name = tree_graph.output[1].name
    # rename the tree graph's nodes/tensors apart from the feature graph's
    prefix = "trees_"
    trees_pref = onnx.compose.add_prefix(trees, prefix, rename_inputs=False)
    nodes = list(feats.graph.node) + list(trees_pref.graph.node)
    initializers = list(feats.graph.initializer) + list(trees_pref.graph.initializer)
    p_name = prefix + prob_name
    const = [
        helper.make_tensor("slice_start", TensorProto.INT64, [1], [1]),
        helper.make_tensor("slice_end", TensorProto.INT64, [1], [2]),
        helper.make_tensor("slice_axis", TensorProto.INT64, [1], [1]),
    ]
    initializers += const
    nodes.append(
        helper.make_node("Slice", [p_name, "slice_start", "slice_end", "slice_axis"], ["p_col"])
    )
    last = "p_col"
    if calibration is not None:
        a, b = calibration
        initializers += [
            helper.make_tensor("cal_eps", TensorProto.FLOAT, [], [1e-6]),
            helper.make_tensor("cal_one", TensorProto.FLOAT, [], [1.0 - 1e-6]),
            helper.make_tensor("cal_1", TensorProto.FLOAT, [], [1.0]),
            helper.make_tensor("cal_a", TensorProto.FLOAT, [], [float(a)]),
            helper.make_tensor("cal_b", TensorProto.FLOAT, [], [float(b)]),
        ]
        nodes += [
            helper.make_node("Clip", [last, "cal_eps", "cal_one"], ["cal_p"]),
            helper.make_node("Sub", ["cal_1", "cal_p"], ["cal_q"]),
            helper.make_node("Div", ["cal_p", "cal_q"], ["cal_odds"]),
            helper.make_node("Log", ["cal_odds"], ["cal_logit"]),
            helper.make_node("Mul", ["cal_logit", "cal_a"], ["cal_scaled"]),
            helper.make_node("Add", ["cal_scaled", "cal_b"], ["cal_z"]),
            helper.make_node("Sigmoid", ["cal_z"], ["cal_out"]),
        ]
        last = "cal_out"
    nodes.append(helper.make_node("Reshape", [last, "out_shape"], [OUTPUT_NAME]))
    output = helper.make_tensor_value_info(
        OUTPUT_NAME, TensorProto.FLOAT, ["batch", 1, "height", "width"]
    )
    graph = helper.make_graph(nodes, "change_gbm", list(feats.graph.input), [output], initializers)
    opsets = [helper.make_opsetid("", OPSET), helper.make_opsetid("ai.onnx.ml", 3)]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="urban-monitor")
    model.ir_version = min(feats.ir_version, 9)
    onnx.checker.check_model(model)
    onnx.save(model, str(onnx_path))
    return onnx_path
