"""``python -m airflow_provider_minimax.testing.emulator --port N``: serve the emulator."""

from airflow_provider_minimax.testing.emulator._app import main

main()
