"""Each CI file is valid for its system (schemas, actionlint, Cloud Build's own types, a
Groovy parse) and carries what its users rely on: approvals, JUnit, e-mail, caches."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlship.ship.ci import jenkins
from tests.conftest import REPO
from tests.tools import tool

WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))
CLOUDBUILD_CONFIGS = [
    REPO / "cloudbuild.yaml",
    REPO / ".ci" / "cloudbuild" / "pull-request.yaml",
    REPO / ".ci" / "cloudbuild" / "production.yaml",
    REPO / ".ci" / "cloudbuild" / "ct.yaml",
    REPO / ".ci" / "cloudbuild" / "score.yaml",
]
TRIGGERS = sorted((REPO / ".ci" / "cloudbuild" / "triggers").glob("*.yaml"))


def run(*command: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stdout + done.stderr


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


# --- schemas and linters ----------------------------------------------------------------------


def test_workflows_match_the_github_schema_and_pass_actionlint() -> None:
    assert [p.name for p in WORKFLOWS] == ["cd.yml", "ci.yml", "ct.yml", "score.yml"]
    paths = [str(p) for p in WORKFLOWS]
    run(tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", *paths)
    run(tool("actionlint"), "-no-color", *paths)


def test_cloud_build_configs_match_the_schema() -> None:
    paths = [str(p) for p in CLOUDBUILD_CONFIGS]
    run(tool("check-jsonschema"), "--builtin-schema", "vendor.cloudbuild", *paths)


@pytest.mark.parametrize("path", CLOUDBUILD_CONFIGS, ids=lambda p: p.name)
def test_cloud_build_configs_parse_strictly_as_builds(path: Path) -> None:
    from google.cloud.devtools import cloudbuild_v1

    build = cloudbuild_v1.Build.from_json(json.dumps(load(path)), ignore_unknown_fields=False)
    assert build.steps and build.timeout.total_seconds() > 0
    assert build.options.machine_type == cloudbuild_v1.BuildOptions.MachineType.E2_HIGHCPU_8
    assert build.options.dynamic_substitutions  # _REGISTRY is built from _REGION
    ids = [step.id for step in build.steps]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("path", TRIGGERS, ids=lambda p: p.name)
def test_triggers_parse_strictly_as_build_triggers(path: Path) -> None:
    from google.cloud.devtools import cloudbuild_v1

    trigger = cloudbuild_v1.BuildTrigger.from_json(
        json.dumps(load(path)), ignore_unknown_fields=False
    )
    assert trigger.name.startswith("mlship-")
    assert trigger.service_account.endswith(".iam.gserviceaccount.com")


def test_the_strict_parse_rejects_an_unknown_field() -> None:
    from google.cloud.devtools import cloudbuild_v1
    from google.protobuf.json_format import ParseError

    with pytest.raises(ParseError, match="stepz"):
        cloudbuild_v1.Build.from_json(json.dumps({"stepz": []}), ignore_unknown_fields=False)


def test_the_agent_spark_and_team_mlflow_dockerfiles_pass_hadolint() -> None:
    run(tool("hadolint"), str(REPO / ".ci" / "agent.Dockerfile"))
    run(tool("hadolint"), str(REPO / ".ci" / "spark" / "dataproc.Dockerfile"))
    run(tool("hadolint"), str(REPO / ".ci" / "spark" / "operator.Dockerfile"))
    run(tool("hadolint"), str(REPO / "compose" / "mlflow.Dockerfile"))


# --- GitHub Actions -----------------------------------------------------------------------------


def test_ci_workflow_comments_on_the_pull_request_and_publishes_junit() -> None:
    ci = load(REPO / ".github" / "workflows" / "ci.yml")
    assert list(ci[True]) == ["pull_request"]  # YAML 1.1 reads `on` as True
    assert ci["permissions"]["pull-requests"] == "write"
    assert ci["concurrency"]["cancel-in-progress"] is True
    steps = ci["jobs"]["ci"]["steps"]
    assert ci["jobs"]["ci"]["timeout-minutes"] <= 60
    comment = next(s for s in steps if "mlship comment" in s.get("run", ""))
    assert comment["if"] == "always()" and "GITHUB_TOKEN" in comment["env"]
    junit = next(s for s in steps if "junit" in s.get("uses", ""))
    assert junit["with"]["report_paths"] == "reports/junit/*.xml"


def test_cd_workflow_uses_workload_identity_and_a_production_environment() -> None:
    text = (REPO / ".github" / "workflows" / "cd.yml").read_text()
    cd = yaml.safe_load(text)
    assert cd[True]["push"]["branches"] == ["main"]
    assert cd["permissions"]["id-token"] == "write"
    assert cd["concurrency"] == {"group": "cd-main", "cancel-in-progress": False}
    assert "credentials_json" not in text and "GOOGLE_APPLICATION_CREDENTIALS" not in text
    for name, job in cd["jobs"].items():
        assert job["timeout-minutes"] <= 60, name
        uses = [s.get("uses", "").split("@")[0] for s in job["steps"]]
        assert "google-github-actions/auth" in uses, name
        assert "google-github-actions/get-gke-credentials" in uses, name
        auth = next(s for s in job["steps"] if s.get("uses", "").startswith("google-github"))
        assert "workload_identity_provider" in auth["with"], name
    assert cd["jobs"]["production"]["environment"]["name"] == "production"
    assert cd["jobs"]["production"]["needs"] == "delivery"
    cached = [
        s["with"]["path"]
        for s in cd["jobs"]["delivery"]["steps"]
        if s.get("uses", "").startswith("actions/cache")
    ]
    assert ".dvc/cache" in cached and "~/.cache/uv" in cached
    assert any(s.get("with", {}).get("cache") == "pip" for s in cd["jobs"]["delivery"]["steps"])
    login = next(s for s in cd["jobs"]["delivery"]["steps"] if "login-action" in s.get("uses", ""))
    assert login["with"]["registry"].endswith("-docker.pkg.dev")  # Artifact Registry


# --- Jenkins ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def jenkinsfile() -> jenkins.Block:
    return jenkins.groovy_blocks(
        jenkins.groovy_leaves((REPO / "Jenkinsfile").read_text(encoding="utf-8"))
    )


def _only(root: jenkins.Block, name: str) -> jenkins.Block:
    found = root.find(name)
    assert len(found) == 1, f"{len(found)} `{name}` blocks"
    return found[0]


def _stage(root: jenkins.Block, name: str) -> jenkins.Block:
    return next(s for s in root.find("stage") if jenkins.jenkins_stage_name(s) == name)


def test_jenkins_options_hold_one_build_at_a_time_with_a_bounded_history(
    jenkinsfile: jenkins.Block,
) -> None:
    pipeline = _only(jenkinsfile, "pipeline")
    assert [t[1] for t in pipeline.children[0].head] == ["agent", "none"]
    options = next(c for c in pipeline.children if jenkins.call_name(c) == "options")
    words = {value for _, value in options.tokens()}
    assert {
        "disableConcurrentBuilds",
        "buildDiscarder",
        "logRotator",
        "timestamps",
        "timeout",
    } <= words


def test_jenkins_publishes_junit_always_and_mails_failures_to_the_people_involved(
    jenkinsfile: jenkins.Block,
) -> None:
    always = _stage(jenkinsfile, "delivery").find("always")
    assert always and "reports/junit/*.xml" in jenkins.strings(always[0].tokens())
    assert any(word == "junit" for _, word in always[0].tokens())
    pipeline_post = [
        c for c in _only(jenkinsfile, "pipeline").children if jenkins.call_name(c) == "post"
    ]
    outcomes = {jenkins.call_name(c) for c in pipeline_post[0].children}
    assert outcomes == {"failure", "fixed", "unstable"}
    for outcome in pipeline_post[0].children:
        assert [w for _, w in outcome.tokens()][1:2] == ["notify"]
    mail = [w for _, w in jenkinsfile.tokens()]
    at = mail.index("emailext")
    call = mail[at : at + 80]
    assert {"culprits", "developers", "requestor", "attachLog", "GATE_SUMMARY"} <= set(call)


def test_jenkins_production_approval_is_a_timed_input_for_release_managers_on_no_agent(
    jenkinsfile: jenkins.Block,
) -> None:
    approve = _stage(jenkinsfile, "approve")
    assert not approve.find("agent")  # the pipeline's `agent none`: no executor is held
    timeout = _only(approve, "timeout")
    tokens = timeout.tokens()
    words = [w for _, w in tokens]
    assert "input" in words
    assert words[words.index("submitter") + 2] == "release-managers"
    assert "submitterParameter" in words  # APPROVER, read by `mlship promote`


def test_jenkins_secrets_come_through_credentials_bindings(jenkinsfile: jenkins.Block) -> None:
    for name in ("deploy-staging", "deploy-production", "push", "train"):
        assert _stage(jenkinsfile, name).find("withCredentials"), name
    for group in ("delivery", "production"):
        words = [w for _, w in _only(_stage(jenkinsfile, group), "agent").tokens()]
        assert words[:3] == ["agent", "dockerfile", "filename"]
        assert words[words.index("filename") + 1] == "agent.Dockerfile"
        assert words[words.index("dir") + 1] == ".ci"


# --- Cloud Build ---------------------------------------------------------------------------------


def test_cloud_build_main_ships_reports_and_the_agent_image() -> None:
    config = load(REPO / "cloudbuild.yaml")
    assert {"_REGION", "_STAGING_CLUSTER", "_REGISTRY"} <= set(config["substitutions"])
    assert config["images"] == ["$_AGENT_IMAGE"]
    artifacts = config["artifacts"]["objects"]
    assert artifacts["location"].startswith("gs://") and "reports/junit/*.xml" in artifacts["paths"]
    # the production build reads the image reference from where the main build left it
    production = load(REPO / ".ci" / "cloudbuild" / "production.yaml")
    fetch = next(s for s in production["steps"] if s["id"] == "fetch-release")
    release = artifacts["location"].replace("$COMMIT_SHA", "$_RELEASE_SHA")
    assert fetch["args"][2].startswith(release)


def test_the_smtp_notifier_mails_failures_with_its_password_in_secret_manager() -> None:
    notifier = load(REPO / ".ci" / "cloudbuild" / "smtp-notifier.yaml")
    assert notifier["apiVersion"] == "cloud-build-notifiers/v1"
    assert notifier["kind"] == "SMTPNotifier"
    spec = notifier["spec"]
    assert "Build.Status.FAILURE" in spec["notification"]["filter"]
    secret = spec["notification"]["delivery"]["password"]["secretRef"]
    assert [s["name"] for s in spec["secrets"]] == [secret]
    assert spec["secrets"][0]["value"].startswith("projects/")


# Cloud Build's own substitutions (https://cloud.google.com/build/docs/configuring-builds/
# substitute-variable-values): the built-ins, and those a GitHub pull-request trigger adds
BUILT_IN_SUBSTITUTIONS = {
    "PROJECT_ID",
    "PROJECT_NUMBER",
    "BUILD_ID",
    "LOCATION",
    "TRIGGER_NAME",
    "COMMIT_SHA",
    "REVISION_ID",
    "SHORT_SHA",
    "REPO_NAME",
    "REPO_FULL_NAME",
    "BRANCH_NAME",
    "TAG_NAME",
    "REF_NAME",
    "TRIGGER_BUILD_CONFIG_PATH",
    "SERVICE_ACCOUNT_EMAIL",
    "SERVICE_ACCOUNT",
    "_HEAD_BRANCH",
    "_BASE_BRANCH",
    "_HEAD_REPO_URL",
    "_PR_NUMBER",
}
# $NAME or ${NAME}, not $$NAME (an escaped dollar: the shell's variable)
SUBSTITUTION = re.compile(r"(?<!\$)(?:\$\$)*\$(?:\{([A-Za-z0-9_]+)\}|([A-Za-z0-9_]+))")


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)


def substitution_problems(config: dict[str, Any]) -> list[str]:
    """What Cloud Build would refuse: an undeclared user substitution or an unknown built-in,
    a key outside ^_[A-Z0-9_]+$, a waitFor naming no earlier step."""
    declared = set(config.get("substitutions", {}))
    problems = [
        f"substitution key {key!r} does not match ^_[A-Z0-9_]+$"
        for key in declared
        if not re.fullmatch(r"_[A-Z0-9_]+", key)
    ]
    for text in _strings(config):
        for braced, plain in SUBSTITUTION.findall(text):
            name = braced or plain
            if name not in declared and name not in BUILT_IN_SUBSTITUTIONS:
                problems.append(f"${name} is neither declared nor built in (in {text[:60]!r})")
    seen: set[str] = set()
    for step in config.get("steps", []):
        for wanted in step.get("waitFor", []):
            if wanted != "-" and wanted not in seen:
                problems.append(f"step {step.get('id')!r} waits for {wanted!r}, no earlier step")
        if "id" in step:
            seen.add(step["id"])
    return problems


@pytest.mark.parametrize("path", CLOUDBUILD_CONFIGS, ids=lambda p: p.name)
def test_cloud_build_substitutions_are_declared_and_steps_wait_for_real_steps(path: Path) -> None:
    assert substitution_problems(load(path)) == []


@pytest.mark.parametrize("path", TRIGGERS, ids=lambda p: p.name)
def test_a_trigger_sets_only_substitutions_its_build_declares(path: Path) -> None:
    trigger = load(path)
    config = trigger.get("filename") or trigger["gitFileSource"]["path"]  # repo or manual trigger
    build = load(REPO / config)
    assert set(trigger.get("substitutions", {})) <= set(build.get("substitutions", {}))


def test_the_substitution_check_finds_each_kind_of_mistake() -> None:
    config = {
        "substitutions": {"_REGION": "x", "_region": "y"},
        "steps": [
            {"id": "a", "args": ["$_REGION", "${_REGION}", "$$HOME", "$$$_REGION", "$PROJECT_ID"]},
            {"id": "b", "args": ["$_REGOIN", "${HOME}"], "waitFor": ["a", "-", "c"]},
            {"id": "c", "args": ["echo"]},
        ],
    }
    problems = substitution_problems(config)
    assert len(problems) == 4, problems
    assert any("'_region'" in p for p in problems)
    assert any("$_REGOIN" in p for p in problems) and any("$HOME" in p for p in problems)
    assert any("waits for 'c'" in p for p in problems)


# --- Jenkins --------------------------------------------------------------------------------------


def _groovy_lint(*paths: Path) -> subprocess.CompletedProcess[str]:
    command = [tool("npm-groovy-lint"), "--noserver", "--failon", "error", "--output", "txt"]
    return subprocess.run(
        [*command, *map(str, paths)], capture_output=True, text=True, cwd=REPO, timeout=300
    )


def test_the_jenkinsfiles_have_no_groovy_lint_error() -> None:
    """CodeNarc through npm-groovy-lint (a real Groovy compile and Jenkins rule set)."""
    files = [REPO / "Jenkinsfile", *sorted((REPO / ".ci" / "jenkins").glob("*.Jenkinsfile"))]
    assert len(files) == 3 and all(f.is_file() for f in files), files  # a missing one is skipped
    done = _groovy_lint(*files)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "3 linted files" in re.sub(r"\x1b\[[0-9;]*m", "", done.stdout)


def test_groovy_lint_fails_a_jenkinsfile_that_does_not_compile(tmp_path: Path) -> None:
    broken = tmp_path / "Jenkinsfile"
    broken.write_text((REPO / "Jenkinsfile").read_text().rstrip().removesuffix("}"))
    done = _groovy_lint(broken)
    assert done.returncode != 0 and "error" in done.stdout.lower()


def test_every_delivery_gates_the_pushed_image_on_vulnerabilities() -> None:
    """Where trivy's database is reachable (the cloud CIs), `make push` fails on findings."""
    assert load(REPO / ".github/workflows/cd.yml")["env"]["MLSHIP_SCAN_VULNERABILITIES"] == "true"
    assert "MLSHIP_SCAN_VULNERABILITIES = 'true'" in (REPO / "Jenkinsfile").read_text()
    cloud_build = load(REPO / "cloudbuild.yaml")["options"]["env"]
    assert any(line.startswith("MLSHIP_SCAN_VULNERABILITIES=true") for line in cloud_build)


