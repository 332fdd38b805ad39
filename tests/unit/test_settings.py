"""Settings from the environment: defaults, validation with messages naming every problem."""

from __future__ import annotations

import pytest

from dicomflow.config.settings import KNOWN_SETTINGS, SETTINGS_TABLE, Settings
from dicomflow.errors import ConfigurationError

REQUIRED = {
    "PROJECT_ID": "my-project", "LOCATION": "us-central1", "DATASET": "ds", "DICOM_STORE": "store",
    "SOURCE_BUCKETS": "incoming-a, incoming-b", "STATE_BUCKET": "state-bucket",
}  # fmt: skip


def test_settings_defaults_from_the_table() -> None:
    settings = Settings.from_env(REQUIRED)
    assert settings.source_buckets == ("incoming-a", "incoming-b")
    assert settings.store_name == "projects/my-project/locations/us-central1/datasets/ds/dicomStores/store"
    assert (settings.settle_seconds, settings.max_batch_files, settings.max_concurrent_operations) == (30.0, 10000, 5)
    assert settings.dicom_suffixes == (".dcm",)
    assert settings.blob_storage_class is None
    assert settings.healthcare_api_endpoint is None


def test_settings_parse_every_kind_of_value() -> None:
    settings = Settings.from_env({
        **REQUIRED, "DICOM_SUFFIXES": ".DCM,.dicom", "SNIFF_EXTENSIONLESS": "yes", "EXCLUDE_PREFIXES": "q/,tmp/",
        "STATE_PREFIX": "state", "BLOB_STORAGE_CLASS": "coldline", "HEALTHCARE_API_ENDPOINT": "http://127.0.0.1:8089/",
        "SETTLE_SECONDS": "2.5", "LOG_LEVEL": "debug",
    })  # fmt: skip
    assert settings.dicom_suffixes == (".dcm", ".dicom")
    assert settings.sniff_extensionless is True
    assert settings.exclude_prefixes == ("q/", "tmp/")
    assert settings.state_prefix == "state/"
    assert settings.blob_storage_class == "COLDLINE"
    assert settings.healthcare_api_endpoint == "http://127.0.0.1:8089"
    assert settings.settle_seconds == 2.5
    assert settings.log_level == "DEBUG"


def test_settings_report_every_problem_at_once() -> None:
    env = {**REQUIRED, "SETTLE_SECONDS": "soon", "MAX_CONCURRENT_OPERATIONS": "0", "BLOB_STORAGE_CLASS": "HOT"}
    del env["DATASET"]
    with pytest.raises(ConfigurationError) as error:
        Settings.from_env(env)
    message = str(error.value)
    for expected in (
        "DATASET is required",
        "SETTLE_SECONDS='soon'",
        "MAX_CONCURRENT_OPERATIONS='0'",
        "BLOB_STORAGE_CLASS='HOT'",
    ):
        assert expected in message


def test_settings_check_relations_between_values() -> None:
    with pytest.raises(ConfigurationError, match="MAX_WAIT_SECONDS must be at least SETTLE_SECONDS"):
        Settings.from_env({**REQUIRED, "SETTLE_SECONDS": "100", "MAX_WAIT_SECONDS": "10"})


def test_settings_refuse_an_export_to_the_root_of_a_source_bucket() -> None:
    targets = '[{"name": "back", "gcs": "gs://incoming-a"}]'
    with pytest.raises(ConfigurationError, match="give it a prefix"):
        Settings.from_env({**REQUIRED, "EXPORT_TARGETS": targets})
    settings = Settings.from_env({**REQUIRED, "EXPORT_TARGETS": '[{"name": "back", "gcs": "gs://incoming-a/exports"}]'})
    assert settings.excluded("incoming-a", "exports/1.2/3.4/5.6.dcm")
    assert not settings.excluded("incoming-a", "upload/5.6.dcm")


def test_excluded_covers_configured_prefixes_and_the_pipelines_own_state() -> None:
    settings = Settings.from_env({**REQUIRED, "STATE_BUCKET": "incoming-a", "EXCLUDE_PREFIXES": "quarantine/"})
    assert settings.excluded("incoming-a", "dicomflow/batches/x/manifest.json")
    assert settings.excluded("incoming-b", "quarantine/a.dcm")
    assert not settings.excluded("incoming-b", "dicomflow/a.dcm")


def test_settings_table_names_are_unique_and_described() -> None:
    assert len(KNOWN_SETTINGS) == len(SETTINGS_TABLE)
    assert all(setting.description.endswith(".") for setting in SETTINGS_TABLE)


