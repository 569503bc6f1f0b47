"""
The alert state's cost, Redis against Airflow Variables (SQLite metadata DB, the default store).

1. Per-callback state overhead: a grouped, capped notification (``group_key``, ``repeat_interval``,
   ``max_per_number``) against the same notification without them, in one process, each a new
   episode so that each pages; median and p90 of the difference over 15 notifications.
2. A storm: 20 notifications of one episode, each in a forked process, at one instant; wall time until
   all ended, and the SMS sent (promised: 1).

Targets (issue 24): Redis median <= 50 ms; a 20-process storm done in <= 3 s on Redis.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import platform
import statistics
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from _setup import APPKEY, airflow_home, quiet_logs

NOTIFICATIONS = 15
STORM = 20
ON_CALL = "13800138000"


def _notifier(tpl_id: int, group: str | None):
    from airflow_provider_juhe.notifications.juhe_sms import JuheSmsNotifier

    grouped = {"group_key": group, "repeat_interval": timedelta(hours=1), "max_per_number": {"minute": 60}}
    return JuheSmsNotifier(
        mobiles=ON_CALL, tpl_id=tpl_id, tpl_value={"dag": "etl"}, **(grouped if group else {})
    )


def overhead(tpl_id: int, label: str) -> dict[str, float]:
    plain, grouped = [], []
    for n in range(NOTIFICATIONS):
        began = time.perf_counter()
        _notifier(tpl_id, None)({"dag": None})
        plain.append(time.perf_counter() - began)
        began = time.perf_counter()
        _notifier(tpl_id, f"{label}-{n}-{time.time()}")({"dag": None})
        grouped.append(time.perf_counter() - began)
    extra = sorted(g - p for g, p in zip(grouped, plain, strict=True))
    return {
        "median_ms": round(statistics.median(extra) * 1000, 1),
        "p90_ms": round(extra[int(len(extra) * 0.9) - 1] * 1000, 1),
    }


def _at(moment: float, tpl_id: int, group: str) -> None:
    time.sleep(max(0.0, moment - time.time()))
    _notifier(tpl_id, group)({"dag": None})


def storm(tpl_id: int, group: str, messages) -> dict[str, float]:
    before = messages()
    forks = multiprocessing.get_context("fork")
    moment = time.time() + 1.0
    children = [forks.Process(target=_at, args=(moment, tpl_id, group)) for _ in range(STORM)]
    for child in children:
        child.start()
    for child in children:
        child.join(120)
    return {"seconds": round(time.time() - moment, 2), "sms": messages() - before}


def main() -> None:
    from tests.redis_server import RedisServer

    dags = Path(os.environ["AIRFLOW_HOME"]) / "dags"
    dags.mkdir(exist_ok=True)
    airflow_home(dags)
    quiet_logs()
    redis = RedisServer().start()
    results = {}
    try:
        from airflow_provider_juhe.sandbox import JuheSandbox

        with JuheSandbox(appkey=APPKEY) as sandbox:  # in this process: the forked storm calls it over HTTP
            os.environ["AIRFLOW_CONN_JUHE_SMS_DEFAULT"] = sandbox.connection_json()
            os.environ["AIRFLOW_CONN_JUHE_ALERT_STATE"] = redis.connection_json()
            tpl_id = sandbox.add_template("#dag#失败", "运维")

            def messages() -> int:
                return len(sandbox.messages())

            for store, conn_id in (("variables", ""), ("redis", "juhe_alert_state")):
                os.environ["AIRFLOW__JUHE__ALERT_STATE_CONN_ID"] = conn_id
                results[store] = {
                    "overhead": overhead(tpl_id, store),
                    "storm": storm(tpl_id, f"storm-{store}-{time.time()}", messages),
                }
    finally:
        redis.stop()
    print(
        json.dumps(
            {
                "benchmark": "alert_state",
                "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {sys.version.split()[0]}",
                **results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
