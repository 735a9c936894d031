"""Static int8 quantisation of an exported change network (onnxruntime.quantization).

Activations are calibrated on crops of the training cities, normalised exactly as at run
time; weights per channel, QDQ format (runs on onnxruntime's CPU provider). Whether an
int8 file ships is decided by ``tests/benchmarks/test_bench_quantisation.py``: float and
int8 side by side, speed and leave-cities-out F1, shipped only where F1 drops <= 0.01.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from monitor.domain.normalisation import normalise_s1, normalise_s2


def calibration_crops(
    data: Path,
    s1: Path | None,
    card: dict,
    cities: list[str],
    crops_per_city: int = 4,
    size: int = 128,
    seed: int = 0,
) -> list[dict[str, np.ndarray]]:
    """Feeds (graph input name -> (1, C, size, size)) of random crops of ``cities``."""
    from models.oscd import load_city

    rng = np.random.default_rng(seed)
    names = [i["name"] for i in card["inputs"]]
    s2_bands = tuple(next(i["bands"] for i in card["inputs"] if i["bands"][0].startswith("B")))
    feeds = []
    for name in cities:
        city = load_city(data, name, s1 if card["modality"] != "s2" else None, s2_bands)
        if card["modality"] != "s2" and not city.has_s1:
            continue
        valid = city.valid
        arrays = [normalise_s2(city.s2_t1, valid), normalise_s2(city.s2_t2, valid)]
        s1_pairs = [(normalise_s1(a, valid), normalise_s1(b, valid))
                    for a, b in zip(city.s1_t1, city.s1_t2, strict=True)]  # fmt: skip
        h, w = valid.shape
        for _ in range(crops_per_city):
            r, c = int(rng.integers(h - size + 1)), int(rng.integers(w - size + 1))
            win = (slice(None), slice(r, r + size), slice(c, c + size))
            if card["modality"] == "s2":
                inputs = arrays
            elif card["modality"] == "s1":
                inputs = list(s1_pairs[int(rng.integers(len(s1_pairs)))])
            else:
                inputs = arrays + list(s1_pairs[int(rng.integers(len(s1_pairs)))])
            feeds.append(
                {n: np.ascontiguousarray(a[win][None]) for n, a in zip(names, inputs, strict=True)}
            )
    return feeds


def quantise_static(onnx_in: Path, onnx_out: Path, feeds: list[dict[str, np.ndarray]]) -> Path:
    """int8 QDQ copy of ``onnx_in`` calibrated on ``feeds``; its card is copied alongside."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.items, None)

    onnx_out = Path(onnx_out)
    onnx_out.parent.mkdir(parents=True, exist_ok=True)
    pre = onnx_out.with_suffix(".pre.onnx")
    quant_pre_process(str(onnx_in), str(pre), skip_symbolic_shape=True)
    quantize_static(
        str(pre), str(onnx_out), Reader(), quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
    )  # fmt: skip
    pre.unlink()
    card_in = Path(onnx_in).with_name(Path(onnx_in).stem + ".card.json")
    if card_in.exists():
        card = json.loads(card_in.read_text())
        card["onnx"] = onnx_out.name
        card["name"] = onnx_out.stem
        card["quantisation"] = (
            "onnxruntime static int8 (QDQ, per-channel int8 weights, uint8 activations "
            f"calibrated on {len(feeds)} training-city crops)"
        )
        from models.card import write_card

        write_card(card, onnx_out.with_name(onnx_out.stem + ".card.json"))
    return onnx_out
