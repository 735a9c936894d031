"""Change networks (torch): Siamese U-Nets for S2 and S1, and the late-fusion dual stream.

- ``SiameseUNet``: FC-Siam-diff style (Daudt, Le Saux, Boulch, ICIP 2018). One encoder with
  shared weights reads the city reference and the new observation; the decoder sees the
  absolute difference of the two encodings at every skip level, plus both bottlenecks.
- ``DualStreamUNet``: the DS-UNet idea (Hafner, Nascetti, Azizpour, Ban, IEEE GRSL 2021):
  one Siamese U-Net stream per modality (S2 optical, S1 radar), fused late by
  concatenating the two streams' last feature maps before the classifier.

Every network outputs one logit per pixel; ``ProbabilityHead`` adds the sigmoid for export
so the ONNX graphs return p(change). Input sizes must be multiples of ``ALIGN`` (the
runtime pads); the networks are fully convolutional, so any H, W works.
"""

from __future__ import annotations

import torch
from torch import nn

ALIGN = 8  # three 2x poolings
ARCHITECTURES = ("s2", "s1", "dual")


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class SiameseUNet(nn.Module):
    """Siamese U-Net: (reference, observation) each (N, C, H, W) -> logit (N, 1, H, W)."""

    def __init__(self, in_channels: int, width: int = 16) -> None:
        super().__init__()
        w = width
        self.enc = nn.ModuleList(
            [_block(in_channels, w), _block(w, 2 * w), _block(2 * w, 4 * w), _block(4 * w, 8 * w)]
        )
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList(
            [
                nn.ConvTranspose2d(16 * w, 4 * w, 2, stride=2),
                nn.ConvTranspose2d(4 * w, 2 * w, 2, stride=2),
                nn.ConvTranspose2d(2 * w, w, 2, stride=2),
            ]
        )
        self.dec = nn.ModuleList([_block(8 * w, 4 * w), _block(4 * w, 2 * w), _block(2 * w, w)])
        self.head = nn.Conv2d(w, 1, 1)
        self.out_channels = w

    def _encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for i, block in enumerate(self.enc):
            x = block(x if i == 0 else self.pool(x))
            feats.append(x)
        return feats

    def features(self, reference: torch.Tensor, observation: torch.Tensor) -> torch.Tensor:
        """Last decoder feature map (N, width, H, W), used by the dual stream."""
        f1 = self._encode(reference)
        f2 = self._encode(observation)
        x = torch.cat([torch.abs(f1[3] - f2[3]), f2[3]], dim=1)
        for level, (up, dec) in enumerate(zip(self.up, self.dec, strict=True)):
            skip = torch.abs(f1[2 - level] - f2[2 - level])
            x = dec(torch.cat([up(x), skip], dim=1))
        return x

    def forward(self, reference: torch.Tensor, observation: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(reference, observation))


class DualStreamUNet(nn.Module):
    """DS-UNet style late fusion of an S2 and an S1 Siamese U-Net stream."""

    def __init__(self, s2_channels: int = 6, s1_channels: int = 1, width: int = 16) -> None:
        super().__init__()
        self.s2 = SiameseUNet(s2_channels, width)
        self.s1 = SiameseUNet(s1_channels, width)
        self.fuse = nn.Sequential(
            nn.Conv2d(2 * width, width, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, 1, 1),
        )

    def forward(
        self,
        s2_reference: torch.Tensor,
        s2_observation: torch.Tensor,
        s1_reference: torch.Tensor,
        s1_observation: torch.Tensor,
    ) -> torch.Tensor:
        a = self.s2.features(s2_reference, s2_observation)
        b = self.s1.features(s1_reference, s1_observation)
        return self.fuse(torch.cat([a, b], dim=1))


class ProbabilityHead(nn.Module):
    """Wraps a logit network so that it returns p(change) in [0, 1] (for export)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(*inputs))


class ExportHead(nn.Module):
    """What the shipped graph computes after the runtime's normalisation.

    The mean logit of one or more networks (an ensemble of seeds or fold models), each
    averaged over test-time flips (``tta``: 1 = none, 2 = + horizontal flip, 4 = + vertical
    flip and both), then a Platt calibration ``sigmoid(a * logit + b)`` (fitted on nested
    leave-cities-out predictions) -> p(change).
    """

    def __init__(
        self, nets: list[nn.Module], tta: int = 1, calibration: tuple[float, float] = (1.0, 0.0)
    ) -> None:
        super().__init__()
        if tta not in (1, 2, 4):
            raise ValueError(f"tta must be 1, 2 or 4, got {tta}")
        self.nets = nn.ModuleList(nets)
        self.tta = tta
        self.a = float(calibration[0])
        self.b = float(calibration[1])

    def logit(self, *inputs: torch.Tensor) -> torch.Tensor:
        flips: list[tuple[int, ...]] = [(), (3,), (2,), (2, 3)][: self.tta]
        total = None
        for net in self.nets:
            for dims in flips:
                x = [torch.flip(t, dims) if dims else t for t in inputs]
                out = net(*x)
                out = torch.flip(out, dims) if dims else out
                total = out if total is None else total + out
        assert total is not None
        return total / (len(self.nets) * len(flips))

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.a * self.logit(*inputs) + self.b)


def build_network(arch: str, width: int = 16, s2_channels: int = 6) -> nn.Module:
    """Network for ``arch`` in ARCHITECTURES (``s2_channels``: 6 or 10 S2 bands)."""
    if arch == "s2":
        return SiameseUNet(s2_channels, width)
    if arch == "s1":
        return SiameseUNet(1, width)
    if arch == "dual":
        return DualStreamUNet(s2_channels, 1, width)
    raise ValueError(f"unknown architecture {arch!r}; choose one of {ARCHITECTURES}")
