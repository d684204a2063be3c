#!/usr/bin/env python
"""The exposure protocol of docs/evaluation.md in one command: withheld families, real FiveK pairs, MSEC offsets.

1. **Synthetic families** (``data/fam/<set>``, made by ``deepexposure make-pairs ../shared/data/bsds500/test
   --limit 60 --family F``): each family's set is scored with the run that did NOT train on it (``--fold F=RUN``;
   ``--main`` for the mix and for families without a fold). Columns: input, fixed fusion, the run's
   ``learned-global`` baseline and its policy, each through every ``--renderer``, the shipped looks (``natural``,
   ``expert``; ``--also``) and oracle-global.
2. **Real FiveK pairs** (expert C, ``fivek_deeplpf`` + ``fivek_extra``): per pair, and wins counted against input,
   fixed fusion and learned-global.
3. **MSEC renders** (``msec_examples/fivek_rendered``, suffix = exposure offset): the mean applied EV (policy:
   segment EVs weighted by segment area) against the offset; the sign is right when it opposes the offset.

Everything is measured by :mod:`deepexposure.evaluation` (PSNR on 8-bit images at the pairs' native size).

Example:
  python scripts/protocol.py --main runs/dgm --fold tone=runs/foldA --fold noise=runs/foldA \\
      --renderer fusion --renderer rolloff --out docs/results/protocol
"""

from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path

import numpy as np

from deepexposure.data import FAMILIES, paired_folder
from deepexposure.evaluation import evaluate_pairs, summarize
from deepexposure.evaluation.baselines import LearnedGlobalMethod, get_method
from deepexposure.evaluation.report import atomic_write_text
from deepexposure.image.io import iter_photo_paths, read_photo

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
_OFFSET = re.compile(r"_([NP])(\d+(?:\.\d+)?)$")


ALSO: list[str] = []  # extra models (e.g. the shipped one) scored with the first renderer, from --also


def _methods(run: str, renderers: list[str]) -> tuple[list, dict]:
    """The columns for ``run`` and their names: {"lg": {renderer: name}, "policy": {renderer: name}, "also": [..]}."""
    lg = {r: get_method(f"learned-global:{run}", renderer=r) for r in renderers}
    pol = {r: get_method(run, renderer=r) for r in renderers}
    also = [get_method(a, renderer=None if a in ("natural", "expert", "deepexposure") else renderers[0])
            for a in ALSO]
    names = {"lg": {r: m.name for r, m in lg.items()}, "policy": {r: m.name for r, m in pol.items()},
             "also": [m.name for m in also]}
    return ["fixed-fusion", *lg.values(), *pol.values(), *also, "oracle-global"], names


def synthetic(args, renderers: list[str]) -> dict:
    folds = dict(f.split("=", 1) for f in args.fold)
    res = {}
    for fam in args.sets.split(","):
        d = Path(args.fam_root) / fam
        if not d.is_dir():
            continue
        run = folds.get(fam, args.main)
        pairs = paired_folder(d)[: args.limit]
        ms, names = _methods(run, renderers)
        recs = evaluate_pairs(pairs, ms, long_edge=None, jobs=args.jobs, progress=False)
        res[fam] = {"run": run, "summary": summarize(recs), "names": names}
        print(f"{fam}: done ({run})", flush=True)
    return res


def real_pairs(args, renderers: list[str]) -> dict:
    pairs = []
    for sub in ("fivek_deeplpf", "fivek_extra"):
        pairs += paired_folder(SHARED / sub)
    ms, names = _methods(args.main, renderers)
    recs = evaluate_pairs(pairs, ms, long_edge=None, jobs=args.jobs, progress=False)
    per: dict[str, dict[str, float]] = {}
    for r in recs:
        per.setdefault(r["stem"], {})[r["method"]] = r["psnr"]
    return {"summary": summarize(recs), "per_pair": per, "names": names}


def msec(args, renderers: list[str]) -> list[dict]:
    from deepexposure.inference.enhance import Enhancer

    enh = Enhancer(args.main, renderer=renderers[0])
    lg = LearnedGlobalMethod(args.main)
    rows = []
    for p in iter_photo_paths([SHARED / "msec_examples" / "fivek_rendered"]):
        m = _OFFSET.search(p.stem)
        if not m:
            continue
        offset = (-1 if m.group(1) == "N" else 1) * float(m.group(2))
        img = read_photo(p).pixels
        rec = enh.recipe(img)
        area = np.bincount(np.asarray(rec.labels).ravel(), minlength=len(rec.evs))[: len(rec.evs)]
        ev = float(np.dot(area, rec.evs) / area.sum())
        rows.append({"photo": p.name, "offset": offset, "policy_ev": ev, "policy_evs": rec.evs,
                     "learned_global_ev": lg.ev(img)})
    return rows


