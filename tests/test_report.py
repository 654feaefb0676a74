"""Reports: one self-contained HTML file, GitHub markdown + plots, numbers traceable to records, texts escaped."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from aligneval.cli import main
from aligneval.compare import load
from aligneval.formatting import fmt, fmt_ci, fmt_delta, fmt_p
from aligneval.report import build_report
from aligneval.report import displays as D
from aligneval.report.context import metric_label
from tests.fixtures_results import NASTY_TEXTS, make_run


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("rep")
    run = make_run(root / "run", n=200, nasty=True)
    paths = build_report(run, root / "out", resamples=100)
    return run, paths


def _png_size(data: bytes) -> tuple[int, int]:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return im.size


def test_html_is_one_self_contained_file(built):
    _, paths = built
    html = paths.html.read_text()
    assert "<script" not in html.lower()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", html, re.I)
    assert "@import" not in html and "url(" not in html  # no fonts or stylesheets from anywhere
    assert "Content-Security-Policy" in html and "default-src 'none'" in html
    srcs = re.findall(r'<img src="([^"]+)"', html)
    assert len(srcs) >= 8 and all(s.startswith("data:image/png;base64,") for s in srcs)
    import base64

    for s in srcs:
        w, h = _png_size(base64.b64decode(s.split(",", 1)[1]))
        assert w >= 300 and h >= 200
    assert 'name="viewport"' in html and "@media print" in html and "@media (max-width" in html
    for section in ("headline", "forest", "reliability", "risk_coverage", "ood", "temperature", "attack",
                    "disagreements", "adversarial-examples", "all", "setup"):
        assert f'id="{section}"' in html


def test_dataset_and_attack_texts_are_rendered_as_text_only(built):
    _, paths = built
    html = paths.html.read_text()
    md = paths.markdown.read_text()
    for raw in ("<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "<b>x</b>"):
        assert raw not in html and raw not in md
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "{{ 7*7 }}" in html  # not evaluated as a template
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in md
    assert NASTY_TEXTS[2].replace("*", "\\*") in md


def test_markdown_references_plots_that_exist(built):
    _, paths = built
    md = paths.markdown.read_text()
    refs = re.findall(r"!\[[^\]]*\]\((plots/[^)]+\.png)\)", md)
    assert len(refs) >= 8
    for ref in refs:
        assert (paths.out / ref).is_file() and _png_size((paths.out / ref).read_bytes())[0] >= 300
    assert {p.name for p in paths.plots} == {r.split("/")[1] for r in refs}


def _table_rows(md: str, heading: str) -> list[list[str]]:
    block = md.split(heading, 1)[1]
    rows = []
    for line in block.splitlines()[2:]:
        if line.startswith("#"):
            break
        if line.startswith("| ") and not line.startswith("| ---"):
            rows.append([c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]])
    return rows


def test_every_number_in_the_markdown_tables_traces_to_a_comparison_record(built):
    _, paths = built
    md = paths.markdown.read_text()
    doc = json.loads(paths.comparison.read_text())
    recs = {(r["split"], metric_label(r["metric"])): r for r in doc["comparison"]["records"]}
    from aligneval.report.markdown import esc

    checked = 0
    for split in ("test", "dev", "ood_amazon"):
        header, *rows = _table_rows(md, f"### {esc(split)}")
        assert rows
        two_p = "p raw" in header  # raw and adjusted p side by side when an adjustment was applied
        for cells in rows:
            row = dict(zip(header, cells))
            metric = row["metric"].replace(" (exploratory)", "")
            label = metric.rsplit(" ", 1)[0] if metric[-1] in "↑↓" else metric
            r = recs[(split, label.replace("\\", ""))]
            assert (row["baseline"], row["aligned"], row["Δ"]) == (fmt(r["baseline"]), fmt(r["candidate"]),
                                                                   fmt_delta(r["delta"]))
            assert row["95% CI"].replace("\\", "") == fmt_ci(r["ci_low"], r["ci_high"])
            adjusted = [c for c in header if c.startswith("p ") and c != "p raw"] if two_p else ["p"]
            assert row[adjusted[0]] == fmt_p(r["p_value"], floor=bool(r.get("p_floor")) and not two_p,
                                             bound=bool(r.get("p_floor")) and two_p)
            if two_p:
                assert row["p raw"] == fmt_p(r["p_value_raw"], floor=bool(r.get("p_floor")))
            assert row["n"] == fmt(r["n"])
            checked += 1
    assert checked == len({(r["split"], r["metric"]) for r in doc["comparison"]["records"]})


def test_headline_counts_match_the_verdicts(built):
    _, paths = built
    doc = json.loads(paths.comparison.read_text())
    test = {r["metric"]: r for r in doc["comparison"]["records"] if r["split"] == "test" and ":" not in r["metric"]}
    md = paths.markdown.read_text()
    want = {v: sum(r["verdict"] == v for r in test.values()) for v in ("better", "worse", "no-difference")}
    assert (f"**{want['better']} better, {want['worse']} worse, {want['no-difference']} no significant difference**"
            in md)


def test_sections_without_data_are_left_out(tmp_path):
    run = make_run(tmp_path / "plain", n=80, splits={"test": "test"}, attacks=False)
    paths = build_report(run, tmp_path / "out", resamples=20)
    html = paths.html.read_text()
    for absent in ('id="attack"', 'id="temperature"', 'id="ood"', 'id="adversarial-examples"'):
        assert absent not in html
    assert 'id="reliability"' in html and 'id="headline"' in html
    assert "Adversarial" not in paths.markdown.read_text()


def test_collector_paused_while_the_report_is_written_and_restored_after(tmp_path, monkeypatch):
    """build_report pauses the cyclic garbage collector around the figures (speed) and leaves it as it
    found it, also when building fails or when the caller had already turned it off."""
    import gc

    import aligneval.report as report_pkg

    run = make_run(tmp_path / "run", n=60, splits={"test": "test"}, attacks=False)
    seen = []
    real = report_pkg.build_context

    def spy(*args, **kwargs):
        seen.append(gc.isenabled())
        return real(*args, **kwargs)

    monkeypatch.setattr(report_pkg, "build_context", spy)
    assert gc.isenabled()
    build_report(run, tmp_path / "a", resamples=20)
    assert seen == [False] and gc.isenabled()

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(report_pkg, "build_context", broken)
    with pytest.raises(RuntimeError):
        build_report(run, tmp_path / "b", resamples=20)
    assert gc.isenabled()

    monkeypatch.setattr(report_pkg, "build_context", spy)
    gc.disable()
    try:
        build_report(run, tmp_path / "c", resamples=20)
        assert seen[-1] is False and not gc.isenabled()
    finally:
        gc.enable()


def test_missing_cached_predictions_is_an_artifact_error(tmp_path, capsys):
    run = make_run(tmp_path / "r", n=60, attacks=False)
    (run / "predictions" / "aligned" / "test.parquet").unlink()
    assert main(["report", str(run), "--out", str(tmp_path / "o"), "--resamples", "10"]) == 3
    assert "test.parquet" in capsys.readouterr().err


def test_report_command_never_imports_torch_transformers_or_pandas(built, tmp_path):
    """No model library, and no pandas (pq.read_table's dataset layer imports it: ~0.25 s per process)."""
    run, _ = built
    code = ("import sys; from aligneval.cli import main; "
            f"rc = main(['report', {str(run)!r}, '--out', {str(tmp_path / 'cli')!r}, '--resamples', '20']); "
            "print(rc, 'torch' in sys.modules, 'transformers' in sys.modules, 'pandas' in sys.modules)")
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.stdout.split()[-4:] == ["0", "False", "False", "False"], out.stderr
    assert (tmp_path / "cli" / "report.html").is_file() and (tmp_path / "cli" / "comparison.json").is_file()


def test_report_never_constructs_a_model(built, tmp_path, monkeypatch):
    import transformers

    def refuse(*a, **k):
        raise AssertionError("a model was constructed")

    monkeypatch.setattr(transformers.PreTrainedModel, "__init__", refuse)
    run, _ = built
    assert main(["report", str(run), "--out", str(tmp_path / "o"), "--resamples", "20", "--format", "md"]) == 0
    assert (tmp_path / "o" / "report.md").is_file() and not (tmp_path / "o" / "report.html").exists()


def test_cli_report_errors(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nothing"), "--out", str(tmp_path / "o")]) == 3
    assert "results" in capsys.readouterr().err
    run = make_run(tmp_path / "r", n=40, attacks=False)
    assert main(["report", str(run), "--out", str(tmp_path / "o"), "--format", "pdf"]) == 2


def test_displays_keep_the_stored_arrays_and_draw(built):
    run, _ = built
    res = load(run)
    rel = D.ReliabilityDisplay.from_results(res, "test", ["baseline", "aligned"])
    curve = next(c for c in res.curves if c.name == "reliability" and c.split == "test" and c.model == "aligned")
    assert rel.bins["aligned"] == curve.data
    assert rel.ece["aligned"] == res.value("ece@15", "test", "aligned", "calibration")
    rel.plot()
    assert len(rel.ax_.lines) == 3 and rel.ax_hist_ is not None  # diagonal + two models
    rc = D.RiskCoverageDisplay.from_results(res, "ood_amazon", ["baseline", "aligned"])
    np.testing.assert_array_equal(rc.curves["baseline"][0], next(
        c.data["coverage"] for c in res.curves if c.name == "risk_coverage" and c.split == "ood_amazon"
        and c.model == "baseline"))
    assert rc.plot().figure_ is not None
    ood = D.OodDisplay.from_results(res, "accuracy", "test", ["ood_amazon"], ["baseline", "aligned"])
    v = ood.values["aligned"]
    assert ood.drops()["aligned"]["ood_amazon"] == pytest.approx(v["ood_amazon"] - v["test"])
    t = D.TemperatureDisplay.from_results(res, "ece@15", ["baseline", "aligned"])
    assert {(r["model"], r["split"]) for r in t.rows} == {(m, s) for m in ("baseline", "aligned")
                                                         for s in ("test", "ood_amazon")}
    att = D.AttackDisplay.from_results(res, ["baseline", "aligned"])
    assert att.recipes == ["deepwordbug", "pruthi"]
    for d in (ood, t, att):
        assert D.figure_png(d.plot())[:8] == b"\x89PNG\r\n\x1a\n"


def test_forest_orients_lower_is_better_metrics():
    rows = [{"metric": "ece@15", "split": "test", "delta": 0.02, "ci_low": 0.01, "ci_high": 0.03,
             "verdict": "worse", "higher_is_better": False},
            {"metric": "accuracy", "split": "test", "delta": 0.02, "ci_low": 0.01, "ci_high": 0.03,
             "verdict": "better", "higher_is_better": True},
            {"metric": "x", "split": "test", "delta": 0.1, "ci_low": None, "ci_high": None, "verdict": "n/a",
             "higher_is_better": True}]
    f = D.ForestDisplay.from_results(rows)
    d, lo, hi = f.oriented()
    np.testing.assert_allclose(d, [-0.02, 0.02])
    np.testing.assert_allclose(lo, [-0.03, 0.01])
    np.testing.assert_allclose(hi, [-0.01, 0.03])
    assert D.figure_png(f.plot())[:4] == b"\x89PNG"


def test_markdown_cells_escape_pipes_and_markup():
    from aligneval.report.markdown import esc, table

    t = table(["a", "b"], [["x | y", "<script>*bold*</script>"]])
    row = t.splitlines()[2]
    assert len(re.split(r"(?<!\\)\|", row)) == 4  # two cells, the pipe inside is escaped
    assert "&lt;script&gt;" in row and "\\*bold\\*" in row
    assert esc("line\nbreak") == "line break"


def test_report_against_an_older_run_overlays_both_runs(tmp_path):
    old = make_run(tmp_path / "old", n=120, attacks=False)
    new = make_run(tmp_path / "new", n=120, attacks=False, models={"baseline": (1.6, 1.8), "aligned": (2.4, 1.0)})
    paths = build_report(new, tmp_path / "out", against=old, baseline="aligned", candidate="aligned", resamples=20)
    html = paths.html.read_text()
    assert 'id="reliability"' in html and 'id="risk_coverage"' in html
    assert "aligned (baseline run)" in html and str(old) in html
    doc = json.loads(paths.comparison.read_text())
    assert doc["comparison"]["baseline_run"] == str(old) and doc["comparison"]["candidate_run"] == str(new)


def test_seed_runs_report_seed_level_statistics(tmp_path):
    run = make_run(tmp_path / "seeds", n=80, seeds=[13, 42, 7], attacks=False)
    paths = build_report(run, tmp_path / "out", resamples=20)
    html = paths.html.read_text()
    doc = json.loads(paths.comparison.read_text())
    assert all(r["basis"] == "seeds" for r in doc["comparison"]["records"])
    ci = doc["comparison"]["settings"].get("ci", "seed-level t interval")
    assert f"interval over seeds ({ci})" in html and "baseline@13" in html
    assert "single seed" not in html


def test_number_formatting_has_no_negative_zero():
    assert fmt(-0.0) == "0.0000" and fmt(-0.00001) == "0.0000" and fmt(-0.25) == "−0.2500"
    assert fmt_delta(-0.00001) == "0.0000" and fmt_delta(0.00001) == "0.0000"
    assert fmt_delta(0.0123) == "+0.0123" and fmt_delta(-0.0123) == "−0.0123"
    assert fmt(None) == "–" and fmt(float("nan")) == "–" and fmt(1234) == "1,234"
    assert fmt_p(0.0004) == "< 0.001" and fmt_p(0.0456) == "0.046"


def _aligneval_imports(package: str) -> dict[str, set[str]]:
    """Module -> the aligneval modules it imports (at any depth of its code), for one package's modules."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    files = {".".join(p.relative_to(root).with_suffix("").parts).removesuffix(".__init__"): p
             for p in (root / package.replace(".", "/")).rglob("*.py")}
    graph = {}
    for name, path in files.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        graph[name] = {t for t in targets if t in files and t != name and not name.startswith(t + ".")}
    return graph


@pytest.mark.parametrize("package", ["aligneval.report", "aligneval.suites", "aligneval.metrics"])
def test_no_import_cycle_and_no_module_over_600_lines(package):
    """Imports inside functions count too: a cycle hidden that way is still a cycle."""
    graph = _aligneval_imports(package)
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> None:
        assert node not in path, f"import cycle: {' -> '.join(path[path.index(node):] + [node])}"
        if node in done:
            return
        for nxt in graph[node]:
            visit(nxt, path + [node])
        done.add(node)

    for module in graph:
        visit(module, [])
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent / package.replace(".", "/")
    sizes = {p.name: len(p.read_text().splitlines()) for p in root.rglob("*.py")}
    assert max(sizes.values()) <= 600, sizes
