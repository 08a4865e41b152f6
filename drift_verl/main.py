"""``python -m drift_verl.main recipe=drift|grpo [task=...] [platform=cpu] [verl overrides...]``: verl's
``ppo_trainer`` config with drift-verl's config groups on top (``recipes/drift_main.yaml``), run by
:func:`drift_verl.integration.launch.run`.
"""

import hydra
from omegaconf import DictConfig

from drift_verl.integration.launch import run


@hydra.main(config_path="pkg://recipes", config_name="drift_main", version_base=None)
def main(config: DictConfig) -> None:
    run(config)


if __name__ == "__main__":
    main()
