"""Hydra search-path plugin: lets ``python -m verl.trainer.main_ppo +recipe=drift`` find drift-verl's configs."""

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin


class DriftVerlSearchPathPlugin(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        search_path.append(provider="drift-verl", path="pkg://recipes")
