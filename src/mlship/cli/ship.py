"""Shipping: the image, its load test, the rollout, and Cloud Build's approvals."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from mlship.choices import Environment, LoadTarget
from mlship.cli.common import (
    DEFAULT_DVC_FILE,
    DEFAULT_PARAMS,
    DvcFileOption,
    ParamsOption,
    app,
    console,
    env_settings,
    fail,
    note,
    read_params,
    read_paths,
    read_project,
    running,
)
from mlship.errors import CheckError, InputError, ServiceError

image_app = typer.Typer(help="Build and push the serving image (Docker engine required).")
app.add_typer(image_app, name="image")


@app.command("verify")
def verify_command(
    target: Annotated[
        str,
        typer.Argument(help="a model directory, models:/NAME@ALIAS or /N, or an image reference"),
    ] = "models",
    dvc_file: DvcFileOption = DEFAULT_DVC_FILE,
) -> None:
    """Check a model against its signature and provenance with the trusted keys
    (MLSHIP_TRUSTED_KEYS): every file, the signer, the gate's verdict. Exit 0 when it holds
    (or the model is not signed and MLSHIP_SIGNATURES is not `required`), 2 when not.
    Needs no params.yaml: it checks what it is given, anywhere."""
    from mlship.stages import ship

    settings = env_settings()
    with running("verify"):
        paths = read_paths(dvc_file) if dvc_file.is_file() else None
        found = ship.verify(settings, paths, target)
    if found.verified is None:
        console.print(f"  {found.what}: not signed (MLSHIP_SIGNATURES={settings.signatures})")
        return
    verified = found.verified
    console.print(
        f"  {found.what}: {verified.files} files match the signature (model sha256 "
        f"{verified.root})",
        soft_wrap=True,
    )
    provenance = verified.provenance
    if provenance is None:
        console.print("  no provenance beside it")
        return
    built = provenance["buildDefinition"]
    gate = built["internalParameters"]["gate"]
    git = built["externalParameters"].get("git", {})
    console.print(
        f"  provenance: gate {gate['verdict']} (report sha256 {gate['report_sha256'][:16]}…), "
        f"git {str(git.get('sha', '?'))[:12]}, data "
        + ", ".join(d["uri"] for d in built.get("resolvedDependencies", [])),
        soft_wrap=True,
    )


@image_app.command("build")
def image_build(
    model_dir: Annotated[Path, typer.Option(help="the model directory to bake in")] = Path(
        "models"
    ),
    from_registry: Annotated[
        str | None, typer.Option(help="bake the registry's @ALIAS instead (e.g. candidate)")
    ] = None,
    dockerfile: Annotated[Path, typer.Option(help="the Dockerfile")] = Path("Dockerfile"),
    skip_without_engine: Annotated[
        bool,
        typer.Option(help="exit 0, saying why, when no Docker engine (or no base image) is there"),
    ] = False,
    dvc_file: DvcFileOption = DEFAULT_DVC_FILE,
    params_file: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Build <registry>/<name>:<gitsha>-m<version> and :<gitsha> with OCI labels."""
    from mlship.stages import ship

    project = read_project(params_file, dvc_file)
    try:
        engine = ship.engine_for_build(project.settings, note)
    except ServiceError as error:
        if not skip_without_engine:
            fail(error)
        console.print(f"[yellow]image step not run:[/] {escape(str(error))}")
        note("the run goes on without an image; `make image` tries again")
        return
    with running("image build"):
        built = ship.image_build(engine, project, model_dir, dockerfile, from_registry, note)
    written = project.paths.image_json
    console.print(f"  {built.reference} ({built.size_bytes / 1e6:.0f} MB) -> {written}")


@image_app.command("push")
def image_push(dvc_file: DvcFileOption = DEFAULT_DVC_FILE) -> None:
    """Push the image recorded by `mlship image build` to the registry, with its SBOM."""
    from mlship.stages import ship

    paths = read_paths(dvc_file)
    with running("image push"):
        pushed = ship.image_push(env_settings(), paths, note)
    console.print(f"  pushed {', '.join(pushed.references)} ({pushed.digest})")
    console.print(f"  SBOM {paths.sbom} (sha256 {pushed.sbom_sha256}) -> {pushed.sbom_reference}")
    if pushed.vulnerabilities is not None:
        console.print(
            f"  no fixable vulnerability at the scanned severities ({paths.vulnerabilities})"
        )


