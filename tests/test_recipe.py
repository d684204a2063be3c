"""Recipe: RLE, JSON round trip, validation, atomic save, clean DataError on bad files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from deepexposure.errors import DataError
from deepexposure.image.io import read_photo
from deepexposure.image.recipe import RECIPE_VERSION, Recipe, rle_decode, rle_encode
from deepexposure.image.segmentation import make_preview, segment


def _labels(seed: int = 0, n: int = 5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    lab = np.repeat(rng.integers(0, n, size=(64, 8)), 8, axis=1).astype(np.int32)
    lab[:n, 0] = np.arange(n)  # every label present
    return lab


def test_rle_known_answer_and_round_trip(shared_data: Path):
    code = rle_encode(np.array([[0, 0, 1], [1, 1, 2]]))
    assert code == {"shape": [2, 3], "values": [0, 1, 2], "counts": [2, 3, 1]}
    real = segment(make_preview(read_photo(shared_data / "dicm" / "01.jpg").pixels))
    for lab in (_labels(), real, np.zeros((64, 64), np.int32)):
        back = rle_decode(json.loads(json.dumps(rle_encode(lab))))
        assert back.dtype == np.int32
        np.testing.assert_array_equal(back, lab)


def test_json_round_trip_exact(tmp_path: Path):
    rng = np.random.default_rng(1)
    lab = _labels(1, 4)
    evs = list(rng.normal(0, 1.3, 4))  # arbitrary doubles: JSON keeps them exactly
    r = Recipe(evs=evs, labels=lab, renderer="local", model="policy-abc", segmentation={"scale": 300.0, "max_segments": 6})
    path = r.save(tmp_path / "sub" / "x.recipe.json")
    assert path.is_file() and os.listdir(path.parent) == ["x.recipe.json"]  # no temporary left
    back = Recipe.load(path)
    assert back == r and back.evs == evs and back.labels.dtype == np.int32
    np.testing.assert_array_equal(back.labels, lab)
    assert Recipe.from_dict(r.to_dict()) == r
    assert json.loads(path.read_text())["labels"]["shape"] == [64, 64]
    fusion = Recipe.from_evs([1, -0.5])
    assert fusion.labels is None and fusion.model == "manual" and fusion.renderer == "fusion"
    assert Recipe.load(fusion.save(tmp_path / "f.json")) == fusion
    assert back != fusion


def test_save_overwrites_atomically(tmp_path: Path, monkeypatch):
    path = tmp_path / "r.json"
    Recipe.from_evs([1.0]).save(path)
    Recipe.from_evs([2.0]).save(path)
    assert Recipe.load(path).evs == [2.0]

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(DataError, match="disk full"):  # one-line user error, not a raw OSError
        Recipe.from_evs([3.0]).save(path)
    monkeypatch.undo()
    assert Recipe.load(path).evs == [2.0]  # the old file is intact
    assert os.listdir(tmp_path) == ["r.json"]  # and the temporary file is gone


def test_validation():
    lab = _labels(2, 3)
    with pytest.raises(DataError, match="3 segments"):
        Recipe(evs=[1.0, 2.0], labels=lab)
    for bad in ([float("nan"), 0, 0], [float("inf"), 0, 0], ["x", 0, 0]):
        with pytest.raises(DataError):
            Recipe(evs=bad, labels=lab)
    with pytest.raises(DataError, match="renderer"):
        Recipe(evs=[1.0], renderer="magic")
    with pytest.raises(DataError):
        Recipe(evs=[1.0], labels=-np.ones((4, 4), np.int32))
    with pytest.raises(DataError, match="newer"):
        Recipe(evs=[1.0], version=RECIPE_VERSION + 1)


GOOD = Recipe(evs=[0.5, -1.0], labels=np.array([[0, 1], [1, 1]], np.int32), renderer="local").to_dict()


def _bad_files(tmp_path: Path) -> dict[str, Path]:
    files = {}

    def put(name: str, content: str | bytes) -> None:
        p = tmp_path / name
        p.write_bytes(content if isinstance(content, bytes) else content.encode())
        files[name] = p

    def variant(name: str, **changes) -> None:
        d = json.loads(json.dumps(GOOD))
        for k, v in changes.items():
            if k.startswith("labels_"):
                d["labels"][k[7:]] = v
            elif v is None:
                d.pop(k)
            else:
                d[k] = v
        put(name, json.dumps(d))

    put("binary.json", bytes(range(256)))
    put("garbled.json", json.dumps(GOOD)[:-10])
    put("list.json", "[1, 2]")
    put("empty.json", "")
    put("nan.json", json.dumps(GOOD).replace("0.5", "NaN"))
    variant("no_evs.json", evs=None)
    variant("string_evs.json", evs=["0.5", "-1"])
    variant("future.json", version=RECIPE_VERSION + 1)
    variant("renderer.json", renderer="magic")
    variant("count_mismatch.json", evs=[1.0])
    variant("rle_sum.json", labels_counts=[1, 2])
    variant("rle_negative.json", labels_values=[-1, 1])
    variant("rle_float.json", labels_values=[0.5, 1])
    variant("rle_shape.json", labels_shape=[4])
    variant("labels_not_object.json", labels=[0, 1, 1, 1])
    variant("segmentation_list.json", segmentation=[1])
    files["missing.json"] = tmp_path / "missing.json"
    files["directory"] = tmp_path
    return files


def test_bad_files_raise_one_line_data_error(tmp_path: Path):
    Recipe.from_dict(GOOD)  # the template itself is valid
    for name, path in _bad_files(tmp_path).items():
        with pytest.raises(DataError) as info:
            Recipe.load(path)
        msg = str(info.value)
        assert "\n" not in msg and str(path) in msg, name
