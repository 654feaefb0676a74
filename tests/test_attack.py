"""Unit tests of the attack package's pure parts: resources, registry, selection, summary, log."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from aligneval.attack import checkpoint, recipes, resources, selection, summary
from aligneval.errors import DataError, ResourceError, UsageError

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- resources

def test_shipped_stopwords_are_nltks_english_list():
    words = (resources.SHIPPED_NLTK_DATA / "corpora" / "stopwords" / "english").read_text().split("\n")
    words = [w for w in words if w]
    assert len(words) == 179 == len(set(words))
    assert {"i", "ourselves", "mightn't", "wouldn't", "should've", "ma"} <= set(words)
    # nltk's own reader reads it from the shipped folder, once that folder is on nltk's path
    from nltk.corpus.reader import StopwordsCorpusReader

    resources.register_nltk_paths()
    reader = StopwordsCorpusReader(str(resources.SHIPPED_NLTK_DATA / "corpora" / "stopwords"), ["english"])
    assert reader.words("english") == words


def test_nltk_data_value_appends_never_replaces(monkeypatch, tmp_path):
    monkeypatch.setenv("NLTK_DATA", f"/mine/a{os.pathsep}/mine/b")
    monkeypatch.setenv("ALIGNEVAL_CACHE", str(tmp_path))
    parts = resources.nltk_data_value().split(os.pathsep)
    assert parts[:2] == ["/mine/a", "/mine/b"]
    assert parts[2:] == [str(resources.SHIPPED_NLTK_DATA), str(tmp_path / "nltk_data")]
    assert resources.nltk_data_value(resources.nltk_data_value()) == resources.nltk_data_value()  # idempotent


def test_lexnames_from_man_page_text():
    man = ".TH lexnames 5WN\n00\tadj.all\tall adjective clusters\n03\tnoun.Tops\tunique beginner\n" \
          "18\tnoun.person   \tnouns denoting people\n29\tverb.body\tgrooming\n02\tadv.all\tall adverbs\n" \
          "not a line\n"
    assert resources.lexnames_from_man(man) == (
        "00\tadj.all\t3\n03\tnoun.Tops\t1\n18\tnoun.person\t1\n29\tverb.body\t2\n02\tadv.all\t4\n")


def _fake_debian(tmp_path: Path) -> tuple[Path, Path]:
    src = tmp_path / "wn"
    src.mkdir()
    for name in resources.WORDNET_FILES:
        (src / name).write_text(f"content of {name}\n")
    man = tmp_path / "lexnames.5WN.gz"
    lines = "".join(f"{i:02d}\tnoun.n{chr(97 + i % 26)}\tdesc\n" for i in range(45))
    with gzip.open(man, "wt") as fh:
        fh.write(lines)
    return src, man


def test_build_wordnet_copies_files_not_links(tmp_path):
    src, man = _fake_debian(tmp_path)
    folder = resources.build_wordnet(tmp_path / "out", source=src, lexnames_man=man)
    assert folder == tmp_path / "out" / "corpora" / "wordnet"
    for name in resources.WORDNET_FILES:
        assert not (folder / name).is_symlink()
        assert (folder / name).read_text() == f"content of {name}\n"
    lex = (folder / "lexnames").read_text().splitlines()
    assert len(lex) == 45 and lex[0] == "00\tnoun.na\t1"
    assert not (folder.parent / "wordnet.partial").exists()


def test_build_wordnet_names_missing_files(tmp_path):
    src, man = _fake_debian(tmp_path)
    (src / "index.sense").unlink()
    with pytest.raises(ResourceError, match=r"index\.sense.*apt-get install wordnet-base wordnet-sense-index"):
        resources.build_wordnet(tmp_path / "out", source=src, lexnames_man=man)


@pytest.mark.filterwarnings("ignore:The multilingual functions")
@pytest.mark.skipif(not resources.debian_wordnet_available(), reason="Debian WordNet not installed")
def test_real_wordnet_built_from_debian_reads_with_nltk(tmp_path, monkeypatch):
    import nltk
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    target = tmp_path / "nltk_data"
    resources.build_wordnet(target)
    monkeypatch.setattr(nltk.data, "path", list(nltk.data.path) + [str(target)])
    wn = WordNetCorpusReader(str(target / "corpora" / "wordnet"), None)
    assert "good.a.01" in {s.name() for s in wn.synsets("good")}
    assert wn.synset("dog.n.01").lexname() == "noun.animal"
    assert "happy" in {l.name() for s in wn.synsets("glad") for l in s.lemmas()}


def test_status_says_how_to_get_wordnet(monkeypatch, tmp_path):
    monkeypatch.setenv("ALIGNEVAL_CACHE", str(tmp_path))
    monkeypatch.setattr(resources, "find_nltk", lambda name: None)
    monkeypatch.setattr(resources, "debian_wordnet_available", lambda: True)
    assert recipes.unavailable_reason("pwws") is None  # buildable from Debian's files: it will be built
    monkeypatch.setattr(resources, "debian_wordnet_available", lambda: False)
    st = resources.wordnet_status()
    assert not st.ok and "apt-get install wordnet-base wordnet-sense-index" in st.how_to_get
    with pytest.raises(ResourceError, match="NLTK 'wordnet' data not found"):
        resources.ensure("wordnet")
    # recipes needing it say so in one line, the others still run
    assert "pwws needs NLTK 'wordnet'" in recipes.unavailable_reason("pwws")
    assert recipes.unavailable_reason("deepwordbug") is None


# ---------------------------------------------------------------- recipes

def test_recipe_registry_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    recipes.network_available.cache_clear()
    try:
        assert {"deepwordbug", "pruthi", "input-reduction", "pwws", "leap"} <= set(recipes.RECIPES.names())
        for name in ("textfooler", "textbugger", "bae", "bert-attack", "clare", "a2t", "checklist",
                     "kuleshov", "alzantot", "faster-alzantot", "pso"):
            reason = recipes.unavailable_reason(name)
            assert reason and reason.startswith(f"{name} needs the network") and "\n" not in reason
            with pytest.raises(ResourceError):
                recipes.prepare(name)
        for name in ("deepwordbug", "pruthi", "input-reduction"):
            assert recipes.unavailable_reason(name) is None
        with pytest.raises(UsageError, match="did you mean 'deepwordbug'"):
            recipes.RECIPES.get("deepwordbugg")
    finally:
        recipes.network_available.cache_clear()


def test_registry_targets_are_textattacks_recipes():
    """Our names map to the same classes as TextAttack's own CLI names (read from its source)."""
    import importlib.util

    spec = importlib.util.find_spec("textattack")
    text = (Path(spec.origin).parent / "attack_args.py").read_text()
    for name, info in recipes.RECIPES.items():
        module, cls = info.target.split(":")
        assert f'"{name}": "{module}.{cls}"' in text


