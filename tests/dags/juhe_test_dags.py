"""DAGs the test suite runs with dag.test(); their inputs come from run_conf (params)."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG, task

from airflow_provider_juhe.notifications.juhe_sms import JuheSmsNotifier
from airflow_provider_juhe.operators.juhe_sms import (
    JuheGroupMobilesOperator,
    JuheListTemplatesOperator,
    JuheSendSmsOperator,
)
from airflow_provider_juhe.sensors.juhe_sms import JuheTemplateApprovedSensor


def suite_dag(dag_id: str, *, native: bool = True, retries: int = 2, **params):
    return DAG(
        dag_id=dag_id,
        schedule=None,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        render_template_as_native_obj=native,
        params=params,
        default_args={"retries": retries, "retry_delay": timedelta(0)},
    )


with suite_dag("juhe_test_send", mobiles=[], tpl_id=1, tpl_value=None):
    JuheSendSmsOperator(
        task_id="send",
        mobiles="{{ params.mobiles }}",
        tpl_id="{{ params.tpl_id }}",
        tpl_value="{{ params.tpl_value }}",
        batch_size=2,
        max_workers=2,
    )

# Without native rendering a list param renders to its text form: "['139…', '159…']".
with suite_dag("juhe_test_send_text", native=False, mobiles=[], tpl_id=1):
    JuheSendSmsOperator(task_id="send", mobiles="{{ params.mobiles }}", tpl_id="{{ params.tpl_id }}")

# Retried by running the same DAG run again (as a clear would), so that tests can act between tries.
with suite_dag("juhe_test_send_tries", retries=0, mobiles=[], carrier_tpl_ids={}):
    JuheSendSmsOperator(
        task_id="send",
        mobiles="{{ params.mobiles }}",
        carrier_tpl_ids="{{ params.carrier_tpl_ids }}",
        batch_size=10,
        max_workers=1,
    )

with suite_dag("juhe_test_send_lenient", mobiles=[], tpl_id=1):
    JuheSendSmsOperator(
        task_id="send",
        mobiles="{{ params.mobiles }}",
        tpl_id="{{ params.tpl_id }}",
        batch_size=2,
        max_workers=1,
        fail_on_unknown=False,
    )

with suite_dag("juhe_test_send_carriers", mobiles=[], carrier_tpl_ids={}, source="api"):
    JuheSendSmsOperator(
        task_id="send",
        mobiles="{{ params.mobiles }}",
        carrier_tpl_ids="{{ params.carrier_tpl_ids }}",
        source="{{ params.source }}",
        batch_size=2,
        max_workers=3,
    )

with suite_dag("juhe_test_send_dry_run", mobiles=[], carrier_tpl_ids={}, tpl_value=None):
    JuheSendSmsOperator(
        task_id="send",
        mobiles="{{ params.mobiles }}",
        carrier_tpl_ids="{{ params.carrier_tpl_ids }}",
        tpl_value="{{ params.tpl_value }}",
        source="local",
        batch_size=2,
        dry_run=True,
    )

with suite_dag("juhe_test_reads", mobiles=[]):
    JuheListTemplatesOperator(task_id="list_templates")
    JuheGroupMobilesOperator(task_id="group_api", mobiles="{{ params.mobiles }}")
    JuheGroupMobilesOperator(task_id="group_local", mobiles="{{ params.mobiles }}", source="local")

for mode in ("poke", "reschedule", "deferrable"):
    with suite_dag(f"juhe_test_sensor_{mode}", tpl_id=1):
        JuheTemplateApprovedSensor(
            task_id="wait_for_approval",
            tpl_id="{{ params.tpl_id }}",
            mode="reschedule" if mode == "reschedule" else "poke",
            deferrable=mode == "deferrable",
            poke_interval=0.2,
            timeout=3,
        )

with suite_dag("juhe_test_notifier", mobiles="", tpl_id=1):
    notify = JuheSmsNotifier(
        mobiles="{{ params.mobiles }}", tpl_id="{{ params.tpl_id }}", tpl_value={"#task#": "{{ ti.task_id }}"}
    )

    @task(on_success_callback=notify)
    def succeeds() -> str:
        return "fine"

    @task(on_failure_callback=notify, retries=0)
    def fails() -> None:
        raise ValueError("the task's own error")

    succeeds()
    fails()

# Killed mid-send by a test; the second run of the same DAG run plays the retry.
with suite_dag("juhe_test_send_crash", retries=0, mobiles=[], tpl_id=1):
    JuheSendSmsOperator(
        task_id="send",
        mobiles="{{ params.mobiles }}",
        tpl_id="{{ params.tpl_id }}",
        batch_size=10,
        max_workers=1,
    )

# Five tasks fail together; the notifier guards one number with a per-number cap, no grouping.
with suite_dag("juhe_test_alert_caps", mobiles="", tpl_id=1):
    capped = JuheSmsNotifier(
        mobiles="{{ params.mobiles }}",
        tpl_id="{{ params.tpl_id }}",
        tpl_value={"#task#": "{{ ti.task_id }}", "#more#": "{{ suppressed_count }}"},
        max_per_number={"minute": 1, "hour": 2},
    )
    for n in range(5):

        @task(task_id=f"fails_{n}", on_failure_callback=capped, retries=0)
        def fails() -> None:
            raise ValueError("the task's own error")

        fails()

# One alert episode: 3 failing tasks, one hour between SMS.
EPISODE_ALERT = JuheSmsNotifier(
    mobiles="{{ params.mobiles }}",
    tpl_id="{{ params.tpl_id }}",
    tpl_value={"#task#": "{{ ti.task_id }}", "#more#": "{{ suppressed_count }}"},
    group_key="{{ dag.dag_id }}",
    repeat_interval=timedelta(hours=1),
)
with suite_dag("juhe_test_alert_episode", mobiles="", tpl_id=1):
    for n in range(3):

        @task(task_id=f"fails_{n}", on_failure_callback=EPISODE_ALERT, retries=0)
        def fails() -> None:
            raise ValueError("the task's own error")

        fails()

# -- campaigns: personalised rows, opt-outs, windows, reports, shards ---------------------------------

CAMPAIGN = {
    "recipients": "{{ params.recipients }}",
    "tpl_id": "{{ params.tpl_id }}",
    "tpl_value": "{{ params.tpl_value }}",
    "suppress": "{{ params.suppress }}",
    "report_path": "{{ params.report_path }}",
    "send_window": "{{ params.send_window }}",
    "timezone": "{{ params.timezone }}",
}
PARAMS = {
    "recipients": [],
    "tpl_id": 1,
    "tpl_value": None,
    "suppress": None,
    "report_path": None,
    "send_window": None,
    "timezone": "Asia/Shanghai",
}

with suite_dag("juhe_test_campaign", **PARAMS):
    JuheSendSmsOperator(task_id="send", batch_size=2, max_workers=4, **CAMPAIGN)

# One call at a time, retried only by the test (rerun_task): sends that take long enough for a window to close.
with suite_dag("juhe_test_campaign_slow", retries=0, **PARAMS):
    JuheSendSmsOperator(task_id="send", batch_size=1, max_workers=1, **CAMPAIGN)

with suite_dag("juhe_test_campaign_xcom", tpl_id=1, rows=[]):

    @task(show_return_value_in_logs=False)
    def load_rows(params=None) -> list[dict]:
        return params["rows"]

    JuheSendSmsOperator(task_id="send", recipients=load_rows(), tpl_id="{{ params.tpl_id }}", max_workers=2)

with suite_dag("juhe_test_campaign_shards", tpl_id=1, shards=[], report_folder=""):

    @task
    def list_shards(params=None) -> list[str]:
        return params["shards"]

    # Each shard a task instance with its own plan and ledger; the pool caps calls in flight across them.
    JuheSendSmsOperator.partial(
        task_id="send",
        tpl_id="{{ params.tpl_id }}",
        report_path="{{ params.report_folder }}/shard-{{ ti.map_index }}.csv",
        max_workers=2,
        pool="juhe_sms_test",
        pool_slots=2,
    ).expand(recipients=list_shards())

with suite_dag("juhe_test_campaign_dry_run", tpl_id=1, recipients=[]):
    JuheSendSmsOperator(
        task_id="send", recipients="{{ params.recipients }}", tpl_id="{{ params.tpl_id }}", dry_run=True
    )

# Without native rendering, lists of rows or numbers given as params render to their text form.
with suite_dag("juhe_test_campaign_text", native=False, recipients="", suppress="", tpl_id=1):
    JuheSendSmsOperator(
        task_id="send",
        recipients="{{ params.recipients }}",
        suppress="{{ params.suppress }}",
        tpl_id="{{ params.tpl_id }}",
    )

# A connection id nobody defined.
with suite_dag("juhe_test_send_undefined_conn", mobiles=[], tpl_id=1):
    JuheSendSmsOperator(
        task_id="send",
        mobiles="{{ params.mobiles }}",
        tpl_id="{{ params.tpl_id }}",
        juhe_conn_id="juhe_sms_nobody_defined",
    )

# Guard rails: a budget and a recipient cap, from params.
with suite_dag("juhe_test_campaign_guarded", retries=0, max_fee=None, max_recipients=None, **PARAMS):
    JuheSendSmsOperator(
        task_id="send",
        batch_size=2,
        max_workers=1,
        max_fee="{{ params.max_fee }}",
        max_recipients="{{ params.max_recipients }}",
        **CAMPAIGN,
    )

# A poll interval of 0: raised to the 1 s floor.
for mode in ("poke", "reschedule", "deferrable"):
    with suite_dag(f"juhe_test_sensor_floor_{mode}", tpl_id=1):
        JuheTemplateApprovedSensor(
            task_id="wait_for_approval",
            tpl_id="{{ params.tpl_id }}",
            mode="reschedule" if mode == "reschedule" else "poke",
            deferrable=mode == "deferrable",
            poke_interval=0,
            timeout=2,
        )
