"""
Submit a template, wait for Juhe's review (deferrable), group the numbers, send per carrier.

Needs a ``juhe_sms_default`` connection; ``make demo`` points it at the bundled sandbox.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from airflow_provider_juhe.operators.juhe_sms import (
    JuheGroupMobilesOperator,
    JuheListTemplatesOperator,
    JuheSendSmsOperator,
    JuheSubmitTemplateOperator,
)
from airflow_provider_juhe.sensors.juhe_sms import JuheTemplateApprovedSensor

RECIPIENTS = "13800138000, +86 131 0000 1111, 18900002222, 17000003333, 19200004444, 13800138000"

with DAG(
    dag_id="example_juhe_template_flow",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="Asia/Shanghai"),
    catchup=False,
    tags=["juhe", "example"],
) as dag:
    submit = JuheSubmitTemplateOperator(
        task_id="submit_template",
        signature="天聚地合",
        content="尊敬的#name#，您的验证码是#code#，5分钟内有效。",
    )
    # Review takes minutes to hours on the real service: wait in the triggerer, not in a worker slot.
    wait_for_approval = JuheTemplateApprovedSensor(
        task_id="wait_for_approval",
        tpl_id=submit.output,
        deferrable=True,
        poke_interval=1,
        timeout=3600,
    )
    group = JuheGroupMobilesOperator(task_id="group_by_carrier", mobiles=RECIPIENTS)
    send = JuheSendSmsOperator(
        task_id="send_per_carrier",
        mobiles=RECIPIENTS,
        carrier_tpl_ids=submit.output,  # each number with its carrier's template, unknown ones with "all"
        # run_after, not ts/ds: runs triggered from the CLI or REST API have no logical date.
        tpl_value={"name": "客户", "code": "{{ dag_run.run_after.strftime('%H%M%S') }}"},
    )
    list_templates = JuheListTemplatesOperator(task_id="list_templates")

    submit >> wait_for_approval >> group >> send >> list_templates
