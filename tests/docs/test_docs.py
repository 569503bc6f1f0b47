"""The docs as a newcomer meets them: a short README, links that lead somewhere, facts kept in step."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import airflow_provider_juhe
from airflow_provider_juhe.config import OPTIONS
from airflow_provider_juhe.exceptions import ERROR_CODES
from tests.docs.snippets import REPO, doc_files

LINK = re.compile(r"(?<!\!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCED = re.compile(r"^[ \t]*```.*?^[ \t]*```", re.M | re.S)


def _links(path: Path) -> list[str]:
    text = FENCED.sub("", path.read_text(encoding="utf-8"))
    return [target for target in LINK.findall(text) if not re.match(r"[a-z][a-z0-9+.-]*:", target)]


def test_the_readme_is_the_front_door_not_the_manual():
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 300


@pytest.mark.parametrize("path", doc_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves(path):
    broken = []
    for target in _links(path):
        file_part = target.split("#", 1)[0]
        resolved = (path.parent / file_part).resolve()
        if file_part and not resolved.exists():
            broken.append(target)
    assert broken == []


def _project(field: str) -> str:
    # tomllib arrived in Python 3.11; the project supports 3.10.
    pyproject = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    return re.search(rf'^{field} = "([^"]+)"$', pyproject, re.M).group(1)


def test_one_version_everywhere():
    assert _project("version") == airflow_provider_juhe.__version__
    changelog = (REPO / "CHANGELOG.md").read_text(encoding="utf-8")
    assert f"## [{_project('version')}]" in changelog


def test_the_licence_is_the_apache_license_the_package_declares():
    assert _project("license") == "Apache-2.0"
    text = (REPO / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in text
    assert "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text


def test_the_operations_page_names_every_config_option():
    page = (REPO / "docs" / "operations.md").read_text(encoding="utf-8")
    assert [name for name in OPTIONS if f"`{name}`" not in page] == []


def test_every_juhe_error_code_has_what_to_do():
    page = (REPO / "docs" / "operations.md").read_text(encoding="utf-8")
    assert [code for code in ERROR_CODES if f"| {code} |" not in page] == []


def test_every_supported_line_has_an_install_recipe_with_its_constraints():
    page = (REPO / "docs" / "airflow-versions.md").read_text(encoding="utf-8")
    assert "needs a discriminator field" in page  # the symptom of a missing constraints file, searchable
    for constraints in sorted((REPO / "constraints").glob("airflow-*.txt")):
        version = constraints.stem.removeprefix("airflow-")
        assert f"-c constraints/{constraints.name}" in page
        assert f'"apache-airflow=={version}"' in page
