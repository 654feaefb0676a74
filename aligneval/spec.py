"""Suite specs: a TOML file that says which data, which splits play which role, and which suites run.

    name = "sentiment-shift"
    seed = 0
    max_length = 128
    batch_size = 32
    [splits.dev]   role = "dev",  path = "data/dev.jsonl", ...
    [splits.test]  role = "test", path = "package:aligneval/data/sentiment/movie_test.jsonl.gz"
    [splits.tweets] role = "ood", path = "tweets.csv", sample = 500, on_empty = "skip"
    [suites.calibration] temperature = "grid"
    [models] baseline = "checkpoints/x/baseline"

Every check is explicit and every error names the file and the key (and the line for malformed
TOML), with a "did you mean" for typos. Relative local paths resolve against the spec's folder;
`package:<pkg>/<path>` resolves inside an installed package; anything else that is not a local
file is a hub id (or force it with `hub:`).
"""

from __future__ import annotations

import hashlib
import importlib.resources
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aligneval.data import LOCAL_SUFFIXES, ON_EMPTY_CHOICES, DataSource
from aligneval.errors import ArtifactError, UsageError
from aligneval.metrics import base_metric_name as base_name, get_metric, metric_names
from aligneval.paths import check_name
from aligneval.registry import did_you_mean
from aligneval.suites import get_suite
from aligneval.tasks import check_suites, data_columns, get_task

SPLIT_ROLES = ("train", "dev", "test", "ood")
EVAL_ROLES = ("dev", "test", "ood")  # prediction skips `train`
DEFAULT_SUITES = ("accuracy", "calibration", "uncertainty")  # plus "ood" when the spec has ood splits

TOP_KEYS = {"name": str, "description": str, "seed": int, "max_length": int, "batch_size": int,
            "splits": dict, "suites": dict, "models": dict, "primary": list, "task": str}
SPLIT_KEYS = {"role": str, "path": str, "hub_split": str, "hub_config": str, "text_column": str,
              "text_pair_column": str, "label_column": str, "id_column": str, "label_map": dict,
              "sample": int, "seed": int, "on_empty": str, "drop_labels": list, "choice_columns": list}
COLUMN_KEYS = ("text_column", "text_pair_column", "label_column", "choice_columns")
REPO_SPECS = Path(__file__).resolve().parent.parent / "suites"
PACKAGE_SPECS = Path(__file__).resolve().parent / "builtin_suites"


@dataclass(frozen=True)
class SplitSpec:
    name: str
    role: str
    source: DataSource
    raw_path: str  # as written in the spec, for messages and the results document

    @property
    def is_hub(self) -> bool:
        return self.source.path.startswith("hub:")


@dataclass(frozen=True)
class SuiteSpec:
    name: str
    settings: dict[str, Any]  # merged over the suite's defaults


@dataclass(frozen=True)
class Spec:
    name: str
    path: Path | None
    description: str = ""
    seed: int = 0
    max_length: int = 128
    batch_size: int = 32
    splits: dict[str, SplitSpec] = field(default_factory=dict)
    suites: dict[str, SuiteSpec] = field(default_factory=dict)
    models: dict[str, str] = field(default_factory=dict)
    sha256: str = ""
    primary: tuple[str, ...] = ()  # the confirmatory family: "metric" or "split/metric" (aligneval.compare.multiplicity)
    task: str = "sequence-classification"  # aligneval.tasks: which head the models have, how splits read

    def where(self, key: str = "") -> str:
        """'<file>: [key]' prefix for messages."""
        loc = str(self.path) if self.path else f"spec '{self.name}'"
        return f"{loc}: {key}" if key else loc

    def eval_splits(self) -> list[SplitSpec]:
        return [s for s in self.splits.values() if s.role in EVAL_ROLES]

    def splits_with_role(self, role: str) -> list[str]:
        return [s.name for s in self.splits.values() if s.role == role]


# ---------- finding specs by name ------------------------------------------------------------

def spec_dirs() -> list[Path]:
    return [d for d in (REPO_SPECS, PACKAGE_SPECS) if d.is_dir()]


def builtin_specs() -> dict[str, Path]:
    """Spec name -> file, the repo's `suites/` first, then the packaged copies."""
    found: dict[str, Path] = {}
    for folder in spec_dirs():
        for path in sorted(folder.glob("*.toml")):
            found.setdefault(path.stem, path)
    return found


