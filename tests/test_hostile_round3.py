"""Hostile round 3: fit-look, ``serve`` and the RAW-editor sidecars, broken the way a careless user and an attacker
would (docs/results/hostile_round3.md lists every case tried). Each test failed before its fix."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from deepexposure.errors import PhotoError
from deepexposure.image.sidecar import darktable_xmp, merge_darktable_xmp, sidecar_path, write_sidecars

# ------------------------------------------------------------------------------------------ sidecars


def _xmp() -> str:
    return darktable_xmp(0.5, "a.jpg")


def test_sidecar_merge_refuses_any_dtd_entity_expansion():
    """An entity small enough for expat's amplification limit was expanded (and the tree checked was not the text
    edited); a billion-laughs one only hit expat's limit. Any DTD is now refused before anything is expanded."""
    body = _xmp().split("\n", 1)[1]
    small = '<?xml version="1.0"?>\n<!DOCTYPE x [<!ENTITY a "AAAA">]>\n' + body.replace(
        'xmpMM:DerivedFrom="a.jpg"', 'xmpMM:DerivedFrom="&a;"')
    lol = ('<?xml version="1.0"?>\n<!DOCTYPE lolz [<!ENTITY lol "lol">'
           + "".join(f'<!ENTITY lol{i} "' + (f"&lol{i - 1};" if i else "&lol;") * 10 + '">' for i in range(9))
           + "]>\n" + body.replace('xmpMM:DerivedFrom="a.jpg"', 'xmpMM:DerivedFrom="&lol8;"'))
    external = '<?xml version="1.0"?>\n<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>\n' + body
    for text in (small, lol, external):
        with pytest.raises(PhotoError, match="DTD") as info:
            merge_darktable_xmp(text, 1.0, "x.xmp")
        assert "\n" not in str(info.value)


@pytest.mark.parametrize("crafted", ["whitespace", "history_tags"])
def test_sidecar_merge_is_linear_on_crafted_xmp(crafted):
    """The merge's regular expressions (``\\s+`` before the hash attribute, ``.*?`` up to ``</rdf:Seq>``) took
    quadratic time: 80 KB of blanks took 13 s, 8 MB would take days."""
    base = _xmp()
    if crafted == "whitespace":
        text = base.replace('darktable:history_end="1">', 'darktable:history_end="1"' + " " * 400_000 + ">")
    else:
        text = base + "<!--" + "<darktable:history><rdf:Seq>" * 20_000 + "-->\n"
    t = time.perf_counter()
    try:
        out = merge_darktable_xmp(text, 1.0, "x.xmp")
        assert 'history_end="2"' in out
    except PhotoError as exc:  # refusing the layout is fine too, in one line
        assert "\n" not in str(exc)
    assert time.perf_counter() - t < 2.0


@pytest.mark.parametrize("value", ["9" * 5000, "\u00b2"])
def test_sidecar_merge_history_end_not_an_ascii_number(value):
    """A history_end of 5000 digits or a superscript digit passed ``isdigit`` and crashed ``int`` (ValueError)."""
    text = _xmp().replace('history_end="1"', f'history_end="{value}"')
    with pytest.raises(PhotoError, match="cannot read"):
        merge_darktable_xmp(text, 1.0, "x.xmp")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_sidecar_fifo_is_refused_not_read(tmp_path):
    """A FIFO in the sidecar's place blocked ``enhance --sidecar darktable`` forever (it was read to merge)."""
    photo = tmp_path / "a.jpg"
    photo.write_bytes(b"")
    os.mkfifo(sidecar_path(photo, "darktable"))
    with pytest.raises(PhotoError, match="not a regular file"):
        write_sidecars(photo, ["darktable"], 0.5)
    # --overwrite replaces it with a sidecar
    assert write_sidecars(photo, ["darktable"], 0.5, overwrite=True)[0][1] == "replaced"
    assert sidecar_path(photo, "darktable").is_file()


def test_sidecar_link_to_endless_device_or_huge_file_is_refused(tmp_path):
    """A sidecar linked to /dev/zero was read until memory ran out; a huge one was read whole."""
    photo = tmp_path / "a.jpg"
    photo.write_bytes(b"")
    side = sidecar_path(photo, "darktable")
    big = tmp_path / "big.xmp"
    with open(big, "wb") as fh:
        fh.truncate(64 << 20)
    for target in ([Path("/dev/zero")] if Path("/dev/zero").exists() else []) + [big]:
        side.unlink(missing_ok=True)
        side.symlink_to(target)
        with pytest.raises(PhotoError):
            write_sidecars(photo, ["darktable"], 0.5)
    side.unlink()
    os.rename(big, side)
    with pytest.raises(PhotoError, match="over 8 MB"):
        write_sidecars(photo, ["darktable"], 0.5)


def test_sidecar_symlink_is_not_merged_without_overwrite_and_link_replaced_with_it(tmp_path):
    """A darktable sidecar that is a link to another XMP was merged without --overwrite: its target read, the link
    replaced by a file. Now refused; --overwrite replaces the link and leaves its target alone."""
    photo = tmp_path / "a.jpg"
    photo.write_bytes(b"")
    target = tmp_path / "elsewhere.xmp"
    target.write_text(_xmp())
    side = sidecar_path(photo, "darktable")
    side.symlink_to(target)
    with pytest.raises(PhotoError, match="symbolic link"):
        write_sidecars(photo, ["darktable"], 1.0)
    assert side.is_symlink()
    write_sidecars(photo, ["darktable"], 1.0, overwrite=True)
    assert not side.is_symlink() and side.is_file()
    assert target.read_text() == _xmp()
