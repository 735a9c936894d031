"""``urban-monitor export stac`` and ``urban-monitor products publish``: the change layers
(COGs + STAC items) of the city states, on demand."""

from __future__ import annotations

import argparse
import json

from monitor.errors import UrbanMonitorError
from monitor.settings import load_settings


def _cmd_export_stac(args: argparse.Namespace) -> int:
    from monitor.adapters.model_cards import ModelCards
    from monitor.adapters.state_store import StateStore
    from monitor.pipeline.products import export_static_catalog
    from monitor.pipeline.runtime import layer_store

    settings = load_settings(args.config)
    layers = layer_store(settings)
    state = None
    if not layers.versions(args.city):
        state = StateStore(settings.state.url).load(args.city)
    path = export_static_catalog(layers, args.city, args.out, state=state,
                                 cards=None if args.no_models else ModelCards())
    print(f"static STAC catalog of {args.city}: {path} "
          f"({len(layers.versions(args.city))} layer item(s))")
    return 0


def _cmd_products_publish(args: argparse.Namespace) -> int:
    from monitor.adapters.state_store import StateStore
    from monitor.pipeline.runtime import layer_publisher

    settings = load_settings(args.config)
    states = StateStore(settings.state.url)
    state = (states.load(args.city) if args.version is None
             else states.load_version(args.city, args.version))
    if state is None:
        raise UrbanMonitorError(f"city {args.city} has no saved state in {settings.state.url}",
                                "process scenes of the city first")
    item = layer_publisher(settings).publish(args.city, state)
    print(json.dumps({"item": item["id"], "assets": sorted(item["assets"])}))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    export = subparsers.add_parser("export", help="export results as standard products")
    export_sub = export.add_subparsers(dest="export_command", metavar="FORMAT", required=True)
    stac = export_sub.add_parser(
        "stac", help="a city's change layers (COGs) and the model cards as a static STAC "
                     "catalog",
        description="Write the published change layers of a city (every kept state version) "
                    "and the change models as STAC MLM items as a self-contained static STAC "
                    "catalog: DIR/catalog.json, DIR/change-layers/<item>/<layer>.tif, "
                    "DIR/change-models/<item>/. A city with no published layers gets its "
                    "latest state's layers first.")
    stac.add_argument("--city", required=True, help="city id")
    stac.add_argument("--out", required=True, help="output folder")
    stac.add_argument("--no-models", action="store_true", help="leave the model items out")
    stac.set_defaults(func=_cmd_export_stac)

    products = subparsers.add_parser("products", help="change layers (COGs + STAC items)")
    products_sub = products.add_subparsers(dest="products_command", metavar="ACTION",
                                           required=True)
    publish = products_sub.add_parser(
        "publish", help="write the change layers of a city's state now (on demand)",
        description="Write the COG change layers and STAC item of the city's latest state "
                    "version (or --version N of the kept ones) to products.url.")
    publish.add_argument("--city", required=True)
    publish.add_argument("--version", type=int, default=None)
    publish.set_defaults(func=_cmd_products_publish)
