"""Apache Airflow provider for the Juhe (聚合数据) financial SMS API."""

from __future__ import annotations

from typing import Any

__version__ = "0.2.0"


def get_provider_info() -> dict[str, Any]:
    """Provider metadata read by Airflow's providers manager (``apache_airflow_provider`` entry point)."""
    from airflow_provider_juhe.config import provider_config

    return {
        "package-name": "airflow-provider-juhe",
        "name": "Juhe SMS",
        "description": "Send SMS through the Juhe (聚合数据) financial SMS API from Airflow.",
        "versions": [__version__],
        "connection-types": [
            {
                "connection-type": "juhe_sms",
                "hook-class-name": "airflow_provider_juhe.hooks.juhe_sms.JuheSmsHook",
                "hook-name": "Juhe SMS",
                "ui-field-behaviour": {
                    "hidden-fields": ["login"],
                    "relabeling": {
                        "password": "App key",
                        "host": "Host or base URL",
                        "schema": "Scheme (http or https)",
                    },
                    "placeholders": {
                        "host": "v.juhe.cn (or a full URL such as http://127.0.0.1:8765)",
                        "schema": "https (ignored when the host is a full URL)",
                        "port": "optional; ignored when the host is a full URL",
                        "password": "the appkey from your Juhe console",
                    },
                },
                "conn-fields": {
                    "timeout": {
                        "label": "Timeout (seconds)",
                        "description": "Seconds to wait for each HTTP request.",
                        "schema": {"type": ["number", "null"], "default": 10, "minimum": 0},
                    },
                    "max_retries": {
                        "label": "Max retries",
                        "description": "Retries of a call that surely did not take effect. "
                        "A send is never retried once its request left.",
                        "schema": {"type": ["integer", "null"], "default": 3, "minimum": 0},
                    },
                    "max_calls_per_second": {
                        "label": "Max calls per second",
                        "description": "Pace API calls of one task; empty for no limit.",
                        "schema": {"type": ["number", "null"], "minimum": 0},
                    },
                },
            }
        ],
        "integrations": [
            {
                "integration-name": "Juhe SMS",
                "external-doc-url": "https://www.juhe.cn/docs",
                "tags": ["service"],
            }
        ],
        "hooks": [
            {"integration-name": "Juhe SMS", "python-modules": ["airflow_provider_juhe.hooks.juhe_sms"]}
        ],
        "operators": [
            {"integration-name": "Juhe SMS", "python-modules": ["airflow_provider_juhe.operators.juhe_sms"]}
        ],
        "sensors": [
            {"integration-name": "Juhe SMS", "python-modules": ["airflow_provider_juhe.sensors.juhe_sms"]}
        ],
        "triggers": [
            {"integration-name": "Juhe SMS", "python-modules": ["airflow_provider_juhe.triggers.juhe_sms"]}
        ],
        "notifications": ["airflow_provider_juhe.notifications.juhe_sms.JuheSmsNotifier"],
        "config": provider_config(),
    }
