"""TextAttack without flair: the loader's stand-in (never shadowing a real flair), the recipe status
(`attack --list`, `env --json`) with and without the attack requirements, and the one-line error for a
tokenizer saved by a newer transformers. Absence is simulated in a subprocess the way Python blocks an
import (`sys.modules[name] = None`); presence of a real flair by a package on the path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from aligneval.attack import loader, recipes
from aligneval.errors import ArtifactError

ROOT = Path(__file__).resolve().parents[1]
TOKENIZER5 = ROOT / "tests" / "data" / "tokenizer-saved-by-transformers5"
FLAIR_RECIPES = {"clare", "pso", "checklist"}  # read from TextAttack 0.3.11's sources (recipes.py docstring)


def _run(code: str, tmp_path: Path, block: tuple[str, ...] = (), extra_path: Path | None = None,
         **env_extra: str) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter with the modules in `block` made unimportable."""
    prelude = "import sys\n" + "".join(f"sys.modules[{name!r}] = None\n" for name in block)
    env = dict(os.environ, HF_HUB_OFFLINE="1", ALIGNEVAL_CACHE=str(tmp_path / "cache"),
               FLAIR_CACHE_ROOT=str(tmp_path / "flair-cache"), **env_extra)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT)] + ([str(extra_path)] if extra_path else []) + [p for p in [os.environ.get("PYTHONPATH")] if p])
    return subprocess.run([sys.executable, "-c", prelude + code], env=env, capture_output=True, text=True,
                          cwd=tmp_path, timeout=300)


def _fake_real_flair(tmp_path: Path) -> Path:
    """A package named flair on the path: what the stand-in must never replace."""
    site = tmp_path / "site"
    (site / "flair").mkdir(parents=True)
    (site / "flair" / "__init__.py").write_text("REAL = True\n")
    return site


# ---------------------------------------------------------------- the stand-in

def test_stand_in_never_shadows_a_real_flair(tmp_path):
    code = """
import flair
from aligneval.attack.loader import flair_stand_in, real_flair_installed
assert real_flair_installed()
with flair_stand_in() as active:
    assert active is False and sys.modules["flair"] is flair and flair.REAL
# not yet imported: found on the path, still left alone
del sys.modules["flair"]
with flair_stand_in() as active:
    import flair as again
    assert active is False and again.REAL
print("ok")
"""
    out = _run(code, tmp_path, extra_path=_fake_real_flair(tmp_path))
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_stand_in_only_while_the_block_runs_and_fails_in_one_line_on_use(tmp_path):
    code = """
from aligneval.attack.loader import FlairNotInstalled, flair_stand_in, real_flair_installed
assert not real_flair_installed()
with flair_stand_in() as active:
    import flair
    from flair.data import Sentence, Tokenizer
    from flair.models import SequenceTagger
    assert active and flair.data.Tokenizer is Tokenizer
    flair.device = "cpu"
    class Sub(Tokenizer):  # what TextAttack does at import
        pass
    errors = []
    for use in (lambda: Sentence("a b"), lambda: SequenceTagger.load("upos-fast")):
        try:
            use()
        except FlairNotInstalled as err:
            errors.append((err.exit_code, err.message))
assert sys.modules.get("flair", "gone") is None  # the block that was there is back
try:
    import flair
    raise SystemExit("flair still importable")
except ImportError:
    pass
print(json.dumps(errors))
"""
    out = _run("import json\n" + code, tmp_path, block=("flair",))
    assert out.returncode == 0, out.stderr[-2000:]
    errors = json.loads(out.stdout.strip().splitlines()[-1])
    assert [code for code, _ in errors] == [5, 5]
    for _, message in errors:
        assert "\n" not in message and "flair is not installed" in message
        assert "scripts/install.sh --deps legacy" in message


