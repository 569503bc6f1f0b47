"""Audience files as users have them: Excel's columns and codecs, renamed and decoded (``columns``, ``encoding``)."""

from __future__ import annotations

import gzip

import pytest

from airflow_provider_juhe.sending.recipients import (
    RecipientsError,
    audience_from_rows,
    iter_rows,
    read_suppressed,
)
from airflow_provider_juhe.sms_content import unpack_values

COLUMNS = {"手机号": "mobile", "姓名": "name", "金额": "amount"}
CHINESE_CSV = "手机号,姓名,金额\r\n13800000001,王芳,12.50\r\n13800000002,李伟,8\r\n"


def read(recipients, **kwargs):
    return audience_from_rows(
        recipients,
        mobile_field="mobile",
        tpl_value=None,
        required=frozenset({"#name#", "#amount#"}),
        suppress=frozenset(),
        **kwargs,
    )


@pytest.mark.parametrize("codec", ["gbk", "gb18030", "utf-8-sig", "utf-8"])
def test_a_chinese_excel_csv_maps_to_the_template_variables(tmp_path, codec):
    path = tmp_path / "customers.csv"
    path.write_bytes(CHINESE_CSV.encode(codec))

    audience = read(str(path), columns=COLUMNS, encoding="utf-8" if codec.startswith("utf") else codec)

    assert unpack_values(audience.to_send["13800000001"]) == {"#amount#": "12.50", "#name#": "王芳"}
    assert list(audience.to_send) == ["13800000001", "13800000002"]
    assert audience.header == ["手机号", "姓名", "金额"]


def test_without_columns_every_row_misses_the_variables(tmp_path):
    """The first-hour trap: the file's own header names nothing the template uses."""
    path = tmp_path / "customers.csv"
    path.write_text(CHINESE_CSV, encoding="utf-8")

    with pytest.raises(RecipientsError, match=r"has no 'mobile' column \(header: 手机号, 姓名, 金额\)"):
        read(str(path))
    audience = read(str(path), columns={"手机号": "mobile"})
    assert set(audience.invalid.values()) == {"missing #amount#, #name#"}


def test_columns_rename_rows_and_json_lines_as_pandas_does(tmp_path):
    rows = [{"手机号": "13800000001", "姓名": "王芳", "金额": 1, "其他": "x"}]
    assert list(iter_rows(rows, "mobile", columns=COLUMNS)) == [
        ("13800000001", ("name", "amount", "其他"), ("王芳", 1, "x"))
    ]
    path = tmp_path / "rows.jsonl.gz"
    path.write_bytes(gzip.compress('{"手机号": "13800000001", "姓名": "王芳"}\n'.encode("gbk")))
    assert list(iter_rows(str(path), "mobile", columns=COLUMNS, encoding="gbk")) == [
        ("13800000001", ("name",), ("王芳",))
    ]
    # the mobile field itself may be the renamed one, or the mobile_field may name the original
    assert next(iter_rows(rows, "手机号", columns={"姓名": "name"}))[0] == "13800000001"


def test_a_utf8_bom_is_accepted_whatever_the_encoding(tmp_path):
    path = tmp_path / "customers.csv"
    path.write_bytes(CHINESE_CSV.encode("utf-8-sig"))

    assert [row[0] for row in iter_rows(str(path), "mobile", columns=COLUMNS, encoding="gbk")] == [
        "13800000001",
        "13800000002",
    ]


@pytest.mark.parametrize("field_name", ["recipients", "suppress"])
def test_a_gbk_file_read_as_utf8_names_the_line_and_says_how_to_save_it(tmp_path, monkeypatch, field_name):
    from airflow_provider_juhe.sending import recipients

    monkeypatch.setattr(recipients, "READ_CHUNK", 16)  # the bad byte in a later chunk: the line holds
    path = tmp_path / "customers.csv"
    path.write_bytes(("mobile,name\n" + "13800000001,a\n" * 3 + "13800000002,王芳\n").encode("gbk"))

    with pytest.raises(RecipientsError) as raised:
        read_suppressed(str(path)) if field_name == "suppress" else read(str(path))

    message = str(raised.value)
    assert message.startswith(f"{field_name}: {path}, line 5: not UTF-8 text (byte 0x")
    assert '"CSV UTF-8 (Comma delimited)"' in message
    assert 'encoding="gbk"' in message
    assert "1380000000" not in message