# What a user reading the settings table (docs/configuration.md) expects each default to mean, written out by hand
# (not computed by the parser under test): a new setting has to be added here with its meaning.
EXPECTED_DEFAULTS = {
    "STATE_PREFIX": "dicomflow/", "DICOM_SUFFIXES": (".dcm",), "SNIFF_EXTENSIONLESS": True, "READY_MARKER": "",
    "EXCLUDE_PREFIXES": (), "PENDING_TOPIC": "dicom-pending", "PENDING_SUBSCRIPTION": "dicom-pending-flush",
    "OPERATIONS_TOPIC": "dicom-operations", "FAILED_TOPIC": "dicom-failed", "RESULTS_TOPIC": "dicom-results",
    "SETTLE_SECONDS": 30.0, "MAX_WAIT_SECONDS": 600.0, "MAX_BATCH_FILES": 10_000, "MAX_CONCURRENT_OPERATIONS": 5,
    "BLOB_STORAGE_CLASS": None, "STAGING": "auto", "HEADER_READ_BYTES": 65_536, "MAX_HEADER_BYTES": 16 * 1024 * 1024,
    "LISTING_CAP": 50_000, "FLUSH_LEASE_SECONDS": 30, "FLUSH_RUN_SECONDS": 55.0, "HEALTHCARE_API_ENDPOINT": None,
    "LOGGING_API_ENDPOINT": None, "FAILURE_LOG_WAIT_SECONDS": 30.0,
    "API_RETRY_ATTEMPTS": 6, "EXPORT_TARGETS": (), "ROUTES": (), "MAX_ATTEMPTS": 3, "CONFLICT_POLICY": "report",
    "OPERATION_MAX_AGE_SECONDS": 6 * 3600.0, "FOLLOW_POLL_SECONDS": 4 * 60.0, "FOLLOW_INTERVAL_SECONDS": 2.0,
    "LOG_LEVEL": "INFO", "LOG_OBJECT_NAMES": "full", "LOG_HASH_KEY": "",
}  # fmt: skip


def test_every_optional_setting_defaults_to_what_its_documentation_means() -> None:
    # GIVEN only the required variables WHEN settings are read THEN each optional one has its documented meaning
    from_env = Settings.from_env(REQUIRED)
    optional = {setting.env: setting for setting in SETTINGS_TABLE if setting.default is not None}
    assert set(optional) == set(EXPECTED_DEFAULTS), "list a new setting's default in EXPECTED_DEFAULTS"
    for env, expected in EXPECTED_DEFAULTS.items():
        setting = optional[env]
        assert setting.env == setting.attribute.upper()
        assert getattr(from_env, setting.attribute) == expected, env


def test_hashed_object_names_need_a_key_and_the_key_never_shows() -> None:
    with pytest.raises(ConfigurationError, match="LOG_HASH_KEY of at least 16"):
        Settings.from_env({**REQUIRED, "LOG_OBJECT_NAMES": "hashed"})
    settings = Settings.from_env({**REQUIRED, "LOG_OBJECT_NAMES": "hashed", "LOG_HASH_KEY": "s3cret-s3cret-s3cret"})
    assert "s3cret" not in repr(settings)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1", True), ("true", True), ("Yes", True), ("ON", True), ("0", False), ("false", False), ("No", False),
     ("off", False)],
)  # fmt: skip
def test_a_boolean_setting_takes_every_documented_spelling(raw: str, expected: bool) -> None:
    assert Settings.from_env({**REQUIRED, "SNIFF_EXTENSIONLESS": raw}).sniff_extensionless is expected


def test_a_boolean_setting_refuses_anything_else_and_says_what_it_expects() -> None:
    with pytest.raises(ConfigurationError, match=r"SNIFF_EXTENSIONLESS='maybe': expected true or false"):
        Settings.from_env({**REQUIRED, "SNIFF_EXTENSIONLESS": "maybe"})


@pytest.mark.parametrize(("raw", "accepted"), [("0", False), ("1", True), ("100", True), ("101", False)])
def test_a_bounded_number_takes_its_bounds_and_nothing_past_them(raw: str, accepted: bool) -> None:
    env = {**REQUIRED, "MAX_CONCURRENT_OPERATIONS": raw}
    if accepted:
        assert Settings.from_env(env).max_concurrent_operations == int(raw)
    else:
        with pytest.raises(
            ConfigurationError, match=rf"MAX_CONCURRENT_OPERATIONS='{raw}': expected a value between 1 and 100"
        ):
            Settings.from_env(env)


def test_a_number_with_only_a_minimum_says_so() -> None:
    assert Settings.from_env({**REQUIRED, "SETTLE_SECONDS": "0"}).settle_seconds == 0.0
    with pytest.raises(ConfigurationError, match=r"SETTLE_SECONDS='-1': expected a value at least 0"):
        Settings.from_env({**REQUIRED, "SETTLE_SECONDS": "-1"})
    with pytest.raises(ConfigurationError, match=r"SETTLE_SECONDS='soon': expected a number \(at least 0\)"):
        Settings.from_env({**REQUIRED, "SETTLE_SECONDS": "soon"})


def test_relations_between_values_allow_equality() -> None:
    settings = Settings.from_env({
        **REQUIRED, "SETTLE_SECONDS": "100", "MAX_WAIT_SECONDS": "100", "HEADER_READ_BYTES": "4096",
        "MAX_HEADER_BYTES": "4096", "LOG_OBJECT_NAMES": "hashed", "LOG_HASH_KEY": "k" * 16,
    })  # fmt: skip
    assert (settings.max_wait_seconds, settings.max_header_bytes, settings.log_object_names) == (100, 4096, "hashed")
    with pytest.raises(ConfigurationError, match="MAX_HEADER_BYTES must be at least HEADER_READ_BYTES"):
        Settings.from_env({**REQUIRED, "HEADER_READ_BYTES": "4096", "MAX_HEADER_BYTES": "4095"})
    with pytest.raises(ConfigurationError, match="needs LOG_HASH_KEY of at least 16 characters"):
        Settings.from_env({**REQUIRED, "LOG_OBJECT_NAMES": "hashed", "LOG_HASH_KEY": "k" * 15})


def test_an_export_to_a_source_bucket_root_names_the_bucket() -> None:
    with pytest.raises(ConfigurationError, match="incoming-a; give it a prefix"):
        Settings.from_env({**REQUIRED, "EXPORT_TARGETS": '[{"name": "back", "gcs": "gs://incoming-a/"}]'})
