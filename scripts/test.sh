#!/usr/bin/env bash
# Install (idempotent) and run the whole test suite, end-to-end tests included.
# pytest's exit code 5 ("no tests collected") is turned into a failure: an empty run must never pass.
set -uo pipefail
cd "$(dirname "$0")/.."
# every timing needs its machine: the CPU model and the vector extensions verl's and vLLM's CPU kernels use
echo "scripts/test.sh: $(nproc) cores, $(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1);" \
  "$(grep -o -w -E 'avx2|avx512f|amx_tile' /proc/cpuinfo 2>/dev/null | sort -u | tr '\n' ' ')"
bash scripts/setup.sh "${DRIFT_TARGET:-cpu}" || exit 1
.venv/bin/python -m pytest tests "$@"
rc=$?
if [ "$rc" -eq 5 ]; then echo "scripts/test.sh: pytest collected no tests" >&2; exit 1; fi
exit "$rc"
