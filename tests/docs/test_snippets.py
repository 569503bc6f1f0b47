"""
Every fenced ``python`` block of README.md and docs/ runs (tests/docs/snippets.py says against what).

A block that defines a DAG is a DAG file: it is parsed by Airflow's DagBag, which must report no
import error and at least one DAG. Any other block runs as ``__main__`` in a fresh namespace, in a
folder of its own, its changes to the environment undone afterwards. A missing import, a renamed
parameter or a call the sandbox refuses fails the test.
"""

from __future__ import annotations

import os
import sys

import pytest

from tests.docs.snippets import TEMPLATES, VARIABLES, Snippet, snippets

pytestmark = pytest.mark.usefixtures("airflow_db")

SNIPPETS = snippets()


@pytest.fixture(scope="module")
def docs_sandbox():
    from airflow_provider_juhe.sandbox import JuheSandbox
    from airflow_provider_juhe.sandbox.__main__ import _split_template

    with JuheSandbox(appkey="sandbox-key") as sandbox:
        for template in TEMPLATES:
            signature, content = _split_template(template)
            sandbox.add_template(content, signature)
        yield sandbox


@pytest.fixture
def docs_world(docs_sandbox, tmp_path, monkeypatch):
    """The sandbox connection and Variables, a folder of its own, the environment restored after."""
    saved_environ = dict(os.environ)
    saved_path = list(sys.path)
    monkeypatch.chdir(tmp_path)
    os.environ["AIRFLOW_CONN_JUHE_SMS_DEFAULT"] = docs_sandbox.connection_json()
    for name, value in VARIABLES.items():
        os.environ[f"AIRFLOW_VAR_{name}"] = value
    os.environ["AIRFLOW_VAR_JUHE_REPORT_FOLDER"] = f"file://{tmp_path}/reports"
    yield docs_sandbox
    os.environ.clear()
    os.environ.update(saved_environ)
    sys.path[:] = saved_path


def test_the_docs_have_snippets():
    assert len(SNIPPETS) >= 10


@pytest.mark.parametrize("snippet", SNIPPETS, ids=[s.id for s in SNIPPETS])
def test_snippet_runs(snippet: Snippet, docs_world, tmp_path):
    if snippet.defines_dag:
        _parse_dag_file(snippet, tmp_path)
    else:
        code = compile(snippet.code, snippet.id, "exec")
        exec(code, {"__name__": "__main__", "__file__": str(tmp_path / "snippet.py")})


def _parse_dag_file(snippet: Snippet, folder) -> None:
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow < 3.2
        from airflow.models.dagbag import DagBag

    # Line numbers in errors match the page: the block is padded to its place in the file.
    dag_file = folder / f"snippet_{snippet.line}.py"
    dag_file.write_text("\n" * snippet.line + snippet.code, encoding="utf-8")
    bag = DagBag(str(dag_file))
    errors = [" ".join(error.strip().splitlines()[-2:]) for error in bag.import_errors.values()]
    assert errors == [], f"{snippet.id}: {errors}"
    assert bag.dags, f"{snippet.id}: defines no DAG"
