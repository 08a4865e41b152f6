"""drift-verl's Hydra configs (``pkg://recipes``).

Hydra imports this package to read its files, which registers the ``drift:`` section's defaults (built from
:class:`drift_verl.core.config.DriftConfig`, the one place they are written) as the config ``drift_defaults``:
``recipe/common.yaml`` starts its ``drift:`` node from it, so the YAML files set only what differs and every
interpolation (``${drift.gamma}``) and override (``drift.beta=0.2``) finds each key.
"""

from hydra.core.config_store import ConfigStore

from drift_verl.core.config import defaults

ConfigStore.instance().store(name="drift_defaults", node=defaults())
