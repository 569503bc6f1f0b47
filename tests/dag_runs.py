"""Running DAGs for real with dag.test() and reading back what happened."""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

# Read from the environment (set by conftest), so that a child process can run DAGs too.
DAGS_FOLDER = os.environ["AIRFLOW__CORE__DAGS_FOLDER"]


_DAG_FILES: dict[str, str] = {}  # dag_id -> its file, learned from the first parse of the folder


def _dagbag(dag_id: str | None = None):
    """
    Parsed afresh for every run (dag.test() leaves run_conf in the DAG's params): the DAG's own file
    once it is known, the whole folder the first time.
    """
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow < 3.2
        from airflow.models.dagbag import DagBag

    if dag_id in _DAG_FILES:
        return DagBag(_DAG_FILES[dag_id])
    bag = DagBag(str(DAGS_FOLDER))
    _DAG_FILES.update({found: dag.fileloc for found, dag in bag.dags.items()})
    return bag


def dagbag_import_errors() -> dict[str, str]:
    return dict(_dagbag().import_errors)


@dataclass
class DagRunResult:
    dag_id: str
    run_id: str
    state: str
    states: dict[str, str]  # task_id, or "task_id[map_index]" for mapped tasks
    tries: dict[str, int]

    def xcom(self, task_id: str, map_index: int = -1) -> Any:
        from airflow.models.xcom import XComModel
        from airflow.utils.session import create_session

        with create_session() as session:
            row = session.scalars(
                XComModel.get_many(
                    run_id=self.run_id,
                    dag_ids=self.dag_id,
                    task_ids=task_id,
                    map_indexes=map_index,
                    key="return_value",
                )
            ).first()
            return None if row is None else XComModel.deserialize_value(row)


def run_dag(
    dag_id: str,
    *,
    logical_date: datetime | None = None,
    without_logical_date: bool = False,
    configure: Callable[[Any], None] | None = None,
    **run_conf: Any,
) -> DagRunResult:
    """
    Run one DAG of the DAGs folder end to end, the way ``airflow dags test`` does.

    :param logical_date: run (again) the DAG run of this date: its task instances are cleared and
        run once more, keeping their task state store, as after ``airflow tasks clear``.
    :param without_logical_date: run as ``airflow dags trigger`` and the REST API do: no logical
        date, so ``ds``/``ts`` are undefined.
    :param configure: changes the parsed DAG before the run (e.g. a task's ``batch_size``).
    """
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    dag = _dagbag(dag_id).get_dag(dag_id)
    assert dag is not None, f"{dag_id} not in the DAGs folder: {dagbag_import_errors()}"
    if configure is not None:
        configure(dag)
    dates = {} if logical_date is None else {"logical_date": logical_date, "run_after": logical_date}
    if without_logical_date:
        dates = {"logical_date": None}
    dag_run = dag.test(run_conf=run_conf or None, **dates)
    with create_session() as session:
        tis = session.query(TaskInstance).filter_by(dag_id=dag_id, run_id=dag_run.run_id).all()
        states = {_name(ti): str(getattr(ti.state, "value", ti.state)) for ti in tis}
        tries = {_name(ti): ti.try_number for ti in tis}
    return DagRunResult(
        dag_id, dag_run.run_id, str(getattr(dag_run.state, "value", dag_run.state)), states, tries
    )


def _name(ti) -> str:
    return ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"


def rerun_task(
    dag_id: str, logical_date: datetime, task_id: str = "send", configure: Callable[[Any], None] | None = None
) -> DagRunResult:
    """
    Clear one task instance of an existing DAG run and run it again, as a retry or a clear would.

    It stays the same task instance (same run, task and map index), so its task state store holds
    what earlier tries wrote; ``configure`` may change the task first, as an edited DAG file would.
    Works on an abandoned run too (a test killed the process running it).
    """
    from airflow import settings
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance, clear_task_instances
    from airflow.sdk.definitions.dag import _run_task
    from airflow.utils.state import TaskInstanceState
    from sqlalchemy import select

    dag = _dagbag(dag_id).get_dag(dag_id)
    if configure is not None:
        configure(dag)
    session = settings.Session()
    run = session.scalars(select(DagRun).filter_by(dag_id=dag_id, logical_date=logical_date)).one()
    query = select(TaskInstance).filter_by(dag_id=dag_id, run_id=run.run_id, task_id=task_id)
    clear_task_instances(list(session.scalars(query)), session, dag_run_state=False)
    session.commit()
    ti = session.scalars(query).one()
    ti.try_number += 1
    ti.state = TaskInstanceState.SCHEDULED
    session.commit()
    ti.task = dag.task_dict[task_id]
    if "task" in inspect.signature(_run_task).parameters:
        _run_task(ti=ti, task=ti.task, run_triggerer=True)
    else:  # Airflow 3.0 runs the task the task instance carries
        _run_task(ti=ti, run_triggerer=True)
    session.expire_all()
    ti = session.scalars(query).one()
    state = str(getattr(ti.state, "value", ti.state))
    session.close()
    return DagRunResult(dag_id, run.run_id, state, {task_id: state}, {task_id: ti.try_number})


def rendered_fields(run_id: str, task_id: str) -> list[dict[str, Any]]:
    """What Airflow stored as the task's rendered template fields (one per map index)."""
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(RenderedTaskInstanceFields).filter_by(run_id=run_id, task_id=task_id).all()
        return [row.rendered_fields for row in sorted(rows, key=lambda row: row.map_index)]
