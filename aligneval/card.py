"""A Hugging Face model card for each model of a run: YAML metadata with `model-index`, and prose.

Built with huggingface_hub's own card types (`ModelCard`, `ModelCardData`, `EvalResult`), so what
the Hub parses is what was written. Every value comes from results.json (the model's own records)
and every interval and verdict from comparison.json (aligneval.findings): the card never computes a
number. The Hub has no field for uncertainty, so the interval, n, seeds and the paired comparison
go into each metric's `args`.

An existing README.md is updated, not replaced: metadata keys and eval results that aligneval did
not write are kept, and only the text between the aligneval markers is rewritten.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from aligneval.artifacts import write_text_atomic
from aligneval.compare import model_groups, split_info
from aligneval.errors import ArtifactError, UsageError
from aligneval.findings import StoredComparison
from aligneval.formatting import fmt
from aligneval.registry import did_you_mean
from aligneval.report import alignment as A
from aligneval.report.build import build_context
from aligneval.report.context import metric_label

OWNER = "aligneval"  # metric args `produced_by`: the eval results this module owns (and rewrites)
BEGIN, END = "<!-- aligneval:begin -->", "<!-- aligneval:end -->"
TASKS = {"text-classification": "Text Classification", "multiple-choice": "Multiple Choice"}
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class CardModel:
    """One model (or seed group) of a run, as the card describes it."""

    name: str  # the run's model name or seed group (`aligned`, or `aligned` for aligned@13, aligned@42)
    members: tuple[str, ...]  # the run's model names it stands for (one per seed)
    path: str  # where the weights are (first seed)
    alignment: dict[str, Any] = field(default_factory=dict)  # alignment.json

    @property
    def is_twin(self) -> bool:
        return self.alignment.get("role") == "aligned" or (self.alignment.get("variant") not in (None, "none"))


def run_models(results) -> dict[str, CardModel]:
    """Every model of the run, seeds grouped under their name."""
    infos = results.models
    out = {}
    for group, members in model_groups(list(infos)).items():
        first = infos[members[0]]
        out[group] = CardModel(group, tuple(members), str(first.path), dict(first.card or {}))
    return out


def pick_model(results, name: str | None, comparisons: list[StoredComparison]) -> CardModel:
    """`name`, or the only twin of the comparison when none is given."""
    models = run_models(results)
    if name is None:
        twins = sorted({c.candidate for c in comparisons})
        if len(twins) != 1:
            raise UsageError(f"pick the model with --model: the run has {', '.join(sorted(models))}")
        name = twins[0]
    group = name.split("@", 1)[0]
    if group not in models:
        raise UsageError(f"no model '{name}' in {results.path}{did_you_mean(name, list(models))}; "
                         f"models: {', '.join(sorted(models))}")
    return models[group]


# ----------------------------------------------------------------------------------------------
# metadata


def _dataset(results, split: str) -> dict[str, Any]:
    """type/name/split (+ config/revision) of an evaluation split, from results.json and, when it is
    still the file the run used (same sha256), the spec's [splits.<name>] table."""
    source = str(split_info(results, split).get("source") or split)
    out: dict[str, Any] = {"dataset_name": split, "dataset_split": split}
    if source.startswith("hub:"):
        hub, _, rest = source[4:].partition("[")
        out["dataset_type"] = hub
        out["dataset_split"] = rest.rstrip("]") or split
    else:
        out["dataset_type"] = source
    table = _spec_split(results, split)
    if table.get("hub_config"):
        out["dataset_config"] = str(table["hub_config"])
    if table.get("revision"):
        out["dataset_revision"] = str(table["revision"])
    return out


def _spec_split(results, split: str) -> dict[str, Any]:
    spec = results.doc.get("spec") or {}
    path, sha = spec.get("path"), spec.get("sha256")
    try:
        raw = Path(path).read_bytes() if path and sha else b""
        if not raw or hashlib.sha256(raw).hexdigest() != sha:
            return {}
        table = (tomllib.loads(raw.decode("utf-8")).get("splits") or {}).get(split) or {}
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return {}
    return table if isinstance(table, dict) else {}


def _comparison_args(finding, side: str, confidence: float) -> dict[str, Any]:
    """The paired comparison of one row, as the card's metric args state it."""
    out = {"baseline": finding.baseline_model.split("@", 1)[0], "candidate": finding.candidate_model.split("@", 1)[0],
           "this_model": side, "baseline_value": finding.baseline, "candidate_value": finding.candidate,
           "delta": finding.delta, "ci_low": finding.ci_low, "ci_high": finding.ci_high,
           "confidence": confidence, "p_value": finding.p_value, "verdict": finding.verdict,
           "method": finding.method}
    if finding.adjust not in (None, "none"):
        out.update(p_value_raw=finding.p_value_raw, adjust=finding.adjust)
    return {k: v for k, v in out.items() if v is not None}


