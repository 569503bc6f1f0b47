"""
The outcome table, driven through the hook: every sandbox fault on send and read calls over real
HTTP on 127.0.0.1, every way a connection can fail, and arbitrary answers served by requests-mock.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_juhe.exceptions import (
    CallOutcome,
    JuheApiError,
    JuheConfigError,
    JuheConnectionError,
    JuheDeliveryUnknownError,
    JuheError,
    JuheResponseError,
)
from airflow_provider_juhe.hooks.juhe_sms import JuheSmsHook
from airflow_provider_juhe.hooks.outcomes import Ending, outcome_table_markdown
from airflow_provider_juhe.sandbox.state import MALFORMED_SHAPES
from tests.conftest import APPKEY, REPO

NUMBERS = ["13800138000", "13900139000"]
TIMEOUT = 0.5

#: Every fault the sandbox can apply, as ``inject`` keyword arguments, with what a send must end as.
#: ``None``: the call succeeds (the hook retried a call that surely took no effect).
SEND_FAULTS: list[tuple[str, dict, type[JuheError] | None]] = [
    ("error 228807 (transient)", {"kind": "error", "error_code": 228807}, None),
    ("error 228801 (final)", {"kind": "error", "error_code": 228801}, JuheApiError),
    ("error undocumented, refused", {"kind": "error", "error_code": 299001}, JuheDeliveryUnknownError),
    ("html 502", {"kind": "html_502"}, JuheDeliveryUnknownError),
    ("html 502 of 100 MB", {"kind": "html_502", "size": 100 * 1024 * 1024}, JuheDeliveryUnknownError),
    ("drop", {"kind": "drop"}, JuheDeliveryUnknownError),
    ("reset", {"kind": "reset"}, JuheDeliveryUnknownError),
    ("latency past the deadline", {"kind": "latency", "seconds": 1.2}, JuheDeliveryUnknownError),
    ("trickle", {"kind": "trickle", "seconds": 0.1}, JuheDeliveryUnknownError),
    ("oversized 200", {"kind": "oversized"}, JuheDeliveryUnknownError),
    ("unknown code, carried out", {"kind": "unknown_code"}, JuheDeliveryUnknownError),
    *[
        (f"malformed {shape}", {"kind": "malformed", "shape": shape}, JuheDeliveryUnknownError)
        for shape in MALFORMED_SHAPES
    ],
]
#: Malformed shapes that leave a read's answer readable (they spoil what only other calls carry).
HARMLESS = {
    "list_templates": {"no_sid", "fee_text"},
    "group_mobiles": {"no_sid", "fee_text", "template_without_id"},
}


@pytest.fixture
def hook(sandbox, monkeypatch):
    connection = json.loads(sandbox.connection_json())
    connection["extra"] = {"timeout": TIMEOUT, "max_retries": 1}
    monkeypatch.setenv("AIRFLOW_CONN_JUHE_SMS_DEFAULT", json.dumps(connection))
    return JuheSmsHook(retry_wait=0.01, retry_wait_max=0.01)


def received(sandbox) -> Counter:
    return Counter(number for message in sandbox.messages() for number in message["mobiles"])


def test_the_operations_page_prints_the_table():
    page = (REPO / "docs" / "operations.md").read_text(encoding="utf-8")
    assert outcome_table_markdown() in page


def test_every_ending_has_one_outcome():
    assert {ending.outcome for ending in Ending} == set(CallOutcome)
    assert len({ending.description for ending in Ending}) == len(Ending)


@pytest.mark.parametrize(("name", "fault", "expected"), SEND_FAULTS, ids=[f[0] for f in SEND_FAULTS])
def test_fault_matrix_send(sandbox, hook, name, fault, expected):
    tpl_id = sandbox.add_template("您的验证码是#code#")
    sandbox.inject(path="send.php", **fault)
    started = time.monotonic()

    if expected is None:
        sent = hook.send_sms(NUMBERS, tpl_id, {"code": "1"})
        assert sent["count"] == 2
    else:
        with pytest.raises(expected) as raised:
            hook.send_sms(NUMBERS, tpl_id, {"code": "1"})
        outcome = raised.value.outcome
        # An ending that may have taken effect is never retried: the server saw one call.
        if outcome is CallOutcome.MAY_HAVE_TAKEN_EFFECT:
            assert sum(c["path"].endswith("send.php") for c in sandbox.calls()) == 1
            assert set(raised.value.mobiles) == set(NUMBERS)
        assert APPKEY not in str(raised.value)
    elapsed = time.monotonic() - started

    assert max(received(sandbox).values(), default=0) <= 1, "a number received the SMS twice"
    # The deadline bounds the whole call, trickle and 100 MB bodies included (retries: 2 attempts).
    assert elapsed < 2 * TIMEOUT + 1.5, f"{name} held the call {elapsed:.1f} s"


READ_FAULTS = [f for f in SEND_FAULTS if f[1]["kind"] not in ("error",)]


@pytest.mark.parametrize(("name", "fault", "_"), READ_FAULTS, ids=[f[0] for f in READ_FAULTS])
@pytest.mark.parametrize("call", ["list_templates", "group_mobiles"])
def test_fault_matrix_reads_are_retried(sandbox, hook, name, fault, _, call):
    sandbox.add_template("您的验证码是#code#")
    path = "myTemplates.php" if call == "list_templates" else "mobileGroup.php"
    sandbox.inject(path=path, times=1, **fault)

    answer = hook.list_templates() if call == "list_templates" else hook.group_mobiles(NUMBERS)

    assert answer  # the second attempt read a good answer
    calls = sum(c["path"].endswith(path) for c in sandbox.calls())
    assert calls == (1 if fault.get("shape") in HARMLESS[call] else 2)


@pytest.mark.parametrize(("name", "fault", "_"), READ_FAULTS, ids=[f[0] for f in READ_FAULTS])
def test_fault_matrix_reads_that_keep_failing(sandbox, hook, name, fault, _):
    if fault.get("shape") in HARMLESS["list_templates"]:
        pytest.skip("the list answer does not carry what this shape removes")
    sandbox.inject(path="myTemplates.php", times=None, **fault)

    with pytest.raises(JuheResponseError) as raised:
        hook.list_templates()

    assert raised.value.outcome is CallOutcome.MAY_HAVE_TAKEN_EFFECT
    assert sum(c["path"].endswith("myTemplates.php") for c in sandbox.calls()) == 2


def test_undocumented_code_on_a_send_that_was_carried_out_is_never_sent_again(sandbox, hook):
    tpl_id = sandbox.add_template("通知")
    sandbox.inject("unknown_code", path="send.php", error_code=230555)

    with pytest.raises(JuheDeliveryUnknownError) as raised:
        hook.send_sms(NUMBERS, tpl_id)

    assert raised.value.error_code == 230555
    assert received(sandbox) == Counter(NUMBERS)  # it went out: a retry would have doubled it


ODD_ANSWERS = [
    ("502, charset without a replace handler", 502, "text/html; charset=idna", b"<h1>Bad Gateway</h1>"),
    ("200 not JSON, unknown charset", 200, "text/plain; charset=undefined", b"oops"),
    ("200 JSON nested 100,000 deep", 200, "application/json", b"[" * 100_000),
    ("200 with error_code twice", 200, "application/json", b'{"error_code": 0, "error_code": 228801}'),
    (
        "200 success with a 401-digit fee",
        200,
        "application/json",
        b'{"error_code": 0, "result": {"sid": "s1", "fee": 1' + b"0" * 400 + b"}}",
    ),
]


@pytest.mark.parametrize(
    ("name", "status", "content_type", "body"), ODD_ANSWERS, ids=[a[0] for a in ODD_ANSWERS]
)
def test_odd_answers_found_by_review_end_in_the_table(requests_mock, name, status, content_type, body):
    """Before: UnicodeError, RecursionError, OverflowError escaped bare; a repeated key was a refusal."""
    hook = JuheSmsHook(retry_wait=0, retry_wait_max=0)
    hook.__dict__["config"] = _config(max_retries=0)
    requests_mock.post(
        "http://juhe.test/shortLetter/send.php",
        status_code=status,
        content=body,
        headers={"Content-Type": content_type},
    )

    with pytest.raises(JuheDeliveryUnknownError) as raised:
        hook.send_sms(NUMBERS, 1)

    assert raised.value.outcome is CallOutcome.MAY_HAVE_TAKEN_EFFECT


def test_error_excerpts_are_decoded_as_declared(requests_mock):
    hook = JuheSmsHook(retry_wait=0, retry_wait_max=0)
    hook.__dict__["config"] = _config()
    requests_mock.post(
        "http://juhe.test/shortLetter/myTemplates.php",
        status_code=503,
        content="服务暂时不可用".encode("gbk"),
        headers={"Content-Type": "text/html; charset=gbk"},
    )

    with pytest.raises(JuheResponseError, match="服务暂时不可用"):
        hook.list_templates()


def test_gbk_json_with_its_charset_is_read(requests_mock):
    hook = JuheSmsHook(retry_wait=0, retry_wait_max=0)
    hook.__dict__["config"] = _config()
    body = {"error_code": 0, "reason": "成功", "result": {"templates": [{"tplId": 5, "tpl": "您好"}]}}
    requests_mock.post(
        "http://juhe.test/shortLetter/myTemplates.php",
        content=json.dumps(body, ensure_ascii=False).encode("gbk"),
        headers={"Content-Type": "application/json; charset=GBK"},
    )

    assert hook.list_templates()[0]["content"] == "您好"


def _config(**changes):
    from airflow_provider_juhe.hooks.juhe_sms import JuheConnectionConfig

    values = {
        "base_url": "http://juhe.test",
        "appkey": APPKEY,
        "timeout": 2.0,
        "max_retries": 1,
        "max_calls_per_second": None,
    }
    return JuheConnectionConfig(**{**values, **changes})


# -- connections that cannot be reached: nothing left, retried, a send's numbers failed -------------


def _hook_at(monkeypatch, host: str, timeout: float = TIMEOUT) -> JuheSmsHook:
    monkeypatch.setenv(
        "AIRFLOW_CONN_JUHE_SMS_DEFAULT",
        json.dumps(
            {
                "conn_type": "juhe_sms",
                "host": host,
                "password": APPKEY,
                "extra": {"timeout": timeout, "max_retries": 1},
            }
        ),
    )
    return JuheSmsHook(retry_wait=0.01, retry_wait_max=0.01)


@pytest.fixture
def closed_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def full_backlog():
    """A listener that never accepts, its queue full: a connect to it times out."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    time.sleep(0.1)
    yield port
    for sock in [*fillers, server]:
        sock.close()


