from __future__ import annotations

import base64
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
APPKEY = "sk-test-3f9a1c0de5b74e2a"

# Airflow reads its configuration on first import: point it at a throwaway home before that.
# dag.test() needs each DAG file inside the DAGs folder: it holds links to the example DAGs and to
# the test DAGs, and nothing else, so that each run parses only those.
_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="juhe-airflow-home-"))
DAGS_FOLDER = _AIRFLOW_HOME / "dags"
DAGS_FOLDER.mkdir()
for source in [*(REPO / "example_dags").iterdir(), *(REPO / "tests" / "dags").glob("*.py")]:
    if source.suffix in (".py", ".csv"):
        (DAGS_FOLDER / source.name).symlink_to(source)
os.environ["AIRFLOW_HOME"] = str(_AIRFLOW_HOME)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(DAGS_FOLDER)
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_AIRFLOW_HOME}/airflow.db"
# One Fernet key for this process and the child processes some tests start, so that Variables one
# writes the others can read (as every component of a deployment shares its configuration).
os.environ["AIRFLOW__CORE__FERNET_KEY"] = base64.urlsafe_b64encode(os.urandom(32)).decode()

from hypothesis import settings  # noqa: E402

from airflow_provider_juhe.sandbox import JuheSandbox  # noqa: E402

# CI searches the same examples on every run (a failure there is reproducible, never a coin toss);
# locally each run searches afresh.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


# The slowest tests (by `--durations`), longest first. With `--dist loadgroup` (the Makefile's) each
# test goes to whichever worker is free, in collection order: these start first, one worker each, and
# the quick ones fill in behind them, instead of two of them meeting on one worker at the end.
SLOWEST_FIRST = [
    "tests/notifications/test_alerting.py::test_a_dag_failing_in_consecutive_runs_pages_once_per_repeat_interval",
    "tests/operators/test_send_promises.py::test_worker_killed_mid_send_the_retry_sends_every_batch_that_never_started",
    "tests/notifications/test_alerting.py::test_episodes_hold_across_processes",
    "tests/notifications/test_alert_races.py::test_a_burst_across_processes_keeps_the_cap_and_every_count",
    "tests/operators/test_campaigns.py::test_a_window_closing_mid_send_defers_and_resumes_without_sending_twice",
    "tests/notifications/test_alerting.py::test_the_per_number_cap_holds_and_counts_into_the_next_page",
    "tests/example_dags/test_example_dags.py::test_failure_alert_twenty_failures_page_once_then_one_recovery",
    "tests/operators/test_campaigns.py::test_a_window_opening_seconds_after_the_start_defers_then_sends",
    "tests/notifications/test_alert_races.py::test_a_process_killed_after_its_claim_does_not_silence_the_episode",
    "tests/notifications/test_alert_lock_contention.py::test_an_overloaded_server_costs_counts_never_a_lost_update",
    "tests/notifications/test_alert_state.py::test_a_storm_on_redis_pages_once_with_an_exact_count",
    "tests/notifications/test_alert_state.py::test_the_per_number_cap_holds_on_redis_with_every_count",
    "tests/notifications/test_alert_state.py::test_a_storm_of_20_processes_pages_once_up_to_0_6_s_and_never_stays_silent[0.0]",
    "tests/notifications/test_alert_state.py::test_a_storm_of_20_processes_pages_once_up_to_0_6_s_and_never_stays_silent[0.2]",
]


def pytest_collection_modifyitems(items):
    rank = {nodeid: place for place, nodeid in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid, len(rank)))  # stable: the others keep their order


class SleepRecorder:
    """Stands in for time.sleep: records the backoff instead of waiting."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()


@pytest.fixture
def sandbox():
    with JuheSandbox(appkey=APPKEY) as server:
        yield server


@pytest.fixture
def sandbox_conn(sandbox, monkeypatch):
    """``juhe_sms_default`` pointing at the sandbox."""
    monkeypatch.setenv("AIRFLOW_CONN_JUHE_SMS_DEFAULT", sandbox.connection_json())
    return sandbox


@pytest.fixture
def task_output(capfd, caplog, monkeypatch):
    """
    What DAG runs printed, logged and raised so far, as one text. Airflow 3.3's ``dag.test()`` prints
    a task's log lines, its error included, on the console; 3.0's logs no task error at all, so the
    errors the Juhe operators raise are recorded here as well.
    """
    from airflow_provider_juhe.operators.juhe_sms import JuheBaseOperator

    raised: list[str] = []
    execute = JuheBaseOperator.execute

    def recording_execute(self, context):
        try:
            return execute(self, context)
        except Exception as error:
            raised.append(f"{type(error).__name__}: {error}")
            raise

    monkeypatch.setattr(JuheBaseOperator, "execute", recording_execute)

    def read() -> str:
        out, err = capfd.readouterr()
        return "\n".join([out, err, caplog.text, *raised])

    return read


@pytest.fixture(scope="session")
def airflow_db():
    """A migrated SQLite metadata DB, once per session, for real DAG runs."""
    subprocess.run(
        [str(Path(sys.executable).with_name("airflow")), "db", "migrate"],
        check=True,
        capture_output=True,
        env=os.environ.copy(),
    )
    return os.environ["AIRFLOW_HOME"]


@pytest.fixture(autouse=True)
def quick_alert_locks(request, monkeypatch):
    """
    In-process DAG runs run one callback at a time, so no racer can slip in: a short settle keeps
    them fast. Tests of races across processes (marked ``real_locks``) keep the real timing.
    """
    if request.node.get_closest_marker("real_locks") is None:
        from airflow_provider_juhe.alerting.variable_store import Latency

        monkeypatch.setattr(Latency, "gate", property(lambda self: 60.0))
        monkeypatch.setattr(Latency, "settle", property(lambda self: 0.02))


@pytest.fixture
def alert_state(airflow_db):
    """No alert episode or per-number cap left over from an earlier test (they live in Variables)."""
    from airflow.models.variable import Variable
    from airflow.utils.session import create_session

    def clear() -> None:
        with create_session() as session:
            session.query(Variable).filter(Variable.key.like("juhe_sms_%")).delete(synchronize_session=False)

    clear()
    yield
    clear()


@pytest.fixture
def redis_server():
    """A real redis-server of the test's own (skipped without the binary, unless JUHE_REQUIRE_REDIS=1)."""
    from tests.redis_server import RedisServer

    server = RedisServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_state(redis_server, monkeypatch):
    """The alert state in that Redis: connection ``juhe_alert_state``, set as ``[juhe] alert_state_conn_id``."""
    monkeypatch.setenv("AIRFLOW_CONN_JUHE_ALERT_STATE", redis_server.connection_json())
    monkeypatch.setenv("AIRFLOW__JUHE__ALERT_STATE_CONN_ID", "juhe_alert_state")
    return redis_server


@pytest.fixture(autouse=True)
def fresh_variable_latency(monkeypatch):
    """Each test measures its own Variable latency: an earlier test's slow calls must not carry over."""
    from airflow_provider_juhe.alerting import variable_store

    monkeypatch.setattr(variable_store, "LATENCY", variable_store.Latency())
