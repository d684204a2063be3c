"""Sidecars for RAW editors: a recipe's exposure as darktable's XMP history or RawTherapee's .pp3 profile.

``deepexposure enhance PHOTO --sidecar darktable|rawtherapee`` writes, next to the photo, the file the editor
reads when it opens it (``photo.CRW.xmp``, ``photo.CRW.pp3``), so that our exposure is an edit the photographer
keeps adjusting in the editor, not a baked JPEG. Pure text and XML: no model, no pixels.

What is carried: **one global EV** (:func:`global_ev`), in the editor's own exposure module, relative to the
photo *as shot* (sensor white on white, no automatic brightening: the same reference as the recipe's EVs, see
:mod:`deepexposure.image.raw`, and the same zero as both editors' exposure sliders). Not carried: per-segment EVs
(darktable's drawn/parametric masks cannot reproduce our edge-aware soft masks honestly; the EVs per segment stay
in the recipe JSON, ``--recipe``), the renderer's highlight roll-off or fusion, and a look's style (contrast,
saturation): the editor's own tone mapping does that part.

darktable (tested with 4.2): an XMP with one history step of the ``exposure`` module (params version 6, hex
encoded ``dt_iop_exposure_params_t``: int32 mode = manual, float black = 0, float exposure = EV, float deflicker
percentile 50, float deflicker target -4, int32 compensate_exposure_bias = 0; little endian, as darktable writes
it) and ``auto_presets_applied="0"``: darktable first applies the user's own workflow defaults (scene-referred:
filmic and its exposure preset), then our step, so the exposure module ends at the EV (in the scene-referred
workflow this replaces darktable's default +0.7 EV). An existing darktable XMP is never replaced without
``overwrite``: when its history is plain (steps numbered 0..n-1, ``history_end`` = n, nothing undone) our step is
appended as step n and ``history_end`` becomes n + 1 (one undoable step, the photographer's own edits kept; the
now stale ``history_current_hash`` is left out, the rest of the file kept byte for byte);
otherwise :class:`~deepexposure.errors.PhotoError` (one line naming the file and ``--overwrite``).

RawTherapee (tested with 5.9): a partial processing profile (``[Version]``, ``[Exposure]`` with ``Auto=false``,
``Compensation=EV``); every other value is RawTherapee's neutral one (``rawtherapee-cli -d -s`` puts the user's
default profile under it). An existing .pp3 is a full profile with no history: never merged, replaced only with
``overwrite``.
"""

from __future__ import annotations

import base64
import math
import os
import re
import stat
import struct
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path
from xml.parsers import expat

import numpy as np

from deepexposure.atomic import atomic_write_text
from deepexposure.errors import PhotoError
from deepexposure.image.color import luminance
from deepexposure.image.recipe import Recipe


def _quoteattr(value: str) -> str:
    """``xml.sax.saxutils.quoteattr`` (importing it pulls in urllib and http: 20 ms of every command's start-up)."""
    from xml.sax.saxutils import quoteattr

    return quoteattr(value)


__all__ = ["EDITORS", "SIDECAR_SUFFIX", "EV_RANGE", "sidecar_path", "global_ev", "darktable_exposure_params",
           "decode_darktable_exposure", "darktable_xmp", "merge_darktable_xmp", "rawtherapee_pp3", "write_sidecars",
           "check_sidecars"]

EDITORS = ("darktable", "rawtherapee")
#: The editor's sidecar is the photo's full name plus this suffix (``photo.CRW`` -> ``photo.CRW.xmp``).
SIDECAR_SUFFIX = {"darktable": ".xmp", "rawtherapee": ".pp3"}
#: The EVs the editors' exposure modules take (darktable's exposure slider, RawTherapee's compensation).
EV_RANGE = {"darktable": (-18.0, 18.0), "rawtherapee": (-5.0, 12.0)}

_RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
_DT = "http://darktable.sf.net/"
_EXPOSURE_VERSION = 6  # dt_iop_exposure_params_t version of darktable 3.x-4.x
_EXPOSURE_FORMAT = "<iffffi"  # mode, black, exposure, deflicker percentile, deflicker target, compensate bias
#: An existing darktable XMP larger than this is not read (a long history is a few hundred KB).
MAX_XMP_BYTES = 8 << 20
_PP3_VERSION = 349  # RawTherapee 5.9's profile version (newer versions read it and convert)
#: The label of our history step in darktable (shown beside the module's name).
DT_LABEL = "deepexposure"


def sidecar_path(photo: str | os.PathLike, editor: str) -> Path:
    """Where ``editor`` looks for the sidecar of ``photo``: beside it, its full name plus the editor's suffix."""
    photo = Path(photo)
    return photo.with_name(photo.name + SIDECAR_SUFFIX[_check_editor(editor)])


def _check_editor(editor: str) -> str:
    if editor not in EDITORS:
        raise ValueError(f"unknown editor {editor!r}: one of {', '.join(EDITORS)}")
    return editor


def global_ev(recipe: Recipe, preview: np.ndarray | None = None) -> float:
    """The one EV a sidecar carries for ``recipe``.

    One EV: that EV. Several EVs with segment labels and the photo's 64x64 ``preview`` (sRGB, what the model saw):
    the luminance-weighted mean in linear light, g = log2(sum_k a_k L_k 2^e_k / sum_k a_k L_k) with a_k the
    segment's share of the preview and L_k its mean linear luminance, i.e. the one exposure that brightens the
    frame's mean linear luminance as much as the per-segment EVs do. Without a preview (or a black one): the
    area-weighted mean of the EVs; without labels (a fusion recipe given several EVs by hand): their mean.
    """
    evs = np.asarray(recipe.evs, dtype=np.float64)
    if evs.size == 0 or not np.all(np.isfinite(evs)):
        raise PhotoError("the recipe has no finite exposure value to write to a sidecar")
    if evs.size == 1:
        return float(evs[0])
    labels = recipe.labels
    if labels is None:
        return float(evs.mean())
    labels = np.asarray(labels)
    area = np.bincount(labels.ravel(), minlength=evs.size)[:evs.size].astype(np.float64)
    if preview is not None and np.asarray(preview).shape[:2] == labels.shape:
        lum = luminance(np.asarray(preview, dtype=np.float32)).astype(np.float64)
        weight = np.bincount(labels.ravel(), weights=lum.ravel(), minlength=evs.size)[:evs.size]  # a_k * L_k
        if weight.sum() > 0:
            return float(np.log2(np.sum(weight * np.exp2(evs)) / weight.sum()))
    return float(np.sum(area * evs) / max(area.sum(), 1.0))


def _checked_ev(ev: float, editor: str) -> float:
    lo, hi = EV_RANGE[editor]
    if not (math.isfinite(ev) and lo <= ev <= hi):
        raise PhotoError(f"exposure {ev:+.3f} EV is outside the {editor} exposure range [{lo:g}, {hi:g}]")
    return float(ev)


# ------------------------------------------------------------------------------------------ darktable


def darktable_exposure_params(ev: float) -> str:
    """``darktable:params`` of the exposure module (version 6) at ``ev`` stops, manual mode, as hex."""
    ev = _checked_ev(ev, "darktable")
    return struct.pack(_EXPOSURE_FORMAT, 0, 0.0, ev, 50.0, -4.0, 0).hex()


def decode_darktable_exposure(params: str) -> dict:
    """The fields of an exposure ``darktable:params`` blob (version 6), hex or darktable's ``gzNN`` + base64 zlib."""
    if params.startswith("gz"):
        blob = zlib.decompress(base64.b64decode(params[4:]))
    else:
        blob = bytes.fromhex(params)
    if len(blob) != struct.calcsize(_EXPOSURE_FORMAT):
        raise ValueError(f"{len(blob)} bytes: not exposure params version {_EXPOSURE_VERSION}")
    mode, black, exposure, percentile, target, compensate = struct.unpack(_EXPOSURE_FORMAT, blob)
    return {"mode": mode, "black": black, "exposure": exposure, "deflicker_percentile": percentile,
            "deflicker_target_level": target, "compensate_exposure_bias": compensate}


