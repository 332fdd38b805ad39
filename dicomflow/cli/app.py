"""``dicomflow``: operate a deployed pipeline (or the local stack) from a terminal or a script.

Every subcommand reads the same settings as the functions (environment, or ``--env-file``), prints a human
table by default and JSON with ``--json``, and shows progress on stderr for long work. Exit status: 0 done,
1 the check found a problem (``verify``), 2 an error the message explains.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from dicomflow.cli import backfill, plan, requeue, rewatch, status, verify
from dicomflow.cli.context import Context, load
from dicomflow.errors import ConfigurationError, DicomflowError, PermissionDeniedError
from dicomflow.logs import ObjectNames, OperatorFormatter

Command = Callable[[Context, argparse.Namespace], int]


def _log_to_stderr(verbose: bool, names: ObjectNames | None = None) -> None:
    """Output is for the operator: the pipeline's log lines go to stderr, warnings only unless verbose; object
    names in them as the settings say (LOG_OBJECT_NAMES: the backfill job runs with the functions' policy)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OperatorFormatter(names))
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(logging.INFO if verbose else logging.WARNING)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dicomflow", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--env-file", type=Path, help="KEY=VALUE settings read over the environment")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the pipeline code does (stderr)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (status, backfill, verify, plan, requeue, rewatch):
        sub = commands.add_parser(module.NAME, help=module.HELP, description=module.__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
        sub.add_argument("--json", action="store_true", help="print JSON instead of tables")
        module.arguments(sub)
        sub.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _log_to_stderr(args.verbose)
    run: Command = args.run
    names = ObjectNames()
    try:
        ctx = load(args.env_file)
        names = ObjectNames.policy(ctx.settings.log_object_names, ctx.settings.log_hash_key)
        _log_to_stderr(args.verbose, names)
        return run(ctx, args)
    except KeyboardInterrupt:
        print("\ninterrupted: nothing half-done is left (see the command's help for how to resume)", file=sys.stderr)
        return 130
    except ConfigurationError as exc:
        print(f"dicomflow: {exc}\nSet the variables (or pass --env-file; `devstack up` prints them).", file=sys.stderr)
        return 2
    except PermissionDeniedError as exc:
        print(f"dicomflow: permission denied: {names.scrub(str(exc))}", file=sys.stderr)  # may name a file
        return 2
    except DicomflowError as exc:
        print(f"dicomflow: {names.scrub(str(exc))}", file=sys.stderr)
        return 2
