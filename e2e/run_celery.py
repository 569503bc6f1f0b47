"""
The end-to-end tier scaled out: the provider's wheel inside Airflow with the CeleryExecutor, Redis as
the broker, PostgreSQL as the metadata DB and two Celery workers, all on 127.0.0.1.

PostgreSQL (as the ``postgres`` user) and Redis start on free ports with throwaway data; Airflow's
api-server, scheduler, dag-processor, triggerer and workers ``w1`` and ``w2`` each run in their own
process group. Besides the checks both tiers share (``driver.py``), it proves what only a scaled-out
deployment can break: a storm spread over both workers, a send retried on the other worker after its
task process or its whole worker was killed, and no app key in PostgreSQL or Redis.

Run by ``make e2e-celery`` with its own virtualenv's Python, from outside the source tree. Last
line: ``e2e-celery: N passed, M failed``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import redis
from celery import Celery
from driver import (
    BULK_DAG,
    PARALLEL_TASKS,
    Deployment,
    JuheSandbox,
    KilledSend,
    ProcessGroups,
    Templates,
    check,
    check_alert_race,
    check_campaign,
    check_clear,
    check_deadline_alert,
    check_examples,
    check_killed_send,
    free_port,
    killed_send,
    run_tier,
    start_campaign,
    wait_for,
)

WORKERS = ("w1", "w2")
QUEUE = "default"  # [operators] default_queue: what both workers consume
CASE_1 = [f"139{n:08d}" for n in range(10_000_000, 10_000_300)]
CASE_2 = [f"139{n:08d}" for n in range(10_000_300, 10_000_600)]
INITDB = ["-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-locale", "--no-sync"]
POSTGRES = ["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=300"]
REDIS = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]  # nothing written to disk
RACE_NUMBER = "19800008888"  # in no example file: every SMS it gets is the race's
#: What each worker logs per task it takes (Airflow's celery_executor_utils.execute_workload).
WORKLOAD = re.compile(
    r"Executing workload in Celery: .*?task_id='([^']+)', dag_id='([^']+)', run_id='([^']+)', try_number=(\d+)"
)


def descendants(root: int) -> list[int]:
    """Every live process below ``root``, from /proc (task processes sit in their own process groups)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(stat.parent.name))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


