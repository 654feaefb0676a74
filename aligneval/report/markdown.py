"""report.md for GitHub: pipe tables plus `plots/*.png`. Texts from data are escaped, not rendered."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

MD_SPECIAL = str.maketrans({c: f"\\{c}" for c in "\\`*_[]|~"})


def esc(text: Any) -> str:
    """Plain text inside a table cell: HTML entities for <, >, & and backslashes for markdown syntax."""
    s = " ".join(str(text if text is not None else "").split())
    return html.escape(s, quote=False).translate(MD_SPECIAL)


def table(columns: list[str], rows: list[list[Any]], numeric: set[int] | None = None) -> str:
    numeric = numeric or set()
    head = "| " + " | ".join(esc(c) for c in columns) + " |"
    sep = "| " + " | ".join("---:" if i in numeric else "---" for i in range(len(columns))) + " |"
    body = ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return "\n".join([head, sep, *body])


def render_markdown(ctx: dict[str, Any], plot_dir: str = "plots") -> str:
    b, c = ctx["baseline"], ctx["candidate"]
    s = ctx["settings"]
    out = [f"# {esc(c)} vs {esc(b)}", ""]
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
    if ctx["headline"]:
        k = ctx["counts"]
        out += [f"## Headline · {esc(ctx['primary'])}", "",
                f"**{k['better']} better, {k['worse']} worse, {k['no-difference']} no significant difference** "
                f"(candidate `{c}` vs baseline `{b}`). {esc(ctx.get('bottom_line', ''))}", ""]
        interval = ("seed-level t interval" if ctx["seeds"]
                    else f"paired bootstrap interval ({s['resamples']:,} resamples, seed {s['seed']})")
        out += [f"Δ = candidate − baseline on the same examples, {ctx['conf_pct']} {interval}; "
                f"p: {'t-test over seeds' if ctx['seeds'] else 'exact McNemar for accuracy, bootstrap otherwise'}"
                f"{', Holm-adjusted' if s['holm'] else ''}; verdict at α = {s['alpha']} "
                "(↑ higher is better, ↓ lower is better).", ""]
        out.append(table(["metric", b, c, "Δ", f"{ctx['conf_pct']} CI", "p", "verdict"],
                         [[f"{r['label']} {r['direction']}", r["baseline"], r["candidate"], r["delta"], r["ci"],
                           r["p"], r["verdict_text"]] for r in ctx["headline"]], {1, 2, 3, 4, 5}))
        out.append("")
    for sec in ctx["sections"]:
        out += [f"## {esc(sec.title)}", ""]
        if sec.intro:
            out += [sec.intro, ""]
        for p in sec.plots:
            out += [f"![{esc(p.alt)}]({plot_dir}/{p.filename})", ""]
        if sec.table:
            out += [table(sec.table["columns"], sec.table["rows"], sec.table.get("numeric")), ""]
    d = ctx.get("disagreements")
    if d:
        out += [f"## Where the two models disagree · {esc(d['split'])}", "",
                f"{d['count']} of {d['n']} examples ({d['share']}) get different predicted labels: only the "
                f"candidate is right on {d['candidate_only']}, only the baseline on {d['baseline_only']}. "
                f"The {d['shown']} most confident disagreements:", ""]
        out += [table(["id", "text", "gold", b, c],
                      [[r["id"], r["text"], r["gold"], ("✓ " if r["baseline_right"] else "✗ ") + r["baseline"],
                        ("✓ " if r["candidate_right"] else "✗ ") + r["candidate"]] for r in d["rows"]], {3, 4}), ""]
    if ctx.get("adversarial_examples"):
        out += ["## Adversarial examples", ""]
        out += [table(["model", "recipe", "result", "original", "perturbed"],
                      [[r["model"], r["recipe"], r["result"], r["original"], r["perturbed"]]
                       for r in ctx["adversarial_examples"]]), ""]
    out += ["## All comparisons", ""]
    for split, rows in ctx["by_split"].items():
        out += [f"### {esc(split)}", ""]
        out += [table(["metric", "suite", b, c, "Δ", f"{ctx['conf_pct']} CI", "p", "n", "verdict"],
                      [[f"{r['label']} {r['direction']}", r["suite"], r["baseline"], r["candidate"], r["delta"],
                        r["ci"], r["p"], r["n"], r["verdict_text"]] for r in rows], {2, 3, 4, 5, 6, 7}), ""]
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
    out += ["Generated by aligneval from stored results and predictions; every number is a record in "
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
