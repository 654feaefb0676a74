"""The recipe registry: which TextAttack recipes exist, what each needs, whether it can run here.

Offline recipes need nothing (deepwordbug, pruthi, input-reduction) or WordNet (pwws, leap). The
others fetch models or data at build time; without the network they fail with one line naming
what they need, and the rest of the run goes on.

Three recipes tag words with flair's models, read from TextAttack 0.3.11's sources: clare (its
WordMergeMaskedLM tags parts of speech, "upos-fast"), pso (WordSwapHowNet, "upos-fast") and
checklist (WordSwapChangeName/-Location, NER "ner"). The others use no flair model (textfooler,
bae and a2t tag with NLTK: PartOfSpeech's default tagger), so they run with aligneval's flair stand-in.
"""

from __future__ import annotations

import importlib
import os
import socket
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from aligneval.attack import resources
from aligneval.attack.loader import (INSTALL_ATTACK, INSTALL_FLAIR, load_textattack, missing_attack_modules,
                                    no_nltk_downloads, real_flair_installed)
from aligneval.errors import ResourceError
from aligneval.registry import Registry

OFFLINE_VARS = ("ALIGNEVAL_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")
PROBE_HOSTS = (("textattack.s3.amazonaws.com", 443), ("huggingface.co", 443))
USE = "Universal Sentence Encoder (TF Hub)"
COUNTER_FITTED = "counter-fitted word embeddings (TextAttack's S3)"
POS_TAGGER = "NLTK averaged_perceptron_tagger + universal_tagset"
# flair's names for its taggers -> the hub repositories flair downloads them from (flair 0.15.1)
FLAIR_REPOS = {"upos-fast": "flair/upos-english-fast", "ner": "flair/ner-english"}


@dataclass(frozen=True)
class RecipeInfo:
    name: str
    target: str  # "module:Class" with a `build(model_wrapper)` classmethod
    paper: str
    needs: tuple[str, ...] = ()  # local resources (see aligneval.attack.resources.STATUS)
    online: str | None = None  # what it downloads when built; None = runs offline
    flair_model: str | None = None  # the flair tagger it loads while attacking (needs the real flair)


RECIPES: Registry[RecipeInfo] = Registry("attack recipe")
_TA = "textattack.attack_recipes"

for _info in (
    RecipeInfo("deepwordbug", f"{_TA}:DeepWordBugGao2018", "Gao et al. 2018, character edits"),
    RecipeInfo("pruthi", f"{_TA}:Pruthi2019", "Pruthi et al. 2019, keyboard typos"),
    RecipeInfo("input-reduction", f"{_TA}:InputReductionFeng2018", "Feng et al. 2018, word deletion"),
    RecipeInfo("pwws", f"{_TA}:PWWSRen2019", "Ren et al. 2019, WordNet synonyms", needs=("wordnet",)),
    RecipeInfo("leap", f"{_TA}:LEAP2023", "Xiao et al. 2023, WordNet synonyms + PSO", needs=("wordnet",)),
    RecipeInfo("textfooler", f"{_TA}:TextFoolerJin2019", "Jin et al. 2019",
               online=f"{COUNTER_FITTED}, {POS_TAGGER}, {USE}"),
    RecipeInfo("textbugger", f"{_TA}:TextBuggerLi2018", "Li et al. 2018",
               online=f"GloVe neighbour data (TextAttack's S3), {USE}"),
    RecipeInfo("bae", f"{_TA}:BAEGarg2019", "Garg & Ramakrishnan 2019",
               online=f"bert-base-uncased masked LM (HF hub), {USE}"),
    RecipeInfo("bert-attack", f"{_TA}:BERTAttackLi2020", "Li et al. 2020",
               online="bert-base-uncased masked LM (HF hub)"),
    RecipeInfo("clare", f"{_TA}:CLARE2020", "Li et al. 2020",
               online=f"distilroberta-base masked LM (HF hub), {USE}", flair_model="upos-fast"),
    RecipeInfo("a2t", f"{_TA}:A2TYoo2021", "Yoo & Qi 2021",
               online=f"{COUNTER_FITTED}, {POS_TAGGER}, a sentence-BERT encoder (HF hub)"),
    RecipeInfo("checklist", f"{_TA}:CheckList2020", "Ribeiro et al. 2020",
               online="flair NER model (HF hub) and CheckList name/location lists", flair_model="ner"),
    RecipeInfo("kuleshov", f"{_TA}:Kuleshov2017", "Kuleshov et al. 2017",
               online=f"{COUNTER_FITTED}, GPT-2 (HF hub)"),
    RecipeInfo("alzantot", f"{_TA}:GeneticAlgorithmAlzantot2018", "Alzantot et al. 2018",
               online=f"{COUNTER_FITTED}, Google 1-billion-words LM (TextAttack's S3)"),
    RecipeInfo("faster-alzantot", f"{_TA}:FasterGeneticAlgorithmJia2019", "Jia et al. 2019",
               online=f"{COUNTER_FITTED}, Google 1-billion-words LM (TextAttack's S3)"),
    RecipeInfo("pso", f"{_TA}:PSOZang2020", "Zang et al. 2020",
               online=f"HowNet sememes (OpenHowNet), {POS_TAGGER}", flair_model="upos-fast"),
):
    RECIPES.add(_info.name, _info)


