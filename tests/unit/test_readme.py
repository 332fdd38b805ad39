"""The README documents every setting the functions read."""

from __future__ import annotations

from pathlib import Path

from dicomflow.config.settings import SETTINGS_TABLE

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_readme_lists_every_setting_with_its_default() -> None:
    for setting in SETTINGS_TABLE:
        if setting.default is None:
            default = "*(required)*"
        else:
            default = f"`{setting.default}`" if setting.default else "*(empty)*"
        assert f"| `{setting.env}` | {default} |" in README, setting.env
