"""The configuration page (docs/configuration.md) documents every setting the functions read, and the README's
short table of the first settings copies its rows from there."""

from __future__ import annotations

import re
from pathlib import Path

from dicomflow.config.settings import SETTINGS_TABLE

ROOT = Path(__file__).resolve().parents[2]
CONFIGURATION = (ROOT / "docs" / "configuration.md").read_text()
README = (ROOT / "README.md").read_text()
_SETTING_ROW = re.compile(r"^\| `[A-Z][A-Z0-9_]*` \|.*\|$", re.MULTILINE)


def test_configuration_page_lists_every_setting_with_its_default() -> None:
    for setting in SETTINGS_TABLE:
        if setting.default is None:
            default = "*(required)*"
        else:
            default = f"`{setting.default}`" if setting.default else "*(empty)*"
        assert f"| `{setting.env}` | {default} |" in CONFIGURATION, setting.env


def test_readme_settings_are_rows_of_the_configuration_table() -> None:
    rows = _SETTING_ROW.findall(README)
    assert rows, "the README lists the settings that matter first"
    table = set(_SETTING_ROW.findall(CONFIGURATION))
    assert [row for row in rows if row not in table] == [], "copy the row from docs/configuration.md"
