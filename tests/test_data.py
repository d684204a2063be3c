"""Data sets: synthetic degradation, previews (+ cache), paired folders, FiveK folds/layout, dev pairs, CLI."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import deepexposure.data as data
from deepexposure.apps.cli import main
from deepexposure.data import (
    DegradeConfig,
    Pair,
    degradation_ev_map,
    degrade,
    degraded_previews,
    fivek_experts,
    fivek_fold_ids,
    fivek_inputs,
    fivek_pairs,
    load_previews,
    make_dev_pairs,
    paired_folder,
    select_sice,
    select_sice_references,
)
from deepexposure.errors import DataError
from deepexposure.image.color import apply_ev, luminance, srgb_to_linear
from deepexposure.image.io import read_photo

EXPOSURE_ONLY = DegradeConfig.only("spatial", quantize=False)


def _smooth_image(h: int = 48, w: int = 64, *, lo: float = 0.02, hi: float = 0.12, seed: int = 0) -> np.ndarray:
    """sRGB image whose linear values lie in [lo, hi] (so that +-3.5 EV neither clips nor underflows)."""
    rng = np.random.default_rng(seed)
    lin = rng.uniform(lo, hi, size=(h, w, 3)).astype(np.float32)
    lin = cv2.GaussianBlur(lin, (0, 0), 2.0)
    from deepexposure.image.color import linear_to_srgb

    return linear_to_srgb(lin)


def _write_png(path: Path, rgb01: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.round(np.clip(rgb01, 0, 1) * 255).astype(np.uint8)).save(path)
    return path


# ---------------------------------------------------------------------------------------------------- degrade


def test_degrade_deterministic_json_and_input_untouched():
    x = _smooth_image()
    x0 = x.copy()
    a, pa = degrade(x, 123)
    b, pb = degrade(x, np.random.default_rng(123))
    c, pc = degrade(x, 124)
    assert np.array_equal(a, b) and pa == pb
    assert not np.array_equal(a, c)
    assert np.array_equal(x, x0)
    assert a.dtype == np.float32 and a.shape == x.shape and 0.0 <= a.min() and a.max() <= 1.0
    assert json.loads(json.dumps(pa)) == pa
    # quantised to 8 bits by default
    assert np.allclose(a * 255, np.round(a * 255), atol=1e-3)


def test_degrade_exposure_shift_matches_ev_map_and_ranges():
    x = _smooth_image()
    cfg = EXPOSURE_ONLY
    y_lum0 = luminance(x)
    n_under = 0
    for seed in range(120):
        y, p = degrade(x, seed, config=cfg)
        shift = np.log2(luminance(y) / y_lum0)  # measured per-pixel exposure change, EV
        ev = degradation_ev_map(p, x.shape[:2])
        # no clipping in this range: the measured shift is the documented EV map
        np.testing.assert_allclose(shift, ev, atol=2e-3)
        assert abs(float(shift.mean()) - p["ev_mean"]) < 2e-3
        g = p["global_ev"]
        assert (cfg.under_ev[0] <= g <= cfg.under_ev[1] or cfg.over_ev[0] <= g <= cfg.over_ev[1]
                or abs(g) <= cfg.correct_ev)
        assert np.abs(ev - g).max() <= cfg.local_max_ev + 1e-5
        assert cfg.under_ev[0] - cfg.local_max_ev - 1e-3 <= shift.mean() <= cfg.over_ev[1] + cfg.local_max_ev + 1e-3
        n_under += g < -cfg.correct_ev
    assert 0.35 < n_under / 120 < 0.65  # (1 - p_correct) * p_under = 0.49


def test_degrade_undone_by_inverse_ev_map_where_not_clipped(shared_data: Path):
    x = read_photo(shared_data / "bsds500" / "val" / sorted((shared_data / "bsds500" / "val").iterdir())[0].name).pixels
    for seed in range(4):
        y, p = degrade(x, seed, config=EXPOSURE_ONLY)
        back = apply_ev(y, -degradation_ev_map(p, x.shape[:2])[..., None])
        ok = (srgb_to_linear(y) < 0.999).all(axis=2) & (srgb_to_linear(y) > 1e-3).all(axis=2)
        assert ok.mean() > 0.5
        assert np.abs(back - x)[ok].max() < 2e-3


def test_degrade_real_photo_shift_follows_params(shared_data: Path):
    x = read_photo(shared_data / "bsds500" / "test" / "100007.jpg").pixels
    measured, expected, clipped = [], [], []
    for seed in range(25):
        y, p = degrade(x, seed, config=DegradeConfig.only("spatial"))
        ok = (x.max(axis=2) < 0.98) & (y.max(axis=2) < 0.98) & (luminance(x) > 0.01) & (luminance(y) > 0.003)
        measured.append(float(np.mean(np.log2(luminance(y)[ok] / luminance(x)[ok]))))
        expected.append(p["ev_mean"])
        # clipped_fraction: pixels pushed to 1 in some channel, from the linear values (independent count)
        lin = srgb_to_linear(x) * np.exp2(degradation_ev_map(p, x.shape[:2]))[..., None]
        assert p["clipped_fraction"] == pytest.approx(float(np.mean((lin >= 1).any(axis=2) & (x < 1).all(axis=2))))
        if p["global_ev"] < -1.0 and p["ev_max"] < -0.5:
            assert p["clipped_fraction"] == 0.0
        clipped.append(p["clipped_fraction"] if p["global_ev"] > 0 else 0.0)
    assert np.corrcoef(measured, expected)[0, 1] > 0.9
    assert max(clipped) > 0.01  # over-exposure of this photo does clip highlights
    # under-exposure shifts darken, over-exposure shifts brighten
    assert all(np.sign(m) == np.sign(e) for m, e in zip(measured, expected, strict=True) if abs(e) > 0.4)


def test_preview_degradation_close_to_fullres_then_preview(shared_data: Path):
    from deepexposure.image.segmentation import make_preview

    paths = sorted((shared_data / "bsds500" / "val").glob("*.jpg"))[:4]
    for i, path in enumerate(paths):
        x = read_photo(path).pixels
        full, _ = degrade(x, i, config=DegradeConfig.only("spatial"))
        small, _ = degrade(make_preview(x), i, config=DegradeConfig.only("spatial"))
        assert np.abs(make_preview(full) - small).mean() < 0.01


def test_degraded_previews_shapes_and_determinism():
    prev = np.stack([_smooth_image(16, 16, seed=s) for s in range(3)])
    a = degraded_previews(prev, seed=5, copies=2)
    b, params = degraded_previews(prev, seed=5, copies=2, return_params=True)
    assert a.shape == (6, 16, 16, 3) and a.dtype == np.float32
    assert np.array_equal(a, b) and len(params) == 6
    assert not np.array_equal(a[0], a[1])  # two copies of one preview differ
    # output i * copies + c is degrade(preview i) with the documented generator
    ref, _ = degrade(prev[2], data.degradation.image_rng(5, 2, 1))
    assert np.array_equal(a[5], ref)
    assert not np.array_equal(degraded_previews(prev, seed=6), a[::2])


# ---------------------------------------------------------------------------------------------------- previews


@pytest.fixture()
def photo_dir(tmp_path: Path) -> Path:
    d = tmp_path / "photos"
    rng = np.random.default_rng(0)
    for name, (h, w) in {"a.png": (40, 90), "b.png": (100, 70), "c.png": (64, 64)}.items():
        _write_png(d / name, rng.uniform(0, 1, (h, w, 3)))
    (d / "bad.jpg").write_bytes(b"not a jpeg at all")
    return d


def test_load_previews_matches_opencv_and_skips_corrupt(photo_dir: Path):
    with pytest.warns(UserWarning, match="skipped"):
        prev, kept = load_previews([photo_dir], size=32, progress=False)
    assert prev.shape == (3, 32, 32, 3) and prev.dtype == np.float32
    assert [p.name for p in kept] == ["a.png", "b.png", "c.png"]
    assert 0.0 <= prev.min() and prev.max() <= 1.0
    for i, p in enumerate(kept):
        ref = cv2.resize(cv2.imread(str(p))[..., ::-1].astype(np.float32) / 255, (32, 32), interpolation=cv2.INTER_AREA)
        np.testing.assert_allclose(prev[i], ref, atol=1e-5)


def test_load_previews_all_corrupt_is_data_error(photo_dir: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(DataError, match="none of the 1"):
            load_previews([photo_dir / "bad.jpg"], progress=False)
    with pytest.raises(DataError):
        load_previews([photo_dir / "missing.png"], progress=False)


def test_load_previews_cache_hit_and_invalidation(photo_dir: Path, tmp_path: Path, monkeypatch):
    files = [photo_dir / "a.png", photo_dir / "b.png"]
    cache = tmp_path / "cache"
    first, kept1 = load_previews(files, cache_dir=cache, progress=False)
    assert len(list(cache.glob("previews-64-*.npz"))) == 1

    def no_read(*a, **k):
        raise AssertionError("photo decoded although cached")

    monkeypatch.setattr(data.previews, "read_photo", no_read)
    again, kept2 = load_previews(files, cache_dir=cache, progress=False)
    assert np.array_equal(first, again) and again.dtype == np.float32 and kept1 == kept2
    # a changed file (new mtime) misses the cache
    st = files[0].stat()
    os.utime(files[0], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    with pytest.raises(AssertionError, match="decoded"):
        load_previews(files, cache_dir=cache, progress=False)


# ---------------------------------------------------------------------------------------------------- pairs


def test_paired_folder_real_fivek(shared_data: Path):
    pairs = paired_folder(shared_data / "fivek_deeplpf")
    assert len(pairs) == 8 and all(isinstance(p, Pair) for p in pairs)
    assert [p.stem for p in pairs] == sorted(p.stem for p in pairs)
    for p in pairs:
        assert p.input_path.parent.name == "input" and p.target_path.parent.name == "target"
        assert p.input_path.stem == p.target_path.stem == p.stem
        with Image.open(p.input_path) as a, Image.open(p.target_path) as b:
            assert a.size == b.size


def test_paired_folder_missing_target_and_errors(tmp_path: Path):
    img = np.full((8, 8, 3), 0.5)
    for s in ("x1", "x2", "x3"):
        _write_png(tmp_path / "ds" / "input" / f"{s}.png", img)
    for s in ("x1", "x3"):
        _write_png(tmp_path / "ds" / "target" / f"{s}.png", img)
    with pytest.warns(UserWarning, match="1 inputs without a target skipped: x2"):
        pairs = paired_folder(tmp_path / "ds")
    assert [p.stem for p in pairs] == ["x1", "x3"]
    _write_png(tmp_path / "half" / "input" / "x1.png", img)
    with pytest.raises(DataError, match="no 'target' folder"):
        paired_folder(tmp_path / "half")
    _write_png(tmp_path / "none" / "input" / "a.png", img)
    _write_png(tmp_path / "none" / "target" / "b.png", img)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(DataError, match="no input/target pair"):
            paired_folder(tmp_path / "none")


# ---------------------------------------------------------------------------------------------------- FiveK


def test_fivek_fold_files():
    folds = {f: fivek_fold_ids(f) for f in ("train_input", "train_expert", "test")}
    assert {f: len(v) for f, v in folds.items()} == {"train_input": 2000, "train_expert": 2000, "test": 1000}
    sets = {f: set(v) for f, v in folds.items()}
    assert all(len(sets[f]) == len(folds[f]) for f in folds)
    assert not (sets["train_input"] & sets["train_expert"] or sets["train_input"] & sets["test"]
                or sets["train_expert"] & sets["test"])
    assert set().union(*sets.values()) == {f"a{i:04d}" for i in range(1, 5001)}
    assert folds["train_input"][0] == "a0001" and folds["train_expert"][0] == "a2001" and folds["test"][-1] == "a5000"
    with pytest.raises(DataError, match="unknown FiveK fold"):
        fivek_fold_ids("val")


@pytest.fixture()
def fivek_root(tmp_path: Path) -> Path:
    root = tmp_path / "fivek"
    img = np.full((6, 9, 3), 0.4)
    for name in ("a0001-jmac_DSC1459.png", "a0002.png", "a4001.png", "a4002-x.png", "a4003.png", "notes.png"):
        _write_png(root / "InputAsShotZeroed" / name, img)
    for name in ("a2001.png", "a4001.png", "a4002.png", "a0001.png"):
        _write_png(root / "ExpertC" / name, img)
    return root


def test_fivek_layout_on_fixture(fivek_root: Path):
    with pytest.warns(UserWarning, match="998 of 1000 ids missing"):
        pairs = fivek_pairs(fivek_root)
    assert [(p.stem, p.input_path.name, p.target_path.name) for p in pairs] == [
        ("a4001", "a4001.png", "a4001.png"), ("a4002", "a4002-x.png", "a4002.png")]
    with pytest.warns(UserWarning, match="1998 of 2000"):
        assert [p.name for p in fivek_inputs(fivek_root)] == ["a0001-jmac_DSC1459.png", "a0002.png"]
    with pytest.warns(UserWarning, match="1999 of 2000"):
        assert [p.name for p in fivek_experts(fivek_root)] == ["a2001.png"]
    with pytest.raises(DataError, match="no FiveK expert B folder.*expertB"):
        fivek_pairs(fivek_root, expert="B")
    with pytest.raises(DataError, match="no FiveK input folder.*InputAsShotZeroed"):
        fivek_pairs(fivek_root / "ExpertC")
    with pytest.raises(DataError, match="unknown FiveK expert"):
        fivek_pairs(fivek_root, expert="Z")


def test_fivek_pairs_on_real_deeplpf_export(shared_data: Path):
    root = shared_data / "fivek_deeplpf"
    with pytest.warns(UserWarning, match="992 of 1000"):
        pairs = fivek_pairs(root, fold="test")
    assert pairs == paired_folder(root)


# ---------------------------------------------------------------------------------------------------- dev pairs


@pytest.fixture()
def sources(tmp_path: Path, shared_data: Path) -> list[Path]:
    big = _write_png(tmp_path / "src" / "wide.png", cv2.resize(
        read_photo(shared_data / "bsds500" / "test" / "100007.jpg").pixels, (700, 300)))
    return [shared_data / "bsds500" / "test" / "100007.jpg", big]


def test_make_dev_pairs_sizes_record_and_reproducible(sources: list[Path], tmp_path: Path):
    spatial = DegradeConfig.only("spatial")
    pairs = make_dev_pairs(sources, tmp_path / "d1", seed=3, long_edge=512, config=spatial)
    assert [p.stem for p in pairs] == ["100007", "wide"]
    rec = json.loads((tmp_path / "d1" / "degradations.json").read_text())
    assert rec["seed"] == 3 and rec["config"] == spatial.to_dict()
    for p in pairs:
        inp, tgt = read_photo(p.input_path).pixels, read_photo(p.target_path).pixels
        assert inp.shape == tgt.shape and max(tgt.shape[:2]) <= 512
        r = rec["images"][p.stem]
        assert (r["width"], r["height"]) == (tgt.shape[1], tgt.shape[0])
        # the recorded params reproduce the input from the target
        prm = r["params"]
        y = apply_ev(tgt, degradation_ev_map(prm, tgt.shape[:2])[..., None])
        if prm["tone_gamma"] is not None:
            y = y ** prm["tone_gamma"]
        assert np.abs(y - inp).max() <= 1 / 255 + 1e-4
    src_wide = read_photo(sources[1]).pixels
    ref = cv2.resize(src_wide, (512, round(300 * 512 / 700)), interpolation=cv2.INTER_AREA)
    assert np.abs(read_photo(tmp_path / "d1" / "target" / "wide.png").pixels - ref).max() <= 0.5 / 255 + 1e-4
    assert read_photo(tmp_path / "d1" / "target" / "100007.png").pixels.shape == (321, 481, 3)  # not upscaled

    make_dev_pairs(sources, tmp_path / "d2", seed=3, long_edge=512, config=spatial)
    for rel in ("input/100007.png", "target/wide.png", "input/wide.png", "degradations.json"):
        assert (tmp_path / "d1" / rel).read_bytes() == (tmp_path / "d2" / rel).read_bytes(), rel
    make_dev_pairs(sources, tmp_path / "d3", seed=4, long_edge=512)
    assert (tmp_path / "d1" / "input/wide.png").read_bytes() != (tmp_path / "d3" / "input/wide.png").read_bytes()

    with pytest.raises(DataError, match="not empty"):
        make_dev_pairs(sources, tmp_path / "d1", seed=3)
    make_dev_pairs(sources, tmp_path / "d1", seed=3, overwrite=True)
    twin = _write_png(tmp_path / "other" / "wide.png", np.zeros((4, 4, 3)))
    with pytest.raises(DataError, match="two sources named wide"):
        make_dev_pairs([sources[1], twin], tmp_path / "d4")


def test_cli_make_pairs(sources: list[Path], tmp_path: Path):
    runner = CliRunner()
    out = tmp_path / "dev"
    res = runner.invoke(main, ["make-pairs", *map(str, sources), "-o", str(out), "--limit", "1", "--long-edge", "256"])
    assert res.exit_code == 0, res.output
    assert [p.name for p in (out / "input").iterdir()] == ["100007.png"]
    with Image.open(out / "target" / "100007.png") as im:
        assert max(im.size) == 256
    res = runner.invoke(main, ["make-pairs", str(sources[0]), "-o", str(out)])
    assert res.exit_code == 2 and "not empty" in res.output
    res = runner.invoke(main, ["make-pairs", str(sources[0]), "-o", str(out), "--overwrite", "--seed", "1"])
    assert res.exit_code == 0, res.output


# ---------------------------------------------------------------------------------------------------- SICE


def test_select_sice_fixture(tmp_path: Path):
    d = tmp_path / "sice" / "images"
    d.mkdir(parents=True)
    for name, grey in {"1.jpg": 0.05, "2.jpg": 0.45, "3.jpg": 0.9, "4.jpg": 0.3}.items():
        Image.fromarray(np.full((40, 50, 3), round(grey * 255), np.uint8)).save(d / name)
    assert [p.name for p in select_sice(tmp_path / "sice")] == ["1.jpg", "3.jpg"]
    assert [p.name for p in select_sice(d, dark_max=0.35, bright_min=0.95)] == ["1.jpg", "4.jpg"]
    with pytest.raises(DataError, match="no frame"):
        select_sice(d, dark_max=0.01, bright_min=0.99)


def test_select_sice_references_fixture(tmp_path: Path):
    d = tmp_path / "sice" / "images"
    d.mkdir(parents=True)
    greys = {1: 0.1, 2: 0.3, 3: 0.5, 4: 0.8,   # run 1: frame 3 is closest to 0.45
             5: 0.05, 6: 0.1, 7: 0.9,          # run 2: best frame 6 (0.1) lies outside the band -> none
             8: 0.44, 9: 0.49,                 # run 3: too short (2 frames)
             10: 0.2, 11: 0.42, 12: 0.7}       # run 4: frame 11
    for n, g in greys.items():
        Image.fromarray(np.full((40, 50, 3), round(g * 255), np.uint8)).save(d / f"{n}.jpg")
    (tmp_path / "sice" / "sequences_guess.csv").write_text(
        "# comment line\nrun,first,last,count\n0,1,4,4\n1,5,7,3\n2,8,9,2\n3,10,12,3\n")
    assert [p.name for p in select_sice_references(tmp_path / "sice")] == ["3.jpg", "11.jpg"]
    assert [p.name for p in select_sice_references(tmp_path / "sice", min_frames=2)] == ["3.jpg", "8.jpg", "11.jpg"]
    with pytest.raises(DataError, match="no runs file"):
        select_sice_references(d)
    with pytest.raises(DataError, match="no bracket"):
        select_sice_references(tmp_path / "sice", band=(0.95, 1.0))


def test_select_sice_references_real_set(shared_data: Path):
    chosen = select_sice_references(shared_data / "sice_zerodcepp")
    assert 150 < len(chosen) <= 272  # at most one per run
    for p in chosen[::40]:
        m = float(read_photo(p).pixels.mean())  # full decode: the slow, clear reference
        assert 0.28 <= m <= 0.62, (p, m)


def test_select_sice_real_frames_agree_with_full_decode(shared_data: Path):
    root = shared_data / "sice_zerodcepp"
    chosen = select_sice(root)
    every = sorted((root / "images").glob("*.jpg"))
    assert 0.2 * len(every) < len(chosen) < 0.8 * len(every)
    rng = np.random.default_rng(0)
    chosen_set = set(chosen)
    checked = {True: 0, False: 0}
    for p in rng.choice(every, size=24, replace=False):
        m = float(read_photo(p).pixels.mean())  # full-resolution decode: the slow, clear reference
        if m <= data.SICE_DARK_MAX - 0.01 or m >= data.SICE_BRIGHT_MIN + 0.01:
            assert p in chosen_set, (p, m)
            checked[True] += 1
        elif data.SICE_DARK_MAX + 0.01 <= m <= data.SICE_BRIGHT_MIN - 0.01:
            assert p not in chosen_set, (p, m)
            checked[False] += 1
    assert checked[True] >= 3 and checked[False] >= 3
