"""JuheSmsHook against requests-mock: shapes, encoding, error mapping, retry policy, transport faults."""

from __future__ import annotations

import json
from urllib.parse import parse_qs

import pytest
import requests
from urllib3.exceptions import NewConnectionError, ProtocolError

from airflow_provider_juhe.exceptions import (
    AUTH_ERROR_CODES,
    ERROR_CODES,
    JuheApiError,
    JuheAuthError,
    JuheConnectionError,
    JuheDeliveryUnknownError,
    JuheError,
    JuheInputError,
    JuheResponseError,
)
from airflow_provider_juhe.hooks.juhe_sms import JuheSmsHook, build_base_url
from tests.conftest import APPKEY

BASE = "http://juhe.test"
SEND = f"{BASE}/shortLetter/send.php"
SUBMIT = f"{BASE}/shortLetter/submitTpl.php"
GROUP = f"{BASE}/shortLetter/mobileGroup.php"
TEMPLATES = f"{BASE}/shortLetter/myTemplates.php"
RETRYABLE = sorted(code for code, info in ERROR_CODES.items() if info.transient)


def ok(result, reason="success"):
    return {"json": {"reason": reason, "result": result, "error_code": 0}}


def error(code, reason="failed"):
    return {"json": {"reason": reason, "result": None, "error_code": code}}


def form(request) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(request.text, keep_blank_values=True).items()}


@pytest.fixture
def conn(monkeypatch):
    def make(**extra):
        monkeypatch.setenv(
            "AIRFLOW_CONN_JUHE_SMS_DEFAULT",
            json.dumps({"conn_type": "juhe_sms", "host": BASE, "password": APPKEY, "extra": extra}),
        )

    make()
    return make


@pytest.fixture
def hook(conn, sleeps):
    return JuheSmsHook(sleep=sleeps)


class TestCalls:
    def test_submit_template(self, hook, requests_mock):
        batch = [{"a": 767}, {"b": 768}, {"c": 769}, {"d": 770}]
        requests_mock.post(
            SUBMIT,
            **ok({"sendContent": "【天聚地合】您的验证码是#code#", "tplId": 767, "tplBatchInfo": batch}),
        )

        result = hook.submit_template("天聚地合", "您的验证码是#code#")

        assert result == {
            "tpl_id": 767,
            "send_content": "【天聚地合】您的验证码是#code#",
            "carrier_tpl_ids": {"all": 767, "mobile": 768, "unicom": 769, "telecom": 770},
        }
        sent = requests_mock.last_request
        assert sent.method == "POST"
        assert sent.headers["Content-Type"] == "application/x-www-form-urlencoded"
        assert form(sent) == {"key": APPKEY, "signature": "天聚地合", "content": "您的验证码是#code#"}
        assert APPKEY not in sent.url

    def test_send_sms_returns_string_sid_beyond_64_bits(self, hook, requests_mock):
        big_sid = 2**70 + 12345
        requests_mock.post(
            SEND, text=f'{{"reason":"操作成功","result":{{"sid":{big_sid},"fee":"2"}},"error_code":0}}'
        )

        result = hook.send_sms(["13800138000", "+86 131 0000 1111"], 767)

        assert result == {"sid": str(big_sid), "fee": 2, "count": 2}
        assert requests_mock.call_count == 1
        assert form(requests_mock.last_request) == {
            "key": APPKEY,
            "mobile": "13800138000,13100001111",
            "tplId": "767",
        }

    def test_send_sms_encodes_mapping_values_one_by_one(self, hook, requests_mock):
        requests_mock.post(SEND, **ok({"sid": "1", "fee": 1}))

        hook.send_sms("13800138000", "767", {"code": "12&3=4", "#name#": "张 三#"})

        assert form(requests_mock.last_request)["tplValue"] == (
            "%23code%23=12%263%3D4&%23name%23=%E5%BC%A0%20%E4%B8%89%23"
        )

    def test_send_sms_passes_string_tpl_value_as_is(self, hook, requests_mock):
        requests_mock.post(SEND, **ok({"sid": "1", "fee": 1}))

        hook.send_sms("13800138000", 767, "%23code%23=123456")

        assert form(requests_mock.last_request)["tplValue"] == "%23code%23=123456"

    def test_group_mobiles_maps_letters_and_null_unknown(self, hook, requests_mock):
        requests_mock.post(
            GROUP, **ok({"a": ["13800138000"], "b": ["13100001111"], "c": ["13300001111"], "unknown": None})
        )

        assert hook.group_mobiles("13800138000,13100001111\n13300001111") == {
            "mobile": ["13800138000"],
            "unicom": ["13100001111"],
            "telecom": ["13300001111"],
            "unknown": [],
        }

    def test_group_mobiles_splits_above_10000(self, hook, requests_mock):
        requests_mock.post(GROUP, [ok({"a": [], "b": [], "c": [], "unknown": ["x"]})] * 3)
        numbers = [f"138{i:08d}" for i in range(25_000)]

        groups = hook.group_mobiles(numbers)

        sizes = [len(form(r)["mobiles"].split(",")) for r in requests_mock.request_history]
        assert sizes == [10_000, 10_000, 5_000]
        assert groups["unknown"] == ["x", "x", "x"]

    def test_list_and_get_templates(self, hook, requests_mock):
        templates = [
            {
                "tplId": 14,
                "tpl": "您的验证码是#code#",
                "tpl_signature": "斯蒂尔",
                "tpl_state": 3,
                "operation": 0,
            },
            {"tplId": 15, "tpl": "还款提醒", "tpl_signature": "斯蒂尔", "tpl_state": 1, "operation": 2},
        ]
        requests_mock.post(TEMPLATES, **ok({"templates": templates}))

        assert hook.list_templates() == [
            {
                "tpl_id": 14,
                "content": "您的验证码是#code#",
                "signature": "斯蒂尔",
                "state": 3,
                "state_name": "approved",
                "carrier": "all",
            },
            {
                "tpl_id": 15,
                "content": "还款提醒",
                "signature": "斯蒂尔",
                "state": 1,
                "state_name": "rejected",
                "carrier": "unicom",
            },
        ]
        assert hook.get_template("15")["state_name"] == "rejected"
        assert hook.get_template(99) is None

    def test_list_templates_empty_account(self, hook, requests_mock):
        requests_mock.post(TEMPLATES, **ok({"templates": []}))

        assert hook.list_templates() == []