def _fmt_family(res: dict, renderers: list[str]) -> str:
    also = next(iter(res.values()))["names"]["also"] if res else []
    head = "| set | trained without it | input | fixed fusion | " + " | ".join(
        f"learned-global {r} | policy {r}" for r in renderers) + "".join(f" | {a}" for a in also) + \
        " | oracle-global | policy - fixed fusion | policy - learned-global |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for fam, d in res.items():
        s = d["summary"]
        run = Path(d["run"]).name
        lg = {r: s[n]["mean"]["psnr"] for r, n in d["names"]["lg"].items()}
        pol = {r: s[n]["mean"]["psnr"] for r, n in d["names"]["policy"].items()}
        best = max(renderers, key=lambda r: pol.get(r, -math.inf))
        cells = [fam, run, f"{s['input']['mean']['psnr']:.2f}", f"{s['fixed-fusion']['mean']['psnr']:.2f}"]
        for r in renderers:
            cells += [f"{lg.get(r, math.nan):.2f}", f"{pol.get(r, math.nan):.2f}"]
        cells += [f"{s[a]['mean']['psnr']:.2f}" for a in d["names"]["also"]]
        cells += [f"{s['oracle-global']['mean']['psnr']:.2f}",
                  f"{pol[best] - s['fixed-fusion']['mean']['psnr']:+.2f} ({best})",
                  f"{pol[best] - lg[best]:+.2f} ({best})"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _fmt_real(res: dict) -> str:
    per = res["per_pair"]
    cols = list(next(iter(per.values())).keys())
    lines = ["| pair | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
    for stem, row in per.items():
        lines.append(f"| {stem} | " + " | ".join(f"{row[c]:.2f}" for c in cols) + " |")
    means = {c: float(np.mean([row[c] for row in per.values()])) for c in cols}
    lines.append("| **mean** | " + " | ".join(f"**{means[c]:.2f}**" for c in cols) + " |")
    pols = list(res["names"]["policy"].values())
    out = "\n".join(lines) + "\n\nWins (PSNR higher on that pair), per policy column:\n\n"
    for p in pols:
        vs = {}
        for other in ("input", "fixed-fusion", *res["names"]["lg"].values()):
            wins = sum(row[p] > row[other] for row in per.values())
            vs[other] = f"{wins}/{len(per)}"
        out += f"- `{p}`: " + ", ".join(f"vs `{k}` {v}" for k, v in vs.items()) + "\n"
    return out


def _fmt_msec(rows: list[dict]) -> str:
    lines = ["| photo | offset (EV) | policy mean EV | right sign | learned-global EV | right sign |",
             "|---|---:|---:|:-:|---:|:-:|"]
    for r in rows:
        lines.append(f"| {r['photo']} | {r['offset']:+.1f} | {r['policy_ev']:+.2f} | "
                     f"{'yes' if r['policy_ev'] * r['offset'] < 0 else 'NO'} | {r['learned_global_ev']:+.2f} | "
                     f"{'yes' if r['learned_global_ev'] * r['offset'] < 0 else 'NO'} |")
    pol_ok = sum(r["policy_ev"] * r["offset"] < 0 for r in rows)
    lg_ok = sum(r["learned_global_ev"] * r["offset"] < 0 for r in rows)
    err = np.mean([abs(r["policy_ev"] + r["offset"]) for r in rows])
    lerr = np.mean([abs(r["learned_global_ev"] + r["offset"]) for r in rows])
    return ("\n".join(lines) + f"\n\nRight sign: policy {pol_ok}/{len(rows)}, learned-global {lg_ok}/{len(rows)}; "
            f"mean |applied EV + offset|: policy {err:.2f} EV, learned-global {lerr:.2f} EV.\n")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--main", required=True, help="run folder of the model under test (policy.pt, learned_global.pkl)")
    ap.add_argument("--fold", action="append", default=[], help="FAMILY=RUN: a run trained without FAMILY")
    ap.add_argument("--renderer", action="append", default=None, help="renderer(s) for policy and baseline")
    ap.add_argument("--fam-root", default="data/fam")
    ap.add_argument("--limit", type=int, default=None, help="first N pairs of each synthetic set")
    ap.add_argument("--parts", default="synthetic,real,msec")
    ap.add_argument("--sets", default=",".join(["mix", *FAMILIES]), help="synthetic sets (comma-separated)")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--also", action="append", default=None,
                    help="extra model columns (default: the shipped looks, natural and expert, each with its own "
                         "renderer; others with the first --renderer)")
    ap.add_argument("--out", required=True, help="writes OUT.md and OUT.json")
    args = ap.parse_args(argv)
    renderers = args.renderer or ["fusion", "rolloff"]
    ALSO.extend(args.also if args.also is not None else ["natural", "expert"])
    parts = args.parts.split(",")
    result: dict = {"args": vars(args)}
    import sys

    cmd = " ".join(argv if argv is not None else sys.argv[1:])
    md = [f"# Protocol results: `{args.main}`\n", f"Command: `python scripts/protocol.py {cmd}`\n"]
    if "synthetic" in parts:
        result["synthetic"] = synthetic(args, renderers)
        md += ["## Synthetic sets (each family scored by a run that never saw it)\n",
               _fmt_family(result["synthetic"], renderers)]
    if "real" in parts:
        result["real"] = real_pairs(args, renderers)
        md += ["## Real FiveK pairs (expert C, 14)\n", _fmt_real(result["real"])]
    if "msec" in parts:
        result["msec"] = msec(args, renderers)
        md += ["## MSEC renders (known offset)\n", _fmt_msec(result["msec"])]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out.with_suffix(".md"), "\n".join(md))
    atomic_write_text(out.with_suffix(".json"), json.dumps(result, indent=1, default=str) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
