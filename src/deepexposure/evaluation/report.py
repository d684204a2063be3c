"""Report writers: ``metrics.csv``, ``summary.json``, ``summary.md`` and ``report.html`` (+ ``thumbs/``).

All files are written atomically (a temporary file in the same folder, then ``os.replace``).
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from deepexposure.atomic import atomic_write_text as _atomic_write_text
from deepexposure.evaluation.baselines import BASELINES, ORACLES
from deepexposure.evaluation.metrics import METRICS, psnr_from_mse
from deepexposure.evaluation.runner import thumb_name

__all__ = ["summarize", "write_report", "markdown_table", "provenance", "atomic_write_text", "sort_method"]

_LABELS = {"mse": "MSE", "psnr": "PSNR (dB)", "ssim": "SSIM", "de76": "ΔE76", "de2000": "ΔE2000"}
_CSV_FIELDS = ["stem", "method", *METRICS, "seconds", "error"]


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically (:func:`deepexposure.atomic.atomic_write_text`)."""
    return _atomic_write_text(path, text)


def provenance() -> dict:
    """Package version and, when run from a git checkout, the commit (``+dirty`` with local changes)."""
    from deepexposure import __version__

    info = {"version": __version__, "commit": None}
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                                timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5, check=True).stdout.strip()
        info["commit"] = commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def _methods(records: Sequence[dict]) -> list[str]:
    out: list[str] = []
    for r in records:
        if r["method"] not in out:
            out.append(r["method"])
    return out


def _clean(x: float) -> float | None:
    """JSON-safe float: NaN and inf (not valid JSON) -> None."""
    return None if x is None or not math.isfinite(x) else float(x)


def summarize(records: Sequence[dict]) -> dict[str, dict]:
    """Per method: ``n`` (images measured), ``failed``, ``mean``/``median`` of every metric over images,
    ``psnr_of_mean_mse`` (PSNR of the set's mean MSE) and ``seconds`` (mean time per photo).

    Means are per-image averages (the PSNR mean is the mean of per-image PSNRs; an image with PSNR inf makes it
    inf). Failed runs are left out of the statistics and counted in ``failed``.
    """
    out: dict[str, dict] = {}
    for name in _methods(records):
        rs = [r for r in records if r["method"] == name]
        ok = [r for r in rs if not r["error"]]
        s: dict = {"n": len(ok), "failed": len(rs) - len(ok), "mean": {}, "median": {}}
        for k in METRICS:
            v = np.array([r[k] for r in ok], dtype=np.float64)
            s["mean"][k] = float(v.mean()) if v.size else math.nan
            s["median"][k] = float(np.median(v)) if v.size else math.nan
        s["psnr_of_mean_mse"] = psnr_from_mse(s["mean"]["mse"]) if ok else math.nan
        t = np.array([r["seconds"] for r in ok], dtype=np.float64)
        s["seconds"] = float(t.mean()) if t.size else math.nan
        out[name] = s
    return out


def _fmt(x: float, k: str) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    if math.isinf(x):
        return "inf"
    return f"{x:.4f}" if k == "ssim" else f"{x:.2f}"


