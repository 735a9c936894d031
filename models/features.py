"""Per-pixel multi-scale change features as fixed torch ops (exportable to ONNX).

The non-deep learner (``models/gbm.py``) classifies every pixel from features of both dates
and their difference at several scales. The features are computed by ``PixelFeatures``, a
torch module without trainable weights (box filters, differences, products), so that the
same code computes them in training and, exported to ONNX in front of the trees, at run
time: the shipped predictor stays one ONNX graph after the runtime's normalisation.

Inputs are the runtime's normalised arrays (``monitor.domain.normalisation``: per image and
band robust standardisation, invariant to per-band gain and offset such as L1C vs L2A);
every feature is a linear or quadratic function of them, so that invariance is kept.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional

# Box-filter sizes (px); 1 = the pixel itself. The largest radius (10 px) is well inside the
# runtime's tile margin (48 px), so tiling stays seamless.
SCALES: tuple[int, ...] = (1, 5, 11, 21)
STD_SCALES: tuple[int, ...] = (5, 11)
# Band differences in normalised units that stand in for spectral indices (the indices
# themselves are not invariant to a per-band offset): NIR - red (vegetation), SWIR1 - NIR
# (built-up), green - NIR (water), SWIR2 - red.
INDEX_PAIRS: tuple[tuple[str, str], ...] = (
    ("B08", "B04"), ("B11", "B08"), ("B03", "B08"), ("B12", "B04"),
)  # fmt: skip
S1_SCALES: tuple[int, ...] = (1, 5, 11, 21)


def _box(x: torch.Tensor, size: int) -> torch.Tensor:
    if size == 1:
        return x
    return functional.avg_pool2d(x, size, stride=1, padding=size // 2, count_include_pad=False)


class PixelFeatures(nn.Module):
    """(reference, observation[, s1_reference, s1_observation]) -> features (N, F, H, W).

    ``bands`` names the S2 channels in input order; ``with_s1`` adds radar features.
    """

    def __init__(self, bands: tuple[str, ...], with_s1: bool = False) -> None:
        super().__init__()
        self.bands = tuple(bands)
        self.with_s1 = with_s1
        missing = {b for pair in INDEX_PAIRS for b in pair} - set(self.bands)
        if missing:
            raise ValueError(f"bands {self.bands} lack {sorted(missing)} needed by INDEX_PAIRS")
        c = len(self.bands)
        weights = torch.zeros(len(INDEX_PAIRS), c, 1, 1)
        for i, (a, b) in enumerate(INDEX_PAIRS):
            weights[i, self.bands.index(a)] = 1.0
            weights[i, self.bands.index(b)] = -1.0
        self.register_buffer("index_weights", weights)
        self.names = self._names()

    def _names(self) -> list[str]:
        c = self.bands
        names: list[str] = []
        for s in SCALES:
            names += [f"ref_{b}_m{s}" for b in c] + [f"obs_{b}_m{s}" for b in c]
            names += [f"diff_{b}_m{s}" for b in c] + [f"absdiff_norm_m{s}"]
        for s in STD_SCALES:
            names += [f"diff_{b}_sd{s}" for b in c] + [f"obs_sd{s}", f"ref_sd{s}"]
        for s in (1, 5):
            for date in ("ref", "obs", "diff"):
                names += [f"{date}_{a}-{b}_m{s}" for a, b in INDEX_PAIRS]
            names += [f"cos_m{s}"]
        names += [f"diff_m1-m21_{b}" for b in c]
        if self.with_s1:
            for s in S1_SCALES:
                names += [f"s1_ref_m{s}", f"s1_obs_m{s}", f"s1_diff_m{s}"]
            names += ["s1_diff_sd5", "s1_diff_sd11"]
        return names

    @property
    def n_features(self) -> int:
        return len(self.names)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        ref, obs = inputs[0], inputs[1]
        diff = obs - ref
        out: list[torch.Tensor] = []
        means = {}
        for s in SCALES:
            r, o = _box(ref, s), _box(obs, s)
            d = o - r
            means[s] = (r, o, d)
            norm = torch.sqrt((d * d).sum(dim=1, keepdim=True) + 1e-6)
            out += [r, o, d, norm]
        for s in STD_SCALES:
            d_m = means[s][2]
            d_var = _box(diff * diff, s) - d_m * d_m
            out.append(torch.sqrt(d_var.clamp(min=0.0) + 1e-6))
            for x, m in ((obs, means[s][1]), (ref, means[s][0])):
                var = (_box(x * x, s) - m * m).clamp(min=0.0).mean(dim=1, keepdim=True)
                out.append(torch.sqrt(var + 1e-6))
        for s in (1, 5):
            r, o, d = means[s]
            for x in (r, o, d):
                out.append(functional.conv2d(x, self.index_weights))  # type: ignore[arg-type]
            cos = (r * o).sum(dim=1, keepdim=True) / (
                torch.sqrt((r * r).sum(dim=1, keepdim=True) * (o * o).sum(dim=1, keepdim=True))
                + 1e-3
            )
            out.append(cos)
        out.append(means[1][2] - means[21][2])
        if self.with_s1:
            s1r, s1o = inputs[2], inputs[3]
            s1d = s1o - s1r
            for s in S1_SCALES:
                r, o = _box(s1r, s), _box(s1o, s)
                out += [r, o, o - r]
            for s in (5, 11):
                m = _box(s1d, s)
                out.append(torch.sqrt((_box(s1d * s1d, s) - m * m).clamp(min=0.0) + 1e-6))
        return torch.cat(out, dim=1)


class FlatPixelFeatures(nn.Module):
    """``PixelFeatures`` flattened to (N*H*W, F) rows, plus the output shape (N, 1, H, W).

    The form the tree ensemble takes in the exported graph.
    """

    def __init__(self, features: PixelFeatures) -> None:
        super().__init__()
        self.features = features

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.features(*inputs)
        n_feat = f.shape[1]
        rows = f.permute(0, 2, 3, 1).reshape(-1, n_feat)
        shape = torch._shape_as_tensor(inputs[0])
        out_shape = torch.cat([shape[:1], torch.ones(1, dtype=shape.dtype), shape[2:]])
        return rows, out_shape
