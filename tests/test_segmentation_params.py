"""One source of truth for segmentation parameters: every user segments as the policy was trained to.

The shipped policy stores the parameters it was trained with (``config["segmentation"]``); the defaults
(``SEGMENT_DEFAULTS``, ``segment()``'s keywords, ``TrainConfig``), ``enhance``, ``render --renderer local --ev``,
``segment`` and the oracle-recipe baseline must all use them. The sample photo is one where the old defaults
(scale 300 / min_size 30) give other segments, so a user that segments differently is caught.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from deepexposure.apps.cli import main
from deepexposure.image.io import read_photo
from deepexposure.image.recipe import Recipe
from deepexposure.image.segmentation import (
    SEGMENT_DEFAULTS,
    make_preview,
    overlay,
    segment,
    segmentation_params,
)

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "samples" / "dicm_34.jpg"
OTHER = {"scale": 300.0, "min_size": 30}  # the parameters the image commands used before


@pytest.fixture(scope="module")
def policy_params() -> dict:
    """The segmentation stored in the shipped policy file."""
    from deepexposure.inference.loader import default_model_path
    from deepexposure.learning.policy import Policy

    return Policy.load(default_model_path("pt"), device="cpu").config["segmentation"]


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return read_photo(SAMPLE).pixels


def _overlay_of(path: Path) -> np.ndarray:
    return np.round(read_photo(path).pixels * 255).astype(np.uint8)


def test_the_sample_tells_the_parameters_apart(photo, policy_params):
    prev = make_preview(photo)
    assert not np.array_equal(segment(prev, **{**policy_params, **OTHER}), segment(prev, **policy_params))


def test_every_default_is_the_shipped_policys(policy_params):
    from deepexposure.inference.loader import model_segmentation
    from deepexposure.learning.config import TrainConfig

    assert set(policy_params) == set(SEGMENT_DEFAULTS)
    assert dict(SEGMENT_DEFAULTS) == policy_params
    assert segmentation_params() == policy_params
    sig = inspect.signature(segment)
    assert {k: sig.parameters[k].default for k in SEGMENT_DEFAULTS} == policy_params
    assert TrainConfig().segmentation() == policy_params
    assert model_segmentation() == policy_params
    card = json.loads((REPO / "src" / "deepexposure" / "assets" / "policy.json").read_text())
    assert card["policy_config"]["segmentation"] == policy_params


def test_every_user_segments_like_the_shipped_policy(photo, policy_params, tmp_path):
    from deepexposure.apps.pipeline import manual_recipe
    from deepexposure.evaluation import get_method
    from deepexposure.inference.enhance import Enhancer

    expected = segment(make_preview(photo), **policy_params)
    rec = Enhancer("paper", device="cpu").recipe(photo)  # enhance --model paper
    np.testing.assert_array_equal(rec.labels, expected)
    assert rec.segmentation == policy_params
    n = int(expected.max()) + 1
    rec = manual_recipe(photo, [0.5] * n, "local")  # render --renderer local --ev (API)
    np.testing.assert_array_equal(rec.labels, expected)
    assert rec.segmentation == policy_params

    evs = [a for _ in range(n) for a in ("--ev", "0.5")]
    r = CliRunner().invoke(main, ["render", str(SAMPLE), *evs, "--renderer", "local", "--save-recipe",
                                  "-o", str(tmp_path / "r.png")])
    assert r.exit_code == 0, r.output
    np.testing.assert_array_equal(Recipe.load(tmp_path / "r.recipe.json").labels, expected)

    r = CliRunner().invoke(main, ["segment", str(SAMPLE), "-o", str(tmp_path / "s.png")])
    assert r.exit_code == 0, r.output
    np.testing.assert_array_equal(_overlay_of(tmp_path / "s.png"), overlay(photo, expected))

    small = cv2.resize(photo, (120, 160), interpolation=cv2.INTER_AREA)  # oracle-recipe, on a small copy
    oracle = get_method("oracle-recipe")
    oracle(small, target=small)
    np.testing.assert_array_equal(oracle.last_labels, segment(make_preview(small), **policy_params))


def test_a_trained_policy_carries_its_segmentation_to_enhance_and_segment(photo, tmp_path):
    from deepexposure.inference.enhance import Enhancer
    from deepexposure.learning.config import TrainConfig
    from deepexposure.learning.dataset import TrainData, segment_all
    from deepexposure.learning.trainer import Trainer

    cfg = TrainConfig()
    cfg.model.width = cfg.model.critic_width = 8
    cfg.model.hidden = 16
    cfg.rl.seg_scale, cfg.rl.seg_min_size = OTHER["scale"], OTHER["min_size"]
    prev = make_preview(photo)[None]
    data = TrainData(prev, segment_all(prev, cfg.segmentation()), prev)
    policy = Trainer(cfg, data, tmp_path / "run", tensorboard=False, progress=False).policy()
    assert policy.config["segmentation"] == cfg.segmentation()
    path = policy.save(tmp_path / "other.pt")

    expected = segment(prev[0], **cfg.segmentation())
    np.testing.assert_array_equal(Enhancer(path, device="cpu").recipe(photo).labels, expected)
    r = CliRunner().invoke(main, ["segment", str(SAMPLE), "--model", str(path), "-o", str(tmp_path / "s.png")])
    assert r.exit_code == 0, r.output
    np.testing.assert_array_equal(_overlay_of(tmp_path / "s.png"), overlay(photo, expected))
    r = CliRunner().invoke(main, ["segment", str(SAMPLE), "--model", str(path), "-T", "3",
                                  "-o", str(tmp_path / "s3.png")])
    assert r.exit_code == 0, r.output
    expected3 = segment(prev[0], **{**cfg.segmentation(), "max_segments": 3})
    np.testing.assert_array_equal(_overlay_of(tmp_path / "s3.png"), overlay(photo, expected3))
