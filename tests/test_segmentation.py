"""Segmentation: Felzenszwalb partition, Ward merging, ordering, soft masks, EV maps, overlay."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage.color import rgb2lab
from skimage.segmentation import felzenszwalb

from deepexposure.image.color import luminance
from deepexposure.image.io import read_photo
from deepexposure.image.segmentation import (
    SEGMENT_DEFAULTS,
    SOFT_MASK_DEFAULTS,
    guided_filter,
    make_preview,
    masks_from_labels,
    overlay,
    segment,
    segment_map,
    soft_masks,
    upsample_map,
)

PHOTOS = ["bsds500/test/10081.jpg", "bsds500/test/101027.jpg", "dicm/01.jpg", "dicm/05.jpg",
          "sun_hays80/abbey_sun_asztnlqhlrvirneh.jpg", "pip_sample_photos/astronaut.png", "pip_sample_photos/coffee.png",
          "msec_examples/fivek_rendered/a0964-20061224_140610__E6B7217_N1.5.JPG"]


def _photos(root: Path) -> list[np.ndarray]:
    paths = [root / p for p in PHOTOS if (root / p).is_file()]
    if len(paths) < 4:  # fall back to whatever BSDS test photos exist
        paths = sorted((root / "bsds500" / "test").glob("*.jpg"))[:6]
    assert len(paths) >= 4
    return [read_photo(p).pixels for p in paths]


@pytest.fixture(scope="module")
def photos(shared_data: Path) -> list[np.ndarray]:
    return _photos(shared_data)


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """True when two label images define the same partition (equal up to a relabelling)."""
    pairs = np.unique(np.stack([a.ravel(), b.ravel()], 1), axis=0)
    return len(pairs) == len(np.unique(a)) == len(np.unique(b))


def _ward_reference(labels: np.ndarray, lab: np.ndarray, max_segments: int) -> np.ndarray:
    """Slow, clear Ward merging: statistics recomputed from the label image at every step."""
    labels = np.unique(labels, return_inverse=True)[1].reshape(labels.shape)
    while len(np.unique(labels)) > max_segments:
        ids = np.unique(labels)
        stats = {i: (np.sum(labels == i), lab[labels == i].mean(axis=0)) for i in ids}
        pairs = set()
        for a, b in ((labels[:, :-1], labels[:, 1:]), (labels[:-1], labels[1:])):
            m = a != b
            pairs |= {(min(x, y), max(x, y)) for x, y in zip(a[m].tolist(), b[m].tolist(), strict=True)}
        best = None
        for i, j in sorted(pairs):
            (ai, mi), (aj, mj) = stats[i], stats[j]
            cost = ai * aj / (ai + aj) * float(((mi - mj) ** 2).sum())
            if best is None or cost < best[0]:
                best = (cost, i, j)
        labels = np.where(labels == best[2], best[1], labels)
    return labels


def _check_labels(labels: np.ndarray, max_segments: int) -> int:
    assert labels.dtype == np.int32 and labels.shape == (64, 64)
    n = int(labels.max()) + 1
    assert labels.min() == 0 and 1 <= n <= max_segments
    assert (np.bincount(labels.ravel(), minlength=n) > 0).all()  # every label non-empty
    return n


def test_make_preview_is_area_average():
    rng = np.random.default_rng(0)
    img = rng.random((128, 256, 3), dtype=np.float32)
    prev = make_preview(img)
    expected = img.reshape(64, 2, 64, 4, 3).mean(axis=(1, 3))
    assert prev.shape == (64, 64, 3) and prev.dtype == np.float32
    np.testing.assert_allclose(prev, expected, atol=1e-6)


def test_without_merging_partition_equals_skimage(photos):
    params = {k: v for k, v in SEGMENT_DEFAULTS.items() if k != "max_segments"}
    for img in photos:
        prev = make_preview(img)
        ref = felzenszwalb(prev.astype(np.float64), channel_axis=-1, **params)
        labels = segment(prev, max_segments=10_000, absorb_thin=False, **params)
        _check_labels(labels, 10_000)
        assert _same_partition(labels, ref)
        assert labels.max() + 1 == len(np.unique(ref))


def _is_thin(mask: np.ndarray) -> bool:
    """Clear restatement of the thinness rule: under a quarter of the pixels keep a full 3x3 neighbourhood."""
    p = np.pad(mask, 1, constant_values=True)
    core = np.ones_like(mask)
    for dy in range(3):
        for dx in range(3):
            core &= p[dy:dy + mask.shape[0], dx:dx + mask.shape[1]]
    return core.sum() < mask.sum() / 4


def test_thin_absorption_only_merges_thin_regions(photos):
    params = {k: v for k, v in SEGMENT_DEFAULTS.items() if k != "max_segments"}
    absorbed = 0
    for img in photos:
        prev = make_preview(img)
        ref = felzenszwalb(prev.astype(np.float64), channel_axis=-1, **params)
        labels = segment(prev, max_segments=10_000, **params)
        n = _check_labels(labels, 10_000)
        # every Felzenszwalb region lies inside one segment, and no segment is thin
        for r in np.unique(ref):
            assert len(np.unique(labels[ref == r])) == 1
        assert n == 1 or not any(_is_thin(labels == k) for k in range(n))
        # a segment of several Felzenszwalb regions holds a thin one: only thin regions start a merge (a thin strip
        # absorbed into a region can leave it thin in turn, so two non-thin regions may end up joined by it)
        for k in range(n):
            regions = np.unique(ref[labels == k])
            assert len(regions) == 1 or any(_is_thin(ref == r) for r in regions)
        absorbed += len(np.unique(ref)) - n
    assert absorbed > 0


def test_merging_matches_slow_reference_and_respects_max(photos):
    params = {k: v for k, v in SEGMENT_DEFAULTS.items() if k != "max_segments"}
    counts = []
    for img in photos:
        prev = make_preview(img)
        fh = felzenszwalb(prev.astype(np.float64), channel_axis=-1, **params)
        counts.append(len(np.unique(fh)))
        for max_segments in (1, 3, 6):
            labels = segment(prev, max_segments=max_segments, absorb_thin=False, **params)
            n = _check_labels(labels, max_segments)
            assert n == min(max_segments, counts[-1])
            if max_segments > 1:
                assert _same_partition(labels, _ward_reference(fh, rgb2lab(prev), max_segments))
            _check_labels(segment(prev, max_segments=max_segments, **params), max_segments)
    assert max(counts) > 6  # the merge step was exercised


def test_order_is_ascending_luminance(photos):
    for img in photos:
        prev = make_preview(img)
        labels = segment(prev)
        lum = luminance(prev)
        means = [lum[labels == k].mean() for k in range(labels.max() + 1)]
        assert np.all(np.diff(means) >= -1e-6)


def test_four_flat_quadrants():
    colours = {(0, 0): (0.9, 0.9, 0.9), (0, 1): (0.05, 0.05, 0.1), (1, 0): (0.2, 0.6, 0.2), (1, 1): (0.8, 0.2, 0.2)}
    img = np.zeros((64, 64, 3), np.float32)
    for (r, c), col in colours.items():
        img[r * 32:(r + 1) * 32, c * 32:(c + 1) * 32] = col
    # expected order: by Rec.709 luminance computed here in linear light
    lin = {q: (np.array(col) ** 2.2) @ [0.2126, 0.7152, 0.0722] for q, col in colours.items()}
    rank = {q: i for i, q in enumerate(sorted(lin, key=lin.get))}
    for max_segments in (4, 6):
        exact = segment(img, max_segments=max_segments, sigma=0.0)  # no pre-smoothing: exact quadrants
        smooth = segment(img, max_segments=max_segments)  # sigma 0.5: the blurred seams are absorbed
        assert exact.max() == 3 and smooth.max() == 3
        for (r, c), k in rank.items():
            assert (exact[r * 32:(r + 1) * 32, c * 32:(c + 1) * 32] == k).all()
            assert (smooth[r * 32 + 2:(r + 1) * 32 - 2, c * 32 + 2:(c + 1) * 32 - 2] == k).all()


def test_tie_break_by_area_then_first_pixel():
    img = np.full((64, 64, 3), 0.5, np.float32)
    img[:, 40:] = (0.9, 0.1, 0.1)  # right strip
    img[40:, :40] = (0.1, 0.1, 0.9)  # bottom-left block
    img[:20, 44:60] = 0.5  # a smaller grey island inside the red strip, same luminance as the big grey region
    labels = segment(img)
    assert labels.max() + 1 == 4
    big, small = labels[0, 0], labels[5, 50]
    assert big != small and small == big + 1  # equal luminance: larger area first
    img2 = np.full((64, 64, 3), 0.2, np.float32)
    img2[:32, :32] = img2[32:, 32:] = 0.7  # diagonal quadrants: same colour, same area, not connected
    labels2 = segment(img2)
    assert labels2.max() + 1 == 4
    # ties on luminance and area: the first pixel in raster order comes first
    assert (labels2[0, 63], labels2[63, 0], labels2[0, 0], labels2[63, 63]) == (0, 1, 2, 3)


def test_deterministic_and_constant_image(photos):
    prev = make_preview(photos[0])
    before = prev.copy()
    a, b = segment(prev), segment(prev.copy())
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(prev, before)  # input not modified
    const = np.full((64, 64, 3), 0.4, np.float32)
    np.testing.assert_array_equal(segment(const), np.zeros((64, 64), np.int32))
    assert soft_masks(segment(const), np.full((50, 70, 3), 0.4, np.float32)).shape == (1, 50, 70)
    with pytest.raises(ValueError):
        segment(prev, max_segments=0)


def test_masks_from_labels():
    labels = np.array([[0, 1, 1], [2, 2, 0]], np.int32)
    m = masks_from_labels(labels)
    assert m.shape == (3, 2, 3) and m.dtype == np.float32
    np.testing.assert_array_equal(m.argmax(0), labels)
    np.testing.assert_array_equal(m.sum(0), 1)
    assert masks_from_labels(labels, 5).shape == (5, 2, 3)


def _reference_guided_filter(guide: np.ndarray, src: np.ndarray, r: int, eps: float) -> np.ndarray:
    """He et al.'s algorithm with explicit windows; borders reflected with the edge repeated (cv2.BORDER_REFLECT)."""
    def box(x):
        p = np.pad(x.astype(np.float64), r, mode="symmetric")
        out = np.zeros_like(x, dtype=np.float64)
        for y in range(x.shape[0]):
            for xx in range(x.shape[1]):
                out[y, xx] = p[y:y + 2 * r + 1, xx:xx + 2 * r + 1].mean()
        return out
    mi, ms = box(guide), box(src)
    a = (box(guide * src) - mi * ms) / (box(guide * guide) - mi * mi + eps)
    b = ms - a * mi
    return box(a) * guide + box(b)


