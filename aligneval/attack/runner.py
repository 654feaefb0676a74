"""Run TextAttack recipes against models, one checkpointed example at a time.

TextAttack's Attack API is driven directly (`recipe.build(wrapper)`, `attack.attack(text, label)`)
rather than its Attacker loop, so every finished example is appended to the log before the next
starts, and each example is deterministic on its own (seeds and caches reset before it): a killed
run resumes where it stopped and ends with the same rows as an uninterrupted one.

Under several processes (accelerate launch, or `--num-processes N`) the examples still to attack are
dealt round-robin to the ranks; each rank appends to its own part of the log, and the main process
folds the parts into the one log (checkpoint.consolidate) and alone computes records and writes files.
Because each example's outcome depends only on the example, the settings and the model, the merged
log holds the same outcomes as a one-process run, whatever the process count of each (re-)run.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from aligneval import distributed
from aligneval.attack import checkpoint, goals, recipes, selection, summary
from aligneval.attack.loader import load_textattack
from aligneval.attack.wrapper import BatchedClassifier, load_classifier, weights_sha256
from aligneval.data import DataSource, load_examples
from aligneval.errors import ArtifactError, DataError, ResourceError, UsageError
from aligneval.records import SuiteOutput
from aligneval.registry import did_you_mean

log = logging.getLogger("aligneval.attack")
UNBOUNDED_BATCH = 1 << 30  # the goal function hands the wrapper a whole search step at once


@dataclass(frozen=True)
class AttackSettings:
    recipes: tuple[str, ...] = ("deepwordbug",)
    num_examples: int | None = 100
    seed: int = 0
    query_budget: int | None = 200
    time_budget_s: float | None = None  # wall clock per model and recipe; the rest stays for a re-run
    examples: str = "correct-by-all"
    max_length: int = 256
    batch_size: int = 32
    report_examples: int = 50  # adversarial examples kept per model and recipe for the report

    def __post_init__(self) -> None:
        for name in self.recipes:
            recipes.RECIPES.get(name)  # unknown -> UsageError with "did you mean"
        if self.query_budget is not None and self.query_budget <= 0:
            raise UsageError(f"query_budget must be positive, not {self.query_budget}")
        if self.examples not in selection.MODES:
            raise UsageError(f"examples must be one of {', '.join(selection.MODES)}, not '{self.examples}'")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "AttackSettings":
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(d) - known)
        if unknown:
            raise UsageError(f"unknown adversarial setting '{unknown[0]}'{did_you_mean(unknown[0], sorted(known))}")
        d = dict(d)
        if isinstance(d.get("recipes"), str):
            d["recipes"] = [d["recipes"]]
        if "recipes" in d:
            d["recipes"] = tuple(d["recipes"])
        return cls(**d)

    def outcome_fields(self, recipe: str) -> dict[str, Any]:
        """The settings that decide an example's outcome (go into the log header)."""
        return {"recipe": recipe, "query_budget": self.query_budget, "seed": self.seed,
                "max_length": self.max_length}


@dataclass(frozen=True)
class Item:
    id: str
    text: str
    label: int
    pair: str | None = None


def items_from_examples(examples: Any, ids: Sequence[str]) -> list[Item]:
    pos = {i: k for k, i in enumerate(examples.ids)}
    pairs = examples.text_pairs
    return [Item(i, examples.texts[pos[i]], int(examples.labels[pos[i]]),
                 None if pairs is None else pairs[pos[i]]) for i in ids]


def examples_sha256(items: Sequence[Item]) -> str:
    return checkpoint.ids_sha256(json.dumps([it.id, it.text, it.pair, it.label], ensure_ascii=False)
                                 for it in items)


class ModelHandle:
    """Loads a model folder once, on first need (a run read entirely from disk loads nothing)."""

    def __init__(self, name: str, path: str, weights_sha256: str | None = None,
                 max_length: int = 256, batch_size: int = 32, device: str | None = None):
        self.name, self.path = name, str(path)
        self._sha = weights_sha256
        self.max_length, self.batch_size = max_length, batch_size
        self.device = device  # None: the process's --device (distributed.state), else auto
        self._wrapper = None

    @property
    def sha256(self) -> str:
        if self._sha is None:
            self._sha = weights_sha256(self.path)
        return self._sha

    @property
    def wrapper(self):
        if self._wrapper is None:
            model, tokenizer = load_classifier(self.path, device=self.device)
            self._wrapper = BatchedClassifier(model, tokenizer, self.max_length, self.batch_size)
        return self._wrapper


