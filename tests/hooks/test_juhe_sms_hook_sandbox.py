"""JuheSmsHook against the sandbox over real HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import socket
import time

import pytest

from airflow_provider_juhe.exceptions import (
    JuheApiError,
    JuheAuthError,
    JuheConnectionError,
    JuheDeliveryUnknownError,
    JuheResponseError,
)
from airflow_provider_juhe.hooks.juhe_sms import JuheSmsHook
from airflow_provider_juhe.sandbox import JuheSandbox
from tests.conftest import APPKEY


@pytest.fixture
def hook(sandbox_conn, sleeps):
    return JuheSmsHook(sleep=sleeps)


def wait_for_state(hook, tpl_id, state_name, deadline=5.0):
    stop = time.monotonic() + deadline
    while time.monotonic() < stop:
        template = hook.get_template(tpl_id)
        if template["state_name"] == state_name:
            return template
        time.sleep(0.05)
    raise AssertionError(f"template {tpl_id} never became {state_name}")


def test_whole_flow_submit_approve_group_send_list(monkeypatch, sleeps):
    with JuheSandbox(appkey=APPKEY, approve_after=0.3) as sandbox:
        monkeypatch.setenv("AIRFLOW_CONN_JUHE_SMS_DEFAULT", sandbox.connection_json())
        hook = JuheSmsHook(sleep=sleeps)

        submitted = hook.submit_template("天聚地合", "尊敬的#name#，您的验证码是#code#")
        assert hook.get_template(submitted["tpl_id"])["state_name"] == "reviewing"
        approved = wait_for_state(hook, submitted["tpl_id"], "approved")
        groups = hook.group_mobiles(["13800138000", "13100001111", "13300002222", "19200003333"])
        sent = hook.send_sms(
            groups["mobile"], submitted["carrier_tpl_ids"]["mobile"], {"name": "张 三&李#", "code": 42}
        )

        assert submitted["send_content"] == "【天聚地合】尊敬的#name#，您的验证码是#code#"
        assert set(submitted["carrier_tpl_ids"]) == {"all", "mobile", "unicom", "telecom"}
        assert approved["carrier"] == "all"
        assert groups == {
            "mobile": ["13800138000"],
            "unicom": ["13100001111"],
            "telecom": ["13300002222"],
            "unknown": ["19200003333"],
        }
        assert (sent["count"], sent["fee"], len(sent["sid"])) == (1, 1, 24)
        assert [{k: v for k, v in m.items() if k != "at"} for m in sandbox.messages()] == [
            {
                "sid": sent["sid"],
                "mobiles": ["13800138000"],
                "tpl_id": submitted["carrier_tpl_ids"]["mobile"],
                "text": "【天聚地合】尊敬的张 三&李#，您的验证码是42",
                "fee": 1,
            }
        ]
        assert [t["carrier"] for t in hook.list_templates()] == ["all", "mobile", "unicom", "telecom"]


def test_forbidden_word_is_rejected_by_review(hook, sandbox):
    submitted = hook.submit_template("天聚地合", "线上赌博优惠")

    assert wait_for_state(hook, submitted["tpl_id"], "rejected")["state"] == 1


def test_wrong_key_is_an_auth_error(sandbox, monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_JUHE_SMS_DEFAULT",
        json.dumps({"conn_type": "juhe_sms", "host": sandbox.url, "password": "wrong-key"}),
    )

    with pytest.raises(JuheAuthError) as raised:
        JuheSmsHook().list_templates()
    assert raised.value.error_code == 10001


def test_send_with_unapproved_template_is_228801(hook, sandbox):
    tpl_id = sandbox.add_template("您的验证码是#code#", state=0)

    with pytest.raises(JuheApiError) as raised:
        hook.send_sms("13800138000", tpl_id, {"code": 1})
    assert raised.value.error_code == 228801
    assert sandbox.messages() == []


def test_busy_twice_then_sent_once(hook, sandbox, sleeps):
    tpl_id = sandbox.add_template("通知")
    sandbox.inject("error", error_code=228807, times=2, path="send.php")

    hook.send_sms("13800138000", tpl_id)

    assert len(sandbox.messages()) == 1
    assert len(sleeps.waits) == 2


def test_dropped_connection_after_accept_is_unknown_and_not_resent(hook, sandbox):
    tpl_id = sandbox.add_template("通知")
    sandbox.inject("drop", path="send.php")

    with pytest.raises(JuheDeliveryUnknownError) as raised:
        hook.send_sms(["13800138000", "13100001111"], tpl_id)

    assert raised.value.mobiles == ["13800138000", "13100001111"]
    assert len(sandbox.messages()) == 1  # the sandbox did send it: a retry would have sent it twice
    assert len([c for c in sandbox.calls() if c["path"].endswith("send.php")]) == 1


def test_timeout_on_send_is_unknown_and_not_resent(sandbox, monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_JUHE_SMS_DEFAULT",
        json.dumps(
            {"conn_type": "juhe_sms", "host": sandbox.url, "password": APPKEY, "extra": {"timeout": 0.2}}
        ),
    )
    tpl_id = sandbox.add_template("通知")
    sandbox.inject("latency", seconds=0.6, path="send.php")

    with pytest.raises(JuheDeliveryUnknownError):
        JuheSmsHook().send_sms("13800138000", tpl_id)
    time.sleep(0.6)
    assert len(sandbox.messages()) == 1


def test_html_502_is_a_response_error(hook, sandbox):
    sandbox.inject("html_502", path="submitTpl.php")

    with pytest.raises(JuheResponseError, match="HTTP 502"):
        hook.submit_template("sig", "content")


def test_reads_survive_a_dropped_connection(hook, sandbox):
    sandbox.inject("drop", path="myTemplates.php")

    assert hook.list_templates() == []


def test_connection_refused_is_retried_then_reported(monkeypatch, sleeps):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv(
        "AIRFLOW_CONN_JUHE_SMS_DEFAULT",
        json.dumps({"conn_type": "juhe_sms", "host": f"http://127.0.0.1:{port}", "password": APPKEY}),
    )

    with pytest.raises(JuheConnectionError):
        JuheSmsHook(sleep=sleeps).send_sms("13800138000", 1)
    assert len(sleeps.waits) == 3


def test_test_connection_against_sandbox(hook, sandbox):
    assert hook.test_connection() == (
        True,
        f"Connected to Juhe at {sandbox.url}: 0 template(s) on the account",
    )


class TestAppkeyNeverLeaks:
    def test_not_in_url_and_sent_in_post_body(self, hook, sandbox):
        tpl_id = sandbox.add_template("通知")

        hook.list_templates()
        hook.group_mobiles("13800138000")
        hook.send_sms("13800138000", tpl_id)
        hook.submit_template("sig", "content")

        calls = sandbox.calls()
        assert {c["method"] for c in calls} == {"POST"}
        assert all(APPKEY not in c["query"] for c in calls)

    def test_not_in_exception_text_even_when_echoed(self, hook, requests_mock):
        requests_mock.post(
            requests_mock_url(hook, "myTemplates.php"),
            json={"reason": f"bad key {APPKEY}", "error_code": 10001},
        )

        with pytest.raises(JuheAuthError) as raised:
            hook.list_templates()
        assert APPKEY not in str(raised.value)
        assert APPKEY not in raised.value.reason

    def test_not_in_response_error_excerpt(self, hook, requests_mock):
        requests_mock.post(requests_mock_url(hook, "myTemplates.php"), status_code=500, text=f"key={APPKEY}")

        with pytest.raises(JuheResponseError) as raised:
            hook.list_templates()
        assert APPKEY not in str(raised.value)

    def test_not_in_any_log_line(self, hook, sandbox, caplog):
        hook._log = logging.getLogger("juhe-hook-under-test")  # every line the hook writes, DEBUG included
        caplog.set_level(logging.DEBUG)
        tpl_id = sandbox.add_template("通知")
        sandbox.inject("error", error_code=228807, times=1)

        hook.send_sms(["13800138000", "13100001111"], tpl_id)
        hook.test_connection()

        assert "retrying" in caplog.text
        assert "138****8000" in caplog.text
        assert APPKEY not in caplog.text
        assert "13800138000" not in caplog.text

    def test_registered_with_the_secrets_masker(self, hook, monkeypatch):
        from airflow_provider_juhe.hooks import juhe_sms

        masked = []
        monkeypatch.setattr(juhe_sms, "mask_secret", lambda secret, name=None: masked.append(secret))

        hook.list_templates()

        assert masked == [APPKEY]


def requests_mock_url(hook, path):
    return f"{hook.config.base_url}/shortLetter/{path}"
