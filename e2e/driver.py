"""
What both end-to-end tiers are made of: Airflow's components in their own process groups, waits on
states and log lines, the checks both tiers run, and the skeleton that starts a tier, runs its
scenario and stops everything it started, whatever happens.

The tiers differ only in their executor, database and extra processes: ``run.py`` (LocalExecutor,
SQLite) and ``run_celery.py`` (CeleryExecutor, Redis, PostgreSQL, two workers) each subclass
:class:`Deployment` and pass their scenario to :func:`run_tier`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import requests

import airflow_provider_juhe
from airflow_provider_juhe.sandbox import JuheSandbox

REPO = Path(__file__).resolve().parents[1]
APPKEY = "e2e-appkey-7c41d9b02f6e4a58"
CORE_COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
EXAMPLES = ("example_juhe_template_flow", "example_juhe_customer_notifications", "example_juhe_failure_alert")
BULK_DAG = "e2e_juhe_bulk_send"
RACE_DAG = "e2e_juhe_alert_race"
RACE_TASKS = 12  # as many as e2e/dags/e2e_juhe_alert_race.py defines
#: [core] task_success_overtime in both tiers: Airflow's default. A notification ends within 15 s
#: whatever the alert state does, so storms need no longer time.
TASK_SUCCESS_OVERTIME = 20
CAMPAIGN_DAG = "example_juhe_repayment_reminders"
CAMPAIGN_WAIT = 40  # seconds from the trigger until the campaign's send window opens
BULK_BATCH, BULK_WORKERS = 10, 2  # batch_size and max_workers of e2e/dags/e2e_juhe_bulk_send.py
ON_CALL = "15000009999"  # no example sends to it: every SMS it gets is an alert
NUMBER = re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)")
#: Enough slots for the race DAG's tasks to run at once (LocalExecutor processes, Celery slots).
PARALLEL_TASKS = 16

results: list[tuple[str, bool, str]] = []
_deadline = math.inf


def check(name: str, ok: bool, detail: str = "") -> bool:
    """Record and print one check with its figures."""
    results.append((name, ok, detail))
    print(f"{'PASS' if ok else 'FAIL'} {name}{': ' + detail if detail else ''}", flush=True)
    return ok


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(
    what: str,
    probe: Callable[[], Any],
    timeout: float,
    interval: float = 0.5,
    tolerate: tuple[type[Exception], ...] = (),
) -> Any:
    """
    Poll ``probe`` until it returns something truthy; raise after ``timeout`` (or the tier's
    deadline). Errors of a service not up yet (and ``tolerate``) count as "not yet".
    """
    until = min(time.monotonic() + timeout, _deadline)
    last_error: Exception | None = None
    while time.monotonic() < until:
        try:
            value = probe()
        except (requests.RequestException, OSError, KeyError, ValueError, *tolerate) as error:
            value, last_error = None, error
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(
        f"timed out waiting for {what}" + (f" (last error: {last_error})" if last_error else "")
    )


def arrived(what: str, probe: Callable[[], Any], timeout: float) -> bool:
    """Like :func:`wait_for`, for what a check judges: False on timeout, and the tier goes on."""
    try:
        return bool(wait_for(what, probe, timeout))
    except TimeoutError:
        return False


def read_text(paths: Iterable[Path]) -> str:
    return "".join(path.read_text(errors="replace") for path in paths if path.is_file())


class ProcessGroups:
    """Processes each in its own process group, output in ``folder/NAME.log``, stopped by group."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.processes: dict[str, subprocess.Popen] = {}

    def spawn(
        self, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None, log: Path | None = None
    ) -> subprocess.Popen:
        with open(log or self.folder / f"{name}.log", "ab") as output:  # the child keeps its own copy
            self.processes[name] = subprocess.Popen(
                list(argv),
                env=None if env is None else dict(env),
                cwd=self.folder,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stopped with every child it forked
            )
        return self.processes[name]

    def signal(self, name: str, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.processes[name].pid, sig)

    def stop(self, grace: float = 20) -> list[str]:
        """SIGTERM every group, SIGKILL what is left after ``grace`` seconds; the names still alive."""
        for name in self.processes:
            self.signal(name, signal.SIGTERM)
        until = time.monotonic() + grace
        for name, process in self.processes.items():
            try:
                process.wait(timeout=max(0.1, until - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.signal(name, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=5)
        for name in self.processes:  # children left in a group after its leader went
            self.signal(name, signal.SIGKILL)
        return [name for name, process in self.processes.items() if process.poll() is None]


class Deployment:
    """
    Airflow's components on 127.0.0.1 in a throwaway ``home``, driven through the REST API.

    A tier subclasses it with its executor's settings (:meth:`settings`), its processes
    (:meth:`components`), and what it stores (:meth:`stored`).
    """

    tier = "e2e"

    def __init__(self, home: Path, sandbox: JuheSandbox) -> None:
        self.home = home
        self.port = free_port()
        self.api = f"http://127.0.0.1:{self.port}"
        self.groups = ProcessGroups(home)
        self.pid_file = home / "send.pid"
        self.airflow = str(Path(sys.executable).with_name("airflow"))
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "JUHE"))},
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": str(PARALLEL_TASKS),
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            # One key for every process: each would otherwise read the others' Variables as garbage.
            "AIRFLOW__CORE__FERNET_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.api}/execution/",
            # Airflow's default, set to keep it in view: failure callbacks must finish within it.
            "AIRFLOW__CORE__TASK_SUCCESS_OVERTIME": str(TASK_SUCCESS_OVERTIME),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__BASE_URL": self.api,
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API_AUTH__JWT_SECRET": base64.urlsafe_b64encode(os.urandom(32)).decode(),
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",  # only the runs this tier triggers
            # A dead worker's task is retried 30 s after its last heartbeat, not 300 s.
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "30",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__TRIGGERER__CAPACITY": "50",
            "AIRFLOW_CONN_JUHE_SMS_DEFAULT": sandbox.connection_json(),
            "JUHE_E2E_PID_FILE": str(self.pid_file),
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }
        self.env.update(self.settings())

    # -- what a tier defines --------------------------------------------------------------------------

    def settings(self) -> dict[str, str]:
        """The executor's and the metadata DB's settings."""
        raise NotImplementedError

    def components(self) -> dict[str, list[str]]:
        """Each process to start, by name: its ``airflow`` arguments."""
        return {name: [name] for name in CORE_COMPONENTS}

    def prepare(self) -> None:
        """Before ``airflow db migrate``: services the deployment needs."""

    def ready(self) -> None:
        """Wait until the processes started besides the core components can take work."""

    def stored(self) -> tuple[list[str], dict[str, bytes]]:
        """After the stop: the stored rendered template fields, and every place data rests, by name."""
        raise NotImplementedError

    def close(self) -> None:
        """After the stored data was read: stop the services :meth:`prepare` started."""

    # -- processes ------------------------------------------------------------------------------------

    def set_variables(self, **variables: str) -> None:
        for key, value in variables.items():
            self.env[f"AIRFLOW_VAR_{key.upper()}"] = value

    def start(self) -> None:
        self.prepare()
        subprocess.run(
            [self.airflow, "db", "migrate"],
            env=self.env,
            cwd=self.home,
            check=True,
            capture_output=True,
            timeout=180,
        )
        for name, args in self.components().items():
            self.groups.spawn(name, [self.airflow, *args], self.env)
        wait_for("every component healthy", self.healthy, 150, interval=1)
        self.ready()

    def stop(self) -> list[str]:
        """Stop every component by process group; the names still alive."""
        return self.groups.stop()

    def log(self, name: str) -> str:
        return read_text([self.home / f"{name}.log"])

    def processor_log_has(self, dag_file: str, text: str) -> bool:
        return text in read_text((self.home / "logs" / "dag_processor").rglob(f"{dag_file}.log"))

    def component_logs(self) -> str:
        """What every process started here printed (supervisors log there, tasks under logs/)."""
        return read_text(self.home.glob("*.log"))

    def finished_workloads(self) -> set[str]:
        """Task instance ids whose task process ended, from their supervisors' "Workload finished"."""
        return set(re.findall(r"Workload finished.*?workload_id=([0-9a-f-]+)", self.component_logs()))

    def task_log(self, dag_id: str, run_id: str, pattern: str = "task_id=*/attempt=*.log") -> str:
        return read_text((self.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}").glob(pattern))

    # -- the REST API ---------------------------------------------------------------------------------

    def get(self, path: str, **params: Any) -> Any:
        response = requests.get(self.api + path, params=params, timeout=10)
        response.raise_for_status()
        return response.json()

    def post(self, path: str, body: dict[str, Any]) -> requests.Response:
        return requests.post(self.api + path, json=body, timeout=30)

    def healthy(self) -> bool:
        health = self.get("/api/v2/monitor/health")
        parts = ("metadatabase", "scheduler", "triggerer", "dag_processor")
        return all((health.get(part) or {}).get("status") == "healthy" for part in parts)

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        response = self.post(f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf or {}})
        response.raise_for_status()
        run = response.json()
        assert run["logical_date"] is None, run
        return run["dag_run_id"]

    def run_state(self, dag_id: str, run_id: str) -> str:
        return self.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")["state"]

    def wait_run(self, dag_id: str, run_id: str, timeout: float = 150) -> str:
        return wait_for(
            f"{dag_id} {run_id} to finish",
            lambda: (state := self.run_state(dag_id, run_id)) in ("success", "failed") and state,
            timeout,
        )

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        return self.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances", limit=100)["task_instances"]

    def xcom(self, dag_id: str, run_id: str, task_id: str) -> Any:
        entry = self.get(
            f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value",
            deserialize=True,
        )
        value = entry["value"]
        return json.loads(value) if isinstance(value, str) else value


