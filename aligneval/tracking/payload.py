"""What a tracker receives, built from aligneval's own files only (a functional core, no tracker imports).

A `Payload` is one tracker run: params, metrics (each a `Metric` named `suite/metric/split/model`),
verdict tags, a comparison table, files to attach, per-step curves and child runs. The MLflow and W&B
writers (aligneval.tracking.mlflow_writer / wandb_writer) only translate it, so both trackers say
the same thing as the card and the gate: values from results.json, intervals and verdicts from
comparison.json (aligneval.findings), curves from align's train_log.jsonl.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from aligneval.errors import ArtifactError
from aligneval.findings import StoredComparison

UNSAFE = re.compile(r"[^A-Za-z0-9_.\- /]")  # MLflow's portable name alphabet (no ':' on Windows)
ALIGN_LOG = "train_log.jsonl"
ALIGN_CARD = "alignment.json"
COMPARISON_FIELDS = ("baseline", "candidate", "delta", "ci_low", "ci_high", "p_value")


def safe_key(*parts: str) -> str:
    """`calibration/ece@15/test/aligned@13` -> `calibration/ece_15/test/aligned_13`: the characters
    trackers accept in a name ('@' and ':' are not), joined by '/'."""
    return "/".join(UNSAFE.sub("_", p) for p in parts)


def record_key(suite: str, metric: str, split: str, model: str) -> str:
    """The tracker name of one results.json record."""
    return safe_key(suite, metric, split, model)


@dataclass(frozen=True)
class Metric:
    key: str
    value: float
    step: int | None = None


@dataclass
class Payload:
    """One tracker run."""

    name: str
    params: dict[str, str] = field(default_factory=dict)
    metrics: list[Metric] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)
    table: list[dict[str, Any]] = field(default_factory=list)  # the comparison table, one row per finding
    files: list[Path] = field(default_factory=list)
    children: list["Payload"] = field(default_factory=list)


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))


def flatten(prefix: str, value: Any) -> dict[str, str]:
    """Nested settings as flat `a.b.c` params with string values (what trackers store)."""
    if isinstance(value, dict):
        out: dict[str, str] = {}
        for k, v in value.items():
            out.update(flatten(f"{prefix}.{k}" if prefix else str(k), v))
        return out
    if isinstance(value, (list, tuple)):
        return {prefix: json.dumps(value, default=str)}
    return {prefix: "" if value is None else str(value)}


def _check_unique(metrics: Iterable[Metric]) -> None:
    seen: set[tuple[str, int | None]] = set()
    for m in metrics:
        if (m.key, m.step) in seen:  # two records named alike once made safe: a bug, never a silent overwrite
            raise ArtifactError(f"two values would be logged as '{m.key}'; rename one of the models or metrics")
        seen.add((m.key, m.step))


# ----------------------------------------------------------------------------------------------
# run and report


def run_params(results) -> dict[str, str]:
    """The spec, the data and each model's training settings (alignment.json) as flat params."""
    doc = results.doc
    spec = doc.get("spec") or {}
    params = flatten("spec", {k: spec.get(k) for k in ("name", "path", "sha256", "primary", "max_length",
                                                      "batch_size")})
    params.update(flatten("spec.suites", spec.get("suites") or {}))
    params["seed"] = str(doc.get("seed"))
    params["aligneval_version"] = str(doc.get("aligneval_version", ""))
    for split, info in (doc.get("data") or {}).items():
        kept = {k: (info or {}).get(k) for k in ("role", "source", "size", "fingerprint")}
        params.update(flatten(f"data.{split}", kept))
    for name, info in (doc.get("models") or {}).items():
        params[f"model.{name}.path"] = str(info.get("path"))
        params[f"model.{name}.weights_sha256"] = str(info.get("weights_sha256"))
        card = info.get("card") or {}
        params.update(flatten(f"model.{name}", {k: card.get(k) for k in ("variant", "lambda", "seed", "base_model")
                                                if k in card}))
        params.update(flatten(f"model.{name}.training", card.get("hyperparameters") or {}))
    return {safe_key(k): v for k, v in params.items()}


def record_metrics(results) -> list[Metric]:
    """Every numeric record of results.json, named `suite/metric/split/model`."""
    out = [Metric(record_key(r.suite, r.metric, r.split, r.model), float(r.value))
           for r in results.records if _finite(r.value)]
    _check_unique(out)
    return out


