"""The degradation families of deepexposure.data.degrade: each does what docs/data.md says, and the mix is honest."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from deepexposure.data import CAMERA_CURVES, FAMILIES, DegradeConfig, degrade
from deepexposure.data.degradation import _encode_curve
from deepexposure.image.color import apply_ev, linear_to_srgb, luminance, srgb_to_linear


def _scene(h: int = 64, w: int = 96, seed: int = 0, grey: bool = False) -> np.ndarray:
    """A smooth sRGB test scene with linear values spanning 0.01..0.6 (shadows to highlights, nothing clipped)."""
    rng = np.random.default_rng(seed)
    lin = np.exp(rng.uniform(np.log(0.01), np.log(0.6), (h // 8, w // 8, 1 if grey else 3))).astype(np.float32)
    lin = np.repeat(lin, 3, axis=2) if grey else lin
    lin = cv2.resize(lin, (w, h), interpolation=cv2.INTER_CUBIC).clip(0.005, 0.6)
    return linear_to_srgb(lin)


def _fixed(ev: float, **kw) -> DegradeConfig:
    """Global offset exactly ``ev`` (no correct shots, one side), no quantisation, families from ``kw``."""
    side = {"under_ev": (ev, ev), "p_under": 1.0} if ev < 0 else {"over_ev": (ev, ev), "p_under": 0.0}
    kw = {"families": (), "quantize": False, **kw}
    return DegradeConfig(p_correct=0.0, **side, **kw)


def test_mix_has_correct_shots_and_every_family():
    x = _scene(16, 16)
    params = [degrade(x, s)[1] for s in range(400)]
    g = np.array([p["global_ev"] for p in params])
    correct = np.abs(g) <= 0.2
    assert 0.18 < correct.mean() < 0.32  # p_correct = 0.25: a correct shot is common
    on = {f: np.mean([f in p["families"] for p in params]) for f in FAMILIES}
    assert all(0.25 < v < 0.45 for v in on.values()), on  # p_family = 0.35 each
    assert sum(not p["families"] for p in params) >= 5  # some copies are pure global offsets (0.65^7 = 5%)


def test_only_without_and_dict_round_trip():
    for f in FAMILIES:
        assert degrade(_scene(16, 16), 3, config=DegradeConfig.only(f))[1]["families"] == [f]
    w = DegradeConfig.without("noise", "jpeg")
    assert "noise" not in w.families and "jpeg" not in w.families and len(w.families) == len(FAMILIES) - 2
    assert all("noise" not in degrade(_scene(16, 16), s, config=w)[1]["families"] for s in range(60))
    cfg = DegradeConfig.only("tone", "noise")
    assert DegradeConfig.from_dict(cfg.to_dict()) == cfg
    assert DegradeConfig.from_dict({"withhold": ["tone"]}) == DegradeConfig.without("tone")
    assert DegradeConfig.from_dict({"preset": "v1"}) == DegradeConfig.v1()
    with pytest.raises(ValueError, match="unknown degradation families"):
        DegradeConfig(families=("spatial", "rain"))
    with pytest.raises(ValueError, match="unknown degradation settings"):
        DegradeConfig.from_dict({"colour": 1})


def test_switching_families_keeps_the_other_draws():
    x = _scene(16, 16)
    for s in range(20):
        a = degrade(x, s, config=DegradeConfig.only("noise"))[1]
        b = degrade(x, s, config=DegradeConfig.only("tone"))[1]
        assert a["global_ev"] == b["global_ev"]


def test_v1_never_correct_and_always_spatial():
    x = _scene(16, 16)
    for s in range(50):
        p = degrade(x, s, config=DegradeConfig.v1())[1]
        assert abs(p["global_ev"]) >= 0.5 and p["families"] == ["spatial"]


def test_white_balance_shifts_colour_and_keeps_luminance():
    x = _scene(grey=True)
    base = degrade(x, 1, config=_fixed(-1.0))[0]
    wb, p = degrade(x, 1, config=_fixed(-1.0, families=("white_balance",), always=("white_balance",)))
    gr, gb = p["wb_log2_gains"]
    assert max(abs(gr), abs(gb)) > 0.01
    np.testing.assert_allclose(luminance(wb), luminance(base), rtol=1e-4, atol=1e-6)  # a grey keeps its luminance
    ratio_r = np.median(srgb_to_linear(wb)[..., 0] / srgb_to_linear(base)[..., 0])
    ratio_b = np.median(srgb_to_linear(wb)[..., 2] / srgb_to_linear(base)[..., 2])
    assert np.log2(ratio_r / ratio_b) == pytest.approx(gr - gb, abs=1e-3)


def test_tone_family_is_a_luminance_following_ev_error():
    x = _scene(grey=True)
    base, _ = degrade(x, 2, config=_fixed(-0.5))
    y, p = degrade(x, 2, config=_fixed(-0.5, families=("tone",), always=("tone",)))
    c = p["tone_contrast"]
    lb, ly = np.log2(luminance(base)), np.log2(luminance(y))
    ok = (ly < -0.2) & (ly > -9)
    slope = np.polyfit(lb[ok], ly[ok], 1)[0]
    assert slope == pytest.approx(c, rel=0.05)  # the EV error grows with the scene's own log luminance


def test_noise_grows_as_the_shot_gets_darker():
    x = _scene(128, 128)
    noisy = DegradeConfig.only("noise", noise_level=(1e-3, 1e-3))

    def rel_noise(ev: float) -> float:
        side = {"under_ev": (ev, ev), "p_under": 1.0, "p_correct": 0.0, "quantize": False}
        cfg = dataclasses.replace(noisy, **side)
        y, _ = degrade(x, 4, config=cfg)
        clean = apply_ev(x, ev)
        return float(np.std(srgb_to_linear(y) - srgb_to_linear(clean)) / np.mean(srgb_to_linear(clean)))

    assert rel_noise(-3.0) > 3 * rel_noise(-0.5)


def test_highlights_roll_off_instead_of_clipping():
    x = _scene()
    hard, ph = degrade(x, 5, config=_fixed(1.8))
    soft, ps = degrade(x, 5, config=_fixed(1.8, families=("highlights",), always=("highlights",)))
    assert ph["clipped_fraction"] > 0.05
    assert (hard >= 0.9999).mean() > 0.05 and (soft >= 0.9999).mean() == 0.0
    k = ps["shoulder_knee"]
    below = srgb_to_linear(hard).max(axis=2) < k * 0.98
    np.testing.assert_allclose(soft[below], hard[below], atol=1e-5)  # identical below the knee


@pytest.mark.parametrize("curve", CAMERA_CURVES)
def test_camera_curves_are_monotone_and_span_black_to_white(curve):
    v = np.linspace(0, 1, 1001, dtype=np.float32)
    y = _encode_curve(v, curve)
    assert y[0] == pytest.approx(0, abs=1e-6) and y[-1] == pytest.approx(1, abs=1e-5)
    assert np.all(np.diff(y) > 0)
    assert np.abs(y - linear_to_srgb(v)).max() > 0.02  # not the sRGB encoding


def test_jpeg_family_reencodes():
    x = _scene(64, 64)
    a, _ = degrade(x, 6, config=_fixed(-1.0, quantize=True))
    b, p = degrade(x, 6, config=_fixed(-1.0, quantize=True, families=("jpeg",), always=("jpeg",)))
    assert 25 <= p["jpeg_quality"] <= 85
    assert 0 < np.abs(a - b).mean() < 0.03
    np.testing.assert_allclose(b * 255, np.round(b * 255), atol=1e-3)  # 8-bit codes
