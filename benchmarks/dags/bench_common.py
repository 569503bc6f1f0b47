"""
What the benchmark DAG files share: the settings the benchmark scripts pass in the environment, and
the hand-written client a user would write without this provider (the comparison in every run).

Set by the scripts: JUHE_BENCH_NUMBERS (a file, one number a line), JUHE_BENCH_RECIPIENTS (a CSV of
customers), JUHE_BENCH_TPL_ID, JUHE_BENCH_WORKERS, JUHE_BENCH_BATCH, and for campaigns
JUHE_BENCH_CAMPAIGN_TPL_ID and JUHE_BENCH_CAMPAIGN_WORKERS.
"""

from __future__ import annotations

import csv
import os
import queue
import threading
from pathlib import Path
from urllib.parse import urlencode

import pendulum
import requests

NUMBERS_FILE = os.environ.get("JUHE_BENCH_NUMBERS", "")
RECIPIENTS_FILE = os.environ.get("JUHE_BENCH_RECIPIENTS", "customers.csv")
TPL_ID = int(os.environ.get("JUHE_BENCH_TPL_ID", "1"))
WORKERS = int(os.environ.get("JUHE_BENCH_WORKERS", "8"))
BATCH = int(os.environ.get("JUHE_BENCH_BATCH", "100"))
SETTINGS = {"tpl_id": TPL_ID, "max_workers": WORKERS, "batch_size": BATCH}
# Personalised campaigns' template and calls in flight, where they differ from the bulk sends' (one
# deployment runs both).
CAMPAIGN_TPL_ID = int(os.environ.get("JUHE_BENCH_CAMPAIGN_TPL_ID") or TPL_ID)
CAMPAIGN_WORKERS = int(os.environ.get("JUHE_BENCH_CAMPAIGN_WORKERS") or WORKERS)
START = pendulum.datetime(2026, 1, 1, tz="UTC")


def numbers() -> list[str]:
    return Path(NUMBERS_FILE).read_text().split() if NUMBERS_FILE else []


def send_by_hand(url: str, appkey: str, calls: list[dict[str, str]], workers: int) -> int:
    """
    What a user would write by hand: ``workers`` threads, each with its own pooled
    ``requests.Session``, posting send.php calls from a shared queue.

    :param calls: each call's form fields (``mobile``, ``tplId``, ``tplValue``); the key is added here.
    :return: the numbers sent.
    """
    work: queue.SimpleQueue[dict[str, str]] = queue.SimpleQueue()
    for call in calls:
        work.put(call)
    failures: list[str] = []

    def worker() -> None:
        with requests.Session() as session:
            while True:
                try:
                    call = work.get_nowait()
                except queue.Empty:
                    return
                answer = session.post(f"{url}/shortLetter/send.php", data={"key": appkey, **call}, timeout=10)
                if answer.json()["error_code"] != 0:
                    failures.append(answer.text)

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return _numbers_sent(calls, failures)


def send_by_hand_async(url: str, appkey: str, calls: list[dict[str, str]], workers: int) -> int:
    """
    The same calls from an asyncio client: one pooled ``httpx.AsyncClient`` (``workers`` connections,
    kept alive), ``workers`` coroutines posting from a shared iterator.

    :return: the numbers sent.
    """
    import asyncio

    import httpx

    async def send_all() -> list[str]:
        failures: list[str] = []
        remaining = iter(calls)
        limits = httpx.Limits(max_connections=workers, max_keepalive_connections=workers)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=10) as client:

            async def worker() -> None:
                for call in remaining:  # one event loop: the iterator needs no lock
                    answer = await client.post("/shortLetter/send.php", data={"key": appkey, **call})
                    if answer.json()["error_code"] != 0:
                        failures.append(answer.text)

            await asyncio.gather(*(worker() for _ in range(workers)))
        return failures

    failures = asyncio.run(send_all())
    return _numbers_sent(calls, failures)


def send_by_hand_aiohttp(url: str, appkey: str, calls: list[dict[str, str]], workers: int) -> int:
    """
    The same calls from aiohttp (apache-airflow-providers-http's async client): one pooled
    ``ClientSession`` (``workers`` connections, kept alive), ``workers`` coroutines.

    :return: the numbers sent.
    """
    import asyncio

    import aiohttp

    async def send_all() -> list[str]:
        failures: list[str] = []
        remaining = iter(calls)
        connector = aiohttp.TCPConnector(limit=workers)
        async with aiohttp.ClientSession(url, connector=connector) as session:

            async def worker() -> None:
                for call in remaining:
                    async with session.post("/shortLetter/send.php", data={"key": appkey, **call}) as answer:
                        body = await answer.json(content_type=None)
                    if body["error_code"] != 0:
                        failures.append(str(body))

            await asyncio.gather(*(worker() for _ in range(workers)))
        return failures

    failures = asyncio.run(send_all())
    return _numbers_sent(calls, failures)


def _numbers_sent(calls: list[dict[str, str]], failures: list[str]) -> int:
    """The numbers the calls sent; a hand-written client that failed a call fails the benchmark."""
    if failures:
        raise RuntimeError(f"{len(failures)} call(s) failed: {failures[:3]}")
    return sum(call["mobile"].count(",") + 1 for call in calls)


def bulk_calls(mobiles: list[str]) -> list[dict[str, str]]:
    """One call per ``BATCH`` numbers."""
    return [
        {"mobile": ",".join(mobiles[start : start + BATCH]), "tplId": str(TPL_ID)}
        for start in range(0, len(mobiles), BATCH)
    ]


def personal_calls(path: str | Path, tpl_id: int) -> list[dict[str, str]]:
    """One call per customer row, its variables as send.php's ``tplValue`` (``#name#=value&...``)."""
    with open(path, encoding="utf-8", newline="") as stream:
        return [
            {
                "mobile": row.pop("mobile"),
                "tplId": str(tpl_id),
                "tplValue": urlencode({f"#{name}#": value for name, value in row.items()}),
            }
            for row in csv.DictReader(stream)
        ]


def juhe_connection(conn_id: str = "juhe_sms_default") -> tuple[str, str]:
    """The sandbox's URL and key, from the connection the operator uses too."""
    from airflow.sdk import BaseHook

    connection = BaseHook.get_connection(conn_id)
    url = connection.host if "://" in connection.host else f"http://{connection.host}"
    return url.rstrip("/") + (f":{connection.port}" if connection.port else ""), connection.password
