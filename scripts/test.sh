#!/usr/bin/env bash
# Install (idempotent) and run the whole test suite, end-to-end tests included.
# pytest's exit code 5 ("no tests collected") is turned into a failure: an empty run must never pass.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh "${DRIFT_TARGET:-cpu}" || exit 1
.venv/bin/python -m pytest tests "$@"
rc=$?
if [ "$rc" -eq 5 ]; then echo "scripts/test.sh: pytest collected no tests" >&2; exit 1; fi
exit "$rc"
