"""The sandbox answers like Juhe: paths, GET and POST, JSON shapes, error codes, faults."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from airflow_provider_juhe.sandbox import JuheSandbox
from tests.conftest import APPKEY

SUBMIT, SEND, GROUP, TEMPLATES = (
    "/shortLetter/submitTpl.php",
    "/shortLetter/send.php",
    "/shortLetter/mobileGroup.php",
    "/shortLetter/myTemplates.php",
)


def call(sandbox, path, method="POST", **params):
    params.setdefault("key", APPKEY)
    if method == "GET":
        return requests.get(sandbox.url + path, params=params, timeout=5)
    return requests.post(sandbox.url + path, data=params, timeout=5)


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_doc_example_flow_over_get_and_post(sandbox, method):
    submitted = call(sandbox, SUBMIT, method, signature="天聚地合", content="您的验证码是#code#").json()
    tpl_id = submitted["result"]["tplId"]
    sent = call(
        sandbox, SEND, method, mobile="13800138000,13100001111", tplId=tpl_id, tplValue="%23code%23=123454"
    )
    grouped = call(sandbox, GROUP, method, mobiles="13800138000,13100001111,17000001111,19200001111")
    listed = call(sandbox, TEMPLATES, method)

    assert submitted["error_code"] == 0
    assert submitted["result"]["sendContent"] == "【天聚地合】您的验证码是#code#"
    assert submitted["result"]["tplBatchInfo"] == [
        {"a": tpl_id},
        {"b": tpl_id + 1},
        {"c": tpl_id + 2},
        {"d": tpl_id + 3},
    ]
    assert sent.json()["result"]["fee"] == 2
    assert grouped.json()["result"] == {
        "a": ["13800138000"],
        "b": ["13100001111"],
        "c": ["17000001111"],
        "unknown": ["19200001111"],
    }
    templates = listed.json()["result"]["templates"]
    assert [(t["tplId"], t["tpl_state"], t["operation"]) for t in templates] == [
        (tpl_id + i, 3, i) for i in range(4)
    ]
    assert sandbox.messages()[0]["text"] == "【天聚地合】您的验证码是123454"


def test_group_with_no_unknown_is_null(sandbox):
    assert call(sandbox, GROUP, mobiles="13800138000").json()["result"]["unknown"] is None


@pytest.mark.parametrize(
    ("path", "params", "code"),
    [
        (TEMPLATES, {"key": "wrong"}, 10001),
        (SEND, {"key": ""}, 10001),
        (SUBMIT, {"signature": "sig"}, 228802),
        (SUBMIT, {"signature": "sig", "content": "长" * 501}, 228804),
        (SEND, {"tplId": "1"}, 228802),
        (SEND, {"mobile": "13800138000"}, 228802),
        (SEND, {"mobile": "1380013800", "tplId": "1000"}, 228802),
        (SEND, {"mobile": "13800138000", "tplId": "999"}, 228801),
        (GROUP, {}, 228802),
        (GROUP, {"mobiles": ",".join(["13800138000"] * 10_001)}, 228802),
    ],
)
def test_error_codes(sandbox, path, params, code):
    body = call(sandbox, path, **params).json()

    assert body["error_code"] == code
    assert body["result"] is None
    assert body["reason"]


def test_send_needs_an_approved_template_and_every_variable(sandbox):
    pending = sandbox.add_template("验证码#code#", state=0)
    approved = sandbox.add_template("验证码#code#")

    assert call(sandbox, SEND, mobile="13800138000", tplId=pending).json()["error_code"] == 228801
    assert call(sandbox, SEND, mobile="13800138000", tplId=approved).json()["error_code"] == 228802
    assert sandbox.messages() == []


def test_review_after_delay_and_forbidden_words():
    clock = [0.0]
    with JuheSandbox(appkey=APPKEY, approve_after=10, forbidden_words=("违禁",)) as sandbox:
        sandbox.state.clock = lambda: clock[0]
        good = call(sandbox, SUBMIT, signature="s", content="正常内容").json()["result"]["tplId"]
        bad = call(sandbox, SUBMIT, signature="s", content="违禁内容").json()["result"]["tplId"]

        def states():
            templates = call(sandbox, TEMPLATES).json()["result"]["templates"]
            return {t["tplId"]: t["tpl_state"] for t in templates if t["tplId"] in (good, bad)}

        assert states() == {good: 2, bad: 2}
        clock[0] = 10.0
        assert states() == {good: 3, bad: 1}
        sandbox.set_template_state(good, 2)
        assert states()[good] == 2


def test_long_text_costs_several_parts(sandbox):
    tpl_id = sandbox.add_template("字" * 80, signature="签名")

    body = call(sandbox, SEND, mobile="13800138000,13100001111", tplId=tpl_id).json()

    assert body["result"]["fee"] == 4  # 84 characters: two parts, for two numbers


def test_inject_error_for_next_calls_only(sandbox):
    sandbox.inject("error", error_code=10020, times=2)

    codes = [call(sandbox, TEMPLATES).json()["error_code"] for _ in range(3)]

    assert codes == [10020, 10020, 0]


def test_inject_fraction_is_seeded():
    with JuheSandbox(appkey=APPKEY, seed=7) as sandbox:
        sandbox.inject("error", error_code=228803, fraction=0.5, times=None)
        codes = [call(sandbox, TEMPLATES).json()["error_code"] for _ in range(100)]

    assert 25 < codes.count(228803) < 75
    assert set(codes) == {0, 228803}


def test_inject_html_502_and_path_filter(sandbox):
    sandbox.inject("html_502", path="send.php")

    assert call(sandbox, TEMPLATES).status_code == 200
    response = call(sandbox, SEND, mobile="13800138000", tplId="1")
    assert response.status_code == 502
    assert response.headers["Content-Type"].startswith("text/html")


def test_inject_drop_after_the_send_was_accepted(sandbox):
    tpl_id = sandbox.add_template("通知")
    sandbox.inject("drop", path="send.php")

    with pytest.raises(requests.ConnectionError):
        call(sandbox, SEND, mobile="13800138000", tplId=tpl_id)
    assert len(sandbox.messages()) == 1
    assert call(sandbox, SEND, mobile="13800138000", tplId=tpl_id).json()["error_code"] == 0


def test_inject_rejects_unknown_kind(sandbox):
    with pytest.raises(ValueError, match="kind: expected one of"):
        sandbox.inject("explode")


def test_eight_concurrent_clients_each_get_their_own_sid():
    with JuheSandbox(appkey=APPKEY, latency=0.02) as sandbox:
        tpl_id = sandbox.add_template("通知")

        def client(worker):
            with requests.Session() as session:
                return [
                    session.post(
                        sandbox.url + SEND,
                        data={"key": APPKEY, "mobile": f"138{worker:04d}{i:04d}", "tplId": tpl_id},
                        timeout=5,
                    ).json()["result"]["sid"]
                    for i in range(25)
                ]

        with ThreadPoolExecutor(8) as pool:
            sids = [sid for batch in pool.map(client, range(8)) for sid in batch]

        assert len(set(sids)) == 200
        assert len(sandbox.messages()) == 200


def test_unknown_path_is_404(sandbox):
    assert requests.get(sandbox.url + "/nope", timeout=5).status_code == 404


def test_command_line_server():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "airflow_provider_juhe.sandbox", "--port", str(port), "--appkey", "CLIKEY"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert (
            process.stdout.readline().strip()
            == f"Juhe sandbox listening on http://127.0.0.1:{port} (Ctrl-C to stop)"
        )
        body = requests.post(f"http://127.0.0.1:{port}{TEMPLATES}", data={"key": "CLIKEY"}, timeout=5).json()
        assert body == {"reason": "success", "result": {"templates": []}, "error_code": 0}
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0


def test_the_command_line_sandbox_approves_templates_and_logs_messages(tmp_path, monkeypatch):
    import json as json_module
    import socket
    import subprocess
    import sys

    from airflow_provider_juhe.hooks.juhe_sms import JuheSmsHook

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    messages = tmp_path / "messages.jsonl"
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airflow_provider_juhe.sandbox",
            "--port",
            str(port),
            "--appkey",
            "K",
            "--template",
            "【银行】您好#name#",
            "--messages",
            str(messages),
            "--quiet",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        approved = server.stdout.readline()
        assert server.stdout.readline().startswith("Juhe sandbox listening")
        tpl_id = int(approved.split()[2].rstrip(":"))
        monkeypatch.setenv(
            "AIRFLOW_CONN_JUHE_SMS_DEFAULT",
            json_module.dumps({"conn_type": "juhe_sms", "host": f"http://127.0.0.1:{port}", "password": "K"}),
        )
        JuheSmsHook().send_sms(["13800138000", "13900139000"], tpl_id, {"name": "王芳"})
    finally:
        server.terminate()
        server.wait(10)

    assert approved == f"approved template {tpl_id}: 【银行】您好#name#\n"
    (line,) = messages.read_text(encoding="utf-8").splitlines()
    assert json_module.loads(line)["text"] == "【银行】您好王芳"
    assert json_module.loads(line)["mobiles"] == ["13800138000", "13900139000"]


def test_stop_closes_idle_keep_alive_connections_at_once():
    """A client's pooled connection left open must not hold the sandbox up when it stops."""
    import time

    sandbox = JuheSandbox(appkey=APPKEY).start()
    session = requests.Session()
    assert session.post(sandbox.url + TEMPLATES, data={"key": APPKEY}, timeout=5).json()["error_code"] == 0
    url = sandbox.url
    started = time.monotonic()
    sandbox.stop()
    assert time.monotonic() - started < 2
    with pytest.raises(requests.ConnectionError):  # the pooled connection is gone, and so is the server
        session.post(url + TEMPLATES, data={"key": APPKEY}, timeout=5)
    session.close()