@lru_cache(maxsize=1)
def network_available(timeout: float = 2.0) -> bool:
    """False when an offline variable is set or none of the download hosts answers."""
    if any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on") for v in OFFLINE_VARS):
        return False
    for host, port in PROBE_HOSTS:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                return True
        except OSError:
            continue
    return False


def flair_cache_root() -> Path:
    """flair's model cache (flair.cache_root), found without importing flair."""
    return Path(os.environ.get("FLAIR_CACHE_ROOT", Path.home() / ".flair"))


def flair_model_cached(model: str) -> bool:
    """Whether flair's tagger `model` is in flair's cache (where flair's hf_download puts it)."""
    repo = FLAIR_REPOS[model]
    folder = flair_cache_root() / "models" / repo.split("/", 1)[1] / f"models--{repo.replace('/', '--')}"
    return any(folder.glob("snapshots/*/pytorch_model.bin"))


def _flair_reason(name: str, model: str) -> str | None:
    if not real_flair_installed():
        return f"{name} needs flair's '{model}' tagger, and flair is not installed: {INSTALL_FLAIR}"
    if not flair_model_cached(model) and not network_available():
        return (f"{name} needs flair's '{model}' tagger ({FLAIR_REPOS[model]}), not in {flair_cache_root()}: "
                f"load it once online (python -c \"from flair.models import SequenceTagger; "
                f"SequenceTagger.load('{model}')\")")
    return None


def _textattack_reason(name: str) -> str | None:
    missing = missing_attack_modules()
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        return f"{name} needs TextAttack and its requirements (missing: {shown}): {INSTALL_ATTACK}"
    return None


def install_reason(name: str) -> str | None:
    """What must be installed before recipe `name` can run (TextAttack, flair or a flair model), or None."""
    info = RECIPES.get(name)
    return _textattack_reason(name) or (_flair_reason(name, info.flair_model) if info.flair_model else None)


def unavailable_reason(name: str) -> str | None:
    """Why recipe `name` cannot run here (one line), or None when it can. Builds and imports nothing."""
    info = RECIPES.get(name)
    missing = _textattack_reason(name)
    if missing:
        return missing  # nothing else can be checked without NLTK
    reasons = []
    if info.online and not network_available():
        reasons.append(f"{name} needs the network to fetch: {info.online}")
    if info.flair_model:
        reasons.append(_flair_reason(name, info.flair_model))
    for need in info.needs:
        st = resources.obtainable(need)
        if st is not None:
            reasons.append(f"{name} needs NLTK '{need}' data: {st.how_to_get}")
    reasons = [r for r in reasons if r]
    return "; ".join([reasons[0]] + [r.removeprefix(f"{name} ") for r in reasons[1:]]) if reasons else None


def prepare(name: str) -> RecipeInfo:
    """Make recipe `name` runnable (building WordNet when possible) or raise a one-line ResourceError."""
    info = RECIPES.get(name)
    for need in info.needs:
        if resources.obtainable(need) is None:
            resources.ensure(need)
    reason = unavailable_reason(name)
    if reason:
        raise ResourceError(reason)
    return info


def build(name: str, model_wrapper: Any) -> Any:
    """TextAttack's `Attack` for recipe `name` around `model_wrapper` (TextAttack imported lazily here)."""
    info = prepare(name)
    load_textattack()
    module, cls = info.target.split(":")
    with no_nltk_downloads():
        try:
            return getattr(importlib.import_module(module), cls).build(model_wrapper)
        except (LookupError, OSError, ConnectionError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ResourceError(f"{name} could not be built: {first}") from None
