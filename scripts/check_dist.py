"""
Check the artefacts `make dist` built: what a user of the wheel or the sdist needs is in them.

``python scripts/check_dist.py dist``: exits non-zero, listing every problem, when the wheel lacks the
provider entry point, a required classifier, the licence or ``py.typed``, or the sdist lacks the
constraints files or the licence.
"""

from __future__ import annotations

import sys
import tarfile
import zipfile
from email.parser import Parser
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CLASSIFIERS = (
    "Framework :: Apache Airflow",
    "Framework :: Apache Airflow :: Provider",
    "Typing :: Typed",
)
ENTRY_POINT = "provider_info = airflow_provider_juhe:get_provider_info"


def check_wheel(wheel: Path) -> list[str]:
    problems = []
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        dist_info = next(n.split("/")[0] for n in names if n.split("/")[0].endswith(".dist-info"))
        metadata = Parser().parsestr(archive.read(f"{dist_info}/METADATA").decode())
        entry_points = archive.read(f"{dist_info}/entry_points.txt").decode()
    if "[apache_airflow_provider]" not in entry_points or ENTRY_POINT not in entry_points:
        problems.append(f"{wheel.name}: no apache_airflow_provider entry point ({ENTRY_POINT})")
    classifiers = set(metadata.get_all("Classifier") or [])
    problems += [f"{wheel.name}: classifier {c!r} missing" for c in CLASSIFIERS if c not in classifiers]
    if metadata.get("License-Expression") != "Apache-2.0":
        problems.append(f"{wheel.name}: License-Expression is {metadata.get('License-Expression')!r}")
    if f"{dist_info}/licenses/LICENSE" not in names:
        problems.append(f"{wheel.name}: the licence file is not in {dist_info}/licenses/")
    if "airflow_provider_juhe/py.typed" not in names:
        problems.append(f"{wheel.name}: airflow_provider_juhe/py.typed missing (Typing :: Typed)")
    return problems


def check_sdist(sdist: Path) -> list[str]:
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    wanted = [
        "LICENSE",
        "CHANGELOG.md",
        *(f"constraints/{p.name}" for p in (REPO / "constraints").glob("*.txt")),
    ]
    return [f"{sdist.name}: {name} missing" for name in wanted if name not in names]


def main(folder: str) -> int:
    dist = Path(folder)
    wheels, sdists = sorted(dist.glob("*.whl")), sorted(dist.glob("*.tar.gz"))
    problems = [] if len(wheels) == 1 and len(sdists) == 1 else [f"{dist}: want one wheel and one sdist"]
    problems += [p for wheel in wheels for p in check_wheel(wheel)]
    problems += [p for sdist in sdists for p in check_sdist(sdist)]
    for problem in problems:
        print(f"FAIL {problem}")
    if not problems:
        print(f"dist OK: {', '.join(p.name for p in wheels + sdists)}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "dist"))
