"""Camera RAW input (deepexposure.image.raw): the four fixtures of ../shared/data/raw, a DNG written here, orientation,
highlight recovery in linear light, metadata, hostile files and the missing-rawpy message."""

from __future__ import annotations

import math
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from deepexposure.errors import PhotoError
from deepexposure.image.color import apply_ev, srgb_to_linear
from deepexposure.image.io import RAW_EXTENSIONS, from_float, read_photo, write_photo
from deepexposure.image.recipe import Recipe

rawpy = pytest.importorskip("rawpy", reason="rawpy (the 'raw' extra) is not installed: RAW tests skipped")

from deepexposure.image.raw import RawPhoto, render_photo  # noqa: E402

FIXTURES = {  # file: (make, model)
    "canon_powershot_g2_CRW_0304.CRW": ("Canon", "PowerShot G2"),
    "canon_powershot_s40_CRW_0117.CRW": ("Canon", "PowerShot S40"),
    "canon_powershot_s40_CRW_0119.CRW": ("Canon", "PowerShot S40"),
    "RAW_NIKON_D1.NEF": ("NIKON CORPORATION", "NIKON D1"),
}
OVER = "canon_powershot_s40_CRW_0119.CRW"  # 1.5% of raw pixels clipped, glare
_CACHE: dict[str, RawPhoto] = {}


@pytest.fixture(scope="session")
def raw_dir(shared_data: Path) -> Path:
    d = shared_data / "raw"
    if not d.is_dir():
        pytest.skip(f"no RAW fixtures at {d}")
    return d


def decoded(raw_dir: Path, name: str) -> RawPhoto:
    """Each fixture is decoded once per test session (about a second each)."""
    if name not in _CACHE:
        _CACHE[name] = read_photo(raw_dir / name)
    return _CACHE[name]


def exif_of(photo_or_bytes) -> tuple[dict, dict]:
    raw = photo_or_bytes if isinstance(photo_or_bytes, bytes) else photo_or_bytes.exif
    ex = Image.Exif()
    ex.load(raw[6:] if raw.startswith(b"Exif\x00\x00") else raw)
    return dict(ex), dict(ex.get_ifd(0x8769))


# ------------------------------------------------------------------------------------------ decoding


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_each_fixture_decodes_upright_with_its_camera(raw_dir, name):
    photo = decoded(raw_dir, name)
    with rawpy.imread(str(raw_dir / name)) as r:
        sizes, other = r.sizes, r.other
    assert isinstance(photo, RawPhoto) and photo.bit_depth == 16
    # flip 0 in all four: the output keeps LibRaw's (height, width)
    assert sizes.flip == 0 and photo.pixels.shape == (sizes.height, sizes.width, 3)
    assert photo.pixels.dtype == np.float32 and photo.scene.shape == photo.pixels.shape
    assert 0.0 <= photo.pixels.min() and photo.pixels.max() <= 1.0 and photo.scene.max() <= 1.0
    assert 0.05 < photo.pixels.mean() < 0.8 and photo.pixels.std() > 0.05  # a picture, not a flat field
    ifd0, exif = exif_of(photo)
    make, model = FIXTURES[name]
    assert ifd0[271] == make and ifd0[272].strip() == model and ifd0[274] == 1
    assert math.isclose(float(exif[33434]), other.shutter_speed, rel_tol=1e-3)  # exposure time
    assert math.isclose(float(exif[33437]), other.aperture, rel_tol=1e-2)  # f-number
    assert exif[34855] == round(other.iso_speed)


def test_default_rendering_is_librarys_own_exposure(raw_dir):
    """EV 0 (the default rendering) is LibRaw's default scaling (highlight mode clip), to within rounding, wherever
    that one does not clip: ev_offset = log2(largest / smallest white-balance multiplier, 2.28 here) is right."""
    name = OVER
    photo = decoded(raw_dir, name)
    with rawpy.imread(str(raw_dir / name)) as r:
        ref = r.postprocess(gamma=(1, 1), no_auto_bright=True, output_bps=16, use_camera_wb=True)
    ref = ref.astype(np.float32) / 65535
    ours = srgb_to_linear(photo.pixels)
    ok = (ref.max(axis=2) < 0.95) & (ref.min(axis=2) > 0.02)
    assert ok.mean() > 0.5 and photo.ev_offset > 0.5
    rel = np.abs(ours[ok] - ref[ok]) / ref[ok]
    # (a few % of pixels differ by a few %: AHD demosaicing sees clipped or unclipped neighbours)
    assert np.median(rel) < 1e-3 and (rel < 0.01).mean() > 0.95