# --- signed models ------------------------------------------------------------------------------

# the stages that read a signed model: the gate (the champion), register (signs), the image
# build, its push (the signature beside it), the load test (the image's server) and deploys
TRUSTING_STEPS = {"gate", "register", "build", "push", "loadtest", "deploy-staging"}


def test_github_signs_only_in_the_register_step_and_every_job_trusts_the_key() -> None:
    for name in ("cd.yml", "ci.yml"):
        workflow = load(REPO / ".github/workflows" / name)
        assert workflow["env"]["MLSHIP_TRUSTED_KEYS"] == "${{ vars.MLSHIP_TRUSTED_KEYS }}", name
    cd = (REPO / ".github/workflows/cd.yml").read_text()
    assert cd.count("secrets.MLSHIP_SIGNING_KEY") == 1  # one step holds the private key
    register = next(
        s
        for s in load(REPO / ".github/workflows/cd.yml")["jobs"]["delivery"]["steps"]
        if s.get("id") == "register"
    )
    assert register["env"]["MLSHIP_SIGNING_KEY"] == "${{ secrets.MLSHIP_SIGNING_KEY }}"


def test_jenkins_binds_the_signing_key_for_register_alone(jenkinsfile: jenkins.Block) -> None:
    text = (REPO / "Jenkinsfile").read_text()
    assert "MLSHIP_TRUSTED_KEYS = credentials('mlship-trusted-keys')" in text
    assert text.count("MLSHIP_SIGNING_KEY") == 1
    binding = _only(_stage(jenkinsfile, "register"), "withCredentials")
    words = [w for _, w in binding.tokens()]
    assert "mlship-signing-key" in words and "MLSHIP_SIGNING_KEY" in words


@pytest.mark.parametrize(
    ("path", "steps"),
    [
        ("cloudbuild.yaml", TRUSTING_STEPS),
        (".ci/cloudbuild/pull-request.yaml", {"gate"}),
        (".ci/cloudbuild/production.yaml", {"deploy-production"}),
    ],
)
def test_cloud_build_hands_the_keys_from_secret_manager_to_the_steps_that_use_them(
    path: str, steps: set[str]
) -> None:
    build = load(REPO / path)
    declared = {s["env"]: s["versionName"] for s in build["availableSecrets"]["secretManager"]}
    assert all(v.startswith("projects/$PROJECT_ID/secrets/") for v in declared.values())
    for step in build["steps"]:
        wanted = set(step.get("secretEnv", []))
        assert wanted <= declared.keys(), step["id"]
        assert ("MLSHIP_TRUSTED_KEYS" in wanted) == (step["id"] in steps), step["id"]
        assert ("MLSHIP_SIGNING_KEY" in wanted) == (step["id"] == "register"), step["id"]