def _history_item(num: int, ev: float, indent: str) -> str:
    attrs = [("num", str(num)), ("operation", "exposure"), ("enabled", "1"), ("modversion", str(_EXPOSURE_VERSION)),
             ("params", darktable_exposure_params(ev)), ("multi_name", DT_LABEL), ("multi_priority", "0")]
    inner = "".join(f"\n{indent}  darktable:{k}={_quoteattr(v)}" for k, v in attrs)
    return f"{indent}<rdf:li{inner}/>"


def darktable_xmp(ev: float, photo_name: str) -> str:
    """A new darktable XMP sidecar for the photo file named ``photo_name``: one exposure step at ``ev`` (module doc)."""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="deepexposure">
 <rdf:RDF xmlns:rdf="{_RDF}">
  <rdf:Description rdf:about=""
    xmlns:xmpMM="http://ns.adobe.com/xap/1.0/mm/"
    xmlns:darktable="{_DT}"
   xmpMM:DerivedFrom={_quoteattr(photo_name)}
   darktable:xmp_version="5"
   darktable:raw_params="0"
   darktable:auto_presets_applied="0"
   darktable:history_end="1">
   <darktable:history>
    <rdf:Seq>
{_history_item(0, ev, "     ")}
    </rdf:Seq>
   </darktable:history>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