class TestErrorCodes:
    @pytest.mark.parametrize("code", sorted(set(ERROR_CODES) - {10014}))
    def test_every_documented_code_maps_to_its_class_and_flag(self, hook, requests_mock, code):
        requests_mock.post(TEMPLATES, **error(code, "原因"))

        with pytest.raises(JuheApiError) as raised:
            hook.list_templates()

        assert raised.value.error_code == code
        assert raised.value.reason == "原因"
        assert raised.value.retryable is ERROR_CODES[code].transient
        assert isinstance(raised.value, JuheAuthError) is (code in AUTH_ERROR_CODES)
        assert str(code) in str(raised.value)
        assert requests_mock.call_count == (4 if code in RETRYABLE else 1)

    @pytest.mark.parametrize("code", RETRYABLE)
    def test_send_retried_on_codes_that_surely_sent_nothing(self, hook, requests_mock, code, sleeps):
        requests_mock.post(SEND, [error(code), ok({"sid": "9", "fee": 1})])

        assert hook.send_sms("13800138000", 1)["sid"] == "9"
        assert requests_mock.call_count == 2
        assert sleeps.waits == [0.5]

    @pytest.mark.parametrize("code", [228801, 228802, 228804, 228805, 228806, 10012, 10021])
    def test_send_not_retried_on_final_codes(self, hook, requests_mock, code):
        requests_mock.post(SEND, **error(code))

        with pytest.raises(JuheApiError):
            hook.send_sms("13800138000", 1)
        assert requests_mock.call_count == 1

    def test_10014_on_send_is_an_unknown_outcome(self, hook, requests_mock):
        requests_mock.post(SEND, **error(10014, "系统内部异常"))

        with pytest.raises(JuheDeliveryUnknownError) as raised:
            hook.send_sms(["13800138000", "13100001111"], 1)

        assert raised.value.mobiles == ["13800138000", "13100001111"]
        assert raised.value.error_code == 10014
        assert "138****8000" in str(raised.value)
        assert "13800138000" not in str(raised.value)
        assert requests_mock.call_count == 1

    def test_backoff_is_exponential_and_bounded(self, conn, requests_mock, sleeps):
        conn(max_retries=6)
        requests_mock.post(TEMPLATES, **error(228807))

        with pytest.raises(JuheApiError):
            JuheSmsHook(sleep=sleeps, retry_wait=1, retry_wait_max=5).list_templates()

        assert sleeps.waits == [1, 2, 4, 5, 5, 5]
        assert requests_mock.call_count == 7

    def test_max_retries_zero_disables_retries(self, conn, requests_mock, sleeps):
        conn(max_retries="0")
        requests_mock.post(TEMPLATES, **error(228807))

        with pytest.raises(JuheApiError):
            JuheSmsHook(sleep=sleeps).list_templates()
        assert requests_mock.call_count == 1