def markdown_table(summary: dict[str, dict]) -> str:
    """Markdown table of the per-method means (and median PSNR), one row per method."""
    head = ["Method", "n", "MSE", "PSNR (dB)", "PSNR of mean MSE", "median PSNR", "SSIM", "ΔE76", "ΔE2000", "s/photo"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for name, s in summary.items():
        m = s["mean"]
        n = f"{s['n']}" + (f" ({s['failed']} failed)" if s["failed"] else "")
        cells = [f"`{name}`", n, _fmt(m["mse"], "mse"), _fmt(m["psnr"], "psnr"), _fmt(s["psnr_of_mean_mse"], "psnr"),
                 _fmt(s["median"]["psnr"], "psnr"), _fmt(m["ssim"], "ssim"), _fmt(m["de76"], "de76"),
                 _fmt(m["de2000"], "de2000"), _fmt(s["seconds"], "s")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def sort_method(methods: Sequence[str]) -> str:
    """The column the HTML rows are sorted by: the first model method (a policy or ``folder:``), else the
    first method that is not ``input``/``identity``, else ``input``."""
    cols = [m for m in methods if m != "input"]
    for m in cols:
        if m not in BASELINES and m not in ORACLES:
            return m
    for m in cols:
        if m != "identity":
            return m
    return "input"


def _csv(records: Sequence[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=_CSV_FIELDS, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for r in records:
        row = dict(r)
        for k in (*METRICS, "seconds"):
            v = row.get(k, math.nan)
            row[k] = "" if v is None or math.isnan(v) else repr(float(v))
        w.writerow(row)
    return buf.getvalue()


_CSS = """
body{font-family:system-ui,sans-serif;margin:16px;color:#222;background:#fafafa}
table{border-collapse:collapse}
td,th{padding:4px 6px;vertical-align:top;text-align:center;font-size:13px}
th{position:sticky;top:0;background:#eee}
.summary td,.summary th{border:1px solid #ccc;text-align:right}
.summary td:first-child,.summary th:first-child{text-align:left}
table.grid{width:100%;table-layout:fixed}
table.grid th:first-child{width:64px}
img{display:block;width:100%;height:auto;max-width:320px;margin:auto}
.stem{font-weight:bold;text-align:left;white-space:nowrap;overflow:hidden}
.good{color:#080}.bad{color:#b00}.same{color:#666}
th.key{background:#ffd}
tr.row{border-top:1px solid #ccc}
"""


def _html(records: Sequence[dict], summary: dict, config: dict, thumbs: str | None) -> str:
    methods = _methods(records)
    key = sort_method(methods)
    by = {(r["stem"], r["method"]): r for r in records}
    stems = list(dict.fromkeys(r["stem"] for r in records))

    def psnr_of(stem: str, m: str) -> float:
        r = by.get((stem, m))
        v = r["psnr"] if r and not r["error"] else math.nan
        return -math.inf if math.isnan(v) else v

    stems.sort(key=lambda s: psnr_of(s, key))
    e = html.escape
    out = ["<!DOCTYPE html><html><head><meta charset='utf-8'><title>deepexposure evaluation</title>",
           f"<style>{_CSS}</style></head><body>", "<h1>deepexposure evaluation</h1>",
           f"<p>{e(config.get('dataset', ''))} — {len(stems)} photos; metrics at long edge "
           f"{e(str(config.get('long_edge')))} px, SSIM variant {e(str(config.get('ssim_variant')))}; "
           f"version {e(str(config.get('version')))}, commit {e(str(config.get('commit')))}.</p>",
           "<table class='summary'><tr><th>method</th><th>n</th><th>MSE</th><th>PSNR</th><th>PSNR of mean MSE</th>"
           "<th>SSIM</th><th>ΔE76</th><th>ΔE2000</th></tr>"]
    for name, s in summary.items():
        m = s["mean"]
        out.append(f"<tr><td>{e(name)}</td><td>{s['n']}</td><td>{_fmt(m['mse'], 'mse')}</td>"
                   f"<td>{_fmt(m['psnr'], 'psnr')}</td><td>{_fmt(s['psnr_of_mean_mse'], 'psnr')}</td>"
                   f"<td>{_fmt(m['ssim'], 'ssim')}</td><td>{_fmt(m['de76'], 'de76')}</td>"
                   f"<td>{_fmt(m['de2000'], 'de2000')}</td></tr>")
    out.append("</table>")
    out.append(f"<h2>Per photo, worst first by PSNR of <code>{e(key)}</code></h2><p>PSNR in green/red: better/worse "
               "than the input's. Click a thumbnail to open it.</p>")
    if thumbs is None:
        out.append("<p>(no thumbnails were written)</p>")
    cols = [*methods, "target"]
    out.append("<table class='grid'><tr><th>photo</th>"
               + "".join(f"<th{' class=key' if c == key else ''}>{e(c)}</th>" for c in cols) + "</tr>")
    for stem in stems:
        base = psnr_of(stem, "input")
        cells = [f"<td class='stem'>{e(stem)}</td>"]
        for c in cols:
            img = ""
            if thumbs is not None:
                src = f"{thumbs}/{thumb_name(stem, c)}"
                img = f"<a href='{e(src)}'><img loading='lazy' src='{e(src)}' alt='{e(stem)} {e(c)}'></a>"
            if c == "target":
                cap = "target"
            else:
                r = by.get((stem, c))
                if r is None:
                    cap = "—"
                elif r["error"]:
                    cap = f"<span class='bad' title='{e(r['error'])}'>failed</span>"
                    img = ""
                else:
                    v = r["psnr"]
                    cls = "" if c == "input" else (" class='good'" if v > base + 0.005 else
                                                   " class='bad'" if v < base - 0.005 else " class='same'")
                    cap = f"<span{cls}>{_fmt(v, 'psnr')} dB</span><br>SSIM {_fmt(r['ssim'], 'ssim')}"
            cells.append(f"<td>{img}{cap}</td>")
        out.append("<tr class='row'>" + "".join(cells) + "</tr>")
    out.append("</table></body></html>\n")
    return "\n".join(out)


def write_report(records: Sequence[dict], out_dir: str | os.PathLike, *, config: dict | None = None,
                 thumbs: str | None = "thumbs") -> dict[str, Path]:
    """Write ``metrics.csv``, ``summary.json``, ``summary.md`` and ``report.html`` into ``out_dir``.

    ``records``: from :func:`deepexposure.evaluation.runner.evaluate_pairs`; ``config``: run settings stored in
    summary.json (long_edge, ssim_variant, dataset, ...; version and commit are added); ``thumbs``: the
    thumbnails folder relative to ``out_dir`` (None: the HTML has captions only). Returns the written paths.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = {**(config or {}), **provenance()}
    summary = summarize(records)
    js = {"config": cfg, "metrics": {k: _LABELS[k] for k in METRICS},
          "methods": {n: {"n": s["n"], "failed": s["failed"],
                          "mean": {k: _clean(v) for k, v in s["mean"].items()},
                          "median": {k: _clean(v) for k, v in s["median"].items()},
                          "psnr_of_mean_mse": _clean(s["psnr_of_mean_mse"]), "seconds": _clean(s["seconds"])}
                      for n, s in summary.items()}}
    md = (f"# Evaluation: {cfg.get('dataset', '')}\n\n"
          f"Metrics at long edge {cfg.get('long_edge')} px (8-bit, INTER_AREA), SSIM variant "
          f"`{cfg.get('ssim_variant')}`, means over images (PSNR: mean of per-image PSNR; the PSNR of the mean MSE "
          f"next to it). deepexposure {cfg['version']}, commit {cfg['commit']}.\n\n" + markdown_table(summary))
    paths = {
        "metrics.csv": atomic_write_text(out / "metrics.csv", _csv(records)),
        "summary.json": atomic_write_text(out / "summary.json", json.dumps(js, indent=2) + "\n"),
        "summary.md": atomic_write_text(out / "summary.md", md),
        "report.html": atomic_write_text(out / "report.html", _html(records, summary, cfg, thumbs)),
    }
    return paths
