"""onnxruntime vs torch eager on the same change network and tiles, side by side (Mpx/s)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e .[train])")

from models.export import example_inputs, export_checkpoint  # noqa: E402
from models.networks import ProbabilityHead, build_network  # noqa: E402
from monitor.adapters.onnx_model import OnnxChangeModel  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
THREADS = 1  # the same on both sides; the CI machine has 2 shared cores
TILE, BATCH, REPEATS = 256, 4, 5


def _best_seconds(fn, repeats: int) -> float:
    fn()  # warm-up (allocations, graph optimisation)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


@pytest.mark.benchmark
@pytest.mark.parametrize("arch", ["s2", "dual"])
def test_onnxruntime_vs_torch_eager(arch: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = build_network(arch, 16).eval()
    ckpt = tmp_path / "model.pt"
    torch.save(
        {
            "state_dict": net.state_dict(), "arch": arch, "width": 16, "config": {},
            "train_cities": [], "threshold": 0.5, "train_f1_at_threshold": 0.0,
            "train_seconds": 0.0,
        },
        ckpt,
    )  # fmt: skip
    model = OnnxChangeModel.load(export_checkpoint(ckpt, tmp_path), threads=THREADS)
    inputs = example_inputs(arch, batch=BATCH, size=TILE)
    tensors = [torch.from_numpy(a) for a in inputs]
    head = ProbabilityHead(net).eval()

    previous = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        with torch.inference_mode():
            t_torch = _best_seconds(lambda: head(*tensors), REPEATS)
            expected = head(*tensors).numpy()
    finally:
        torch.set_num_threads(previous)
    t_ort = _best_seconds(lambda: model.run_batch(*inputs), REPEATS)
    assert np.abs(model.run_batch(*inputs) - expected).max() <= 1e-4

    mpx = BATCH * TILE * TILE / 1e6
    result = {
        "arch": arch, "tile": TILE, "batch": BATCH, "threads": THREADS,
        "torch_eager_mpx_s": round(mpx / t_torch, 3), "onnxruntime_mpx_s": round(mpx / t_ort, 3),
        "ratio_ort_over_torch": round(t_torch / t_ort, 2),
        "torch_version": torch.__version__,
    }  # fmt: skip
    print(f"\n{'engine':<14} {'Mpx/s':>8}   ({arch}, {BATCH}x{TILE}x{TILE}, {THREADS} thread)")
    print(f"{'torch eager':<14} {result['torch_eager_mpx_s']:>8.3f}")
    print(
        f"{'onnxruntime':<14} {result['onnxruntime_mpx_s']:>8.3f}   ratio {result['ratio_ort_over_torch']:.2f}"
    )
    out = ROOT / "var" / "benchmarks" / f"onnx_vs_torch_{arch}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    assert result["onnxruntime_mpx_s"] > 0
