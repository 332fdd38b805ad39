"""``python -m devstack up``: start the local stack, print how to reach it, run until Ctrl-C."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from devstack.processes import StackError
from devstack.stack import INCOMING_BUCKET, LocalStack, StackConfig, StackEndpoints


def _describe(endpoints: StackEndpoints) -> str:
    env = "\n".join(f"  export {key}={value}" for key, value in endpoints.environment().items())
    store = endpoints.store_name
    return f"""
Local stack
  Cloud Storage (fake-gcs-server): {endpoints.storage_host}
    buckets: dicom-incoming (sample/ holds sample files), dicom-exports
  Cloud Healthcare API (healthcare_emulator): {endpoints.healthcare_url}
  DICOM store: {store}
  data directory: {endpoints.data_dir}  (logs in logs/)

Environment for clients (gcloud, google-cloud-storage, dicomweb-client):
{env}

Try:
  gcloud healthcare dicom-stores import gcs local-store --dataset=local-dataset --location=us-central1 \\
      --gcs-uri='gs://{INCOMING_BUCKET}/sample/**.dcm'
  curl -s '{endpoints.healthcare_url}/v1/{store}/dicomWeb/studies'
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="devstack", description="dicomflow's local stack")
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start fake-gcs-server and healthcare_emulator with a sample store")
    up.add_argument("--gcs-port", type=int, default=4443)
    up.add_argument("--healthcare-port", type=int, default=8089)
    up.add_argument("--data-dir", type=Path, help="persist state here across runs (default: temporary)")
    args = parser.parse_args(argv)

    stack = LocalStack(StackConfig(args.gcs_port, args.healthcare_port, args.data_dir))
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
        print(_describe(endpoints))
        print("ready — press Ctrl-C to stop", flush=True)
        while not stopping.wait(0.5):
            for process in stack.processes:
                if not process.alive():
                    print(
                        f"devstack: {process.name} exited unexpectedly:\n{process.log_tail()}",
                        file=sys.stderr,
                    )
                    return 1
    finally:
        stack.stop()
        print("stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
