"""The running Airflow version, for the few places where behaviour differs between releases."""

from __future__ import annotations

from airflow import __version__ as airflow_version
from packaging.version import Version

AIRFLOW_V_3_1_PLUS: bool = Version(Version(airflow_version).base_version) >= Version("3.1.0")