def comparison_metrics(comparisons: list[StoredComparison]) -> tuple[list[Metric], dict[str, str], list[dict]]:
    """The comparison table: values, Δ, interval and p as metrics under `compare/<candidate>/...`, the
    verdict of each row as a tag, and the rows themselves (for a tracker's table view)."""
    metrics, tags, rows = [], {}, []
    for c in comparisons:
        for f in c.findings:
            base = safe_key("compare", c.candidate, f.suite, f.metric, f.split)
            for name in COMPARISON_FIELDS:
                v = getattr(f, name)
                if _finite(v):
                    metrics.append(Metric(f"{base}/{name}", float(v)))
            tags[f"{base}/verdict"] = f.verdict
            rows.append({"candidate": c.candidate, "baseline": c.baseline, "suite": f.suite, "split": f.split,
                         "metric": f.metric, "baseline_value": f.baseline, "candidate_value": f.candidate,
                         "delta": f.delta, "ci_low": f.ci_low, "ci_high": f.ci_high, "confidence": c.confidence,
                         "p_value": f.p_value, "n": f.n, "verdict": f.verdict})
    _check_unique(metrics)
    return metrics, tags, rows


def _run_payload(results, command: str) -> Payload:
    return Payload(name=Path(results.run_dir).resolve().name, params=run_params(results),
                   metrics=record_metrics(results), tags={"aligneval.command": command}, files=[results.path])


def model_children(results) -> list[Payload]:
    """One child per model when a run holds several seeds or λ twins: its variant, λ and seed as params
    and its records as `suite/metric/split`, so a tracker can plot a metric against λ or seed."""
    models = results.doc.get("models") or {}
    if len(models) <= 2:
        return []
    out = []
    for name, info in models.items():
        card = (info or {}).get("card") or {}
        params = {k: str(card.get(k)) for k in ("role", "variant", "lambda", "seed") if k in card}
        metrics = [Metric(safe_key(r.suite, r.metric, r.split), float(r.value))
                   for r in results.records if r.model == name and _finite(r.value)]
        out.append(Payload(name=name, params={"model": name, **params}, metrics=metrics,
                           tags={"aligneval.model": name}))
    return out


def for_run(results) -> Payload:
    """`aligneval run --log-to`: params, every record, results.json; a child per model when there are
    several seeds or λ twins."""
    p = _run_payload(results, "run")
    p.children = model_children(results)
    return p


def for_report(results, comparisons: list[StoredComparison], report_files: Iterable[Path]) -> Payload:
    """`aligneval report --log-to`: the run's params and records plus the comparison table and the
    report's files (the per-model children are `run`'s)."""
    p = _run_payload(results, "report")
    metrics, tags, rows = comparison_metrics(comparisons)
    p.metrics += metrics
    p.tags.update(tags)
    p.table = rows
    p.files += [Path(f) for f in report_files]
    return p


# ----------------------------------------------------------------------------------------------
# align


def curve(log: Path) -> list[Metric]:
    """align's train_log.jsonl as per-step metrics: task and alignment losses, the auxiliary loss, the
    learning rate, dev accuracy, and each layer's alignment term and diagnostic (`disc_accuracy/layer_3`)."""
    out = []
    try:
        lines = log.read_text(encoding="utf-8").split("\n")
    except OSError as exc:
        raise ArtifactError(f"{log}: cannot read the training log ({exc.strerror})") from None
    for line in lines:
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            raise ArtifactError(f"{log}: corrupt training log (not JSON lines)") from None
        step = int(rec.get("step", 0))
        names = {"alignment_loss_layers": "alignment_loss"}
        if isinstance(rec.get("diagnostic"), str):
            names["diagnostic_layers"] = rec["diagnostic"]
        for key, value in rec.items():
            if key in ("step", "diagnostic"):
                continue
            if isinstance(value, list):
                out += [Metric(safe_key(names.get(key, key), f"layer_{i}"), float(v), step)
                        for i, v in enumerate(value) if _finite(v)]
            elif _finite(value):
                out.append(Metric(safe_key(key), float(value), step))
    return out


def _model_folder(folder: Path) -> Payload:
    card_file = folder / ALIGN_CARD
    try:
        card = json.loads(card_file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{card_file}: cannot read the alignment card ({exc})") from None
    params = flatten("", {k: v for k, v in card.items() if k not in ("versions", "data", "hyperparameters")})
    params.update(flatten("training", card.get("hyperparameters") or {}))
    log = folder / ALIGN_LOG
    return Payload(name=folder.name if card.get("seed") is None else f"{folder.name} (seed {card['seed']})",
                   params={safe_key(k): v for k, v in params.items()},
                   metrics=curve(log) if log.is_file() else [],
                   tags={"aligneval.role": str(card.get("role")), "aligneval.seed": str(card.get("seed")),
                         "aligneval.lambda": str(card.get("lambda")), "aligneval.variant": str(card.get("variant"))},
                   files=[card_file])


def for_align(out: Path, folders: Iterable[Path]) -> Payload:
    """`aligneval align --log-to`: one child run per trained folder (each seed, the baseline and every
    λ's twin), with its training curve; the parent holds the settings they share."""
    children = [_model_folder(Path(f)) for f in folders]
    shared: dict[str, str] = {}
    if children:
        first = children[0].params
        shared = {k: v for k, v in first.items() if all(c.params.get(k) == v for c in children)}
    return Payload(name=Path(out).resolve().name, params=shared, tags={"aligneval.command": "align"},
                   children=children)