# -- the checks both tiers run ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Templates:
    """The sandbox's approved templates the checks send with."""

    alert: int
    recovery: int
    bulk: int
    campaign: int
    race: int  # its own template, so its own caps record: nothing an earlier alert left counts
    deadline: int = 0  # the deadline alert's (e2e/dags/e2e_juhe_deadline_alert.py)


def configure(airflow: Deployment, sandbox: JuheSandbox) -> Templates:
    """Templates in the sandbox, and the Variables the example DAGs read (from the environment)."""
    alert = sandbox.add_template("#dag#：#task#失败，请处理（本条告警代表#count#次失败）", "运维")
    recovery = sandbox.add_template("#dag#已恢复，期间合并告警#more#条", "运维")
    campaign = sandbox.add_template(
        "尊敬的#name#，您尾号#card#的信用卡账单#amount#元将于#due_date#到期，请按时还款。", "银行"
    )
    airflow.set_variables(
        juhe_on_call_mobiles=f"{ON_CALL}, 1380013800",
        juhe_alert_tpl_id=str(alert),
        juhe_recovery_tpl_id=str(recovery),
        juhe_reminder_tpl_id=str(sandbox.add_template("您的账单将于#date#到期，请按时还款。", "银行")),
        juhe_repayment_tpl_id=str(campaign),
        juhe_report_folder=(airflow.home / "reports").as_uri(),
    )
    bulk = sandbox.add_template("您的账单已出，请按时还款。", "银行")
    return Templates(
        alert,
        recovery,
        bulk,
        campaign,
        sandbox.add_template("#dag#：#task#失败（#more#）", "运维"),
        configure_deadline_alert(airflow, sandbox),
    )


