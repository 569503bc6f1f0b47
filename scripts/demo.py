"""`make demo`: start the sandbox and drive the Juhe hook end to end (submit, approval, group, send, list)."""

from __future__ import annotations

import os
import tempfile
import time

DEMO_KEY = "demo-appkey"
RECIPIENTS = ["13800138000", "+86 131 0000 1111", "18900002222", "17000003333", "19200004444", "1380013800"]


def main() -> None:
    os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="juhe-demo-"))
    from airflow_provider_juhe.hooks.juhe_sms import JuheSmsHook
    from airflow_provider_juhe.mobiles import mask_mobile, parse_recipients
    from airflow_provider_juhe.sandbox import JuheSandbox

    with JuheSandbox(appkey=DEMO_KEY, approve_after=1.0) as sandbox:
        os.environ["AIRFLOW_CONN_JUHE_SMS_DEFAULT"] = sandbox.connection_json()
        print(f"Sandbox running at {sandbox.url}")
        hook = JuheSmsHook()

        submitted = hook.submit_template("天聚地合", "尊敬的#name#，您本期账单#amount#元，请按时还款。")
        print(f"1. Submitted template {submitted['tpl_id']}: {submitted['send_content']}")
        print(f"   carrier template ids: {submitted['carrier_tpl_ids']}")

        while (template := hook.get_template(submitted["tpl_id"]))["state_name"] != "approved":
            print(f"2. Template {template['tpl_id']} is {template['state_name']}, waiting...")
            time.sleep(0.5)
        print(f"2. Template {template['tpl_id']} is approved")

        recipients = parse_recipients(RECIPIENTS)
        print(
            f"3. {recipients.requested} recipients, invalid: {[mask_mobile(m) for m in recipients.invalid]}"
        )
        groups = hook.group_mobiles(recipients.valid)
        for carrier, numbers in groups.items():
            print(f"   {carrier:8s}: {[mask_mobile(m) for m in numbers]}")

        print("4. Sending, each carrier with its own template (unknown carriers with the all-network one):")
        for carrier, numbers in groups.items():
            if numbers:
                tpl_id = submitted["carrier_tpl_ids"]["all" if carrier == "unknown" else carrier]
                sent = hook.send_sms(numbers, tpl_id, {"name": "王先生", "amount": "1,024.00"})
                print(
                    f"   {carrier:8s} tpl {tpl_id}: sid {sent['sid']}, {sent['count']} number(s), fee {sent['fee']}"
                )

        print("5. Templates on the account:")
        for template in hook.list_templates():
            print(f"   {template['tpl_id']} {template['carrier']:8s} {template['state_name']}")

        print("What the sandbox received:")
        for message in sandbox.messages():
            numbers = ", ".join(mask_mobile(m) for m in message["mobiles"])
            print(f"   sid {message['sid']} tpl {message['tpl_id']} -> {numbers}: {message['text']}")


if __name__ == "__main__":
    main()
