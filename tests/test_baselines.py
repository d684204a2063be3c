"""Baselines: each against its definition (OpenCV, render, apply_ev), oracles recover known exposures."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from deepexposure.errors import DeepExposureError
from deepexposure.evaluation.baselines import (
    Method,
    auto_exposure_ev,
    get_method,
    method_names,
    oracle_global_ev,
)
from deepexposure.evaluation.metrics import psnr
from deepexposure.image.color import apply_ev, luminance, srgb_to_linear


def _scene(h: int = 96, w: int = 128) -> np.ndarray:
    """Float32 sRGB scene: a dark left half and a bright right half with smooth texture, values within (0, 1)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    tex = 0.5 + 0.25 * np.sin(x / 5)[..., None] * np.cos(y / 7)[..., None] * np.array([1.0, 0.8, 0.6], np.float32)
    level = np.where(x < w / 2, 0.25, 0.7)[..., None].astype(np.float32)
    return np.clip(level * tex + 0.05, 0, 1).astype(np.float32)


def test_identity_and_protocol():
    img = _scene()
    for name in ("identity", "auto-exposure", "clahe", "fixed-fusion", "oracle-global"):
        m = get_method(name)
        assert isinstance(m, Method) and m.name == name
        out = m(img, target=img) if m.needs_target else m(img)
        assert out.dtype == np.float32 and out.shape == img.shape
        assert 0 <= out.min() and out.max() <= 1
    out = get_method("identity")(img)
    np.testing.assert_array_equal(out, img)
    assert out is not img


def test_auto_exposure_meters_to_mid_grey():
    # uniform grey whose linear luminance is 0.045: +2 EV brings it to 0.18
    lin = 0.045
    srgb_val = 1.055 * lin ** (1 / 2.4) - 0.055
    img = np.full((40, 60, 3), srgb_val, np.float32)
    assert auto_exposure_ev(img) == pytest.approx(2.0, abs=1e-4)
    out = get_method("auto-exposure")(img)
    assert float(luminance(out).mean()) == pytest.approx(0.18, abs=1e-4)
    np.testing.assert_allclose(out, apply_ev(img, auto_exposure_ev(img)), atol=1e-7)
    # bounded to +-4 EV: black and white frames
    assert auto_exposure_ev(np.zeros((8, 8, 3), np.float32)) == 4.0
    assert auto_exposure_ev(np.full((8, 8, 3), 1e-4, np.float32)) == 4.0
    assert auto_exposure_ev(np.ones((8, 8, 3), np.float32)) == pytest.approx(math.log2(0.18), abs=1e-6)
    # metering is on the mean linear luminance of the whole frame
    img = _scene()
    assert auto_exposure_ev(img) == pytest.approx(math.log2(0.18 / luminance(img).mean()), abs=0.02)


def test_clahe_is_opencv_clahe_on_lab_l():
    img = _scene()
    u8 = np.floor(img * 255 + 0.5).astype(np.uint8)
    lab = cv2.cvtColor(u8, cv2.COLOR_RGB2LAB)
    lab[..., 0] = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(lab[..., 0].copy())
    expected = cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)
    out = get_method("clahe")(img)
    np.testing.assert_array_equal(np.round(out * 255).astype(np.uint8), expected)


def test_fixed_fusion_is_render_fusion():
    from deepexposure.image.render import render_fusion

    img = _scene()
    np.testing.assert_allclose(get_method("fixed-fusion")(img), render_fusion(img, [-1.0, 1.0, 2.0]), atol=1e-5)


@pytest.mark.parametrize("ev", [-1.7, 0.0, 1.3])
def test_oracle_global_recovers_exposure(ev):
    img = _scene(120, 160)
    target = apply_ev(img, ev)
    assert oracle_global_ev(img, target) == pytest.approx(ev, abs=0.02)
    out = get_method("oracle-global")(img, target=target)
    assert psnr(out, target) > 45


def test_oracle_recipe_recovers_per_segment_exposures():
    from deepexposure.image.render import render_local
    from deepexposure.image.segmentation import make_preview, segment

    img = _scene(120, 160)
    labels = segment(make_preview(img))
    n = int(labels.max()) + 1
    assert n >= 2
    # +1.5 EV in the dark half (linear luminance about 0.03), -0.5 EV in the bright half (0.13-0.2)
    true = [1.5 if luminance(make_preview(img))[labels == k].mean() < 0.08 else -0.5 for k in range(n)]
    assert set(true) == {1.5, -0.5}
    target = render_local(img, true, labels)
    glob = get_method("oracle-global")(img, target=target)
    m = get_method("oracle-recipe")
    out = m(img, target=target)
    assert psnr(out, target) > psnr(glob, target) + 3
    assert psnr(out, target) > 35
    assert m.name == "oracle-recipe" and len(m.last_evs) == n


def test_oracle_recipe_fusion_beats_input():
    img = _scene(64, 80)
    target = apply_ev(img, 0.8)
    out = get_method("oracle-recipe-fusion")(img, target=target)
    assert psnr(out, target) > psnr(img, target) + 5


def test_oracles_need_target_and_unknown_names():
    img = _scene()
    for name in ("oracle-global", "oracle-recipe", "oracle-recipe-fusion"):
        with pytest.raises(DeepExposureError, match="needs the target"):
            get_method(name)(img)
    with pytest.raises(DeepExposureError, match="unknown method 'nope'.*identity.*clahe"):
        get_method("nope")
    assert {"identity", "auto-exposure", "clahe", "fixed-fusion", "oracle-global", "oracle-recipe"} <= set(
        method_names())


def test_folder_method(tmp_path):
    from deepexposure.image.io import Photo, write_photo

    img = _scene()
    write_photo(tmp_path / "x1.png", Photo(pixels=apply_ev(img, 1.0), alpha=None, bit_depth=8, exif=None,
                                           icc_profile=None, source=None, mode="RGB"))
    m = get_method(f"folder:{tmp_path}")
    assert m.name == tmp_path.name and m.needs_stem
    out = m(img, stem="x1")
    assert np.abs(out - apply_ev(img, 1.0)).max() <= 0.5 / 255 + 1e-6
    with pytest.raises(DeepExposureError, match="no output for x2"):
        m(img, stem="x2")
    with pytest.raises(DeepExposureError, match="not a folder"):
        get_method(f"folder:{tmp_path / 'missing'}")


def test_policy_path_method(tmp_path):
    pytest.importorskip("torch")
    from deepexposure.learning.models import Actor
    from deepexposure.learning.policy import Policy

    arch = {"width": 8, "hidden": 16}
    Policy(Actor(**arch), arch, {}).save(tmp_path / "run" / "policy.pt")
    img = _scene()
    for spec in (tmp_path / "run", tmp_path / "run" / "policy.pt"):
        m = get_method(str(spec))
        assert m.name == "run" and not m.needs_target
        out = m(img)
        assert out.shape == img.shape and out.dtype == np.float32
    local = get_method(str(tmp_path / "run"), renderer="local")  # not the default: named with its renderer
    assert local.name == "run[local]" and get_method(str(tmp_path / "run"), renderer="fusion").name == "run"
    assert srgb_to_linear(local(img)).shape == img.shape
