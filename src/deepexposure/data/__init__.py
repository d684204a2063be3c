"""Data sets (pure numpy, no torch): synthetic exposure errors (:mod:`.degradation`), 64x64 previews
(:mod:`.previews`), paired folders (:mod:`.pairs`), the MIT-Adobe FiveK layout and folds (:mod:`.fivek`),
development pairs (:mod:`.dev_pairs`) and SICE frame selection (:mod:`.sice`).

Images are float32 gamma-encoded sRGB in [0, 1], shape (H, W, 3); previews are stacked as (N, size, size, 3).
Exposure values are EV stops in linear light (see :mod:`deepexposure.image.color`). The data notes (which shared
folder is used for what, measured counts, the degradation model) are in ``docs/data.md``.
"""

from deepexposure.data.degradation import (
    CAMERA_CURVES,
    FAMILIES,
    DegradeConfig,
    degradation_ev_map,
    degrade,
    degrade_field,
    degraded_previews,
)
from deepexposure.data.dev_pairs import make_dev_pairs
from deepexposure.data.fivek import (
    FIVEK_EXPERT_DIRS,
    FIVEK_FOLDS,
    FIVEK_INPUT_DIRS,
    check_fivek_paired,
    fivek_expert_dirs,
    fivek_experts,
    fivek_fold_ids,
    fivek_inputs,
    fivek_paired_inputs,
    fivek_pairs,
)
from deepexposure.data.pairs import PAIR_ASPECT_TOLERANCE, Pair, load_pair_previews, paired_folder
from deepexposure.data.previews import load_previews
from deepexposure.data.sice import SICE_BRIGHT_MIN, SICE_DARK_MAX, select_sice, select_sice_references

__all__ = [
    "DegradeConfig", "FAMILIES", "CAMERA_CURVES", "degrade", "degrade_field", "degradation_ev_map", "degraded_previews",
    "load_previews", "Pair", "paired_folder", "PAIR_ASPECT_TOLERANCE", "load_pair_previews", "FIVEK_FOLDS",
    "FIVEK_INPUT_DIRS", "FIVEK_EXPERT_DIRS", "fivek_expert_dirs", "fivek_fold_ids", "fivek_pairs", "fivek_inputs",
    "fivek_experts", "fivek_paired_inputs", "check_fivek_paired", "make_dev_pairs", "select_sice",
    "select_sice_references", "SICE_DARK_MAX", "SICE_BRIGHT_MIN",
]
