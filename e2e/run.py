"""
The end-to-end tier: the provider as installed from its wheel, inside a real Airflow deployment.

It starts the sandbox and Airflow's components one by one (api-server, scheduler, dag-processor,
triggerer; SQLite, LocalExecutor) in a throwaway AIRFLOW_HOME on 127.0.0.1 with free ports, drives
them through the REST API as an operator would, prints each check, and stops everything it started
(by process group), whatever happens. Last line: ``e2e: N passed, M failed``.

Run by ``make e2e`` with the e2e virtualenv's Python, from outside the source tree, so that
``airflow_provider_juhe`` is the installed wheel.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import requests

import airflow_provider_juhe
from airflow_provider_juhe.sandbox import JuheSandbox

REPO = Path(__file__).resolve().parents[1]
APPKEY = "e2e-appkey-7c41d9b02f6e4a58"
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
EXAMPLES = ("example_juhe_template_flow", "example_juhe_customer_notifications", "example_juhe_failure_alert")
BULK_DAG = "e2e_juhe_bulk_send"
CAMPAIGN_DAG = "example_juhe_repayment_reminders"
CAMPAIGN_WAIT = 40  # seconds from the trigger until the campaign's send window opens
BULK_NUMBERS = [f"139{n:08d}" for n in range(10_000_000, 10_000_300)]
ON_CALL = "15000009999"  # no example sends to it: every SMS it gets is an alert
DEADLINE = time.monotonic() + 270  # every wait below ends by then: the tier stays under 5 minutes

results: list[tuple[str, bool, str]] = []


def check(name: str, ok: bool, detail: str = "") -> bool:
    results.append((name, ok, detail))
    print(f"{'PASS' if ok else 'FAIL'} {name}{': ' + detail if detail else ''}", flush=True)
    return ok


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(what: str, probe: Callable[[], Any], timeout: float, interval: float = 0.5) -> Any:
    """Poll ``probe`` until it returns something truthy; raise after ``timeout`` (or the tier's deadline)."""
    until = min(time.monotonic() + timeout, DEADLINE)
    last_error: Exception | None = None
    while time.monotonic() < until:
        try:
            value = probe()
        except (requests.RequestException, OSError, KeyError, ValueError) as error:
            value, last_error = None, error
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(
        f"timed out waiting for {what}" + (f" (last error: {last_error})" if last_error else "")
    )


class Deployment:
    """Airflow's components in their own process groups, with their output in files under ``home``."""

    def __init__(self, home: Path, sandbox: JuheSandbox) -> None:
        self.home = home
        self.port = free_port()
        self.api = f"http://127.0.0.1:{self.port}"
        self.processes: dict[str, subprocess.Popen] = {}
        self.pid_file = home / "send.pid"
        airflow_bin = Path(sys.executable).with_name("airflow")
        self.airflow = str(airflow_bin)
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "JUHE"))},
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__FERNET_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.api}/execution/",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__BASE_URL": self.api,
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API_AUTH__JWT_SECRET": base64.urlsafe_b64encode(os.urandom(32)).decode(),
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",  # only the runs this tier triggers
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "30",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__TRIGGERER__CAPACITY": "50",
            "AIRFLOW_CONN_JUHE_SMS_DEFAULT": sandbox.connection_json(),
            "JUHE_E2E_PID_FILE": str(self.pid_file),
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }

    def processor_log_has(self, text: str) -> bool:
        logs = (self.home / "logs" / "dag_processor").rglob("example_juhe_failure_alert.py.log")
        return any(text in path.read_text(errors="replace") for path in logs)

    def set_variables(self, **variables: str) -> None:
        for key, value in variables.items():
            self.env[f"AIRFLOW_VAR_{key.upper()}"] = value

    def migrate(self) -> None:
        subprocess.run(
            [self.airflow, "db", "migrate"],
            env=self.env,
            cwd=self.home,
            check=True,
            capture_output=True,
            timeout=120,
        )

    def start(self) -> None:
        for name in COMPONENTS:
            log = open(self.home / f"{name}.log", "w")  # noqa: SIM115 - closed with the process
            self.processes[name] = subprocess.Popen(
                [self.airflow, name],
                env=self.env,
                cwd=self.home,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stopped with every child it forked
            )

    def stop(self) -> None:
        for process in self.processes.values():
            _signal_group(process, signal.SIGTERM)
        until = time.monotonic() + 20
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.1, until - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)
                process.wait(timeout=5)
        for process in self.processes.values():  # task processes left in a group
            _signal_group(process, signal.SIGKILL)

    # -- the REST API -------------------------------------------------------------------------------

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


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)