"""


_END_RE = re.compile(r'darktable:history_end="([0-9]+)"')
_HASH_ATTR = 'darktable:history_current_hash="'
_HEX_RE = re.compile(r'[0-9a-fA-F]*"')
_WS = " \t\r\n"


def _history_items(text: str) -> tuple[int, int] | None:
    """(start, end) of the text between ``<darktable:history><rdf:Seq>`` and the line of ``</rdf:Seq>`` that closes
    it (where the steps are), or None unless each of the two history tags occurs once. Plain string search, linear
    in the text (a regular expression with ``.*?`` and ``\\s*`` takes quadratic time on a crafted XMP)."""
    head, tail = "<darktable:history>", "</darktable:history>"
    if text.count(head) != 1 or text.count(tail) != 1:
        return None
    a, b = text.index(head) + len(head), text.index(tail)
    inner = text[a:b] if a <= b else ""
    body = inner.lstrip(_WS)
    if not body.startswith("<rdf:Seq>") or not inner.rstrip(_WS).endswith("</rdf:Seq>"):
        return None
    start = a + len(inner) - len(body) + len("<rdf:Seq>")
    end = a + len(inner.rstrip(_WS)) - len("</rdf:Seq>")
    while end > start and text[end - 1] in " \t":
        end -= 1
    if end > start and text[end - 1] == "\n":
        end -= 1
    return (start, end) if start <= end else None


def _drop_current_hash(text: str) -> str:
    """``text`` without its ``history_current_hash`` attribute (and the blanks before it), if it has one."""
    i = text.find(_HASH_ATTR)
    m = _HEX_RE.match(text, i + len(_HASH_ATTR)) if i > 0 else None
    k = i
    while k > 0 and text[k - 1] in _WS:
        k -= 1
    return text[:k] + text[m.end():] if m and k < i else text


class _DoctypeRefused(Exception):
    pass


def _refuse_doctype(*_args) -> None:
    raise _DoctypeRefused


def _parse_xml(text: str) -> ET.Element:
    """``text`` parsed with any DTD refused (darktable never writes one): no entity is declared, so none is expanded
    (no billion laughs, no external entity), and the tree parsed is the text the merge edits. A first pass of expat
    with a handler on the DTD refuses it (ElementTree's C parser exposes no handlers), then ElementTree builds the
    tree of what is left: plain XML."""
    check = expat.ParserCreate()
    check.StartDoctypeDeclHandler = _refuse_doctype
    check.EntityDeclHandler = _refuse_doctype
    try:
        check.Parse(text, True)
    except expat.ExpatError:
        pass  # ElementTree reports it, with its own message
    return ET.fromstring(text)


def _parse_history(text: str, name: str) -> tuple[int, int]:
    """(steps, history_end) of a darktable XMP; PhotoError when it is not one we can append to safely."""
    try:
        root = _parse_xml(text)
    except _DoctypeRefused:
        raise PhotoError(f"{name}: an existing sidecar with a DTD (entity declarations; darktable never writes one); "
                         f"pass --overwrite to replace it") from None
    except ET.ParseError as exc:
        raise PhotoError(f"{name}: an existing sidecar that is not valid XML ({exc}); pass --overwrite to replace it"
                         ) from None
    descs = [d for d in root.iter(f"{{{_RDF}}}Description") if d.find(f"{{{_DT}}}history") is not None]
    if len(descs) != 1:
        raise PhotoError(f"{name}: an existing XMP without one darktable history (another program's?); "
                         f"pass --overwrite to replace it")
    desc = descs[0]
    seq = desc.find(f"{{{_DT}}}history/{{{_RDF}}}Seq")
    end = desc.get(f"{{{_DT}}}history_end")
    if seq is None or end is None or not (end.isascii() and end.isdigit() and len(end) <= 9):
        raise PhotoError(f"{name}: a darktable XMP whose history this version cannot read; "
                         f"pass --overwrite to replace it")
    nums = [li.get(f"{{{_DT}}}num") for li in seq.findall(f"{{{_RDF}}}li")]
    if nums != [str(i) for i in range(len(nums))]:
        raise PhotoError(f"{name}: a darktable history with unnumbered or reordered steps; "
                         f"pass --overwrite to replace it")
    if int(end) != len(nums):
        raise PhotoError(f"{name}: a darktable history with undone steps (history_end {end} of {len(nums)} steps): "
                         f"compress or redo them in darktable first, or pass --overwrite to replace it")
    return len(nums), int(end)


def merge_darktable_xmp(text: str, ev: float, name: str = "sidecar") -> str:
    """``text`` (an existing darktable XMP) with one exposure step at ``ev`` appended and ``history_end`` raised by
    one; every other byte kept. :class:`PhotoError` (one line naming ``name``) when that cannot be done safely."""
    n, _ = _parse_history(text, name)
    span = _history_items(text)
    ends = list(_END_RE.finditer(text))
    if span is None or len(ends) != 1:
        raise PhotoError(f"{name}: a darktable XMP laid out in a way this version does not edit; "
                         f"pass --overwrite to replace it")
    start, end = span
    indent = re.search(r"\n([ \t]*)<rdf:li", text[start:end])
    item = "\n" + _history_item(n, ev, indent.group(1) if indent else "     ")
    out = text[:end] + item + text[end:]
    e = _END_RE.search(out)
    out = out[:e.start(1)] + str(n + 1) + out[e.end(1):]
    # the hash of the current history no longer describes it: left out, as in darktable's older XMPs without one
    out = _drop_current_hash(out)
    if _parse_history(out, name) != (n + 1, n + 1):  # the edit did what it should, or nothing is written
        raise PhotoError(f"{name}: could not append to its darktable history; pass --overwrite to replace it")
    return out


# ------------------------------------------------------------------------------------------ RawTherapee


def rawtherapee_pp3(ev: float) -> str:
    """A partial RawTherapee profile setting the exposure compensation to ``ev`` (module doc)."""
    ev = _checked_ev(ev, "rawtherapee")
    return (f"[Version]\nAppVersion=5.9\nVersion={_PP3_VERSION}\n\n"
            f"[Exposure]\nAuto=false\nCompensation={_decimal(ev)}\n")


def _decimal(x: float) -> str:
    """``x`` to 6 decimals without trailing zeros (``0.5``, ``2.494435``, ``0``)."""
    text = f"{x:.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


# ------------------------------------------------------------------------------------------ writing


def _prepare(photo: Path, editor: str, ev: float, overwrite: bool) -> tuple[Path, str, str, bool]:
    """(path, text, action, exists) of ``editor``'s sidecar for ``photo``; PhotoError for a refused one."""
    path = sidecar_path(photo, editor)
    name = os.fspath(path)
    text = darktable_xmp(ev, photo.name) if editor == "darktable" else rawtherapee_pp3(ev)
    exists = path.exists() or path.is_symlink()
    if exists and path.is_dir():
        raise PhotoError(f"{name}: a folder is in the way of the {editor} sidecar")
    if not exists or overwrite:
        return path, text, "replaced" if exists else "written", exists
    if editor != "darktable":
        raise PhotoError(f"{name} exists (a RawTherapee profile: photographers keep their edits there); "
                         f"pass --overwrite to replace it")
    if path.is_symlink():  # merging would read one file and replace another: only --overwrite replaces the link
        raise PhotoError(f"{name} is a symbolic link; pass --overwrite to replace the link (its target is left alone)")
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):  # a FIFO would block, a device never end
            raise PhotoError(f"{name}: an existing sidecar that is not a regular file; pass --overwrite to replace it")
        if st.st_size > MAX_XMP_BYTES:
            raise PhotoError(f"{name}: an existing sidecar over {MAX_XMP_BYTES >> 20} MB is not read; "
                             f"pass --overwrite to replace it")
        with open(path, "rb") as fh:
            old = fh.read(MAX_XMP_BYTES + 1)
        if len(old) > MAX_XMP_BYTES:
            raise PhotoError(f"{name}: an existing sidecar over {MAX_XMP_BYTES >> 20} MB is not read; "
                             f"pass --overwrite to replace it")
        old = old.decode("utf-8")
    except UnicodeDecodeError:
        raise PhotoError(f"{name}: an existing sidecar that is not UTF-8 text; pass --overwrite to replace it"
                         ) from None
    except OSError as exc:
        raise PhotoError(f"{name}: cannot read the existing sidecar ({exc.strerror or exc})") from None
    return path, merge_darktable_xmp(old, ev, name), "merged", True


