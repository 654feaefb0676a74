"""NLTK data the attacks need: find it, build it from local files, say exactly what is missing.

TextAttack crashes at import without NLTK's English stopwords, and the WordNet recipes (pwws, leap)
need WordNet 3.0. aligneval ships the stopwords list and builds WordNet into its own cache from
Debian's `wordnet-base` files (or uses any WordNet nltk already finds). Nothing here downloads.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from aligneval.errors import ResourceError

SHIPPED_NLTK_DATA = Path(__file__).resolve().parent.parent / "resources" / "nltk_data"
DEBIAN_WORDNET = Path("/usr/share/wordnet")
DEBIAN_LEXNAMES_MAN = Path("/usr/share/man/man5/lexnames.5WN.gz")
# what nltk's WordNetCorpusReader opens; index.sense comes from wordnet-sense-index
WORDNET_FILES = tuple(
    f"{kind}.{pos}" for kind in ("data", "index") for pos in ("noun", "verb", "adj", "adv")
) + tuple(f"{pos}.exc" for pos in ("noun", "verb", "adj", "adv")) + ("index.sense",)
LEXNAME_CATEGORY = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}
DEBIAN_HINT = "apt-get install wordnet-base wordnet-sense-index, then run `aligneval attack --setup`"
ONLINE_HINT = "or, online: python -m nltk.downloader -d ~/nltk_data wordnet"


def cache_dir() -> Path:
    """aligneval's user cache: $ALIGNEVAL_CACHE, else ~/.cache/aligneval."""
    root = os.environ.get("ALIGNEVAL_CACHE")
    return Path(root).expanduser() if root else Path("~/.cache/aligneval").expanduser()


def nltk_cache() -> Path:
    return cache_dir() / "nltk_data"


def user_nltk_paths() -> list[str]:
    """The user's own NLTK_DATA entries, in their order (never replaced, only appended to)."""
    raw = os.environ.get("NLTK_DATA", "")
    return [p for p in raw.split(os.pathsep) if p]


def our_nltk_paths() -> list[str]:
    return [str(SHIPPED_NLTK_DATA), str(nltk_cache())]


def nltk_data_value(base: str | None = None) -> str:
    """NLTK_DATA with aligneval's folders appended to `base` (default: the current value)."""
    parts = [p for p in (base if base is not None else os.environ.get("NLTK_DATA", "")).split(os.pathsep) if p]
    parts += [p for p in our_nltk_paths() if p not in parts]
    return os.pathsep.join(parts)


def register_nltk_paths() -> None:
    """Append aligneval's folders to an already imported nltk's search path (idempotent)."""
    import nltk

    for p in our_nltk_paths():
        if p not in nltk.data.path:
            nltk.data.path.append(p)


def _search_paths() -> list[str]:
    import nltk

    paths = list(nltk.data.path)
    for p in user_nltk_paths() + our_nltk_paths():
        if p not in paths:
            paths.append(p)
    return paths


def find_nltk(resource: str) -> str | None:
    """Where nltk finds `resource` (e.g. 'corpora/wordnet') on the user's paths plus ours, or None."""
    import nltk

    try:
        return str(nltk.data.find(resource, paths=_search_paths()))
    except LookupError:
        return None


def debian_wordnet_available() -> bool:
    return all((DEBIAN_WORDNET / f).is_file() for f in WORDNET_FILES) and DEBIAN_LEXNAMES_MAN.is_file()


def lexnames_from_man(text: str) -> str:
    """The `lexnames` file nltk reads ('NN<TAB>pos.name<TAB>category'), from the lexnames(5WN) man page."""
    lines = []
    for line in text.splitlines():
        m = re.match(r"^(\d\d)\t\s*([a-z]+)\.([A-Za-z_]+)\s*(\t|$)", line)
        if m:
            lines.append(f"{m.group(1)}\t{m.group(2)}.{m.group(3)}\t{LEXNAME_CATEGORY.get(m.group(2), 4)}\n")
    return "".join(lines)


def build_wordnet(target: Path | None = None, source: Path = DEBIAN_WORDNET,
                  lexnames_man: Path = DEBIAN_LEXNAMES_MAN) -> Path:
    """Copy (not link: nltk refuses links leaving its folder) Debian's WordNet 3.0 into nltk's layout."""
    missing = [f for f in WORDNET_FILES if not (source / f).is_file()]
    if missing or not lexnames_man.is_file():
        what = ", ".join(missing + ([] if lexnames_man.is_file() else [str(lexnames_man)]))
        raise ResourceError(f"WordNet files missing in {source} ({what}); {DEBIAN_HINT}")
    folder = (target or nltk_cache()) / "corpora" / "wordnet"
    tmp = folder.with_name("wordnet.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in WORDNET_FILES:
        shutil.copyfile(source / name, tmp / name)
    with gzip.open(lexnames_man, "rt", encoding="utf-8", errors="replace") as fh:
        lexnames = lexnames_from_man(fh.read())
    if lexnames.count("\n") < 40:
        raise ResourceError(f"could not read the lexicographer file names from {lexnames_man}")
    (tmp / "lexnames").write_text(lexnames, encoding="utf-8")
    (tmp / "README").write_text(f"WordNet 3.0 copied from {source} (Debian wordnet-base) by aligneval.\n")
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)  # atomic: a half-built folder is never found
    return folder


@dataclass(frozen=True)
class ResourceStatus:
    name: str
    found: str | None  # where it is, or None
    how_to_get: str

    @property
    def ok(self) -> bool:
        return self.found is not None


def stopwords_status() -> ResourceStatus:
    return ResourceStatus("stopwords", find_nltk("corpora/stopwords/english"),
                          f"reinstall aligneval: the list ships in {SHIPPED_NLTK_DATA}")


def wordnet_status() -> ResourceStatus:
    found = find_nltk("corpora/wordnet")
    if found:
        return ResourceStatus("wordnet", found, "")
    if debian_wordnet_available():
        how = "Debian's WordNet files are installed: run `aligneval attack --setup` (or let an attack build it)"
    else:
        how = f"{DEBIAN_HINT} ({ONLINE_HINT})"
    return ResourceStatus("wordnet", None, how)


STATUS = {"stopwords": stopwords_status, "wordnet": wordnet_status}


def status() -> list[ResourceStatus]:
    return [fn() for fn in STATUS.values()]


def obtainable(name: str) -> ResourceStatus | None:
    """None when resource `name` is there or can be built here without the network; else its status."""
    st = STATUS[name]()
    if st.ok or (name == "wordnet" and debian_wordnet_available()):
        return None
    return st


def ensure(name: str) -> str:
    """Path of resource `name`, building WordNet from Debian's files when that is possible."""
    st = STATUS[name]()
    if st.ok:
        return st.found  # type: ignore[return-value]
    if name == "wordnet" and debian_wordnet_available():
        build_wordnet()
        st = STATUS[name]()
        if st.ok:
            return st.found  # type: ignore[return-value]
    raise ResourceError(f"NLTK '{name}' data not found; {st.how_to_get}")


def setup() -> list[ResourceStatus]:
    """`aligneval attack --setup`: build what can be built, then report every resource."""
    if not wordnet_status().ok and debian_wordnet_available():
        build_wordnet()
    return status()