# -- Deadline Alerts: the notifier in the triggerer ---------------------------------------------------

DEADLINE_DAG = "e2e_juhe_deadline_alert"
DEADLINE_NUMBER = "19800006666"  # in no example file: every SMS it gets is a deadline alert
DEADLINE_RUNS = 4


def configure_deadline_alert(airflow: Deployment, sandbox: JuheSandbox) -> int:
    """The deadline DAG's template and on-call number, read when its file is parsed."""
    tpl_id = sandbox.add_template("#dag#超时未完成（另有#more#次）", "运维")
    airflow.set_variables(e2e_deadline_mobile=DEADLINE_NUMBER, e2e_deadline_tpl_id=str(tpl_id))
    return tpl_id


def check_deadline_alert(airflow: Deployment, sandbox: JuheSandbox, tpl_id: int, *, grouped: bool) -> None:
    """
    DEADLINE_RUNS runs miss their 3 s deadline together: the triggerer runs the notifier for each
    (AsyncCallback), no callback fails in Airflow's CallbackTrigger, and the number is never in clear
    in the notifier's lines. With ``grouped`` (the alert state in Redis) one episode per DAG: one SMS.
    On Variables, calls from the triggerer's threads take seconds each (measured 2.5-5 s here): a
    notification that cannot group within its bound pages anyway, each with an ERROR saying so.
    """
    runs = [airflow.trigger(DEADLINE_DAG) for _ in range(DEADLINE_RUNS)]

    def alerted() -> list[dict[str, Any]]:
        return [m for m in sandbox.messages() if DEADLINE_NUMBER in m["mobiles"] and m["tpl_id"] == tpl_id]

    arrived("the deadline alert's SMS", lambda: alerted() or None, 90)
    for run_id in runs:
        airflow.wait_run(DEADLINE_DAG, run_id, timeout=120)
    triggerer = airflow.log("triggerer")
    failed = triggerer.count("An error occurred during execution of the callable")
    ours = [line for line in triggerer.splitlines() if "juhe" in line.lower()]
    skipped = sum("grouping skipped, paging anyway" in line for line in ours)
    sent = len(alerted())
    paged_right = sent == 1 if grouped else sent >= 1 and skipped >= sent - 1
    check(
        f"deadline alert: {DEADLINE_RUNS} runs miss their deadline, the triggerer pages "
        + ("once (AsyncCallback, Redis state)" if grouped else "(AsyncCallback; ungrouped pages say so)"),
        paged_right and failed == 0 and not any(DEADLINE_NUMBER in line for line in ours),
        f"{sent} SMS {[m['text'] for m in alerted()]}; {skipped} 'grouping skipped' ERROR lines; "
        f"{failed} failed callbacks; number in clear in {sum(DEADLINE_NUMBER in line for line in ours)} "
        f"of {len(ours)} notifier lines",
    )


