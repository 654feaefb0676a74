"""MLflow: a payload as one MLflow run (child runs for seeds and λ twins), through `MlflowClient`.

Where: `MLFLOW_TRACKING_URI` when set, else a local SQLite store in the output folder
(`<folder>/mlflow/mlflow.db`, artifacts beside it in `<folder>/mlflow/artifacts`), so nothing needs
a server. The experiment is `MLFLOW_EXPERIMENT_NAME` (default "aligneval"). A server that cannot be
reached is found by one short request before anything is logged.
"""

from __future__ import annotations

import logging
import os
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from aligneval.errors import ResourceError
from aligneval.tracking import extra_missing
from aligneval.tracking.payload import Payload

EXPERIMENT = "aligneval"
BATCH = 100  # MLflow's per-request limit for params and tags (metrics: 1000)
METRIC_BATCH = 1000
PROBE_TIMEOUT_S = 5.0


def default_uri(folder: Path) -> str:
    return "sqlite:///" + str((folder / "mlflow" / "mlflow.db").resolve())


def _import():
    try:
        import mlflow  # noqa: F401
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise extra_missing("mlflow", "MLflow (mlflow-skinny)") from None
    for noisy in ("mlflow", "alembic"):  # schema migrations and "creating experiment" chatter
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return MlflowClient


def _probe(uri: str) -> None:
    """One short request to an http(s) tracking server: unreachable -> one line, exit 5 (MLflow's own
    client would retry for minutes)."""
    if not uri.startswith(("http://", "https://")):
        return
    try:
        urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=PROBE_TIMEOUT_S).close()
    except urllib.error.HTTPError:
        return  # it answered
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ResourceError(f"MLflow tracking server {uri} is unreachable ({reason}); your results are written, "
                            "re-run with --log-to mlflow when it is up") from None


def _experiment(client, folder: Path, local: bool) -> str:
    name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or EXPERIMENT
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    where = (folder / "mlflow" / "artifacts").resolve().as_uri() if local else None
    return client.create_experiment(name, artifact_location=where)


def _log(client, run_id: str, payload: Payload) -> None:
    from mlflow.entities import Metric as MlMetric
    from mlflow.entities import Param, RunTag

    now = int(time.time() * 1000)
    params = [Param(k, v[:6000]) for k, v in payload.params.items()]
    tags = [RunTag(k, v) for k, v in payload.tags.items()]
    metrics = [MlMetric(m.key, m.value, now, 0 if m.step is None else m.step) for m in payload.metrics]
    for i in range(0, len(params), BATCH):
        client.log_batch(run_id, params=params[i:i + BATCH])
    for i in range(0, len(tags), BATCH):
        client.log_batch(run_id, tags=tags[i:i + BATCH])
    for i in range(0, len(metrics), METRIC_BATCH):
        client.log_batch(run_id, metrics=metrics[i:i + METRIC_BATCH])
    if payload.table:
        client.log_dict(run_id, payload.table, "comparison_table.json")
    for f in payload.files:
        if Path(f).is_file():
            client.log_artifact(run_id, str(f))


def _run(client, experiment_id: str, payload: Payload, state: dict[str, Any], uri: str,
         parent: str | None = None) -> str:
    """The run to log into: the one this folder's earlier command started (same store), else a new one."""
    run_id = state.get("run_id") if parent is None and state.get("tracking_uri") == uri else None
    if run_id:
        try:
            client.get_run(run_id)
            return run_id
        except Exception:  # noqa: BLE001 - deleted or another store: start afresh
            pass
    tags = {"mlflow.parentRunId": parent} if parent else {}
    return client.create_run(experiment_id, run_name=payload.name, tags=tags).info.run_id


def publish(payload: Payload, folder: Path, state: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Log `payload` (and its children, as nested runs); returns (a line for the console, the state)."""
    MlflowClient = _import()
    env_uri = os.environ.get("MLFLOW_TRACKING_URI")
    uri = env_uri or default_uri(folder)
    _probe(uri)
    if not env_uri:
        (folder / "mlflow").mkdir(parents=True, exist_ok=True)
    try:
        from mlflow.exceptions import MlflowException

        client = MlflowClient(tracking_uri=uri)
        experiment_id = _experiment(client, folder, local=not env_uri)
        run_id = _run(client, experiment_id, payload, state, uri)
        _log(client, run_id, payload)
        for child in payload.children:
            child_id = _run(client, experiment_id, child, {}, uri, parent=run_id)
            _log(client, child_id, child)
            client.set_terminated(child_id)
        client.set_terminated(run_id)
    except (MlflowException, OSError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise ResourceError(f"MLflow ({uri}): {first}; your results are written, "
                            "re-run with --log-to mlflow") from None
    except ImportError as exc:  # the SQLite store needs sqlalchemy and alembic (the [mlflow] extra)
        raise extra_missing("mlflow", exc.name or "sqlalchemy") from None
    children = f" with {len(payload.children)} child run(s)" if payload.children else ""
    return (f"logged to MLflow: run {run_id}{children} in {uri}",
            {"tracking_uri": uri, "experiment_id": experiment_id, "run_id": run_id})

