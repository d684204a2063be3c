"""Renderers: local (edge-aware EV map) and fusion, dispatch, strength, recipe round trip."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from deepexposure.errors import DataError
from deepexposure.image.color import apply_ev
from deepexposure.image.io import read_photo
from deepexposure.image.recipe import Recipe
from deepexposure.image.render import (
    RENDERERS,
    _apply_ev_map,
    local_ev_map,
    render,
    render_fusion,
    render_local,
)
from deepexposure.image.segmentation import SOFT_MASK_DEFAULTS, make_preview, segment, soft_masks


@pytest.fixture(scope="module")
def photo(shared_data: Path) -> np.ndarray:
    return read_photo(shared_data / "dicm" / "05.jpg").pixels


@pytest.fixture(scope="module")
def labels(photo: np.ndarray) -> np.ndarray:
    return segment(make_preview(photo))


def _evs(labels: np.ndarray) -> np.ndarray:
    return np.linspace(1.5, -0.75, labels.max() + 1)


def test_fast_exposure_matches_color_apply_ev():
    rng = np.random.default_rng(0)
    img = rng.random((300, 301, 3), dtype=np.float32) * 1.1 - 0.05  # a little outside [0, 1] too
    ev = (rng.random((300, 301), dtype=np.float32) * 8 - 4)
    np.testing.assert_allclose(_apply_ev_map(img, ev), apply_ev(img, ev[..., None]), atol=1e-6, rtol=0)


def test_zero_evs_return_the_input(photo, labels):
    n = labels.max() + 1
    np.testing.assert_allclose(render_local(photo, np.zeros(n), labels), photo, atol=1e-6)
    fusion = pytest.importorskip("deepexposure.image.fusion")
    assert fusion is not None
    np.testing.assert_allclose(render_fusion(photo, [0.0, 0.0]), photo, atol=1e-4)


def test_local_equal_evs_is_global_exposure(photo, labels):
    n = labels.max() + 1
    for ev in (-1.25, 0.8):
        np.testing.assert_allclose(render_local(photo, np.full(n, ev), labels), apply_ev(photo, ev), atol=1e-6)


def test_local_is_apply_ev_of_the_ev_map(photo, labels):
    evs = _evs(labels)
    before = photo.copy()
    out = render_local(photo, evs, labels)
    np.testing.assert_array_equal(photo, before)  # input not modified
    ev_map = local_ev_map(photo, evs, labels)
    assert ev_map.min() >= evs.min() - 1e-6 and ev_map.max() <= evs.max() + 1e-6
    assert out.dtype == np.float32 and out.shape == photo.shape
    np.testing.assert_allclose(out, apply_ev(photo, ev_map[..., None]), atol=1e-6)
    # deep inside each segment the output is the photo exposed by that segment's EV
    H, W = photo.shape[:2]
    margin = (2 * SOFT_MASK_DEFAULTS["feather"] + 1.5) * max(H, W) / 64
    up = cv2.resize(labels, (W, H), interpolation=cv2.INTER_NEAREST)
    checked = 0
    for k, ev in enumerate(evs):
        inside = np.pad((up == k).astype(np.uint8), 1, constant_values=1)
        deep = cv2.distanceTransform(inside, cv2.DIST_L2, 5)[1:-1, 1:-1] > margin
        if deep.any():
            np.testing.assert_allclose(out[deep], apply_ev(photo[deep], ev), atol=1e-3)
            checked += 1
    assert checked >= 2


def test_ev_map_is_the_blend_of_soft_masks(photo, labels):
    evs = _evs(labels)
    blend = np.tensordot(evs, soft_masks(labels, photo), axes=1)
    diff = np.abs(local_ev_map(photo, evs, labels) - blend)
    span = np.ptp(evs)
    assert diff.mean() < 0.01 * span and np.quantile(diff, 0.99) < 0.1 * span


def test_strength(photo, labels):
    evs = _evs(labels)
    recipe = Recipe(evs=list(evs), labels=labels, renderer="local")
    same = render(photo, recipe, strength=0.0)
    assert same is not photo
    np.testing.assert_array_equal(same, photo)  # exact identity
    half = render(photo, recipe, strength=0.5)
    np.testing.assert_array_equal(half, render_local(photo, evs * 0.5, labels))
    np.testing.assert_array_equal(render(photo, recipe), render_local(photo, evs, labels))
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="strength"):
            render(photo, recipe, strength=bad)


def test_strength_scales_fusion(photo):
    pytest.importorskip("deepexposure.image.fusion")
    small = cv2.resize(photo, (160, 120), interpolation=cv2.INTER_AREA)
    recipe = Recipe.from_evs([1.0, -0.5])
    np.testing.assert_allclose(render(small, recipe, strength=0.5), render_fusion(small, [0.5, -0.25]), atol=1e-6)
    assert np.abs(render(small, recipe, strength=0.5) - render_fusion(small, [1.0, -0.5])).max() > 0.01
    np.testing.assert_array_equal(render(small, recipe, strength=0.0), small)


def test_dispatch_errors(photo, labels):
    recipe = Recipe(evs=list(_evs(labels)), labels=labels, renderer="local")
    with pytest.raises(ValueError, match="fusion, local, rolloff, balanced"):
        render(photo, recipe, renderer="magic")
    assert RENDERERS == ("fusion", "local", "rolloff", "balanced")
    with pytest.raises(DataError, match="labels"):
        render(photo, Recipe.from_evs([1.0, 2.0]), renderer="rolloff")
    with pytest.raises(DataError, match="labels"):
        render(photo, Recipe.from_evs([1.0, 2.0]), renderer="local")
    np.testing.assert_allclose(render(photo, Recipe.from_evs([0.7]), renderer="local"), apply_ev(photo, 0.7), atol=1e-6)
    with pytest.raises(TypeError):  # 8-bit codes are taken (test_codes_render_as_their_floats); 16-bit are not
        render((photo * 65535).astype(np.uint16), recipe)
    with pytest.raises(ValueError):
        render_local(photo, [1.0], labels)  # wrong number of EVs


def test_render_from_json_is_bit_exact(photo, labels, tmp_path):
    rng = np.random.default_rng(3)
    evs = list(rng.uniform(-2, 2, labels.max() + 1))
    recipe = Recipe(evs=evs, labels=labels, renderer="local", model="test-model",
                    segmentation={"max_segments": 6})
    loaded = Recipe.load(recipe.save(tmp_path / "r.recipe.json"))
    np.testing.assert_array_equal(render(photo, loaded), render(photo, recipe))
    pytest.importorskip("deepexposure.image.fusion")
    small = cv2.resize(photo, (160, 120), interpolation=cv2.INTER_AREA)
    # fusion.fuse_exposures itself differs by ~3e-8 between identical calls (see the report), so not bit-exact
    np.testing.assert_allclose(render(small, loaded, renderer="fusion"), render(small, recipe, renderer="fusion"),
                               atol=1e-6, rtol=0)


# ---------------------------------------------------------------------------------------------------- rolloff


def _slow_rolloff(srgb: np.ndarray, ev_map: np.ndarray, white: float, knee: float) -> np.ndarray:
    """The roll-off written out pixel by pixel from its definition (reference for the vectorised renderer)."""
    from deepexposure.image.color import linear_to_srgb, srgb_to_linear

    lin = srgb_to_linear(srgb).astype(np.float64)
    out = np.empty_like(lin)
    r = 1.0 - knee
    for i in range(lin.shape[0]):
        for j in range(lin.shape[1]):
            g = 2.0 ** float(ev_map[i, j])
            top = max(g * white, 1.0)
            for c in range(3):
                v = lin[i, j, c] * g
                if v > knee and top > 1.0:
                    t, d = (v - knee) / r, (top - knee) / r
                    v = knee + r * t / (1.0 + (1.0 - 1.0 / d) * t)
                out[i, j, c] = min(max(v, 0.0), 1.0)
    return linear_to_srgb(out.astype(np.float32))


def test_rolloff_matches_slow_reference_and_equals_local_where_nothing_clips(photo, labels):
    from deepexposure.image.render import ROLLOFF_KNEE, local_ev_map, render_rolloff, rolloff_white

    small = cv2.resize(photo, (48, 32), interpolation=cv2.INTER_AREA)
    evs = [1.5, -0.5, 0.8, 2.0, 0.0, 1.0][: int(labels.max()) + 1]
    ev_map = local_ev_map(small, evs, labels)
    ref = _slow_rolloff(small, ev_map, rolloff_white(small), ROLLOFF_KNEE)
    out = render_rolloff(small, evs, labels)
    np.testing.assert_allclose(out, ref, atol=2e-5)
    # a darkened photo brightened back: nothing would pass white, so rolloff == local exactly
    dark = apply_ev(small, -2.5)
    np.testing.assert_allclose(render_rolloff(dark, evs, labels), render_local(dark, evs, labels), atol=1e-6)


def test_rolloff_keeps_highlight_detail_that_local_clips(photo):
    from deepexposure.image.render import render_rolloff

    out_local = render(photo, Recipe.from_evs([2.0]), renderer="local")
    out_roll = render_rolloff(photo, [2.0], None)
    bright = photo.mean(axis=2) > np.percentile(photo.mean(axis=2), 90)
    # +2 EV blows the brightest tenth with a hard clip; the roll-off keeps its tones apart (below white, ordered)
    assert (out_local[bright] >= 0.9999).mean() > 0.3
    unclipped = photo.max(axis=2) < 0.98  # nothing that was below white in the input reaches white
    assert (out_roll[unclipped].max(axis=1) >= 0.9999).mean() < 0.005
    g_in, g_out = photo[..., 1][bright], out_roll[..., 1][bright]
    assert np.corrcoef(g_in, g_out)[0, 1] > 0.95
    # monotone in the input: brighter input pixels stay brighter (no tone reversal)
    order = np.argsort(photo[..., 1].ravel())
    assert np.all(np.diff(out_roll[..., 1].ravel()[order]) >= -1e-6)
    # shadows are exposed exactly as with the plain exposure
    dark = photo.max(axis=2) < 0.2
    np.testing.assert_allclose(out_roll[dark], apply_ev(photo, 2.0)[dark], atol=1e-6)


def test_balanced_is_the_fusion_of_a_bracket_around_the_rolloff_image(photo, labels):
    from deepexposure.image.render import BALANCED_BRACKET, render_rolloff

    small = cv2.resize(photo, (96, 64), interpolation=cv2.INTER_AREA)
    evs = [0.8, -0.3, 1.2, 0.5, 0.0, 0.9][: int(labels.max()) + 1]
    recipe = Recipe(evs=evs, labels=labels, renderer="balanced")
    rolled = render_rolloff(small, evs, labels)
    np.testing.assert_allclose(render(small, recipe), render_fusion(rolled, list(BALANCED_BRACKET)), atol=1e-6)
    # strength scales the EVs and the bracket; 0 leaves the photo unchanged
    half = render_fusion(render_rolloff(small, [e / 2 for e in evs], labels), [b / 2 for b in BALANCED_BRACKET])
    np.testing.assert_allclose(render(small, recipe, strength=0.5), half, atol=1e-6)
    np.testing.assert_array_equal(render(small, recipe, strength=0.0), small)


# ---------------------------------------------------------------------------------------------------- highlight guard
def _guard_reference(srgb: np.ndarray, evs, labels: np.ndarray, q: float) -> list[float]:
    """Slow, clear reference of guard_highlights: per segment, the q-th percentile of the largest linear channel of
    an area-resampled copy (long edge <= 512), pixel by pixel through a Python list."""
    from deepexposure.image.color import srgb_to_linear

    h, w = srgb.shape[:2]
    s = min(1.0, 512 / max(h, w))
    small = srgb if s >= 1 else cv2.resize(srgb, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
    lab = cv2.resize(labels.astype(np.int32), (small.shape[1], small.shape[0]), interpolation=cv2.INTER_NEAREST)
    lin = srgb_to_linear(small)
    out = []
    for k, ev in enumerate(evs):
        vals = [float(max(lin[i, j])) for i in range(lab.shape[0]) for j in range(lab.shape[1]) if lab[i, j] == k]
        if ev <= 0 or not vals:
            out.append(float(ev))
        else:
            out.append(min(float(ev), max(0.0, -float(np.log2(max(np.percentile(vals, q), 1e-6))))))
    return out


def test_guard_highlights_matches_slow_reference_on_a_real_photo(shared_data: Path):
    from deepexposure.image.render import guard_highlights

    img = read_photo(shared_data / "dicm" / "34.jpg").pixels  # an overcast sky above a dark church
    img = cv2.resize(img, (img.shape[1] // 2, img.shape[0] // 2), interpolation=cv2.INTER_AREA)
    lab = segment(make_preview(img))
    evs = list(np.linspace(2.0, -0.5, lab.max() + 1))
    for q in (99.0, 90.0):
        got = guard_highlights(img, evs, lab, percentile=q)
        np.testing.assert_allclose(got, _guard_reference(img, evs, lab, q), atol=1e-6)
        assert all(g <= e + 1e-12 for g, e in zip(got, evs, strict=True))  # only ever lowers
        assert [g for g, e in zip(got, evs, strict=True) if e <= 0] == [e for e in evs if e <= 0]  # <= 0 kept


def test_guard_highlights_caps_the_bright_segment_only():
    from deepexposure.image.color import srgb_to_linear
    from deepexposure.image.render import guard_highlights

    img = np.full((96, 128, 3), 0.1, np.float32)
    img[:, 64:] = 0.9  # bright right half
    lab = np.zeros((64, 64), np.int32)
    lab[:, 32:] = 1
    got = guard_highlights(img, [2.0, 2.0], lab)
    assert got[0] == 2.0  # the dark half may be brightened fully
    assert got[1] == pytest.approx(-np.log2(float(srgb_to_linear(np.float32(0.9)))), abs=1e-5)
    # invariant: the guarded EV brings the bright half exactly to white, not past it
    out = render_local(img, got, lab)
    assert out[:, 70:].max() <= 1.0 and out[:, 70:].min() > 0.995
    assert guard_highlights(img, [-1.0, 0.0], lab) == [-1.0, 0.0]  # nothing to guard
    assert guard_highlights(np.ones_like(img), [1.0, 1.0], lab) == [0.0, 0.0]  # already white: no brightening


def test_guard_highlights_rejects_bad_arguments():
    from deepexposure.image.render import guard_highlights

    img = np.full((16, 16, 3), 0.5, np.float32)
    lab = np.zeros((8, 8), np.int32)
    with pytest.raises(ValueError, match="segments"):
        guard_highlights(img, [1.0, 1.0], lab)
    with pytest.raises(ValueError, match="percentile"):
        guard_highlights(img, [1.0], lab, percentile=0)
    with pytest.raises(ValueError, match="labels"):
        guard_highlights(img, [1.0], lab.astype(np.float32))


def test_enhance_guard_holds_the_sky_of_a_readme_sample():
    """Golden behaviour on a real photo: the shipped policy gives dicm_34's overcast sky the church's +1.5 EV;
    unguarded, rolloff washes ~20% of the photo out to 254-255 (5.6% as shot); guarded, no more than as shot + 1."""
    from deepexposure.inference.enhance import Enhancer

    img = read_photo(Path(__file__).resolve().parents[1] / "samples" / "dicm_34.jpg").pixels

    def blown(a: np.ndarray) -> float:
        return 100.0 * float(np.mean(np.round(a * 255).max(axis=2) >= 254))

    raw, raw_recipe = Enhancer("paper", renderer="rolloff", highlight_guard=False).enhance(img)
    guarded, recipe = Enhancer("paper", renderer="rolloff").enhance(img)
    assert blown(raw) > blown(img) + 10
    assert blown(guarded) <= blown(img) + 1
    assert recipe.evs != raw_recipe.evs and all(g <= e + 1e-9 for g, e in zip(recipe.evs, raw_recipe.evs,
                                                                               strict=True))
    # fusion is never guarded: the same recipe with or without
    assert Enhancer("paper", highlight_guard=False).recipe(img).evs == Enhancer("paper").recipe(img).evs


def _eight_bit(photo: np.ndarray) -> np.ndarray:
    """``photo`` as an 8-bit JPEG reads (exactly k/255), quarter size: what the table path takes."""
    small = cv2.resize(np.asarray(photo, np.float32), None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
    return np.floor(np.clip(small, 0, 1) * 255 + 0.5).astype(np.float32) / np.float32(255)


@pytest.mark.parametrize("renderer", ["rolloff", "local"])
def test_global_ev_table_equals_the_per_pixel_pass(photo, renderer):
    """One global EV on an 8-bit photo is a 256-entry table (issue 23): within 1 ulp of the per-pixel pass, the same
    8-bit output; a photo that is not k/255 keeps the per-pixel pass."""
    from deepexposure.image.photo import eight_bit_codes
    from deepexposure.image.render import _apply_ev_map, global_table

    img = _eight_bit(photo)
    for ev in (-1.3, 0.4, 1.7):
        fast = render(img, Recipe(evs=[ev], labels=None, renderer=renderer, model="m"))
        slow = _apply_ev_map(img, np.full(img.shape[:2], ev, np.float32), rolloff=renderer == "rolloff")
        assert np.abs(fast - slow).max() <= 2.5e-7
        assert np.array_equal(np.floor(fast * 255 + 0.5), np.floor(slow * 255 + 0.5))
    assert eight_bit_codes(img) is not None and global_table(img + np.float32(1e-4), 0.5, rolloff=True) is None


def test_expert_style_from_the_table_matches_the_float_path(photo):
    """The expert look's bracket fused from the exposure table (``fuse_table_exposures``) agrees with the fusion of
    the exposed float photo: the same 16-bit-rounded exposures, so within the fusion's own run-to-run noise."""
    from deepexposure.image.look import apply_style, load_look
    from deepexposure.image.render import global_table

    img = _eight_bit(photo)
    codes, table = global_table(img, 0.6, rolloff=True)
    style = load_look("expert").style
    fast = apply_style(None, style, table=(codes, table))
    slow = apply_style(cv2.LUT(codes, table), style)
    assert np.abs(fast - slow).max() < 2e-3
    assert np.mean(np.floor(fast * 255 + 0.5) != np.floor(slow * 255 + 0.5)) < 1e-4


