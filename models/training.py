"""Training the change networks on OSCD (+ its real Sentinel-1) with torch, on the CPU.

Validation is by city, never by pixel: ``--holdout`` cities are never read for training.
Hyper-parameters are fixed up front (``TrainConfig`` defaults) and were not tuned on the
held-out cities; the decision threshold on p(change) is chosen on the training cities
(F1-maximising on their full images after training) and stored in the checkpoint.
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from models.metrics import best_threshold
from models.networks import ALIGN, build_network
from models.oscd import BAND_SETS, CityPair, list_cities, load_cities
from monitor.domain.normalisation import normalise_s1, normalise_s2

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Everything that defines a training run (stored in the checkpoint and the card)."""

    arch: str = "s2"
    dataset: str = "oscd"  # "oscd", "synthetic" (data = a synthetic archive), "oscd+synthetic"
    data: str = "../shared/data/oscd"
    s1: str | None = None
    epochs: int = 30
    steps_per_epoch: int = 40
    batch_size: int = 8
    crop: int = 96
    lr: float = 1e-3
    weight_decay: float = 1e-4
    width: int = 16
    pos_weight: float = 5.0  # weighted BCE for the ~2 % change class, plus soft dice
    change_crop_fraction: float = 0.5  # share of crops centred on a change pixel
    seed: int = 0
    threads: int = 1
    holdout: list[str] = field(default_factory=list)
    cities: list[str] | None = None  # restrict the training cities (tests, smoke runs)
    # dual only: start the S2 / S1 streams from trained single-modality checkpoints (as
    # DS-UNet trains streams that are good on their own), then fine-tune all of it.
    init_s2: str | None = None
    init_s1: str | None = None
    out: str = "var/models/run"
    # synthetic pairs (models/synthetic_data.py): the archive for "oscd+synthetic", how many
    # (earlier, later) scene pairs, and the share of training crops drawn from them.
    synthetic: str | None = None
    synthetic_pairs: int = 6
    synthetic_share: float = 0.25
    # recipe v2 (issue 15): S2 band set ("6" = S2_BANDS, "10" = all L2A 10/20 m bands),
    # radiometric jitter applied independently to the two dates (0 = off, 1 = the default
    # strengths of ``jitter_dates``), exponential moving average of the weights (0 = off;
    # the EMA weights are what model.pt stores and what is exported).
    bands: str = "6"
    jitter: float = 0.0
    ema_decay: float = 0.0


DATASETS = ("oscd", "synthetic", "oscd+synthetic")


@dataclass
class PreparedCity:
    """A city as network inputs: normalised arrays, label, valid mask."""

    name: str
    s2_t1: np.ndarray
    s2_t2: np.ndarray
    s1_t1: list[np.ndarray]
    s1_t2: list[np.ndarray]
    label: np.ndarray
    valid: np.ndarray
    change_pixels: np.ndarray  # (K, 2) row, col of change pixels


def prepare_city(city: CityPair) -> PreparedCity:
    """Normalise a city exactly as the runtime does (monitor.domain.normalisation)."""
    if city.label is None:
        raise ValueError(f"city {city.name} has no change label (cm/) and cannot train")
    valid = city.valid
    return PreparedCity(
        name=city.name,
        s2_t1=normalise_s2(city.s2_t1, valid),
        s2_t2=normalise_s2(city.s2_t2, valid),
        s1_t1=[normalise_s1(a) for a in city.s1_t1],
        s1_t2=[normalise_s1(a) for a in city.s1_t2],
        label=city.label,
        valid=valid,
        change_pixels=np.argwhere(city.label > 0),
    )


def load_prepared(
    data: str | Path, s1: str | Path | None, names: list[str], bands: str = "6"
) -> list[PreparedCity]:
    """Read and normalise OSCD cities with the band set ``bands`` (models.oscd.BAND_SETS)."""
    raw = load_cities(Path(data), names, Path(s1) if s1 else None, BAND_SETS[bands])
    return [prepare_city(c) for c in raw]