class TestTransportFaults:
    refused = requests.ConnectionError(NewConnectionError(None, "Connection refused"))
    dropped = requests.ConnectionError(ProtocolError("Connection aborted.", ConnectionResetError()))

    def test_send_retried_when_connection_refused(self, hook, requests_mock):
        requests_mock.post(SEND, [{"exc": self.refused}, {"exc": self.refused}, ok({"sid": "5", "fee": 1})])

        assert hook.send_sms("13800138000", 1)["sid"] == "5"
        assert requests_mock.call_count == 3

    def test_send_retried_on_connect_timeout(self, hook, requests_mock):
        requests_mock.post(SEND, [{"exc": requests.exceptions.ConnectTimeout}, ok({"sid": "5", "fee": 1})])

        assert hook.send_sms("13800138000", 1)["sid"] == "5"

    def test_refused_until_retries_run_out(self, hook, requests_mock):
        requests_mock.post(SEND, exc=self.refused)

        with pytest.raises(JuheConnectionError):
            hook.send_sms("13800138000", 1)
        assert requests_mock.call_count == 4

    @pytest.mark.parametrize("fault", [requests.exceptions.ReadTimeout, dropped], ids=["timeout", "dropped"])
    def test_send_never_retried_once_request_left(self, hook, requests_mock, fault):
        requests_mock.post(SEND, exc=fault)

        with pytest.raises(JuheDeliveryUnknownError) as raised:
            hook.send_sms("13800138000,13100001111", 1)

        assert requests_mock.call_count == 1
        assert raised.value.mobiles == ["13800138000", "13100001111"]

    @pytest.mark.parametrize("fault", [requests.exceptions.ReadTimeout, dropped], ids=["timeout", "dropped"])
    def test_reads_retried_on_any_transport_error(self, hook, requests_mock, fault):
        requests_mock.post(TEMPLATES, [{"exc": fault}, ok({"templates": []})])

        assert hook.list_templates() == []
        assert requests_mock.call_count == 2

    def test_submit_not_retried_after_timeout(self, hook, requests_mock):
        requests_mock.post(SUBMIT, exc=requests.exceptions.ReadTimeout)

        with pytest.raises(JuheResponseError, match="No complete answer"):
            hook.submit_template("sig", "content")
        assert requests_mock.call_count == 1

    def test_html_502_on_send_is_an_unknown_outcome_not_retried(self, hook, requests_mock):
        requests_mock.post(SEND, status_code=502, text="<html><h1>502 Bad Gateway</h1></html>")

        with pytest.raises(JuheDeliveryUnknownError) as raised:
            hook.send_sms("13800138000", 1)

        assert "HTTP 502" in str(raised.value)
        assert "502 Bad Gateway" in str(raised.value)
        assert requests_mock.call_count == 1

    def test_html_502_on_read_is_retried(self, hook, requests_mock):
        requests_mock.post(TEMPLATES, [{"status_code": 502, "text": "<html/>"}, ok({"templates": []})])

        assert hook.list_templates() == []

    @pytest.mark.parametrize(
        "body",
        ["<html>maintenance</html>", "[1, 2]", '{"reason": "no code"}'],
        ids=["html", "list", "no-code"],
    )
    def test_body_that_is_not_juhe_json(self, hook, requests_mock, body):
        requests_mock.post(SUBMIT, text=body)

        with pytest.raises(JuheResponseError, match="HTTP 200"):
            hook.submit_template("sig", "content")