@pytest.mark.skipif(loader.missing_attack_modules() != [], reason="TextAttack's requirements are not installed")
def test_textattack_imports_and_builds_deepwordbug_without_flair(tmp_path):
    """TextAttack imports under the stand-in, keeps working for a flair-free recipe, and a part-of-speech
    lookup (what clare, pso, checklist do) stops with the one-line error."""
    code = """
from aligneval.attack.loader import STANDIN_MARK, FlairNotInstalled, load_textattack
ta = load_textattack()
strings = sys.modules["textattack.shared.utils.strings"]
assert getattr(strings.flair, STANDIN_MARK, False)
assert sys.modules.get("flair", "gone") is None  # out of sys.modules again: our block is back
from transformers import AutoModelForSequenceClassification, AutoTokenizer
from aligneval.attack import recipes
from tests.tiny import make_tiny_model
folder = make_tiny_model(MODEL_DIR)
wrapper = ta.models.wrappers.HuggingFaceModelWrapper(AutoModelForSequenceClassification.from_pretrained(folder),
                                                     AutoTokenizer.from_pretrained(folder))
attack = recipes.build("deepwordbug", wrapper)
text = ta.shared.AttackedText("the film is good")
assert len(attack.transformation(text)) > 0
try:
    text.pos_of_word_index(1)
    print("no error")
except FlairNotInstalled as err:
    print(err.exit_code, err.message)
"""
    out = _run(f"MODEL_DIR = {str(tmp_path / 'model')!r}\n" + code, tmp_path, block=("flair",))
    assert out.returncode == 0, out.stderr[-3000:]
    last = out.stdout.strip().splitlines()[-1]
    assert last.startswith("5 ") and "flair is not installed" in last


# ---------------------------------------------------------------- recipe status

def _status_code() -> str:
    return """
from aligneval.attack import recipes
print(json.dumps({name: recipes.unavailable_reason(name) for name in recipes.RECIPES.names()}))
"""


@pytest.mark.skipif(loader.missing_attack_modules() != [], reason="TextAttack's requirements are not installed")
def test_recipe_status_with_and_without_flair(tmp_path):
    # flair absent: exactly the recipes that use flair's taggers say so, in one line, with what to install
    out = _run("import json\n" + _status_code(), tmp_path, block=("flair",))
    assert out.returncode == 0, out.stderr[-2000:]
    status = json.loads(out.stdout.strip().splitlines()[-1])
    for name, reason in status.items():
        says_flair = reason is not None and "flair is not installed" in reason
        assert says_flair == (name in FLAIR_RECIPES), (name, reason)
        assert reason is None or "\n" not in reason
    assert status["clare"].startswith("clare needs the network")  # offline: both reasons, network first
    assert "scripts/install.sh --deps legacy" in status["pso"]
    for name in ("deepwordbug", "pruthi", "input-reduction"):
        assert status[name] is None

    # a real flair without its model, offline: the model is named, with how to fetch it
    site = _fake_real_flair(tmp_path)
    out = _run("import json\n" + _status_code(), tmp_path, extra_path=site)
    status = json.loads(out.stdout.strip().splitlines()[-1])
    assert "'upos-fast' tagger (flair/upos-english-fast)" in status["pso"]
    assert "'ner' tagger (flair/ner-english)" in status["checklist"]
    # ... and once the model sits where flair's hf_download puts it, that reason goes
    snap = tmp_path / "flair-cache" / "models" / "upos-english-fast" / "models--flair--upos-english-fast" / "snapshots" / "abc"
    snap.mkdir(parents=True)
    (snap / "pytorch_model.bin").write_bytes(b"x")
    out = _run("import json\n" + _status_code(), tmp_path, extra_path=site)
    status = json.loads(out.stdout.strip().splitlines()[-1])
    assert "upos-fast" not in status["pso"] and status["pso"].startswith("pso needs the network")
    assert "upos-fast" not in status["clare"] and "ner" in status["checklist"]


@pytest.mark.skipif(loader.missing_attack_modules() != [], reason="TextAttack's requirements are not installed")
def test_attack_list_and_a_flair_recipe_exit_5(tmp_path):
    out = _run("from aligneval.cli import main; sys.exit(main(['attack', '--list']))", tmp_path, block=("flair",))
    assert out.returncode == 0, out.stderr[-2000:]
    assert "flair not installed" in out.stdout
    rows = {line.split("│")[1].strip(): line for line in out.stdout.splitlines() if line.count("│") >= 4}
    assert "yes" in rows["deepwordbug"] and "no" in rows["clare"]
    data = tmp_path / "d.csv"
    data.write_text("text,label\na,0\nb,1\n")
    out = _run(f"from aligneval.cli import main; sys.exit(main(['attack', '-m', 'm={tmp_path}', '-d', '{data}', "
               f"'-r', 'deepwordbug', '-r', 'pso', '-o', '{tmp_path / 'out'}']))", tmp_path, block=("flair",))
    assert out.returncode == 5, out.stderr[-2000:]
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "pso needs flair's 'upos-fast' tagger, and flair is not installed" in lines[0]
    assert not (tmp_path / "out").exists()  # nothing ran


