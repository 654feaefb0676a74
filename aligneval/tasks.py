"""Task heads: which transformers head a model has, and how a split's columns default for it.

A task is a second axis next to the architecture (align/hooks.py): the data, prediction and
training layers ask this registry which `AutoModelFor...` class to build and which columns a split
reads by default, and the suites stay pure functions of the stored probabilities over classes or
choices. A spec names its task at the top level (`task = "multiple-choice"`), `align` takes
`--task`; a saved model folder says its own task through `config.architectures`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from aligneval.errors import UsageError
from aligneval.registry import Registry

CLASSIFICATION = "sequence-classification"
MULTIPLE_CHOICE = "multiple-choice"
DEFAULT_TASK = CLASSIFICATION


@dataclass(frozen=True)
class Task:
    """One head type: its transformers Auto class, the architecture-name suffix that marks a saved
    model of this task, the column defaults of a split, and the suites that cannot score it (with why)."""

    name: str
    auto_class: str  # attribute of `transformers`
    architecture_suffix: str  # e.g. BertForMultipleChoice
    columns: dict[str, Any] = field(default_factory=dict)  # DataSource field -> default
    not_applicable: dict[str, str] = field(default_factory=dict)  # suite -> one-line reason


TASKS: Registry[Task] = Registry("task")
TASKS.add(CLASSIFICATION, Task(CLASSIFICATION, "AutoModelForSequenceClassification", "ForSequenceClassification",
                               {"text_column": "text", "text_pair_column": None, "label_column": "label"}))
TASKS.add(MULTIPLE_CHOICE, Task(
    MULTIPLE_CHOICE, "AutoModelForMultipleChoice", "ForMultipleChoice",
    # SWAG's own layout: sent1 is the context, sent2 starts every ending, label is the gold ending's index
    {"text_column": "sent1", "text_pair_column": "sent2", "label_column": "label",
     "choice_columns": ("ending0", "ending1", "ending2", "ending3")},
    {"adversarial": "the adversarial suite does not apply to multiple-choice: its TextAttack recipes perturb "
                    "one text or one text pair against a classifier, not a context scored against several endings"},
))


def get_task(name: str | None) -> Task:
    """The task by name (None: sequence classification); an unknown name -> UsageError with did-you-mean."""
    return TASKS.get(name or DEFAULT_TASK)


def auto_model_class(task: str | None):
    """The transformers Auto class that builds this task's head."""
    import transformers

    return getattr(transformers, get_task(task).auto_class)


def task_of_config(config: Any) -> str:
    """The task a saved model was built for, from `architectures` in its config (a dict or a
    PretrainedConfig); sequence classification when nothing says otherwise."""
    archs = config.get("architectures") if isinstance(config, dict) else getattr(config, "architectures", None)
    for name, task in TASKS.items():
        if name != DEFAULT_TASK and any(str(a).endswith(task.architecture_suffix) for a in archs or ()):
            return name
    return DEFAULT_TASK


def data_columns(task: str | None, given: dict[str, Any]) -> dict[str, Any]:
    """DataSource keyword arguments: the task's column defaults under what was given (None = not given).
    `choice_columns` belongs to multiple-choice only."""
    spec = get_task(task)
    out = {k: v for k, v in given.items() if v is not None}
    if "choice_columns" in out and "choice_columns" not in spec.columns:
        raise UsageError(f"choice columns belong to task '{MULTIPLE_CHOICE}', not '{spec.name}'; "
                         f"set task = \"{MULTIPLE_CHOICE}\" (align: --task {MULTIPLE_CHOICE})")
    for key, default in spec.columns.items():
        if key not in out and (default is not None or key in given):
            out[key] = default
    if "choice_columns" in out:
        out["choice_columns"] = tuple(out["choice_columns"])
    return out


def check_suites(task: str | None, suites: Iterable[str]) -> None:
    """A suite that cannot score this task fails in one line, before any model runs."""
    reasons = get_task(task).not_applicable
    for name in suites:
        if name in reasons:
            raise UsageError(reasons[name])
