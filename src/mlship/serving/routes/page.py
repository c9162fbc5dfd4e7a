"""GET /: a small page for people — what is served, its metrics and columns, and a form to
try a prediction (posted to /predict by the page's own script; no external assets). It sits
behind the same bearer token as the prediction routes when one is set."""

from __future__ import annotations

import html
import json
from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from mlship.monitor.drift import OTHER
from mlship.pipeline.features import MISSING_CATEGORY
from mlship.serving import fastpath
from mlship.serving.model import ServedModel
from mlship.serving.plane import DataPlane

STYLE = """
body{font:15px/1.5 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:880px;
margin:24px auto;padding:0 16px;color:#1f2328}h1{font-size:22px;margin-bottom:2px}
h2{font-size:17px;margin-top:24px}.muted{color:#59636e}table{border-collapse:collapse}
td,th{border:1px solid #d0d7de;padding:3px 8px;text-align:left}label{display:block;
margin:8px 0 2px;font-weight:600}input,textarea,select{font:inherit;width:100%;
box-sizing:border-box;padding:5px}button{margin-top:12px;font:inherit;padding:6px 16px}
.num{text-align:right}#answer{margin-top:16px;padding:10px;border:1px solid #d0d7de;
border-radius:6px;min-height:1.5em;white-space:pre-wrap}.error{color:#cf222e}
"""

SCRIPT = """
const form = document.getElementById('try');
const answer = document.getElementById('answer');
form.addEventListener('submit', async (event) => {
  event.preventDefault();
  const row = {};
  for (const field of FIELDS) {
    const raw = form.elements[field.name].value;
    if (raw === '' && field.optional) continue;  // left out: the model sees a missing value
    if (field.kind === 'numeric') row[field.name] = raw === '' ? null : Number(raw);
    else if (field.kind === 'categorical') row[field.name] = raw === '' ? null : raw;
    else row[field.name] = raw;
  }
  const headers = {'Content-Type': 'application/json'};
  const token = form.elements['token'] ? form.elements['token'].value : '';
  if (token) headers['Authorization'] = 'Bearer ' + token;
  answer.className = '';
  answer.textContent = 'scoring ...';
  try {
    const response = await fetch('predict', {method: 'POST', headers, body: JSON.stringify(row)});
    const body = await response.json();
    if (!response.ok) {
      answer.className = 'error';
      answer.textContent = response.status + ': ' + (body.detail || JSON.stringify(body));
      return;
    }
    let text = 'prediction' in body ? 'prediction: ' + body.prediction : 'label: ' + body.label;
    if (body.confidence !== undefined) text += '\\nconfidence: ' + body.confidence;
    for (const [label, p] of Object.entries(body.probabilities || {})) {
      text += '\\n  ' + label + ': ' + p;
    }
    answer.textContent = text + '\\n(version ' + body.version + ')';
  } catch (error) {
    answer.className = 'error';
    answer.textContent = String(error);
  }
});
"""


NO_METRICS = (
    "<tr><td>none given: a model directory carries its evaluation once baked into "
    "an image; `mlship serve --metrics metrics/evaluate.json` (as `make serve` does) "
    "shows the pipeline's</td></tr>"
)


def _e(value: Any) -> str:
    return html.escape(str(value))


def _field(name: str, kind: str, example: Any, choices: list[str], optional: bool) -> str:
    """One input, filled with the card's example value; a category offers the values the
    model was trained on."""
    need = " <span class=muted>optional</span>" if optional else ""
    label = f"<label for='{_e(name)}'>{_e(name)} <span class=muted>({kind})</span>{need}</label>"
    value = "" if example is None else _e(example)
    required = "" if optional else " required"
    if kind == "text":
        return label + (
            f"<textarea id='{_e(name)}' name='{_e(name)}' rows=3{required}>{value}</textarea>"
        )
    if kind == "numeric":
        return label + (
            f"<input id='{_e(name)}' name='{_e(name)}' type=number step=any "
            f"value='{value}'{required}>"
        )
    options = "".join(f"<option value='{_e(c)}'>" for c in choices)
    return (
        label + f"<input id='{_e(name)}' name='{_e(name)}' list='{_e(name)}-known' "
        f"value='{value}'{required}>"
        f"<datalist id='{_e(name)}-known'>{options}</datalist>"
    )


def _choices(model: ServedModel, column: str, fitted: dict[str, Any]) -> list[str]:
    """The categories the model knows: what its encoder fitted, else the training profile's."""
    known = fitted.get(column)
    if isinstance(known, list) and known:
        return [str(c) for c in known if c != MISSING_CATEGORY]
    profile = model.profile.columns.get(column) if model.profile is not None else None
    counts = getattr(profile, "counts", None) or {}
    return [str(c) for c in counts if c != OTHER]