def test_connection_refused_is_nothing_left(monkeypatch, closed_port):
    hook = _hook_at(monkeypatch, f"http://127.0.0.1:{closed_port}")

    with pytest.raises(JuheConnectionError, match="nothing was sent") as raised:
        hook.send_sms(NUMBERS, 1)
    assert raised.value.outcome is CallOutcome.NOTHING_LEFT


def test_connect_timeout_is_nothing_left(monkeypatch, full_backlog):
    hook = _hook_at(monkeypatch, f"http://127.0.0.1:{full_backlog}", timeout=0.5)

    started = time.monotonic()
    with pytest.raises(JuheConnectionError, match=r"ConnectTimeout|nothing was sent"):
        hook.send_sms(NUMBERS, 1)
    assert time.monotonic() - started < 3


def test_tls_handshake_failure_is_nothing_left(monkeypatch, sandbox):
    hook = _hook_at(monkeypatch, sandbox.url.replace("http://", "https://"))

    with pytest.raises(JuheConnectionError, match=r"TLS handshake with 127\.0\.0\.1:\d+ failed \(\[SSL"):
        hook.send_sms(NUMBERS, 1)
    assert received(sandbox) == Counter()


def test_dns_failure_is_nothing_left(monkeypatch):
    hook = _hook_at(monkeypatch, "http://no-such-host.invalid")

    with pytest.raises(JuheConnectionError) as raised:
        hook.send_sms(NUMBERS, 1)
    assert raised.value.outcome is CallOutcome.NOTHING_LEFT


