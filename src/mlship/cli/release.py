"""Judging and releasing a model: the gate, the reports and comments for people, the
registry's aliases."""

from __future__ import annotations

import os
from typing import Annotated

import typer
from rich.console import Console

from mlship.cli.common import (
    DEFAULT_DVC_FILE,
    DEFAULT_PARAMS,
    DvcFileOption,
    ParamsOption,
    app,
    console,
    env_settings,
    fail,
    read_params,
    read_paths,
    read_project,
    running,
)
from mlship.errors import CheckError, InputError


@app.command("gate")
def gate_command(
    dvc_file: DvcFileOption = DEFAULT_DVC_FILE, params_file: ParamsOption = DEFAULT_PARAMS
) -> None:
    """Judge the evaluated candidate: thresholds, the trivial baseline, the champion,
    behaviour, the data contract, attacks. Exit 0 on a pass, 1 when a criterion fails, 2 on
    missing, NaN or stale inputs (the reports then say the gate refused)."""
    from mlship.stages.gate import gate

    project = read_project(params_file, dvc_file)
    with running("gate"):
        verdict = gate(project)
        if not verdict.passed:
            raise CheckError(
                f"gate FAILED on {len(verdict.failed)} of {len(verdict.criteria)} criteria:\n"
                + "\n".join(f"  {c.name}: {c.detail}" for c in verdict.failed)
                + f"\nreport: {verdict.report}"
            )
    note = (
        ""
        if verdict.champion_version
        else f" (no @champion of {project.settings.registered_name!r} yet: judged without one)"
    )
    passed = len(verdict.criteria)
    criteria = "criterion" if passed == 1 else "criteria"
    console.print(f"  {passed} {criteria} passed{note}; report: {verdict.report}")


@app.command()
def report(
    dvc_file: DvcFileOption = DEFAULT_DVC_FILE, params_file: ParamsOption = DEFAULT_PARAMS
) -> None:
    """The run report: one self-contained HTML page (reports/report.html) with the verdict,
    the gate's criteria and the plots behind them; attached to the MLflow run."""
    from mlship.stages import review

    params = read_params(params_file)
    settings = env_settings(params)
    paths = read_paths(dvc_file)
    with running("report"):
        written = review.html_report(settings, paths, params.data.positive_label)
    console.print(f"  {written} ({written.stat().st_size / 1e3:.0f} kB)")


@app.command()
def summary(dvc_file: DvcFileOption = DEFAULT_DVC_FILE) -> None:
    """Print the outcome of the last pipeline run: metrics, reports, the MLflow run."""
    from mlship.reports.summary import print_summary

    paths = read_paths(dvc_file)
    try:
        print_summary(paths, Console(soft_wrap=True))
    except InputError as error:
        fail(error)


@app.command()
def comment(
    summary_only: Annotated[
        bool, typer.Option("--summary-only", help="GitHub: the job summary only, no comment")
    ] = False,
    dvc_file: DvcFileOption = DEFAULT_DVC_FILE,
) -> None:
    """The run's reports of this model as one Markdown page: the gate (metrics and params
    beside the champion's), load test, deploys. In GitHub Actions it goes to the job summary
    and, on a pull request, into one comment updated in place; elsewhere it is printed."""
    from mlship.stages import review

    paths = read_paths(dvc_file)
    with running("comment"):
        published = review.publish(paths, os.environ, summary_only)
    if os.environ.get("GITHUB_ACTIONS") != "true":
        typer.echo(published.page)
    else:
        console.print(f"  {published.note}")


@app.command()
def register(
    dvc_file: DvcFileOption = DEFAULT_DVC_FILE, params_file: ParamsOption = DEFAULT_PARAMS
) -> None:
    """Register the gated model version with provenance tags and alias `candidate`; with
    MLSHIP_SIGNING_KEY, sign the model and its provenance first."""
    from mlship.stages import release

    project = read_project(params_file, dvc_file)
    with running("register"):
        done = release.register(project)
    name = project.settings.registered_name
    console.print(f"  {name} version {done.version} is now @candidate")
    if done.signed is not None:
        paths = project.paths
        console.print(
            f"  signed: the model (sha256 {done.signed[:16]}…) in {paths.signature}, its "
            f"provenance in {paths.provenance}",
            soft_wrap=True,
        )


@app.command()
def promote(
    version: Annotated[
        str | None, typer.Option(help="the version to promote; default: @candidate")
    ] = None,
    approver: Annotated[
        str | None, typer.Option(help="who approved; default: read from the CI's record")
    ] = None,
    rollback: Annotated[
        bool, typer.Option("--rollback", help="move @champion back to the previous version")
    ] = False,
    params_file: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Move alias `champion`, recording who approved it, through which CI, and when."""
    from mlship.stages import release

    if rollback and version is not None:
        fail(InputError("--rollback moves to the recorded previous version; drop --version"))
    settings = env_settings(read_params(params_file))
    with running("promote"):
        if rollback:
            moved = release.rollback(settings, os.environ, approver)
        else:
            moved = release.promote(settings, os.environ, version, approver)
    who = moved.approval
    console.print(
        f"  {'rolled back' if rollback else 'promoted'}: {settings.registered_name} version "
        f"{moved.version} is @champion (approved by {who.approver} via {who.via})"
    )