class CeleryDeployment(Deployment):
    """PostgreSQL, Redis, Airflow's components and two Celery workers, each in its own process group."""

    tier = "e2e-celery"

    def __init__(self, home: Path, sandbox: JuheSandbox) -> None:
        self.pg_port, self.redis_port = free_port(), free_port()
        self.pg_bin = Path(sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))[-1]).parent
        # Its own folder: postgres cannot enter the root-only AIRFLOW_HOME.
        self.pg_root = Path(tempfile.mkdtemp(prefix="juhe-e2e-pg-"))
        self.services = ProcessGroups(home)  # stopped after the stored data was read
        self.broker = f"redis://127.0.0.1:{self.redis_port}/0"
        self.control = Celery(broker=self.broker).control
        super().__init__(home, sandbox)

    def settings(self) -> dict[str, str]:
        database = f"postgresql://postgres@127.0.0.1:{self.pg_port}/airflow"
        return {
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CORE__PARALLELISM": "32",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database.replace("postgresql:", "postgresql+psycopg2:"),
            "AIRFLOW__CELERY__BROKER_URL": self.broker,
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{database}",
            **alert_state_settings(self.redis_port),
        }

    def components(self) -> dict[str, list[str]]:
        # Each worker's log server would bind the same port: --skip-serve-logs (one disk holds the logs).
        slots = str(PARALLEL_TASKS // len(WORKERS))
        workers = {
            name: [
                *f"celery worker --concurrency {slots} -H {name} --skip-serve-logs".split(),
                "--pid",
                str(self.home / f"{name}.pid"),
            ]
            for name in WORKERS
        }
        return {**super().components(), **workers}

    # -- PostgreSQL and Redis -------------------------------------------------------------------------

    def pg(self, tool: str, *args: str) -> str:
        """A PostgreSQL client tool against the tier's server (trust authentication on 127.0.0.1)."""
        argv = [str(self.pg_bin / tool), "-h", "127.0.0.1", "-p", str(self.pg_port), "-U", "postgres", *args]
        return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=120).stdout

    def prepare(self) -> None:
        shutil.chown(self.pg_root, "postgres", "postgres")
        data = str(self.pg_root / "data")
        as_postgres = ["runuser", "-u", "postgres", "--"]
        subprocess.run(
            [*as_postgres, str(self.pg_bin / "initdb"), "-D", data, *INITDB],
            check=True,
            capture_output=True,
            timeout=120,
        )
        self.services.spawn(
            "postgres",
            [
                *as_postgres,
                str(self.pg_bin / "postgres"),
                "-D",
                data,
                "-p",
                str(self.pg_port),
                *POSTGRES,
                "-c",
                f"unix_socket_directories={self.pg_root}",
            ],
        )
        self.services.spawn(
            "redis",
            ["redis-server", "--port", str(self.redis_port), "--dir", str(self.home), *REDIS],
        )
        wait_for(
            "PostgreSQL",
            lambda: self.pg("pg_isready") is not None,
            60,
            tolerate=(subprocess.CalledProcessError,),
        )
        wait_for("Redis", lambda: self.redis().ping(), 30, tolerate=(redis.RedisError,))
        self.pg("createdb", "airflow")
        # Every command Redis receives, line-buffered to a file: where the messages went, not only
        # what is left at the end.
        self.services.spawn(
            "redis-monitor",
            ["stdbuf", "-oL", "redis-cli", "-p", str(self.redis_port), "monitor"],
            log=self.home / "redis-monitor.txt",
        )

    def redis(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.redis_port)

    def ready(self) -> None:
        wait_for(
            "both Celery workers to answer a ping",
            lambda: len(self.control.ping(destination=[f"celery@{w}" for w in WORKERS], timeout=1)) == 2,
            120,
            interval=1,
        )

    def stop(self) -> list[str]:
        alive = super().stop()
        self.services.signal("redis-monitor", signal.SIGTERM)
        return alive

    def stored(self) -> tuple[list[str], dict[str, bytes]]:
        rendered = self.pg(
            "psql", "-d", "airflow", "-At", "-c", "SELECT rendered_fields FROM rendered_task_instance_fields"
        ).splitlines()
        client = self.redis()
        values = b"\n".join(
            part for key in client.scan_iter(count=1000) for part in (key, *self._redis_values(client, key))
        )
        return rendered, {
            "pg_dump of the metadata DB": self.pg("pg_dump", "airflow").encode(),
            "Redis: every key and value at the end (--scan)": values,
            "Redis: every command it received (MONITOR)": (self.home / "redis-monitor.txt").read_bytes(),
        }

    @staticmethod
    def _redis_values(client: redis.Redis, key: bytes) -> list[bytes]:
        kind = client.type(key)
        if kind == b"string":
            return [client.get(key) or b""]
        if kind == b"list":
            return client.lrange(key, 0, -1)
        if kind == b"hash":
            return [part for pair in client.hgetall(key).items() for part in pair]
        if kind == b"set":
            return list(client.smembers(key))
        if kind == b"zset":
            return client.zrange(key, 0, -1)
        return []

    def close(self) -> None:
        self.services.stop()
        shutil.rmtree(self.pg_root, ignore_errors=True)

    # -- the workers ----------------------------------------------------------------------------------

    def workloads(self, worker: str) -> list[tuple[str, str, str, int]]:
        """(task_id, dag_id, run_id, try_number) of every task the worker's own log says it took."""
        return [(t, d, r, int(n)) for t, d, r, n in WORKLOAD.findall(self.log(worker))]

    def worker_of(self, dag_id: str, run_id: str, try_number: int) -> list[str]:
        return [w for w in WORKERS if any(wl[1:] == (dag_id, run_id, try_number) for wl in self.workloads(w))]

    def worker_running(self, pid: int) -> str:
        """The worker whose process tree holds ``pid``."""
        (worker,) = (w for w in WORKERS if pid in descendants(self.groups.processes[w].pid))
        return worker

    def consume(self, worker: str, on: bool) -> None:
        """Let a worker take tasks from the queue again, or stop it taking any (a drain)."""
        command = self.control.add_consumer if on else self.control.cancel_consumer
        replies = command(QUEUE, destination=[f"celery@{worker}"], reply=True, timeout=5, limit=1)
        if not replies:
            raise RuntimeError(f"celery@{worker} did not answer {command.__name__}")

    def kill_worker(self, worker: str) -> None:
        """SIGKILL a worker's process group and every process it started, each in its own group."""
        doomed = descendants(self.groups.processes[worker].pid)
        self.groups.signal(worker, signal.SIGKILL)
        for pid in doomed:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(os.getpgid(pid), signal.SIGKILL)


