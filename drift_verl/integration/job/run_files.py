"""A run's own files in its folder, ``trainer.default_local_dir`` (which a resumed run shares): verl's metrics file
log and the console log.

Why: verl's ``FileLogger`` (``trainer.logger`` with ``file``) writes ``$VERL_FILE_LOGGER_PATH``, else
``./<project_name>/<experiment_name>.jsonl`` under the working directory (inside the package's source folder
when run from the repository root), and opens it with ``"wb"``: a resumed run would erase the metrics of the
attempts before it. So each attempt gets its own file in the run folder, named through verl's own
``VERL_FILE_LOGGER_PATH`` (no verl state is patched): ``metrics.jsonl``, then ``metrics.2.jsonl``,
``metrics.3.jsonl``, ...; :func:`read_run_metrics` joins them in attempt order, a step logged again by a later
attempt (trained again after a resume) taking the later values. A ``VERL_FILE_LOGGER_PATH`` already set is kept.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from omegaconf import OmegaConf, open_dict

ENV = "VERL_FILE_LOGGER_PATH"
METRICS = "metrics.jsonl"
CONSOLE_LOG = "console.log"
_ATTEMPT = re.compile(r"^metrics(?:\.(\d+))?\.jsonl$")


def run_dir(config) -> Path:
    """The run folder: ``trainer.default_local_dir``, absolute (relative to the working directory, as verl does)."""
    return Path(os.path.abspath(str(config.trainer.default_local_dir)))


def metrics_files(folder: Path) -> list[Path]:
    """The run's metrics files, one per attempt, in attempt order."""
    found = [(int(m.group(1) or 1), p) for p in Path(folder).glob("metrics*.jsonl") if (m := _ATTEMPT.match(p.name))]
    return [p for _, p in sorted(found)]


def next_metrics_file(folder: Path) -> Path:
    """The file of a new attempt: ``metrics.jsonl`` for the first, ``metrics.<k>.jsonl`` for the k-th."""
    files = metrics_files(folder)
    if not files:
        return Path(folder) / METRICS
    last = _ATTEMPT.match(files[-1].name).group(1)
    return Path(folder) / f"metrics.{int(last or 1) + 1}.jsonl"


def place_metrics(config, folder: Path) -> Path | None:
    """In the driver, before Ray starts: the attempt's metrics file as ``VERL_FILE_LOGGER_PATH`` for this process
    and every Ray worker of the job (inherited by a cluster this driver starts, and in the runtime environment for
    one it joins). None when the environment already chose a file (kept as it is)."""
    if os.environ.get(ENV):
        return None
    ensure_metrics_path(folder)
    path = Path(os.environ[ENV])
    ray_init = OmegaConf.select(config, "ray_kwargs.ray_init")
    if ray_init is not None:
        with open_dict(ray_init):
            if ray_init.get("runtime_env") is None:
                ray_init.runtime_env = {}
            with open_dict(ray_init.runtime_env):
                if ray_init.runtime_env.get("env_vars") is None:
                    ray_init.runtime_env.env_vars = {}
                ray_init.runtime_env.env_vars[ENV] = str(path)
    return path


def ensure_metrics_path(folder: Path) -> None:
    """In the process that creates verl's tracker: the attempt's file in the run folder unless one was chosen
    (``python -m verl.trainer.main_ppo +recipe=drift`` has no drift-verl driver to choose it)."""
    if not os.environ.get(ENV):
        folder.mkdir(parents=True, exist_ok=True)
        os.environ[ENV] = str(next_metrics_file(folder))


def read_metrics_file(path: Path, steps: dict[int, dict] | None = None) -> dict[int, dict]:
    """verl's file logger output -> {step: metrics} (added to ``steps``). A last line cut short (an attempt killed
    while writing it) is left out."""
    steps = {} if steps is None else steps
    lines = [line for line in Path(path).read_text().splitlines() if line.strip()]
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):
                break
            raise
        steps.setdefault(record["step"], {}).update(record["data"])
    return steps


def read_run_metrics(folder: Path) -> dict[int, dict]:
    """Every attempt's metrics of a run folder, joined in attempt order."""
    steps: dict[int, dict] = {}
    for path in metrics_files(folder):
        read_metrics_file(path, steps)
    return steps
