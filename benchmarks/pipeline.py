"""Time the local pipeline and check it is reproducible.

Runs in a throw-away copy of the repository (the real dvc.yaml, params.yaml and sources):
  1. a cold `dvc repro` (no cache): the full pipeline on the default data;
  2. no-op `dvc repro` several times (nothing changed): DVC's own overhead;
  3. `dvc repro --force`: the full pipeline again, whose metrics and predictions must hash
     the same as the first run's.

Usage: .venv/bin/python benchmarks/pipeline.py [--params examples/penguins/params.yaml]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
HASHED = ("metrics/evaluate.json", "reports/predictions.csv", "data/raw/train.parquet")
NOOP_RUNS = 5


def run(root: Path, env: dict[str, str], *command: str) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{done.stdout}{done.stderr}")
    return elapsed


def digest(root: Path) -> str:
    hashed = hashlib.sha256()
    for name in HASHED:
        hashed.update((root / name).read_bytes())
    return hashed.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=REPO / "params.yaml")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        for name in ("dvc.yaml", ".dvcignore"):
            shutil.copy(REPO / name, root / name)
        shutil.copy(args.params, root / "params.yaml")
        shutil.copytree(REPO / "src", root / "src", ignore=shutil.ignore_patterns("__pycache__"))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLSHIP_", "MLFLOW_"))}
        env["PATH"] = f"{BIN}{os.pathsep}{env['PATH']}"
        dvc = str(BIN / "dvc")
        run(root, env, dvc, "init", "--no-scm", "-q")
        run(root, env, dvc, "config", "core.analytics", "false")

        cold = run(root, env, dvc, "repro")
        first = digest(root)
        noop = [run(root, env, dvc, "repro") for _ in range(NOOP_RUNS)]
        forced = run(root, env, dvc, "repro", "--force")
        second = digest(root)

    print(f"params: {args.params}")
    print(f"cores: {os.cpu_count()}, python {sys.version.split()[0]}")
    print(f"{'measure':<38} {'seconds':>8}")
    print(f"{'full pipeline, cold (no DVC cache)':<38} {cold:8.2f}")
    print(f"{'full pipeline, forced re-run':<38} {forced:8.2f}")
    print(f"{f'no-op dvc repro, median of {NOOP_RUNS}':<38} {statistics.median(noop):8.2f}")
    print(f"{'no-op dvc repro, slowest':<38} {max(noop):8.2f}")
    print(f"metrics+predictions+data sha256, run 1: {first}")
    print(f"metrics+predictions+data sha256, run 2: {second}")
    print("reproducible: " + ("yes" if first == second else "NO"))
    if first != second:
        sys.exit(1)


if __name__ == "__main__":
    main()
