#!/usr/bin/env python
"""PSNR table on the paired dev set (data/dev/{input,target}): input, fixed-exposure fusion, policies, oracles.

Everything is measured by :mod:`deepexposure.evaluation`, as ``deepexposure evaluate --long-edge native`` does:
PSNR of the joint MSE over all pixels and channels after quantising to 8 bits (``evaluation.metrics``), at the dev
set's own resolution (long edge <= 512 px; bsds500/test pairs are 481x321). Rows:

* ``input``: the degraded input as it is;
* ``fixed-fusion``: render_fusion(input, [-1, 1, 2]) (Mertens fusion with the original);
* ``NAME local`` / ``NAME fusion``: a policy through ``Enhancer`` (its EVs, segmented with the parameters stored in
  the policy) rendered with render_local / render_fusion;
* ``oracle-global``: the best single global EV against the target (``evaluation.baselines.oracle_global_ev``);
* ``oracle-recipe``: the best EV per segment for the local renderer (``evaluation.baselines.oracle_recipe_evs``,
  segments of the shipped policy's segmentation): a ceiling for the local renderer.

Example:
  python scripts/eval_dev.py --policy DE-I=runs/best/policy.pt --policy DE-II=runs/de2/policy.pt --out table.md
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from deepexposure.data import paired_folder
from deepexposure.evaluation import evaluate_pairs, summarize
from deepexposure.evaluation.baselines import ModelMethod


class _LoggedPolicy:
    """A policy method (``evaluation.baselines.ModelMethod``) shown as ``name`` that keeps the EVs it chose."""

    needs_target = False

    def __init__(self, path: str, renderer: str, name: str) -> None:
        self.method = ModelMethod(path, renderer=renderer)
        self.name = name
        self.evs: list[list[float]] = []

    def __call__(self, srgb: np.ndarray, *, target: np.ndarray | None = None) -> np.ndarray:
        out = self.method(srgb)
        self.evs.append(list(self.method.last_recipe.evs))
        return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dev", default="data/dev", help="folder with input/ and target/ (default data/dev)")
    ap.add_argument("--policy", action="append", default=[], help="NAME=PATH of a policy.pt (repeatable)")
    ap.add_argument("--limit", type=int, default=None, help="only the first N pairs (sorted by stem)")
    ap.add_argument("--no-oracle", action="store_true", help="skip the oracle rows")
    ap.add_argument("--out", default=None, help="write the table (markdown) here, and NAME.json beside it")
    args = ap.parse_args(argv)

    methods: list = ["fixed-fusion"]
    logged: dict[str, _LoggedPolicy] = {}
    for spec in args.policy:
        name, _, path = spec.partition("=")
        for renderer in ("local", "fusion"):
            m = _LoggedPolicy(path, renderer, f"{name} {renderer}")
            methods.append(m)
        logged[name] = m  # the EVs do not depend on the renderer: log them once
    if not args.no_oracle:
        methods += ["oracle-global", "oracle-recipe"]
    pairs = paired_folder(args.dev)[: args.limit]
    t0 = time.time()
    records = evaluate_pairs(pairs, methods, long_edge=None, progress=False)
    stats = summarize(records)
    rows = {name: [r["psnr"] for r in records if r["method"] == name] for name in stats}
    base = stats["fixed-fusion"]["mean"]["psnr"]
    lines = ["| method | mean PSNR (dB) | vs fixed fusion (dB) |", "|---|---|---|"]
    summary = {}
    for name, s in stats.items():
        m = s["mean"]["psnr"]
        summary[name] = m
        lines.append(f"| {name} | {m:.2f} | {m - base:+.2f} |")
    table = "\n".join(lines)
    print(f"{len(pairs)} pairs from {args.dev}, {time.time() - t0:.0f} s")
    print(table)
    for name, m in logged.items():
        flat = np.concatenate([np.asarray(e) for e in m.evs])
        print(f"{name}: mean EV {flat.mean():+.2f}, mean |EV| {np.abs(flat).mean():.2f}")
    if args.out:
        Path(args.out).write_text(table + "\n")
        Path(args.out).with_suffix(".json").write_text(json.dumps({"pairs": len(pairs), "mean_psnr": summary,
                                                                    "per_image": rows}, indent=1))
    return summary


if __name__ == "__main__":
    main()
