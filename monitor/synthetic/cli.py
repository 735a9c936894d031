"""`urban-monitor synthetic generate|serve`: make a synthetic city archive and serve it.

Heavy imports (rasterio, the generator) happen inside the handlers so `--help` is fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import date
from typing import Any


def _cmd_generate(args: argparse.Namespace) -> int:
    from monitor.synthetic.archive import generate_archive
    from monitor.synthetic.params import ArchiveParams

    defaults = ArchiveParams()
    params = ArchiveParams(
        name=args.name or defaults.name,
        lon=args.lon if args.lon is not None else defaults.lon,
        lat=args.lat if args.lat is not None else defaults.lat,
        size_km=args.size_km, seed=args.seed,
        start=date.fromisoformat(args.start) if args.start else defaults.start,
        end=date.fromisoformat(args.end) if args.end else defaults.end,
        boa_offset=args.boa_offset, n_sites=args.sites,
    )
    archive = generate_archive(args.out, params, workers=args.workers,
                               progress=not args.no_progress)
    m = archive.manifest
    summary: dict[str, Any] = {
        "archive": str(archive.root), "param_hash": archive.param_hash,
        "grid": m["grid"], "counts": m["counts"],
        "generation_seconds": m["generation_seconds"],
        "collections": {k: str(v) for k, v in archive.collection_paths.items()},
    }
    print(json.dumps(summary, indent=2))
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from monitor.adapters.stac_server import StacServer, serve_forever
    from monitor.synthetic.archive import load_archive

    archive = load_archive(args.archive)
    server = StacServer(list(archive.collection_paths.values()),
                        list(archive.item_collection_paths.values()),
                        host=args.host, port=args.port)
    serve_forever(server)
    return 0


def register(subparsers: Any) -> None:
    """Add the `synthetic` command group to the main CLI."""
    syn = subparsers.add_parser(
        "synthetic", help="generate and serve a synthetic city archive (S1 + S2 + truth)",
        description=("A physically plausible synthetic city: Sentinel-2 L2A and Sentinel-1 "
                     "RTC COGs with STAC items, construction sites with known dates, "
                     "confusers (harvests, seasons, water levels, clouds), and the truth."))
    sub = syn.add_subparsers(dest="synthetic_command")
    gen = sub.add_parser("generate", help="generate (or reuse) an archive in a folder")
    gen.add_argument("--out", required=True, help="archive folder (reused if parameters match)")
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--size-km", type=float, default=5.0, help="side of the square city")
    gen.add_argument("--start", help="first day, YYYY-MM-DD (default 2019-01-01)")
    gen.add_argument("--end", help="last day, YYYY-MM-DD (default 2021-12-31)")
    gen.add_argument("--lon", type=float, help="centre longitude (default Lagos 3.3792)")
    gen.add_argument("--lat", type=float, help="centre latitude (default Lagos 6.5244)")
    gen.add_argument("--name", help="city name (default lagos)")
    gen.add_argument("--sites", type=int, help="number of construction sites (default 1.6/km2)")
    gen.add_argument("--boa-offset", action=argparse.BooleanOptionalAction, default=True,
                     help="apply the +1000 BOA offset from 2022-01-25 like the real archive")
    gen.add_argument("--workers", type=int, help="processes (default up to 2)")
    gen.add_argument("--no-progress", action="store_true", help="no progress bar")
    gen.set_defaults(func=_cmd_generate)
    srv = sub.add_parser("serve", help="serve an archive as a STAC API (rustac) until Ctrl-C")
    srv.add_argument("--archive", required=True, help="folder made by `synthetic generate`")
    srv.add_argument("--host", default="127.0.0.1")
    srv.add_argument("--port", type=int, help="port (default: a free one)")
    srv.set_defaults(func=_cmd_serve)
    syn.set_defaults(func=lambda _args: (syn.print_help(), 0)[1])


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry point: `python -m monitor.synthetic.cli generate --out DIR`."""
    import logging

    from monitor.errors import UrbanMonitorError

    parser = argparse.ArgumentParser(prog="python -m monitor.synthetic.cli")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["synthetic", *(argv if argv is not None else sys.argv[1:])])
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except UrbanMonitorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
