"""MkDocs hook: the configuration reference, generated from the models that parse it, so
it cannot drift. A page's `<!-- reference: params -->` becomes the params.yaml keys (from
mlship.config.params.Params), `<!-- reference: settings -->` the environment variables
(from mlship.config.settings.Settings), `<!-- reference: exit-codes -->` the exit codes
(from mlship.errors)."""

from __future__ import annotations

import inspect
import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

import mlship.errors
from mlship.config.params import Params
from mlship.config.settings import Settings


def _type(annotation: Any) -> str:
    text = str(annotation).replace("typing.", "").replace("mlship.config.params.", "")
    text = text.replace("<class '", "").replace("'>", "").replace("NoneType", "None")
    return text.replace(" | ", " or ").replace("Optional[", "None or [")


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
                rows.append(f"| `{key}` (kind `{literal}`) | {kind.__doc__ or ''} | | |")
                rows += _rows(kind, f"{key}.")
            continue
        if nested and len(nested) == 1 and not isinstance(field.annotation, types.UnionType):
            rows.append(f"| `{key}` | {field.description or nested[0].__doc__ or ''} | | |")
            rows += _rows(nested[0], f"{key}.")
            continue
        description = (field.description or "").replace("\n", " ").replace("|", "/")
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
        description = (field.description or "").replace("|", "/")
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
    "<!-- reference: params -->": params_reference,
    "<!-- reference: settings -->": settings_reference,
    "<!-- reference: exit-codes -->": exit_codes,
}


def on_page_markdown(markdown: str, **_: Any) -> str:
    for marker, render in MARKERS.items():
        if marker in markdown:
            markdown = markdown.replace(marker, render())
    return markdown
