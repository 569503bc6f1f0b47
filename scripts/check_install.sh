#!/usr/bin/env bash
# The wheel in dist/ installed with the documented recipe (docs/airflow-versions.md: constraints first)
# into a clean virtualenv per Airflow line, then checked as a user would: `airflow providers list`
# shows the provider and its version, `airflow config list` its [juhe] options, and one
# `airflow dags test` sends an SMS to the sandbox (the first command that fails when a constraints
# file is missing). Usage: scripts/check_install.sh 3.0.6 3.2.2 3.3.2
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
PYTHON=${PYTHON:-python3}
WHEEL=$(ls "$REPO"/dist/airflow_provider_juhe-*-py3-none-any.whl)
VERSION=$(basename "$WHEEL" | cut -d- -f2)
status=0
for airflow in "$@"; do
    work=$(mktemp -d "/tmp/juhe-check-install-$airflow.XXXXXX")
    started=$(date +%s)
    echo "== Airflow $airflow: $work"
    (
        set -e
        "$PYTHON" -m venv "$work/venv"
        "$work/venv/bin/python" -m pip install --quiet --upgrade pip
        # The recipe of docs/airflow-versions.md, verbatim.
        "$work/venv/bin/python" -m pip install --quiet -c "$REPO/constraints/airflow-$airflow.txt" \
            "apache-airflow==$airflow" "$WHEEL"
        export AIRFLOW_HOME=$work/home AIRFLOW__CORE__LOAD_EXAMPLES=False
        export AIRFLOW__CORE__DAGS_FOLDER=$work/dags
        mkdir -p "$AIRFLOW__CORE__DAGS_FOLDER"
        cd "$work"  # so that only the installed wheel can be imported
        providers=$("$work/venv/bin/airflow" providers list)
        echo "$providers" | grep -E "airflow-provider-juhe +\| +[^|]*\| +$VERSION" \
            || { echo "$providers"; echo "FAIL providers list: airflow-provider-juhe $VERSION"; exit 1; }
        # 3.2 and later hide the values (and comment the lines out) unless --show-values is given.
        config=$("$work/venv/bin/airflow" config list --section juhe)
        for option in alert_state_conn_id ledger_retention_days; do
            echo "$config" | grep -E "^(# )?$option = " \
                || { echo "$config"; echo "FAIL config list: [juhe] $option"; exit 1; }
        done
        "$work/venv/bin/airflow" db migrate > "$work/migrate.log" 2>&1
        cp "$REPO/scripts/check_install_dag.py" "$AIRFLOW__CORE__DAGS_FOLDER/"
        "$work/venv/bin/python" -m airflow_provider_juhe.sandbox --port 0 --appkey sandbox-key --quiet \
            --template "【运维】#dag#：#task#失败，请处理（本条告警代表#count#次失败）" \
            --messages "$work/messages.jsonl" > "$work/sandbox.log" 2>&1 &
        sandbox=$!
        trap 'kill $sandbox 2>/dev/null || true' EXIT
        for _ in $(seq 100); do grep -q "listening on" "$work/sandbox.log" && break; sleep 0.2; done
        url=$(grep -o "http://127.0.0.1:[0-9]*" "$work/sandbox.log" | head -1)
        export AIRFLOW_CONN_JUHE_SMS_DEFAULT="{\"conn_type\": \"juhe_sms\", \"host\": \"$url\", \"password\": \"sandbox-key\"}"
        "$work/venv/bin/airflow" dags test check_install > "$work/dags-test.log" 2>&1 \
            || { tail -n 30 "$work/dags-test.log"; echo "FAIL airflow dags test"; exit 1; }
        kill $sandbox; wait $sandbox 2>/dev/null || true
        test "$(wc -l < "$work/messages.jsonl")" -eq 1 || { echo "FAIL the sandbox got no SMS"; exit 1; }
        echo "dags test: 1 SMS received by the sandbox"
    ) && echo "PASS Airflow $airflow ($(( $(date +%s) - started )) s)" || { status=1; echo "FAIL Airflow $airflow"; }
    [ "$status" = 0 ] && rm -rf "$work"
done
exit $status
