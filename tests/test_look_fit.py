"""fit-look: a known look is recovered from pairs made with it and reproduces it on held-out photos; pairs that are
not edits, too few pairs and a look that learned nothing are refused; the shipped expert look is fit-look's fit."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from deepexposure.apps.cli import main
from deepexposure.evaluation.look_fit import MIN_PAIRS, fit_look, load_fit_pairs
from deepexposure.evaluation.metrics import psnr
from deepexposure.image.io import read_photo, write_photo
from deepexposure.image.look import Look, Style, load_look
from deepexposure.image.segmentation import reduce_long_edge
from deepexposure.inference.enhance import Enhancer

#: The known look: the photo itself (no natural correction) +0.5 EV, a contrast curve and +15% saturation.
KNOWN = Style(ev_offset=0.5, ev_scale=0.0, contrast=1.3, saturation=1.15)


def _clean(shared_data: Path, n: int, long_edge: int = 256) -> list[tuple[str, np.ndarray]]:
    files = sorted((shared_data / "bsds500" / "test").glob("*.jpg"))[:n]
    assert len(files) == n
    return [(f.stem, np.ascontiguousarray(reduce_long_edge(read_photo(f).pixels, long_edge), np.float32))
            for f in files]


def _pairs(root: Path, photos: list[tuple[str, np.ndarray]], make_target) -> Path:
    for stem, x in photos:
        write_photo(root / "input" / f"{stem}.png", x)
        write_photo(root / "target" / f"{stem}.png", make_target(stem, x))
    return root


@pytest.fixture(scope="module")
def known(shared_data, tmp_path_factory):
    """30 clean photos and their known-look edits: 20 to fit on, 10 held out."""
    photos = _clean(shared_data, 30)
    enh = Enhancer(look=Look("known", KNOWN))
    root = tmp_path_factory.mktemp("known")
    train = _pairs(root / "train", photos[:20], lambda _s, x: enh.enhance(x)[0])
    test = _pairs(root / "test", photos[20:], lambda _s, x: enh.enhance(x)[0])
    return train, test


def test_a_known_look_is_recovered_and_reproduced_on_held_out_photos(known):
    train, test = known
    fit = fit_look(load_fit_pairs([train]), name="mine", jobs=2)
    held_out = load_fit_pairs([test])
    enh = Enhancer(look=fit.look)
    scores = [psnr(enh.enhance(p.x)[0], p.y) for p in held_out]
    assert min(scores) >= 35, (fit.look.style, scores)
    assert fit.look.style == KNOWN
    assert fit.loo_psnr >= 35 and fit.helps and fit.wins == 20
    assert fit.look.provenance["pairs"] == 20 and fit.look.provenance["loo_psnr"] == pytest.approx(fit.loo_psnr, abs=1e-3)


def test_pairs_that_are_not_edits_are_refused(shared_data, tmp_path):
    """Targets that are other photos (noise pairs): refused, naming them, before any fitting."""
    photos = _clean(shared_data, 8, long_edge=128)
    others = {photos[i][0]: photos[(i + 1) % len(photos)][1] for i in range(len(photos))}  # the next photo
    shuffled = _pairs(tmp_path / "p", photos,
                      lambda s, x: cv2.resize(others[s], (x.shape[1], x.shape[0]), interpolation=cv2.INTER_AREA))
    with pytest.raises(Exception, match="do not align"):
        load_fit_pairs([shuffled])
    res = CliRunner().invoke(main, ["fit-look", str(shuffled), "-o", str(tmp_path / "l.json")])
    assert res.exit_code == 2 and "do not align" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "l.json").exists()


def test_too_few_pairs_say_how_many_are_needed(shared_data, tmp_path):
    photos = _clean(shared_data, MIN_PAIRS - 1, long_edge=96)
    few = _pairs(tmp_path / "few", photos, lambda _s, x: x)
    res = CliRunner().invoke(main, ["fit-look", str(few), "-o", str(tmp_path / "l.json")])
    assert res.exit_code == 2 and f"at least {MIN_PAIRS} pairs" in res.output and f"found {MIN_PAIRS - 1}" in res.output


def test_a_look_that_learned_nothing_is_not_written(shared_data, tmp_path):
    """Targets that are the natural look's own output: no style beats it on held-out pairs, so the CLI refuses to
    write the look (--force writes it)."""
    photos = _clean(shared_data, 6, long_edge=96)
    natural = Enhancer()
    same = _pairs(tmp_path / "same", photos, lambda _s, x: natural.enhance(x)[0])
    out = tmp_path / "nat.json"
    res = CliRunner().invoke(main, ["fit-look", str(same), "-o", str(out), "-j", "1"])
    assert res.exit_code == 2 and "does not beat the natural look" in res.output and not out.exists()
    res = CliRunner().invoke(main, ["fit-look", str(same), "-o", str(out), "-j", "1", "--force"])
    assert res.exit_code == 0, res.output
    assert load_look(out).name == "nat"


def test_the_cli_writes_a_look_that_enhance_and_render_use(known, tmp_path):
    train, test = known
    out = tmp_path / "mine.json"
    runner = CliRunner()
    res = runner.invoke(main, ["fit-look", str(train), "-o", str(out), "--name", "mine"])
    assert res.exit_code == 0, res.output
    assert "look (held out)" in res.output and "20/20" in res.output
    d = json.loads(out.read_text())
    assert d["name"] == "mine" and d["provenance"]["pairs"] == 20
    assert d["provenance"]["command"] == f"deepexposure fit-look {train} -o {out} --name mine"
    res = runner.invoke(main, ["fit-look", str(train), "-o", str(out)])  # never replaced without --overwrite
    assert res.exit_code == 2 and "--overwrite" in res.output
    for bad in (tmp_path / "look.txt", tmp_path):
        res = runner.invoke(main, ["fit-look", str(train), "-o", str(bad)])
        assert res.exit_code == 2 and "Traceback" not in res.output

    photo = next((test / "input").iterdir())
    target = read_photo(test / "target" / photo.name).pixels
    res = runner.invoke(main, ["enhance", str(photo), "-o", str(tmp_path / "e.png"), "--look", str(out), "--recipe"])
    assert res.exit_code == 0, res.output
    enhanced = read_photo(tmp_path / "e.png").pixels
    assert psnr(enhanced, target) >= 35
    recipe = json.loads((tmp_path / "e.recipe.json").read_text())
    assert recipe["look"] == "mine" and recipe["style"]["contrast"] == KNOWN.contrast
    res = runner.invoke(main, ["render", str(photo), "--recipe", str(tmp_path / "e.recipe.json"),
                               "-o", str(tmp_path / "r.png")])
    assert res.exit_code == 0, res.output
    assert np.array_equal(read_photo(tmp_path / "r.png").pixels, enhanced)  # the recipe re-renders it exactly


def test_the_shipped_expert_look_is_fit_looks_fit_on_the_real_pairs(shared_data):
    """fit-look on the 14 FiveK expert-C pairs gives the shipped expert style and the leave-one-out figure its
    provenance (and the README) state."""
    pairs = load_fit_pairs([shared_data / "fivek_deeplpf", shared_data / "fivek_extra"])
    assert len(pairs) == 14
    fit = fit_look(pairs, name="expert", jobs=2)
    shipped = load_look("expert")
    assert fit.look.style == shipped.style
    assert fit.loo_psnr == pytest.approx(shipped.provenance["loo_psnr"], abs=0.01)
    assert fit.loo_psnr > fit.natural_psnr + 2  # the style is worth having on held-out pairs


def test_the_fast_tone_scores_agree_with_the_tone_stage():
    """The grid's tone scores (a quadratic in the gain, exact where it clips) equal the PSNR of
    deepexposure.image.look.tone itself, for every contrast and saturation of the grid, on pixels that clip."""
    from deepexposure.evaluation.look_fit import LookGrid, _tone_psnr
    from deepexposure.image.io import from_float
    from deepexposure.image.look import contrast_lut, tone

    rng = np.random.default_rng(0)
    sub = rng.random((3000, 3), dtype=np.float32)  # saturated colours included: many pixels clip at gain 1.3
    target = from_float(rng.random((3000, 3), dtype=np.float32), 8).astype(np.float32)
    grid = LookGrid()
    got = _tone_psnr(sub, target, np.stack([contrast_lut(float(c)) for c in grid.contrasts]) * np.float32(255),
                     np.asarray(grid.saturations, np.float32))
    ref = np.array([[10 * np.log10(255**2 / np.mean((tone(sub[None], c, s)[0] * 255 - target) ** 2))
                     for s in grid.saturations] for c in grid.contrasts])
    assert np.abs(got - ref).max() < 1e-4
