"""The evaluate command and runner end to end on a tiny paired fixture; unpaired distances; reports."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from deepexposure.evaluation import compute_metrics, evaluate_pairs, summarize
from deepexposure.evaluation.unpaired import histogram_intersection, photo_histograms
from deepexposure.image.color import apply_ev
from deepexposure.image.io import Photo, read_photo, write_photo


def _write(path, pixels):
    write_photo(path, Photo(pixels=pixels, alpha=None, bit_depth=8, exif=None, icc_profile=None, source=None,
                            mode="RGB"))


@pytest.fixture(scope="module")
def pairs_dir(tmp_path_factory):
    """3 pairs of 64x96 PNGs: target = a crop of a real (package-shipped) photo, input = it exposed by -1.5/+1/-0.5 EV."""
    from skimage import data

    photo = data.chelsea()[::3, ::3][:64, :96].astype(np.float32) / 255  # 64x96
    root = tmp_path_factory.mktemp("pairs")
    (root / "input").mkdir()
    (root / "target").mkdir()
    for i, ev in enumerate((-1.5, 1.0, -0.5)):
        tgt = np.roll(photo, 17 * i, axis=1)
        _write(root / "target" / f"p{i}.png", tgt)
        _write(root / "input" / f"p{i}.png", apply_ev(tgt, ev))
    return root


def _cli(args):
    from deepexposure.apps.cli import main

    return CliRunner().invoke(main, ["evaluate", *args], catch_exceptions=False)


def test_evaluate_pairs_cli(pairs_dir, tmp_path):
    out = tmp_path / "ev"
    r = _cli(["--pairs", str(pairs_dir), "-m", "identity", "-m", "auto-exposure", "-m", "oracle-global",
              "-o", str(out), "-q"])
    assert r.exit_code == 0, r.output
    for name in ("metrics.csv", "summary.json", "summary.md", "report.html"):
        assert (out / name).is_file()
    rows = list(csv.DictReader(open(out / "metrics.csv", encoding="utf-8")))
    assert len(rows) == 3 * 4 and {r["method"] for r in rows} == {"input", "identity", "auto-exposure",
                                                                 "oracle-global"}
    # CSV values equal metrics computed directly
    for row in rows:
        tgt = read_photo(pairs_dir / "target" / f"{row['stem']}.png").pixels
        inp = read_photo(pairs_dir / "input" / f"{row['stem']}.png").pixels
        if row["method"] in ("input", "identity"):
            exp = compute_metrics(inp, tgt)
        elif row["method"] == "oracle-global":
            from deepexposure.evaluation.baselines import get_method

            exp = compute_metrics(get_method("oracle-global")(inp, target=tgt), tgt)
        else:
            continue
        for k, v in exp.items():
            assert float(row[k]) == pytest.approx(v, rel=1e-12), (row, k)
    # the oracle undoes the exposure (up to 8-bit clipping of the inputs)
    orc = [float(r["psnr"]) for r in rows if r["method"] == "oracle-global"]
    inp = [float(r["psnr"]) for r in rows if r["method"] == "input"]
    assert all(o > i + 5 for o, i in zip(orc, inp, strict=True))
    js = json.loads((out / "summary.json").read_text())
    assert js["config"]["long_edge"] == 500 and js["config"]["ssim_variant"] == "wang"
    assert "version" in js["config"] and "commit" in js["config"]
    m = js["methods"]["auto-exposure"]
    vals = [r for r in rows if r["method"] == "auto-exposure"]
    assert m["mean"]["psnr"] == pytest.approx(np.mean([float(r["psnr"]) for r in vals]))
    assert m["median"]["mse"] == pytest.approx(np.median([float(r["mse"]) for r in vals]))
    mean_mse = np.mean([float(r["mse"]) for r in vals])
    assert m["psnr_of_mean_mse"] == pytest.approx(10 * math.log10(255**2 / mean_mse))
    html = (out / "report.html").read_text()
    for stem in ("p0", "p1", "p2"):
        for col in ("input", "target", "identity", "auto-exposure", "oracle-global"):
            assert f"thumbs/{stem}__{col}.jpg" in html
            assert (out / "thumbs" / f"{stem}__{col}.jpg").is_file()
    # rows sorted worst-first by the first non-identity method's PSNR (no model method here)
    ae = {r["stem"]: float(r["psnr"]) for r in vals}
    order = sorted(ae, key=ae.get)
    assert [html.index(f"class='stem'>{s}<") for s in order] == sorted(html.index(f"class='stem'>{s}<")
                                                                      for s in order)
    assert "auto-exposure" in (out / "summary.md").read_text()
    assert not list(out.glob(".*.tmp"))


def test_runner_parallel_matches_serial(pairs_dir):
    from deepexposure.data import paired_folder

    pairs = paired_folder(pairs_dir)
    a = evaluate_pairs(pairs, ["identity", "clahe"], jobs=1, progress=False)
    b = evaluate_pairs(pairs, ["identity", "clahe"], jobs=2, progress=False)
    strip = lambda rs: [{k: v for k, v in r.items() if k != "seconds"} for r in rs]  # noqa: E731
    assert strip(a) == strip(b)
    s = summarize(a)
    assert s["identity"]["mean"] == s["input"]["mean"]


def test_method_failure_is_recorded(pairs_dir, tmp_path):
    from deepexposure.data import paired_folder

    (tmp_path / "p0.png").write_bytes(b"")  # no outputs for p1, p2; p0 unreadable
    with pytest.warns(UserWarning, match="failed"):
        recs = evaluate_pairs(paired_folder(pairs_dir), [f"folder:{tmp_path}"], progress=False)
    bad = [r for r in recs if r["method"] == tmp_path.name]
    assert len(bad) == 3 and all(r["error"] and math.isnan(r["psnr"]) for r in bad)
    assert summarize(recs)[tmp_path.name]["failed"] == 3


def test_cli_errors(pairs_dir, tmp_path):
    r = _cli(["-o", str(tmp_path / "x")])
    assert r.exit_code == 2 and "exactly one of" in r.output
    r = _cli(["--pairs", str(pairs_dir), "-m", "bogus", "-o", str(tmp_path / "x")])
    assert r.exit_code == 2 and "unknown method 'bogus'" in r.output and "oracle-global" in r.output
    r = _cli(["--unpaired", str(pairs_dir / "input"), "-o", str(tmp_path / "x")])
    assert r.exit_code == 2 and "--reference" in r.output
    r = _cli(["--pairs", str(tmp_path), "-o", str(tmp_path / "x")])
    assert r.exit_code == 2 and "no 'input' folder" in r.output


def test_histogram_intersection_known_values():
    assert histogram_intersection([1, 0, 0], [0, 1, 0]) == 0
    assert histogram_intersection([2, 2], [1, 1]) == pytest.approx(1.0)
    assert histogram_intersection([3, 1], [1, 3]) == pytest.approx(0.5)
    grey = np.full((20, 30, 3), 0.5, np.float32)
    h = photo_histograms(grey)
    assert h["saturation"][0] == 1 and h["contrast"][0] == 1
    code = np.floor(0.5 * 255 + 0.5)  # 8-bit quantisation, round half up -> 128
    assert h["luminance"][int(code / 255 * 32)] == 1  # luma of a grey is the grey



def test_unpaired_cli(pairs_dir, tmp_path):
    out = tmp_path / "un"
    r = _cli(["--unpaired", str(pairs_dir / "target"), "--reference", str(pairs_dir / "target"),
              "-m", "auto-exposure", "-m", "oracle-global", "-o", str(out), "-q"])
    assert r.exit_code == 0, r.output
    js = json.loads((out / "unpaired.json").read_text())
    # the set compared with itself is identical; a changed set is not
    assert all(v == pytest.approx(1.0) for v in js["histogram_intersection"]["input"].values())
    assert js["histogram_intersection"]["auto-exposure"]["mean"] < 1.0
    assert js["skipped"] == ["oracle-global"]
    sheet = read_photo(out / "contact_sheet.png").pixels
    assert sheet.shape[0] > 3 * 100 and sheet.shape[1] > 2 * 100
    assert (out / "unpaired.md").is_file()


def test_highlight_guard_switch_reaches_policies_in_workers(tmp_path):
    """evaluate --no-highlight-guard scores the policy's own EVs (column named [unguarded]) in worker processes
    too, and equals a direct Enhancer(highlight_guard=False); the guarded column differs on a photo with a sky."""
    import cv2

    from deepexposure.data import paired_folder
    from deepexposure.evaluation import psnr
    from deepexposure.inference.enhance import Enhancer

    root = tmp_path / "sky"
    (root / "input").mkdir(parents=True)
    (root / "target").mkdir()
    src = read_photo(Path(__file__).resolve().parents[1] / "samples" / "dicm_34.jpg").pixels
    src = cv2.resize(src, (src.shape[1] // 4, src.shape[0] // 4), interpolation=cv2.INTER_AREA)
    for i in range(2):
        _write(root / "input" / f"s{i}.png", np.roll(src, 9 * i, axis=1))
        _write(root / "target" / f"s{i}.png", np.roll(src, 9 * i, axis=1))
    out = tmp_path / "ev"
    r = _cli(["--pairs", str(root), "-m", "paper", "--renderer", "rolloff", "--no-highlight-guard",
              "--long-edge", "native", "-j", "2", "-o", str(out), "-q", "--no-thumbs"])
    assert r.exit_code == 0, r.output
    assert json.loads((out / "summary.json").read_text())["config"]["highlight_guard"] is False
    rows = [row for row in csv.DictReader(open(out / "metrics.csv", encoding="utf-8"))
            if row["method"] == "paper[rolloff][unguarded]"]
    assert len(rows) == 2
    raw, guarded = Enhancer("paper", renderer="rolloff", highlight_guard=False), Enhancer("paper", renderer="rolloff")
    for row in rows:
        x = read_photo(root / "input" / f"{row['stem']}.png").pixels
        y = read_photo(root / "target" / f"{row['stem']}.png").pixels
        assert float(row["psnr"]) == pytest.approx(psnr(raw.enhance(x)[0], y, long_edge=None), abs=1e-3)
        assert psnr(guarded.enhance(x)[0], y, long_edge=None) != pytest.approx(float(row["psnr"]), abs=1e-3)
    names = [m["method"] for m in evaluate_pairs(paired_folder(root), ["paper", "natural"], renderer="rolloff",
                                                 progress=False)]
    assert "paper[rolloff]" in names and "natural" in names  # rolloff is natural's own renderer: no suffix
