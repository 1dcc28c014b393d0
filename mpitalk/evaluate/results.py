"""From per-clip scores to the numbers in metrics.json and details.json.

Scores are flat ``{"group.metric": value}`` dicts; the JSON files hold them nested
(``{"group": {"metric": value}}``). Means are over clips (each clip's value is its mean over
frames); NaN is left out of a mean and written as ``null`` (JSON has no NaN).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mpitalk import metrics
from mpitalk.evaluate.scores import IMAGE_METRICS, METHODS, VIEWS


def nest(flat: dict[str, float]) -> dict:
    """{"a.b.c": x} -> {"a": {"b": {"c": x}}}."""
    out: dict = {}
    for key, value in flat.items():
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def json_ready(obj):
    """NaN/inf -> None, numpy scalars -> Python, recursively (JSON has no NaN)."""
    if isinstance(obj, dict):
        return {k: json_ready(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_ready(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_json(path: Path, obj) -> None:
    """``obj`` as indented JSON, NaN written as null."""
    path.write_text(json.dumps(json_ready(obj), indent=1) + "\n")


def mean_dicts(rows: Sequence[dict[str, float]]) -> dict[str, float]:
    """Key-wise NaN-ignoring mean of flat metric dicts."""
    keys = list(dict.fromkeys(k for r in rows for k in r))
    return {k: metrics.nanmean(r.get(k, math.nan) for r in rows) for k in keys}


def headline(flat: dict[str, float]) -> dict:
    """The headline keys of metrics.json from one method's flat metrics."""
    keys = [f"views.{v}.{m}" for v in VIEWS for m in IMAGE_METRICS]
    keys += ["geometry.depth_mae_mm", "expression.mae", "identity.distance"]
    return nest({k: flat.get(k, math.nan) for k in keys})


def aggregate(per_clip: Sequence[tuple[str, dict[str, dict[str, float]]]]
              ) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, dict]]]:
    """Means of per-clip scores ``[(identity id, {method: flat scores})]``: (over all clips
    {method: flat means}, per identity {identity id: {method: nested means}}), methods in
    ``METHODS`` order."""
    methods = [m for m in METHODS if any(m in r for _, r in per_clip)]
    totals = {m: mean_dicts([r[m] for _, r in per_clip if m in r]) for m in methods}
    by_identity: dict[str, list[dict]] = defaultdict(list)
    for ident_id, r in per_clip:
        by_identity[ident_id].append(r)
    per_identity = {k: {m: nest(mean_dicts([r[m] for r in rows if m in r])) for m in methods}
                    for k, rows in by_identity.items()}
    return totals, per_identity
