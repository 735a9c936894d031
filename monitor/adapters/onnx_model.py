"""Change models at run time: onnxruntime sessions + their model cards. No torch.

``OnnxChangeModel.load()`` opens a shipped artifact (``models/artifacts/change_s2.onnx``
by default) or any ``*.onnx`` / ``*.card.json`` path, reads the card next to it, and
``predict`` turns (reference, observation) rasters in runtime units into p(change):
normalisation (``monitor.domain.normalisation``, the same code training used), tiling with
overlap and blending (``monitor.domain.tiling``), batched onnxruntime calls.

Runtime units: S2 = L2A reflectance as float (DN / 10000 after removing any BOA offset),
bands B02, B03, B04, B08, B11, B12; S1 = VV in scaled dB ([-25, 5] dB -> [0, 1]), see
``s1_from_db`` / ``s1_from_linear``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from monitor.domain.normalisation import normalise_s1, normalise_s2, s1_from_db, s1_from_linear
from monitor.domain.tiling import predict_tiled
from monitor.errors import ModelError

__all__ = [
    "ModelInfo",
    "OnnxChangeModel",
    "default_artifacts_dir",
    "s1_from_db",
    "s1_from_linear",
]

DEFAULT_MODEL = "change_s2"


def default_artifacts_dir() -> Path:
    """Folder of the shipped artifacts (the installed ``models`` package's ``artifacts/``)."""
    import importlib.util

    spec = importlib.util.find_spec("models")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "the 'models' package with the shipped artifacts is not installed",
            "install urban-monitor (pip install -e .) or pass an explicit model path",
        )
    return Path(next(iter(spec.submodule_search_locations))) / "artifacts"


@dataclass(frozen=True)
class ModelInfo:
    """What events need to know about the model that produced them."""

    name: str
    version: str
    modality: str  # "s2", "s1" or "s1+s2"
    s2_bands: tuple[str, ...]
    s1_bands: tuple[str, ...]
    threshold: float
    train_cities: tuple[str, ...]
    sha256: str

    @property
    def id(self) -> str:
        """Stable identifier for event ids: ``name@version+sha8``."""
        return f"{self.name}@{self.version}+{self.sha256[:8]}"


def _resolve(path_or_name: str | Path | None) -> tuple[Path, Path]:
    """(onnx path, card path) for a name in the shipped artifacts or a file path."""
    if path_or_name is None:
        path_or_name = DEFAULT_MODEL
    p = Path(path_or_name)
    if p.suffix == ".json":
        card = p
    elif p.suffix == ".onnx":
        card = p.with_name(p.stem + ".card.json")
    elif p.is_dir():
        card = p / f"{DEFAULT_MODEL}.card.json"
    else:
        card = default_artifacts_dir() / f"{p.name}.card.json"
    if not card.exists():
        raise ModelError(
            f"model card {card} not found for model '{path_or_name}'",
            "pass a .onnx path with its .card.json next to it, or a shipped name "
            "(change_s2, change_s1, change_dual); export one with 'urban-monitor models export'",
        )
    try:
        meta = json.loads(card.read_text())
    except json.JSONDecodeError as exc:
        raise ModelError(
            f"model card {card} is not valid JSON: {exc}", "re-export the model"
        ) from exc
    return card.parent / meta["onnx"], card