def test_the_command_line_sandbox_stops_on_sigterm_with_a_client_connected():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "airflow_provider_juhe.sandbox", "--port", str(port), "--quiet"],
        stdout=subprocess.PIPE,
        text=True,
    )
    with requests.Session() as session:
        try:
            assert process.stdout.readline().startswith("Juhe sandbox listening")
            session.post(f"http://127.0.0.1:{port}{TEMPLATES}", data={"key": "sandbox-key"}, timeout=5)
            process.terminate()
            assert process.wait(timeout=5) == 0
        finally:
            process.kill()


def test_a_request_cut_short_is_not_acted_on(sandbox):
    """A body that ends before its Content-Length (the client, or stop(), cut it) sends nothing."""
    tpl_id = sandbox.add_template("您好")
    body = f"key={APPKEY}&tplId={tpl_id}&mobile=13800138000,13900139000".encode()
    with socket.create_connection(("127.0.0.1", sandbox.port)) as client:
        client.sendall(
            b"POST /shortLetter/send.php HTTP/1.1\r\nHost: x\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body[: body.index(b",139")]
        )
        client.shutdown(socket.SHUT_WR)
        assert client.recv(100) == b""  # no answer: the sandbox closed the connection

    assert sandbox.messages() == []


def test_what_stop_cut_off_is_not_acted_on_after_it_returned():
    import time

    sandbox = JuheSandbox(appkey=APPKEY, latency=0.3).start()
    tpl_id = sandbox.add_template("您好")
    answered = []

    def send(number):
        with contextlib.suppress(requests.ConnectionError):  # cut off by stop(): no answer
            answered.append(
                requests.post(
                    sandbox.url + SEND, data={"key": APPKEY, "mobile": number, "tplId": tpl_id}, timeout=5
                ).json()["result"]["sid"]
            )

    with ThreadPoolExecutor(4) as pool:
        for n in range(4):
            pool.submit(send, f"1380000{n:04d}")
        time.sleep(0.1)  # each call arrived and waits out its latency
        sandbox.stop()
        at_stop = sandbox.messages()
    time.sleep(0.5)

    assert sandbox.messages() == at_stop  # nothing acted on once stop() returned
    assert {m["sid"] for m in at_stop} >= set(answered)  # every answered send is in messages()


