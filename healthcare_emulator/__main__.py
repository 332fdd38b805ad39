"""``python -m healthcare_emulator --host 127.0.0.1 --port 8089 --data-dir DIR``."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import tempfile
from pathlib import Path
from types import FrameType

from healthcare_emulator.allocator import Trimmer, limit_arenas
from healthcare_emulator.errors import ApiError
from healthcare_emulator.faults import FaultInjector
from healthcare_emulator.gcs import GcsClient
from healthcare_emulator.server import EmulatorServer
from healthcare_emulator.timing import TimingProfile


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"severity": record.levelname, "message": record.getMessage(), "logger": record.name}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


_ENVIRONMENT = """environment:
  STORAGE_EMULATOR_HOST  fake-gcs-server for import/export (e.g. http://127.0.0.1:4443); unset, real Cloud
                         Storage with Application Default Credentials; with neither, import/export answer
                         400 FAILED_PRECONDITION saying so, and everything else works
  PUBSUB_EMULATOR_HOST   the Pub/Sub emulator that store notifications are published to (e.g. 127.0.0.1:8085);
                         unset, notifications are not sent (never to real Pub/Sub)
  HEALTHCARE_EMULATOR_DEBUG_MEMORY=1  serve /emulator/memory: RSS, tracemalloc figures and snapshots,
                         malloc_trim (see debug_memory.py); for bench.emulator_rss, never in production
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="healthcare_emulator",
        description="Local Cloud Healthcare API (DICOM stores, DICOMweb, operations), served at /v1, /v1beta1 "
        "and /v1alpha2 without credentials.",
        epilog=_ENVIRONMENT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8089, help="port to serve on (default 8089; 0 = any free port)")
    parser.add_argument(
        "--data-dir", type=Path, help="where datasets, stores and instances persist (default: temporary)"
    )
    parser.add_argument("--log-level", default="INFO", help="DEBUG logs every request")
    parser.add_argument("--faults", type=Path, help="JSON list of fault rules installed at start (see faults.py)")
    parser.add_argument("--fault-seed", type=int, help="seed of the fault rates (reproducible chaos)")
    parser.add_argument(
        "--timing", type=Path, help="JSON timing profile: operation durations, request latencies (see timing.py)"
    )
    parser.add_argument(
        "--malloc-arena-max",
        type=int,
        default=1,
        help="glibc malloc arenas at most (default 1; 0 = glibc's default, 8 per core; see allocator.py)",
    )
    parser.add_argument(
        "--malloc-trim-seconds",
        type=float,
        default=30.0,
        help="seconds between handing freed C heap memory back to the system (glibc malloc_trim; 0 = never)",
    )
    parser.add_argument(
        "--no-fuzzy-matching",
        action="store_true",
        help="QIDO-RS ignores fuzzymatching=true: literal matching and a 'Warning: 299' header (PS3.18 8.3.4.2)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    limit_arenas(args.malloc_arena_max)  # before any other thread allocates

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter())
    logging.basicConfig(level=args.log_level.upper(), handlers=[handler])
    logging.getLogger("werkzeug").setLevel(logging.WARNING)

    temporary = None
    data_dir = args.data_dir
    if data_dir is None:
        temporary = tempfile.TemporaryDirectory(prefix="healthcare-emulator-")
        data_dir = Path(temporary.name)
    gcs = GcsClient.for_endpoint(os.environ.get("STORAGE_EMULATOR_HOST"))
    faults = FaultInjector(args.fault_seed)
    if args.faults:
        try:
            for rule in json.loads(args.faults.read_text()):
                faults.add(rule)
        except (OSError, ValueError, ApiError) as exc:
            print(f"healthcare_emulator: cannot load --faults {args.faults}: {exc}", file=sys.stderr)
            return 2
    timing = None
    if args.timing:
        try:
            timing = TimingProfile.from_json(json.loads(args.timing.read_text()))
        except (OSError, ValueError, ApiError) as exc:
            print(f"healthcare_emulator: cannot load --timing {args.timing}: {exc}", file=sys.stderr)
            return 2
    try:
        server = EmulatorServer(
            data_dir,
            gcs,
            args.host,
            args.port,
            faults,
            fuzzy_matching=not args.no_fuzzy_matching,
            pubsub_emulator_host=os.environ.get("PUBSUB_EMULATOR_HOST"),
            timing=timing,
        )
    except OSError as exc:
        print(f"healthcare_emulator: cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 1

    server.emulator.debug_memory = os.environ.get("HEALTHCARE_EMULATOR_DEBUG_MEMORY") == "1"

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    trimmer = Trimmer(args.malloc_trim_seconds).start()
    print(
        json.dumps(
            {
                "severity": "INFO",
                "message": f"healthcare_emulator serving on {server.url}",
                "dataDir": str(data_dir),
                "storage": os.environ.get("STORAGE_EMULATOR_HOST") or "Cloud Storage (needs credentials)",
                "pubsub": os.environ.get("PUBSUB_EMULATOR_HOST") or "not set (notifications are not sent)",
            }
        ),
        file=sys.stderr,
        flush=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        trimmer.stop()
        server.emulator.close()
        if temporary is not None:
            temporary.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
