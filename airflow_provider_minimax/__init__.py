"""Apache Airflow provider for MiniMax M2.7."""

__version__ = "0.1.0"
