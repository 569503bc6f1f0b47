"""Running DAGs for real with dag.test() and reading back what happened."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tests.conftest import DAGS_FOLDER


def _dagbag():
    """Parsed afresh for every run: dag.test() leaves run_conf in the DAG's params."""
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(str(DAGS_FOLDER))


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


def run_dag(dag_id: str, **run_conf: Any) -> DagRunResult:
    """Run one DAG of the DAGs folder end to end, the way ``airflow dags test`` does."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    dag = _dagbag().get_dag(dag_id)
    assert dag is not None, f"{dag_id} not in the DAGs folder: {dagbag_import_errors()}"
    dag_run = dag.test(run_conf=run_conf or None)
    with create_session() as session:
        tis = session.query(TaskInstance).filter_by(dag_id=dag_id, run_id=dag_run.run_id).all()
        states = {_name(ti): str(getattr(ti.state, "value", ti.state)) for ti in tis}
        tries = {_name(ti): ti.try_number for ti in tis}
    return DagRunResult(
        dag_id, dag_run.run_id, str(getattr(dag_run.state, "value", dag_run.state)), states, tries
    )


def _name(ti) -> str:
    return ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"
