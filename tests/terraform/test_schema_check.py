"""The provider schema check (scripts/terraform_schema.py): the deployment passes it, and it catches each kind
of mistake in the fixtures under tests/terraform/fixtures/schema/.

Runs in .hclvenv (python-hcl2); the schemas come from .tfschema/, filled by scripts/terraform_checks.sh (a
missing schema is downloaded here too, once).
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

pytest.importorskip("hcl2", reason="python-hcl2 lives in .hclvenv: run scripts/terraform_checks.sh")

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "schema"
_EXPECT = re.compile(r"^# expect: (.+)$", re.M)


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("terraform_schema", ROOT / "scripts" / "terraform_schema.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["terraform_schema"] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


ts = _load()


def _reported(folder: Path) -> list[str]:
    problems, _ = ts.check_folder(folder)
    return sorted(f"{p.line}: {p.address}: {p.message}" for p in problems)


def _expected(folder: Path) -> list[str]:
    return sorted(e for path in ts.module_files(folder) for e in _EXPECT.findall(path.read_text()))


def _declared_blocks(folder: Path) -> int:
    # Module calls count when their source is local (every call in this repository).
    pattern = re.compile(r'^(?:resource|data) "[^"]+" "[^"]+" \{|^(?:provider|module) "[^"]+" \{', re.M)
    return sum(len(pattern.findall(path.read_text())) for path in ts.module_files(folder))


# ------------------------------------------------------------------------------------------------
# The deployment
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("folder", ts.default_folders(), ids=lambda p: str(p.relative_to(ROOT)))
def test_schema_check_passes_on_every_block_of_the_deployment(folder: Path):
    # GIVEN the root module or an example WHEN checked against the pinned provider schemas
    problems, checked = ts.check_folder(folder)
    # THEN nothing is reported, and every resource, data and provider block was checked
    assert [str(p) for p in problems] == []
    assert checked == _declared_blocks(folder) > 0


def test_schema_check_covers_the_root_module_and_every_example():
    folders = ts.default_folders()
    assert folders[0] == ROOT / "terraform"
    assert set(folders[1:]) == {p for p in (ROOT / "terraform" / "examples").iterdir() if p.is_dir()}


# ------------------------------------------------------------------------------------------------
# The fixtures: each kind of mistake
# ------------------------------------------------------------------------------------------------


def test_schema_check_accepts_the_valid_fixture():
    problems, checked = ts.check_folder(FIXTURES / "valid")
    assert [str(p) for p in problems] == []
    assert checked == _declared_blocks(FIXTURES / "valid") == 7


_BROKEN = sorted(p.name for p in FIXTURES.iterdir() if p.is_dir() and p.name != "valid")


def test_examples_module_calls_are_checked_against_the_root_module_variables():
    schema = ts.module_schema(ROOT / "terraform")
    assert schema.attributes["project_id"] is True and schema.attributes["source_buckets"] is True
    assert schema.attributes["monitoring"] is False and schema.attributes["notification_channels"] is False


@pytest.mark.parametrize("fixture", _BROKEN)
def test_schema_check_reports_exactly_the_expected_problems(fixture: str):
    # GIVEN a module with deliberate mistakes, each announced by an `# expect:` comment
    folder = FIXTURES / fixture
    expected = _expected(folder)
    assert expected, f"{fixture}: no # expect: comment"
    # WHEN it is checked THEN exactly those problems are reported, with file, line, block and argument
    assert _reported(folder) == expected


def test_schema_check_message_names_file_line_block_and_argument():
    problems, _ = ts.check_folder(FIXTURES / "unknown_argument")
    (problem,) = problems
    assert str(problem) == (
        "tests/terraform/fixtures/schema/unknown_argument/main.tf:4: "
        'resource "google_pubsub_topic" "main": unknown argument "lables" (google 8.7.0) (did you mean "labels"?)'
    )


def test_schema_check_cli_fails_on_a_broken_module(capsys: pytest.CaptureFixture[str]):
    status = ts.main(["check", str(FIXTURES / "unknown_argument")])
    out = capsys.readouterr().out
    assert status == 1
    assert 'unknown argument "lables"' in out and "1 problem(s)" in out
    assert ts.main(["check", str(FIXTURES / "valid")]) == 0


# ------------------------------------------------------------------------------------------------
# The schema read from the bindings
# ------------------------------------------------------------------------------------------------


def test_schema_knows_blocks_attributes_and_required_of_resources_we_use():
    google = ts.schema_for("hashicorp/google", "~> 8.0")
    assert google.version.startswith("8.")
    store = google.resources["google_healthcare_dicom_store"]
    assert store.attributes["dataset"] is True and store.attributes["name"] is True
    assert store.attributes["labels"] is False, "a map argument, not a block"
    required, notification = store.blocks["notification_config"]
    assert required is False and notification.attributes == {"pubsub_topic": True, "send_for_bulk_import": False}
    assert "stream_configs" not in store.blocks, "beta only"
    push = google.resources["google_pubsub_subscription"].blocks["push_config"][1]
    assert push.blocks["oidc_token"][1].attributes["service_account_email"] is True
    assert google.resources["google_monitoring_alert_policy"].blocks["conditions"][0] is True
    beta = ts.schema_for("hashicorp/google-beta", "~> 8.0")
    stream = beta.resources["google_healthcare_dicom_store"].blocks["stream_configs"][1]
    assert stream.blocks["bigquery_destination"][1].attributes == {"table_uri": True}
    assert "google_project_service_identity" in beta.resources


@pytest.mark.parametrize(
    ("version", "constraint", "ok"),
    [
        ("8.7.0", "~> 8.0", True),
        ("8.7.0", "~> 6.0", False),
        ("6.50.0", "~> 6.0", True),
        ("8.7.0", "~> 8.7.0", True),
        ("8.7.0", "~> 8.8.0", False),
        ("8.7.0", ">= 6.0, < 9.0", True),
        ("8.7.0", ">= 6.0, < 8.0", False),
        ("8.7.0", "= 8.7.0", True),
        ("8.7.0", "8.7.1", False),
        ("2.8.1", "~> 2.4", True),
    ],
)
def test_satisfies_reads_terraform_version_constraints(version: str, constraint: str, ok: bool):
    assert ts.satisfies(version, constraint) is ok


def test_schema_for_names_what_is_missing_for_an_unknown_version(tmp_path: Path):
    with pytest.raises(ts.SchemaError, match=r"no schema package known for hashicorp/google '~> 7.0'.*8\.7\.0"):
        ts.schema_for("hashicorp/google", "~> 7.0", cache=tmp_path)
    assert list(tmp_path.iterdir()) == [], "nothing downloaded"


def test_js_blocks_maps_properties_to_terraform_names_and_block_flags():
    js = """
function fooBarToHclTerraform(struct) {
    const attrs = {
        pubsub_topic: {
            value: cdktn.stringToHclTerraform(struct.pubsubTopic),
            isBlock: false,
            type: "simple",
        },
        oidc_token: {
            value: fooOidcTokenToHclTerraform(struct.oidcToken),
            isBlock: true,
            type: "list",
        },
    };
}
class Foo extends cdktn.TerraformResource {
    synthesizeHclAttributes() {
        const attrs = {
            build: {
                value: fooBuildToHclTerraform(this._build.internalValue),
                isBlock: true,
                type: "list",
            },
        };
    }
}
"""
    assert ts._js_blocks(js) == {
        "FooBar": {"pubsubTopic": ("pubsub_topic", False), "oidcToken": ("oidc_token", True)},
        "Foo": {"build": ("build", True)},
    }
