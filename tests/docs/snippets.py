"""
The fenced ``python`` blocks of README.md and docs/, and the world they run in.

Every block is a complete module: it runs as it stands against a sandbox whose App key is
``sandbox-key`` and whose approved templates are ``TEMPLATES`` (ids from 1000 on, in that order, as
``python -m airflow_provider_juhe.sandbox --template ...`` creates them), with
``AIRFLOW_CONN_JUHE_SMS_DEFAULT`` pointing at it and the Variables of ``VARIABLES`` set.
docs/development.md says the same to whoever writes a page.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

#: The templates the sandbox approves before any block runs: ids 1000, 1001, ... in this order.
TEMPLATES = [
    "【运维】#dag#：#task#失败，请处理（本条告警代表#count#次失败）",
    "【运维】#dag#已恢复，期间合并告警#more#条",
    "【银行】尊敬的#name#，您尾号#card#的账单#amount#元将于#due_date#到期",
    "【天聚地合】您的验证码是#code#",
]

#: Airflow Variables (as ``AIRFLOW_VAR_*``) the examples read. The report folder is set per run.
VARIABLES = {
    "JUHE_ON_CALL_MOBILES": "13800138000",
    "JUHE_ALERT_TPL_ID": "1000",
    "JUHE_RECOVERY_TPL_ID": "1001",
    "JUHE_REPAYMENT_TPL_ID": "1002",
    "JUHE_CODE_TPL_ID": "1003",
}

# A fence, possibly indented (inside a list item); the block ends at a fence of the same indent.
_FENCE = re.compile(r"^(?P<indent>[ \t]*)```python[^\n]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.M | re.S)
_DEFINES_DAG = re.compile(r"\bDAG\(|^\s*@dag\b", re.M)


@dataclass(frozen=True)
class Snippet:
    path: Path
    line: int
    code: str

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"

    @property
    def defines_dag(self) -> bool:
        return bool(_DEFINES_DAG.search(self.code))


def doc_files() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]


def snippets(paths: list[Path] | None = None) -> list[Snippet]:
    found = []
    for path in paths or doc_files():
        text = path.read_text(encoding="utf-8")
        for match in _FENCE.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            body = textwrap.dedent(match.group("body"))
            found.append(Snippet(path, line, body))
    return found
