"""Export a trained checkpoint to ONNX (opset 17, dynamic batch/H/W) with its model card."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch

from models.card import INPUT_NAMES, OUTPUT_NAME, build_card, write_card
from models.networks import ALIGN, ExportHead
from models.training import load_checkpoint

log = logging.getLogger(__name__)

OPSET = 17
ARTIFACT_NAMES = {"s2": "change_s2", "s1": "change_s1", "dual": "change_dual"}


def example_inputs(
    arch: str, batch: int = 1, size: int = 64, seed: int = 0, s2_channels: int = 6
) -> list[np.ndarray]:
    """Fixed random inputs in network units (for export tracing and parity tests)."""
    rng = np.random.default_rng(seed)
    c = s2_channels
    channels = {"s2": [c, c], "s1": [1, 1], "dual": [c, c, 1, 1]}[arch]
    return [rng.normal(size=(batch, c, size, size)).astype(np.float32) for c in channels]


def count_flops_per_pixel(
    net: torch.nn.Module, arch: str, size: int = 64, s2_channels: int = 6
) -> float:
    """Multiply-adds x 2 of convolutions per output pixel (measured with forward hooks)."""
    total = 0.0

    def hook(module: torch.nn.Module, _inp: tuple, out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, torch.nn.Conv2d | torch.nn.ConvTranspose2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            c_in = module.in_channels // module.groups
            if isinstance(module, torch.nn.ConvTranspose2d):
                # every input pixel scatters c_in*c_out*k products
                total += (
                    2.0
                    * _inp[0].numel()
                    / _inp[0].shape[1]
                    * module.in_channels
                    * module.out_channels
                    * k
                )
            else:
                total += 2.0 * out.numel() * c_in * k

    handles = [m.register_forward_hook(hook) for m in net.modules()]
    with torch.no_grad():
        net(*[torch.from_numpy(a) for a in example_inputs(arch, 1, size, 0, s2_channels)])
    for h in handles:
        h.remove()
    return total / (size * size)


def export_checkpoint(
    checkpoint: Path,
    out_dir: Path,
    name: str | None = None,
    threshold: tuple[float, str] | None = None,
    tta: int = 1,
    calibration: tuple[float, float] | None = None,
    ensemble: list[Path] | None = None,
    extra: dict | None = None,
) -> Path:
    """Write ``<name>.onnx``, ``<name>.card.json`` and ``<name>.card.md``; returns the ONNX path.

    ``threshold`` = (value, how it was chosen) replaces the checkpoint's in-sample threshold
    in the card (which keeps the in-sample one as ``threshold_in_sample``). The graph is
    ``models.networks.ExportHead``: the mean logit of ``checkpoint`` and the ``ensemble``
    checkpoints (same architecture and bands), over ``tta`` test-time flips, then the Platt
    ``calibration`` (a, b) and the sigmoid. ``extra`` is merged into the card.
    """
    net, ckpt = load_checkpoint(Path(checkpoint))
    arch = ckpt["arch"]
    bands = ckpt.get("bands") or ["B02", "B03", "B04", "B08", "B11", "B12"]
    nets = [net] + [load_checkpoint(Path(p))[0] for p in ensemble or []]
    name = name or ARTIFACT_NAMES[arch]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = out_dir / f"{name}.onnx"
    model = ExportHead(nets, tta=tta, calibration=calibration or (1.0, 0.0)).eval()
    inputs = tuple(torch.from_numpy(a) for a in example_inputs(arch, 2, 64, s2_channels=len(bands)))
    names = INPUT_NAMES[arch]
    axes = {n: {0: "batch", 2: "height", 3: "width"} for n in [*names, OUTPUT_NAME]}
    torch.onnx.export(
        model, inputs, str(onnx_path), input_names=names, output_names=[OUTPUT_NAME],
        dynamic_axes=axes, opset_version=OPSET, dynamo=False,
    )  # fmt: skip
    flops = count_flops_per_pixel(net, arch, s2_channels=len(bands)) * len(nets) * tta
    card = build_card(ckpt, name=name, onnx_file=onnx_path.name, flops_per_pixel=flops, align=ALIGN)
    card["graph"] = {
        "ensemble_members": len(nets),
        "test_time_flips": tta,
        "calibration": {
            "form": "p = sigmoid(a * mean_logit + b)",
            "a": (calibration or (1.0, 0.0))[0],
            "b": (calibration or (1.0, 0.0))[1],
        },
    }
    if extra:
        card.update(extra)
    if threshold is not None:
        card["threshold"], card["threshold_note"] = threshold
    metrics_file = Path(checkpoint).parent / "metrics.json"
    if metrics_file.exists():
        card["metrics"].update(json.loads(metrics_file.read_text()))
    write_card(card, out_dir / f"{name}.card.json")
    log.info("exported %s (%.1f kB)", onnx_path, onnx_path.stat().st_size / 1024)
    return onnx_path
