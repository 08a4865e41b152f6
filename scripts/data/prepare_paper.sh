#!/usr/bin/env bash
# Writes the files the metamath paper tasks read (recipes/paper/metamath.yaml) into DATA_DIR (default ./data):
# from the Hugging Face hub (needs a network), or from local copies named by METAMATHQA, MATH500, GSM8K_TEST
# (.jsonl/.json/.parquet). PYTHON picks the interpreter (default: python).
set -euo pipefail
out=${DATA_DIR:-data}
prepare() { "${PYTHON:-python}" -m drift_verl.data_prep "$@"; }
prepare metamathqa --input "${METAMATHQA:-meta-math/MetaMathQA}" --output "$out/metamathqa_math.parquet"
prepare math500 --input "${MATH500:-HuggingFaceH4/MATH-500}" --output "$out/math500.parquet"
prepare gsm8k --input "${GSM8K_TEST:-openai/gsm8k}" --split test --output "$out/gsm8k_test.parquet"
