"""The two looks (issue 19): the natural global-EV model, the expert style, recipes that carry the look, the CLI.

References: scikit-learn's own predictions for the numpy tree walk; the style's closed forms; the renderers for
what a recipe re-renders; real photos (samples/, ../shared/data) for the sign and size of the natural correction.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from deepexposure.apps.cli import main
from deepexposure.errors import DataError, ModelError
from deepexposure.image.io import read_photo
from deepexposure.image.look import LIMITS, Look, Style, apply_style, load_look, look_path, scaled_style, tone
from deepexposure.image.recipe import Recipe
from deepexposure.image.render import render, render_rolloff
from deepexposure.inference.enhance import Enhancer
from deepexposure.inference.global_ev import GlobalEVModel, default_natural_path

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples"


def _cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


# ------------------------------------------------------------------------------------------- global-EV model

def _sklearn_model(seed: int = 0, n_features: int = 51):
    sk = pytest.importorskip("sklearn.ensemble")
    from deepexposure.inference.global_ev import trees_from_sklearn

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(600, n_features))
    x[rng.random(x.shape) < 0.02] = np.nan  # missing values take the learned side
    y = np.nan_to_num(x[:, 0]) - 0.5 * np.nan_to_num(x[:, 3]) ** 2 + 0.1 * rng.normal(size=600)
    m = sk.HistGradientBoostingRegressor(max_iter=60, learning_rate=0.1, random_state=seed).fit(x, y)
    ours = GlobalEVModel(trees_from_sklearn(m), {"bound": 10.0, "n_features": n_features})
    return m, ours, rng


def test_tree_walk_agrees_with_sklearn(tmp_path):
    """The numpy walk gives scikit-learn's predictions (NaNs included), also after a save/load round trip."""
    m, ours, rng = _sklearn_model()
    x = rng.normal(size=(300, 51)) * 1.5
    x[rng.random(x.shape) < 0.05] = np.nan
    ref = m.predict(x)
    np.testing.assert_allclose(ours.predict_features(x), ref, atol=1e-5)
    loaded = GlobalEVModel.load(ours.save(tmp_path / "m.npz"))
    np.testing.assert_allclose(loaded.predict_features(x), ref, atol=1e-5)
    with pytest.raises(ValueError, match="shape"):
        ours.predict_features(x[:, :50])


def test_shipped_natural_model_loads_and_predicts_in_range():
    model = GlobalEVModel.load(default_natural_path())
    ev = model.predict(np.full((64, 64, 3), 0.5, np.float32))
    assert ev.shape == (1,) and abs(float(ev[0])) <= model.bound
    assert model.meta.get("n_train", 0) > 1000  # fitted on the degraded clean photos, not a stub


@pytest.mark.parametrize("corrupt", ["not-npz", "pickle", "bad-index", "nan-value", "huge", "format"])
def test_hostile_model_files_are_refused(tmp_path, corrupt):
    """A corrupt, pickled, out-of-range or oversized model file: ModelError naming it, before any allocation."""
    _, ours, _ = _sklearn_model()
    good = tmp_path / "good.npz"
    ours.save(good)
    bad = tmp_path / "bad.npz"
    with np.load(good) as z:
        d = {k: z[k] for k in z.files}
    if corrupt == "not-npz":
        bad.write_bytes(b"PK\x03\x04 not really a zip")
    elif corrupt == "pickle":
        np.savez(bad, meta=np.array([{"x": 1}], dtype=object), **{k: v for k, v in d.items() if k != "meta"})
    else:
        if corrupt == "bad-index":
            d["left"] = d["left"].copy()
            d["left"][0, 0] = 10**6
            d["is_leaf"] = d["is_leaf"].copy()
            d["is_leaf"][0, 0] = False
        elif corrupt == "nan-value":
            d["value"] = d["value"].copy()
            d["value"][0, 0] = np.nan
        elif corrupt == "huge":
            meta = json.loads(str(d["meta"]))
            meta["n_features"] = 10**9
            d["meta"] = np.array(json.dumps(meta))
        elif corrupt == "format":
            d["meta"] = np.array(json.dumps({"format": "something-else", "version": 1}))
        np.savez(bad, **d)
    with pytest.raises(ModelError, match="bad.npz"):
        GlobalEVModel.load(bad)