def city_weights(cities: list[PreparedCity], synthetic_share: float = 0.0) -> np.ndarray:
    """How often each city is drawn: by size, with synthetic pairs (``synthetic-*``) taking
    ``synthetic_share`` of the draws when real cities are there too."""
    sizes = np.array([c.label.size for c in cities], dtype=float)
    synthetic = np.array([c.name.startswith("synthetic-") for c in cities])
    if synthetic.any() and not synthetic.all():
        share = float(np.clip(synthetic_share, 0.0, 1.0))
        sizes[synthetic] *= share / sizes[synthetic].sum()
        sizes[~synthetic] *= (1.0 - share) / sizes[~synthetic].sum()
    return sizes / sizes.sum()


# Haze adds most to the short wavelengths (Rayleigh/aerosol scattering), little to SWIR.
HAZE_WEIGHT = {
    "B02": 1.0, "B03": 0.8, "B04": 0.65, "B05": 0.55, "B06": 0.45, "B07": 0.4,
    "B08": 0.35, "B8A": 0.33, "B11": 0.12, "B12": 0.06,
}  # fmt: skip


def _smooth_field(rng: np.random.Generator, size: int, cells: int = 3) -> np.ndarray:
    """A random field in [-1, 1] varying over a few cells across the crop (bilinear)."""
    coarse = rng.uniform(-1.0, 1.0, size=(cells, cells)).astype(np.float32)
    pos = np.linspace(0.0, cells - 1.0, size, dtype=np.float32)
    i0 = np.clip(pos.astype(int), 0, cells - 2)
    f = pos - i0
    rows = coarse[i0] * (1 - f)[:, None] + coarse[i0 + 1] * f[:, None]
    return rows[:, i0] * (1 - f)[None, :] + rows[:, i0 + 1] * f[None, :]


def jitter_optical(
    x: np.ndarray, bands: tuple[str, ...], rng: np.random.Generator, strength: float = 1.0
) -> np.ndarray:
    """Radiometric jitter of one date's normalised S2 crop (C, h, w), in normalised units.

    What the per-image normalisation does not cancel, so that it does not look like change:
    a residual per-band gain and offset (processing baseline, L1C vs L2A, season), a global
    illumination gain, a smooth haze field strongest in the blue, a smooth illumination
    gradient, and sensor noise. Applied to each date independently.
    """
    if rng.random() > 0.8:
        return x
    c, h, w = x.shape
    s = strength
    gain = np.exp(rng.normal(0.0, 0.08 * s, size=(c, 1, 1))) * np.exp(rng.normal(0.0, 0.08 * s))
    offset = rng.normal(0.0, 0.12 * s, size=(c, 1, 1))
    out = x * gain.astype(np.float32) + offset.astype(np.float32)
    if rng.random() < 0.5:  # haze: positive, smooth, wavelength-dependent
        weight = np.array([HAZE_WEIGHT.get(b, 0.3) for b in bands], np.float32)[:, None, None]
        amount = rng.uniform(0.0, 0.6 * s)
        out = out + amount * weight * (0.5 + 0.5 * _smooth_field(rng, h))[None]
    if rng.random() < 0.5:  # illumination gradient (topography, sun angle, thin cloud)
        out = out * (1.0 + 0.1 * s * _smooth_field(rng, h))[None]
    out = out + rng.normal(0.0, 0.03 * s, size=out.shape).astype(np.float32)
    return out.astype(np.float32)


