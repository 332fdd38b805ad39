"""ROUTES: parsing with errors that name the route, longest prefix wins, one batch per route and store."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dicomflow.config.routes import parse_routes
from dicomflow.config.settings import Settings
from dicomflow.errors import ConfigurationError
from dicomflow.messages.records import PendingRecord
from dicomflow.stages.flush import run_flush
from tests.fakes.services import FakeHealthcare, FakePublisher, FakeStore, FakeSubscriber

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
STORE_B = "projects/p/locations/l/datasets/research/dicomStores/b"
REQUIRED = {"PROJECT_ID": "proj", "LOCATION": "us-central1", "DATASET": "d", "DICOM_STORE": "s",
            "SOURCE_BUCKETS": "src", "STATE_BUCKET": "state"}  # fmt: skip
ROUTES = [
    {"name": "site-b", "prefix": "gs://src/site-b/", "store": STORE_B,
     "export_targets": [{"name": "png", "gcs": "gs://exports/site-b", "mime_type": "image/png"}]},
    {"name": "site-b-ct", "prefix": "gs://src/site-b/ct/", "store": STORE_B, "storage_class": "COLDLINE"},
]  # fmt: skip


def _settings(**env: str) -> Settings:
    return Settings.from_env({**REQUIRED, "ROUTES": json.dumps(ROUTES), "SETTLE_SECONDS": "0", **env})


def test_the_longest_prefix_wins_and_everything_else_takes_the_default_route() -> None:
    settings = _settings()
    assert settings.route_for("src", "site-b/ct/1.dcm").name == "site-b-ct"
    assert settings.route_for("src", "site-b/mr/1.dcm").name == "site-b"
    default = settings.route_for("src", "site-a/1.dcm")
    assert (default.name, default.store) == ("default", "projects/proj/locations/us-central1/datasets/d/dicomStores/s")
    assert settings.stores == (default.store, STORE_B)
    assert settings.excluded("exports", "site-b/1.2/3.4/5.6/1.png")  # a route's exports are never imported
    assert settings.route_named("site-b").export_targets[0].name == "png"


@pytest.mark.parametrize(
    ("routes", "message"),
    [
        ([{"name": "x", "prefix": "s3://src/", "store": STORE_B}], "route 'x': prefix must be gs://"),
        ([{"name": "x", "prefix": "gs://src/a/", "store": "stores/b"}], "route 'x': store must be projects/"),
        ([{"name": "default", "prefix": "gs://src/a/", "store": STORE_B}], "not 'default'"),
        ([{"name": "x", "prefix": "gs://src/a/", "store": STORE_B, "export_targets": [{"name": "y"}]}],
         "route 'x': export_targets: target 'y'"),
        ([{"name": "x", "prefix": "gs://src/a/", "store": STORE_B, "colour": "red"}], "unknown keys: colour"),
        ([{"name": "x", "prefix": "gs://src/a/", "store": STORE_B}, {"name": "x", "prefix": "gs://src/b/",
                                                                     "store": STORE_B}], "unique: x"),
    ],
)  # fmt: skip
def test_a_bad_route_is_named_in_the_error(routes: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_routes(json.dumps(routes))


def test_a_route_on_a_bucket_that_is_not_a_source_is_refused_at_start() -> None:
    routes = [{"name": "elsewhere", "prefix": "gs://other/x/", "store": STORE_B}]
    with pytest.raises(ConfigurationError, match="route 'elsewhere' takes files of bucket other"):
        Settings.from_env({**REQUIRED, "ROUTES": json.dumps(routes)})


def _record(name: str, sop: str) -> PendingRecord:
    return PendingRecord("src", name, "1", 10, None, "1.2", "1.2.3", sop, "1.2.840.10008.1.2.1", "CT",
                         (NOW - timedelta(seconds=60)).isoformat())  # fmt: skip


def test_a_flush_forms_one_batch_per_route_against_each_routes_store() -> None:
    # GIVEN ready files of the default route and of two routes that share a store
    names = ["site-a/s1/1.dcm", "site-b/mr/1.dcm", "site-b/ct/1.dcm", "site-b/ct/2.dcm"]
    store, subscriber, publisher = FakeStore({("src", n): b"x" for n in names}), FakeSubscriber(), FakePublisher()
    for index, name in enumerate(names):
        subscriber.put(_record(name, f"1.2.3.{index}").to_json())
    settings = _settings()
    default, research = FakeHealthcare(store_name=settings.store_name), FakeHealthcare(store_name=STORE_B)
    apis = {settings.store_name: default, STORE_B: research}
    # WHEN one flush runs
    report = run_flush(settings, subscriber=subscriber, publisher=publisher, store=store, healthcare=default,
                       now=lambda: NOW, stores=apis.__getitem__)  # fmt: skip
    # THEN three batches: each route's files go to its own store, never mixed
    assert len(report.batch_ids) == 3
    assert default.imports == ["gs://src/site-a/**.dcm"]
    assert sorted(research.imports) == ["gs://src/site-b/ct/**.dcm", "gs://src/site-b/mr/**.dcm"]
    manifests = [json.loads(store.objects[("state", f"dicomflow/batches/{b}/manifest.json")]) for b in report.batch_ids]
    assert sorted((m["route"], m["store"], len(m["files"])) for m in manifests) == [
        ("default", settings.store_name, 1), ("site-b", STORE_B, 1), ("site-b-ct", STORE_B, 2)]  # fmt: skip