# ------------------------------------------------------------------------------------------------ the style

def test_style_validation_and_round_trip():
    s = Style(ev_offset=0.25, ev_scale=0.5, bracket=[-1, 1], contrast=1.2, saturation=1.1)
    assert s.bracket == (-1.0, 1.0) and Style.from_dict(s.to_dict()) == s
    assert Style().is_identity and not s.is_identity
    for bad in ({"contrast": float("nan")}, {"contrast": 9.0}, {"ev_scale": -1}, {"saturation": True},
                {"bracket": [1, 2, 3, 4, 5]}, {"bracket": [float("inf")]}, {"ev_offset": "1"}):
        with pytest.raises(DataError):
            Style(**bad)
    with pytest.raises(DataError, match="unknown look style keys"):
        Style.from_dict({"gamma": 2})
    assert set(LIMITS) == {"ev_scale", "ev_offset", "bracket", "contrast", "saturation"}


def test_tone_closed_forms():
    """Contrast is the power curve 0.18*(x/0.18)**c in linear light (mid-grey fixed); saturation scales the chroma
    around the sRGB luma (greys fixed); contrast 1 and saturation 1 are the identity."""
    from deepexposure.image.color import linear_to_srgb, srgb_to_linear

    rng = np.random.default_rng(0)
    img = rng.random((8, 8, 3)).astype(np.float32)
    np.testing.assert_array_equal(tone(img, 1.0, 1.0), img)
    lin = srgb_to_linear(img)
    ref = linear_to_srgb(0.18 * (np.maximum(lin, 1e-7) / 0.18) ** 1.3)
    np.testing.assert_allclose(tone(img, 1.3, 1.0), ref, atol=2e-5)  # a 16-bit table of the formula
    grey = np.full((2, 2, 3), float(linear_to_srgb(np.float32(0.18))), np.float32)
    np.testing.assert_allclose(tone(grey, 1.5, 1.4), grey, atol=1e-5)
    sat = tone(img, 1.0, 1.2)
    y = img @ np.array([0.2126, 0.7152, 0.0722], np.float32)
    np.testing.assert_allclose(sat, np.clip(y[..., None] + 1.2 * (img - y[..., None]), 0, 1), atol=1e-6)


def test_scaled_style_ends():
    s = Style(ev_offset=0.5, bracket=(-1.0, 1.0), contrast=1.4, saturation=1.2)
    assert scaled_style(s, 1.0) == s
    z = scaled_style(s, 0.0)
    assert z.contrast == 1 and z.saturation == 1 and z.bracket == () and z.ev_offset == 0


def test_shipped_expert_look_is_valid_and_says_where_it_came_from():
    look = load_look("expert")
    assert look.name == "expert" and not look.style.is_identity
    assert look.provenance["pairs"] == 14 and "loo_psnr" in look.provenance
    assert load_look(None).style.is_identity and load_look("natural").style.is_identity


def test_bad_look_names_and_files(tmp_path):
    with pytest.raises(DataError, match="unknown look"):
        load_look("vivid")
    with pytest.raises(DataError, match="not found"):
        load_look(tmp_path / "none.json")
    cases = {"a.json": "{", "b.json": "[]", "c.json": json.dumps({"format": "deepexposure-look", "version": 9}),
             "d.json": json.dumps({"format": "deepexposure-look", "version": 1, "name": "x",
                                   "style": {"contrast": 50}})}
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(DataError, match=name):
            load_look(tmp_path / name)
    good = tmp_path / "mine.json"
    good.write_text(Look("mine", Style(contrast=1.2)).to_json())
    assert load_look(good).style.contrast == 1.2


# ------------------------------------------------------------------------------------------------- enhance

@pytest.fixture(scope="module")
def dark_photo() -> np.ndarray:
    return read_photo(SAMPLES / "dicm_02.jpg").pixels


