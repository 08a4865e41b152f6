#!/usr/bin/env python
"""Convert a dataset to verl parquet in the paper's prompt format: ``python -m drift_verl.data_prep`` (see there)."""

import sys

from drift_verl.data_prep import main

if __name__ == "__main__":
    sys.exit(main())
