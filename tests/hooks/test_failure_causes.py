"""Transport failures read as their cause, and messages are cut at word or item boundaries, never mid-word."""

from __future__ import annotations

import json
import logging
import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_juhe.exceptions import JuheConnectionError, shorten
from airflow_provider_juhe.hooks.juhe_sms import JuheSmsHook
from airflow_provider_juhe.sending.campaign import Campaign, SendRequest
from airflow_provider_juhe.sending.ledger import InMemoryStateStore


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def point_at(monkeypatch, host: str) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_JUHE_SMS_DEFAULT",
        json.dumps(
            {
                "conn_type": "juhe_sms",
                "host": host,
                "password": "test-appkey-0001",
                "extra": {"max_retries": 0},
            }
        ),
    )


def test_a_refused_connection_reads_as_such(monkeypatch):
    """Before: 'failed: None ConnectionError: _HTTPPool(…' cut mid-word."""
    port = closed_port()
    point_at(monkeypatch, f"http://127.0.0.1:{port}")

    with pytest.raises(JuheConnectionError) as raised:
        JuheSmsHook(retry_wait=0).list_templates()
    assert str(raised.value) == (
        f"connection refused by 127.0.0.1:{port} calling /shortLetter/myTemplates.php; nothing was sent"
    )

    finished = Campaign(
        SendRequest(mobiles=["13800000001"], tpl_id=1),
        JuheSmsHook(retry_wait=0),
        InMemoryStateStore(),
        logging.getLogger(__name__),
    ).run()
    message = finished.failure().message
    assert message.startswith(f"1 number(s) failed: connection refused by 127.0.0.1:{port} calling")
    assert "None" not in message
    assert "_HTTPPool" not in message


def test_a_host_that_does_not_resolve_reads_as_such(monkeypatch):
    point_at(monkeypatch, "http://no-such-host.invalid")

    with pytest.raises(JuheConnectionError, match=r"^DNS lookup failed for no-such-host\.invalid calling"):
        JuheSmsHook(retry_wait=0).list_templates()


@settings(max_examples=200, deadline=None)
@given(
    words=st.lists(
        st.text(st.characters(categories=("L", "N")), min_size=1, max_size=15), min_size=1, max_size=40
    ),
    limit=st.integers(10, 200),
)
def test_shorten_cuts_between_words(words, limit):
    text = " ".join(words)
    cut = shorten(text, limit)

    assert len(cut) <= limit
    if cut == text:
        return
    assert cut.endswith("…")
    kept = cut[:-1].split(" ")
    # every word kept whole, except a first word longer than the limit
    assert kept[:-1] == words[: len(kept) - 1]
    assert kept[-1] == words[len(kept) - 1] or len(kept) == 1