def test_natural_is_the_default_and_its_recipe_re_renders(dark_photo):
    enh = Enhancer()
    out, rec = enh.enhance(dark_photo)
    assert rec.look == "natural" and rec.style is None and rec.labels is None and len(rec.evs) == 1
    assert rec.renderer == "rolloff" and enh.model_id == rec.model
    np.testing.assert_allclose(render(dark_photo, rec), out, atol=1e-6)
    np.testing.assert_allclose(render_rolloff(dark_photo, rec.evs, None), out, atol=1e-6)


def test_expert_look_recipe_reproduces_the_output(dark_photo, tmp_path):
    nat = Enhancer().recipe(dark_photo)
    enh = Enhancer(look="expert")
    out, rec = enh.enhance(dark_photo)
    style = load_look("expert").style
    assert rec.look == "expert" and rec.style == style.to_dict()
    assert rec.evs[0] == pytest.approx(nat.evs[0] * style.ev_scale + style.ev_offset, abs=1e-5)
    path = tmp_path / "r.json"
    rec.save(path)
    again = Recipe.load(path)
    assert again == rec and again.version == 2
    # 1e-4: fusion's float32 last bits can move a pixel to the next of the contrast table's 16-bit codes
    np.testing.assert_allclose(render(dark_photo, again), out, atol=1e-4)
    exposed = render_rolloff(dark_photo, rec.evs, None)
    np.testing.assert_allclose(apply_style(exposed, style), out, atol=1e-4)


def test_strength_zero_returns_the_photo(dark_photo):
    for look in ("natural", "expert"):
        out, rec = Enhancer(look=look, strength=0.0).enhance(dark_photo)
        np.testing.assert_allclose(out, dark_photo, atol=1e-6)
        assert rec.evs == [0.0]


def test_version_1_recipe_reads_as_natural():
    d = {"version": 1, "renderer": "fusion", "model": "manual", "evs": [1.0], "segmentation": {}, "labels": None}
    r = Recipe.from_dict(d)
    assert r.look == "natural" and r.style is None and r.version == 1


def test_natural_sign_on_real_photos(shared_data):
    """Dark DICM photos are brightened and the over-exposed one darkened, MSEC renders are moved against their known
    offset, and clean photos (BSDS500 test, never trained on) move by about the model's error (0.3 EV), no more."""
    enh = Enhancer()
    for name in ("dicm_02.jpg", "dicm_21.jpg"):
        assert enh.recipe(read_photo(SAMPLES / name).pixels).evs[0] > 0.3, name
    assert enh.recipe(read_photo(SAMPLES / "dicm_47.jpg").pixels).evs[0] < -0.5
    msec = sorted((shared_data / "msec_examples" / "fivek_rendered").iterdir())
    right = 0
    for p in msec:
        offset = float(p.stem.rsplit("_", 1)[-1][1:]) * (1 if p.stem.rsplit("_", 1)[-1][0] == "P" else -1)
        right += np.sign(enh.recipe(read_photo(p).pixels).evs[0]) == -np.sign(offset)
    assert right >= 13, f"{right}/{len(msec)}"
    clean = sorted((shared_data / "bsds500" / "test").glob("*.jpg"))[:20]
    evs = [enh.recipe(read_photo(t).pixels).evs[0] for t in clean]
    assert len(evs) == 20 and np.median(np.abs(evs)) < 0.45, evs


# --------------------------------------------------------------------------------------------------- the CLI

