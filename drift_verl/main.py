"""``python -m drift_verl.main recipe=drift|grpo [task=...] [platform=cpu] [verl overrides...]``: verl's
``ppo_trainer`` config with drift-verl's config groups on top (``recipes/drift_main.yaml``), run by
:func:`drift_verl.integration.job.launch.run` under the job's console (:mod:`drift_verl.integration.job.quiet`: quiet for
the embedded task, verl's own otherwise; set up here, never on import, so verl's entry point keeps its console).
"""

import hydra
from omegaconf import DictConfig

from drift_verl.integration.job.quiet import held_until_chosen, job_console


@hydra.main(config_path="pkg://recipes", config_name="drift_main", version_base=None)
def main(config: DictConfig) -> None:
    with job_console(config):
        from drift_verl.integration.job.launch import run  # imports verl: what it prints goes where the console says

        run(config)


if __name__ == "__main__":
    with held_until_chosen():  # Hydra imports verl to compose the config: its warnings wait for the console's choice
        main()
