#!/usr/bin/env bash
# The paper's MetaMathQA runs on one node:
#   bash scripts/launch/metamath.sh RECIPE MODEL GPUS [verl overrides ...]
#   RECIPE: drift | grpo    MODEL: 3b | 7b (Qwen2.5-*-Instruct)    GPUS: 4 | 8
# DATA_DIR (default ./data) holds the files scripts/data/prepare_paper.sh writes; PYTHON picks the interpreter.
set -euo pipefail
usage() { echo "usage: $0 drift|grpo 3b|7b 4|8 [verl overrides ...]" >&2; exit 2; }
[[ $# -ge 3 ]] || usage
recipe=$1 model=$2 gpus=$3
shift 3
[[ $recipe == drift || $recipe == grpo ]] || usage
[[ $model == 3b || $model == 7b ]] || usage
[[ $gpus == 4 || $gpus == 8 ]] || usage
data_dir=$(realpath -m "${DATA_DIR:-data}")  # absolute: Ray workers need not share the launch directory
exec "${PYTHON:-python}" -m drift_verl.main "recipe=$recipe" "task=qwen2.5-${model}_metamath" \
    "trainer.n_gpus_per_node=$gpus" "data_dir=$data_dir" "$@"