def test_guided_filter_matches_reference():
    rng = np.random.default_rng(1)
    guide = rng.random((19, 23)).astype(np.float32)
    guide[:, 12:] += 0.8
    src = (rng.random((19, 23)) > 0.5).astype(np.float32)
    ref = _reference_guided_filter(guide, src, 2, 1e-2)
    np.testing.assert_allclose(guided_filter(guide, src, radius=2, eps=1e-2), ref, atol=1e-4)
    stacked = np.stack([src, 1 - src], axis=2)
    out = guided_filter(guide, stacked, radius=2, eps=1e-2)
    np.testing.assert_allclose(out[..., 0], ref, atol=1e-4)
    np.testing.assert_allclose(out[..., 1], _reference_guided_filter(guide, 1 - src, 2, 1e-2), atol=1e-4)


def _distances(labels: np.ndarray, k: int, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Full-res distance (pixels) of each pixel to the nearest pixel outside / inside segment k (nearest-upsampled)."""
    inside = cv2.resize((labels == k).astype(np.uint8), shape[::-1], interpolation=cv2.INTER_NEAREST)
    d_in = cv2.distanceTransform(np.pad(inside, 1, constant_values=1), cv2.DIST_L2, 5)[1:-1, 1:-1]
    d_out = cv2.distanceTransform(np.pad(1 - inside, 1, constant_values=1), cv2.DIST_L2, 5)[1:-1, 1:-1]
    return d_in, d_out


def test_soft_masks_partition_of_unity_and_local(photos):
    for img in photos[:4]:
        labels = segment(make_preview(img))
        n = labels.max() + 1
        masks = soft_masks(labels, img)
        assert masks.shape == (n, *img.shape[:2]) and masks.dtype == np.float32
        assert masks.min() >= 0 and masks.max() <= 1 + 1e-6
        np.testing.assert_allclose(masks.sum(0), 1, atol=1e-5)
        # the filter reaches 2 radii (a, b are box means of box means) plus one preview cell of nearest upsampling
        cell = max(img.shape[:2]) / 64
        margin = (2 * SOFT_MASK_DEFAULTS["feather"] + 1.5) * cell
        for k in range(n):
            d_in, d_out = _distances(labels, k, img.shape[:2])
            deep = d_in > margin
            if deep.any():
                assert masks[k][deep].min() > 0.99  # ~1 deep inside its segment
            assert masks[k][d_out > margin].max() < 0.01  # ~0 far outside: transitions only near boundaries
            assert (d_in > margin).mean() + (d_out > margin).mean() > 0.3  # the test covers much of the photo


def test_edge_transition_is_sharp_at_full_resolution():
    """A sharp photo edge between two segments: the EV map steps within a few pixels of it (no halo)."""
    rng = np.random.default_rng(2)
    H, W, edge = 200, 3000, 1311  # edge not on the preview grid; 3000 px wide > working resolution
    img = np.full((H, W, 3), 0.15, np.float32)
    img[:, edge:] = 0.75
    img += rng.normal(0, 0.005, img.shape).astype(np.float32)
    img = np.clip(img, 0, 1)
    labels = segment(make_preview(img))
    assert labels.max() == 1
    ev = segment_map(labels, [1.0, -1.0], img)
    assert ev.min() >= -1 and ev.max() <= 1
    # beyond 4 px from the edge every pixel is within 0.1 EV (5% of the step) of its side's value ...
    np.testing.assert_allclose(ev[:, : edge - 4], 1.0, atol=0.1)
    np.testing.assert_allclose(ev[:, edge + 4:], -1.0, atol=0.1)
    # ... and 90% of the 2 EV step happens within 3 columns
    col = ev.mean(axis=0)
    assert col[edge - 2] - col[edge + 1] > 1.8
    # without the guide, the same filter radius would spread the step over ~2 * 2 preview cells (~190 px)
    plain = segment_map(labels, [1.0, -1.0], np.full_like(img, 0.5))
    assert np.abs(plain[:, edge + 4] + 1).min() > 0.1


def test_segment_map_is_the_linear_blend_of_masks(photos):
    img = photos[0]
    labels = segment(make_preview(img))
    n = labels.max() + 1
    values = np.linspace(-1.0, 2.0, n)
    m = segment_map(labels, values, img)
    assert m.shape == img.shape[:2] and m.min() >= -1.0 - 1e-6 and m.max() <= 2.0 + 1e-6
    unclipped = upsample_map(values[labels], img)
    np.testing.assert_allclose(m, np.clip(unclipped, -1, 2), atol=1e-6)
    blend = np.tensordot(values, soft_masks(labels, img), axes=1)
    diff = np.abs(blend - m)
    assert diff.mean() < 0.01 * 3 and np.quantile(diff, 0.99) < 0.1 * 3
    np.testing.assert_array_equal(segment_map(labels, np.full(n, 0.7), img), np.float32(0.7))
    with pytest.raises(ValueError):
        segment_map(labels, values[:-1], img)


def test_overlay(photos):
    img = photos[1]
    before = img.copy()
    labels = segment(make_preview(img))
    out = overlay(img, labels)
    np.testing.assert_array_equal(img, before)
    H, W = img.shape[:2]
    assert out.shape == (H, W, 3) and out.dtype == np.uint8
    up = cv2.resize(labels, (W, H), interpolation=cv2.INTER_NEAREST)
    change = np.zeros((H, W), bool)
    change[:, 1:] |= up[:, 1:] != up[:, :-1]
    change[:, :-1] |= up[:, 1:] != up[:, :-1]
    assert change.any()
    assert np.mean((out[change] == 255).all(axis=1)) > 0.95  # boundaries drawn white (except under the numbers)
    # most pixels are the photo tinted by its segment's colour
    k0 = up == 0
    base = 0.7 * img[k0]
    tint = out[k0].astype(np.float32) / 255 - base
    med = np.median(tint, axis=0)
    assert np.mean(np.abs(tint - med).max(axis=1) < 2 / 255) > 0.8  # one constant tint per segment
    if labels.max() >= 1:
        k1 = up == 1
        med1 = np.median(out[k1].astype(np.float32) / 255 - 0.7 * img[k1], axis=0)
        assert np.abs(med - med1).max() > 0.05  # segments get different tints