# ---------------------------------------------------------------- selection

def test_selection_correct_by_all_prefix():
    ids = [f"e{i}" for i in range(20)]
    rng = np.random.default_rng(1)
    correct = {"a": rng.random(20) < 0.8, "b": rng.random(20) < 0.7}
    sel = selection.choose(ids, correct, 5, seed=3)
    both = {ids[i] for i in range(20) if correct["a"][i] and correct["b"][i]}
    assert len(sel.headline_ids) == 5 and set(sel.headline_ids) <= both
    order = [ids[i] for i in np.random.default_rng(3).permutation(20)]
    assert sel.attack_ids == order[: len(sel.attack_ids)]  # a prefix of the seeded permutation
    assert sel.attack_ids[-1] in both  # it stops at the 5th correct-by-all id
    assert sel.headline_ids == [i for i in sel.attack_ids if i in both]
    assert selection.choose(ids, correct, 5, seed=3) == sel  # deterministic
    assert sel.pool == len(both)


def test_selection_all_mode_and_errors():
    ids = [str(i) for i in range(10)]
    sel = selection.choose(ids, None, 4, seed=0, mode="all")
    assert sel.attack_ids == sel.headline_ids and len(sel.attack_ids) == 4
    assert sorted(selection.choose(ids, None, None, 0, "all").attack_ids) == sorted(ids)
    with pytest.raises(UsageError):
        selection.choose(ids, None, 4, 0, mode="some")
    with pytest.raises(DataError, match="no example is classified correctly"):
        selection.choose(ids, {"a": np.zeros(10, bool)}, 4, 0)


# ---------------------------------------------------------------- summary

def _row(i, outcome, queries, pct=0.0):
    return {"id": i, "outcome": outcome, "num_queries": queries, "perturbed_word_pct": pct}


def test_summary_hand_computed():
    rows = [_row("a", "succeeded", 10, 20.0), _row("b", "succeeded", 30, 40.0), _row("c", "failed", 50),
            _row("d", "skipped", 1), _row("e", "failed", 70)]
    recs = {r.metric: r for r in summary.scope_records(rows, ["a", "b", "c", "d", "e"], prefix="deepwordbug",
                                                       split="test", model="m", extra={}, scope_note="x")}
    assert recs["deepwordbug:accuracy_under_attack"].value == pytest.approx(2 / 5)
    assert recs["deepwordbug:accuracy_under_attack"].n == 5
    assert recs["deepwordbug:attack_success_rate"].value == pytest.approx(2 / 4)
    assert recs["deepwordbug:attack_success_rate"].n == 4
    assert "skipped excluded" in recs["deepwordbug:attack_success_rate"].extra["denominator"]
    assert [recs[f"deepwordbug:{o}"].value for o in ("succeeded", "failed", "skipped")] == [2, 2, 1]
    assert recs["deepwordbug:perturbed_word_pct"].value == pytest.approx(30.0)
    assert recs["deepwordbug:perturbed_word_pct"].n == 2
    assert recs["deepwordbug:mean_queries"].value == pytest.approx((10 + 30 + 50 + 70) / 4)
    assert all(r.basis == "attack" and r.suite == "adversarial" for r in recs.values())
    # a subset scope uses only its ids; a missing id makes the scope incomplete
    sub = {r.metric: r for r in summary.scope_records(rows, ["a", "c", "z"], prefix="p", split="t", model="m",
                                                      extra={}, scope_note="x")}
    assert sub["p:accuracy_under_attack"].value == pytest.approx(1 / 2)
    assert sub["p:accuracy_under_attack"].extra["complete"] is False
    assert sub["p:accuracy_under_attack"].extra["not_attacked"] == 1