def jitter_radar(x: np.ndarray, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    """Small gain/offset and speckle-like noise on one date's normalised S1 crop."""
    if rng.random() > 0.8:
        return x
    s = strength
    out = x * np.float32(np.exp(rng.normal(0.0, 0.05 * s))) + np.float32(rng.normal(0.0, 0.1 * s))
    return (out + rng.normal(0.0, 0.05 * s, size=x.shape)).astype(np.float32)


def sample_batch(
    cities: list[PreparedCity],
    cfg: TrainConfig,
    rng: np.random.Generator,
    weights: np.ndarray | None = None,
) -> dict[str, torch.Tensor]:
    """Random crops (some centred on change), random rot90 and flips."""
    if weights is None:
        weights = city_weights(cities, cfg.synthetic_share)
    s2a: list[np.ndarray] = []
    s2b: list[np.ndarray] = []
    s1a: list[np.ndarray] = []
    s1b: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    ms: list[np.ndarray] = []
    for _ in range(cfg.batch_size):
        city = cities[rng.choice(len(cities), p=weights)]
        h, w = city.label.shape
        size = min(cfg.crop, h, w) // ALIGN * ALIGN
        if len(city.change_pixels) and rng.random() < cfg.change_crop_fraction:
            r, c = city.change_pixels[rng.integers(len(city.change_pixels))]
            r0 = int(np.clip(r - rng.integers(size), 0, h - size))
            c0 = int(np.clip(c - rng.integers(size), 0, w - size))
        else:
            r0, c0 = int(rng.integers(h - size + 1)), int(rng.integers(w - size + 1))
        window = (slice(None), slice(r0, r0 + size), slice(c0, c0 + size))
        orbit = int(rng.integers(len(city.s1_t1))) if city.s1_t1 else -1
        arrays = [
            city.s2_t1[window],
            city.s2_t2[window],
            city.s1_t1[orbit][window] if orbit >= 0 else np.zeros((1, size, size), np.float32),
            city.s1_t2[orbit][window] if orbit >= 0 else np.zeros((1, size, size), np.float32),
            city.label[None][window].astype(np.float32),
            city.valid[None][window].astype(np.float32),
        ]
        k = int(rng.integers(4))
        flip = bool(rng.integers(2))
        out = []
        for a in arrays:
            a = np.rot90(a, k, axes=(1, 2))
            out.append(np.ascontiguousarray(a[:, :, ::-1] if flip else a))
        if cfg.jitter > 0:
            bands = BAND_SETS.get(cfg.bands, BAND_SETS["6"])[: out[0].shape[0]]
            out[0] = jitter_optical(out[0], bands, rng, cfg.jitter)
            out[1] = jitter_optical(out[1], bands, rng, cfg.jitter)
            out[2] = jitter_radar(out[2], rng, cfg.jitter)
            out[3] = jitter_radar(out[3], rng, cfg.jitter)
        for lst, a in zip((s2a, s2b, s1a, s1b, ys, ms), out, strict=True):
            lst.append(a)
    return {
        name: torch.from_numpy(np.stack(lst))
        for name, lst in zip(
            ("s2_t1", "s2_t2", "s1_t1", "s1_t2", "label", "valid"),
            (s2a, s2b, s1a, s1b, ys, ms),
            strict=True,
        )
    }


def forward_batch(net: nn.Module, arch: str, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Logits of ``net`` for a batch dict (keys as in ``sample_batch``)."""
    if arch == "s2":
        return net(batch["s2_t1"], batch["s2_t2"])
    if arch == "s1":
        return net(batch["s1_t1"], batch["s1_t2"])
    return net(batch["s2_t1"], batch["s2_t2"], batch["s1_t1"], batch["s1_t2"])


def change_loss(logits: torch.Tensor, label: torch.Tensor, valid: torch.Tensor, pos_weight: float):
    """Weighted BCE + soft dice of the change class, over valid pixels only."""
    bce = nn.functional.binary_cross_entropy_with_logits(
        logits, label, pos_weight=torch.tensor(pos_weight), reduction="none"
    )
    bce = (bce * valid).sum() / valid.sum().clamp(min=1.0)
    p = torch.sigmoid(logits) * valid
    dice = 1.0 - (2.0 * (p * label).sum() + 1.0) / (p.sum() + (label * valid).sum() + 1.0)
    return bce + dice


def predict_city(net: nn.Module, arch: str, city: PreparedCity) -> np.ndarray:
    """p(change) over a whole city (padded to ALIGN), averaged over S1 orbits."""
    h, w = city.label.shape
    ph, pw = -h % ALIGN, -w % ALIGN

    def pad(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.pad(a, ((0, 0), (0, ph), (0, pw)), mode="reflect"))[None]

    orbits = range(len(city.s1_t1)) if arch != "s2" else [0]
    probs = []
    with torch.no_grad():
        for o in orbits:
            batch = {"s2_t1": pad(city.s2_t1), "s2_t2": pad(city.s2_t2)}
            if arch != "s2":
                batch |= {"s1_t1": pad(city.s1_t1[o]), "s1_t2": pad(city.s1_t2[o])}
            probs.append(torch.sigmoid(forward_batch(net, arch, batch))[0, 0, :h, :w].numpy())
    return np.mean(probs, axis=0).astype(np.float32)


def train(cfg: TrainConfig) -> Path:
    """Train one network; writes ``<out>/model.pt`` (+ ``last.pt`` each epoch) and returns it."""
    torch.set_num_threads(cfg.threads)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)

    if cfg.dataset not in DATASETS:
        raise ValueError(f"unknown dataset {cfg.dataset!r}; choose one of {DATASETS}")
    if cfg.dataset == "synthetic":
        from models.synthetic_data import load_synthetic_pairs

        raw = load_synthetic_pairs(cfg.data, pairs=cfg.synthetic_pairs, seed=cfg.seed)
    else:
        names = cfg.cities or list_cities(Path(cfg.data))
        names = [n for n in names if n not in set(cfg.holdout)]
        s1_root = Path(cfg.s1) if cfg.s1 and cfg.arch != "s2" else None
        if cfg.arch != "s2" and s1_root is None:
            raise ValueError(f"architecture {cfg.arch} needs --s1 (the OSCD Sentinel-1 folder)")
        raw = load_cities(Path(cfg.data), names, s1_root, BAND_SETS[cfg.bands])
        if cfg.dataset == "oscd+synthetic":
            if not cfg.synthetic:
                raise ValueError("dataset oscd+synthetic needs --synthetic (a synthetic archive)")
            from models.synthetic_data import load_synthetic_pairs

            raw += load_synthetic_pairs(cfg.synthetic, pairs=cfg.synthetic_pairs, seed=cfg.seed)
    if cfg.arch != "s2":
        if cfg.dataset == "synthetic":
            raise ValueError(f"architecture {cfg.arch} needs real S1: train it on --dataset oscd")
        skipped = [c.name for c in raw if not c.has_s1]
        if skipped:
            log.info("no Sentinel-1 for %s: left out of %s training", skipped, cfg.arch)
        raw = [c for c in raw if c.has_s1]
    cities = [prepare_city(c) for c in raw]
    train_names = [c.name for c in cities]
    log.info("training %s on %s (held out: %s)", cfg.arch, train_names, cfg.holdout)

    n_bands = len(BAND_SETS[cfg.bands])
    net = build_network(cfg.arch, cfg.width, n_bands)
    if cfg.arch == "dual":
        for stream, init in (("s2", cfg.init_s2), ("s1", cfg.init_s1)):
            if init:
                state = torch.load(init, map_location="cpu", weights_only=False)["state_dict"]
                getattr(net, stream).load_state_dict(state)
                log.info("dual %s stream initialised from %s", stream, init)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    total = cfg.epochs * cfg.steps_per_epoch
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=max(total, 1))
    ema = {k: v.detach().clone() for k, v in net.state_dict().items()} if cfg.ema_decay else None
    losses: list[float] = []
    first_epoch, spent = 0, 0.0
    resume = out / "last.pt"
    if resume.exists():
        state = torch.load(resume, map_location="cpu", weights_only=False)
        if state.get("config") == asdict(cfg) and "optimizer" in state:
            net.load_state_dict(state["state_dict"])
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            ema = state.get("ema")
            losses, first_epoch = state["loss_per_epoch"], state["epoch"]
            spent = state.get("train_seconds", 0.0)
            rng.bit_generator.state = state["numpy_rng"]
            torch.set_rng_state(state["torch_rng"])
            log.info("resuming %s from %s at epoch %d", cfg.arch, resume, first_epoch)
        else:
            log.info("%s belongs to another configuration: training from scratch", resume)
    start = time.perf_counter() - spent
    weights = city_weights(cities, cfg.synthetic_share)
    bar = tqdm(total=total, initial=first_epoch * cfg.steps_per_epoch, desc=f"train {cfg.arch}",
               unit="step", mininterval=2.0)  # fmt: skip
    for epoch in range(first_epoch, cfg.epochs):
        net.train()
        epoch_loss = 0.0
        for step in range(cfg.steps_per_epoch):
            batch = sample_batch(cities, cfg, rng, weights)
            loss = change_loss(
                forward_batch(net, cfg.arch, batch), batch["label"], batch["valid"], cfg.pos_weight
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            if ema is not None:
                n = epoch * cfg.steps_per_epoch + step
                update_ema(ema, net, min(cfg.ema_decay, (1.0 + n) / (10.0 + n)))
            epoch_loss += loss.item()
            bar.update(1)
        losses.append(epoch_loss / max(cfg.steps_per_epoch, 1))
        bar.set_postfix(epoch=epoch + 1, loss=f"{losses[-1]:.3f}")
        # Everything needed to resume exactly where this epoch ended.
        torch.save(
            {
                "state_dict": net.state_dict(), "ema": ema, "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(), "epoch": epoch + 1, "config": asdict(cfg),
                "loss_per_epoch": losses, "numpy_rng": rng.bit_generator.state,
                "torch_rng": torch.get_rng_state(),
                "train_seconds": time.perf_counter() - start,
            },
            out / "last.pt",
        )  # fmt: skip
    bar.close()
    train_seconds = time.perf_counter() - start
    if ema is not None:
        net.load_state_dict(ema)

    net.eval()
    probs = [predict_city(net, cfg.arch, c) for c in cities]
    threshold, train_f1 = best_threshold(
        np.concatenate([p[c.valid] for p, c in zip(probs, cities, strict=True)]),
        np.concatenate([c.label[c.valid] for c in cities]),
    )
    ckpt = {
        "state_dict": net.state_dict(),
        "config": asdict(cfg),
        "arch": cfg.arch,
        "width": cfg.width,
        "bands": list(BAND_SETS[cfg.bands]),
        "train_cities": train_names,
        "threshold": threshold,
        "train_f1_at_threshold": train_f1,
        "train_seconds": train_seconds,
        "loss_per_epoch": losses,
        "torch_version": torch.__version__,
    }
    path = out / "model.pt"
    torch.save(ckpt, path)
    summary = {k: v for k, v in ckpt.items() if k != "state_dict"}
    (out / "train_summary.json").write_text(json.dumps(summary, indent=2))
    log.info(
        "trained %s in %.0f s; threshold %.2f (train F1 %.3f) -> %s",
        cfg.arch, train_seconds, threshold, train_f1, path,
    )  # fmt: skip
    return path


def update_ema(ema: dict[str, torch.Tensor], net: nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * weights (batch-norm statistics included)."""
    with torch.no_grad():
        for k, v in net.state_dict().items():
            if v.dtype.is_floating_point:
                ema[k].mul_(decay).add_(v.detach(), alpha=1.0 - decay)
            else:
                ema[k].copy_(v)


def load_checkpoint(path: Path) -> tuple[nn.Module, dict]:
    """Network (eval mode) and checkpoint dict from ``model.pt``."""
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    n_bands = len(ckpt.get("bands", BAND_SETS["6"]))
    net = build_network(ckpt["arch"], ckpt["width"], n_bands)
    net.load_state_dict(ckpt["state_dict"])
    net.eval()
    return net, ckpt