def check_registration(airflow: Deployment) -> None:
    meta = airflow.get("/ui/connections/hook_meta")
    form = next((entry for entry in meta if entry.get("connection_type") == "juhe_sms"), None)
    if not check("connection form: juhe_sms in /ui/connections/hook_meta", form is not None):
        return
    standard = form.get("standard_fields") or {}
    extra = form.get("extra_fields") or {}
    check(
        "connection form: App key, host relabelled, login hidden, timeout/max_retries extras",
        (standard.get("password") or {}).get("title") == "App key"
        and (standard.get("login") or {}).get("hidden") is True
        and {"timeout", "max_retries"} <= set(extra),
        f"password={standard.get('password')}, login={standard.get('login')}, extras={sorted(extra)}",
    )


def check_connection_test(airflow: Deployment, sandbox: JuheSandbox) -> None:
    outcomes = {}
    for label, key in (("good", APPKEY), ("bad", "not-the-key")):
        body = {
            "connection_id": f"juhe_{label}",
            "conn_type": "juhe_sms",
            "host": sandbox.url,
            "password": key,
        }
        response = airflow.post("/api/v2/connections/test", body)
        outcomes[label] = (
            response.status_code,
            response.json().get("status"),
            response.json().get("message", ""),
        )
    check(
        "POST /api/v2/connections/test: good key passes, bad key fails",
        outcomes["good"][:2] == (200, True) and outcomes["bad"][:2] == (200, False),
        f"good={outcomes['good'][1]} ({outcomes['good'][2][:60]}), bad={outcomes['bad'][1]} ({outcomes['bad'][2][:60]})",
    )


def check_examples(airflow: Deployment, sandbox: JuheSandbox, templates: Templates) -> dict[str, str]:
    """
    Every example DAG triggered without a logical date; the alert example fails once first (20 tasks
    fail together: one SMS), then runs green (one recovery SMS). Returns the run ids, the failed
    alert run under ``"alert_storm"``.
    """
    flow = airflow.trigger("example_juhe_template_flow")
    states_seen: set[str] = set()

    def sensor_state() -> bool:
        for ti in airflow.task_instances("example_juhe_template_flow", flow):
            if ti["task_id"] == "wait_for_approval" and ti["state"]:
                states_seen.add(ti["state"])
        return airflow.run_state("example_juhe_template_flow", flow) in ("success", "failed")

    # The sensor defers before the storm takes every slot: behind it, the template's review (the
    # sandbox's approve_after) could end before the sensor's first look.
    arrived("the template sensor to defer", lambda: sensor_state() or "deferred" in states_seen, 60)
    alert_failed = airflow.trigger("example_juhe_failure_alert")
    runs = {
        "example_juhe_template_flow": flow,
        "example_juhe_customer_notifications": airflow.trigger("example_juhe_customer_notifications"),
    }
    wait_for("the template flow", sensor_state, 150, interval=0.3)
    alert_state = airflow.wait_run("example_juhe_failure_alert", alert_failed)
    # The DAG-level callback runs in the DAG processor once the run has failed: wait for its line.
    arrived(
        "the DAG processor's failure callback",
        lambda: airflow.processor_log_has("example_juhe_failure_alert.py", "Alert 'example_juhe_"),
        60,
    )

    def on_call(tpl_id: int) -> list[dict[str, Any]]:
        return [m for m in sandbox.messages() if m["mobiles"] == [ON_CALL] and m["tpl_id"] == tpl_id]

    alerts = on_call(templates.alert)
    failed_tasks = sum(ti["state"] == "failed" for ti in airflow.task_instances(EXAMPLES[2], alert_failed))
    check(
        "failure alert, warehouse down (20 tasks fail; task callbacks in workers, DAG callback in the DAG processor)",
        alert_state == "failed" and failed_tasks == 20 and len(alerts) == 1,
        f"run {alert_state}, {failed_tasks} tasks failed, {len(alerts)} SMS to on-call (promised: 1)",
    )
    runs["example_juhe_failure_alert"] = airflow.trigger(
        "example_juhe_failure_alert", {"warehouse_down": False}
    )
    for dag_id, run_id in runs.items():
        state = airflow.wait_run(dag_id, run_id)
        check(f"{dag_id} triggered without a logical date", state == "success", f"run {state}")
    arrived("the recovery SMS", lambda: on_call(templates.recovery), 60)
    recoveries, alerts = on_call(templates.recovery), on_call(templates.alert)
    check(
        "failure alert recovers: one recovery SMS with the held-back count (DAG callback in the DAG processor)",
        len(recoveries) == 1
        and re.search(r"合并告警\d+条", recoveries[0]["text"]) is not None
        and len(alerts) == 1,
        f"recovery SMS {[m['text'] for m in recoveries]}; alert SMS of the episode {len(alerts)}",
    )
    sensor_logs = (airflow.home / "logs" / "dag_id=example_juhe_template_flow").rglob(
        "task_id=wait_for_approval/*"
    )
    trigger_lines = [
        line
        for line in read_text([airflow.home / "triggerer.log", *sensor_logs]).splitlines()
        if "JuheTemplateApprovedTrigger" in line or "still in review" in line
    ]
    check(
        "template flow's sensor went through the real triggerer",
        "deferred" in states_seen and bool(trigger_lines),
        f"sensor states seen {sorted(states_seen)}; {len(trigger_lines)} trigger log lines",
    )
    summary = airflow.xcom(
        "example_juhe_customer_notifications", runs["example_juhe_customer_notifications"], "report"
    )
    check("customer notifications report", summary.get("sent", 0) > 0, json.dumps(summary))
    return {**runs, "alert_storm": alert_failed}