class TestValidationBeforeAnyRequest:
    @pytest.mark.parametrize(
        ("call", "match"),
        [
            (
                lambda h: h.send_sms("13800138000,1380013800", 1),
                r"mobiles: 1 invalid number\(s\): 138\*\*\*\*3800",
            ),
            (lambda h: h.send_sms("", 1), "mobiles: no number given"),
            (lambda h: h.send_sms("13800138000", "abc"), "tpl_id: .*'abc'"),
            (lambda h: h.send_sms("13800138000", 0), "tpl_id: .*0"),
            (lambda h: h.send_sms("13800138000", 1, ["code"]), "tpl_value: expected a mapping"),
            (lambda h: h.send_sms([f"138{i:08d}" for i in range(1001)], 1), "mobiles: 1001 numbers"),
            (lambda h: h.submit_template("", "content"), "signature: expected non-empty"),
            (lambda h: h.submit_template("sig", "  "), "content: expected non-empty"),
            (lambda h: h.group_mobiles(["12345"]), r"mobiles: 1 invalid number\(s\): \*\*\*\*"),
            (lambda h: h.get_template("x"), "tpl_id:"),
        ],
    )
    def test_bad_input_names_the_field(self, hook, requests_mock, call, match):
        with pytest.raises(JuheInputError, match=match):
            call(hook)
        assert requests_mock.call_count == 0


class TestSendReply:
    """After a send, a reply that cannot be read is an unknown outcome, never an input error."""

    @pytest.mark.parametrize(("fee", "expected"), [(1, 1), ("2", 2), ("1.0", 1), (None, 0)])
    def test_fee_as_the_doc_types_it(self, hook, requests_mock, fee, expected):
        requests_mock.post(SEND, **ok({"sid": 12345678901234567890123, "fee": fee}))

        assert hook.send_sms("13800138000", 7) == {
            "sid": "12345678901234567890123",
            "fee": expected,
            "count": 1,
        }

    @pytest.mark.parametrize(
        ("result", "sid"),
        [({"sid": "202611270001", "fee": "a"}, "202611270001"), ({"fee": 1}, None), ([], None)],
    )
    def test_unreadable_result_is_unknown_and_keeps_the_sid(self, hook, requests_mock, result, sid):
        requests_mock.post(SEND, **ok(result))

        with pytest.raises(JuheDeliveryUnknownError) as raised:
            hook.send_sms("13800138000,13100001111", 7)

        assert raised.value.sid == sid
        assert raised.value.mobiles == ["13800138000", "13100001111"]
        assert not isinstance(raised.value, ValueError)
        assert requests_mock.call_count == 1


class TestPrepare:
    def test_pool_sized_for_the_workers_before_any_call(self, hook, requests_mock):
        hook.prepare(32)

        adapter = hook.get_conn().get_adapter(BASE)
        assert adapter._pool_maxsize == 32
        assert hook.get_conn() is hook.get_conn()

    def test_config_repr_leaves_the_key_out(self, hook):
        assert APPKEY not in repr(hook.config)
        assert APPKEY not in str(hook.config)
        assert "base_url" in repr(hook.config)


