"""``python -m devstack up | demo | upload PATH... | status``: the local stack of dicomflow."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from devstack.client import storage_client, upload_paths
from devstack.demo import describe, run_demo
from devstack.processes import StackError
from devstack.recovery import ENV_FILE
from devstack.stack import INCOMING_BUCKET, LocalStack, StackConfig
from devstack.timing import PROFILES
from dicomflow.cli.app import main as cli_main
from dicomflow.logs import CloudLoggingFormatter


def _stack_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gcs-port", type=int, default=4443, help="fake-gcs-server (default 4443)")
    parser.add_argument("--pubsub-port", type=int, default=8085, help="Pub/Sub emulator (default 8085)")
    parser.add_argument("--healthcare-port", type=int, default=8089, help="healthcare_emulator (default 8089)")
    parser.add_argument("--functions-port", type=int, default=8080, help="first of three function ports (8080)")
    parser.add_argument("--settle-seconds", type=float, default=5.0, help="SETTLE_SECONDS of the flush (5)")
    parser.add_argument("--flush-interval", type=float, default=5.0, help="seconds between flush ticks (5)")
    parser.add_argument("--data-dir", type=Path, help="persist buckets, store and logs here (default: temporary)")
    parser.add_argument(
        "--timing", choices=sorted(PROFILES), default="local",
        help="local: the stand-ins' own clocks (default); cloud: the cloud's operation durations, API and Cloud "
        "Storage latencies and the operations subscription's retry policy (devstack/timing.py, for benchmarks)",
    )  # fmt: skip
    parser.add_argument("--research", action="store_true", help="also copy every batch, de-identified, into the "
                        "research store (the `research` target; always on for demo)")  # fmt: skip


def _log_to_stderr() -> None:
    """The stack's own log lines (a process restarted, with its exit status or signal) as JSON on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(CloudLoggingFormatter("devstack"))
    logger = logging.getLogger("devstack")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def _serve(args: argparse.Namespace, demo: bool) -> int:
    _log_to_stderr()
    config = StackConfig(
        gcs_port=args.gcs_port, pubsub_port=args.pubsub_port, healthcare_port=args.healthcare_port,
        functions_port=args.functions_port, settle_seconds=args.settle_seconds, flush_interval=args.flush_interval,
        data_dir=args.data_dir, timing=args.timing, research=demo or args.research,
    )  # fmt: skip
    stack = LocalStack(config)
    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        endpoints = stack.start()
    except StackError as exc:
        print(f"devstack: {exc}", file=sys.stderr)
        return 1
    try:
        print(describe(endpoints))
        print("ready — press Ctrl-C to stop", flush=True)
        if demo and not run_demo(endpoints, research=True):
            return 1
        if demo:
            print("\nThe stack stays up: upload your own files with `python -m devstack upload PATH...`; Ctrl-C stops.")
        while not stopping.wait(0.5):
            if stack.failure is not None:  # the supervisor restarts what it can; this it could not
                print(f"devstack: {stack.failure}", file=sys.stderr, flush=True)
                return 1
    finally:
        stack.stop()
        print("stopped", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack", description="dicomflow's local stack")
    commands = parser.add_subparsers(dest="command", required=True)
    _stack_arguments(commands.add_parser("up", help="start the stack and keep it up until Ctrl-C"))
    _stack_arguments(commands.add_parser("demo", help="start the stack, run a realistic upload through it, stay up"))
    upload = commands.add_parser("upload", help="upload files or folders to the incoming bucket")
    upload.add_argument("paths", type=Path, nargs="+")
    upload.add_argument("--gcs-port", type=int, default=4443)
    upload.add_argument("--prefix", default="", help="object name prefix (e.g. 'uploads/')")
    for name, what in (
        ("status", "`dicomflow status` against the stack"),
        ("requeue", "`dicomflow requeue` of the stack's dicom-failed-sub (after fixing the files)"),
    ):
        command = commands.add_parser(name, help=what)
        command.add_argument("--data-dir", type=Path, required=True, help="the stack's --data-dir (printed by up)")
    args, options = parser.parse_known_args(argv)  # status / requeue pass the rest on to the dicomflow command
    if options and args.command not in ("status", "requeue"):
        parser.error(f"unrecognized arguments: {' '.join(options)}")

    if args.command in ("up", "demo"):
        return _serve(args, demo=args.command == "demo")
    if args.command == "upload":
        missing = [str(p) for p in args.paths if not p.exists()]
        if missing:
            print(f"devstack: no such file or folder: {', '.join(missing)}", file=sys.stderr)
            return 2
        names = upload_paths(
            storage_client(f"http://127.0.0.1:{args.gcs_port}"), INCOMING_BUCKET, args.paths, args.prefix
        )
        print(f"uploaded {len(names)} objects to gs://{INCOMING_BUCKET}/")
        return 0
    env_file = args.data_dir / ENV_FILE
    if not env_file.exists():
        print(f"devstack: {env_file} does not exist: give the --data-dir of a running stack", file=sys.stderr)
        return 2
    extra = ["--subscription", "dicom-failed-sub"] if args.command == "requeue" else []
    return cli_main(["--env-file", str(env_file), args.command, *extra, *options])


if __name__ == "__main__":
    sys.exit(main())
