"""Import TextAttack without its side effects.

At import TextAttack (0.3.11) rewrites HF_HOME/XDG_CACHE_HOME/... when TA_CACHE_DIR is set, sets
TOKENIZERS_PARALLELISM, reconfigures logging (disabling existing loggers), tries six NLTK downloads
and marks them done in its cache, and crashes without NLTK's English stopwords. Here the import
happens once, lazily, with aligneval's NLTK folders appended to the search path, downloads refused,
and the environment, the loggers and TextAttack's "done" flag put back as they were.

TextAttack also imports flair unconditionally, and flair 0.15 needs transformers<5. Only a few
recipes use flair's models (see `aligneval.attack.recipes`), so when flair is not installed a
stand-in `flair` sits in `sys.modules` while TextAttack imports, and is taken out again after. It
never shadows a real flair, is never installed, and fails in one line if a recipe reaches for a tagger.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any, Iterator

from aligneval.attack import resources
from aligneval.errors import ResourceError

log = logging.getLogger("aligneval.attack")
POST_INSTALL_FLAG = "post_install_check_3"
STANDIN_MARK = "__aligneval_flair_stand_in__"
TEXTATTACK_VERSION = "0.3.11"
INSTALL_ATTACK = (f'pip install "aligneval[attack]" && pip install --no-deps textattack=={TEXTATTACK_VERSION} '
                  "(or bash scripts/install.sh)")
INSTALL_FLAIR = ("install flair, which needs transformers<5: bash scripts/install.sh --deps legacy, "
                 'or pip install "aligneval[attack-flair]" "transformers<5"')
# the modules TextAttack imports when `import textattack` runs: its requirements minus flair
# (pyproject's `attack` extra; langdetect comes with flair but TextAttack imports it itself)
TEXTATTACK_IMPORTS = ("textattack", "nltk", "langdetect", "bert_score", "editdistance", "language_tool_python",
                      "lemminflect", "lru", "terminaltables", "word2number", "num2words", "more_itertools",
                      "pinyin", "jieba", "OpenHowNet", "Levenshtein")


def importable(name: str) -> bool:
    """Whether top-level module `name` can be imported, found without importing it (None in
    sys.modules, Python's way of blocking an import, counts as absent)."""
    if name in sys.modules:
        return sys.modules[name] is not None
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def missing_attack_modules() -> list[str]:
    """The modules `import textattack` needs that are not installed."""
    return [name for name in TEXTATTACK_IMPORTS if not importable(name)]


def real_flair_installed() -> bool:
    """True when a real flair is importable (an imported stand-in does not count)."""
    loaded = sys.modules.get("flair")
    if loaded is not None:
        return not getattr(loaded, STANDIN_MARK, False)
    return importable("flair")


class FlairNotInstalled(ResourceError):
    """A recipe reached for one of flair's taggers while only the stand-in is there."""

    def __init__(self, what: str):
        super().__init__(f"{what} needs flair's taggers, and flair is not installed: {INSTALL_FLAIR}")


def _stand_in_modules() -> dict[str, ModuleType]:
    """`flair`, `flair.data` and `flair.models` with just the names TextAttack's imports touch."""

    class Tokenizer:  # TextAttack subclasses it at import (TextAttackFlairTokenizer)
        def tokenize(self, text: str) -> list[str]:
            raise FlairNotInstalled("flair.data.Tokenizer")

    class Sentence:  # built only on the way to a tagger: pos_of_word_index, ner_of_word_index, PartOfSpeech
        def __init__(self, *args: Any, **kwargs: Any):
            raise FlairNotInstalled("this recipe (flair.data.Sentence)")

    class SequenceTagger:
        @classmethod
        def load(cls, model: Any = None, *args: Any, **kwargs: Any) -> Any:
            raise FlairNotInstalled(f"this recipe (flair tagger {model!r})")

    flair = ModuleType("flair", "aligneval's stand-in for flair while TextAttack imports (flair not installed)")
    data = ModuleType("flair.data")
    models = ModuleType("flair.models")
    flair.__path__ = []  # a package, so `from flair.data import ...` resolves through sys.modules
    setattr(flair, STANDIN_MARK, True)
    flair.device = "cpu"  # TextAttack assigns its own device here
    data.Sentence, data.Tokenizer = Sentence, Tokenizer
    models.SequenceTagger = SequenceTagger
    flair.data, flair.models = data, models
    for module in (data, models):
        setattr(module, STANDIN_MARK, True)
    return {"flair": flair, "flair.data": data, "flair.models": models}


@contextmanager
def flair_stand_in() -> Iterator[bool]:
    """While the block runs, a stand-in `flair` when no real one is installed (yields whether it is in).

    The entries leave `sys.modules` afterwards, so a later `import flair` still fails as it should;
    TextAttack's modules keep their reference, and any use of a tagger raises `FlairNotInstalled`.
    """
    if real_flair_installed() or sys.modules.get("flair") is not None:
        yield False
        return
    modules = _stand_in_modules()
    before = {name: sys.modules[name] for name in modules if name in sys.modules}  # e.g. None: blocked
    sys.modules.update(modules)
    try:
        yield True
    finally:
        for name, module in modules.items():
            if sys.modules.get(name) is module:
                del sys.modules[name]
        sys.modules.update(before)


@contextmanager
def no_nltk_downloads() -> Iterator[list[str]]:
    """Make `nltk.download` a no-op (recording what was asked): nothing may be fetched at run time."""
    import nltk

    asked: list[str] = []
    original = nltk.download

    def refuse(info_or_id: Any = None, *args: Any, **kwargs: Any) -> bool:
        asked.append(str(info_or_id))
        return False

    nltk.download = refuse
    try:
        yield asked
    finally:
        nltk.download = original


def _ta_cache_dir() -> Path:
    return Path(os.environ.get("TA_CACHE_DIR", os.path.expanduser("~/.cache/textattack")))


def load_textattack() -> Any:
    """Return the `textattack` module, imported once with the user's environment left intact."""
    if "textattack" in sys.modules:
        resources.register_nltk_paths()
        _quiet_textattack()
        return sys.modules["textattack"]
    missing = missing_attack_modules()
    if missing:
        raise ResourceError(f"attacks need TextAttack and its requirements (missing: {', '.join(missing)}): "
                            f"{INSTALL_ATTACK}")
    saved_env = dict(os.environ)
    saved_disabled = {name: lg.disabled for name, lg in logging.Logger.manager.loggerDict.items()
                      if isinstance(lg, logging.Logger)}
    flag = _ta_cache_dir() / POST_INSTALL_FLAG
    cache_existed, flag_existed = flag.parent.exists(), flag.exists()
    quiet = logging.root.manager.disable
    try:
        # import the libraries that read HF_HOME & co at import time while the env is the user's
        import huggingface_hub  # noqa: F401
        import nltk
        import transformers  # noqa: F401

        resources.register_nltk_paths()
        os.environ["NLTK_DATA"] = resources.nltk_data_value()
        logging.disable(logging.INFO)  # its "Downloading NLTK required packages" lines
        with no_nltk_downloads(), flair_stand_in():
            try:
                import textattack
            except LookupError as err:  # nltk data missing
                raise ResourceError(f"TextAttack could not start: {str(err).strip().splitlines()[0]}; "
                                    f"{resources.stopwords_status().how_to_get}") from None
            except ImportError as err:  # e.g. a real flair that does not import under this transformers
                raise ResourceError(f"TextAttack could not start: {type(err).__name__}: "
                                    f"{str(err).strip().splitlines()[0] if str(err).strip() else err!r}") from None
        del nltk
    finally:
        logging.disable(quiet)
        os.environ.clear()
        os.environ.update(saved_env)
        for name, lg in logging.Logger.manager.loggerDict.items():  # its dictConfig disabled them all
            if isinstance(lg, logging.Logger):
                lg.disabled = saved_disabled.get(name, False)
        if not flag_existed:
            for leftover in (flag, flag.with_name(POST_INSTALL_FLAG + ".lock")):
                leftover.unlink(missing_ok=True)
            if not cache_existed:
                try:
                    flag.parent.rmdir()
                except OSError:
                    pass
    _quiet_textattack()
    return textattack


def _quiet_textattack() -> None:
    for name in ("textattack", "textattack.shared.utils.install"):  # its INFO/WARN chatter per build
        logging.getLogger(name).setLevel(logging.ERROR)


def textattack_cli() -> None:
    """TextAttack's own command line (`textattack ...` with sys.argv), importing with the flair
    stand-in when flair is absent and otherwise untouched: the independent reference the attack
    benchmark and tests compare against, on stacks where TextAttack's flair cannot be installed."""
    with flair_stand_in():
        from textattack.commands.textattack_cli import main
    sys.exit(main())
