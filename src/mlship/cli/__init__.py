"""The one command-line entry point, `mlship` (mlship.cli:app): flags in, a stage called, its
result printed, an exit code out. One module per command group, each adding its commands to
the app in common.py when imported here, in the order `mlship --help` lists them. Paths come
from dvc.yaml's `vars`; heavy imports happen inside the commands."""

from mlship.cli import pipeline, release, serving, ship  # noqa: F401  (they add the commands)
from mlship.cli.common import app

__all__ = ["app"]