def result_row(result: Any, item: Item, seconds: float, goal: goals.Goal = goals.FLIP) -> dict[str, Any]:
    """One log line from a TextAttack AttackResult, its outcome named by the recipe's goal. Texts are
    stored verbatim, as data."""
    orig, pert = result.original_result, result.perturbed_result
    outcome = goals.outcome(goal, type(result).__name__)
    o_words = orig.attacked_text.words
    flipped = goal is goals.FLIP and outcome == "succeeded"  # word edits are counted where a label flipped
    changed = len(orig.attacked_text.all_words_diff(pert.attacked_text)) if flipped else 0
    perturbed = pert.attacked_text.tokenizer_input if outcome != "skipped" else (
        item.text if item.pair is None else (item.text, item.pair))
    if isinstance(perturbed, tuple):
        perturbed, perturbed_pair = perturbed
    else:
        perturbed_pair = None
    row = {
        "id": item.id, "label": item.label, "outcome": outcome,
        "original": item.text, "perturbed": perturbed,
        "original_pred": int(orig.output), "original_conf": float(orig.raw_output.max()),
        "perturbed_pred": int(pert.output), "perturbed_conf": float(pert.raw_output.max()),
        "num_queries": int(pert.num_queries), "words": len(o_words), "words_perturbed": changed,
        "words_after": len(pert.attacked_text.words) if outcome != "skipped" else len(o_words),
        "perturbed_word_pct": changed * 100.0 / len(o_words) if o_words else 0.0,
        "seconds": round(seconds, 4),
    }
    if item.pair is not None:
        row.update(original_pair=item.pair, perturbed_pair=perturbed_pair)
    return row


def attack_model(handle: ModelHandle, recipe: str, items: Sequence[Item], settings: AttackSettings,
                 log_path: Path, advance: Callable[[int], None] | None = None,
                 rt: "distributed.Runtime | None" = None) -> list[dict[str, Any]]:
    """Rows for `items` (in order), attacking only the ones the log at `log_path` does not hold yet.
    Under several processes each rank attacks its share of those; the main process gets all rows,
    the others an empty list."""
    rt = rt or distributed.state()
    header = checkpoint.make_header(model=handle.name, weights_sha256=handle.sha256,
                                    examples_sha256=examples_sha256(items), **settings.outcome_fields(recipe))
    order = [it.id for it in items]
    done: dict[str, dict[str, Any]] = {}
    if rt.is_main:  # repair the log and fold in the parts of any earlier (multi-process) run
        done, state = checkpoint.consolidate(log_path, header, order)
        if state == "stale":
            print(f"adversarial: {log_path} (or a rank part of it) was made with other settings, model or "
                  f"examples; set aside as {log_path.name}.stale, starting fresh", file=sys.stderr)
    # every rank deals the same list (sent by the main process: no rank relies on seeing its files)
    finished = set(rt.broadcast(sorted(done) if rt.is_main else None) or ())
    todo = [it for it in items if it.id not in finished]
    mine = rt.shard(todo)
    # one process appends to the log itself (as always); several append to their own parts
    out_path = log_path if rt.world_size == 1 else checkpoint.part_path(log_path, rt.rank)
    new_rows: list[dict[str, Any]] = []
    if advance:
        advance(len(items) - len(todo))
    if todo:  # every rank builds the attack when any work is left, so a missing resource fails them all alike
        ta = load_textattack()
        wrapper = handle.wrapper
        attack = recipes.build(recipe, wrapper)
        goal = attack.goal_function
        wanted = goals.goal_of(recipe)
        if type(goal).__name__ not in wanted.textattack_goals:
            raise RuntimeError(f"{recipe}: TextAttack built a {type(goal).__name__} goal, not the "
                               f"{wanted.name} goal aligneval.attack.goals gives it")
        goal.query_budget = settings.query_budget if settings.query_budget else float("inf")
        goal.batch_size = UNBOUNDED_BATCH
        deadline = math.inf if settings.time_budget_s is None else time.monotonic() + settings.time_budget_s
        with checkpoint.Appender(out_path, header) as out:
            for it in mine:
                if time.monotonic() > deadline:
                    print(f"adversarial: time budget reached for {handle.name}/{recipe}; "
                          f"{len(mine) - len(new_rows)} example(s) left for a re-run", file=sys.stderr)
                    break
                ta.shared.utils.set_seed(settings.seed)  # per example: outcomes independent of who runs it
                wrapper.clear_cache()
                attack.clear_cache()
                example = it.text if it.pair is None else OrderedDict(premise=it.text, hypothesis=it.pair)
                t0 = time.perf_counter()
                result = attack.attack(example, int(it.label))
                row = result_row(result, it, time.perf_counter() - t0, wanted)
                out.write(row)
                done[it.id] = row
                new_rows.append(row)
                if advance:
                    advance(1)
    if rt.world_size > 1:
        gathered = rt.gather(new_rows)  # also waits until every rank's part is complete
        if not rt.is_main:
            return []
        done, _ = checkpoint.consolidate(log_path, header, order, [r for rows in gathered for r in rows])
    return [done[it.id] for it in items if it.id in done]