def resolve_spec_path(name_or_path: str | Path) -> Path:
    """A path to a TOML file, or the name of a built-in spec (`sentiment-shift`). A spec is configuration,
    like a rules file: missing or invalid is a usage error (exit 2); its data files are artifacts (3)."""
    text = str(name_or_path)
    path = Path(text).expanduser()
    if path.is_file():
        return path.resolve()
    if path.is_dir():
        raise UsageError(f"spec {path}: is a folder; give a spec file (.toml) or a built-in spec name")
    if path.suffix == ".toml" or "/" in text or "\\" in text:
        raise UsageError(f"spec file not found: {path}")
    known = builtin_specs()
    if text in known:
        return known[text]
    raise UsageError(f"unknown spec '{text}'{did_you_mean(text, sorted(known))}; "
                     f"built-in: {', '.join(sorted(known)) or 'none'} (or give a path to a .toml file)")


# ---------- loading and validation -----------------------------------------------------------

def load_spec(name_or_path: str | Path, check_files: bool = True) -> Spec:
    """Read and validate a spec. `check_files=False` skips the existence check of local data files."""
    path = resolve_spec_path(name_or_path)
    try:
        raw_bytes = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the spec ({exc.strerror or type(exc).__name__})") from None
    try:
        doc = tomllib.loads(raw_bytes.decode("utf-8"))
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: malformed TOML: {exc}") from None
    return parse_spec(doc, path, hashlib.sha256(raw_bytes).hexdigest(), check_files)


def parse_spec(doc: dict[str, Any], path: Path | None = None, sha256: str = "", check_files: bool = True) -> Spec:
    where = str(path) if path else "spec"
    _check_keys(doc, TOP_KEYS, where, "")
    if doc.get("name"):
        check_name(doc["name"], f"{where}: name")  # the default run folder is runs/<name>
    name = doc.get("name") or (path.stem if path else "spec")
    base = path.parent if path else Path.cwd()
    seed = doc.get("seed", 0)
    for key in ("max_length", "batch_size"):
        if key in doc and doc[key] < 1:
            raise UsageError(f"{where}: {key} must be >= 1, not {doc[key]}")
    if seed < 0:
        raise UsageError(f"{where}: seed must be >= 0, not {seed}")

    splits_doc = doc.get("splits") or {}
    if not splits_doc:
        raise UsageError(f"{where}: no [splits.<name>] tables; a spec needs at least one split")
    for sname in splits_doc:  # split names become file names (predictions/<model>/<split>.parquet)
        check_name(sname, f"{where}: split name")
    task = _task(doc.get("task"), where)
    splits = {sname: _parse_split(sname, sdoc, where, base, seed, check_files, task)
              for sname, sdoc in splits_doc.items()}
    devs = [s.name for s in splits.values() if s.role == "dev"]
    if len(devs) > 1:
        raise UsageError(f"{where}: splits {devs} all have role 'dev'; temperature is fitted on exactly one")
    if not any(s.role in ("test", "ood") for s in splits.values()):
        raise UsageError(f"{where}: no split has role 'test' or 'ood'; nothing to evaluate")

    suites = parse_suites(doc.get("suites"), where, splits)
    try:
        check_suites(task, suites)  # e.g. the adversarial suite on multiple choice: one line, exit 2
    except UsageError as err:
        raise UsageError(f"{where}: {err.message}") from None
    models = {}
    for mname, mpath in (doc.get("models") or {}).items():
        check_name(mname, f"{where}: [models] model name")  # names a folder: predictions/<model>/
        if not isinstance(mpath, str) or not mpath:
            raise UsageError(f"{where}: [models] {mname}: expected a path or hub id (string)")
        local = base / Path(mpath).expanduser()
        as_path = local.exists() or mpath.startswith((".", "/", "~")) or mpath.count("/") > 1
        models[mname] = str(local.resolve()) if as_path else mpath  # else a hub id like org/name
    return Spec(name=name, path=path, description=doc.get("description", ""), seed=seed,
                max_length=doc.get("max_length", 128), batch_size=doc.get("batch_size", 32),
                splits=splits, suites=suites, models=models, sha256=sha256,
                primary=parse_primary(doc.get("primary"), where, splits), task=task)