def test_negative_ev_recovers_highlights_the_default_rendering_clips(raw_dir):
    """The over-exposed S40 frame: the 8-bit default rendering (ours, and LibRaw's own default conversion) blows
    5-6% of the pixels; -1 EV applied in linear light before the tone curve shows distinct tones in nearly all of
    them, with tones beyond the plateau where the sensor clipped. The same -1 EV applied to the 8-bit rendering (what
    a JPEG allows) brings back none."""
    photo = decoded(raw_dir, OVER)
    default8 = from_float(photo.pixels, 8)
    with rawpy.imread(str(raw_dir / OVER)) as r:
        librarys8 = r.postprocess(use_camera_wb=True)  # LibRaw/dcraw's default 8-bit conversion
        raw_clipped = float((r.raw_image_visible >= r.white_level).mean())
    blown = default8.max(axis=2) == 255
    assert blown.mean() > 0.03 and (librarys8.max(axis=2) == 255).mean() > 0.03
    assert blown.mean() > 3 * raw_clipped  # most of what the rendering blows is still in the RAW

    def recovered(img: np.ndarray) -> tuple[float, int]:
        """Of the channel values at 255 in the default rendering: the share that the edited image shows off the
        plateau where the sensor itself clipped (its most common code there, +-1), and how many codes they take."""
        vals = from_float(img, 8)[default8 == 255].astype(np.int32)
        plateau = np.bincount(vals).argmax()
        return float((np.abs(vals - plateau) > 1).mean()), len(np.unique(vals))

    minus1 = render_photo(photo, Recipe(evs=[-1.0], renderer="local"))
    share, tones = recovered(minus1)
    assert (from_float(minus1, 8).max(axis=2) == 255).mean() < 0.002
    assert share > 0.5 and tones > 25  # measured: 0.66 and 39 codes
    jpeg_side = apply_ev(default8.astype(np.float32) / 255, -1.0)  # the same edit on the 8-bit rendering
    assert recovered(jpeg_side) == (0.0, 1)
    # rolloff holds the RAW's highlights by itself (its white is the RAW's own bright end), at EV 0
    held = render_photo(photo, Recipe(evs=[0.0, 0.0], labels=np.repeat([[0], [1]], 32, 0).repeat(64, 1),
                                      renderer="rolloff"))
    assert np.array_equal(held, photo.pixels)  # all EVs 0: the default rendering
    rolled = render_photo(photo, Recipe(evs=[0.01], renderer="local"), renderer="rolloff")
    assert (from_float(rolled, 8).max(axis=2) == 255).mean() < blown.mean() / 3


def test_fusion_and_strength_on_a_raw(raw_dir):
    full = decoded(raw_dir, OVER)
    photo = RawPhoto(pixels=full.pixels[::2, ::2].copy(), bit_depth=16, scene=full.scene[::2, ::2].copy(),
                     ev_offset=full.ev_offset)  # a quarter of the pixels: the same highlights, 4x faster
    recipe = Recipe(evs=[-1.5, 0.5], renderer="fusion")
    assert np.array_equal(render_photo(photo, recipe, strength=0.0), photo.pixels)
    fused = render_photo(photo, recipe)
    assert fused.shape == photo.pixels.shape and fused.dtype == np.float32
    blown = lambda x: (from_float(x, 8).max(axis=2) == 255).mean()  # noqa: E731
    assert blown(fused) < blown(photo.pixels) / 2  # the -1.5 EV copy brings the highlights into the fusion
    # a plain photo is rendered by render() as before
    from deepexposure.image.render import render

    small = photo.pixels[::8, ::8].copy()
    plain = read_photo(_write_png(small))
    # (fusion's threaded float sums may move a value in the last bits from run to run)
    assert np.abs(render_photo(plain, recipe) - render(plain.pixels, recipe)).max() < 1e-4