def eval_results(results, model: CardModel, comparisons: list[StoredComparison]):
    """One `EvalResult` per numeric record of `model` (per-layer alignment rows left out): the value is
    the record's (the seed mean for a seed group, as comparison.json has it), `args` carry n, seeds and
    every paired comparison this model is part of."""
    task = (model.alignment.get("task") or "text-classification")
    by_key: dict[tuple[str, str, str], dict[str, float]] = {}
    sizes: dict[tuple[str, str, str], int] = {}
    for r in results.records:
        if r.model in model.members and r.value is not None and not A.is_detail(r):
            key = (r.suite, r.split, r.metric)
            by_key.setdefault(key, {})[r.model] = float(r.value)
            sizes[key] = r.n
    out = []
    for (suite, split, metric), values in by_key.items():
        pairs = [(c, c.find(suite, split, metric)) for c in comparisons if c.involves(model.name)]
        pairs = [(c, f) for c, f in pairs if f is not None]
        value = next(iter(values.values())) if len(values) == 1 else sum(values.values()) / len(values)
        for c, f in pairs:  # the value comparison.json states for this model (seed mean) wins
            stated = f.candidate if c.candidate.split("@", 1)[0] == model.name else f.baseline
            if stated is not None:
                value = stated
                break
        args: dict[str, Any] = {"produced_by": OWNER, "suite": suite, "n": sizes[(suite, split, metric)]}
        if len(values) > 1:
            args["seeds"] = {m.split("@", 1)[1]: v for m, v in values.items()}
        if pairs:
            args["comparisons"] = [_comparison_args(f, "candidate" if c.candidate.split("@", 1)[0] == model.name
                                                    else "baseline", c.confidence) for c, f in pairs]
        out.append(EvalResult(task_type=task, task_name=TASKS.get(task, task), metric_type=metric,
                              metric_value=value, metric_name=_metric_name(metric_label(metric), suite),
                              metric_args=args, **_dataset(results, split)))
    return out


def _metric_name(label: str, suite: str) -> str:
    """`ECE (15 bins)`, with the suite when the label does not already say it: `Accuracy (ood)`."""
    return label if suite.lower() in label.lower() else f"{label} ({suite})"


def _base_model(model: CardModel) -> str | None:
    ref = model.alignment.get("base_model")
    ref = ref.get("id") or ref.get("path") if isinstance(ref, dict) else ref
    return str(ref) if isinstance(ref, str) and HUB_ID.match(ref) and not Path(ref).exists() else None


def metadata(results, model: CardModel, comparisons: list[StoredComparison], model_name: str,
             base_model: str | None = None) -> dict[str, Any]:
    """The YAML keys aligneval owns for this card (eval_results as huggingface_hub EvalResults).
    `base_model`: the Hub id to name when alignment.json holds a local path."""
    variant = model.alignment.get("variant")
    datasets = sorted({str(d.get("source", ""))[4:].partition("[")[0] for d in (results.doc.get("data") or {}).values()
                       if str((d or {}).get("source", "")).startswith("hub:")})
    out: dict[str, Any] = {
        "library_name": "transformers", "pipeline_tag": model.alignment.get("task") or "text-classification",
        "tags": ["aligneval", "alignment-attention", variant if model.is_twin and variant else "baseline"],
        "model_name": model_name, "eval_results": eval_results(results, model, comparisons),
    }
    base = base_model or _base_model(model)
    if base:
        out["base_model"] = base
    if datasets:
        out["datasets"] = datasets
    return out


# ----------------------------------------------------------------------------------------------
# prose


def _pairs(settings: Any) -> str:
    return ", ".join(f"{k}={v}" for k, v in settings.items()) or "–" if isinstance(settings, dict) else "–"


def _training(model: CardModel) -> list[str]:
    a = model.alignment
    if not a:
        return ["This model has no alignment card (alignment.json): it was not trained by `aligneval align`."]
    hp = a.get("hyperparameters") or {}
    base = a.get("base_model")
    rows = [("role", "aligned twin" if model.is_twin else "baseline (same training, no alignment term)"),
            ("base model", f"`{base}`" if base else "–")]
    if model.is_twin:
        aux = a.get("aux") if isinstance(a.get("aux"), dict) else {}
        rows += [("variant", f"`{a.get('variant')}`"), ("λ", fmt(a.get("lambda"))),
                 ("variant options", _pairs(a.get("variant_options"))), ("auxiliary players", _pairs(aux))]
    else:
        twin = a.get("twin") or {}
        lams = ", ".join(fmt(x) for x in twin.get("lambdas") or [])
        rows += [("its twin", f"variant `{twin.get('variant')}`, λ = {lams}")]
    seeds = sorted({str(m.split('@', 1)[1]) for m in model.members if "@" in m}) or [str(a.get("seed", "–"))]
    rows += [("seeds", ", ".join(seeds)),
             ("steps", f"{hp.get('max_steps')}" if hp.get("max_steps") else f"{hp.get('epochs', '–')} epoch(s)"),
             ("batch size × accumulation", f"{hp.get('batch_size', '–')} × {hp.get('grad_accum', 1)}"),
             ("learning rate", str(hp.get("lr", "–"))), ("max length", str(hp.get("max_length", "–")))]
    return ["| setting | value |", "| --- | --- |", *[f"| {k} | {v} |" for k, v in rows]]


