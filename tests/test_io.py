"""deepexposure.image.io: round trips, orientation, metadata, alpha, bad input, atomic writes, listing."""

from __future__ import annotations

import os
import struct
import warnings
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
from PIL import Image, ImageCms, ImageFile

from deepexposure import atomic
from deepexposure.atomic import is_temp_name
from deepexposure.errors import DeepExposureError
from deepexposure.image import io as dio
from deepexposure.image.io import (
    SUPPORTED_EXTENSIONS,
    Photo,
    PhotoError,
    from_float,
    iter_photo_paths,
    read_photo,
    to_float,
    to_rgbx,
    write_photo,
)

RNG = np.random.default_rng(1234)
ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _exif(orientation: int = 1, make: str = "TestCam") -> bytes:
    ex = Image.Exif()
    ex[0x010F] = make
    ex[0x0112] = orientation
    ex[0x8769] = {0x829A: (1, 125)}  # ExposureTime in the EXIF sub-IFD
    return ex.tobytes()


def _exif_tags(raw: bytes | None) -> dict:
    assert raw is not None
    ex = Image.Exif()
    ex.load(raw)
    return {"make": ex.get(0x010F), "orientation": ex.get(0x0112, 1), "exposure": ex.get_ifd(0x8769).get(0x829A)}


def _smooth(h: int = 48, w: int = 64) -> np.ndarray:
    """A smooth colour ramp (compresses well, so lossy codecs stay close)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    return np.stack([x / (w - 1), y / (h - 1), 0.5 + 0.4 * np.sin(x / 7) * np.cos(y / 5)], axis=2).astype(np.float32)


# EXIF orientation tag -> how the stored pixels become upright (EXIF 2.3 spec, written independently of io.py)
_UPRIGHT = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: np.transpose(a, (1, 0, 2)),
    6: lambda a: np.rot90(a, k=-1),  # rotate 90 degrees clockwise
    7: lambda a: np.rot90(a, k=-1)[::-1],  # transverse
    8: lambda a: np.rot90(a, k=1),
}


# --------------------------------------------------------------------------------------- conversions


def test_to_float_from_float_exact_round_trip_every_code():
    u8 = np.arange(256, dtype=np.uint8)
    u16 = np.arange(65536, dtype=np.uint16)
    f8, d8 = to_float(u8)
    f16, d16 = to_float(u16)
    assert (d8, d16) == (8, 16) and f8.dtype == f16.dtype == np.float32
    np.testing.assert_allclose(f8, u8 / 255.0, atol=1e-7)
    np.testing.assert_allclose(f16, u16 / 65535.0, atol=1e-7)
    np.testing.assert_array_equal(from_float(f8, 8), u8)
    np.testing.assert_array_equal(from_float(f16, 16), u16)
    # converting between depths goes through the same code: 8 -> 16 bit is *257
    np.testing.assert_array_equal(from_float(f8, 16), u8.astype(np.uint16) * 257)


@pytest.mark.parametrize("shape", [(700, 600, 3), (1500, 1000, 3), (5, 7), (1,), (), (0, 3, 3), (2, 3, 4)])
@pytest.mark.parametrize("depth", [8, 16])
def test_from_float_blocks_equal_the_whole_array_formula(shape, depth):
    """The row-blocked (and, above 4 M values, two-threaded) from_float gives the codes of the plain expression
    floor(clip(x) * peak + 0.5), ties of the rounding and infinities included; to_rgbx gives the same codes."""
    rng = np.random.default_rng(1)
    x = rng.uniform(-0.2, 1.2, shape).astype(np.float32)
    peak = np.float32(255 if depth == 8 else 65535)
    if x.size > 4:
        x.flat[:4] = [np.nan, np.inf, -np.inf, np.float32(0.5) / peak]  # 0.5/peak: a tie, rounded up
    if x.size > 2000:  # just below, at and just above every half code
        ties = ((np.arange(256, dtype=np.float64) + 0.5) / 255).astype(np.float32)
        x.flat[4:772] = np.concatenate([np.nextafter(ties, np.float32(-1)), ties, np.nextafter(ties, np.float32(2))])
    clean = np.nan_to_num(x.astype(np.float64), nan=0.0, posinf=1.0, neginf=0.0)
    want = np.floor(np.clip(clean, 0, 1).astype(np.float32) * peak + np.float32(0.5)).astype(
        np.uint8 if depth == 8 else np.uint16)
    got = from_float(x, depth)
    assert got.dtype == want.dtype and got.shape == want.shape and np.array_equal(got, want)
    if depth == 8 and x.ndim == 3 and x.shape[2] == 3:
        rgbx = to_rgbx(x)
        assert rgbx.shape == x.shape[:2] + (4,) and rgbx.dtype == np.uint8 and rgbx.flags.c_contiguous
        assert np.array_equal(rgbx[..., :3], want) and (rgbx[..., 3] == 255).all()
    if x.ndim:  # a non-contiguous view gives the codes of its contiguous copy
        view = x[..., ::-1]
        assert np.array_equal(from_float(view, depth), from_float(view.copy(), depth))
    assert np.array_equal(from_float(x.astype(np.float64), depth), want)


def test_from_float_rounds_half_up_and_clips():
    k = np.arange(255, dtype=np.float64)
    np.testing.assert_array_equal(from_float((k + 0.49) / 255, 8), k.astype(np.uint8))
    np.testing.assert_array_equal(from_float((k + 0.51) / 255, 8), (k + 1).astype(np.uint8))
    out = from_float(np.array([-0.3, 0.0, 1.0, 7.0, np.nan]), 8)
    np.testing.assert_array_equal(out, [0, 0, 255, 255, 0])
    assert from_float(np.zeros(2), 16).dtype == np.uint16
    with pytest.raises(ValueError):
        from_float(np.zeros(2), 12)


def test_to_float_floats_bools_and_rejects_other_ints():
    f, d = to_float(np.array([-1.0, 0.25, 2.0], dtype=np.float64))
    np.testing.assert_array_equal(f, np.float32([0.0, 0.25, 1.0]))
    assert d == 8
    np.testing.assert_array_equal(to_float(np.array([True, False]))[0], [1.0, 0.0])
    with pytest.raises(ValueError):
        to_float(np.array([1, 2], dtype=np.int32))
    src = np.array([0.5, 2.0])
    to_float(src)
    np.testing.assert_array_equal(src, [0.5, 2.0])  # input untouched


# --------------------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("suffix", [".png", ".tif", ".tiff", ".PNG"])
@pytest.mark.parametrize("depth", [8, 16])
@pytest.mark.parametrize("with_alpha", [False, True])
def test_lossless_round_trip_is_exact(tmp_path, suffix, depth, with_alpha):
    dtype = np.uint8 if depth == 8 else np.uint16
    u = RNG.integers(0, np.iinfo(dtype).max + 1, size=(13, 17, 4 if with_alpha else 3), dtype=dtype)
    px, d = to_float(u)
    photo = Photo(pixels=px[..., :3], alpha=px[..., 3] if with_alpha else None, bit_depth=d)
    out = write_photo(tmp_path / f"x{suffix}", photo)
    back = read_photo(out)
    assert back.bit_depth == depth and back.pixels.dtype == np.float32 and back.pixels.shape == (13, 17, 3)
    np.testing.assert_array_equal(from_float(back.pixels, depth), u[..., :3])
    if with_alpha:
        assert back.alpha is not None and back.alpha.shape == (13, 17)
        np.testing.assert_array_equal(from_float(back.alpha, depth), u[..., 3])
    else:
        assert back.alpha is None
    # an independent decoder sees the same values (tifffile; OpenCV in BGR order for PNG)
    if suffix.lower() == ".png":
        ref = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)[..., 2::-1]
    else:
        ref = tifffile.imread(out)[..., :3]
    assert ref.dtype == dtype
    np.testing.assert_array_equal(ref, u[..., :3])


@pytest.mark.parametrize("suffix,min_psnr", [(".jpg", 38.0), (".jpeg", 38.0), (".webp", 30.0)])
def test_lossy_round_trip_is_close_and_8_bit(tmp_path, suffix, min_psnr):
    px = _smooth()
    out = write_photo(tmp_path / f"x{suffix}", Photo(pixels=px, bit_depth=16), bit_depth=16)
    back = read_photo(out)
    assert back.bit_depth == 8  # JPEG/WebP are always 8-bit
    mse = float(np.mean((back.pixels - px) ** 2))
    assert 10 * np.log10(1.0 / mse) > min_psnr


def test_bit_depth_option_and_bare_arrays(tmp_path):
    u8 = RNG.integers(0, 256, size=(9, 11, 3), dtype=np.uint8)
    p16 = read_photo(write_photo(tmp_path / "a.png", u8, bit_depth=16))
    assert p16.bit_depth == 16
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / "a.png"), cv2.IMREAD_UNCHANGED)[..., ::-1],
                                  u8.astype(np.uint16) * 257)
    u16 = RNG.integers(0, 65536, size=(9, 11, 3), dtype=np.uint16)
    p = read_photo(write_photo(tmp_path / "b.tif", u16))  # uint16 array -> written 16-bit by default
    assert p.bit_depth == 16
    np.testing.assert_array_equal(from_float(p.pixels, 16), u16)
    p8 = read_photo(write_photo(tmp_path / "c.tif", read_photo(tmp_path / "b.tif"), bit_depth=8))
    assert p8.bit_depth == 8
    np.testing.assert_array_equal(from_float(p8.pixels, 8), from_float(to_float(u16)[0], 8))
    grey = write_photo(tmp_path / "d.png", np.linspace(0, 1, 20, dtype=np.float32).reshape(4, 5))
    g = read_photo(grey)
    assert g.bit_depth == 8 and g.pixels.shape == (4, 5, 3)
    with pytest.raises(ValueError):
        write_photo(tmp_path / "e.png", np.zeros((4, 5, 2), np.float32))


# --------------------------------------------------------------------------------------- orientation


def _stored_image() -> np.ndarray:
    return RNG.integers(0, 256, size=(6, 10, 3), dtype=np.uint8)  # non-square: rotations change the shape


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_8bit_png_and_tiff(tmp_path, orientation):
    stored = _stored_image()
    for suffix in (".png", ".tif"):
        f = tmp_path / f"o{suffix}"
        Image.fromarray(stored).save(f, exif=_exif(orientation))
        photo = read_photo(f)
        np.testing.assert_array_equal(from_float(photo.pixels, 8), _UPRIGHT[orientation](stored))
        assert _exif_tags(photo.exif) == {"make": "TestCam", "orientation": 1, "exposure": (1, 125)}
        f.unlink()


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_16bit_png_and_tiff(tmp_path, orientation):
    stored = RNG.integers(0, 65536, size=(6, 10, 3), dtype=np.uint16)
    png = tmp_path / "o.png"  # written by our own 16-bit path, which keeps EXIF (orientation as given)
    write_photo(png, Photo(pixels=to_float(stored)[0], bit_depth=16, exif=_exif(orientation)))
    tif = tmp_path / "o.tif"
    tifffile.imwrite(tif, stored, photometric="rgb", extratags=[(274, "H", 1, orientation, False)])
    for f in (png, tif):
        photo = read_photo(f)
        assert photo.bit_depth == 16
        np.testing.assert_array_equal(from_float(photo.pixels, 16), _UPRIGHT[orientation](stored))


def test_exif_orientation_6_jpeg_rotated_and_not_rotated_twice(tmp_path):
    stored = (_smooth(40, 64) * 255).round().astype(np.uint8)
    f = tmp_path / "rot.jpg"
    Image.fromarray(stored).save(f, exif=_exif(6), quality=98)
    photo = read_photo(f)
    assert photo.pixels.shape == (64, 40, 3)
    ref = np.rot90(stored, k=-1) / 255.0
    assert np.abs(photo.pixels - ref).mean() < 0.01
    assert _exif_tags(photo.exif)["orientation"] == 1
    again = read_photo(write_photo(tmp_path / "again.jpg", photo))  # orientation reset: stays upright
    assert again.pixels.shape == (64, 40, 3)
    assert np.abs(again.pixels - ref).mean() < 0.015


# --------------------------------------------------------------------------------------- metadata


@pytest.mark.parametrize("suffix,depth", [(".jpg", 8), (".png", 8), (".tif", 8), (".webp", 8), (".png", 16)])
def test_exif_and_icc_kept(tmp_path, suffix, depth):
    photo = Photo(pixels=_smooth(), bit_depth=depth, exif=_exif(1, "KeptCam"), icc_profile=ICC)
    back = read_photo(write_photo(tmp_path / f"m{suffix}", photo))
    assert back.icc_profile == ICC
    assert _exif_tags(back.exif) == {"make": "KeptCam", "orientation": 1, "exposure": (1, 125)}
    assert back.bit_depth == depth


def test_16bit_tiff_keeps_icc_and_camera_tags_not_the_exif_ifd(tmp_path):
    """Documented limitation: tifffile cannot write the EXIF sub-IFD; the camera and exposure tags go into IFD0
    (TIFF/EP style), where a reader finds them."""
    import tifffile

    photo = Photo(pixels=_smooth(), bit_depth=16, exif=_exif(1), icc_profile=ICC)
    path = write_photo(tmp_path / "m.tif", photo)
    back = read_photo(path)
    assert back.bit_depth == 16 and back.icc_profile == ICC
    assert _exif_tags(back.exif) == {"make": "TestCam", "orientation": 1, "exposure": None}
    with tifffile.TiffFile(path) as t:
        tags = {tag.code: tag.value for tag in t.pages[0].tags}
    assert tags[271] == "TestCam" and tags[33434] == (1, 125) and 34665 not in tags


def test_tiff_source_exif_carried_to_jpeg(tmp_path):
    src = tmp_path / "s.tif"
    Image.fromarray(_stored_image()).save(src, exif=_exif(1, "TiffCam"))
    photo = read_photo(src)
    back = read_photo(write_photo(tmp_path / "s.jpg", photo))
    assert _exif_tags(back.exif) == {"make": "TiffCam", "orientation": 1, "exposure": (1, 125)}
    ex = Image.Exif()
    ex.load(back.exif)
    assert 273 not in ex and 279 not in ex  # the TIFF's strip layout is not carried as EXIF


def test_non_rgb_icc_not_written(tmp_path):
    grey_icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()
    assert grey_icc[16:20] != b"RGB "
    back = read_photo(write_photo(tmp_path / "g.png", Photo(pixels=_smooth(), icc_profile=grey_icc)))
    assert back.icc_profile is None


# --------------------------------------------------------------------------------------- modes and alpha


def test_grey_palette_and_alpha_modes(tmp_path):
    g = RNG.integers(0, 256, size=(7, 9), dtype=np.uint8)
    Image.fromarray(g).save(tmp_path / "l.png")
    p = read_photo(tmp_path / "l.png")
    assert p.mode == "L" and p.alpha is None and p.bit_depth == 8
    for c in range(3):
        np.testing.assert_array_equal(from_float(p.pixels[..., c], 8), g)

    g16 = RNG.integers(0, 65536, size=(7, 9), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "l16.png"), g16)
    p = read_photo(tmp_path / "l16.png")
    assert p.bit_depth == 16 and p.mode.startswith("I")
    np.testing.assert_array_equal(from_float(p.pixels, 16), np.repeat(g16[..., None], 3, axis=2))

    la = RNG.integers(0, 256, size=(7, 9, 2), dtype=np.uint8)
    Image.fromarray(la, mode="LA").save(tmp_path / "la.png")
    p = read_photo(tmp_path / "la.png")
    np.testing.assert_array_equal(from_float(p.alpha, 8), la[..., 1])
    np.testing.assert_array_equal(from_float(p.pixels[..., 1], 8), la[..., 0])

    rgb = RNG.integers(0, 256, size=(7, 9, 3), dtype=np.uint8)
    pal = Image.fromarray(rgb).quantize(colors=16)
    pal.info["transparency"] = 0
    pal.save(tmp_path / "p.png", transparency=0)
    p = read_photo(tmp_path / "p.png")
    ref = np.asarray(Image.open(tmp_path / "p.png").convert("RGBA"))
    assert p.mode == "P"
    np.testing.assert_array_equal(from_float(p.pixels, 8), ref[..., :3])
    np.testing.assert_array_equal(from_float(p.alpha, 8), ref[..., 3])
    assert set(np.unique(ref[..., 3])) <= {0, 255} and (ref[..., 3] == 0).any()

    pal_opaque = Image.fromarray(rgb).quantize(colors=16)
    pal_opaque.save(tmp_path / "p2.png")
    p = read_photo(tmp_path / "p2.png")
    assert p.alpha is None
    np.testing.assert_array_equal(from_float(p.pixels, 8),
                                  np.asarray(Image.open(tmp_path / "p2.png").convert("RGB")))


def test_alpha_written_back_where_supported(tmp_path):
    rgba = RNG.integers(0, 256, size=(8, 12, 4), dtype=np.uint8)
    Image.fromarray(rgba).save(tmp_path / "src.png")
    photo = read_photo(tmp_path / "src.png")
    assert photo.mode == "RGBA"
    for suffix in (".png", ".tif"):
        out = read_photo(write_photo(tmp_path / f"o{suffix}", photo))
        np.testing.assert_array_equal(from_float(out.alpha, 8), rgba[..., 3])
    webp = read_photo(write_photo(tmp_path / "o.webp", photo, quality=100))
    assert webp.alpha is not None and np.abs(from_float(webp.alpha, 8).astype(int) - rgba[..., 3]).max() <= 2
    jpg = read_photo(write_photo(tmp_path / "o.jpg", photo))
    assert jpg.alpha is None and jpg.pixels.shape == (8, 12, 3)  # JPEG has no alpha: dropped


# --------------------------------------------------------------------------------------- bad input


def _truncate(src: Path, dst: Path, fraction: float = 0.5) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


def _one_line_naming(exc: pytest.ExceptionInfo, path: Path) -> None:
    msg = str(exc.value)
    assert "\n" not in msg and str(path) in msg
    assert isinstance(exc.value, DeepExposureError)


def test_bad_inputs_raise_photo_error(tmp_path, shared_data, monkeypatch):
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)  # switched on elsewhere: still refused
    jpg = shared_data / "pip_sample_photos" / "rocket.jpg"
    png = shared_data / "pip_sample_photos" / "astronaut.png"
    read_photo(jpg), read_photo(png)  # the originals are fine
    text = tmp_path / "notes.jpg"
    text.write_text("this is not a photo\n")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    u16 = RNG.integers(0, 65536, size=(64, 80, 3), dtype=np.uint16)
    p16 = write_photo(tmp_path / "full16.png", u16)
    t16 = write_photo(tmp_path / "full16.tif", u16)
    bad = [
        tmp_path / "missing.jpg",
        tmp_path,
        text,
        empty,
        _truncate(jpg, tmp_path / "trunc.jpg"),
        _truncate(jpg, tmp_path / "trunc_end.jpg", 0.97),
        _truncate(png, tmp_path / "trunc.png"),
        _truncate(png, tmp_path / "header_only.png", 0.001),
        _truncate(p16, tmp_path / "trunc16.png", 0.6),
        _truncate(t16, tmp_path / "trunc16.tif", 0.6),
    ]
    for f in bad:
        with pytest.raises(PhotoError) as exc:
            read_photo(f)
        _one_line_naming(exc, f)


def _png_header(w: int, h: int) -> bytes:
    """A PNG whose header claims w x h pixels, with one tiny (wrong) data chunk: a decompression-bomb stand-in."""
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def test_pixel_cap(tmp_path, monkeypatch):
    f = write_photo(tmp_path / "s.png", _smooth(48, 64))
    assert read_photo(f, max_pixels=48 * 64).pixels.shape == (48, 64, 3)
    with pytest.raises(PhotoError) as exc:
        read_photo(f, max_pixels=48 * 64 - 1)
    _one_line_naming(exc, f)
    assert "limit" in str(exc.value)

    # a header claiming 20000 x 20000 is refused before decoding, by default (above Pillow's own error level)
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_header(20_000, 20_000))
    with pytest.raises(PhotoError, match="limit"):
        read_photo(bomb)
    with pytest.raises(PhotoError):  # allowed by a higher cap: then it fails as corrupt, not as a crash
        read_photo(bomb, max_pixels=10**9)
    assert Image.MAX_IMAGE_PIXELS == 89_478_485 or Image.MAX_IMAGE_PIXELS is not None

    # Pillow's own guard: its error becomes PhotoError; its warning is not raised; its limit is restored
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(PhotoError, match="decompression bomb"):
        read_photo(f, max_pixels=2000)
    assert read_photo(f, max_pixels=10_000).pixels.shape == (48, 64, 3)  # cap above Pillow's: ours decides
    assert Image.MAX_IMAGE_PIXELS == 1000
    small = write_photo(tmp_path / "w.png", _smooth(30, 40))  # 1200 px: Pillow would warn
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_photo(small).pixels.shape == (30, 40, 3)


def test_unsupported_output_suffix(tmp_path):
    for name in ("x.heic", "x", "x.gif"):
        with pytest.raises(PhotoError) as exc:
            write_photo(tmp_path / name, _smooth())
        _one_line_naming(exc, tmp_path / name)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------- atomic writes


@pytest.mark.parametrize("error", [RuntimeError("encoder exploded"), OSError(28, "No space left on device")])
def test_failed_write_leaves_nothing(tmp_path, monkeypatch, error):
    real = dio._encode

    def half_then_fail(fh, *args, **kwargs):
        real(fh, *args, **kwargs)
        fh.write(b"junk")
        raise error

    monkeypatch.setattr(dio, "_encode", half_then_fail)
    dst = tmp_path / "sub" / "out.png"
    with pytest.raises(PhotoError) as exc:
        write_photo(dst, _smooth())
    _one_line_naming(exc, dst)
    assert list((tmp_path / "sub").iterdir()) == []


def test_interrupted_write_leaves_nothing_and_keeps_old_file(tmp_path, monkeypatch):
    dst = write_photo(tmp_path / "out.jpg", _smooth())
    before = dst.read_bytes()

    def interrupted(fh, *args, **kwargs):
        fh.write(b"\xff\xd8partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(dio, "_encode", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_photo(dst, _smooth(), overwrite=True)
    assert dst.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.jpg"]


def test_no_overwrite_without_flag(tmp_path):
    dst = write_photo(tmp_path / "deep" / "er" / "o.png", np.zeros((4, 4, 3), np.float32))  # folders created
    before = dst.read_bytes()
    with pytest.raises(PhotoError, match="exists") as exc:
        write_photo(dst, np.ones((4, 4, 3), np.float32))
    _one_line_naming(exc, dst)
    assert dst.read_bytes() == before
    write_photo(dst, np.ones((4, 4, 3), np.float32), overwrite=True)
    assert read_photo(dst).pixels.min() == 1.0
    assert sorted(p.name for p in dst.parent.iterdir()) == ["o.png"]  # no temporary file left
    with pytest.raises(PhotoError):
        write_photo(tmp_path / "deep", np.zeros((4, 4, 3), np.float32), overwrite=True)


def test_write_is_fsynced_then_renamed(tmp_path, monkeypatch):
    events: list[tuple[str, str]] = []
    real_fsync, real_link = os.fsync, os.link

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}") if os.path.exists("/proc/self/fd") else ""))
        return real_fsync(fd)

    def link(src, dst, **kw):
        events.append(("link", str(src)))
        return real_link(src, dst, **kw)

    monkeypatch.setattr(atomic.os, "fsync", fsync)
    monkeypatch.setattr(atomic.os, "link", link)
    dst = write_photo(tmp_path / "f.png", _smooth())
    assert [e[0] for e in events][:2] == ["fsync", "link"]
    tmp_name = events[1][1]
    assert Path(tmp_name).parent == tmp_path and is_temp_name(Path(tmp_name).name)  # hidden, deepexposure.atomic
    if events[0][1]:
        assert events[0][1] == tmp_name  # the temporary file's data was flushed to disk before it was linked
    assert not Path(tmp_name).exists() and dst.exists()


def test_written_file_follows_umask(tmp_path):
    old = os.umask(0o022)
    try:
        dst = write_photo(tmp_path / "perm.png", np.zeros((4, 4, 3), np.float32))
    finally:
        os.umask(old)
    if os.name == "posix":
        assert dst.stat().st_mode & 0o777 == 0o644


def test_input_photo_not_modified(tmp_path):
    px = _smooth()
    alpha = np.full(px.shape[:2], 0.5, np.float32)
    photo = Photo(pixels=px.copy(), alpha=alpha.copy(), bit_depth=16, exif=_exif(6), icc_profile=ICC)
    write_photo(tmp_path / "a.tif", photo)
    np.testing.assert_array_equal(photo.pixels, px)
    np.testing.assert_array_equal(photo.alpha, alpha)
    assert photo.exif == _exif(6)


# --------------------------------------------------------------------------------------- listing


def test_iter_photo_paths(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / ".hidden").mkdir()
    names = ["b.JPG", "a.png", "c.tiff", "d.webp", "e.jpeg", "f.TIF", "notes.txt", ".dot.jpg",
             "sub/z.png", ".hidden/h.png"]
    for n in names:
        (tmp_path / n).write_bytes(b"x")
    flat = iter_photo_paths([tmp_path])
    assert [p.name for p in flat] == ["a.png", "b.JPG", "c.tiff", "d.webp", "e.jpeg", "f.TIF"]
    deep = iter_photo_paths([tmp_path], recursive=True)
    assert [p.relative_to(tmp_path).as_posix() for p in deep] == [
        "a.png", "b.JPG", "c.tiff", "d.webp", "e.jpeg", "f.TIF", "sub/z.png"]
    # files kept as given (even unknown suffix), order kept, duplicates dropped, single path accepted
    got = iter_photo_paths([tmp_path / "notes.txt", tmp_path, tmp_path / "a.png"])
    assert got[0].name == "notes.txt" and len(got) == 7
    assert iter_photo_paths(str(tmp_path / "sub")) == [tmp_path / "sub" / "z.png"]
    with pytest.raises(PhotoError, match="no such"):
        iter_photo_paths([tmp_path / "nope"])
    assert {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".bmp"} == set(SUPPORTED_EXTENSIONS)


# --------------------------------------------------------------------------------------- real photos


@pytest.mark.slow
def test_every_shared_photo_reads(shared_data):
    from deepexposure.image.io import RAW_EXTENSIONS

    # camera RAW files (../shared/data/raw) are read in tests/test_raw.py, once each, with rawpy
    paths = [p for p in iter_photo_paths([shared_data], recursive=True) if p.suffix.lower() not in RAW_EXTENSIONS]
    suffixes = {p.suffix.lower() for p in paths}
    assert {".jpg", ".png", ".tif"} <= suffixes and len(paths) > 1000
    for p in paths:
        photo = read_photo(p)
        px = photo.pixels
        assert px.dtype == np.float32 and px.ndim == 3 and px.shape[2] == 3, p
        assert px.shape[0] >= 16 and px.shape[1] >= 16, p
        assert 0.0 <= px.min() and px.max() <= 1.0 and px.max() > px.min(), p
        assert photo.bit_depth in (8, 16)
    # the greyscale sample is expanded, the RGBA FiveK PNGs carry their (opaque) alpha
    cam = read_photo(shared_data / "pip_sample_photos" / "camera.png")
    assert cam.mode == "L" and np.array_equal(cam.pixels[..., 0], cam.pixels[..., 2])
    fivek = read_photo(shared_data / "fivek_deeplpf" / "input" / "a4576.png")
    assert fivek.alpha is not None and fivek.alpha.min() == 1.0


@pytest.mark.parametrize("orientation", range(1, 9))
def test_jpeg_decoded_by_opencv_equals_pillow(tmp_path, orientation):
    """read_photo decodes 8-bit colour JPEGs with OpenCV (issue 23: twice as fast): the same pixels as Pillow's
    path (decode, exif_transpose), every orientation; a truncated JPEG still goes to Pillow and is refused."""
    samples = sorted((Path(__file__).resolve().parents[1] / "samples").glob("*.jpg"))
    src = Image.open(samples[orientation % len(samples)])
    ex = Image.Exif()
    ex[0x0112] = orientation
    path = tmp_path / "o.jpg"
    src.save(path, exif=ex.tobytes(), quality=90, subsampling=orientation % 3)
    with Image.open(path) as im:
        assert dio._jpeg_pixels(im, path) is not None
        want = dio._pillow_pixels(im)
    assert np.array_equal(read_photo(path).pixels, want.astype(np.float32) / np.float32(255))
    raw = path.read_bytes()
    (tmp_path / "cut.jpg").write_bytes(raw[: len(raw) - 300])
    with pytest.raises(PhotoError):
        read_photo(tmp_path / "cut.jpg")


def test_jpeg_decoding_without_opencv_rgb_flag(monkeypatch):
    """OpenCV before 4.10 has no IMREAD_COLOR_RGB: the JPEG path decodes BGR and converts, same pixels as Pillow."""
    import cv2

    jpeg = Path(__file__).resolve().parents[1] / "samples" / "dicm_02.jpg"
    monkeypatch.delattr(cv2, "IMREAD_COLOR_RGB", raising=False)
    got = dio.read_photo(jpeg).pixels
    ref = np.asarray(Image.open(jpeg).convert("RGB"), np.float32) / 255
    assert np.array_equal(got, ref)


# --------------------------------------------------------------------------------------- codes kept


def test_an_8_bit_photo_keeps_its_codes_and_makes_floats_when_read(tmp_path):
    """read_photo keeps an 8-bit colour photo's codes; its float pixels are made on first access, exactly codes /
    255; new pixels drop the codes; a photo from elsewhere has none."""
    import dataclasses
    import pickle

    codes = (RNG.uniform(0, 1, (40, 56, 3)) * 255).astype(np.uint8)
    Image.fromarray(codes).save(tmp_path / "a.png")
    photo = read_photo(tmp_path / "a.png")
    assert photo.codes is not None and photo.shape == (40, 56)
    np.testing.assert_array_equal(photo.codes, codes)
    again = pickle.loads(pickle.dumps(photo))  # sent to a worker: still lazy, still the same photo
    assert np.array_equal(again.codes, codes)
    assert dataclasses.replace(photo, pixels=again.pixels * 0.5).codes is None  # other pixels: no codes
    px = photo.pixels
    assert px.dtype == np.float32 and px is photo.pixels and photo.shape == (40, 56)
    np.testing.assert_array_equal(px, codes.astype(np.float32) / np.float32(255))
    assert photo.codes is None  # read pixels may be changed in place: the codes would not say so
    px *= 0.5  # ... and such an edit is what is written, not the codes
    write_photo(tmp_path / "edited.png", photo)
    np.testing.assert_array_equal(read_photo(tmp_path / "edited.png").codes, from_float(px))
    fresh = read_photo(tmp_path / "a.png")
    assert dataclasses.replace(fresh, exif=b"x").codes is None  # replace() builds from the pixels: safe
    # grey, alpha and 16-bit photos have no codes; neither does a Photo made from floats
    Image.fromarray(codes[..., 0]).save(tmp_path / "g.png")
    Image.fromarray(np.dstack([codes, codes[..., :1]])).save(tmp_path / "rgba.png")
    cv2.imwrite(str(tmp_path / "d.png"), codes.astype(np.uint16) * 257)
    for name in ("g.png", "rgba.png", "d.png"):
        assert read_photo(tmp_path / name).codes is None, name
    assert Photo(pixels=px).codes is None
    with pytest.raises(TypeError, match="pixels"):
        Photo()
    with pytest.raises(ValueError, match="uint8"):
        Photo.from_codes(codes.astype(np.uint16))


def test_jpeg_from_rgbx_is_byte_identical_and_codes_are_written_as_they_are(tmp_path):
    """write_photo quantises a float photo into an RGBX buffer that Pillow shares for JPEG: the file's bytes are
    those of Pillow encoding the RGB codes (EXIF and ICC kept); a photo still holding its codes is written from them
    (the same file as from its floats)."""
    import io as _io

    x = _smooth(96, 128)
    photo = Photo(pixels=x, exif=_exif(), icc_profile=ICC)
    for quality in (95, 75):
        path = write_photo(tmp_path / f"q{quality}.jpg", photo, quality=quality)
        want = _io.BytesIO()
        Image.fromarray(from_float(x)).save(want, format="JPEG", quality=quality, exif=_exif(), icc_profile=ICC,
                                            subsampling=0 if quality >= 90 else 2)
        assert path.read_bytes() == want.getvalue()
    codes = from_float(x)
    for suffix in (".jpg", ".png", ".tif"):
        a = write_photo(tmp_path / f"codes{suffix}", Photo.from_codes(codes, exif=_exif()))
        b = write_photo(tmp_path / f"floats{suffix}", Photo(pixels=x, exif=_exif()))
        assert a.read_bytes() == b.read_bytes(), suffix


def test_pixels_made_once_when_threads_read_them_at_once():
    """Several threads reading a fresh photo's pixels get one and the same array (no error, no second copy whose
    edits would be lost)."""
    import threading

    codes = (RNG.uniform(0, 1, (300, 400, 3)) * 255).astype(np.uint8)
    for _ in range(20):
        photo = Photo.from_codes(codes)
        got, errors = [], []

        def read(photo=photo, got=got, errors=errors):
            try:
                got.append(photo.pixels)
            except Exception as exc:  # what it must not do
                errors.append(repr(exc))

        threads = [threading.Thread(target=read) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors and len(got) == 4 and all(g is photo.pixels for g in got)