def test_codes_render_as_their_floats(photo, labels):
    """render() given the 8-bit codes themselves (what read_photo keeps of an 8-bit photo, so that the fusion and
    the global exposure never make the float copy) gives exactly what it gives for codes / 255, for every
    renderer, with and without labels, a style and a strength (the fusion within its own run-to-run float noise:
    OpenCV's vector loops round the last bit differently with the buffers' alignment, see fusion's module doc)."""
    from deepexposure.image.photo import from_float

    codes = from_float(photo)
    floats = codes.astype(np.float32) / np.float32(255)
    evs = list(_evs(labels))
    cases = [(Recipe.from_evs([-1.0, 1.0, 2.0]), "fusion", 1.0), (Recipe.from_evs([0.8]), "rolloff", 1.0),
             (Recipe.from_evs([0.8]), "local", 0.5), (Recipe.from_evs([0.0]), "fusion", 1.0),
             (Recipe(evs=evs, labels=labels, renderer="local"), "local", 1.0),
             (Recipe(evs=evs, labels=labels, renderer="balanced"), "balanced", 0.7),
             (Recipe(evs=evs, labels=labels, renderer="rolloff",
                     style={"bracket": [-1.0, 1.0], "contrast": 1.2, "saturation": 1.1}), "rolloff", 1.0),
             (Recipe(evs=[0.5], labels=None, renderer="rolloff", style={"contrast": 1.3}), "rolloff", 1.0)]
    for recipe, renderer, strength in cases:
        a = render(codes, recipe, renderer=renderer, strength=strength)
        b = render(floats, recipe, renderer=renderer, strength=strength)
        assert a.dtype == np.float32 and a.shape == b.shape
        if renderer in ("fusion", "balanced") or (recipe.style or {}).get("bracket"):  # these fuse
            np.testing.assert_allclose(a, b, rtol=0, atol=3e-7, err_msg=f"{renderer} {recipe.evs} {recipe.style}")
        else:
            np.testing.assert_array_equal(a, b, err_msg=f"{renderer} {recipe.evs} {recipe.style}")
    assert codes.dtype == np.uint8  # not modified