def correct_masks(handles: Mapping[str, ModelHandle], examples: Any,
                  predictions: Mapping[str, Any] | None = None) -> dict[str, np.ndarray]:
    """Per model, whether it classifies each example correctly: from stored predictions when given
    (aligned by id), else by running the model."""
    out = {}
    for name, handle in handles.items():
        pred = (predictions or {}).get(name)
        if pred is not None:
            pos = {i: k for k, i in enumerate(pred.ids)}
            missing = [i for i in examples.ids if i not in pos]
            if missing:
                raise ArtifactError(f"predictions of '{name}' lack example id '{missing[0]}'")
            idx = [pos[i] for i in examples.ids]
            out[name] = np.asarray(pred.probs)[idx].argmax(axis=1) == np.asarray(examples.labels)
        else:
            pairs = examples.text_pairs
            texts = examples.texts if pairs is None else list(zip(examples.texts, pairs))
            probs = handle.wrapper.predict_proba(texts)
            out[name] = probs.argmax(axis=1) == np.asarray(examples.labels)
    return out


def _progress(total: int, enabled: bool = True):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=True, disable=not (enabled and console.is_terminal))


def run_attacks(models: Mapping[str, ModelHandle], examples: Any, split: str, settings: AttackSettings,
                run_dir: Path, predictions: Mapping[str, Any] | None = None) -> SuiteOutput:
    """Attack every model with every recipe on one shared example list; records + report rows (on the
    main process; the other ranks attack their shares and return an empty output)."""
    rt = distributed.state()
    run_dir = Path(run_dir)
    if not models:
        raise UsageError("the adversarial suite needs at least one model")
    correct = correct_masks(models, examples, predictions) if settings.examples == "correct-by-all" else None
    sel = selection.choose(examples.ids, correct, settings.num_examples, settings.seed, settings.examples)
    if settings.num_examples and len(sel.headline_ids) < settings.num_examples and rt.is_main:
        print(f"adversarial: only {len(sel.headline_ids)} example(s) qualify ({settings.examples}); "
              f"asked for {settings.num_examples}", file=sys.stderr)
    items = items_from_examples(examples, sel.attack_ids)
    distributed.check_shardable(len(items), "examples to attack")
    out = SuiteOutput()
    base_extra = {"examples_mode": sel.mode, "query_budget": settings.query_budget, "seed": settings.seed,
                  "time_budget_s": settings.time_budget_s, "headline_ids_sha256": checkpoint.ids_sha256(sel.headline_ids),
                  "attack_ids_sha256": checkpoint.ids_sha256(sel.attack_ids), "pool": sel.pool}
    label_names = list(getattr(examples, "label_names", []) or [])
    with _progress(len(items), enabled=rt.is_main) as bar:
        for recipe in settings.recipes:
            reason = recipes.unavailable_reason(recipe)
            for name, handle in models.items():
                extra = dict(base_extra, recipe=recipe)
                if reason is None:
                    task = bar.add_task(f"{recipe} × {name}", total=len(items))
                    try:
                        rows = attack_model(handle, recipe, items, settings,
                                            run_dir / "attacks" / name / f"{recipe}.jsonl",
                                            advance=lambda k, t=task: bar.advance(t, k), rt=rt)
                    except ResourceError as err:
                        reason = err.message
                    finally:
                        bar.remove_task(task)
                if not rt.is_main:
                    continue
                if reason is not None:
                    out.records.append(summary.unavailable_record(recipe, split, name, reason, extra))
                    continue
                extra["log"] = str(Path("attacks") / name / f"{recipe}.jsonl")
                out.records += summary.scope_records(
                    rows, sel.headline_ids, prefix=recipe, split=split, model=name, extra=extra,
                    scope_note=("examples every model classifies correctly" if sel.mode == "correct-by-all"
                                else "a seeded random sample of the split"))
                out.records += summary.scope_records(
                    rows, sel.attack_ids, prefix=f"all:{recipe}", split=split, model=name, extra=extra,
                    scope_note="a seeded random sample of the split (all examples, gold labels)")
                out.examples += [_report_row(r, name, recipe, split, label_names)
                                 for r in _for_report(rows, settings.report_examples)]
            if reason is not None and rt.is_main:
                print(f"adversarial: {recipe} skipped: {reason}", file=sys.stderr)
    return out


