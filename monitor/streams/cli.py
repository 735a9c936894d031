"""`urban-monitor evaluate streams`: the real-imagery stream benchmark.

    urban-monitor evaluate streams --data ../shared/data/oscd --s1 ../shared/data/oscd-s1
    urban-monitor evaluate streams --data DIR --city paris --city pisa --models var/models/folds
    urban-monitor evaluate streams --data DIR --build-only          # just build the streams

Any folder in the OSCD layout works (one sub-folder per city with imgs_1/, imgs_2/,
dates.txt and cm/<city>-cm.tif), so labelled cities nobody here has seen can be scored the
same way.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

log = logging.getLogger(__name__)


def _params(text: str | None) -> dict[str, float] | None:
    if not text:
        return None
    path = Path(text)
    raw = path.read_text() if path.is_file() else text
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(
            f"--state-params: {text!r} is neither a JSON object nor a JSON file ({exc})") from None
    if not isinstance(data, dict):
        raise argparse.ArgumentTypeError("--state-params must be a JSON object")
    return data


def _cmd_streams(args: argparse.Namespace) -> int:
    from monitor.settings import load_settings
    from monitor.streams.archive import build_stream
    from monitor.streams.benchmark import choose_models, format_table, pooled, run_city
    from monitor.streams.oscd import oscd_cities
    from monitor.streams.simulate import StreamParams

    settings = load_settings(args.config)
    cities = args.city or oscd_cities(args.data)
    unknown = sorted(set(cities) - set(oscd_cities(args.data)))
    if unknown:
        from monitor.errors import StreamError

        raise StreamError(f"city {', '.join(unknown)} is not in {args.data}",
                          f"choose from: {', '.join(oscd_cities(args.data))}")
    stream_params = StreamParams(seed=args.seed)
    results = []
    started = time.perf_counter()
    for city in cities:
        archive = build_stream(args.data, city, args.out, s1_root=args.s1, params=stream_params,
                               progress=not args.no_progress)
        if args.build_only:
            print(f"{city}: {archive.root} ({archive.manifest['counts']})")
            continue
        models = choose_models(city, args.models, settings)
        log.info("stream %s: models %s%s", city, models.folder,
                 " (seen in training)" if models.seen_in_training else "")
        result = run_city(archive, settings, Path(args.runs) / city, models,
                          state_params=_params(args.state_params), progress=not args.no_progress)
        results.append(result)
        f = result.score.figures()
        print(f"{city}: object F1 {f['object_f1']}, pixel F1 {f['pixel_f1']}, time-of-change "
              f"error {f['time_error_median_days']} d, {result.seconds:.0f} s", flush=True)
    if args.build_only:
        return 0
    table = format_table(results)
    print()
    print(table)
    report = {"cities": [r.to_dict() for r in results],
              "pooled_leave_cities_out": pooled(results).to_dict(),
              "pooled_all": pooled(results, unseen_only=False).to_dict(),
              "stream_params": stream_params.to_dict(),
              "seconds": round(time.perf_counter() - started, 1), "table": table}
    out = Path(args.json or Path(args.runs) / "streams-benchmark.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, default=str))
    print(f"\nreport: {out}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    evaluate = subparsers.add_parser(
        "evaluate", help="benchmarks of the whole system against ground truth")
    sub = evaluate.add_subparsers(dest="evaluate_command", metavar="BENCHMARK", required=True)
    streams = sub.add_parser(
        "streams", help="labelled real cities as STAC-served scene streams, through the "
                        "whole pipeline; confirmed alerts scored against the truth",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    streams.add_argument("--data", required=True, type=Path,
                         help="OSCD-layout folder (e.g. ../shared/data/oscd)")
    streams.add_argument("--s1", type=Path, default=None,
                         help="the matching Sentinel-1 folder (e.g. ../shared/data/oscd-s1)")
    streams.add_argument("--city", action="append", help="city (repeatable; default: all)")
    streams.add_argument("--models", type=Path, default=None,
                         help="folder of model sets (sub-folders with change_s2.onnx + cards): "
                              "each city runs with a set that never trained on it")
    streams.add_argument("--out", type=Path, default=Path("var/streams"),
                         help="where the streams are built (cached; default var/streams)")
    streams.add_argument("--runs", type=Path, default=Path("var/streams-runs"),
                         help="where each city's run keeps its database and state")
    streams.add_argument("--json", type=Path, default=None,
                         help="report file (default <runs>/streams-benchmark.json)")
    streams.add_argument("--state-params", default=None,
                         help="change-state parameter overrides: a JSON object or file")
    streams.add_argument("--seed", type=int, default=0, help="stream generator seed")
    streams.add_argument("--build-only", action="store_true", help="only build the streams")
    streams.add_argument("--no-progress", action="store_true", help="no progress bars")
    streams.set_defaults(func=_cmd_streams)