# -- the checks only a scaled-out deployment has ---------------------------------------------------------


# -- the alert state in the tier's own Redis -----------------------------------------------------------

ALERT_STATE_DB = 1  # the Celery broker uses database 0


def alert_state_settings(redis_port: int) -> dict[str, str]:
    """Every notifier keeps its alert state in the tier's Redis: ``[juhe] alert_state_conn_id``."""
    connection = {
        "conn_type": "redis",
        "host": "127.0.0.1",
        "port": redis_port,
        "extra": {"db": ALERT_STATE_DB},
    }
    return {
        "AIRFLOW_CONN_JUHE_ALERT_STATE": json.dumps(connection),
        "AIRFLOW__JUHE__ALERT_STATE_CONN_ID": "juhe_alert_state",
    }


def check_alert_state_in_redis(airflow: CeleryDeployment) -> None:
    """The storms above kept their episodes and caps in Redis (with a TTL), none in Variables."""
    client = redis.Redis(host="127.0.0.1", port=airflow.redis_port, db=ALERT_STATE_DB)
    keys = list(client.scan_iter("juhe_sms_*"))
    in_variables = airflow.pg(
        "psql",
        "-d",
        "airflow",
        "-At",
        "-c",
        "SELECT count(*) FROM variable WHERE key LIKE 'juhe_sms_alert%' OR key LIKE 'juhe_sms_caps%'",
    ).strip()
    check(
        "alert state in Redis ([juhe] alert_state_conn_id): episodes and caps there with a TTL, none in Variables",
        bool(keys) and all(client.pttl(k) > 0 for k in keys) and in_variables == "0",
        f"{len(keys)} keys in Redis db {ALERT_STATE_DB}; {in_variables} alert Variables in PostgreSQL",
    )


def check_storm_spread(airflow: CeleryDeployment, run_id: str) -> None:
    per_worker = {w: sum(wl[2] == run_id for wl in airflow.workloads(w)) for w in WORKERS}
    check(
        "the alert storm's 20 failing tasks ran on both workers",
        all(per_worker.values()) and sum(per_worker.values()) == 20,
        ", ".join(f"{w}: {n} tasks" for w, n in per_worker.items()),
    )


def check_retry_elsewhere(airflow: CeleryDeployment, what: str, outcome: KilledSend, first: str) -> None:
    tries = {n: airflow.worker_of(BULK_DAG, outcome.run_id, n) for n in (1, 2)}
    check(
        f"{what}: the retry ran on the other worker (ledger replayed from PostgreSQL)",
        tries[1] == [first] and len(tries[2]) == 1 and tries[2] != tries[1],
        f"try 1 on {tries[1]} (killed there), try 2 on {tries[2]}, from each worker's own log",
    )


def check_both_workers(airflow: CeleryDeployment) -> None:
    counts = {w: Counter(wl[1] for wl in airflow.workloads(w)) for w in WORKERS}
    check(
        "work seen on both workers",
        all(counts.values()),
        "; ".join(
            f"{w}: {sum(c.values())} tasks ({', '.join(f'{d} {n}' for d, n in c.most_common(3))}…)"
            for w, c in counts.items()
        ),
    )


SHARDED_DAG = "e2e_juhe_sharded_campaign"