def _evaluation(comparisons: list[StoredComparison], model: CardModel) -> list[str]:
    mine = [c for c in comparisons if c.involves(model.name)]
    if not mine:
        return ["No comparison with a baseline involves this model."]
    ctx = build_context([c.comparison for c in mine], plots=False)
    out = [ctx["method_note"], ""]
    for t in ctx["twins"]:
        k = t["counts"]
        out += [f"**{t['name']} vs {ctx['baseline']} on {ctx['primary']}: {k['better']} better, {k['worse']} worse, "
                f"{k['no-difference']} no significant difference.** {t['bottom_line']}", ""]
        if t["alignment_line"]:
            out += [t["alignment_line"], ""]
        out += [f"| metric | {ctx['baseline']} | {t['name']} | Δ | {ctx['conf_pct']} CI | p | verdict |",
                "| --- | ---: | ---: | ---: | --- | ---: | --- |"]
        out += [f"| {r['label']} | {r['baseline']} | {r['candidate']} | {r['delta']} | {r['ci']} | {r['p']} | "
                f"{r['verdict_text']} |" for r in t["headline"]]
        out.append("")
    out += [f"*{n}*" for n in ctx["notes"]]
    return out


def _loading(where: str) -> list[str]:
    return ["The alignment term changes training only: the model computes what its architecture always "
            "computes and loads with plain transformers.", "", "```python",
            "from transformers import AutoModelForSequenceClassification, AutoTokenizer", "",
            f'tokenizer = AutoTokenizer.from_pretrained("{where}")',
            f'model = AutoModelForSequenceClassification.from_pretrained("{where}")', "```"]


def body(results, model: CardModel, comparisons: list[StoredComparison], model_name: str, where: str) -> str:
    """The card's aligneval section (between the markers)."""
    kind = "alignment-attention twin" if model.is_twin else "baseline of an alignment-attention twin"
    lines = [BEGIN, f"# {model_name}", "",
             f"The {kind}, trained and evaluated by aligneval "
             f"(spec `{(results.doc.get('spec') or {}).get('name', '')}`, {results.doc.get('created', '')}). "
             "Every number below and in the metadata's `model-index` comes from the run's results.json; "
             "intervals and verdicts come from its comparison.json.", "",
             "## Training", "", *_training(model), "",
             "## Evaluation", "", *_evaluation(comparisons, model), "",
             "## How to load", "", *_loading(where), END]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------
# the card file


def build(results, model: CardModel, comparisons: list[StoredComparison], existing: str | None = None,
          model_name: str | None = None, where: str | None = None, base_model: str | None = None):
    """A `huggingface_hub.ModelCard`: `existing` (a README.md's text) updated, or a new card."""
    name = model_name or Path(model.path).name or model.name
    ours = metadata(results, model, comparisons, name, base_model)
    section = body(results, model, comparisons, name, where or model.path)
    if existing is None:
        return ModelCard(f"---\n{ModelCardData(**ours).to_yaml()}\n---\n\n{section}")
    card = ModelCard(existing, ignore_metadata_errors=True)
    data = card.data
    kept = [e for e in (data.eval_results or []) if (e.metric_args or {}).get("produced_by") != OWNER]
    data.eval_results = kept + ours.pop("eval_results")
    data.tags = list(dict.fromkeys([*(data.tags or []), *ours.pop("tags")]))
    if ours.get("datasets"):
        have = data.datasets if isinstance(data.datasets, list) else [data.datasets] if data.datasets else []
        data.datasets = list(dict.fromkeys([*have, *ours.pop("datasets")]))
    for key, value in ours.items():
        if key == "model_name" and data.model_name:
            continue  # keep the name the owner gave the model-index
        setattr(data, key, value)
    text = card.text
    if BEGIN in text and END in text:
        head, _, rest = text.partition(BEGIN)
        text = head + section.rstrip("\n") + rest.partition(END)[2]
    else:
        text = text.rstrip("\n") + ("\n\n" if text.strip() else "") + section
    return ModelCard(f"---\n{data.to_yaml()}\n---\n{text if text.startswith(chr(10)) else chr(10) + text}")


def write(results, model: CardModel, comparisons: list[StoredComparison], out: str | Path,
          where: str | None = None, base_model: str | None = None) -> Path:
    """Write (or update) the README.md at `out`; returns its path."""
    out = Path(out)
    if out.is_dir():
        out = out / "README.md"
    existing = None
    if out.is_file():
        try:
            existing = out.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ArtifactError(f"{out}: cannot read the existing card ({exc})") from None
    card = build(results, model, comparisons, existing, where=where, base_model=base_model)
    return write_text_atomic(out, str(card))