def start_campaign(airflow: Deployment) -> tuple[str, int]:
    """
    The repayment example, its send window opening CAMPAIGN_WAIT seconds from now in Shanghai;
    returns once its task has deferred (or finished, which its check then reports).
    """
    opens = int(time.time()) + CAMPAIGN_WAIT

    def shanghai(moment: int) -> str:
        return time.strftime("%H:%M:%S", time.gmtime(moment + 8 * 3600))  # UTC+8, no DST

    window = {"window_start": shanghai(opens), "window_end": shanghai(opens + 3600)}
    run_id = airflow.trigger(CAMPAIGN_DAG, window)
    # Deferred before the other checks take every worker slot: its start must not run into the opening.
    wait_for(
        "the campaign to defer",
        lambda: (
            {ti["state"] for ti in airflow.task_instances(CAMPAIGN_DAG, run_id)}
            & {"deferred", "success", "failed"}
        ),
        CAMPAIGN_WAIT,
        interval=0.3,
    )
    return run_id, opens


def check_campaign(airflow: Deployment, sandbox: JuheSandbox, run_id: str, opens: int, tpl_id: int) -> None:
    states_seen: set[str] = set()

    def finished() -> bool:
        states_seen.update(ti["state"] for ti in airflow.task_instances(CAMPAIGN_DAG, run_id) if ti["state"])
        return airflow.run_state(CAMPAIGN_DAG, run_id) in ("success", "failed")

    wait_for("the repayment campaign", finished, CAMPAIGN_WAIT + 90, interval=0.3)
    state = airflow.run_state(CAMPAIGN_DAG, run_id)
    sent = [m for m in sandbox.messages() if m["tpl_id"] == tpl_id]
    (ti,) = airflow.task_instances(CAMPAIGN_DAG, run_id)
    # The deferral leaves the task's own line and the trigger's log beside the try's log.
    task_log = airflow.task_log(CAMPAIGN_DAG, run_id, "task_id=send_reminders/attempt=1.log")
    trigger_log = airflow.task_log(CAMPAIGN_DAG, run_id, "task_id=send_reminders/attempt=1.log.trigger.*")
    deferred = "is closed" in task_log and "trigger starting" in trigger_log
    first = min(m["at"] for m in sent) if sent else float("nan")
    check(
        "campaign outside its send window deferred in the real triggerer (no worker slot), sent at the opening",
        state == "success" and deferred and ti["try_number"] == 1 and first >= opens,
        f"run {state}, try {ti['try_number']}, deferral logged by the task and the triggerer: {deferred}, "
        f"states seen {sorted(states_seen)}, {len(sent)} calls, the first {first - opens:+.1f} s after the opening",
    )
    summary = airflow.xcom(CAMPAIGN_DAG, run_id, "send_reminders")
    report = Path(urlparse(summary.get("report") or "file:///nonexistent").path)
    rows = report.read_text(encoding="utf-8").splitlines()[1:] if report.is_file() else []
    statuses = Counter(line.split(",")[1] for line in rows)
    # Where the summary counts repeated rows (duplicate_count), each has a report row of its own.
    duplicates = summary.get("duplicate_count", 0)
    expected = Counter({"sent": 5, "invalid": 2, "suppressed": 1, "duplicate": duplicates})
    check(
        "campaign: personalised texts, one opt-out, invalid rows, a report row per customer",
        (summary["sent"], summary["suppressed"], summary["invalid_count"]) == (5, 1, 2)
        and len({m["text"] for m in sent}) == 5
        and +statuses == +expected,
        f"sent {summary['sent']}, suppressed {summary['suppressed']}, invalid {summary['invalid_count']}, "
        f"duplicates {duplicates}; {len({m['text'] for m in sent})} distinct texts; "
        f"report {report}: {dict(sorted(statuses.items()))}",
    )