class OnnxChangeModel:
    """A change model (S2, S1 or dual-stream) run with onnxruntime."""

    def __init__(
        self,
        onnx_path: Path,
        card: dict[str, Any],
        threads: int = 1,
        tile: int = 1024,
        overlap: int | None = None,
        batch_size: int | None = None,
    ) -> None:
        self.path = Path(onnx_path)
        self.card = card
        self.tile = tile
        self.margin = int(card.get("tile_margin", 48))
        self.overlap = overlap if overlap is not None else 2 * self.margin
        self.align = int(card.get("align", 8))
        # Tiles per onnxruntime call: about one megapixel per call bounds the activations
        # (~0.8 GB for the S2 network at 1024 x 1024) whatever the tile size.
        self.batch_size = batch_size or max(1, (1 << 20) // (tile * tile))
        self.input_names = [i["name"] for i in card["inputs"]]
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(
                str(self.path), sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ModelError(
                f"onnxruntime cannot load model {self.path}: {exc}",
                "check the file is complete (sha256 in the card) or re-export it with "
                "'urban-monitor models export'",
            ) from exc
        got = [i.name for i in self.session.get_inputs()]
        if got != self.input_names:
            raise ModelError(
                f"model {self.path} has inputs {got} but its card says {self.input_names}",
                "the card belongs to another export; re-export model and card together",
            )

    @classmethod
    def load(
        cls, path_or_name: str | Path | None = None, threads: int = 1, **kwargs: Any
    ) -> OnnxChangeModel:
        """Open a model by shipped name (default ``change_s2``) or by .onnx/.card.json path."""
        onnx_path, card_path = _resolve(path_or_name)
        if not onnx_path.exists():
            raise ModelError(
                f"ONNX file {onnx_path} named by card {card_path} does not exist",
                "restore the artifact or re-export it with 'urban-monitor models export'",
            )
        return cls(onnx_path, json.loads(card_path.read_text()), threads=threads, **kwargs)

    def _channels(self, index: int) -> int:
        """Channels of graph input ``index`` as the card declares them (6 or 10 S2 bands)."""
        return int(self.card["inputs"][index]["channels"])

    @property
    def info(self) -> ModelInfo:
        # S2 inputs carry Sentinel-2 band names (B02 ...), S1 inputs the polarisation (VV).
        s2: list[str] = next(
            (i["bands"] for i in self.card["inputs"] if i["bands"][0].startswith("B")), []
        )
        s1: list[str] = next(
            (i["bands"] for i in self.card["inputs"] if not i["bands"][0].startswith("B")), []
        )
        return ModelInfo(
            name=self.card["name"],
            version=self.card["version"],
            modality=self.card["modality"],
            s2_bands=tuple(s2),
            s1_bands=tuple(s1),
            threshold=float(self.card["threshold"]),
            train_cities=tuple(self.card["training"]["cities"]),
            sha256=self.card.get("onnx_sha256", ""),
        )

    @property
    def modality(self) -> str:
        return str(self.card["modality"])

    def run_batch(self, *inputs: np.ndarray) -> np.ndarray:
        """One onnxruntime call on already normalised (N, C, h, w) arrays -> (N, 1, h, w)."""
        feeds = {
            n: np.ascontiguousarray(a, dtype=np.float32)
            for n, a in zip(self.input_names, inputs, strict=True)
        }
        try:
            return self.session.run(None, feeds)[0]
        except Exception as exc:  # onnxruntime raises its own untyped errors
            shapes = {n: a.shape for n, a in feeds.items()}
            raise ModelError(
                f"model {self.path} failed on inputs {shapes}: {exc}",
                f"inputs must be float32 (N, C, H, W) with H, W multiples of {self.align} "
                f"and channels as in the card",
            ) from exc

    def _check(self, name: str, array: np.ndarray, channels: int) -> np.ndarray:
        if array.ndim != 3 or array.shape[0] != channels:
            raise ModelError(
                f"model {self.path}: {name} has shape {array.shape}, expected ({channels}, H, W)",
                "pass bands in the card's order as a (C, H, W) array",
            )
        return array

    def _run_tiled(self, inputs: list[np.ndarray], valid: np.ndarray | None,
                   needed: np.ndarray | None = None) -> np.ndarray:
        prob = predict_tiled(
            lambda tiles: self.run_batch(*tiles),
            inputs,
            tile=self.tile,
            overlap=self.overlap,
            margin=self.margin,
            align=self.align,
            batch_size=self.batch_size,
            needed=needed,
        )
        if needed is not None:
            prob = np.where(needed, prob, np.nan).astype(np.float32)
        if valid is not None:
            prob = np.where(valid, prob, np.nan).astype(np.float32)
        return prob

    def predict(
        self,
        reference: np.ndarray,
        observation: np.ndarray,
        valid: np.ndarray | None = None,
        needed: np.ndarray | None = None,
    ) -> np.ndarray:
        """p(change) (H, W) float32 for a single-modality model; NaN where ``valid`` is False.

        S2 models take (C, H, W) reflectance in the card's band order (``info.s2_bands``, 6
        bands for change_s2), S1 models (1, H, W) scaled dB. With ``needed``, only the
        tiles under those pixels run (NaN elsewhere); the values there are the same as from
        the whole scene (normalisation still uses every ``valid`` pixel).
        """
        if self.modality == "s2":
            ref = normalise_s2(self._check("reference", reference, self._channels(0)), valid)
            obs = normalise_s2(self._check("observation", observation, self._channels(1)), valid)
        elif self.modality == "s1":
            ref = normalise_s1(self._check("reference", reference, 1), valid)
            obs = normalise_s1(self._check("observation", observation, 1), valid)
        else:
            raise ModelError(
                f"model {self.path} is dual-stream (S1+S2)",
                "call predict_dual(s2_reference, s2_observation, s1_reference, s1_observation)",
            )
        return self._run_tiled([ref, obs], valid, needed)

    def predict_dual(
        self,
        s2_reference: np.ndarray,
        s2_observation: np.ndarray,
        s1_reference: np.ndarray,
        s1_observation: np.ndarray,
        valid: np.ndarray | None = None,
        s1_valid: np.ndarray | None = None,
    ) -> np.ndarray:
        """p(change) (H, W) of the dual-stream model (S2 reflectance + S1 scaled dB).

        ``s1_valid`` (default: ``valid``) marks the pixels whose radar inputs are usable;
        elsewhere both radar inputs are the neutral 0 (no radar change: what the model saw
        for cities without radar in training), so S2 alone speaks there."""
        s1_mask = valid if s1_valid is None else (
            s1_valid if valid is None else (valid & s1_valid))
        if self.modality != "s1+s2":
            raise ModelError(
                f"model {self.path} is single-modality ({self.modality})",
                "use predict(reference, observation) or load change_dual",
            )
        inputs = [
            normalise_s2(self._check("s2_reference", s2_reference, self._channels(0)), valid),
            normalise_s2(self._check("s2_observation", s2_observation, self._channels(1)), valid),
            normalise_s1(self._check("s1_reference", s1_reference, 1), s1_mask),
            normalise_s1(self._check("s1_observation", s1_observation, 1), s1_mask),
        ]
        return self._run_tiled(inputs, valid)