# -- the checks -----------------------------------------------------------------------------------------


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


def check_examples(airflow: Deployment, sandbox: JuheSandbox) -> None:
    """Every example DAG triggered without a logical date; the alert example also fails once first."""
    alert_failed = airflow.trigger("example_juhe_failure_alert")
    runs = {
        "example_juhe_template_flow": airflow.trigger("example_juhe_template_flow"),
        "example_juhe_customer_notifications": airflow.trigger("example_juhe_customer_notifications"),
    }
    states_seen: set[str] = set()

    def sensor_state() -> bool:
        for ti in airflow.task_instances("example_juhe_template_flow", runs["example_juhe_template_flow"]):
            if ti["task_id"] == "wait_for_approval" and ti["state"]:
                states_seen.add(ti["state"])
        return airflow.run_state("example_juhe_template_flow", runs["example_juhe_template_flow"]) in (
            "success",
            "failed",
        )

    wait_for("the template flow", sensor_state, 150, interval=0.3)
    alert_state = airflow.wait_run("example_juhe_failure_alert", alert_failed)
    alerts = [m for m in sandbox.messages() if m["mobiles"] == [ON_CALL]]
    check(
        "failure alert, warehouse down (20 tasks fail; task callbacks in workers, DAG callback in the DAG processor)",
        alert_state == "failed" and len(alerts) == 1,
        f"run {alert_state}, {len(alerts)} SMS to on-call (promised: 1)",
    )
    # The DAG-level callback runs in the DAG processor once the run has failed: wait for its line.
    wait_for(
        "the DAG processor's failure callback", lambda: airflow.processor_log_has("Alert 'example_juhe_"), 60
    )
    runs["example_juhe_failure_alert"] = airflow.trigger(
        "example_juhe_failure_alert", {"warehouse_down": False}
    )
    for dag_id, run_id in runs.items():
        state = airflow.wait_run(dag_id, run_id)
        check(f"{dag_id} triggered without a logical date", state == "success", f"run {state}")
    wait_for(
        "the recovery SMS", lambda: len([m for m in sandbox.messages() if m["mobiles"] == [ON_CALL]]) > 1, 60
    )
    recoveries = [m for m in sandbox.messages() if m["mobiles"] == [ON_CALL]][1:]
    check(
        "failure alert recovers: one recovery SMS with the held-back count (DAG callback in the DAG processor)",
        len(recoveries) == 1 and re.search(r"合并告警\d+条", recoveries[0]["text"]) is not None,
        f"{[m['text'] for m in recoveries]}",
    )
    sensor_logs = (airflow.home / "logs" / "dag_id=example_juhe_template_flow").rglob(
        "task_id=wait_for_approval/*"
    )
    trigger_lines = [
        line
        for path in [airflow.home / "triggerer.log", *sensor_logs]
        for line in path.read_text(errors="replace").splitlines()
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


def start_campaign(airflow: Deployment) -> tuple[str, int]:
    """The repayment example, its send window opening CAMPAIGN_WAIT seconds from now in Shanghai."""
    opens = int(time.time()) + CAMPAIGN_WAIT

    def shanghai(moment: int) -> str:
        return time.strftime("%H:%M:%S", time.gmtime(moment + 8 * 3600))  # UTC+8, no DST

    window = {"window_start": shanghai(opens), "window_end": shanghai(opens + 3600)}
    return airflow.trigger(CAMPAIGN_DAG, window), opens


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
    folder = airflow.home / "logs" / f"dag_id={CAMPAIGN_DAG}" / f"run_id={run_id}" / "task_id=send_reminders"
    task_log = "".join(path.read_text(errors="replace") for path in folder.glob("attempt=1.log"))
    trigger_log = "".join(path.read_text(errors="replace") for path in folder.glob("attempt=1.log.trigger.*"))
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
    statuses = sorted(line.split(",")[1] for line in rows)
    check(
        "campaign: personalised texts, one opt-out, invalid rows, a report row per customer",
        (summary["sent"], summary["suppressed"], summary["invalid_count"]) == (5, 1, 2)
        and len({m["text"] for m in sent}) == 5
        and statuses == ["invalid"] * 2 + ["sent"] * 5 + ["suppressed"],
        f"sent {summary['sent']}, suppressed {summary['suppressed']}, invalid {summary['invalid_count']}; "
        f"{len({m['text'] for m in sent})} distinct texts; report {report}: {statuses}",
    )


def check_killed_send(airflow: Deployment, sandbox: JuheSandbox, tpl_id: int) -> str:
    """kill -9 of the task process mid-send; the scheduler's retry; every number at most once."""
    before = len(sandbox.messages())
    sandbox.inject("latency", seconds=0.15, times=None, path="send.php")
    airflow.pid_file.unlink(missing_ok=True)
    run_id = airflow.trigger(BULK_DAG, {"mobiles": BULK_NUMBERS, "tpl_id": tpl_id})
    wait_for("6 batches of the bulk send", lambda: len(sandbox.messages()) - before >= 6, 120, interval=0.02)
    pid = int(airflow.pid_file.read_text())
    os.kill(pid, signal.SIGKILL)
    killed_after = len(sandbox.messages()) - before
    state = airflow.wait_run(BULK_DAG, run_id)
    sandbox.clear_faults()
    reached = [n for m in sandbox.messages()[before:] for n in m["mobiles"]]
    (ti,) = airflow.task_instances(BULK_DAG, run_id)
    summary = airflow.xcom(BULK_DAG, run_id, "send")
    accounted = (
        summary["sent"] + summary["unknown_count"] + summary["failed_count"] + summary["invalid_count"]
    )
    check(
        "kill -9 of the task process mid-send, then the scheduler's retry",
        state == "success" and ti["try_number"] == 2 and len(reached) == len(set(reached)),
        f"killed after {killed_after} calls; run {state}, try {ti['try_number']}; "
        f"{len(reached)} numbers reached the sandbox, {len(reached) - len(set(reached))} twice",
    )
    bound = 2 * 2 * 10  # 2·W batches of B numbers
    never_started = set(BULK_NUMBERS) - set(reached) - set(summary["unknown"])
    check(
        "retry sent every never-started batch; unknown within 2·W·B; summary accounts for all 300",
        summary["requested"] == 300 == accounted and summary["unknown_count"] <= bound and not never_started,
        f"sent {summary['sent']}, unknown {summary['unknown_count']} (bound {bound}), "
        f"accounted {accounted}/300, never sent nor unknown: {len(never_started)}",
    )
    return run_id


def check_clear(airflow: Deployment, sandbox: JuheSandbox, run_id: str) -> None:
    before = len(sandbox.messages())
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
    (ti,) = airflow.task_instances(BULK_DAG, run_id)
    check(
        "REST clearTaskInstances on the finished send: nothing re-sent",
        state == "success" and len(sandbox.messages()) == before and ti["try_number"] == 3,
        f"run {state}, try {ti['try_number']}, {len(sandbox.messages()) - before} new calls",
    )


NUMBER = re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)")