@pytest.mark.parametrize(
    ("host", "field"),
    [
        ("htp://127.0.0.1:1", "host"),
        ("ftp://v.juhe.cn", "host"),
        ("http://", "host"),
        ("http://a b", "host"),
        ("http://a..b", "host"),  # found by review: a bare urllib3 LocationParseError, retried
        ("http:/v.juhe.cn", "host"),  # a slash missing: was taken as host "http", a DNS failure
        ("http://v.juhe.cn:0", "host"),
    ],
)
def test_a_host_that_cannot_work_is_a_configuration_error_before_any_request(monkeypatch, host, field):
    hook = _hook_at(monkeypatch, host)

    with pytest.raises(JuheConfigError, match=f"juhe_sms_default.*{field}") as raised:
        hook.send_sms(NUMBERS, 1)
    assert raised.value.final


def test_an_undefined_connection_says_how_to_define_it(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_JUHE_SMS_NOWHERE", raising=False)

    with pytest.raises(JuheConfigError) as raised:
        JuheSmsHook("juhe_sms_nowhere").list_templates()

    message = str(raised.value)
    for part in ("juhe_sms_nowhere", "juhe_sms_default", "AIRFLOW_CONN_JUHE_SMS_NOWHERE", "UI", "secrets"):
        assert part in message


def test_a_100_mb_answer_costs_neither_time_nor_memory(sandbox):
    """In its own process, so that the peak RSS is this call's."""
    tpl_id = sandbox.add_template("通知")
    sandbox.inject("html_502", path="send.php", size=100 * 1024 * 1024)
    sandbox.inject("oversized", path="myTemplates.php", times=None)
    script = f"""
import json, os, resource, time
os.environ["AIRFLOW_CONN_JUHE_SMS_DEFAULT"] = {json.dumps(sandbox.connection_json())}
from airflow_provider_juhe.hooks.juhe_sms import JuheSmsHook
from airflow_provider_juhe.exceptions import JuheError
hook = JuheSmsHook(retry_wait=0, retry_wait_max=0)
hook.log.disabled = True
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.monotonic()
for call in (lambda: hook.send_sms(["13800138000"], {tpl_id}), hook.list_templates):
    try:
        call()
    except JuheError as error:
        print(type(error).__name__)
print(json.dumps({{"seconds": time.monotonic() - started,
                   "grew_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024}}))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    lines = [line for line in done.stdout.splitlines() if not line.startswith(("20", "[20"))]  # log lines
    figures = json.loads(lines[-1])

    assert lines[:2] == ["JuheDeliveryUnknownError", "JuheResponseError"], done.stdout[-3000:]
    assert figures["seconds"] < 5
    assert figures["grew_mb"] < 30


# -- anything a server may send: only the table's exceptions, never a bare one ----------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
answers = st.one_of(
    st.binary(max_size=64),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries(
        {"error_code": st.one_of(st.just(0), st.integers(), st.text(max_size=3), st.none())},
        optional={"reason": json_values, "result": json_values},
    ).map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries(
        {
            "error_code": st.just(0),
            "result": st.dictionaries(
                st.sampled_from(
                    ["sid", "fee", "a", "b", "c", "unknown", "templates", "tplId", "tplBatchInfo"]
                ),
                json_values,
            ),
        }
    ).map(lambda v: json.dumps(v).encode()),
)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=answers, status=st.sampled_from([200, 200, 200, 500]))
def test_any_answer_ends_in_the_table(requests_mock, body, status):
    hook = JuheSmsHook(retry_wait=0, retry_wait_max=0)
    hook.__dict__["config"] = _config(max_retries=0)
    for path in ("send.php", "myTemplates.php", "mobileGroup.php", "submitTpl.php"):
        requests_mock.post(f"http://juhe.test/shortLetter/{path}", status_code=status, content=body)

    for call, kind in (
        (lambda: hook.send_sms(NUMBERS, 1), "send"),
        (hook.list_templates, "read"),
        (lambda: hook.group_mobiles(NUMBERS), "read"),
        (lambda: hook.submit_template("签名", "内容"), "write"),
    ):
        try:
            answer = call()
        except JuheError as error:
            failure = error
        else:
            assert json.loads(json.dumps(answer)) == answer  # plain JSON data
            if kind == "send":
                assert isinstance(answer["sid"], str)
                assert isinstance(answer["fee"], int)
            continue
        if failure.outcome is CallOutcome.MAY_HAVE_TAKEN_EFFECT:
            assert type(failure) is (JuheDeliveryUnknownError if kind == "send" else JuheResponseError)
        else:  # an answer from a server is never "nothing left"
            assert isinstance(failure, JuheApiError)
