"""`run(spec, models, out)`: check everything, predict once (cached), score every suite, write results.json.

Order matters for the user: all inputs (spec, model folders, data) are checked before any model runs,
and results.json is written only at the end, atomically, so a failed run leaves no partial document.
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
import sys
from pathlib import Path
from typing import Any, Iterable, Mapping

from aligneval import __version__, distributed
from aligneval.data import Examples, load_examples
from aligneval.errors import AlignevalError, UsageError
from aligneval.paths import SAFE_NAME, check_name, check_output_dir
from aligneval.predict import ModelLoader, inspect_model, predict_split
from aligneval.records import SuiteOutput
from aligneval.results import RESULTS_FILE, SCHEMA_VERSION, Results, load_results, write_results
from aligneval.spec import Spec, SuiteSpec, load_spec, parse_suites
from aligneval.suites import get_suite
from aligneval.suites.base import ModelInfo, SplitInfo, SuiteContext
from aligneval.tasks import check_suites
from aligneval.versions import package_versions

MODEL_NAME = SAFE_NAME  # model names become folder names (predictions/<model>/)
ENV_PACKAGES = ("aligneval", "torch", "transformers", "tokenizers", "safetensors", "numpy", "scipy", "netcal",
                "scikit-learn", "pandas", "pyarrow", "datasets", "textattack", "accelerate")


def parse_models(models: Mapping[str, str] | Iterable[str] | None) -> dict[str, str]:
    """`{"baseline": path}` or CLI-style `["baseline=path", ...]` -> ordered dict; names become folder names."""
    if models is None:
        return {}
    if isinstance(models, Mapping):
        pairs = [(str(k), str(v)) for k, v in models.items()]
    else:
        pairs = []
        for item in models:
            name, sep, path = str(item).partition("=")
            if not sep or not name or not path:
                raise UsageError(f"--model '{item}': expected NAME=PATH, e.g. baseline=checkpoints/x/baseline")
            pairs.append((name.strip(), path.strip()))
    out: dict[str, str] = {}
    for name, path in pairs:
        check_name(name, "--model: model name")
        if name in out:
            raise UsageError(f"model name '{name}' is given twice")
        out[name] = path
    return out


def select_suites(spec: Spec, names: Iterable[str] | None) -> dict[str, SuiteSpec]:
    """The spec's suites, or only the named ones (a suite the spec does not list runs with its defaults).
    A name that is no suite is the command line's mistake, so the message blames --suite, not the spec."""
    if not names:
        return dict(spec.suites)
    chosen: dict[str, SuiteSpec] = {}
    for name in names:
        if name in spec.suites:
            chosen[name] = spec.suites[name]
            continue
        try:
            get_suite(name)
        except UsageError as err:
            raise UsageError(f"--suite {name}: {err.message}") from None
        try:
            chosen.update(parse_suites({name: {}}, spec.where().rstrip(": "), spec.splits))
        except UsageError as err:  # the suite's defaults do not fit this spec (e.g. no dev split)
            raise UsageError(f"--suite {name} (not configured in the spec, so with its defaults): "
                             f"{err.message}") from None
    return chosen


def environment(seed: int, device: str | None, threads: int | None) -> dict[str, Any]:
    packages = package_versions(ENV_PACKAGES)
    return {"python": sys.version.split()[0], "platform": platform.platform(), "packages": packages,
            "device": device or "cpu", "torch_threads": threads, "seed": seed}


def _torch_runtime() -> tuple[str, int]:
    import torch

    return distributed.state().device(), torch.get_num_threads()


def _check_out(out: Path, spec: Spec, models: dict[str, str], overwrite: bool) -> None:
    """Refuse to replace results of a different spec or model set unless asked."""
    if overwrite or not (out / RESULTS_FILE).is_file():
        return
    try:
        old = load_results(out, validate=False).doc
    except AlignevalError:
        return  # a corrupt old document is replaced
    same = old.get("spec", {}).get("name") == spec.name and set(old.get("models", {})) == set(models)
    if not same:
        raise UsageError(f"{out / RESULTS_FILE} holds results for spec '{old.get('spec', {}).get('name')}' and "
                         f"models {sorted(old.get('models', {}))}; choose another --out or pass --overwrite")


