"""Model cards: what a change model expects, how it was trained, how well it does.

Written as JSON (read by the runtime, ``monitor/adapters/onnx_model.py``) and Markdown
(read by people), next to the ONNX file: ``<name>.card.json`` / ``<name>.card.md``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from monitor.domain.normalisation import (
    S1_DB_MAX,
    S1_DB_MIN,
    S1_SCALED_MEAN,
    S1_SCALED_STD,
    S2_BANDS,
)

MODEL_VERSION = "2.0.0"
CARD_SCHEMA = "urban-monitor/model-card/1"
# Tiles are cut so that each pixel is predicted at least this far from a tile's inner edge;
# beyond it the network's output does not depend on the padding (measured by the tiling test).
TILE_MARGIN = 48

S2_INPUT = {
    "bands": list(S2_BANDS),
    "channels": len(S2_BANDS),
    "runtime_units": "surface reflectance (L2A) as float: DN / 10000 after removing any BOA offset",
    "normalisation": (
        "monitor.domain.normalisation.normalise_s2: per image and band, (x - median) / "
        "((p90 - p10) / 2.563) over valid pixels of the whole image, clipped to +-6, invalid -> 0"
    ),
}
S1_INPUT = {
    "bands": ["VV"],
    "channels": 1,
    "runtime_units": (
        f"VV backscatter in scaled dB: dB clipped to [{S1_DB_MIN:g}, {S1_DB_MAX:g}] mapped "
        "linearly to [0, 1] (helpers: normalisation.s1_from_db, s1_from_linear)"
    ),
    "normalisation": (
        f"monitor.domain.normalisation.normalise_s1: (x - {S1_SCALED_MEAN}) / {S1_SCALED_STD}, invalid -> 0"
    ),
}
LICENCE = {
    "labels": (
        "OSCD change labels: Creative Commons BY-NC-SA 4.0. Models trained on them are for "
        "NON-COMMERCIAL use only and must be shared alike."
    ),
    "s2_images": "OSCD Sentinel-2 L1C images: modified Copernicus Sentinel data 2015-2018",
    "s1_images": (
        "Sentinel-1 VV 3-month temporal means per relative orbit from SebastianHafner/DS_UNet "
        "data/ (Hafner et al. IEEE GRSL 2021, doi:10.1109/LGRS.2021.3119856); modified "
        "Copernicus Sentinel-1 data"
    ),
}
DATA_SHIFT = (
    "OSCD is Sentinel-2 L1C (top of atmosphere) while the live pipeline reads L2A (bottom of "
    "atmosphere). The difference is, to first order, a per-band affine map; every image is "
    "standardised per band by its own robust statistics (median, 10-90 % spread), so such "
    "a map cancels. Residual non-linear effects (adjacency, haze gradients) are not corrected."
)


# The graph's inputs per architecture and its output, as the export names them and the
# card describes them (the runtime feeds the inputs by these names).
INPUT_NAMES = {
    "s2": ["reference", "observation"],
    "s1": ["reference", "observation"],
    "dual": ["s2_reference", "s2_observation", "s1_reference", "s1_observation"],
}
OUTPUT_NAME = "p_change"


def s2_input(bands: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """The S2 input spec for a band list (6-band S2_BANDS or the 10-band set)."""
    return S2_INPUT | {"bands": list(bands), "channels": len(bands)}


def _inputs(
    arch: str, names: list[str], bands: list[str] | tuple[str, ...] = S2_BANDS
) -> list[dict[str, Any]]:
    s2 = s2_input(bands)
    spec = {"s2": [s2, s2], "s1": [S1_INPUT, S1_INPUT]}.get(arch, [s2, s2, S1_INPUT, S1_INPUT])
    roles = ["city reference (before)", "new observation (after)"] * 2
    return [
        {
            "name": n,
            "role": r,
            "shape": ["batch", s["channels"], "height", "width"],
            "dtype": "float32",
            **s,
        }
        for n, s, r in zip(names, spec, roles[: len(names)], strict=True)
    ]


def build_card(
    ckpt: dict[str, Any], name: str, onnx_file: str, flops_per_pixel: float, align: int
) -> dict[str, Any]:
    """The card dict of an exported checkpoint (metrics filled in by evaluation)."""

    arch = ckpt["arch"]
    cfg = ckpt["config"]
    return {
        "schema": CARD_SCHEMA,
        "name": name,
        "version": MODEL_VERSION,
        "modality": {"s2": "s2", "s1": "s1", "dual": "s1+s2"}[arch],
        "architecture": {
            "s2": "Siamese U-Net (FC-Siam-diff style), shared encoder, |difference| skips",
            "s1": "Siamese U-Net (FC-Siam-diff style) on VV backscatter",
            "dual": "Dual-stream U-Net (DS-UNet style): S2 and S1 Siamese U-Net streams fused late",
        }[arch],
        "arch": arch,
        "width": ckpt["width"],
        "onnx": onnx_file,
        "onnx_opset": 17,
        "inputs": _inputs(arch, INPUT_NAMES[arch], ckpt.get("bands") or S2_BANDS),
        "output": {
            "name": OUTPUT_NAME,
            "shape": ["batch", 1, "height", "width"],
            "dtype": "float32",
            "units": "p(change) in [0, 1] per pixel (sigmoid inside the graph)",
        },
        "align": align,
        "tile_margin": TILE_MARGIN,
        "threshold": ckpt["threshold"],
        "threshold_note": "F1-maximising on the training cities' full images after training",
        "threshold_in_sample": ckpt["threshold"],
        "data_shift": DATA_SHIFT,
        "training": {
            "dataset": "OSCD (Onera Satellite Change Detection), real Sentinel-2 L1C + real labels",
            "s1_source": LICENCE["s1_images"] if arch != "s2" else None,
            "cities": ckpt["train_cities"],
            "real_vs_synthetic": "all training data are real (OSCD S2 + real S1); no synthetic data",
            "config": cfg,
            "seconds": round(ckpt["train_seconds"], 1),
            "device": f"CPU, torch threads = {cfg.get('threads', 1)}",
            "torch_version": ckpt.get("torch_version"),
            "train_f1_at_threshold": round(ckpt["train_f1_at_threshold"], 4),
        },
        "licence": LICENCE,
        "flops_per_pixel": round(flops_per_pixel),
        "metrics": {},
        "references": {
            "siamese_unet_s2_f1": 0.579,
            "ds_unet_s1_s2_f1": 0.600,
            "source": "Hafner et al. GRSL 2021, OSCD test split",
        },
    }


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_card(card: dict[str, Any], json_path: Path) -> None:
    """Write the JSON card and its Markdown rendering; stamps the ONNX file's sha256."""
    json_path = Path(json_path)
    onnx_path = json_path.parent / card["onnx"]
    if onnx_path.exists():
        card["onnx_sha256"] = _sha256(onnx_path)
        card["onnx_bytes"] = onnx_path.stat().st_size
    json_path.write_text(json.dumps(card, indent=2) + "\n")
    json_path.with_name(json_path.name.replace(".card.json", ".card.md")).write_text(
        render_markdown(card)
    )