def _for_report(rows: list[dict[str, Any]], k: int) -> list[dict[str, Any]]:
    """Succeeded attacks first (the adversarial examples), then maximized (reduced inputs) and failed
    ones, at most k."""
    ranked = [r for o in ("succeeded", "maximized", "failed") for r in rows if r["outcome"] == o]
    return ranked[:k]


def _report_row(r: dict[str, Any], model: str, recipe: str, split: str, names: list[str]) -> dict[str, Any]:
    def name(i: int) -> str:
        return names[i] if 0 <= i < len(names) else str(i)

    row = {"suite": summary.SUITE, "split": split, "model": model, "recipe": recipe, "id": r["id"],
           "outcome": r["outcome"], "label": name(r["label"]), "original": r["original"],
           "perturbed": r["perturbed"], "original_prediction": name(r["original_pred"]),
           "original_confidence": r["original_conf"], "perturbed_prediction": name(r["perturbed_pred"]),
           "perturbed_confidence": r["perturbed_conf"], "num_queries": r["num_queries"],
           "perturbed_word_pct": r["perturbed_word_pct"]}
    if "original_pair" in r:
        row.update(original_pair=r["original_pair"], perturbed_pair=r["perturbed_pair"])
    return row


def attack(models: Mapping[str, str], data: str, out: str | Path, *, recipes: Sequence[str] = ("deepwordbug",),
           num_examples: int | None = 100, query_budget: int | None = 200, seed: int = 0,
           examples: str = "correct-by-all", time_budget_s: float | None = None, max_length: int = 256,
           batch_size: int = 32, text_column: str = "text", label_column: str = "label",
           id_column: str | None = None, text_pair_column: str | None = None) -> SuiteOutput:
    """One-off attack (`aligneval attack`): models by name -> folder, one data file; writes
    `<out>/attacks/<model>/<recipe>.jsonl` and `<out>/attack_results.json`."""
    settings = AttackSettings(recipes=tuple(recipes), num_examples=num_examples, seed=seed,
                              query_budget=query_budget, time_budget_s=time_budget_s, examples=examples,
                              max_length=max_length, batch_size=batch_size)
    source = DataSource(path=str(data), text_column=text_column, label_column=label_column,
                        id_column=id_column or "id", text_pair_column=text_pair_column)
    try:
        exs = load_examples(source)
    except DataError:
        if id_column is not None:
            raise
        exs = load_examples(replace(source, id_column=None))  # no "id" column: row numbers are ids
    rt = distributed.state()
    if settings.num_examples is not None:
        distributed.check_shardable(settings.num_examples, "examples to attack (--num-examples)")
    handles = {n: ModelHandle(n, p, None, max_length, batch_size) for n, p in models.items()}
    result = run_attacks(handles, exs, "data", settings, Path(out))
    if not rt.is_main:
        return result  # empty: the main process writes the document
    doc = {"settings": asdict(settings), "data": {"source": exs.source, "fingerprint": exs.fingerprint,
                                                 "size": len(exs)},
           "models": {n: {"path": h.path} for n, h in handles.items()},
           "records": [r.to_dict() for r in result.records], "examples": result.examples}
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / "attack_results.json").write_text(json.dumps(doc, indent=2, ensure_ascii=False), encoding="utf-8")
    return result