def check_logs(airflow: Deployment) -> None:
    # Task, trigger and DAG-processor logs under logs/, the components' own output beside them.
    files = [p for p in airflow.home.rglob("*") if p.is_file() and p.suffix in (".log", ".json", "")]
    key_hits = []
    number_lines = []
    for path in files:
        text = path.read_text(errors="replace")
        if APPKEY in text:
            key_hits.append(str(path.relative_to(airflow.home)))
        for line in text.splitlines():
            if "airflow_provider_juhe" in line and NUMBER.search(line):
                number_lines.append(line[:200])
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
    db_hits = []
    with sqlite3.connect(airflow.home / "airflow.db") as db:
        rows = 0
        for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'"):
            for row in db.execute(f'SELECT * FROM "{table}"'):
                rows += 1
                if any(APPKEY in str(value) for value in row):
                    db_hits.append(table)
    with sqlite3.connect(airflow.home / "airflow.db") as db:
        rendered = [
            str(row) for row in db.execute("SELECT rendered_fields FROM rendered_task_instance_fields")
        ]
    exposed = [number for text in rendered for number in NUMBER.findall(text)]
    check(
        "customers' numbers in the stored rendered template fields",
        not exposed,
        f"{len(exposed)} numbers in {len(rendered)} records (the bulk send passed 300 through a template)",
    )
    raw = (airflow.home / "airflow.db").read_bytes().count(APPKEY.encode())
    check(
        "app key in the metadata DB",
        not db_hits and raw == 0,
        f"{len(db_hits)} of {rows} rows, {raw} in the raw file" + (f": {db_hits[:3]}" if db_hits else ""),
    )