def test_a_utf8_file_read_as_ascii_names_the_codec(tmp_path):
    path = tmp_path / "customers.csv"
    path.write_text("mobile,name\n13800000001,王芳\n", encoding="utf-8")

    with pytest.raises(RecipientsError, match=r"line 2: not ascii text .*pass the file's codec as encoding="):
        read(str(path), encoding="ascii")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"encoding": "gbkk"}, r"^encoding: 'gbkk' is not a known text codec"),
        ({"columns": ["姓名"]}, r"^columns: expected a mapping of column names to names"),
        ({"columns": {"姓名": 1}}, r"^columns: expected a mapping"),
    ],
)
def test_unusable_columns_or_encoding_name_the_parameter(kwargs, message):
    with pytest.raises(RecipientsError, match=message):
        read([{"mobile": "13800000001"}], **kwargs)


def test_opt_outs_in_gbk_with_a_chinese_header(tmp_path):
    path = tmp_path / "opt_outs.csv"
    path.write_bytes("mobile,备注\n13800000009,退订\n".encode("gbk"))

    assert read_suppressed(str(path), encoding="gbk") == {"13800000009"}


# -- an audience that leaves nothing to send -----------------------------------------------------------


def run_campaign(request):
    import logging

    from airflow_provider_juhe.hooks.juhe_sms import JuheSmsHook
    from airflow_provider_juhe.sending.campaign import Campaign
    from airflow_provider_juhe.sending.ledger import InMemoryStateStore

    return Campaign(
        request, JuheSmsHook(retry_wait=0), InMemoryStateStore(), logging.getLogger(__name__)
    ).run()


def test_bad_rows_beside_suppressed_ones_fail_naming_columns_and_variables(sandbox_conn, tmp_path):
    """Before: with the rest suppressed, rows missing every variable made a green task that sent nothing."""
    from airflow_provider_juhe.exceptions import JuheInputError
    from airflow_provider_juhe.sending.campaign import SendRequest

    tpl_id = sandbox_conn.add_template("您好#name#，应还#amount#元", "银行")
    customers = tmp_path / "customers.csv"
    customers.write_text(
        "mobile,姓名,金额\n13800000001,王芳,1\n13800000002,李伟,2\n13800000003,张敏,3\n13800000002,x,y\n"
    )

    with pytest.raises(JuheInputError) as raised:
        run_campaign(SendRequest(recipients=str(customers), tpl_id=tpl_id, suppress=["13800000003"]))

    assert str(raised.value) == (
        "recipients: nothing to send: 2 invalid (missing #amount#, #name# ×2), 1 suppressed, 1 duplicate "
        "entr(ies). The file's columns: mobile, 姓名, 金额; the template uses: #amount#, #name#. Every row "
        "needs a value for each variable the template uses: from a column of its own (rename columns to "
        'the variables with columns=, e.g. columns={"手机号": "mobile", "姓名": "name"}) or, for a value '
        "every row shares, from tpl_value="
    )
    assert raised.value.final
    assert not [c for c in sandbox_conn.calls() if c["path"].endswith("send.php")]


def test_invalid_numbers_beside_suppressed_ones_fail_with_counts(sandbox_conn):
    from airflow_provider_juhe.exceptions import JuheInputError
    from airflow_provider_juhe.sending.campaign import SendRequest

    tpl_id = sandbox_conn.add_template("通知")

    with pytest.raises(
        JuheInputError,
        match=r"^mobiles: nothing to send: 2 invalid \(not a valid mobile number ×2\), 1 suppressed: 138\*\*\*\*0123, \*\*\*\*$",
    ):
        run_campaign(
            SendRequest(
                mobiles=["1380000000123", "138", "13800000003"], tpl_id=tpl_id, suppress=["13800000003"]
            )
        )


def test_an_audience_all_suppressed_is_a_green_no_op(sandbox_conn):
    from airflow_provider_juhe.sending.campaign import SendRequest

    tpl_id = sandbox_conn.add_template("通知")

    finished = run_campaign(
        SendRequest(
            mobiles=["13800000003", "13800000004"], tpl_id=tpl_id, suppress=["13800000003", "13800000004"]
        )
    )

    assert finished.failure() is None
    assert (finished.result["sent"], finished.result["suppressed"]) == (0, 2)
