"""A Juhe-compatible sandbox server: run DAGs and tests without a key and without sending a real SMS."""

from __future__ import annotations

from airflow_provider_juhe.sandbox.server import JuheSandbox

__all__ = ["JuheSandbox"]