def test_sigterm_under_load_leaves_every_answered_send_in_the_messages_file(tmp_path):
    import json as json_module
    import signal
    import threading
    import time

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    messages = tmp_path / "messages.jsonl"
    server = subprocess.Popen(
        [
            *(sys.executable, "-m", "airflow_provider_juhe.sandbox", "--port", str(port), "--quiet"),
            *("--messages", str(messages), "--template", "【银行】您好"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    tpl_id = int(server.stdout.readline().split()[2].rstrip(":"))
    server.stdout.readline()
    answered: list[str] = []
    done = threading.Event()

    def client(worker: int) -> None:
        with requests.Session() as session:
            while not done.is_set():
                try:
                    answer = session.post(
                        f"http://127.0.0.1:{port}{SEND}",
                        data={"key": "sandbox-key", "mobile": f"138{worker:04d}0000", "tplId": tpl_id},
                        timeout=5,
                    ).json()
                    answered.append(answer["result"]["sid"])
                except requests.RequestException:
                    time.sleep(0.01)

    clients = [threading.Thread(target=client, args=(n,)) for n in range(3)]
    try:
        for thread in clients:
            thread.start()
        time.sleep(0.7)
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=10) == 0
    finally:
        done.set()
        for thread in clients:
            thread.join()
        server.kill()

    logged = {json_module.loads(line)["sid"] for line in messages.read_text(encoding="utf-8").splitlines()}
    assert answered
    assert set(answered) <= logged