def render_markdown(card: dict[str, Any]) -> str:
    """Human-readable model card."""
    lines = [
        f"# Model card: {card['name']} {card['version']}",
        "",
        f"- Architecture: {card['architecture']} (base width {card['width']})",
        f"- Modality: {card['modality']}; ONNX `{card['onnx']}` (opset {card['onnx_opset']}, "
        f"dynamic batch/height/width, sha256 `{card.get('onnx_sha256', '?')[:16]}…`)",
        f"- FLOPs per pixel: {card['flops_per_pixel']:,}",
        f"- Decision threshold on p(change): {card['threshold']} ({card['threshold_note']})",
        f"- In-sample threshold (F1-maximising on the training cities, for comparison): "
        f"{card.get('threshold_in_sample', card['threshold'])}",
        f"- Height and width must be multiples of {card['align']} (the runtime pads); "
        f"tiles keep {card['tile_margin']} px of context.",
    ]
    graph = card.get("graph")
    if graph:
        cal = graph["calibration"]
        lines.append(
            f"- Graph: mean logit of {graph['ensemble_members']} network(s) x "
            f"{graph['test_time_flips']} test-time flip(s), then {cal['form']} with "
            f"a = {cal['a']:.4f}, b = {cal['b']:.4f}"
        )
    if card.get("calibration_note"):
        lines.append(f"- Calibration: {card['calibration_note']}")
    if card.get("quantisation"):
        lines.append(f"- Quantisation: {card['quantisation']}")
    if card.get("recipe"):
        lines.append(f"- Training recipe: {card['recipe']}")
    lines += [
        "",
        "## Inputs",
        "",
        "| name | role | shape | bands | runtime units | normalisation |",
        "|---|---|---|---|---|---|",
    ]
    for i in card["inputs"]:
        lines.append(
            f"| `{i['name']}` | {i['role']} | {i['shape']} | {', '.join(i['bands'])} | "
            f"{i['runtime_units']} | {i['normalisation']} |"
        )
    out = card["output"]
    lines += [
        "",
        f"Output `{out['name']}` {out['shape']} {out['dtype']}: {out['units']}.",
        "",
        "## L1C training vs L2A runtime",
        "",
        card["data_shift"],
        "",
        "## Training data and licence",
        "",
        f"- {card['training']['dataset']}; cities: {', '.join(card['training']['cities'])}",
        f"- Sentinel-1: {card['training']['s1_source'] or 'not used'}",
        f"- Real vs synthetic: {card['training']['real_vs_synthetic']}",
        f"- Training time: {card['training']['seconds']} s on {card['training']['device']}",
        f"- **Licence**: {card['licence']['labels']}",
        f"- {card['licence']['s2_images']}",
        "",
        "## Metrics (change class, pixel level)",
        "",
    ]
    metrics = card.get("metrics") or {}
    if not metrics:
        lines.append("Not evaluated yet.")
    for key, value in metrics.items():
        if (
            isinstance(value, dict)
            and value
            and all(isinstance(v, dict) and "f1" in v for v in value.values())
        ):
            lines += [f"- {key}:", "", "| method | F1 | P | R |", "|---|---|---|---|"]
            lines += [
                f"| {row} | {v['f1']:.3f} | {v['precision']:.3f} | {v['recall']:.3f} |"
                for row, v in value.items()
            ]
            lines.append("")
        elif isinstance(value, dict) and "f1" in value:
            lines.append(
                f"- {key}: F1 {value['f1']:.3f}, precision {value['precision']:.3f}, "
                f"recall {value['recall']:.3f}, IoU {value['iou']:.3f}"
            )
        else:
            lines.append(f"- {key}: {value}")
    lines += [
        "",
        f"Published references on the OSCD test split: Siamese U-Net S2 F1 "
        f"{card['references']['siamese_unet_s2_f1']}, DS-UNet S1+S2 F1 "
        f"{card['references']['ds_unet_s1_s2_f1']} ({card['references']['source']}).",
        "",
    ]
    return "\n".join(lines)
