"""Real retouched pairs as training inputs WITH targets: ``train --pairs DIR``, ``--pairs-repeat``, ``--fivek
--fivek-paired`` (dataset.build_training_data, data.load_pair_previews, data.fivek_paired_inputs)."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import os
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import REPO
from deepexposure.errors import DataError
from deepexposure.image.color import apply_ev
from deepexposure.image.io import read_photo, write_photo
from deepexposure.image.segmentation import make_preview
from deepexposure.learning.config import TrainConfig
from deepexposure.learning.dataset import build_training_data
from deepexposure.learning.trainer import Trainer
from test_hostile import _cli, _one_error  # one copy of the CLI helpers
from test_training import _cfg as tiny_config  # one copy of the tiny training config

SAMPLES = sorted((REPO / "samples").glob("*.jpg"))
SEG = TrainConfig().segmentation()


def _small(path: Path, long_edge: int = 96) -> np.ndarray:
    """A sample photo, area-downscaled to ``long_edge`` px (sRGB [0, 1] float32)."""
    px = read_photo(path).pixels
    h, w = px.shape[:2]
    s = long_edge / max(h, w)
    return cv2.resize(px, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)


def _pair(root: Path, stem: str, photo: np.ndarray, ev: float = -1.0, target: np.ndarray | None = None) -> None:
    """``root/target/<stem>.png`` = ``target`` (default: the photo), ``root/input/<stem>.png`` = the photo exposed
    by ``ev`` stops."""
    (root / "input").mkdir(parents=True, exist_ok=True)
    (root / "target").mkdir(parents=True, exist_ok=True)
    write_photo(root / "target" / f"{stem}.png", photo if target is None else target)
    write_photo(root / "input" / f"{stem}.png", apply_ev(photo, ev))


@pytest.fixture()
def paired_dir(tmp_path: Path) -> Path:
    """4 pairs (target = a small sample photo, input = the same 1 EV darker), stems out of file-system order."""
    root = tmp_path / "pairs"
    for stem, path in zip(("d", "b", "c", "a"), SAMPLES[:4], strict=True):
        _pair(root, stem, _small(path))
    return root


def _preview(path: Path) -> np.ndarray:
    return make_preview(read_photo(path).pixels)


def _old_cache_name(*, inputs=(), synthetic=(), experts=(), sice=(), sice_references=(), fivek_in=(), fivek_ex=(),
                    copies=4, seed=0, segmentation=SEG, degrade=None, degrade_size=128) -> str:
    """The training cache's file name as releases before ``--pairs`` computed it (their formula, copied verbatim),
    so that a cache built by them keeps being found."""
    from deepexposure import data
    from deepexposure.image.segmentation import SEGMENTATION_VERSION
    from deepexposure.learning.dataset import _file_list

    dcfg = data.DegradeConfig.from_dict(degrade or {})
    key = json.dumps({"v": 5, "segv": SEGMENTATION_VERSION, "degrade": dataclasses.asdict(dcfg),
                      "degrade_size": degrade_size,
                      "i": _file_list([*inputs, *fivek_in]), "s": _file_list(synthetic),
                      "e": _file_list([*experts, *fivek_ex]),
                      "c": _file_list(sice), "cr": _file_list(sice_references, extra=["sequences_guess.csv"]),
                      "copies": copies, "seed": seed, "seg": segmentation}, sort_keys=True)
    return f"train-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"


# ---------------------------------------------------------------------------------------------------- --pairs


def test_pairs_join_the_inputs_with_their_own_targets_in_stem_order(paired_dir: Path, tmp_path: Path):
    extra = tmp_path / "extra"  # an unpaired real input and clean photos for synthetic inputs
    extra.mkdir()
    write_photo(extra / "e.png", _small(SAMPLES[4]))
    d = build_training_data(inputs=[extra], pairs=[paired_dir], synthetic=[extra], copies=2,
                            experts=[paired_dir / "target"], segmentation=SEG, progress=False)
    stems = ["a", "b", "c", "d"]
    assert len(d.inputs) == 1 + 4 + 2  # real unpaired, real pairs, synthetic
    assert d.has_target.tolist() == [False] + [True] * 4 + [True] * 2
    np.testing.assert_array_equal(d.targets[0], 0)
    for k, s in enumerate(stems, start=1):
        np.testing.assert_allclose(d.inputs[k], _preview(paired_dir / "input" / f"{s}.png"), atol=1e-6)
        np.testing.assert_allclose(d.targets[k], _preview(paired_dir / "target" / f"{s}.png"), atol=1e-6)
    assert d.labels.shape == d.inputs.shape[:3]
    # the input really is the target 1 EV darker (not the target itself): the pair carries information
    assert d.inputs[1:5].mean() < 0.8 * d.targets[1:5].mean()


def test_pairs_repeat_gives_each_pair_n_consecutive_copies(paired_dir: Path):
    kw = {"pairs": [paired_dir], "experts": [paired_dir / "target"], "segmentation": SEG, "progress": False}
    once = build_training_data(**kw)
    thrice = build_training_data(**kw, pairs_repeat=3)
    assert len(once.inputs) == 4 and len(thrice.inputs) == 12 and thrice.has_target.all()
    for name in ("inputs", "targets", "labels"):
        np.testing.assert_array_equal(getattr(thrice, name), np.repeat(getattr(once, name), 3, axis=0))
    with pytest.raises(DataError, match="at least 1"):
        build_training_data(**kw, pairs_repeat=0)


def test_pair_with_another_aspect_ratio_is_skipped_with_one_warning(paired_dir: Path, tmp_path: Path):
    photo = _small(SAMPLES[4])
    h, w = photo.shape[:2]
    _pair(paired_dir, "crop", photo[:, : w // 2], target=photo)  # the input is the left half: ratio halved
    # a target at another size with the same ratio (0.5% off) is a pair: renders are often larger than inputs
    _pair(paired_dir, "big", photo, target=cv2.resize(photo, (2 * w + 1, 2 * h), interpolation=cv2.INTER_LINEAR))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        d = build_training_data(pairs=[paired_dir], experts=[paired_dir / "target"], segmentation=SEG,
                                progress=False)
    lines = [str(c.message) for c in caught]
    assert len(lines) == 1 and "pair crop skipped" in lines[0] and "aspect ratio" in lines[0], lines
    assert "\n" not in lines[0] and str(paired_dir / "input" / "crop.png") in lines[0]
    assert len(d.inputs) == 5  # a, b, big, c, d
    np.testing.assert_allclose(d.targets[2], _preview(paired_dir / "target" / "big.png"), atol=1e-6)


def test_rotated_target_is_reported_on_every_run_also_from_the_caches(paired_dir: Path, tmp_path: Path):
    """A target turned 90 degrees (its shape the input's transposed) is skipped with a warning naming it as rotated,
    on the first run and on cached reruns alike (the train cache, and the pair preview cache alone); before, a rerun
    from either cache skipped it without a word while the missing and extra files still warned."""
    photo = _small(SAMPLES[4])
    _pair(paired_dir, "turned", photo, target=np.ascontiguousarray(np.rot90(photo)))
    kw = dict(pairs=[paired_dir], experts=[paired_dir / "target"], segmentation=SEG, progress=False,
              cache_dir=tmp_path / "cache")

    def run() -> list[str]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert len(build_training_data(**kw).inputs) == 4
        return [str(c.message) for c in caught]

    first = run()
    assert len(first) == 1 and "pair turned skipped" in first[0] and "rotated" in first[0], first
    assert run() == first  # from the train cache
    for f in (tmp_path / "cache").glob("train-*.npz"):
        f.unlink()
    assert run() == first  # from the pair preview cache


def test_no_usable_pair_is_a_data_error(tmp_path: Path):
    photo = _small(SAMPLES[0])
    bad = tmp_path / "bad"
    _pair(bad, "x", photo[:, : photo.shape[1] // 2], target=photo)
    with pytest.warns(UserWarning, match="pair x skipped"), pytest.raises(DataError, match="none of the 1 pairs"):
        build_training_data(pairs=[bad], experts=[bad / "target"], segmentation=SEG, progress=False)
    lonely = tmp_path / "lonely"  # input/ and target/ with no stem in common
    _pair(lonely, "a", photo)
    (lonely / "target" / "a.png").rename(lonely / "target" / "b.png")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(DataError, match="no input/target pair"):
            build_training_data(pairs=[lonely], experts=[bad / "target"], segmentation=SEG, progress=False)
    with pytest.raises(DataError, match="no 'input' folder"):
        build_training_data(pairs=[tmp_path], experts=[bad / "target"], segmentation=SEG, progress=False)


def test_learned_global_and_warm_start_see_the_pairs(paired_dir: Path, tmp_path: Path):
    """Every real pair reaches Trainer._known_global_evs, and a pair darkened by 1 EV asks for about +1 EV."""
    d = build_training_data(pairs=[paired_dir], pairs_repeat=2, experts=[paired_dir / "target"], segmentation=SEG,
                            progress=False)
    t = Trainer(tiny_config(), d, tmp_path / "run", tensorboard=False, progress=False)
    x, evs = t._known_global_evs()
    assert len(x) == 8
    np.testing.assert_allclose(evs.cpu().numpy(), 1.0, atol=0.1)


def test_cache_key_covers_every_target_and_the_repeat_count(paired_dir: Path, tmp_path: Path):
    cache = tmp_path / "cache"  # experts apart from the targets: only the pair part of the key sees a target
    kw = {"experts": [SAMPLES[4]], "segmentation": SEG, "progress": False, "cache_dir": cache}

    def names() -> set[str]:
        return {p.name for p in cache.glob("train-*.npz")}

    # without the new options: the file name of earlier releases (their caches keep working)
    build_training_data(inputs=[paired_dir / "input"], **kw)
    assert names() == {_old_cache_name(inputs=[paired_dir / "input"], experts=[SAMPLES[4]])}
    build_training_data(inputs=[paired_dir / "input"], pairs=(), pairs_repeat=3, fivek_paired=False, **kw)
    assert len(names()) == 1  # the new options at rest (or a repeat with no pair to repeat) change nothing

    first = build_training_data(pairs=[paired_dir], **kw)
    assert len(names()) == 2
    build_training_data(pairs=[paired_dir], **kw)
    assert len(names()) == 2  # unchanged files: read back
    build_training_data(pairs=[paired_dir], pairs_repeat=2, **kw)
    assert len(names()) == 3
    # a target replaced under the same name (new content and mtime) rebuilds the data with the new target
    target = paired_dir / "target" / "c.png"
    write_photo(target, apply_ev(read_photo(target).pixels, 0.5), overwrite=True)
    st = target.stat()
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    changed = build_training_data(pairs=[paired_dir], **kw)
    assert len(names()) == 4
    np.testing.assert_allclose(changed.targets[2], _preview(target), atol=1e-6)
    assert not np.allclose(changed.targets[2], first.targets[2], atol=1e-3)
    np.testing.assert_array_equal(changed.targets[[0, 1, 3]], first.targets[[0, 1, 3]])


# ---------------------------------------------------------------------------------------------------- FiveK


@pytest.fixture()
def fivek_root(tmp_path: Path) -> Path:
    """train_input a0001-a0003 (a0003 without an expert C render), train_expert a2001-a2002."""
    from deepexposure.data import FIVEK_INPUT_DIRS, fivek_expert_dirs

    root = tmp_path / "fivek"
    inp, exp = root / FIVEK_INPUT_DIRS[2], root / fivek_expert_dirs("C")[0]
    inp.mkdir(parents=True)
    exp.mkdir()
    for i, path in enumerate(SAMPLES[:3], start=1):
        photo = _small(path)
        write_photo(inp / f"a{i:04d}-raw.png", apply_ev(photo, -1.0))
        if i < 3:
            write_photo(exp / f"a{i:04d}.png", photo)
    for i, path in enumerate(SAMPLES[3:5], start=2001):
        write_photo(exp / f"a{i}.png", _small(path))
    return root


def test_fivek_paired_uses_the_train_input_folds_own_renders(fivek_root: Path, tmp_path: Path):
    cache = tmp_path / "cache"
    kw = {"fivek": fivek_root, "segmentation": SEG, "progress": False, "cache_dir": cache}
    with pytest.warns(UserWarning) as rec:
        d = build_training_data(**kw, fivek_paired=True)
    msgs = [str(r.message) for r in rec]
    assert sum("1 of 3 inputs have no expert C render" in m and "used unpaired" in m for m in msgs) == 1, msgs
    assert len(d.inputs) == 3 and len(d.experts) == 2  # the critic's experts stay the train_expert fold
    assert d.has_target.tolist() == [False, True, True]  # a0003 unpaired first, then a0001, a0002
    inp = fivek_root / "InputAsShotZeroed"
    np.testing.assert_allclose(d.inputs[0], _preview(inp / "a0003-raw.png"), atol=1e-6)
    for k, i in ((1, "a0001"), (2, "a0002")):
        np.testing.assert_allclose(d.inputs[k], _preview(inp / f"{i}-raw.png"), atol=1e-6)
        np.testing.assert_allclose(d.targets[k], _preview(fivek_root / "expertC" / f"{i}.png"), atol=1e-6)
    np.testing.assert_allclose(d.experts[0], _preview(fivek_root / "expertC" / "a2001.png"), atol=1e-6)

    with pytest.warns(UserWarning):  # the fold ids missing from the fixture
        plain = build_training_data(**kw)
    assert len(plain.inputs) == 3 and not plain.has_target.any()
    for k, i in enumerate(("a0001", "a0002", "a0003")):
        np.testing.assert_allclose(plain.inputs[k], _preview(inp / f"{i}-raw.png"), atol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from deepexposure.data import fivek_experts, fivek_inputs

        old = _old_cache_name(fivek_in=fivek_inputs(fivek_root), fivek_ex=fivek_experts(fivek_root))
    assert old in {p.name for p in cache.glob("train-*.npz")} and len(list(cache.glob("train-*.npz"))) == 2


def test_fivek_paired_without_any_render_or_without_fivek(fivek_root: Path):
    for f in (fivek_root / "expertC").glob("a000*"):
        f.unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(DataError, match="no expert C render of the 3 FiveK train_input inputs"):
            build_training_data(fivek=fivek_root, fivek_paired=True, segmentation=SEG, progress=False)
    with pytest.raises(DataError, match="--fivek-paired needs --fivek"):
        build_training_data(fivek_paired=True, inputs=[fivek_root], segmentation=SEG, progress=False)


# ---------------------------------------------------------------------------------------------------- CLI


def test_cli_refuses_fivek_paired_without_fivek_and_a_pairs_folder_without_input(paired_dir: Path, tmp_path: Path):
    _one_error(_cli("train", "--fivek-paired", "--inputs", paired_dir / "input", "--experts", paired_dir / "target",
                    "--out", tmp_path / "r1"), "--fivek-paired needs --fivek")
    assert not (tmp_path / "r1").exists()
    _one_error(_cli("train", "--pairs", paired_dir / "target", "--experts", paired_dir / "target",
                    "--out", tmp_path / "r2"), "no 'input' folder")


def test_cli_help_explains_the_options():
    out = _cli("train", "--help").output
    for opt in ("--pairs ", "--pairs-repeat", "--fivek-paired", "DIR/input", "expert C"):
        assert opt in out, opt


@pytest.mark.slow
def test_cli_trains_from_pairs_and_fits_learned_global(paired_dir: Path, tmp_path: Path):
    tiny_config("I", 2).save(tmp_path / "small.json")
    out = tmp_path / "runs" / "p"
    r = _cli("train", "--pairs", paired_dir, "--pairs-repeat", "2", "--experts", paired_dir / "target",
             "--out", out, "--steps", "2", "--config", tmp_path / "small.json")
    assert r.exit_code == 0, r.output
    assert "8 input previews (8 with a target)" in r.stderr
    assert (out / "policy.pt").is_file()
    if importlib.util.find_spec("sklearn") is not None:
        from deepexposure.learning.learned_global import LEARNED_GLOBAL_NAME

        assert (out / LEARNED_GLOBAL_NAME).is_file()
