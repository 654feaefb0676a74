"""Time to score + compare + report a run from cached predictions (no model anywhere).

    python benchmarks/report_speed.py [--n 100000] [--resamples 1000] [--out DIR] [--plain 20] [--json]

Builds a synthetic run folder with two models ("baseline", "aligned") whose cached predictions hold
--n examples each in total, split 60/20/20 over test / dev / ood (binary labels, probabilities of two
differently calibrated models). Setup (writing the parquet files) is not timed. Then it times, in one
process, what `aligneval run` does after prediction and what `aligneval report` does:
  score   read the cached predictions and run the built-in suites accuracy, calibration (temperature
          fitted on dev), uncertainty and ood; write results.json
  compare paired bootstrap (--resamples) of every prediction-basis record + exact McNemar
  report  comparison.json, report.html and report.md + plots
With --plain R (default 20, 0 turns it off; not part of the timed total) it then measures, side by side on the same R resamples of the test split, the vectorized
bootstrap statistics of every bootstrapped test record (both models, in one thread, sharing sorted views
and caches as compare does) against calling each metric on each resample's rows; it asserts both give
the same values and prints the ratio.
With --json the last line is {"seconds": total, "score": ..., "compare": ..., "report": ..., ...};
"engine" names the bootstrap statistics each split got (aligneval.compare.engines: "fused" where numba
is installed and the split is large enough, else "numpy"; ALIGNEVAL_STATS_ENGINE=numpy forces numpy).
"cpu_seconds" and "stage_cpu_seconds" count every thread of this process and its finished child
processes: the report's figure workers (aligneval.report.figures). The runs of 60239bb and f4bbfd4
counted this process only, so their report CPU leaves the workers out.
Each run also records the machine's speed at the time: "probe_seconds" (a fixed single-thread workload
timed just before the stages, not in the total) and "steal_seconds" (CPU time the hypervisor gave to
other guests during the stages, from /proc/stat; null where there is none), and "cpu" (model and vector
extensions): the probe compares hours on one CPU, not CPUs (session 9's Zen 3 read a faster probe
than session 8's AVX-512 CPU and ran the stages 40-60% slower).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

from aligneval.versions import cpu_description, cpu_line  # noqa: E402

SPLITS = {"test": ("test", 0.6), "dev": ("dev", 0.2), "ood": ("ood", 0.2)}
MODELS = {"baseline": (1.6, 1.8), "aligned": (1.8, 1.2)}  # (skill, sharpness) of the synthetic logits


def synthetic_run(root: Path, n: int, seed: int = 0):
    """Parquet predictions for two models plus the SuiteContext that `aligneval run` would build."""
    from aligneval.data import Examples
    from aligneval.predict import write_predictions
    from aligneval.suites.base import ModelInfo, Predictions, SplitInfo

    rng = np.random.default_rng(seed)
    splits, examples = {}, {}
    for split, (role, share) in SPLITS.items():
        size = int(n * share)
        labels = rng.integers(0, 2, size)
        ids = [f"{split}-{i:07d}" for i in range(size)]
        texts = [f"synthetic {split} text number {i}" for i in range(size)]
        ex = Examples(ids=ids, texts=texts, labels=labels, label_names=["negative", "positive"], source=f"{split}.jsonl")
        examples[split] = ex
        splits[split] = SplitInfo(split, role, ex.source, ex.fingerprint, size)
        shift = 0.7 if role == "ood" else 0.0
        for name, (skill, sharp) in MODELS.items():
            z = rng.normal(size=(size, 2))
            z[np.arange(size), labels] += skill - shift
            z *= sharp
            p = np.exp(z - z.max(1, keepdims=True))
            p /= p.sum(1, keepdims=True)
            pr = Predictions(ids, labels, p, texts)
            sha = [hashlib.sha256(t.encode()).hexdigest() for t in texts]
            write_predictions(root / "predictions" / name / f"{split}.parquet", pr, sha, {"synthetic": True})
    models = {m: ModelInfo(m, f"synthetic/{m}", hashlib.sha256(m.encode()).hexdigest(), None) for m in MODELS}
    return models, splits, examples


SUITES = ("accuracy", "calibration", "uncertainty", "ood")


def cpu_seconds() -> float:
    """CPU time of this process (all its threads) and of its finished child processes (the report's
    figure workers, reaped when the report is written; no children counted where `resource` is missing)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return time.process_time()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def probe_seconds(rounds: int = 5) -> float:
    """Median time of a fixed single-thread workload (a Python loop and a numpy sort), taken before the
    timed stages: the machine's own speed at that moment, so a slow run can be told from slow code."""
    x = np.random.default_rng(0).random(1_000_000)
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        total = 0
        for i in range(200_000):
            total += i * i
        np.sort(x)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def steal_seconds() -> float | None:
    """CPU time the hypervisor gave to other guests, all cores (the 8th field of /proc/stat's cpu line)."""
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            fields = fh.readline().split()
        return int(fields[8]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def score(root: Path, models, splits, examples, suites: tuple[str, ...] = SUITES) -> None:
    """What `aligneval run` does after prediction: read the cache, run the suites, write results.json."""
    import datetime as dt

    from aligneval.predict import read_predictions
    from aligneval.results import SCHEMA_VERSION, write_results
    from aligneval.records import SuiteOutput
    from aligneval.suites import get_suite
    from aligneval.suites.base import SuiteContext

    preds = {(m, s): read_predictions(root / "predictions" / m / f"{s}.parquet")[0] for m in models for s in splits}
    ctx = SuiteContext(models=models, splits=splits, predictions=preds, run_dir=root, seed=0, examples=examples)
    out = SuiteOutput()
    for name in suites:
        info = get_suite(name)
        out.extend(info.fn(ctx, dict(info.defaults)))
    doc = {
        "schema_version": SCHEMA_VERSION,
        "created": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "aligneval_version": "bench",
        "environment": {"python": sys.version.split()[0], "packages": {"numpy": np.__version__}, "device": "cpu",
                        "torch_threads": None},
        "spec": {"name": "report-speed", "path": None, "sha256": "0" * 64},
        "seed": 0,
        "models": {m: {"path": i.path, "weights_sha256": i.weights_sha256, "card": None} for m, i in models.items()},
        "data": {s: {"role": i.role, "source": i.source, "fingerprint": i.fingerprint, "size": i.size, "skipped": 0,
                     "label_names": ["negative", "positive"]} for s, i in splits.items()},
        "records": [r.to_dict() for r in out.records],
        "curves": [c.to_dict() for c in out.curves],
        "examples": out.examples,
    }
    write_results(root, json.loads(json.dumps(doc, default=float)))


def plain_vs_fast(run_dir: Path, comp, resamples: int, split: str = "test") -> dict:
    """Seconds for the vectorized statistics and for the metric called per resample, same resamples."""
    from aligneval.compare import resampling
    from aligneval.results import load_results
    from aligneval.metrics import base_metric_name as base_name, get_metric, scale_probs as apply_temperature

    res = load_results(run_dir)
    rows = [r for r in comp.records if r["split"] == split and r.get("resamples")]
    jobs = []  # (metric, probs, labels, temperature)
    for model, side in ((comp.baseline, "baseline"), (comp.candidate, "candidate")):
        preds = res.predictions(model, split)
        for r in rows:
            temperature = (r["temperature"] or {}).get(side)
            jobs.append((base_name(r["metric"]), preds.probs, preds.labels, temperature))
    n = len(jobs[0][2])
    chunks = list(resampling.count_chunks(n, resamples, resampling.split_rng(0, split)))

    start = time.perf_counter()
    ranked: dict = {}
    sides: dict = {}  # one dict of statistics per model, run chunk by chunk as compare runs them
    for i, (m, p, y, t) in enumerate(jobs):
        sides.setdefault(id(p), {})[i] = resampling.statistic(m, p, y, t, ranked.setdefault(id(p), {}))
    works: dict = {key: {} for key in sides}
    per_side = {key: [resampling.run_chunk(stats, w, None, works[key]) for w in chunks] for key, stats in sides.items()}
    by_job = {i: np.concatenate([values[j] for values in per_side[key]])
              for key, stats in sides.items() for j, i in enumerate(stats)}
    fast_values = [by_job[i] for i in range(len(jobs))]
    fast_s = time.perf_counter() - start

    start = time.perf_counter()
    plain = [resampling.generic_statistic(get_metric(m).fn, apply_temperature(p, t), y) for m, p, y, t in jobs]
    plain_values = [np.concatenate([stat(w) for w in chunks]) for stat in plain]
    plain_s = time.perf_counter() - start
    for (m, *_), a, b in zip(jobs, fast_values, plain_values):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12, err_msg=m)
    return {"resamples": resamples, "statistics": len(jobs), "examples": n, "fast_seconds": round(fast_s, 3),
            "plain_seconds": round(plain_s, 3), "speedup": round(plain_s / fast_s, 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100_000, help="cached predictions per model (all splits together)")
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--out", type=Path, default=None, help="keep the run and report here (default: a temp dir)")
    ap.add_argument("--plain", type=int, default=20, metavar="R",
                    help="also time R resamples of the test split the plain way (metric per resample) side by side "
                         "(default 20; 0: off)")
    ap.add_argument("--json", action="store_true", help="end with one JSON line")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="aligneval-report-speed-") as tmp:
        root = args.out or Path(tmp)
        run_dir, report_dir = root / "run", root / "report"
        t0 = time.perf_counter()
        models, splits, examples = synthetic_run(run_dir, args.n)
        setup = time.perf_counter() - t0

        from aligneval.compare import compare
        from aligneval.compare.engines import engine
        from aligneval.report import build_report

        probe = probe_seconds()
        t, stage_cpu = {}, {}
        steal0 = steal_seconds()
        cpu0 = cpu_seconds()
        stages = {"score": lambda: score(run_dir, models, splits, examples),
                  "compare": lambda: compare(run_dir, resamples=args.resamples),
                  "report": lambda: build_report(run_dir, report_dir, comparison=comp)}
        comp = paths = None
        for stage, fn in stages.items():
            c0, start = cpu_seconds(), time.perf_counter()
            out = fn()
            t[stage], stage_cpu[stage] = time.perf_counter() - start, cpu_seconds() - c0
            comp = out if stage == "compare" else comp
            paths = out if stage == "report" else paths
        total = sum(t.values())
        cpu = cpu_seconds() - cpu0  # every thread and worker: wall time on an idle machine is >= cpu / cores
        steal1 = steal_seconds()
        steal = None if steal0 is None or steal1 is None else round(steal1 - steal0, 2)
        n_boot = sum(1 for r in comp.records if r.get("resamples"))
        print(f"{args.n:,} cached predictions per model, {len(comp.records)} comparison records "
              f"({n_boot} bootstrapped x {args.resamples:,} resamples), setup {setup:.1f} s (not timed)")
        for k, v in t.items():
            print(f"  {k:<8} {v:6.2f} s   (cpu {stage_cpu[k]:.2f} s)")
        print(f"  {'total':<8} {total:6.2f} s   (target <= 5 s on 2 cores)   report: {paths.html}")
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        print(f"  cpu time {cpu:6.2f} s over {os.cpu_count()} cores; load average at the end: {load}")
        processor = cpu_description()
        print(f"  cpu: {cpu_line(processor)}")
        print(f"  machine: probe {probe:.3f} s (a fixed single-thread workload, before the stages; lower is "
              f"faster), cpu stolen by the hypervisor during the stages: {steal} s")
        stats_engine = {split: engine(int(args.n * share)) for split, (_, share) in SPLITS.items()}
        numba = sys.modules.get("numba")
        print(f"  bootstrap statistics by split: {stats_engine}"
              + (f" (numba {numba.__version__})" if numba else " (numba not imported)"))
        plain = plain_vs_fast(run_dir, comp, args.plain) if args.plain else None
        if plain:
            print(f"side by side, {plain['resamples']} resamples of {plain['examples']:,} test examples, "
                  f"{plain['statistics']} statistics (same values asserted): vectorized {plain['fast_seconds']:.2f} s, "
                  f"metric per resample {plain['plain_seconds']:.2f} s: {plain['speedup']}x")
        if args.json:
            print(json.dumps({"seconds": round(total, 3), **{k: round(v, 3) for k, v in t.items()},
                              "n_per_model": args.n, "resamples": args.resamples, "records": len(comp.records),
                              "bootstrapped": n_boot, "cpu_seconds": round(cpu, 3),
                              "stage_cpu_seconds": {k: round(v, 3) for k, v in stage_cpu.items()},
                              "cpu_count": os.cpu_count(),
                              "load_average": load, "probe_seconds": round(probe, 4), "steal_seconds": steal,
                              "cpu": processor, "engine": stats_engine,
                              "numba": numba.__version__ if numba else None,
                              "plain": plain}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