def _write_png(pixels: np.ndarray) -> Path:
    import tempfile

    path = Path(tempfile.mkdtemp()) / "small.png"
    write_photo(path, pixels)
    return path


# ------------------------------------------------------------------------------------------ DNG and orientation


def _srational(x: float) -> tuple[int, int]:
    f = Fraction(float(x)).limit_denominator(10000)
    return f.numerator, f.denominator


def write_dng(path: Path, source: Path, *, orientation: int = 1, crop: tuple[slice, slice] | None = None) -> None:
    """A minimal DNG 1.4 (one uncompressed CFA image, IFD0) from a RAW file's sensor data, written by tifffile:
    the source's CFA pattern, black and white levels, colour matrix (XYZ -> camera, D65) and as-shot neutral."""
    import tifffile

    with rawpy.imread(str(source)) as r:
        cfa = r.raw_image_visible.copy()
        code = {"R": 0, "G": 1, "B": 2}
        pattern = bytes(code[chr(r.color_desc[i])] for i in r.raw_pattern.ravel())
        black, white = int(r.black_level_per_channel[0]), int(r.white_level)
        matrix = np.asarray(r.rgb_xyz_matrix[:3], np.float64)
        wb = np.asarray(r.camera_whitebalance[:3], np.float64)
    if crop is not None:
        cfa = np.ascontiguousarray(cfa[crop])
    neutral = wb[1] / wb
    tags = [
        (254, "I", 1, 0, True), (271, "s", 0, "Canon", True), (272, "s", 0, "PowerShot G2", True),
        (274, "H", 1, orientation, True), (33421, "H", 2, (2, 2), True), (33422, "B", 4, pattern, True),
        (33434, "2I", 1, (1, 50), True), (33437, "2I", 1, (4, 1), True), (34855, "H", 1, 50, True),
        (50706, "B", 4, (1, 4, 0, 0), True), (50707, "B", 4, (1, 1, 0, 0), True),
        (50708, "s", 0, "Canon PowerShot G2", True), (50714, "H", 1, black, True), (50717, "H", 1, white, True),
        (50721, "2i", 9, tuple(v for x in matrix.ravel() for v in _srational(x)), True),
        (50728, "2I", 3, tuple(v for x in neutral for v in _srational(x)), True), (50778, "H", 1, 21, True),
    ]
    tifffile.imwrite(path, cfa, photometric=32803, extratags=tags, metadata=None, software=False)  # 32803: CFA


def test_dng_written_from_a_fixture_decodes_like_its_source(raw_dir, tmp_path):
    src = raw_dir / "canon_powershot_g2_CRW_0304.CRW"
    dng = tmp_path / "g2.dng"
    write_dng(dng, src)
    with rawpy.imread(str(dng)) as r:  # LibRaw reads it as a DNG
        assert r.raw_type == rawpy.RawType.Flat and r.sizes.flip == 0
    ours, ref = read_photo(dng), decoded(raw_dir, src.name)
    assert isinstance(ours, RawPhoto) and ours.pixels.shape == ref.pixels.shape
    assert math.isclose(ours.ev_offset, ref.ev_offset, rel_tol=1e-3)
    err = float(np.mean((ours.pixels - ref.pixels) ** 2))
    assert 10 * math.log10(1 / max(err, 1e-12)) > 60  # the same sensor data gives the same picture
    ifd0, exif = exif_of(ours)  # TIFF-based RAW: the EXIF comes from the file's own tags
    assert ifd0[271] == "Canon" and ifd0[272] == "PowerShot G2" and float(exif[33434]) == pytest.approx(0.02)


@pytest.mark.parametrize("orientation, turn", [(6, lambda a: np.rot90(a, -1)), (8, lambda a: np.rot90(a, 1)),
                                               (3, lambda a: a[::-1, ::-1])])
