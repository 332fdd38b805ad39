"""`make run`: a realistic upload through the whole local pipeline, with live progress and a summary."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from io import BytesIO

import pydicom

from devstack.client import operations, read_journal, storage_client, stored_instances
from devstack.research import research_copy
from devstack.stack import EXPORT_BUCKET, INCOMING_BUCKET, RESEARCH_STORE_NAME, STATE_BUCKET, StackEndpoints
from devstack.synthetic import generate_dataset, make_instance, new_uid
from dicomflow.adapters.storage import GcsObjectStore
from dicomflow.config.settings import Settings
from dicomflow.ledger.store import BatchLedger


@dataclass(frozen=True)
class DemoUpload:
    names: list[str]
    valid_sops: set[str]
    bad_names: list[str]


def synthesize_upload(endpoints: StackEndpoints, prefix: str = "demo/") -> DemoUpload:
    """Several studies x series x instances in nested folders, a multi-frame and an RLE-compressed instance,
    a non-DICOM .dcm, a name with wildcard characters, and a duplicate upload."""
    instances = generate_dataset(3, 2, 4, seed=2026, multiframe_every=7, compressed_every=5)
    bucket = storage_client(endpoints.storage_host).bucket(INCOMING_BUCKET)
    names: list[str] = []
    for instance in instances:
        name = f"{prefix}{instance.relative_path}"
        bucket.blob(name).upload_from_string(instance.data, content_type="application/dicom")
        names.append(name)
    rng = random.Random(7)
    odd = make_instance(study_uid=new_uid(rng), series_uid=new_uid(rng), sop_uid=new_uid(rng), seed=7)
    odd_name = f"{prefix}odd/scan[1].dcm"
    bad_name = f"{prefix}notes/readme.dcm"
    bucket.blob(odd_name).upload_from_string(odd, content_type="application/dicom")
    bucket.blob(bad_name).upload_from_string(b"This folder holds the demo upload.\n", content_type="text/plain")
    bucket.blob(names[0]).upload_from_string(instances[0].data, content_type="application/dicom")  # duplicate
    odd_sop = str(pydicom.dcmread(BytesIO(odd), stop_before_pixels=True).SOPInstanceUID)
    return DemoUpload([*names, odd_name, bad_name, names[0]], {i.sop_uid for i in instances} | {odd_sop}, [bad_name])


def progress(endpoints: StackEndpoints, upload: DemoUpload, research: bool = False) -> dict[str, int]:
    client = storage_client(endpoints.storage_host)
    dataset = endpoints.store_name.split("/dicomStores/")[0]
    ops = operations(endpoints.healthcare_url, dataset)
    imports = [o for o in ops if o["metadata"]["apiMethodName"].endswith("ImportDicomData")]
    ledger = BatchLedger(GcsObjectStore(client), STATE_BUCKET, Settings.state_prefix, now=lambda: datetime.now(UTC))
    return {
        "uploaded": len(upload.names),
        "batches": len(ledger.list_batches()),
        "importing": sum(1 for o in imports if not o.get("done")),
        "imports": len(imports),
        "imported": stored_instances(endpoints.healthcare_url, endpoints.store_name),
        "exported": sum(1 for _ in client.list_blobs(EXPORT_BUCKET, prefix="dicom/")),
        **({"research": stored_instances(endpoints.healthcare_url, RESEARCH_STORE_NAME)} if research else {}),
        "failed": len(read_journal(endpoints.journal("failed"))),
        "results": len(read_journal(endpoints.journal("results"))),
    }


def run_demo(
    endpoints: StackEndpoints, timeout: float = 300.0, say: Callable[[str], None] = print, research: bool = False
) -> bool:
    """Upload, follow progress until every valid instance is imported and exported (and, with ``research``,
    de-identified into the research store), print a summary."""
    upload = synthesize_upload(endpoints)
    say(f"uploaded {len(upload.names)} objects to gs://{INCOMING_BUCKET}/demo/: {len(upload.valid_sops)} valid "
        "instances, 1 non-DICOM .dcm, 1 name with wildcard characters, 1 duplicate upload")  # fmt: skip
    deadline = time.monotonic() + timeout
    state: dict[str, int] = {}
    while time.monotonic() < deadline:
        state = progress(endpoints, upload, research)
        say("  " + "  ".join(f"{k}={v}" for k, v in state.items()))
        done = (
            state["imported"] >= len(upload.valid_sops)
            and state["exported"] >= len(upload.valid_sops)
            and state["failed"] >= len(upload.bad_names)
            and state["importing"] == 0
            and state.get("research", len(upload.valid_sops)) >= len(upload.valid_sops)
            and state["results"] >= state["batches"] > 0  # every batch's result out (after its exports, de-id)
        )
        if done:
            break
        time.sleep(2)
    else:
        say(
            f"the demo did not finish in time; see `.venv/bin/dicomflow --env-file {endpoints.data_dir}/dicomflow.env "
            "status` and the logs"
        )
        return False
    say("")
    say(f"Summary: {state['imported']} instances imported from {len(upload.names)} uploads "
        f"with {state['imports']} import operation(s) in {state['batches']} batch(es)")  # fmt: skip
    for failure in read_journal(endpoints.journal("failed")):
        say(f"  failed: {failure.get('name')} ({failure.get('stage')}): {failure.get('reason')}")
    say(f"  exports: gs://{EXPORT_BUCKET}/dicom/STUDY/SERIES/INSTANCE.dcm ({state['exported']} objects)")
    if research:
        _say_research(endpoints, say)
    say(f"  results: {state['results']} batch summaries on dicom-results (journal: {endpoints.journal('results')})")
    say(f"\nNext, see the batches, what is in flight and the failures by reason:\n"
        f"  .venv/bin/dicomflow --env-file {endpoints.data_dir}/dicomflow.env status")  # fmt: skip
    return True


def _say_research(endpoints: StackEndpoints, say: Callable[[str], None]) -> None:
    copy = research_copy(endpoints.healthcare_url, endpoints.store_name, RESEARCH_STORE_NAME)
    say(f"  research copy (de-identified, ATTRIBUTE_CONFIDENTIALITY_BASIC_PROFILE): {copy.instances} instances in "
        f"{copy.studies} studies (the source has {copy.source_studies}) in {RESEARCH_STORE_NAME}")  # fmt: skip
    say(f"    patient names left {copy.with_patient_name}, source names or IDs left {copy.identifying_values_left}, "
        f"original UIDs left {copy.original_uids_left}" + ("" if copy.clean else "  <- NOT clean"))  # fmt: skip
    for result in read_journal(endpoints.journal("results")):
        for target in result.get("exports", []):
            if target.get("target") == "research":
                say(f"    batch {result.get('batch_id')}: research {target.get('outcome')} "
                    f"(success {target.get('success')}, failure {target.get('failure')})")  # fmt: skip


def describe(endpoints: StackEndpoints) -> str:
    env = "\n".join(f"  export {key}={value}" for key, value in endpoints.environment().items())
    functions = "\n".join(f"  {name}: {url}" for name, url in endpoints.functions.items())
    return f"""
Local stack
  Cloud Storage (fake-gcs-server):  {endpoints.storage_host}
      buckets: {INCOMING_BUCKET}, {EXPORT_BUCKET}, {STATE_BUCKET}
  Pub/Sub emulator:                 {endpoints.pubsub_host}
  Cloud Healthcare API (emulator):  {endpoints.healthcare_url}
  DICOM store:                      {endpoints.store_name}
{functions}
  data directory: {endpoints.data_dir}  (logs/ holds every process's log)

Environment for clients (gcloud, google-cloud-*, dicomweb-client):
{env}

Try your own files:   .venv/bin/python -m devstack upload PATH... [--gcs-port N]
Operate it:           .venv/bin/dicomflow --env-file {endpoints.data_dir}/dicomflow.env status
                      (backfill, verify, plan, requeue: see .venv/bin/dicomflow --help)
Query the store:      curl -s '{endpoints.healthcare_url}/v1/{endpoints.store_name}/dicomWeb/studies'
The research store:   curl -s '{endpoints.healthcare_url}/v1/{RESEARCH_STORE_NAME}/dicomWeb/studies'
"""
