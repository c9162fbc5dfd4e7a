"""PipelinePaths: every artifact path, declared once in dvc.yaml's `vars: - paths:` block.

Read into a typed, frozen model: a path missing from dvc.yaml or an unknown key there is an
error naming it, and a mistyped attribute in the code is a type error.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from mlship.errors import InputError


class PipelinePaths(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # the DVC stages' outputs
    train: Path
    test: Path
    ingest_report: Path
    contract_json: Path
    contract_md: Path
    model_dir: Path
    metrics: Path
    latency: Path
    predictions: Path
    confusion: Path
    roc: Path
    precision_recall: Path
    residuals: Path
    # written after the DVC stages
    gate_json: Path
    gate_md: Path
    gate_junit: Path
    champion_predictions: Path
    report_html: Path
    signature: Path  # the model's signature, made by `mlship register` with a signing key
    provenance: Path  # its provenance (SLSA), signed with the same key
    image_json: Path
    sbom: Path  # the pushed image's CycloneDX SBOM
    vulnerabilities: Path  # trivy's report on it, when the scan is on
    loadtest_json: Path
    loadtest_md: Path
    loadtest_html: Path
    loadtest_junit: Path

    @classmethod
    def read(cls, dvc_file: Path) -> PipelinePaths:
        """The paths in `dvc_file`, relative to the folder that holds it."""
        import yaml  # here, as in stage_dependencies: the server reads no YAML

        try:
            document = yaml.safe_load(dvc_file.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as error:
            raise InputError(f"{dvc_file}: cannot read it: {error}") from error
        declared = None
        for entry in (document or {}).get("vars", []) if isinstance(document, dict) else []:
            if isinstance(entry, dict) and isinstance(entry.get("paths"), dict):
                declared = entry["paths"]
        if declared is None:
            raise InputError(f"{dvc_file}: no `vars: - paths:` block declaring the artifact paths")
        base = dvc_file.parent
        try:
            return cls.model_validate({key: base / str(value) for key, value in declared.items()})
        except ValidationError as error:
            problems = "; ".join(
                f"paths.{'.'.join(map(str, item['loc']))}: "
                + ("unknown key" if item["type"] == "extra_forbidden" else item["msg"])
                for item in error.errors()
            )
            raise InputError(f"{dvc_file}: {problems}") from error

    def deploy_report(self, env: str) -> Path:
        """Where `mlship deploy --env <env>` writes its report (JSON; .md and .html beside
        it, and junit/deploy-<env>.xml under the gate's JUnit folder)."""
        return self.image_json.parent / f"deploy-{env}.json"


def stage_dependencies(dvc_file: Path, stage: str) -> tuple[str, ...]:
    """The `deps` of one stage in `dvc_file` as written (a `${...}` left as it is)."""
    import yaml

    try:
        document = yaml.safe_load(dvc_file.read_text(encoding="utf-8"))
        deps = document["stages"][stage].get("deps", [])
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError) as error:
        raise InputError(f"{dvc_file}: cannot read the deps of stage {stage!r}: {error}") from error
    return tuple(str(dep) for dep in deps)