def test_orientation_is_applied(raw_dir, tmp_path, orientation, turn):
    """A DNG tagged 6 (turn 90 degrees clockwise to view), 8 or 3 decodes to the upright picture of the same data
    tagged 1 (LibRaw's sizes.flip 6, 5, 3), with EXIF orientation 1."""
    src = raw_dir / "canon_powershot_g2_CRW_0304.CRW"
    crop = (slice(600, 1000), slice(800, 1400))
    write_dng(tmp_path / "o1.dng", src, crop=crop)
    write_dng(tmp_path / "on.dng", src, crop=crop, orientation=orientation)
    with rawpy.imread(str(tmp_path / "on.dng")) as r:
        assert r.sizes.flip == {6: 6, 8: 5, 3: 3}[orientation]
    upright, turned = read_photo(tmp_path / "o1.dng"), read_photo(tmp_path / "on.dng")
    assert upright.pixels.shape == (400, 600, 3)
    assert_same_picture(turned.pixels, turn(upright.pixels))
    assert exif_of(turned)[0][274] == 1


#: Pixels of the same data decoded through another LibRaw orientation path differ by float rounding (1.2e-7 seen on
#: some machines); a wrong turn of a real photo differs by far more than this.
PIXEL_ATOL = 1e-5
_TURNS = {"identity": lambda a: a, "rot90": lambda a: np.rot90(a, 1), "rot270": lambda a: np.rot90(a, -1),
          "rot180": lambda a: a[::-1, ::-1], "flip_lr": lambda a: a[:, ::-1], "flip_ud": lambda a: a[::-1],
          "transpose": lambda a: np.swapaxes(a, 0, 1), "transverse": lambda a: np.rot90(np.swapaxes(a, 0, 1), 2)}


def assert_same_picture(got: np.ndarray, want: np.ndarray) -> None:
    """``got`` equals ``want`` up to float rounding (:data:`PIXEL_ATOL`), and no other of the 8 EXIF turns of
    ``want`` is that close: the tolerance still tells a wrong rotation or flip."""
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=PIXEL_ATOL)
    for name, turn in _TURNS.items():
        other = turn(want)
        if other.shape == got.shape and not np.array_equal(other, want):
            assert not np.allclose(got, other, rtol=0, atol=PIXEL_ATOL), f"{name} of the expected picture matches too"


def test_same_picture_tolerates_rounding_but_not_a_wrong_turn():
    rng = np.random.default_rng(0)
    a = rng.random((40, 60, 3), dtype=np.float32)
    assert_same_picture(a + np.float32(1.2e-7), a)
    for wrong in (np.rot90(a, 2), a[:, ::-1], a[::-1]):
        with pytest.raises(AssertionError):
            assert_same_picture(wrong, a)


# ------------------------------------------------------------------------------------------ outputs and metadata


def test_outputs_keep_camera_and_exposure_metadata(raw_dir, tmp_path):
    import tifffile

    photo = decoded(raw_dir, "RAW_NIKON_D1.NEF")
    small = RawPhoto(pixels=photo.pixels[::4, ::4].copy(), bit_depth=16, exif=photo.exif)
    jpg, png, tif = (write_photo(tmp_path / f"out.{s}", small) for s in ("jpg", "png", "tif"))
    for path in (jpg, png):
        with Image.open(path) as im:
            ex = im.getexif()
            exif = ex.get_ifd(0x8769)
            assert ex[271] == "NIKON CORPORATION" and ex[274] == 1
            assert float(exif[33434]) == pytest.approx(0.004) and float(exif[33437]) == pytest.approx(7.6, abs=0.05)
            assert exif[34855] == 200
    with tifffile.TiffFile(tif) as t:  # 16-bit TIFF: the camera and exposure tags in IFD0 (TIFF/EP)
        page = t.pages[0]
        assert page.dtype == np.uint16 and page.shape == small.pixels.shape
        tags = {tag.code: tag.value for tag in page.tags}
        assert tags[271] == "NIKON CORPORATION" and tags[272].strip() == "NIKON D1"
        assert tags[33434][0] / tags[33434][1] == pytest.approx(0.004) and tags[34855] == 200 and tags[36867] == "2000:11:19 13:01:50"
        assert tags[33437][0] / tags[33437][1] == pytest.approx(7.6, abs=0.05)
    back = read_photo(tif)
    assert back.bit_depth == 16 and np.abs(back.pixels - small.pixels).max() < 1 / 65535 + 1e-6


# ------------------------------------------------------------------------------------------ command line