def check_alert_race(airflow: Deployment, sandbox: JuheSandbox, tpl_id: int, number: str) -> None:
    """
    RACE_TASKS tasks raise at one instant, each paging ``number`` with ``tpl_id`` (both fresh: no
    earlier caps) from its own alert episode under ``max_per_number={"minute": 1}``: the cap must
    hold across the race. Only SMS of that template count: no example's customer can blur it.
    """
    run_id = airflow.trigger(RACE_DAG, {"on_call": number, "tpl_id": tpl_id})
    state = airflow.wait_run(RACE_DAG, run_id, timeout=180)
    # Callbacks run after a task reports its state, until its process ends (the supervisor kills
    # it after [core] task_success_overtime): wait for every process's end, then count.
    ids = {ti["id"] for ti in airflow.task_instances(RACE_DAG, run_id)}
    wait_for("every race task's process to end", lambda: ids <= airflow.finished_workloads(), 90)
    log = airflow.task_log(RACE_DAG, run_id)
    starts = [(float(s), int(at)) for s, at in re.findall(r"e2e race: (-?[\d.]+) s before (\d+)", log)]
    slack = [s for s, _ in starts]
    sent = [m for m in sandbox.messages() if number in m["mobiles"] and m["tpl_id"] == tpl_id]
    unlogged = [m["sid"] for m in sent if m["sid"] not in log]  # sent by no task's notifier
    on_time = len(starts) == RACE_TASKS and len({at for _, at in starts}) == 1 and min(slack) >= 0
    check(
        f"alert race: {RACE_TASKS} tasks fail at one instant, each its own group_key, one number capped at 1/minute",
        state == "failed" and on_time and len(sent) == 1,
        f"run {state}; {len(starts)} tasks raised together at {starts[0][1] if starts else '?'} "
        f"(each waiting {min(slack, default=0):.1f}–{max(slack, default=0):.1f} s for it); "
        f"{len(sent)} SMS to the number (promised 1), {len({m['sid'] for m in sent})} distinct sids, "
        f"{len(unlogged)} in no task's log {unlogged}; callbacks finished in "
        f"{log.count('e2e race: callbacks done')} of {RACE_TASKS} tasks",
    )


def check_overtime(airflow: Deployment) -> None:
    """A callback still running [core] task_success_overtime after its task's end is killed unfinished."""
    logs = airflow.component_logs()
    killed = set(re.findall(r"overtime reached; terminating process.*?ti_id=UUID\('([^']+)", logs))
    dags = Counter(
        path.relative_to(airflow.home / "logs").parts[0].removeprefix("dag_id=")
        for path in (airflow.home / "logs").glob("dag_id=*/run_id=*/task_id=*/attempt=*.log")
        if any(ti_id in path.read_text(errors="replace") for ti_id in killed)
    )
    check(
        f"no task callback killed by the supervisor's task_success_overtime ({TASK_SUCCESS_OVERTIME} s after "
        "the task's end: Airflow's default)",
        "overtime reached" not in logs,
        f"{logs.count('overtime reached')} task processes killed" + (f": {dict(dags)}" if dags else ""),
    )


@dataclass(frozen=True)
class KilledSend:
    """A bulk send killed mid-send, as it ended after the scheduler's retry."""

    run_id: str
    state: str
    try_number: int
    killed_after: int
    reached: list[str]
    summary: dict[str, Any]


