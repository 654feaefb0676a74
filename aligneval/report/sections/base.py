"""The report sections registry and what a section builder reads.

    @register_section("attack", order=60, suites=("adversarial",))
    def attack(report: ReportInput) -> list[Section]: ...

A section is a function of the compared runs (a `ReportInput`) returning zero or more `Section`s;
`build_context` calls every registered section in `order` (lower first) whose suites ran, and the
HTML and markdown renderers show whatever sections it returns. A built-in section is one module in
`aligneval/report/sections/`; a third-party one is one plugin module (see `aligneval.plugins`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from aligneval.registry import Registry
from aligneval.report.parts import Section


@dataclass(frozen=True)
class ReportInput:
    """Everything a section may read: the comparisons, the candidate's run, each twin's rows, and the
    choices the whole report shares (models, splits, colours, confidence)."""

    comparisons: list
    results: Any  # the candidate's run (Results); comparisons[0].baseline_results is the baseline's
    twins: list[dict]  # aligneval.report.context.twin_context of each comparison
    baseline: str  # the baseline's (group) name
    base_model: str  # the baseline's first model
    twin_models: list[str]  # each twin's first model
    pair: list[str]  # [base_model, *twin_models]
    labels: list[str]  # the pair as the figures name it (the baseline marked when it is from another run)
    colors: dict[str, str]
    roles: dict[str, str]  # split -> role
    primary: str | None  # the primary (first test) split
    oods: list[str]
    same_run: bool  # the baseline lives in the candidate's run
    confidence: float
    conf_pct: str

    @property
    def first(self):
        return self.comparisons[0]

    @property
    def multi(self) -> bool:
        return len(self.twins) > 1


SectionBuilder = Callable[[ReportInput], list[Section]]


@dataclass(frozen=True)
class SectionInfo:
    name: str
    build: SectionBuilder
    order: float  # place in the report, lower first
    suites: tuple[str, ...] = ()  # shown only when one of these suites has records; () = always


SECTIONS: Registry[SectionInfo] = Registry("report section")


def register_section(name: str, *, order: float, suites: tuple[str, ...] | list[str] = ()):
    """Register a section builder: `fn(report: ReportInput) -> list[Section]` ([] when it has nothing)."""

    def decorator(fn: SectionBuilder) -> SectionBuilder:
        SECTIONS.add(name, SectionInfo(name, fn, float(order), tuple(suites)))
        return fn

    return decorator