def test_enhance_and_render_a_raw_from_the_command_line(raw_dir, tmp_path):
    from deepexposure.apps.cli import main

    src = tmp_path / "shot.CRW"
    src.symlink_to(raw_dir / OVER)
    runner = CliRunner()
    r = runner.invoke(main, ["enhance", str(tmp_path), "-o", str(tmp_path / "out") + "/", "--recipe",
                             "--renderer", "local"])
    assert r.exit_code == 0, r.output
    out = tmp_path / "out" / "shot.jpg"  # folder mode: a RAW becomes a JPEG
    recipe = Recipe.load(tmp_path / "out" / "shot.recipe.json")
    with Image.open(out) as im:
        assert im.size == (2312, 1720) and im.getexif()[272] == "PowerShot S40"
        first = np.asarray(im)
    r = runner.invoke(main, ["render", str(src), "--recipe", str(tmp_path / "out" / "shot.recipe.json"),
                             "-o", str(tmp_path / "again.png")])
    assert r.exit_code == 0, r.output
    again = read_photo(tmp_path / "again.png")
    assert again.bit_depth == 16  # a RAW renders to 16 bits where the format allows
    expected = render_photo(decoded(raw_dir, OVER), recipe)
    assert np.abs(again.pixels - expected).max() <= 1 / 65535 + 1e-6
    assert np.abs(first.astype(np.float32) / 255 - expected).max() < 0.1  # JPEG-coded copy of the same


def test_hostile_raw_files_are_one_line_errors(raw_dir, tmp_path):
    data = (raw_dir / "RAW_NIKON_D1.NEF").read_bytes()
    cases = {"truncated.nef": data[: len(data) // 2], "header.nef": data[:5000], "text.dng": b"hello\n",
             "jpeg.cr2": (Path(__file__).parents[1] / "samples" / "dicm_02.jpg").read_bytes()}
    for name, payload in cases.items():
        (tmp_path / name).write_bytes(payload)
        with pytest.raises(PhotoError) as err:
            read_photo(tmp_path / name)
        assert str(err.value).startswith(str(tmp_path / name)) and "\n" not in str(err.value)
    with pytest.raises(PhotoError, match="above the limit"):
        read_photo(raw_dir / OVER, max_pixels=1_000_000)
    from deepexposure.apps.cli import main

    r = CliRunner().invoke(main, ["render", str(tmp_path / "truncated.nef"), "--ev", "1", "-o",
                                  str(tmp_path / "x.jpg")])
    assert r.exit_code == 2 and not (tmp_path / "x.jpg").exists() and "Traceback" not in r.output
    assert len([ln for ln in r.output.splitlines() if ln.startswith("error:")]) == 1


def test_missing_rawpy_is_one_clear_error(raw_dir, tmp_path, monkeypatch):
    from deepexposure.apps.cli import main

    monkeypatch.setitem(sys.modules, "rawpy", None)  # import rawpy now raises ImportError
    with pytest.raises(PhotoError, match=r"needs rawpy .*pip install 'deepexposure\[raw\]'"):
        read_photo(raw_dir / OVER)
    r = CliRunner().invoke(main, ["render", str(raw_dir / OVER), "--ev", "1", "-o", str(tmp_path / "x.jpg")])
    assert r.exit_code == 2 and not (tmp_path / "x.jpg").exists() and "Traceback" not in r.output
    errors = [ln for ln in r.output.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "pip install 'deepexposure[raw]'" in errors[0]


def test_raw_suffixes_are_listed_in_folders_but_never_written(tmp_path):
    from deepexposure.apps.batch import plan_jobs
    from deepexposure.image.io import iter_photo_paths

    for name in ("a.CR2", "b.nef", "c.dng", "d.jpg", "e.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in iter_photo_paths(tmp_path)] == ["a.CR2", "b.nef", "c.dng", "d.jpg"]
    jobs = plan_jobs([tmp_path], tmp_path / "out")
    assert [j.dst.name for j in jobs] == ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]
    assert [j.dst.name for j in plan_jobs([tmp_path], tmp_path / "out", fmt="tif")][:1] == ["a.tif"]
    with pytest.raises(PhotoError, match="unsupported output format"):
        write_photo(tmp_path / "x.dng", np.zeros((4, 4, 3), np.float32))
    assert ".dng" in RAW_EXTENSIONS and ".cr3" in RAW_EXTENSIONS