def killed_send(
    airflow: Deployment, sandbox: JuheSandbox, tpl_id: int, numbers: list[str], kill: Callable[[int], None]
) -> KilledSend:
    """A bulk send of ``numbers``; ``kill`` gets the task process's id once 6 calls went out."""
    before = len(sandbox.messages())
    sandbox.inject("latency", seconds=0.15, times=None, path="send.php")
    airflow.pid_file.unlink(missing_ok=True)
    run_id = airflow.trigger(BULK_DAG, {"mobiles": numbers, "tpl_id": tpl_id})
    wait_for("6 batches of the bulk send", lambda: len(sandbox.messages()) - before >= 6, 120, interval=0.02)
    kill(int(airflow.pid_file.read_text()))
    killed_after = len(sandbox.messages()) - before
    state = airflow.wait_run(BULK_DAG, run_id)
    sandbox.clear_faults()
    (ti,) = airflow.task_instances(BULK_DAG, run_id)
    reached = [n for m in sandbox.messages()[before:] for n in m["mobiles"]]
    summary = airflow.xcom(BULK_DAG, run_id, "send")
    return KilledSend(run_id, state, ti["try_number"], killed_after, reached, summary)


def check_killed_send(what: str, outcome: KilledSend, numbers: list[str]) -> None:
    reached, summary = outcome.reached, outcome.summary
    check(
        f"{what} mid-send, then the scheduler's retry",
        outcome.state == "success" and outcome.try_number == 2 and len(reached) == len(set(reached)),
        f"killed after {outcome.killed_after} calls; run {outcome.state}, try {outcome.try_number}; "
        f"{len(reached)} numbers reached the sandbox, {len(reached) - len(set(reached))} twice",
    )
    total = len(numbers)
    accounted = (
        summary["sent"] + summary["unknown_count"] + summary["failed_count"] + summary["invalid_count"]
    )
    bound = 2 * BULK_WORKERS * BULK_BATCH
    never_sent = set(numbers) - set(reached) - set(summary["unknown"])
    check(
        f"{what}: the retry sent every never-started batch; unknown within 2·W·B; summary accounts for all",
        summary["requested"] == total == accounted and summary["unknown_count"] <= bound and not never_sent,
        f"sent {summary['sent']}, unknown {summary['unknown_count']} (bound {bound}), "
        f"accounted {accounted}/{total}, never sent nor unknown: {len(never_sent)}",
    )


def check_clear(airflow: Deployment, sandbox: JuheSandbox, run_id: str) -> None:
    before = len(sandbox.messages())
    (ti,) = airflow.task_instances(BULK_DAG, run_id)
    response = airflow.post(
        f"/api/v2/dags/{BULK_DAG}/clearTaskInstances",
        {
            "dry_run": False,
            "dag_run_id": run_id,
            "task_ids": ["send"],
            "only_failed": False,
            "reset_dag_runs": True,
        },
    )
    response.raise_for_status()
    wait_for(
        "the cleared run to start again", lambda: airflow.run_state(BULK_DAG, run_id) != "success", 30, 0.2
    )
    state = airflow.wait_run(BULK_DAG, run_id)
    (cleared,) = airflow.task_instances(BULK_DAG, run_id)
    check(
        "REST clearTaskInstances on the finished send: nothing re-sent",
        state == "success"
        and len(sandbox.messages()) == before
        and cleared["try_number"] == ti["try_number"] + 1,
        f"run {state}, try {cleared['try_number']}, {len(sandbox.messages()) - before} new calls",
    )


def check_log_files(home: Path) -> None:
    """Task, trigger and DAG-processor logs under logs/, and every process's own output beside them."""
    files = [p for p in home.rglob("*") if p.is_file() and p.suffix in (".log", ".json", "")]
    key_hits = []
    number_lines = []
    for path in files:
        text = path.read_text(errors="replace")
        if APPKEY in text:
            key_hits.append(str(path.relative_to(home)))
        number_lines += [
            line[:200]
            for line in text.splitlines()
            if "airflow_provider_juhe" in line and NUMBER.search(line)
        ]
    check(
        "app key in task, trigger and component logs",
        not key_hits,
        f"{len(key_hits)} hits in {len(files)} files" + (f": {key_hits[:3]}" if key_hits else ""),
    )
    check(
        "unmasked numbers in the provider's own log lines",
        not number_lines,
        f"{len(number_lines)} lines" + (f": {number_lines[:2]}" if number_lines else ""),
    )


_BASE64 = re.compile(rb"[A-Za-z0-9+/]{16,}={0,2}")


