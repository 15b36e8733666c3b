"""The BigQuery emulator fixtures (``bq_emulator``, ``bq_settings``) live in tests/conftest.py,
shared with the dashboard's tests."""