def run(spec: str | Path | Spec, models: Mapping[str, str] | Iterable[str] | None = None,
        out: str | Path | None = None, *, suites: Iterable[str] | None = None, overwrite: bool = False,
        allow_pickle: bool = False, trust_remote_code: bool = False, progress: bool = True,
        extra: dict[str, Any] | None = None, device: str | None = None) -> Results | None:
    """Evaluate `models` on `spec`; returns the loaded results. See docs/results.md for the document.
    `extra` is stored as is under the document's `extra` key (e.g. the demo's profile).
    Under several processes (docs/scaling.md) every rank predicts its share and joins the sharded
    suites; only the main process scores, writes and returns the results, the others return None."""
    rt = distributed.configure(device)  # --device checked before any work

    spec = spec if isinstance(spec, Spec) else load_spec(spec)
    given = parse_models(models)
    model_sources = given or dict(spec.models)
    if not model_sources:
        raise UsageError(f"{spec.where()}: no models; pass --model NAME=PATH (or add a [models] table)")
    chosen = select_suites(spec, list(suites) if suites is not None else None)
    check_suites(spec.task, chosen)  # a suite that cannot score the task (adversarial on multiple choice)
    run_dir = check_output_dir(Path(out) if out is not None else Path("runs") / spec.name, "--out")
    _check_out(run_dir, spec, model_sources, overwrite)

    artifacts = {}
    for name, src in model_sources.items():
        try:
            artifacts[name] = inspect_model(name, src, allow_pickle=allow_pickle)
        except AlignevalError as err:  # say which model: the flag, or the spec's [models] key
            origin = f"--model {name}" if given else spec.where(f"[models] {name}")
            raise type(err)(f"{origin}: {err.message}") from None
    # models with the same label set share one read of each split (the baseline and its twin always do)
    by_labels: dict[tuple, Examples] = {}
    examples = {}
    for name, art in artifacts.items():
        for split in spec.eval_splits():
            key = (tuple(art.label_names), split.name)
            if key not in by_labels:
                by_labels[key] = _load_split(spec, split, art.label_names)
            examples[(name, split.name)] = by_labels[key]
    if by_labels:
        distributed.check_shardable(min(len(e) for e in by_labels.values()), "examples in the smallest split")

    loader = ModelLoader(trust_remote_code=trust_remote_code)
    predictions = {}
    for name, art in artifacts.items():
        for split in spec.eval_splits():
            predictions[(name, split.name)] = predict_split(
                art, split.name, examples[(name, split.name)], run_dir, max_length=spec.max_length,
                batch_size=spec.batch_size, trust_remote_code=trust_remote_code, progress=progress, loader=loader)

    first = next(iter(artifacts))
    split_infos = {s.name: SplitInfo(s.name, s.role, s.source.describe(), examples[(first, s.name)].fingerprint,
                                     len(examples[(first, s.name)])) for s in spec.eval_splits()}
    # suites get the resolved local folder (a hub snapshot for hub ids): needs_models suites load from it
    model_infos = {n: ModelInfo(n, str(a.path), a.weights_sha256, a.card) for n, a in artifacts.items()}
    context = SuiteContext(models=model_infos, splits=split_infos, predictions=predictions, run_dir=run_dir,
                           seed=spec.seed, examples={s: examples[(first, s)] for s in split_infos},
                           settings={"max_length": spec.max_length, "batch_size": spec.batch_size,
                                     "allow_pickle": allow_pickle, "trust_remote_code": trust_remote_code,
                                     "progress": progress, "spec": spec,
                                     "model_paths": {n: str(a.path) for n, a in artifacts.items()}})
    output = SuiteOutput()
    for sname, suite_spec in chosen.items():
        info = get_suite(sname)
        # a sharded suite (`register_suite(..., sharded=True)`) deals examples to every rank itself; all
        # other suites are pure functions of the gathered predictions and run on the main process only
        if not rt.is_main and not info.sharded:
            continue  # scoring is the main process's job: the other ranks only join sharded work
        try:
            output.extend(info.fn(context, dict(suite_spec.settings)))
        except UsageError as err:
            raise UsageError(f"{spec.where(f'[suites.{sname}]')}: {err.message}") from None
    if not rt.is_main:
        return None

    device, threads = _torch_runtime()
    doc = {
        "schema_version": SCHEMA_VERSION,
        "created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "aligneval_version": _version(),
        "environment": {**environment(spec.seed, device, threads), "processes": rt.world_size},
        "spec": {"name": spec.name, "path": str(spec.path) if spec.path else None, "sha256": spec.sha256,
                 "suites": {n: s.settings for n, s in chosen.items()}, "max_length": spec.max_length,
                 "batch_size": spec.batch_size, "primary": list(spec.primary)},
        "seed": spec.seed,
        "models": {n: {"path": a.source, "weights_sha256": a.weights_sha256, "config_sha256": a.config_sha256,
                       "tokenizer_sha256": a.tokenizer_sha256, "label_names": a.label_names, "card": a.card}
                   for n, a in artifacts.items()},
        "data": {s.name: {"role": s.role, "source": s.source.describe(), "fingerprint": split_infos[s.name].fingerprint,
                          "size": split_infos[s.name].size, "skipped": examples[(first, s.name)].skipped,
                          "label_names": examples[(first, s.name)].label_names} for s in spec.eval_splits()},
        "records": [r.to_dict() for r in output.records],
        "curves": [c.to_dict() for c in output.curves],
        "examples": output.examples,
    }
    if extra:
        doc["extra"] = dict(extra)
    write_results(run_dir, json.loads(json.dumps(doc, default=_jsonable)))
    return load_results(run_dir)


def _load_split(spec: Spec, split, label_names: list[str]) -> Examples:
    """Load one split for one model's label set; errors name the spec file and the split's key."""
    try:
        return load_examples(split.source, label_names=label_names)
    except AlignevalError as err:
        raise type(err)(f"{spec.where(f'[splits.{split.name}]')}: {err.message}") from None


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def _version() -> str:
    return __version__