def _plans(photo: Path, editors, ev: float, overwrite: bool, skip_existing: bool) -> list:
    plans = []
    for editor in dict.fromkeys(editors):
        _check_editor(editor)
        if skip_existing and (sidecar_path(photo, editor).exists() or sidecar_path(photo, editor).is_symlink()):
            continue
        plans.append(_prepare(photo, editor, ev, overwrite))
    return plans


def check_sidecars(photo: str | os.PathLike, editors, *, overwrite: bool = False, skip_existing: bool = False) -> None:
    """Raise the :class:`PhotoError` that :func:`write_sidecars` would raise for an existing sidecar of ``photo``
    (one not to replace, a history not to merge, a link, a folder), before any work: ``enhance -o OUT --sidecar``
    checks this first, so that a refused sidecar does not leave the photo written and the job failed."""
    _plans(Path(photo), editors, 0.0, overwrite, skip_existing)


def write_sidecars(photo: str | os.PathLike, editors, ev: float, *, overwrite: bool = False,
                   skip_existing: bool = False) -> list[tuple[Path, str]]:
    """Write each of ``editors``' sidecars for ``photo`` carrying ``ev`` -> [(path, ``"written"``, ``"replaced"``
    or ``"merged"``)]. An existing sidecar: left as it is with ``skip_existing``, replaced with ``overwrite``, a
    plain darktable history merged (module doc), otherwise :class:`PhotoError`. Every sidecar is checked (and
    merged in memory) before the first is written, so a refused one leaves the others untouched too; each write is
    atomic (:mod:`deepexposure.atomic`)."""
    plans = _plans(Path(photo), editors, ev, overwrite, skip_existing)
    done = []
    for path, text, action, exists in plans:
        try:
            atomic_write_text(path, text, overwrite=exists)
        except FileExistsError:
            raise PhotoError(f"{path} appeared while it was being written; rerun to merge into it") from None
        except OSError as exc:
            raise PhotoError(f"{path}: cannot write the sidecar ({exc.strerror or exc})") from None
        done.append((path, action))
    return done
