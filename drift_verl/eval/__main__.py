"""``python -m drift_verl.eval``: see :mod:`drift_verl.eval.evaluate`."""

from drift_verl.eval.evaluate import main

main()