def _metric(value: Any) -> str:
    """A count as a whole number, a score to four decimals, a large error with separators."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return _e(value)
    if float(value).is_integer() and abs(value) >= 1:
        return f"{int(value):,}"
    return f"{value:.4f}" if abs(value) < 1000 else f"{value:,.1f}"


def metric_rows(metrics: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(metric, the model's value, the trivial baseline's or None), per-class recall among
    them, from either shape a served model knows its evaluation in: metrics/evaluate.json
    (per_class and baseline nested) or its MLflow run (recall_<class>, baseline_<metric>)."""
    nested = metrics.get("baseline")
    baseline = dict(nested) if isinstance(nested, dict) else {}
    flat = {k: v for k, v in metrics.items() if not isinstance(v, dict | list)}
    for key in [k for k in flat if k.startswith("baseline_")]:
        baseline[key.removeprefix("baseline_")] = flat.pop(key)
    rows: list[tuple[str, Any, Any]] = []
    for key in sorted(flat):
        if key.startswith(("recall_", "precision_")):
            continue
        rows.append((key, flat[key], baseline.get(key) if key != "rows" else None))
    per_class = metrics.get("per_class")
    recalls = (
        {label: values.get("recall") for label, values in per_class.items()}
        if isinstance(per_class, dict)
        else {k.removeprefix("recall_"): v for k, v in flat.items() if k.startswith("recall_")}
    )
    answer = baseline.get("answer")
    for label, recall in sorted(recalls.items()):
        trivial = None if answer is None else (1.0 if label == str(answer) else 0.0)
        rows.append((f"recall ({label})", recall, trivial))
    return rows


def render(model: ServedModel, token_required: bool) -> str:
    info = model.info()
    fitted = fastpath.fitted_columns(model.model)
    fields = [
        (c, kind) for kind in ("text", "categorical", "numeric") for c in info["features"][kind]
    ]
    rows = metric_rows(info["metrics"])
    baseline = any(trivial is not None for _, _, trivial in rows)
    metrics = "".join(
        f"<tr><td>{_e(name)}</td><td class=num>{_metric(value)}</td>"
        + (f"<td class=num>{'' if trivial is None else _metric(trivial)}</td>" if baseline else "")
        + "</tr>"
        for name, value, trivial in rows
    )
    if metrics:
        answer = info["metrics"].get("baseline", {}).get("answer")
        trivial_head = f"<th>baseline{f': always {_e(answer)}' if answer else ''}</th>"
        metrics = (
            f"<tr><th>metric</th><th>this model</th>{trivial_head if baseline else ''}</tr>"
            + metrics
        )
    optional = set(model.features.optional)
    columns = "".join(
        f"<tr><td>{_e(c)}</td><td>{kind}{' (optional)' if c in optional else ''}</td></tr>"
        for c, kind in fields
    )
    example = model.card.example
    inputs = "".join(
        _field(c, kind, example.get(c), _choices(model, c, fitted), c in optional)
        for c, kind in fields
    )
    if token_required:
        inputs += (
            "<label for=token>bearer token</label>"
            "<input id=token name=token type=password autocomplete=off>"
        )
    about = [_e(part) for part in (info["task"], info["estimator"]) if part] + [
        f"alias {_e(info['alias'] or '—')}",
        f"git <code>{_e(str(info['git_sha'])[:12])}</code>",
        f"run <code>{_e(info['run_id'] or '—')}</code>",
        f"trained {_e(info['trained_at'] or '—')}",
        f"scoring path {_e(info['scoring_path'])}",
    ]
    script = SCRIPT.replace(
        "FIELDS",
        json.dumps([{"name": c, "kind": kind, "optional": c in optional} for c, kind in fields]),
    ).replace("</", "<\\/")  # nothing in the data may close the script element
    return (
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{_e(model.name)} "
        f"v{_e(model.version)}</title><meta name=viewport content='width=device-width,"
        f"initial-scale=1'><link rel=icon href='data:,'><style>{STYLE}</style></head>"
        f"<body>"
        f"<h1>{_e(model.name)} <span class=muted>version {_e(model.version)}</span></h1>"
        f"<p class=muted>{' · '.join(about)}</p>"
        f"<h2>Metrics</h2><table>{metrics or NO_METRICS}</table>"
        f"<h2>Feature columns</h2><table><tr><th>column</th><th>kind</th></tr>{columns}</table>"
        f"<h2>Try a prediction</h2><form id=try>{inputs}<button type=submit>Predict</button>"
        f"</form><div id=answer aria-live=polite></div><script>{script}</script></body></html>"
    )


def router(plane: DataPlane) -> APIRouter:
    routes = APIRouter()

    @routes.get(
        "/",
        tags=["model"],
        response_class=HTMLResponse,
        responses={
            401: {"description": "a bearer token is required"},
            503: {"description": "the model is not loaded yet"},
        },
    )
    async def page() -> HTMLResponse:
        """A page for people: the served model and a form to try a prediction."""
        model = plane.model
        if model is None:
            return HTMLResponse(
                "<!doctype html><title>loading</title><p>The model is loading.", status_code=503
            )
        settings = plane.settings
        tokens = settings.api_token is not None or settings.api_tokens_file is not None
        return HTMLResponse(render(model, tokens))

    return routes