# ---------------------------------------------------------------- checkpoint

def test_checkpoint_resume_cut_line_and_stale(tmp_path):
    path = tmp_path / "attacks" / "m" / "deepwordbug.jsonl"
    header = checkpoint.make_header(recipe="deepwordbug", query_budget=200, seed=0)
    assert checkpoint.read(path, header) == ({}, "new")
    with checkpoint.Appender(path, header) as out:
        out.write({"id": "a", "outcome": "failed", "original": "<script>alert(1)</script>"})
        out.write({"id": "b", "outcome": "succeeded"})
    with open(path, "a") as fh:
        fh.write('{"kind": "result", "id": "c", "outc')  # killed mid-line
    rows, state = checkpoint.read(path, header)
    assert state == "resumed" and list(rows) == ["a", "b"]
    assert rows["a"]["original"] == "<script>alert(1)</script>"
    assert path.read_text().endswith("\n") and '"c"' not in path.read_text()
    with checkpoint.Appender(path, header) as out:  # appending after the cut line: a clean file
        out.write({"id": "c", "outcome": "skipped"})
    assert list(checkpoint.read(path, header)[0]) == ["a", "b", "c"]
    other = dict(header, query_budget=100)
    assert checkpoint.read(path, other) == ({}, "stale")
    assert not path.exists() and path.with_name("deepwordbug.jsonl.stale").exists()


# ---------------------------------------------------------------- settings and suite registration

def test_settings_validation():
    from aligneval.attack.runner import AttackSettings

    s = AttackSettings.from_dict({"recipes": "pwws", "num_examples": 3})
    assert s.recipes == ("pwws",)
    with pytest.raises(UsageError, match="did you mean 'query_budget'"):
        AttackSettings.from_dict({"query_budgets": 3})
    with pytest.raises(UsageError, match="did you mean 'pwws'"):
        AttackSettings.from_dict({"recipes": ["pwwz"]})
    with pytest.raises(UsageError):
        AttackSettings.from_dict({"query_budget": 0})


def test_suite_registered_with_defaults_and_validation():
    from aligneval.suites import get_suite

    info = get_suite("adversarial")
    assert info.needs_models
    assert info.defaults["recipes"] == ["deepwordbug"] and info.defaults["query_budget"] == 200
    assert info.defaults["examples"] == "correct-by-all"
    info.validate({**info.defaults, "recipes": ["pwws"]}, {"test": "test"})
    with pytest.raises(UsageError, match="did you mean 'test'"):
        info.validate({**info.defaults, "split": "tset"}, {"test": "test"})
    with pytest.raises(UsageError, match="unknown attack recipe"):
        info.validate({**info.defaults, "recipes": ["nope"]}, {"test": "test"})


def test_commands_module_imports_no_heavy_library():
    code = ("import sys, aligneval.commands.attack, aligneval.suites.adversarial, aligneval.attack.recipes; "
            "print([m for m in ('torch', 'textattack', 'transformers', 'nltk') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_textattack_import_leaves_environment_alone(tmp_path):
    """TA_CACHE_DIR makes TextAttack rewrite HF_HOME & co and it tries NLTK downloads: not with us."""
    code = r"""
import json, logging, os
logging.getLogger("user.logger")
before = dict(os.environ)
from aligneval.attack.loader import load_textattack
ta = load_textattack()
import nltk
print(json.dumps({"same_env": dict(os.environ) == before, "hf_home": os.environ.get("HF_HOME"),
                  "user_logger_disabled": logging.getLogger("user.logger").disabled,
                  "paths": nltk.data.path, "ta": ta.__name__}))
"""
    home = tmp_path / "home"
    home.mkdir()
    env = dict(os.environ, HOME=str(home), TA_CACHE_DIR=str(tmp_path / "ta"), HF_HOME=str(tmp_path / "hf"),
               NLTK_DATA=str(tmp_path / "mine"), ALIGNEVAL_CACHE=str(tmp_path / "cache"), HF_HUB_OFFLINE="1")
    env.pop("XDG_CACHE_HOME", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["same_env"] and got["hf_home"] == str(tmp_path / "hf")
    assert not got["user_logger_disabled"]
    assert got["paths"][0] == str(tmp_path / "mine")  # the user's folder first, ours appended
    assert got["paths"][-2:] == [str(resources.SHIPPED_NLTK_DATA), str(tmp_path / "cache" / "nltk_data")]
    assert not (tmp_path / "ta" / "post_install_check_3").exists()  # no false "downloads done" flag
    assert "Downloading NLTK" not in out.stderr