def key_hits(blob: bytes) -> int:
    """The app key's occurrences in ``blob``, also inside base64 runs (how Celery carries message bodies)."""
    hits = blob.count(APPKEY.encode())
    for run in _BASE64.findall(blob):
        with contextlib.suppress(binascii.Error, ValueError):
            hits += base64.b64decode(run + b"=" * (-len(run) % 4)).count(APPKEY.encode())
    return hits


def check_stored(airflow: Deployment) -> None:
    """No customer number in the stored rendered fields; the app key in no place data rests."""
    rendered, places = airflow.stored()
    exposed = [number for text in rendered for number in NUMBER.findall(text)]
    check(
        "customers' numbers in the stored rendered template fields",
        not exposed,
        f"{len(exposed)} numbers in {len(rendered)} records (the bulk sends passed theirs through a template)",
    )
    for place, blob in places.items():
        hits = key_hits(blob)
        check(f"app key in {place}", hits == 0, f"{hits} hits in {len(blob):,} bytes")


# -- the tier's skeleton ---------------------------------------------------------------------------------


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run_tier(
    make: type[Deployment],
    scenario: Callable[[Deployment, JuheSandbox, Templates], None],
    budget: float,
) -> int:
    """
    Start a tier's deployment in a throwaway AIRFLOW_HOME, run its scenario, stop everything it
    started whatever happens (Ctrl-C included), check what it left behind; 0 if every check passed.
    """
    global _deadline
    signal.signal(signal.SIGTERM, _interrupt)  # a CI timeout's SIGTERM stops the tier's processes too
    started = time.monotonic()
    _deadline = started + budget  # every wait ends by then: the tier stays within its budget
    home = Path(tempfile.mkdtemp(prefix="juhe-e2e-"))
    (home / "dags").mkdir()
    for source in [*(REPO / "example_dags").iterdir(), *(REPO / "e2e" / "dags").glob("*.py")]:
        if source.suffix in (".py", ".csv", ".txt"):
            shutil.copy(source, home / "dags" / source.name)
    installed = Path(airflow_provider_juhe.__file__).resolve()
    print(f"provider {airflow_provider_juhe.__version__} from {installed.parent}", flush=True)
    print(f"AIRFLOW_HOME {home}", flush=True)
    check(
        "provider imported from the installed wheel, not the source tree",
        "site-packages" in installed.parts and installed.parent != REPO / "airflow_provider_juhe",
    )
    airflow = None
    with JuheSandbox(appkey=APPKEY, approve_after=35) as sandbox:  # in review at the sensor's first look
        try:
            airflow = make(home, sandbox)
            templates = configure(airflow, sandbox)
            airflow.start()
            wanted = {*EXAMPLES, BULK_DAG, CAMPAIGN_DAG, RACE_DAG, DEADLINE_DAG}
            wait_for(
                "the DAGs to be parsed",
                lambda: wanted <= {d["dag_id"] for d in airflow.get("/api/v2/dags", limit=100)["dags"]},
                90,
                interval=1,
            )
            check("components healthy, DAGs parsed", True, f"after {time.monotonic() - started:.0f} s")
            check_registration(airflow)
            check_connection_test(airflow, sandbox)
            scenario(airflow, sandbox, templates)
        except BaseException as error:  # Ctrl-C too: recorded, then everything is stopped below
            traceback.print_exc()
            check("the tier ran to its end", False, f"{type(error).__name__}: {error}")
        finally:
            # What the sandbox received, for reading a failed check afterwards (numbers in clear:
            # the tier's own throwaway data, beside its logs).
            with open(home / "sandbox-messages.jsonl", "w", encoding="utf-8") as out:
                out.writelines(json.dumps(m, ensure_ascii=False) + "\n" for m in sandbox.messages())
            if airflow is not None:
                stop_started = time.monotonic()
                alive = airflow.stop()
                check(
                    "every component stopped",
                    not alive,
                    f"in {time.monotonic() - stop_started:.1f} s" + (f"; alive: {alive}" if alive else ""),
                )
                try:
                    check_overtime(airflow)
                    check_log_files(home)
                    check_stored(airflow)
                except Exception as error:
                    check("the stored data could be read", False, f"{type(error).__name__}: {error}")
                finally:
                    airflow.close()
    passed = sum(ok for _, ok, _ in results)
    failed = len(results) - passed
    print(f"{make.tier}: wall time {time.monotonic() - started:.0f} s; logs under {home}")
    print(f"{make.tier}: {passed} passed, {failed} failed")
    return 1 if failed else 0
