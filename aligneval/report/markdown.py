"""report.md for GitHub: pipe tables plus `plots/*.png`. Texts from data are escaped, not rendered."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aligneval.formatting import MD_SPECIAL, esc, fmt  # noqa: F401 - esc is this module's public helper


def table(columns: list[str], rows: list[list[Any]], numeric: set[int] | None = None) -> str:
    numeric = numeric or set()
    head = "| " + " | ".join(esc(c) for c in columns) + " |"
    sep = "| " + " | ".join("---:" if i in numeric else "---" for i in range(len(columns))) + " |"
    body = ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return "\n".join([head, sep, *body])


def _p_columns(ctx: dict[str, Any]) -> list[str]:
    st = ctx["stats"]
    if st["two_p"]:
        return ["p raw", f"p {({'holm': 'Holm', 'bh': 'BH'}).get(st['adjust'], st['adjust'])}"]
    return ["p"]


def _p_cells(ctx: dict[str, Any], r: dict) -> list[str]:
    return [r["p_raw"] or r["p"], r["p"]] if ctx["stats"]["two_p"] else [r["p"]]


def _metric_cell(r: dict) -> str:
    return f"{r['label']} {r['direction']}".rstrip() + (" (exploratory)" if r["exploratory"] else "")


def _verdict_cell(r: dict) -> str:
    return r["verdict_text"] + (f" ({r['reason']})" if r["reason"] else "")


def render_markdown(ctx: dict[str, Any], plot_dir: str = "plots") -> str:
    b = ctx["baseline"]
    multi = ctx["multi"]
    out = [f"# {esc(ctx['title'])}", ""]
    meta = [f"run `{ctx['run']}`"]
    if ctx.get("baseline_run"):
        meta.append(f"against `{ctx['baseline_run']}`")
    if ctx["spec"].get("name"):
        meta.append(f"spec **{esc(ctx['spec']['name'])}**")
    if ctx["created"]:
        meta.append(f"evaluated {esc(ctx['created'])}")
    out += ["aligneval report · " + " · ".join(meta), ""]
    for w in ctx["warnings"]:
        out += [f"> **Warning:** {esc(w)}", ""]
    if multi:
        out += [table(["twin", "λ", "better", "worse", "no significant difference", "K–Q MMD² vs baseline"],
                      [[t["name"], t["lam_text"], t["counts"]["better"], t["counts"]["worse"],
                        t["counts"]["no-difference"], t["gap_ratio"]] for t in ctx["twins"]], {1, 2, 3, 4, 5}), ""]
    for line in ctx["alignment_lines"]:
        out += [f"> {esc(line)}", ""]
    if ctx["headline"] or multi:
        out += [f"## Headline · {esc(ctx['primary'])}", "", esc(ctx["method_note"]), ""]
        out += [x for n in ctx["notes"] for x in (f"*{esc(n)}*", "")]
        for t in ctx["twins"]:
            if multi:
                out += [f"### {esc(t['name'])} (λ = {esc(t['lam_text'])})", ""]
            k = t["counts"]
            out += [f"**{k['better']} better, {k['worse']} worse, {k['no-difference']} no significant difference** "
                    f"(candidate `{t['name']}` vs baseline `{b}`). {esc(t['bottom_line'])}", ""]
            if t["headline"]:
                out.append(table(["metric", b, t["name"], "Δ", f"{ctx['conf_pct']} CI", *_p_columns(ctx), "verdict"],
                                 [[_metric_cell(r), r["baseline"], r["candidate"], r["delta"], r["ci"],
                                   *_p_cells(ctx, r), _verdict_cell(r)] for r in t["headline"]],
                                 set(range(1, 5 + len(_p_columns(ctx))))))
                out.append("")
    for sec in ctx["sections"]:
        out += [f"## {esc(sec.title)}", ""]
        if sec.intro:
            out += [sec.intro, ""]
        for line in sec.lines:
            out += [esc(line), ""]
        for p in sec.plots:
            out += [f"![{esc(p.alt)}]({plot_dir}/{p.filename})", ""]
        if sec.table:
            out += [table(sec.table["columns"], sec.table["rows"], sec.table.get("numeric")), ""]
    for d in ctx.get("disagreements") or []:
        title = f"## Where the two models disagree · {esc(d['split'])}" + (f" · {esc(d['twin'])}" if multi else "")
        out += [title, "",
                f"{d['count']} of {d['n']} examples ({d['share']}) get different predicted labels: only "
                f"{esc(d['candidate_model'])} is right on {d['candidate_only']}, only {esc(d['baseline_model'])} on "
                f"{d['baseline_only']}. The {d['shown']} most confident disagreements:", ""]
        out += [table(["id", "text", "gold", b, d["twin"]],
                      [[r["id"], r["text"], r["gold"], ("✓ " if r["baseline_right"] else "✗ ") + r["baseline"],
                        ("✓ " if r["candidate_right"] else "✗ ") + r["candidate"]] for r in d["rows"]], {3, 4}), ""]
    if ctx.get("adversarial_examples"):
        out += ["## Adversarial examples", ""]
        out += [table(["model", "recipe", "result", "original", "perturbed"],
                      [[r["model"], r["recipe"], r["result"], r["original"], r["perturbed"]]
                       for r in ctx["adversarial_examples"]]), ""]
    out += ["## All comparisons", ""]
    for t in ctx["twins"]:
        for split, rows in t["by_split"].items():
            out += [f"### {esc(t['name']) + ' · ' if multi else ''}{esc(split)}", ""]
            out += [table(["metric", "suite", b, t["name"], "Δ", f"{ctx['conf_pct']} CI", *_p_columns(ctx), "n",
                           "verdict"],
                          [[_metric_cell(r), r["suite"], r["baseline"], r["candidate"], r["delta"], r["ci"],
                            *_p_cells(ctx, r), r["n"], _verdict_cell(r)] for r in rows],
                          set(range(2, 7 + len(_p_columns(ctx))))), ""]
        if t["detail_rows"]:
            out += [f"{t['detail_rows']} per-layer and per-head alignment rows are in the Alignment section and in "
                    "`comparison.json`.", ""]
    out += ["## Models, data, environment", ""]
    out += [table(["role", "model", "path", "weights sha256", "alignment card"],
                  [[m["role"], m["name"], m["path"], m["sha"], "; ".join(f"{k}: {v}" for k, v in m["card"]) or "–"]
                   for m in ctx["models"]]), ""]
    out += [table(["split", "role", "source", "size", "skipped", "fingerprint"],
                  [[x["split"], x["role"], x["source"], x["size"], x["skipped"], x["fingerprint"]]
                   for x in ctx["data"]], {3, 4}), ""]
    if ctx["environment"]:
        out += [table(["environment", "value"], [list(kv) for kv in ctx["environment"]]), ""]
    if ctx.get("run_settings"):
        out += [table(["run setting", "value"], [list(kv) for kv in ctx["run_settings"]]), ""]
    st = ctx["stats"]
    out += [table(["statistics", "value"],
                  [["intervals", f"{ctx['conf_pct']} {st['ci_seeds'] if ctx['seeds'] else st['ci']}"],
                   ["resamples", f"{fmt(st['resamples'])} (seed {st['seed']})"],
                   ["accuracy test", st["accuracy_test"]], ["multiple comparisons", st["adjust_text"]],
                   *([["minimum n for a verdict", st["min_n"]]] if st["min_n"] is not None else []),
                   ["α", st["alpha"]]]), ""]
    out += ["Generated by aligneval from stored results (records and curves); every number is a record in "
            "`comparison.json`.", ""]
    return "\n".join(out)


def write_markdown(ctx: dict[str, Any], out: Path) -> Path:
    plots = out / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    for sec in ctx["sections"]:
        for p in sec.plots:
            (plots / p.filename).write_bytes(p.png)
    path = out / "report.md"
    path.write_text(render_markdown(ctx), encoding="utf-8")
    return path