def test_env_and_list_without_attack_requirements(tmp_path):
    """No NLTK, no TextAttack: `env` and `attack --list` still work and say what to install; an attack
    stops with exit 5 and the install command."""
    code = """
import contextlib, io
from aligneval.cli import main
buf = io.StringIO()
with contextlib.redirect_stdout(buf):
    codes = [main(["env", "--json"])]
info = json.loads(buf.getvalue())
with contextlib.redirect_stdout(io.StringIO()) as text:
    codes += [main(["env"]), main(["attack", "--list"])]
print(json.dumps({"codes": codes, "attack": info["attack"], "recipes": info["recipes"],
                  "nltk_loaded": "nltk" in [m for m, v in sys.modules.items() if v is not None],
                  "text": text.getvalue()}))
"""
    out = _run("import json\n" + code, tmp_path, block=("nltk", "textattack"))
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["codes"] == [0, 0, 0]
    assert {"nltk", "textattack"} <= set(got["attack"]["missing"])
    assert got["attack"]["install"] == loader.INSTALL_ATTACK
    assert set(got["recipes"]) == set(recipes.RECIPES.names())
    for name, reason in got["recipes"].items():
        assert reason.startswith(f"{name} needs TextAttack") and loader.INSTALL_ATTACK in reason
    assert not got["nltk_loaded"]
    assert "attacks     need" in got["text"] and "TextAttack cannot start here" in got["text"]
    data = tmp_path / "d.csv"
    data.write_text("text,label\na,0\nb,1\n")
    out = _run(f"from aligneval.cli import main; sys.exit(main(['attack', '-m', 'm={tmp_path}', '-d', '{data}']))",
               tmp_path, block=("nltk", "textattack"))
    assert out.returncode == 5
    assert "deepwordbug needs TextAttack" in out.stderr and loader.INSTALL_ATTACK in out.stderr


def test_load_textattack_without_requirements_is_a_resource_error(tmp_path):
    out = _run("from aligneval.attack.loader import load_textattack\n"
               "try:\n    load_textattack()\nexcept Exception as err:\n    print(type(err).__name__, err.exit_code)",
               tmp_path, block=("nltk",))
    assert out.stdout.strip() == "ResourceError 5", out.stderr[-2000:]


# ---------------------------------------------------------------- a tokenizer from a newer transformers

def test_tokenizer_saved_by_transformers5():
    """The fixture was saved by transformers 5.23.0 (tokenizer class TokenizersBackend). Under 4.x
    transformers itself cannot load it and aligneval says why in one line (exit 3); under 5.x it loads."""
    import transformers
    from transformers import AutoTokenizer

    from aligneval.predict import load_model
    from aligneval.versions import check_tokenizer_not_newer, newer_tokenizer_message

    if int(transformers.__version__.split(".")[0]) >= 5:
        assert newer_tokenizer_message(TOKENIZER5) is None
        tok = AutoTokenizer.from_pretrained(TOKENIZER5)
        assert tok("the film is not good")["input_ids"] == [4, 5, 6, 9, 7]
        return
    with pytest.raises(ValueError, match="TokenizersBackend"):  # transformers' own verdict
        AutoTokenizer.from_pretrained(TOKENIZER5)
    with pytest.raises(ArtifactError) as err:
        check_tokenizer_not_newer(TOKENIZER5)
    assert err.value.exit_code == 3 and "\n" not in err.value.message
    assert "saved by transformers 5.23.0" in err.value.message
    assert f"transformers {transformers.__version__} here" in err.value.message
    assert 'pip install "transformers>=5"' in err.value.message
    with pytest.raises(ArtifactError, match="saved by transformers 5.23.0"):
        load_model(TOKENIZER5)


def test_newer_tokenizer_message_only_for_unknown_classes_from_newer_versions(tmp_path):
    import transformers

    major = int(transformers.__version__.split(".")[0])
    from aligneval.versions import newer_tokenizer_message

    def folder(name: str, cls: str, saved: str | None, **extra) -> Path:
        f = tmp_path / name
        f.mkdir()
        (f / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": cls, **extra}))
        if saved:
            (f / "config.json").write_text(json.dumps({"model_type": "bert", "transformers_version": saved}))
        return f

    assert newer_tokenizer_message(folder("known", "BertTokenizer", f"{major + 1}.0.0")) is None
    assert newer_tokenizer_message(folder("older", "GoneTokenizer", f"{major - 1}.0.0")) is None
    assert newer_tokenizer_message(folder("remote", "MyTokenizer", f"{major + 1}.0.0", auto_map={"x": "y"})) is None
    msg = newer_tokenizer_message(folder("newer", "FutureTokenizer", f"{major + 1}.2.0"))
    assert msg and f"saved by transformers {major + 1}.2.0" in msg and f'"transformers>={major + 1}"' in msg
    assert newer_tokenizer_message(tmp_path / "no-such-folder") is None
