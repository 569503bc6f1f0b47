"""
`make demo`: start the sandbox, run two example DAGs with real Airflow (`airflow dags test`), show what
happened: example_juhe_template_flow (submit, approval, a send per carrier), then
example_juhe_repayment_reminders (a personalised campaign with opt-outs, invalid rows and a report).
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from airflow_provider_juhe.mobiles import mask_mobile
from airflow_provider_juhe.sandbox import JuheSandbox

REPO = Path(__file__).resolve().parents[1]
DEMO_HOME = REPO / ".demo" / "airflow"
DAG_ID = "example_juhe_template_flow"
CAMPAIGN_DAG_ID = "example_juhe_repayment_reminders"
REPAYMENT_TEXT = "尊敬的#name#，您尾号#card#的信用卡账单#amount#元将于#due_date#到期，请按时还款。"
CARRIERS = ("all", "mobile", "unicom", "telecom")  # a template's operation
AIRFLOW = str(Path(sys.executable).with_name("airflow"))


def airflow(*args: str, env: dict[str, str], log: Path | None = None) -> str:
    """Run the airflow CLI; its chatter goes to a log file, not the screen."""
    result = subprocess.run([AIRFLOW, *args], env=env, text=True, capture_output=True)
    if log is not None:
        log.write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        sys.exit(f"airflow {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return result.stdout


def json_rows(output: str) -> list[dict]:
    """The JSON line of a CLI answer (warnings may be printed before it)."""
    return json.loads(next(line for line in output.splitlines() if line.startswith("[")))


def main() -> None:
    DEMO_HOME.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(DEMO_HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "example_dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }
    print(f"Airflow home: {DEMO_HOME} (SQLite)")
    airflow("db", "migrate", env=env)

    with JuheSandbox(appkey="demo-appkey", approve_after=2) as sandbox:
        env["AIRFLOW_CONN_JUHE_SMS_DEFAULT"] = sandbox.connection_json()
        print(f"Juhe sandbox at {sandbox.url}; templates are approved 2 s after submission")
        run = run_dag(DAG_ID, env)

        print("\nTemplates on the sandbox account:")
        for template in sandbox.state.templates.values():
            carrier = CARRIERS[template.operation]
            state = {1: "rejected", 2: "reviewing", 3: "approved"}.get(template.state, template.state)
            print(f"  {template.tpl_id} {carrier:8s} {state}: 【{template.signature}】{template.content}")

        print("\nWhat the sandbox received (one send.php call per carrier group):")
        for message in sandbox.messages():
            numbers = ", ".join(mask_mobile(m) for m in message["mobiles"])
            carrier = CARRIERS[sandbox.state.templates[message["tpl_id"]].operation]
            print(
                f"  {carrier:8s} tpl {message['tpl_id']} sid {message['sid']} fee {message['fee']} -> {numbers}"
            )
            print(f"      {message['text']}")
        campaign = personalised_campaign(sandbox, env)
    if run["state"] != "success" or campaign["state"] != "success":
        sys.exit(1)


def run_dag(dag_id: str, env: dict[str, str], conf: dict | None = None) -> dict:
    """`airflow dags test`, then the run's task states; returns the run."""
    print(f"\nRunning `airflow dags test {dag_id}` ...")
    started = time.monotonic()
    log = DEMO_HOME.parent / f"{dag_id}.log"
    airflow("dags", "test", dag_id, *(["-c", json.dumps(conf)] if conf else []), env=env, log=log)
    print(f"Finished in {time.monotonic() - started:.1f} s (full log: {log.relative_to(REPO)})\n")
    runs = json_rows(airflow("dags", "list-runs", dag_id, "-o", "json", env=env))
    run = max(runs, key=lambda r: r["start_date"] or "")
    states = json_rows(airflow("tasks", "states-for-dag-run", dag_id, run["run_id"], "-o", "json", env=env))
    print(f"DAG run {run['run_id']}: {run['state']}")
    for task in states:
        print(f"  {task['task_id']:20s} {task['state']}")
    return run


def personalised_campaign(sandbox: JuheSandbox, env: dict[str, str]) -> dict:
    """Each customer's own text, one opted out, invalid rows reported, and the report file."""
    reports = REPO / ".demo" / "reports"
    env["AIRFLOW_VAR_JUHE_REPAYMENT_TPL_ID"] = str(sandbox.add_template(REPAYMENT_TEXT, "银行"))
    env["AIRFLOW_VAR_JUHE_REPORT_FOLDER"] = reports.as_uri()
    already = len(sandbox.messages())
    customers = REPO / "example_dags" / "repayment_customers.csv"
    print(f"\nA personalised campaign: {customers.relative_to(REPO)}, opt-outs in example_dags/opt_outs.txt")
    # The example sends between 09:00 and 20:00 Shanghai time; the demo opens the window all day.
    run = run_dag(CAMPAIGN_DAG_ID, env, {"window_start": "00:00", "window_end": "23:59:59"})
    print("\nWhat each customer received (one call per distinct text):")
    for message in sandbox.messages()[already:]:
        numbers = ", ".join(mask_mobile(m) for m in message["mobiles"])
        print(f"  {numbers:13s} sid {message['sid']}: {message['text']}")
    report = max(reports.rglob("reminders.csv"), key=lambda path: path.stat().st_mtime)
    with report.open(encoding="utf-8", newline="") as stream:
        rows = list(csv.DictReader(stream))
    print("\nNot sent, from the report:")
    for row in rows:
        if row["status"] != "sent":
            print(f"  {mask_mobile(row['mobile']):13s} {row['status']:10s} {row['reason']}")
    print(f"\nThe per-recipient report ({len(rows)} rows, one per requested number): {report}")
    return run


if __name__ == "__main__":
    main()
