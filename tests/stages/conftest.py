"""The stage tests use the throw-away project of tests/conftest.py (`project`)."""
