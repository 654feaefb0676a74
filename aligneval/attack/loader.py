"""Import TextAttack without its side effects.

At import TextAttack (0.3.11) rewrites HF_HOME/XDG_CACHE_HOME/... when TA_CACHE_DIR is set, sets
TOKENIZERS_PARALLELISM, reconfigures logging (disabling existing loggers), tries six NLTK downloads
and marks them done in its cache, and crashes without NLTK's English stopwords. Here the import
happens once, lazily, with aligneval's NLTK folders appended to the search path, downloads refused,
and the environment, the loggers and TextAttack's "done" flag put back as they were.
"""

from __future__ import annotations

import logging
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from aligneval.attack import resources
from aligneval.errors import ResourceError

log = logging.getLogger("aligneval.attack")
POST_INSTALL_FLAG = "post_install_check_3"


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
        with no_nltk_downloads():
            try:
                import textattack
            except LookupError as err:  # nltk data missing
                raise ResourceError(f"TextAttack could not start: {str(err).strip().splitlines()[0]}; "
                                    f"{resources.stopwords_status().how_to_get}") from None
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
