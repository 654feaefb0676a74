"""Suite registry and the context a suite receives. A suite is a function of cached predictions.

    @register_suite("accuracy", description="...", defaults={})
    def accuracy(ctx: SuiteContext, settings: dict) -> SuiteOutput: ...

A built-in suite is one module in `aligneval/suites/` (found by `aligneval.suites.load_suites`); a
third-party suite is one plugin module (see `aligneval.plugins`). `sharded=True` declares that the suite
runs on every process of a distributed run (each scores its shard); other suites run on the main one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

# the artifact types live in the bottom layer; re-exported so suites import one module
from aligneval.artifacts import ModelInfo, Predictions, SplitInfo  # noqa: F401
from aligneval.records import SuiteOutput
from aligneval.registry import Registry

ENTRY_POINT_GROUP = "aligneval.suites"
ROLES = ("dev", "test", "ood")


@dataclass(frozen=True)
class SuiteInfo:
    name: str
    fn: Callable[["SuiteContext", dict[str, Any]], SuiteOutput]
    description: str
    defaults: dict[str, Any]
    needs_models: bool = False  # True only for suites that must query a model (adversarial)
    # optional check of the merged settings against the spec's splits ({name: role}), e.g. metric
    # names or "temperature needs a dev split"; raises UsageError with one line
    validate: Callable[[dict[str, Any], dict[str, str]], None] | None = None
    sharded: bool = False  # runs on every process of a distributed run, each on its shard


SUITES: Registry[SuiteInfo] = Registry("suite")


def register_suite(name: str, description: str = "", defaults: dict[str, Any] | None = None,
                   needs_models: bool = False,
                   validate: Callable[[dict[str, Any], dict[str, str]], None] | None = None,
                   sharded: bool = False):
    def decorator(fn):
        SUITES.add(name, SuiteInfo(name, fn, description or (fn.__doc__ or "").strip().split("\n")[0],
                                   dict(defaults or {}), needs_models, validate, sharded))
        return fn

    return decorator


@dataclass
class SuiteContext:
    models: dict[str, ModelInfo]
    splits: dict[str, SplitInfo]
    predictions: dict[tuple[str, str], Predictions]  # (model, split) -> predictions
    run_dir: Path
    seed: int = 0
    examples: dict[str, Any] = field(default_factory=dict)  # split -> aligneval.data.Examples
    settings: dict[str, Any] = field(default_factory=dict)  # run-level settings (max_length, batch_size)

    def splits_with_role(self, role: str) -> list[str]:
        return [name for name, info in self.splits.items() if info.role == role]
