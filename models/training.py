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
from models.oscd import CityPair, list_cities, load_cities
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


def sample_batch(
    cities: list[PreparedCity],
    cfg: TrainConfig,
    rng: np.random.Generator,
    weights: np.ndarray | None = None,
) -> dict[str, torch.Tensor]:
    """Random crops (some centred on change), random rot90 and flips."""
    if weights is None:
        weights = city_weights(cities, cfg.synthetic_share)
    s2a, s2b, s1a, s1b, ys, ms = [], [], [], [], [], []
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
        raw = load_cities(Path(cfg.data), names, s1_root)
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

    net = build_network(cfg.arch, cfg.width)
    if cfg.arch == "dual":
        for stream, init in (("s2", cfg.init_s2), ("s1", cfg.init_s1)):
            if init:
                state = torch.load(init, map_location="cpu", weights_only=False)["state_dict"]
                getattr(net, stream).load_state_dict(state)
                log.info("dual %s stream initialised from %s", stream, init)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    total = cfg.epochs * cfg.steps_per_epoch
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=max(total, 1))
    start = time.perf_counter()
    losses: list[float] = []
    weights = city_weights(cities, cfg.synthetic_share)
    bar = tqdm(total=total, desc=f"train {cfg.arch}", unit="step", mininterval=2.0)
    for epoch in range(cfg.epochs):
        net.train()
        epoch_loss = 0.0
        for _ in range(cfg.steps_per_epoch):
            batch = sample_batch(cities, cfg, rng, weights)
            loss = change_loss(
                forward_batch(net, cfg.arch, batch), batch["label"], batch["valid"], cfg.pos_weight
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            epoch_loss += loss.item()
            bar.update(1)
        losses.append(epoch_loss / max(cfg.steps_per_epoch, 1))
        bar.set_postfix(epoch=epoch + 1, loss=f"{losses[-1]:.3f}")
        torch.save({"state_dict": net.state_dict(), "epoch": epoch + 1}, out / "last.pt")
    bar.close()
    train_seconds = time.perf_counter() - start

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


def load_checkpoint(path: Path) -> tuple[nn.Module, dict]:
    """Network (eval mode) and checkpoint dict from ``model.pt``."""
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    net = build_network(ckpt["arch"], ckpt["width"])
    net.load_state_dict(ckpt["state_dict"])
    net.eval()
    return net, ckpt
