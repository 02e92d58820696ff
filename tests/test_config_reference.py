"""docs/configuration.md is generated from Settings's field descriptions and kept in step.

Defaults come from the class's fields (core/config_reference.py), never from an instantiated
Settings, so neither this machine's AGR_* variables nor a .env file changes the page.
"""

import difflib
from collections import Counter

import pytest

from core.config_reference import COMMAND, PAGE, render, sections
from core.settings import Settings
from tests.no_services import librosa_compiled_first, module_services  # noqa: F401  (no services here)


def test_every_field_has_a_description():
    missing = [name for name, field in Settings.model_fields.items() if not (field.description or "").strip()]
    assert not missing, f"Settings fields without a description= (core/settings.py): {missing}"


def test_every_field_is_in_exactly_one_section():
    listed = Counter(name for _, names in sections() for name in names)
    fields = set(Settings.model_fields)
    assert not (unplaced := sorted(fields - set(listed))), \
        f"fields under no '# --- section ---' comment of Settings: {unplaced}"
    twice = sorted(name for name, count in listed.items() if count > 1)
    assert not twice, f"fields in two sections: {twice}"
    assert not (unknown := sorted(set(listed) - fields)), f"sections name what is not a field: {unknown}"
    titles = [title for title, _ in sections()]
    assert len(titles) == len(set(titles)), f"a section title twice: {titles}"
    assert not (empty := [title for title, names in sections() if not names]), f"sections without fields: {empty}"


def test_page_does_not_depend_on_the_environment(monkeypatch):
    expected = render()
    monkeypatch.setenv("AGR_MAX_ITERS", "7")
    monkeypatch.setenv("AGR_LLM_API_KEY", "sk-do-not-print")
    monkeypatch.setenv("AGR_DATA_DIR", "/elsewhere")
    assert render() == expected


def test_docs_configuration_is_up_to_date():
    rendered = render()
    page = PAGE.read_text() if PAGE.exists() else ""
    if page != rendered:
        diff = list(difflib.unified_diff(page.splitlines(), rendered.splitlines(),
                                         "docs/configuration.md", "render()", lineterm="", n=0))
        pytest.fail(f"docs/configuration.md is stale (core/settings.py changed): regenerate it with "
                    f"`{COMMAND}`\n" + "\n".join(diff[:40]), pytrace=False)