def test_cli_look_option_and_errors(tmp_path):
    photo = SAMPLES / "dicm_02.jpg"
    r = _cli("enhance", photo, "-o", tmp_path / "e.jpg", "--look", "expert", "--recipe")
    assert r.exit_code == 0, r.output
    rec = json.loads((tmp_path / "e.recipe.json").read_text())
    assert rec["look"] == "expert" and rec["style"]["contrast"] == load_look("expert").style.contrast
    r = _cli("render", photo, "--recipe", tmp_path / "e.recipe.json", "-o", tmp_path / "again.png")
    assert r.exit_code == 0, r.output
    a = read_photo(tmp_path / "again.png").pixels
    b = read_photo(tmp_path / "e.jpg").pixels
    assert np.abs(a - b).mean() < 0.01  # the same render, up to the JPEG of e.jpg
    r = _cli("enhance", photo, "-o", tmp_path / "x.jpg", "--look", "vivid")
    assert r.exit_code == 2 and "unknown look 'vivid'" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "x.jpg").exists()
    r = _cli("render", photo, "--recipe", tmp_path / "e.recipe.json", "--look", "expert", "-o", tmp_path / "y.png")
    assert r.exit_code == 2 and "--look goes with --ev" in r.output
    r = _cli("render", photo, "--ev", "0.5", "--renderer", "rolloff", "--look", "expert", "-o", tmp_path / "z.png",
             "--save-recipe")
    assert r.exit_code == 0, r.output
    z = json.loads((tmp_path / "z.recipe.json").read_text())
    assert z["look"] == "expert" and z["evs"] == [0.5] and z["style"]["ev_offset"] == 0


def test_paper_model_is_one_option_away(dark_photo):
    out, rec = Enhancer("paper").enhance(dark_photo)
    assert rec.renderer == "fusion" and rec.labels is not None and len(rec.evs) >= 2 and rec.model.startswith("de-")


def test_look_file_path_is_what_the_package_ships():
    assert look_path("expert").is_file()


def test_hostile_look_files_and_models_from_the_cli(tmp_path):
    """Look files and global-EV models as an attacker would write them: one error line each, exit 2, no output,
    and nothing echoed whole (a 400-digit number, a 100,000-character name)."""
    photo = SAMPLES / "dicm_02.jpg"
    head = '{"format": "deepexposure-look", "version": 1, "name": "x", "style": '
    looks = {
        "deep.json": "[" * 30000 + "]" * 30000,  # under the size limit, too deep for the JSON parser
        "huge.json": " " * (70 * 1024) + "{}",
        "bigint.json": head + '{"contrast": 1' + "0" * 400 + "}}",
        "bigbracket.json": head + '{"bracket": [1' + "0" * 400 + "]}}",
        "keys.json": head + json.dumps({f"k{i}": 1 for i in range(3000)}) + "}",
        "dir.json": None,
    }
    for name, text in looks.items():
        path = tmp_path / name
        path.mkdir() if text is None else path.write_text(text)
        r = _cli("enhance", photo, "-o", tmp_path / "out.jpg", "--look", path)
        assert r.exit_code == 2 and "Traceback" not in r.output, (name, r.output)
        assert name in r.output and len(r.output.strip().splitlines()[-1]) < 300, (name, r.output[-400:])
    r = _cli("enhance", photo, "-o", tmp_path / "out.jpg", "--look", "v" * 100000)
    assert r.exit_code == 2 and "unknown look" in r.output and len(r.output) < 500
    # a global-EV model whose small file declares a 24-million-cell array: refused from the .npy headers
    with np.load(default_natural_path()) as z:
        d = {k: z[k] for k in z.files}
    d["is_leaf"] = np.zeros((6000, 4096), bool)
    np.savez_compressed(tmp_path / "bomb.npz", **d)
    r = _cli("enhance", photo, "-o", tmp_path / "out.jpg", "--model", tmp_path / "bomb.npz")
    assert r.exit_code == 2 and "bomb.npz" in r.output and "malformed" in r.output
    assert not (tmp_path / "out.jpg").exists()


def test_tone_in_row_blocks_is_exact():
    """tone() runs in row blocks (issue 23: no full-size temporaries): the same values as the whole-array form."""
    from deepexposure.image.look import _tone_whole, tone

    x = np.random.default_rng(1).random((301, 257, 3), dtype=np.float32)
    assert np.array_equal(tone(x, 1.25, 1.1), _tone_whole(x, 1.25, 1.1))
    assert np.array_equal(tone(x, 0.8, 1.0), _tone_whole(x, 0.8, 1.0))
