"""``urban-monitor models ...``: train, export, evaluate and cross-validate the change models.

torch is imported only inside ``train`` and ``export`` (and ``crossval --train``), so that
``urban-monitor --help`` and ``models evaluate`` run with onnxruntime alone.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

DEFAULT_DATA = "../shared/data/oscd"
DEFAULT_S1 = "../shared/data/oscd-s1"


def _cities(text: str | None) -> list[str]:
    return [c.strip() for c in text.split(",") if c.strip()] if text else []


def _cmd_train(args: argparse.Namespace) -> int:
    from models.training import TrainConfig, train  # torch

    cfg = TrainConfig(
        arch=args.arch,
        dataset=args.dataset,
        data=args.data,
        s1=args.s1,
        epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch,
        batch_size=args.batch_size,
        seed=args.seed,
        threads=args.threads,
        holdout=_cities(args.holdout),
        cities=_cities(args.cities) or None,
        out=args.out,
        init_s2=args.init_s2,
        init_s1=args.init_s1,
        synthetic=args.synthetic,
        synthetic_pairs=args.synthetic_pairs,
        synthetic_share=args.synthetic_share,
        bands=args.bands,
        crop=args.crop,
        jitter=args.jitter,
        ema_decay=args.ema_decay,
    )
    path = train(cfg)
    print(f"checkpoint: {path}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from models.export import export_checkpoint  # torch

    calibration = None
    if args.calibration:
        a, b = (float(v) for v in args.calibration.split(","))
        calibration = (a, b)
    path = export_checkpoint(
        Path(args.checkpoint), Path(args.out), args.name, tta=args.tta,
        calibration=calibration, ensemble=[Path(p) for p in _cities(args.ensemble)],
    )  # fmt: skip
    print(f"onnx: {path}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from models.evaluation import evaluate_models

    report = evaluate_models(
        Path(args.data),
        Path(args.s1) if args.s1 else None,
        model_dir=Path(args.model) if args.model else None,
        cities=_cities(args.cities) or None,
        json_out=Path(args.json) if args.json else None,
        threads=args.threads,
    )
    print(report)
    return 0


def _cmd_crossval(args: argparse.Namespace) -> int:
    from models.folds import FOLDS

    if args.fold == "none":
        folds: list[int] = []
    elif args.fold:
        folds = [int(f) for f in args.fold.split(",")]
    else:
        folds = list(range(len(FOLDS)))
    if args.train:
        from models.folds import train_fold  # torch

        for k in [*folds, -1] if args.final else folds:
            train_fold(
                k, args.data, args.s1, Path(args.folds_dir), args.seed, args.threads,
                skip_existing=args.skip_existing, archs=tuple(_cities(args.archs)),
                epochs={a: int(n) for a, n in (e.split("=") for e in _cities(args.epochs))},
                recipe=args.recipe, bands=args.bands,
            )  # fmt: skip
    if args.calibration_from:
        from models.folds import recalibrate_fold  # torch

        for k in folds:
            recalibrate_fold(k, Path(args.folds_dir), Path(args.calibration_from))
    if (args.train and args.train_only) or (args.calibration_from and not args.train):
        return 0
    from models.evaluation import crossval_report

    print(
        crossval_report(
            Path(args.data),
            Path(args.s1) if args.s1 else None,
            Path(args.folds_dir),
            json_out=Path(args.json) if args.json else None,
            threads=args.threads,
            folds=folds,
        )
    )
    if args.ship:
        from models.folds import ship_models  # torch

        for path in ship_models(Path(args.folds_dir), Path(args.ship), args.ship_from):
            print(f"shipped: {path}")
    return 0


def _cmd_lco(args: argparse.Namespace) -> int:
    import json

    from models.lco import city_labels, lco_report, load_heldout, predict_heldout, render
    from models.oscd import OSCD_CITIES

    method = Path(args.method)
    if args.predict:
        predict_heldout(
            method, args.artifact, Path(args.data), Path(args.s1) if args.s1 else None,
            s2_fallback=Path(args.s2_fallback) if args.s2_fallback else None,
            threads=args.threads,
        )  # fmt: skip
    heldout = load_heldout(method, city_labels(Path(args.data)))
    if not heldout:
        print(f"no held-out maps under {method}/heldout: run with --predict first")
        return 1
    fallback = None
    if args.s2_fallback:
        labels = city_labels(Path(args.data))
        fallback = lco_report("s2", load_heldout(Path(args.s2_fallback), labels))
    result = lco_report(args.name or method.name, heldout, fallback=fallback)
    print(render([result], list(OSCD_CITIES)))
    print(
        f"nested thresholds {result.thresholds}; shipping threshold {result.shipped_threshold}, "
        f"calibration (a, b) = {tuple(round(v, 4) for v in result.shipped_calibration)}"
    )
    (method / "lco.json").write_text(json.dumps(result.as_dict(), indent=2))
    return 0


def _cmd_ship(args: argparse.Namespace) -> int:
    import json

    from models.ship import ship_model  # torch

    summary = json.loads(Path(args.summary).read_text()) if args.summary else {}
    for spec in args.model:
        # NAME=METHOD_DIR:CKPT[,CKPT...]  (CKPTs: the all-city model.pt files)
        name, rest = spec.split("=", 1)
        method, ckpts = rest.split(":", 1)
        path = ship_model(
            [Path(c) for c in ckpts.split(",")], Path(method), Path(args.out), name,
            tta=args.tta, summary=summary,
        )  # fmt: skip
        print(f"shipped: {path}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``models`` command (train, export, evaluate, crossval) to a CLI."""
    models = subparsers.add_parser(
        "models",
        help="train, export, evaluate the change models (S2, S1, dual-stream)",
        description="Change models: torch training on OSCD, ONNX export, evaluation.",
    )
    sub = models.add_subparsers(dest="models_command", required=True)

    def data_args(p: argparse.ArgumentParser, datasets: tuple[str, ...] = ("oscd",)) -> None:
        p.add_argument(
            "--dataset",
            choices=list(datasets),
            default="oscd",
            help="dataset: 'oscd' (real OSCD layout)"
            + (
                "; 'synthetic' (--data is a synthetic archive); 'oscd+synthetic' (real "
                "OSCD plus pairs from the --synthetic archive)"
                if len(datasets) > 1
                else ""
            ),
        )
        p.add_argument(
            "--data",
            default=DEFAULT_DATA,
            help="OSCD-layout folder (<city>/imgs_1 ...), or the archive for --dataset synthetic",
        )
        p.add_argument("--s1", default=None, help=f"OSCD Sentinel-1 folder (e.g. {DEFAULT_S1})")
        p.add_argument("--threads", type=int, default=1, help="CPU threads (default 1)")

    t = sub.add_parser(
        "train",
        help="train one network on OSCD (CPU)",
        description="Train a change network on real OSCD S2 (+ real S1), optionally with "
        "pairs from a synthetic archive added (--dataset oscd+synthetic --synthetic DIR). "
        "Validation is by city (--holdout); writes OUT/model.pt, OUT/last.pt and "
        "OUT/train_summary.json.",
    )
    data_args(t, ("oscd", "synthetic", "oscd+synthetic"))
    t.add_argument(
        "--synthetic",
        default=None,
        help="oscd+synthetic: synthetic archive folder (urban-monitor synthetic generate)",
    )
    t.add_argument(
        "--synthetic-pairs", type=int, default=6, help="scene pairs drawn from it (default 6)"
    )
    t.add_argument(
        "--synthetic-share",
        type=float,
        default=0.25,
        help="oscd+synthetic: share of training crops from synthetic pairs (default 0.25)",
    )
    t.add_argument("--arch", choices=["s2", "s1", "dual"], default="s2", help="network")
    t.add_argument("--epochs", type=int, default=25, help="epochs (default 25)")
    t.add_argument("--steps-per-epoch", type=int, default=20, help="batches per epoch (default 20)")
    t.add_argument("--batch-size", type=int, default=8, help="crops per batch (default 8)")
    t.add_argument("--seed", type=int, default=0, help="random seed")
    t.add_argument("--out", default="var/models/run", help="output folder")
    t.add_argument("--holdout", default=None, help="comma-separated cities never trained on")
    t.add_argument("--cities", default=None, help="comma-separated training cities (default all)")
    t.add_argument("--bands", choices=["6", "10"], default="6", help="S2 band set (default 6)")
    t.add_argument("--crop", type=int, default=96, help="crop size in px (default 96)")
    t.add_argument(
        "--jitter", type=float, default=0.0,
        help="radiometric jitter strength, per date (0 = off; recipe v2 uses 1)",
    )  # fmt: skip
    t.add_argument(
        "--ema-decay", type=float, default=0.0,
        help="EMA of the weights (0 = off; recipe v2 uses 0.99)",
    )  # fmt: skip
    t.add_argument("--init-s2", default=None, help="dual: S2 stream checkpoint to start from")
    t.add_argument("--init-s1", default=None, help="dual: S1 stream checkpoint to start from")
    t.set_defaults(func=_cmd_train)

    e = sub.add_parser(
        "export",
        help="export a checkpoint to ONNX + model card",
        description="Write NAME.onnx (opset 17, dynamic batch/H/W), NAME.card.json and NAME.card.md.",
    )
    e.add_argument("--checkpoint", required=True, help="model.pt written by train")
    e.add_argument("--out", default="models/artifacts/", help="output folder")
    e.add_argument("--name", default=None, help="artifact name (default change_<arch>)")
    e.add_argument(
        "--tta", type=int, choices=[1, 2, 4], default=1, help="test-time flips inside the graph"
    )
    e.add_argument(
        "--ensemble", default=None,
        help="comma-separated further model.pt whose logits are averaged in the graph",
    )  # fmt: skip
    e.add_argument("--calibration", default=None, help="Platt 'a,b' applied to the mean logit")
    e.set_defaults(func=_cmd_export)

    v = sub.add_parser(
        "evaluate",
        help="evaluate ONNX models and classical baselines on an OSCD-layout folder",
        description="Per-city and pooled precision/recall/F1/IoU of the change class for the "
        "S2, S1 and dual models (onnxruntime only) next to spectral-index, CVA and S1 log-ratio "
        "baselines. Cities the card lists as training cities are flagged and kept out of the "
        "pooled unseen figure.",
    )
    data_args(v)
    v.add_argument("--model", default=None, help="folder with *.onnx + cards (default: shipped)")
    v.add_argument("--cities", default=None, help="comma-separated cities (default all)")
    v.add_argument("--json", default=None, help="also write the figures to this JSON file")
    v.set_defaults(func=_cmd_evaluate)

    c = sub.add_parser(
        "crossval",
        help="leave-cities-out cross-validation from the fold models under var/",
        description="Pooled held-out figures over 5 folds of 2 cities (fold models in "
        "--folds-dir). With --train, trains and exports the fold models first (torch).",
    )
    data_args(c)
    c.add_argument("--folds-dir", default="var/models/folds", help="fold artifacts folder")
    c.add_argument(
        "--fold",
        default=None,
        help="comma-separated fold numbers (default all; 'none' for --final alone)",
    )
    c.add_argument("--train", action="store_true", help="train the fold models first")
    c.add_argument("--final", action="store_true", help="with --train: also train on all cities")
    c.add_argument(
        "--skip-existing",
        action="store_true",
        help="with --train: keep networks whose model.pt exists (resume an interrupted run)",
    )
    c.add_argument(
        "--archs", default="s2,s1,dual", help="with --train: networks to train (default all)"
    )
    c.add_argument(
        "--epochs",
        default=None,
        help="with --train: epochs per network, e.g. 's2=32' (default: models/folds.py)",
    )
    c.add_argument(
        "--train-only", action="store_true", help="with --train: stop after training (no report)"
    )
    c.add_argument(
        "--calibration-from", default=None,
        help="re-export the fold models with the Platt maps of the cards in this folder (e.g. "
        "models/artifacts: the scale the state's LLR mapping is fitted for), after any "
        "training; without --train it stops there",
    )  # fmt: skip
    c.add_argument("--seed", type=int, default=0, help="random seed")
    c.add_argument(
        "--recipe", choices=["v1", "v2"], default="v2",
        help="with --train: training recipe (models/folds.py RECIPES; default v2)",
    )  # fmt: skip
    c.add_argument("--bands", choices=["6", "10"], default="6", help="with --train: S2 band set")
    c.add_argument("--json", default=None, help="also write the figures to this JSON file")
    c.add_argument(
        "--ship",
        default=None,
        help="export the all-city models (FOLDS_DIR/all) to this folder (e.g. models/artifacts) "
        "with the leave-cities-out figures in their cards",
    )
    c.add_argument(
        "--ship-from", default="all", help="which models to ship: 'all' (default) or 'fold<k>'"
    )
    c.set_defaults(func=_cmd_crossval)

    lco = sub.add_parser(
        "lco",
        help="leave-cities-out table of one method folder (nested threshold + calibration)",
        description="Runs METHOD/fold<k>/ARTIFACT.onnx on fold k's held-out cities with the "
        "runtime code (--predict; maps stored in METHOD/heldout/), then reports pooled and "
        "per-city F1/P/R with the threshold and a Platt calibration fitted on the other folds "
        "only (models/lco.py). Writes METHOD/lco.json (with the shipping threshold/calibration).",
    )
    data_args(lco)
    lco.add_argument("--method", required=True, help="folder with fold0..fold4 exports")
    lco.add_argument("--artifact", default="change_s2", help="artifact name in each fold folder")
    lco.add_argument("--predict", action="store_true", help="(re)compute the held-out maps")
    lco.add_argument(
        "--s2-fallback", default=None,
        help="S1/dual: method folder whose S2 maps stand in for cities without S1",
    )  # fmt: skip
    lco.add_argument("--name", default=None, help="row name (default: the folder name)")
    lco.set_defaults(func=_cmd_lco)

    sh = sub.add_parser(
        "ship",
        help="export all-city models with the threshold/calibration of their LCO run",
        description="Exports each --model NAME=METHOD_DIR:CKPT[,CKPT...] as OUT/NAME.onnx + card: "
        "the all-city checkpoints (several = an ensemble averaged in the graph), with the "
        "shipping threshold and Platt calibration of METHOD_DIR/lco.json (models lco) and the "
        "leave-cities-out figures of every method and baseline (--summary JSON) in the card.",
    )
    sh.add_argument("--model", action="append", required=True, help="NAME=METHOD_DIR:CKPT[,...]")
    sh.add_argument("--out", default="models/artifacts", help="output folder")
    sh.add_argument("--tta", type=int, choices=[1, 2, 4], default=1, help="test-time flips")
    sh.add_argument("--summary", default=None, help="JSON {row: pooled counts} for the cards")
    sh.set_defaults(func=_cmd_ship)


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point: ``python -m models.cli models train ...``."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    parser = argparse.ArgumentParser(prog="urban-monitor")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
