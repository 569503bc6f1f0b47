"""Airflow discovers the provider, its connection type and its connection form."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import airflow
import jsonschema
import pytest

import airflow_provider_juhe
from airflow_provider_juhe import get_provider_info


def test_entry_point_points_at_get_provider_info():
    (entry,) = [
        e
        for e in entry_points(group="apache_airflow_provider")
        if e.value.startswith("airflow_provider_juhe")
    ]

    assert entry.load() is get_provider_info


def test_provider_info_is_valid_against_airflows_schema():
    schema = json.loads((Path(airflow.__file__).parent / "provider_info.schema.json").read_text())

    jsonschema.validate(get_provider_info(), schema)


def test_every_listed_module_and_class_imports():
    import importlib

    info = get_provider_info()
    for group in ("hooks", "operators", "sensors", "triggers"):
        for entry in info.get(group, []):
            for module in entry["python-modules"]:
                importlib.import_module(module)
    for path in [c["hook-class-name"] for c in info["connection-types"]] + info.get("notifications", []):
        module, _, name = path.rpartition(".")
        assert getattr(importlib.import_module(module), name)


def test_providers_manager_sees_hook_and_form():
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    try:
        from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime
    except ImportError:  # before 3.2 one manager serves tasks too
        hook = manager.hooks["juhe_sms"]
    else:
        hook = ProvidersManagerTaskRuntime().hooks["juhe_sms"]

    assert manager.providers["airflow-provider-juhe"].version == airflow_provider_juhe.__version__
    assert hook.hook_class_name == "airflow_provider_juhe.hooks.juhe_sms.JuheSmsHook"
    assert hook.connection_id_attribute_name == "juhe_conn_id"
    behaviour = manager.field_behaviours["juhe_sms"]
    assert behaviour["relabeling"]["password"] == "App key"
    assert "login" in behaviour["hidden_fields"]
    assert "v.juhe.cn" in behaviour["placeholders"]["host"]
    widgets = {name for name in manager.connection_form_widgets if name.startswith("extra__juhe_sms__")}
    assert widgets == {
        "extra__juhe_sms__timeout",
        "extra__juhe_sms__max_retries",
        "extra__juhe_sms__max_calls_per_second",
    }


def test_airflow_providers_list_shows_it():
    airflow_cli = Path(sys.executable).with_name("airflow")
    listed = subprocess.run(
        [str(airflow_cli), "providers", "list", "-o", "json"],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
    )

    assert listed.returncode == 0, listed.stderr
    # Airflow 3.0 prints its log lines to stdout too: the listing is the line that is JSON.
    (listing,) = [line for line in listed.stdout.splitlines() if line.startswith(("[{", "[]"))]
    assert "airflow-provider-juhe" in [p["package_name"] for p in json.loads(listing)]


def test_the_ui_connection_form_on_this_release():
    """
    What the API server's connection form shows: 3.2+ reads the provider info, 3.0/3.1 the hook's
    ``get_ui_field_behaviour`` / ``get_connection_form_widgets`` (through WTForms, which they need).
    """
    pytest.importorskip("wtforms")
    from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService

    (meta,) = [m for m in HookMetaService.hook_meta_data() if m.connection_type == "juhe_sms"]
    fields = meta.standard_fields
    assert fields.password.title == "App key"
    assert fields.login.hidden
    assert "v.juhe.cn" in fields.host.placeholder
    assert set(meta.extra_fields) == {"timeout", "max_retries", "max_calls_per_second"}
    assert meta.extra_fields["max_retries"]["schema"]["type"] == ["integer", "null"]


def test_the_classic_form_is_the_declared_one():
    from airflow_provider_juhe.hooks.juhe_sms import JuheSmsHook

    declared = get_provider_info()["connection-types"][0]["ui-field-behaviour"]
    behaviour = JuheSmsHook.get_ui_field_behaviour()
    assert behaviour["hidden_fields"] == declared["hidden-fields"]
    assert behaviour["relabeling"]["password"] == "App key"
    assert behaviour["placeholders"] == declared["placeholders"]