class TestConnection:
    @pytest.mark.parametrize(
        ("host", "schema", "port", "expected"),
        [
            (None, None, None, "https://v.juhe.cn"),
            ("v.juhe.cn", "http", None, "http://v.juhe.cn"),
            ("127.0.0.1", "http", 8765, "http://127.0.0.1:8765"),
            ("http://127.0.0.1:8765/", "https", 1, "http://127.0.0.1:8765"),
            ("https://proxy.example/juhe", None, None, "https://proxy.example/juhe"),
        ],
    )
    def test_base_url(self, host, schema, port, expected):
        assert build_base_url(host, schema, port) == expected

    def test_bad_schema(self):
        with pytest.raises(ValueError, match=r"schema: .*'ftp'"):
            build_base_url("v.juhe.cn", "ftp", None)

    def test_uri_form_connection(self, monkeypatch, requests_mock):
        monkeypatch.setenv("AIRFLOW_CONN_JUHE_URI", f"juhe-sms://:{APPKEY}@127.0.0.9:8080/http?timeout=3")
        requests_mock.post("http://127.0.0.9:8080/shortLetter/myTemplates.php", **ok({"templates": []}))

        assert JuheSmsHook("juhe_uri").list_templates() == []
        assert requests_mock.last_request.timeout == 3.0

    def test_default_timeout_is_ten_seconds(self, hook, requests_mock):
        requests_mock.post(TEMPLATES, **ok({"templates": []}))

        hook.list_templates()

        assert requests_mock.last_request.timeout == 10.0

    @pytest.mark.parametrize(
        ("extra", "match"),
        [({"timeout": "soon"}, "'timeout'.*'soon'"), ({"max_retries": -1}, "'max_retries'")],
    )
    def test_bad_extras(self, conn, requests_mock, extra, match):
        conn(**extra)

        with pytest.raises(JuheError, match=match):
            JuheSmsHook().list_templates()
        assert requests_mock.call_count == 0

    def test_missing_appkey(self, monkeypatch):
        monkeypatch.setenv(
            "AIRFLOW_CONN_JUHE_SMS_DEFAULT", json.dumps({"conn_type": "juhe_sms", "host": BASE})
        )

        with pytest.raises(JuheError, match="App key"):
            JuheSmsHook().list_templates()

    def test_one_pooled_session_per_hook(self, hook):
        assert hook.get_conn() is hook.get_conn()
        assert hook.get_conn().get_adapter(BASE)._pool_maxsize == 10

    def test_test_connection_ok(self, hook, requests_mock):
        requests_mock.post(TEMPLATES, **ok({"templates": [{"tplId": 1, "tpl_state": 3, "operation": 0}]}))

        assert hook.test_connection() == (True, f"Connected to Juhe at {BASE}: 1 template(s) on the account")

    def test_test_connection_never_raises(self, hook, requests_mock):
        requests_mock.post(TEMPLATES, **error(10001, "错误的请求KEY"))

        ok_, message = hook.test_connection()

        assert not ok_
        assert "10001" in message

    def test_test_connection_without_connection(self, monkeypatch):
        monkeypatch.delenv("AIRFLOW_CONN_JUHE_SMS_DEFAULT", raising=False)

        ok_, message = JuheSmsHook("no_such_conn").test_connection()

        assert not ok_
        assert "no_such_conn" in message


class TestPacing:
    def test_max_calls_per_second_from_the_connection(self, conn):
        conn(max_calls_per_second="4")

        assert JuheSmsHook().rate_limiter.interval == 0.25

    def test_no_pacing_by_default(self, hook):
        assert hook.rate_limiter.interval == 0

    def test_10011_slows_down_and_retries_instead_of_failing(self, hook, requests_mock):
        requests_mock.post(SEND, [error(10011), ok({"sid": "1", "fee": 1})])

        assert hook.send_sms("13800138000", 1)["sid"] == "1"
        assert hook.rate_limiter.interval > 0


class TestServerTextMasked:
    """What a server writes back (a reason, an error page echoing the request) reaches messages masked."""

    NUMBERS = ("13800138001", "13900139002")

    @pytest.mark.parametrize(
        ("answer", "raised"),
        [
            (error(228802, "手机号码13800138001,13900139002格式错误"), JuheApiError),
            (error(200, "system busy for 13800138001"), JuheDeliveryUnknownError),
            (
                {
                    "status_code": 502,
                    "text": "<html>upstream refused mobile=13800138001%2C13900139002</html>",
                },
                JuheDeliveryUnknownError,
            ),
            (
                {"status_code": 200, "text": "<html>got +86 139-0013-9002 and 8613800138001</html>"},
                JuheDeliveryUnknownError,
            ),
        ],
        ids=["juhe-reason", "undocumented-code", "502-echo", "200-html"],
    )
    def test_numbers_in_a_server_answer_are_masked(self, conn, sleeps, requests_mock, answer, raised):
        conn(max_retries=0)
        requests_mock.post(SEND, **answer)

        with pytest.raises(raised) as caught:
            JuheSmsHook(sleep=sleeps).send_sms(list(self.NUMBERS), 1)

        text = f"{caught.value} {getattr(caught.value, 'detail', '')} {getattr(caught.value, 'reason', '')}"
        assert "13800138001" not in text
        assert "13900139002" not in text
        assert "139-0013-9002" not in text
        assert "****" in text