def main() -> int:
    started = time.monotonic()
    home = Path(tempfile.mkdtemp(prefix="juhe-e2e-"))
    (home / "dags").mkdir()
    for source in [*(REPO / "example_dags").iterdir(), *(REPO / "e2e" / "dags").glob("*.py")]:
        if source.suffix in (".py", ".csv", ".txt"):
            shutil.copy(source, home / "dags" / source.name)
    installed = Path(airflow_provider_juhe.__file__).resolve()
    print(f"e2e: provider {airflow_provider_juhe.__version__} from {installed.parent}", flush=True)
    print(f"e2e: AIRFLOW_HOME {home}", flush=True)
    check(
        "provider imported from the installed wheel, not the source tree",
        "site-packages" in installed.parts and installed.parent != REPO / "airflow_provider_juhe",
    )
    airflow = None
    with JuheSandbox(appkey=APPKEY, approve_after=35) as sandbox:  # the sensor defers, even behind 20 tasks
        try:
            airflow = Deployment(home, sandbox)
            airflow.set_variables(
                juhe_on_call_mobiles=f"{ON_CALL}, 1380013800",
                juhe_alert_tpl_id=str(
                    sandbox.add_template("#dag#：#task#失败，另有#more#条告警已合并，请处理", "运维")
                ),
                juhe_recovery_tpl_id=str(sandbox.add_template("#dag#已恢复，期间合并告警#more#条", "运维")),
                juhe_reminder_tpl_id=str(
                    sandbox.add_template("您的账单将于#date#到期，请按时还款。", "银行")
                ),
            )
            bulk_tpl_id = sandbox.add_template("您的账单已出，请按时还款。", "银行")
            campaign_tpl_id = sandbox.add_template(
                "尊敬的#name#，您尾号#card#的信用卡账单#amount#元将于#due_date#到期，请按时还款。", "银行"
            )
            airflow.set_variables(
                juhe_repayment_tpl_id=str(campaign_tpl_id), juhe_report_folder=(home / "reports").as_uri()
            )
            airflow.migrate()
            airflow.start()
            wait_for("every component healthy", airflow.healthy, 120, interval=1)
            wanted = {*EXAMPLES, BULK_DAG, CAMPAIGN_DAG}
            wait_for(
                "the DAGs to be parsed",
                lambda: wanted <= {d["dag_id"] for d in airflow.get("/api/v2/dags", limit=100)["dags"]},
                90,
                interval=1,
            )
            check("components healthy, DAGs parsed", True, f"after {time.monotonic() - started:.0f} s")
            check_registration(airflow)
            check_connection_test(airflow, sandbox)
            campaign_run, opens = start_campaign(airflow)
            check_examples(airflow, sandbox)
            check_campaign(airflow, sandbox, campaign_run, opens, campaign_tpl_id)
            run_id = check_killed_send(airflow, sandbox, bulk_tpl_id)
            check_clear(airflow, sandbox, run_id)
        except Exception as error:
            traceback.print_exc()
            check("the tier ran to its end", False, f"{type(error).__name__}: {error}")
        finally:
            if airflow is not None:
                stop_started = time.monotonic()
                airflow.stop()
                alive = [name for name, p in airflow.processes.items() if p.poll() is None]
                check("every component stopped", not alive, f"in {time.monotonic() - stop_started:.1f} s")
                check_logs(airflow)
    passed = sum(ok for _, ok, _ in results)
    failed = len(results) - passed
    print(f"e2e: wall time {time.monotonic() - started:.0f} s; logs under {home}")
    print(f"e2e: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