def _task(name: str | None, where: str) -> str:
    try:
        return get_task(name).name
    except UsageError as err:
        raise UsageError(f"{where}: task: {err.message}") from None


def parse_primary(entries: list | None, where: str, splits: dict[str, SplitSpec]) -> tuple[str, ...]:
    """`primary = ["accuracy", "test/ece@15"]`: metric names, optionally `split/metric`. A bare metric
    must be a known metric; prefixed ones (`ts:nll`, `deepwordbug:accuracy_under_attack`) are checked
    against the records when compared."""
    out = []
    for entry in entries or []:
        if not isinstance(entry, str) or not entry.strip():
            raise UsageError(f"{where}: primary: expected metric names such as \"accuracy\" or \"test/ece@15\", "
                             f"got {entry!r}")
        split, sep, metric = entry.rpartition("/")
        if sep and split not in splits:
            raise UsageError(f"{where}: primary: '{entry}': no split '{split}'{did_you_mean(split, list(splits))}; "
                             f"splits: {', '.join(splits)}")
        if ":" not in metric:
            try:
                get_metric(base_name(metric))
            except UsageError:
                raise UsageError(f"{where}: primary: unknown metric '{metric}'"
                                 f"{did_you_mean(metric, list(metric_names()))}") from None
        out.append(entry)
    return tuple(out)


def parse_suites(table: dict[str, Any] | None, where: str, splits: dict[str, SplitSpec]) -> dict[str, SuiteSpec]:
    """Suite tables validated against each suite's declared defaults (unknown key -> did you mean)."""
    if table is None:
        names = list(DEFAULT_SUITES) + (["ood"] if any(s.role == "ood" for s in splits.values()) else [])
        table = {n: {} for n in names}
    if not table:
        raise UsageError(f"{where}: [suites] is empty; name at least one suite, e.g. [suites.accuracy]")
    out = {}
    for sname, settings in table.items():
        key = f"[suites.{sname}]"
        if not isinstance(settings, dict):
            raise UsageError(f"{where}: {key}: expected a table of settings, got {type(settings).__name__}")
        try:
            info = get_suite(sname)
        except UsageError as err:
            raise UsageError(f"{where}: {key}: {err.message}") from None
        roles = {name: split.role for name, split in splits.items()}
        out[sname] = SuiteSpec(sname, validate_settings(info, settings, f"{where}: {key}", roles))
    return out


def validate_settings(info, settings: dict[str, Any], where: str, roles: dict[str, str] | None = None) -> dict[str, Any]:
    """Merge `settings` over the suite's defaults; keys and value types must match the defaults.
    A suite may also check the merged settings itself (`register_suite(..., validate=fn)`), e.g. metric names."""
    merged = dict(info.defaults)
    for key, value in settings.items():
        if key not in info.defaults:
            known = sorted(info.defaults)
            raise UsageError(f"{where} unknown setting '{key}'{did_you_mean(key, known)}; "
                             f"'{info.name}' takes: {', '.join(known) or 'no settings'}")
        default = info.defaults[key]
        if default is not None and not _same_type(value, default):
            raise UsageError(f"{where} {key}: expected {_type_name(default)}, got {_type_name(value)} ({value!r})")
        if isinstance(default, (list, tuple)) and default and isinstance(value, (list, tuple)):
            bad = [v for v in value if not _same_type(v, default[0])]
            if bad:
                raise UsageError(f"{where} {key}: expected a list of {_type_name(default[0]).split(' ', 1)[1]}s, "
                                 f"got {_type_name(bad[0])} ({bad[0]!r})")
        merged[key] = value
    if info.validate is not None:
        try:
            info.validate(merged, dict(roles or {}))
        except UsageError as err:
            raise UsageError(f"{where} {err.message}") from None
    return merged


