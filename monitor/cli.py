"""`urban-monitor`: the one command-line tool.

Each area adds its subcommands through a ``register(subparsers)`` function in its own
module, listed in ``_COMMAND_MODULES``; the modules import heavy libraries (torch,
rasterio, onnxruntime) only inside their handlers so that ``--help`` stays fast. The
outer layers add theirs through ``extra_commands``: the installed ``urban-monitor``
command is ``services.cli.main``, which adds ``serve`` and the tools of a source checkout
(this package never imports ``services`` or ``tools``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from monitor.errors import UrbanMonitorError
from monitor.settings import DEFAULT_CONFIG, load_settings

# Modules that contribute subcommands (each has register(subparsers)).
_COMMAND_MODULES = (
    "monitor.synthetic.cli",
    "monitor.pipeline.discovery_cli",
    "monitor.pipeline.demo_cli",
    "monitor.pipeline.run_cli",
    "monitor.streams.cli",
    "monitor.capacity_cli",
    "monitor.pipeline.products_cli",
    "monitor.pipeline.coverage_cli",
    "models.cli",
)
Register = Callable[[argparse._SubParsersAction], None]

DESCRIPTION = """\
Urban Monitor watches cities change from space: it discovers new Sentinel-1 and
Sentinel-2 scenes over each configured city (STAC APIs), turns each into change evidence
with deep-learning models, keeps a per-city change state, and raises alerts.

Start with `urban-monitor demo` (a synthetic city, the whole pipeline, a report).
Settings come from config/default.yaml (or --config FILE) and URBAN_MONITOR_* variables.
"""


def configure_logging(level: str) -> None:
    from monitor.redact import install_log_redaction

    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S",
    )
    install_log_redaction()  # no password, key or token in any log line


def _cmd_config_check(args: argparse.Namespace) -> int:
    from monitor.redact import redact_config

    settings = load_settings(args.file)
    # Secrets masked: API keys and subscription keys (SecretStr), URL passwords (userinfo
    # or query), any value under a secret-named key (e.g. demo: {token: ...}).
    dumped = redact_config(settings.model_dump(mode="json"))
    if args.format == "json":
        print(json.dumps(dumped, indent=2))
    else:
        import yaml

        print(yaml.safe_dump(dumped, sort_keys=False), end="")
    print(f"# OK: {args.file} is valid: {len(settings.cities)} cities, "
          f"{len(settings.sources)} sources, bus={settings.bus.kind}", file=sys.stderr)
    return 0


def _cmd_events_schemas(args: argparse.Namespace) -> int:
    from monitor.domain.events import json_schemas

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, schema in json_schemas().items():
        (out / f"{name}.json").write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
        print(out / f"{name}.json")
    return 0


def _cmd_events_validate(args: argparse.Namespace) -> int:
    from monitor.domain.events import parse_event

    event = parse_event(Path(args.file).read_bytes())
    print(f"OK: {event.type} id={event.id} subject={event.subject}")
    return 0


def _cmd_db_init(args: argparse.Namespace) -> int:
    from monitor.adapters.database import Database

    settings = load_settings(args.config)
    db = Database(settings.database.url)
    version = db.init_schema()
    print(f"database {db.safe_url}: schema version {version}")
    return 0


def build_parser(extra_commands: Sequence[Register] = ()) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="urban-monitor", description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(DEFAULT_CONFIG),
                        help="settings file (YAML); default: %(default)s")
    parser.add_argument("--log-level", default=None,
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="override the configured log level")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    config = sub.add_parser("config", help="check and show configuration files")
    config_sub = config.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    check = config_sub.add_parser(
        "check", help="validate a settings file and print the resolved configuration",
        description="Validate FILE (YAML, with its cities file and URBAN_MONITOR_* overrides) "
                    "and print the resolved configuration, or a clear error naming the file, "
                    "the key and what to do. Exit code 0 when valid, 2 when not.")
    check.add_argument("file", help="settings file, e.g. config/default.yaml")
    check.add_argument("--format", choices=["yaml", "json"], default="yaml")
    check.set_defaults(func=_cmd_config_check)

    events = sub.add_parser("events", help="event contracts (CloudEvents 1.0 JSON Schemas)")
    events_sub = events.add_subparsers(dest="events_command", metavar="ACTION", required=True)
    schemas = events_sub.add_parser("schemas", help="write the JSON Schema of every event type")
    schemas.add_argument("--out", default="monitor/schemas", help="folder (default: %(default)s)")
    schemas.set_defaults(func=_cmd_events_schemas)
    validate = events_sub.add_parser("validate", help="validate one event JSON file")
    validate.add_argument("file")
    validate.set_defaults(func=_cmd_events_validate)

    db = sub.add_parser("db", help="database maintenance")
    db_sub = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    init = db_sub.add_parser("init", help="create or upgrade the schema (versioned create-all)")
    init.set_defaults(func=_cmd_db_init)

    for module_name in _COMMAND_MODULES:
        importlib.import_module(module_name).register(sub)
    for register in extra_commands:
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None, *,
         extra_commands: Sequence[Register] = ()) -> int:
    parser = build_parser(extra_commands)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    level = args.log_level or "INFO"
    configure_logging(level)
    from monitor.redact import redact_text

    try:
        return int(args.func(args) or 0)
    except UrbanMonitorError as exc:
        print(f"error: {redact_text(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - no raw traceback (and no secret) on the console
        logging.getLogger("urban_monitor").debug("unexpected error", exc_info=True)
        print(f"error: unexpected {type(exc).__name__}: {redact_text(str(exc))[:500]} "
              "(run with --log-level DEBUG for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
