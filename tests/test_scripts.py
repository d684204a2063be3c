"""The dev-set scripts report what deepexposure.evaluation measures (no PSNR or oracle of their own)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from deepexposure.data import paired_folder
from deepexposure.evaluation import evaluate_pairs, psnr, summarize
from deepexposure.image.color import apply_ev
from deepexposure.image.io import Photo, read_photo, write_photo

REPO = Path(__file__).resolve().parents[1]


def _script(name: str):
    """A script of scripts/ (tools users run) or experiments/ (the research probes), loaded as a module."""
    path = next(p for p in (REPO / "scripts" / f"{name}.py", REPO / "experiments" / f"{name}.py") if p.is_file())
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture()
def pairs(tmp_path: Path) -> Path:
    """Two small dev pairs from the repository's samples: target = the photo, input = it at -1.5 / +1 EV."""
    for sub in ("input", "target"):
        (tmp_path / sub).mkdir()
    for name, ev in (("dicm_02", -1.5), ("dicm_34", 1.0)):
        tgt = read_photo(REPO / "samples" / f"{name}.jpg").pixels
        tgt = cv2.resize(tgt, (tgt.shape[1] // 6, tgt.shape[0] // 6), interpolation=cv2.INTER_AREA)
        for sub, img in (("target", tgt), ("input", apply_ev(tgt, ev))):
            write_photo(tmp_path / sub / f"{name}.png", Photo(pixels=np.clip(img, 0, 1).astype(np.float32),
                                                                alpha=None, bit_depth=8, exif=None, icc_profile=None,
                                                                source=None, mode="RGB"))
    return tmp_path


def test_eval_dev_reports_the_evaluation_package_numbers(pairs: Path, capsys):
    from deepexposure.inference.loader import default_model_path

    got = _script("eval_dev").main(["--dev", str(pairs), "--policy", f"P={default_model_path()}"])
    ps = paired_folder(pairs)
    want = summarize(evaluate_pairs(ps, ["fixed-fusion", "oracle-global", "oracle-recipe"], long_edge=None,
                                    progress=False))
    for name in ("input", "fixed-fusion", "oracle-global", "oracle-recipe"):
        assert got[name] == pytest.approx(want[name]["mean"]["psnr"], abs=1e-9), name
    ins = [read_photo(p.input_path).pixels for p in ps]
    tgts = [read_photo(p.target_path).pixels for p in ps]
    assert got["input"] == pytest.approx(np.mean([psnr(i, t, long_edge=None) for i, t in zip(ins, tgts, strict=True)]))
    local = summarize(evaluate_pairs(ps, [str(default_model_path())], long_edge=None, renderer="local",
                                     progress=False))
    (name,) = set(local) - {"input"}
    assert got["P local"] == pytest.approx(local[name]["mean"]["psnr"], abs=1e-9)
    assert got["oracle-recipe"] > got["input"] and "P: mean EV" in capsys.readouterr().out


def test_diagnose_policy_uses_the_evaluation_oracle_and_psnr(pairs: Path, capsys, monkeypatch):
    from deepexposure.evaluation.baselines import oracle_recipe_evs

    script = _script("diagnose_policy")
    calls = {"oracle": 0, "psnr": 0}

    def counted(fn, key):
        def wrapper(*a, **kw):
            calls[key] += 1
            return fn(*a, **kw)
        return wrapper

    monkeypatch.setattr(script, "oracle_recipe_evs", counted(oracle_recipe_evs, "oracle"))
    monkeypatch.setattr(script, "psnr", counted(psnr, "psnr"))
    monkeypatch.setattr(sys, "argv", ["diagnose_policy.py", "--pairs", str(pairs)])
    script.main()
    out = capsys.readouterr().out
    assert "pairs: 2" in out
    assert calls["oracle"] == 2 and calls["psnr"] == 2 * (2 + len(script.SHIFTS))
    pol, orc = (float(out.split(k)[1].split(" dB")[0]) for k in ("policy ", "per-segment oracle "))
    assert orc >= pol  # the oracle's EVs are the best the search finds for the same renderer


def test_contact_sheet_spreads_over_the_set_and_refuses_oracles(tmp_path: Path, capsys) -> None:
    sheet_mod = _script("contact_sheet")
    photos = tmp_path / "photos"
    photos.mkdir()
    src = read_photo(REPO / "samples" / "dicm_02.jpg").pixels
    small = cv2.resize(src, (48, 32), interpolation=cv2.INTER_AREA)
    for i in range(6):  # six photos, each a different brightness, so rows can be told apart
        write_photo(photos / f"{i:02d}.png", Photo(pixels=np.clip(apply_ev(small, i - 3), 0, 1).astype(np.float32),
                                                    alpha=None, bit_depth=8, exif=None, icc_profile=None, source=None,
                                                    mode="RGB"))
    out = tmp_path / "sheet.jpg"
    sheet_mod.main(["--photos", str(photos), "--limit", "3", "-m", "identity", "-m", "fixed-fusion",
                    "--tile", "64", "--out", str(out)])
    printed = capsys.readouterr().out.split()
    assert printed[:3] == ["00.png", "02.png", "04.png"]  # every 2nd photo of 6, not the first 3
    sheet = cv2.imread(str(out))
    assert sheet is not None and sheet.shape[0] > 3 * 64 and sheet.shape[1] > 2 * 64
    with pytest.raises(SystemExit, match="oracles need targets"):
        sheet_mod.main(["--photos", str(photos), "-m", "oracle-global", "--out", str(tmp_path / "x.jpg")])
    assert not (tmp_path / "x.jpg").exists()