def _parse_split(name: str, sdoc: Any, where: str, base: Path, seed: int, check_files: bool,
                 task: str | None = None) -> SplitSpec:
    key = f"[splits.{name}]"
    if not isinstance(sdoc, dict):
        raise UsageError(f"{where}: {key}: expected a table, got {type(sdoc).__name__}")
    _check_keys(sdoc, SPLIT_KEYS, where, key)
    for required in ("role", "path"):
        if required not in sdoc:
            raise UsageError(f"{where}: {key}: missing key '{required}'")
    role = sdoc["role"]
    if role not in SPLIT_ROLES:
        raise UsageError(f"{where}: {key} role: '{role}' is not one of {', '.join(SPLIT_ROLES)}"
                         f"{did_you_mean(role, list(SPLIT_ROLES))}")
    on_empty = sdoc.get("on_empty", "reject")
    if on_empty not in ON_EMPTY_CHOICES:
        raise UsageError(f"{where}: {key} on_empty: '{on_empty}' is not one of {', '.join(ON_EMPTY_CHOICES)}")
    if "sample" in sdoc and sdoc["sample"] < 1:
        raise UsageError(f"{where}: {key} sample: must be >= 1, not {sdoc['sample']}")
    if "seed" in sdoc and sdoc["seed"] < 0:
        raise UsageError(f"{where}: {key} seed: must be >= 0, not {sdoc['seed']}")
    label_map = sdoc.get("label_map")
    if label_map is not None:
        for k, v in label_map.items():
            if not isinstance(v, (str, int)) or isinstance(v, bool):
                raise UsageError(f"{where}: {key} label_map.{k}: expected a label name or id, got {v!r}")
    raw_path = sdoc["path"]
    resolved = resolve_data_path(raw_path, base, f"{where}: {key} path")
    if check_files and not resolved.startswith("hub:") and not Path(resolved).exists():
        raise ArtifactError(f"{where}: {key} path: data file not found: {resolved}")
    try:  # the task's column defaults (multiple choice: SWAG's sent1, sent2, ending0..3, label)
        columns = data_columns(task, {k: sdoc.get(k) for k in COLUMN_KEYS})
    except UsageError as err:
        raise UsageError(f"{where}: {key} {err.message}") from None
    source = DataSource(
        path=resolved,
        **columns,
        id_column=sdoc.get("id_column"),
        label_map=dict(label_map) if label_map is not None else None,
        hub_split=sdoc.get("hub_split"),
        hub_config=sdoc.get("hub_config"),
        sample=sdoc.get("sample"),
        seed=sdoc.get("seed", seed),
        on_empty=on_empty,
        drop_labels=tuple(str(v) for v in sdoc.get("drop_labels", [])),
    )
    return SplitSpec(name=name, role=role, source=source, raw_path=raw_path)


def resolve_data_path(raw: str, base: Path, where: str) -> str:
    """`package:pkg/rel`, a local path (relative to the spec's folder), or `hub:<id>` for anything else."""
    if raw.startswith("package:"):
        rest = raw.removeprefix("package:").lstrip("/")
        package, _, rel = rest.partition("/")
        if not package or not rel:
            raise UsageError(f"{where}: '{raw}' must look like package:<package>/<path inside it>")
        try:
            root = importlib.resources.files(package)
        except ModuleNotFoundError:
            raise ArtifactError(f"{where}: package '{package}' is not installed") from None
        return str(root.joinpath(rel))
    if raw.startswith("hub:"):
        return raw
    if raw.startswith("file:"):
        raw = raw.removeprefix("file:")
    p = Path(raw).expanduser()
    local = p if p.is_absolute() else base / p
    if local.exists() or p.suffix.lower() in LOCAL_SUFFIXES or raw.startswith((".", "/", "~")):
        return str(local.resolve())
    return f"hub:{raw}"


def _check_keys(doc: dict[str, Any], allowed: dict[str, type], where: str, table: str) -> None:
    prefix = f"{where}: {table} " if table else f"{where}: "
    for key, value in doc.items():
        if key not in allowed:
            raise UsageError(f"{prefix}unknown key '{key}'{did_you_mean(key, sorted(allowed))}; "
                             f"allowed: {', '.join(sorted(allowed))}")
        expected = allowed[key]
        if not _same_type(value, expected()):
            raise UsageError(f"{prefix}{key}: expected {_type_name(expected())}, got {_type_name(value)} ({value!r})")


def _same_type(value: Any, default: Any) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    if isinstance(default, (list, tuple)):
        return isinstance(value, (list, tuple))
    return isinstance(value, type(default))


def _type_name(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
            tuple: "a list", dict: "a table"}.get(type(value), type(value).__name__)
