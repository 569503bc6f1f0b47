"""
MkDocs hooks (mkdocs.yml ``hooks:``): a stand-in page for each page of ``extra.pending_pages`` that is
not written yet, so that the nav and the links to it build while it is being written elsewhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

PLACEHOLDER = "# {title}\n\nThis page is being written.\n"


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File

    for page in config["extra"].get("pending_pages", []):
        if files.get_file_from_path(page) is None and not (Path(config["docs_dir"]) / page).exists():
            title = Path(page).stem.replace("-", " ").capitalize()
            files.append(File.generated(config, page, content=PLACEHOLDER.format(title=title)))
    return files
