"""Named run configs: the embedded demos, the test sizes and the paper's settings.

Each preset is a YAML file in this folder, ``NAME.yaml``, of the same form as a user's config file
(it validates as a :class:`~elm_train.config.RunConfig`); a derived one starts from another with
``preset: NAME`` and overrides fields, as a user's file can (``tiny-clm`` from ``tiny``,
``elm-tiny`` and ``elm-micro`` from ``elm-small``). Reading them is
:mod:`elm_train.config.files`' job, since a config file's ``preset:`` key needs them too; this
module is their public name.
"""

from elm_train.config.files import PRESET_DIR, PRESETS, preset

__all__ = ["PRESETS", "PRESET_DIR", "preset"]