@app.command()
def loadtest(
    url: Annotated[str | None, typer.Option(help="load-test this running server")] = None,
    target: Annotated[
        LoadTarget, typer.Option(help="what to start when no --url is given")
    ] = LoadTarget.auto,
    model_dir: Annotated[Path, typer.Option(help="the model for --target local")] = Path("models"),
    dvc_file: DvcFileOption = DEFAULT_DVC_FILE,
    params_file: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Locust for a bounded time; exit 1 when p95, p99 or the failure ratio break the budget.

    auto: the image recorded by `mlship image build` when a Docker engine can run it,
    otherwise a local `mlship serve`, saying plainly why.
    """
    from mlship.stages import ship

    params = read_params(params_file)
    paths = read_paths(dvc_file)
    with running("loadtest"):
        result = ship.run_loadtest(params, env_settings(params), paths, model_dir, url, target)
        if result.fallback:
            console.print(
                f"  [yellow]image step not run: {escape(result.fallback)}; "
                "load-tested a local server instead[/]"
            )
        if not result.passed:
            breaches = "; ".join(f"{c.name}: {c.detail}" for c in result.criteria if not c.passed)
            raise CheckError(f"load test over budget: {breaches}\nreport: {paths.loadtest_md}")
    s = result.summary
    console.print(
        f"  {s['requests']:.0f} requests, {s['rps']:.0f} req/s, p95 {s['p95_ms']:.0f} ms, "
        f"p99 {s['p99_ms']:.0f} ms against {result.target}"
    )


@app.command()
def deploy(
    env: Annotated[Environment, typer.Option("--env", help="where to deploy")],
    image_ref: Annotated[
        str | None, typer.Option("--image", help="default: the image `mlship image push` pushed")
    ] = None,
    timeout: Annotated[int, typer.Option(min=10, help="rollout timeout, seconds")] = 300,
    namespace: Annotated[str | None, typer.Option(help="default: mlship-<env>")] = None,
    canary: Annotated[
        bool,
        typer.Option(
            "--canary",
            help="a canary at 10% then 50% of the HTTPRoute's traffic, each step judged "
            "against stable on Prometheus's figures (params.yaml canary:)",
        ),
    ] = False,
    prometheus_url: Annotated[
        str | None, typer.Option(help="Prometheus query API (default: $MLSHIP_PROMETHEUS_URL)")
    ] = None,
    settle_seconds: Annotated[
        float | None,
        typer.Option(
            min=0,
            help="canary: the least time a step runs before it may be promoted "
            "(default: $MLSHIP_CANARY_SETTLE_SECONDS, 60)",
        ),
    ] = None,
    load_url: Annotated[
        str | None,
        typer.Option(
            help="canary: send the load test's requests through this URL (the Gateway's) "
            "while it is judged (default: $MLSHIP_CANARY_LOAD_URL; none)"
        ),
    ] = None,
    dvc_file: DvcFileOption = DEFAULT_DVC_FILE,
    params_file: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """kubectl set image, rollout status, smoke test through the Service, and rollout undo
    on any failure; or, with --canary, a canary Deployment given 10% then 50% of the
    Gateway's traffic (the HTTPRoute's weights), each step promoted, aborted or waited on by
    always-valid tests of canary against stable (errors, latency, accuracy estimated from
    confidence and from feedback; params.yaml canary:), then stable promoted at its full size
    and all traffic back on it. Exit 0 deployed, 1 failed (rolled back), 2 bad input."""
    from mlship.stages import ship

    project = read_project(params_file, dvc_file)
    options = None
    if canary:
        url = prometheus_url or project.settings.prometheus_url
        if not url:
            fail(InputError("--canary needs --prometheus-url or MLSHIP_PROMETHEUS_URL"))
        settle = (
            project.settings.canary_settle_seconds if settle_seconds is None else settle_seconds
        )
        options = ship.CanaryOptions(url, settle, load_url or project.settings.canary_load_url)
    with running(f"deploy {env.value}"):
        report = ship.deploy(
            project, env, image_ref, timeout=timeout, namespace=namespace, canary=options
        )
    if report.expected_version == "local":
        console.print("  (a local model: nothing to record in the registry)")
    console.print(
        f"  {env.value}: {report.image} is serving model version {report.expected_version}"
    )


# --- Cloud Build --------------------------------------------------------------------------

cloudbuild_app = typer.Typer(
    help="Drive Google Cloud Build: run a trigger, list and approve builds awaiting approval."
)
app.add_typer(cloudbuild_app, name="cloudbuild")


@cloudbuild_app.command("submit")
def cloudbuild_submit(
    trigger: Annotated[str, typer.Option(help="the trigger's name or id")],
    branch: Annotated[str | None, typer.Option(help="build this branch")] = None,
    sha: Annotated[str | None, typer.Option(help="build this commit")] = None,
    substitution: Annotated[list[str] | None, typer.Option(help="_KEY=value, repeatable")] = None,
) -> None:
    """Run a build trigger; prints the build id (stdout) and where to follow it. A trigger
    with approvalConfig starts a build that waits for `mlship cloudbuild approve`."""
    from mlship.stages import release

    settings = env_settings()
    with running("cloudbuild submit"):
        build = release.cloudbuild_submit(settings, trigger, branch, sha, substitution or [])
    waiting = " (waiting for approval)" if build.waiting_for_approval else ""
    console.print(f"  build {build.id}{waiting}: {build.url}")
    typer.echo(build.id)


@cloudbuild_app.command("pending")
def cloudbuild_pending() -> None:
    """List the builds waiting for approval."""
    from mlship.stages import release

    with running("cloudbuild pending"):
        builds = release.cloudbuild_pending(env_settings())
    for build in builds:
        typer.echo(f"{build.id}\t{build.trigger}\t{build.release_sha}")
    console.print(f"  {len(builds)} build(s) waiting for approval")


@cloudbuild_app.command("approve")
def cloudbuild_approve(
    build_id: Annotated[str, typer.Argument(help="the build waiting for approval")],
    comment: Annotated[str, typer.Option(help="recorded with the decision")] = "",
    reject: Annotated[bool, typer.Option("--reject", help="reject instead of approve")] = False,
) -> None:
    """Approve (or --reject) a build that waits for approval."""
    from mlship.stages import release

    with running("cloudbuild approve"):
        release.cloudbuild_decide(env_settings(), build_id, not reject, comment)
    console.print(f"  build {build_id} {'rejected' if reject else 'approved'}")