def check_sharded_campaign(airflow: CeleryDeployment, sandbox: JuheSandbox) -> None:
    """
    The splitter over 60 customers in 80 rows (20 repeated in other spellings, one opted out): a
    campaign-wide cap below the campaign fails before any shard is written; a cap above it sends
    each customer once from 8 shards spread over both workers, and the totals add up.
    """
    tpl_id = sandbox.add_template("#name#，您的账单已出，请按时还款。", "银行")
    customers = [f"1370000{i:04d}" for i in range(60)]
    lines = ["mobile,name"] + [f"{number},客户{i}" for i, number in enumerate(customers)]
    lines += [f"+86 {number[:3]} {number[3:7]} {number[7:]},again" for number in customers[::3]]
    source = airflow.home / "sharded-customers.csv"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    conf = {
        "customers": str(source),
        "suppress": [customers[1]],
        "tpl_id": tpl_id,
        "shards": 8,
        "folder": (airflow.home / "sharded").as_uri(),
    }
    capped = airflow.trigger(SHARDED_DAG, {**conf, "max_recipients": 58})
    airflow.wait_run(SHARDED_DAG, capped)
    states = {ti["task_id"]: ti["state"] for ti in airflow.task_instances(SHARDED_DAG, capped)}
    check(
        "sharded campaign: a campaign-wide cap (58 < 59 to send) fails the split before any shard or send",
        states.get("split") == "failed"
        and not [m for m in sandbox.messages() if m["tpl_id"] == tpl_id]
        and not (airflow.home / "sharded" / capped.replace(":", "_")).exists(),
        f"task states {states}",
    )
    run_id = airflow.trigger(SHARDED_DAG, {**conf, "max_recipients": 59})
    state = airflow.wait_run(SHARDED_DAG, run_id, timeout=240)
    reached = [n for m in sandbox.messages() if m["tpl_id"] == tpl_id for n in m["mobiles"]]
    totals = airflow.xcom(SHARDED_DAG, run_id, "totals") if state == "success" else {}
    per_worker = {w: sum(wl[0] == "send" and wl[2] == run_id for wl in airflow.workloads(w)) for w in WORKERS}
    check(
        "sharded campaign: 80 rows, 60 customers, 8 shards on both workers, each customer once",
        state == "success"
        and sorted(reached) == sorted(set(customers) - {customers[1]})
        and (totals.get("requested"), totals.get("sent"), totals.get("suppressed")) == (60, 59, 1)
        and totals.get("duplicate_count") == 20
        and all(per_worker.values())
        and sum(per_worker.values()) == 8,
        f"run {state}; {len(reached)} SMS to {len(set(reached))} numbers; shards per worker {per_worker}; "
        f"totals {dict((k, totals.get(k)) for k in ('requested', 'sent', 'suppressed', 'duplicate_count'))}",
    )


def scenario(airflow: Deployment, sandbox: JuheSandbox, templates: Templates) -> None:
    assert isinstance(airflow, CeleryDeployment)
    campaign_run, opens = start_campaign(airflow)
    runs = check_examples(airflow, sandbox, templates)
    check_storm_spread(airflow, runs["alert_storm"])
    check_campaign(airflow, sandbox, campaign_run, opens, templates.campaign)
    check_alert_race(airflow, sandbox, templates.race, RACE_NUMBER)
    check_sharded_campaign(airflow, sandbox)
    check_deadline_alert(airflow, sandbox, templates.deadline, grouped=True)
    check_alert_state_in_redis(airflow)
    check_both_workers(airflow)

    # Case 1: the task process dies; its worker is drained first, so the retry must go elsewhere.
    first: dict[str, str] = {}

    def kill_task(pid: int) -> None:
        first["worker"] = airflow.worker_running(pid)
        airflow.consume(first["worker"], on=False)
        os.kill(pid, signal.SIGKILL)

    outcome = killed_send(airflow, sandbox, templates.bulk, CASE_1, kill_task)
    airflow.consume(first["worker"], on=True)
    what = "kill -9 of the task process on a Celery worker"
    check_killed_send(what, outcome, CASE_1)
    check_retry_elsewhere(airflow, what, outcome, first["worker"])

    # Case 2: the whole worker dies; the scheduler retries after task_instance_heartbeat_timeout.
    def kill_its_worker(pid: int) -> None:
        first["worker"] = airflow.worker_running(pid)
        airflow.kill_worker(first["worker"])

    outcome = killed_send(airflow, sandbox, templates.bulk, CASE_2, kill_its_worker)
    what = "kill -9 of the whole Celery worker (its group and its task processes)"
    check_killed_send(what, outcome, CASE_2)
    check_retry_elsewhere(airflow, what, outcome, first["worker"])
    check_clear(airflow, sandbox, outcome.run_id)


if __name__ == "__main__":
    sys.exit(run_tier(CeleryDeployment, scenario, budget=840))
