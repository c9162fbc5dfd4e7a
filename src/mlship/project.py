"""Project: what the stages after the DVC pipeline read — params.yaml parsed, the settings
(named after the model), dvc.yaml's paths, and the two files themselves."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mlship.config.params import Params
from mlship.config.settings import Settings
from mlship.paths import PipelinePaths


@dataclass(frozen=True)
class Project:
    params: Params
    settings: Settings
    paths: PipelinePaths
    params_file: Path = Path("params.yaml")
    dvc_file: Path = Path("dvc.yaml")

    @property
    def dvc_lock(self) -> Path:
        return self.dvc_file.with_suffix(".lock")
