"""The MLflow tracking server and model registry: runs, versions and aliases, and loading
a registered version safely."""
