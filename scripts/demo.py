"""`make demo`: start the sandbox, run example_juhe_template_flow with real Airflow, show what happened."""

from __future__ import annotations

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
        print(f"Running `airflow dags test {DAG_ID}` ...")
        started = time.monotonic()
        log = DEMO_HOME.parent / "dags_test.log"
        airflow("dags", "test", DAG_ID, env=env, log=log)
        print(f"Finished in {time.monotonic() - started:.1f} s (full log: {log.relative_to(REPO)})\n")

        runs = json_rows(airflow("dags", "list-runs", DAG_ID, "-o", "json", env=env))
        run = max(runs, key=lambda r: r["start_date"] or "")
        states = json_rows(
            airflow("tasks", "states-for-dag-run", DAG_ID, run["run_id"], "-o", "json", env=env)
        )
        print(f"DAG run {run['run_id']}: {run['state']}")
        for task in states:
            print(f"  {task['task_id']:20s} {task['state']}")

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
    if run["state"] != "success":
        sys.exit(1)


if __name__ == "__main__":
    main()
