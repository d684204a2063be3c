#!/usr/bin/env python
"""Probe: can a better learner or better targets beat the learned-global trees at the global EV? (learning.md 21-22)

Training data: every clean photo that ``runs/dgm`` uses (bsds500 train+val, sun_hays80, urban100, imagenet_sample,
the SICE best-exposed frames) at 128 px, ``--copies`` degraded copies each (default ``DegradeConfig``, seed 1),
reduced to 64x64 previews; target = the best single global EV against the clean preview (0.01 EV grid).
Learners, all on the same copies:

* ``trees6`` / ``trees``: the learned-global regressor (boosted trees on the 51 exposure statistics) on the first
  quarter of the copies (= the 6 copies of a ``train`` run) / on all of them;
* ``mlp``: a 2x256 MLP on the standardised statistics (AdamW, one-cycle, smooth L1), all copies;
* ``cnn``: a 4-block CNN on the preview plus its log luminance, joined with the statistics (``--cnn-epochs``;
  0 skips it; 6 epochs take ~15 min on 2 cores);
* ``true``: the trees, but the target is the degradation's own offset (minus the mean of the EV map, times the
  tone contrast) instead of the best EV.

Scored by the mean |EV error| against the full-resolution oracle global EV on the dev sets ``data/fam/<set>`` and
the 14 real FiveK pairs, and by PSNR of the EV applied globally (``color.apply_ev``, no renderer).

  python experiments/probe_global_ev.py --copies 24 --cnn-epochs 6
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.ensemble import HistGradientBoostingRegressor
from torch import nn

from deepexposure import data
from deepexposure.evaluation.baselines import _f32, oracle_global_ev
from deepexposure.evaluation.metrics import psnr
from deepexposure.image.color import apply_ev
from deepexposure.image.io import iter_photo_paths, read_photo
from deepexposure.image.segmentation import make_preview
from deepexposure.learning.env import linear_to_srgb_torch, srgb_to_linear_torch
from deepexposure.learning.learned_global import preview_features

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
TRAIN_SETS = ("bsds500/train", "bsds500/val", "sun_hays80", "urban100", "imagenet_sample")
DEV_SETS = ("mix", "spatial", "tone", "white_balance", "noise", "highlights", "camera_curve", "jpeg")


def best_ev_linear(lin: torch.Tensor, clean: torch.Tensor, bound: float = 3.0, chunk: int = 2048) -> torch.Tensor:
    """Best global EV of linear previews ``lin`` (N,3,H,W) against sRGB ``clean``: grids of 0.25, 0.05, 0.01 EV
    (the library's ``best_global_ev`` on linear input computed once: ~2.5x faster, same grid resolution)."""
    out = []
    for i in range(0, len(lin), chunk):
        li, yi = lin[i:i + chunk], clean[i:i + chunk]
        best = torch.zeros(len(li))
        for step, half in ((0.25, None), (0.05, 0.25), (0.01, 0.05)):
            grid = torch.arange(-bound, bound + 1e-6, step) if half is None else torch.arange(-half, half + 1e-6, step)
            cands = (grid[None, :] + best[:, None]).clamp(-bound, bound)
            errs = torch.stack([((linear_to_srgb_torch((li * torch.exp2(c.view(-1, 1, 1, 1))).clamp(0, 1)) - yi) ** 2)
                                .mean((1, 2, 3)) for c in cands.T], 1)
            best = cands.gather(1, errs.argmin(1, keepdim=True)).squeeze(1)
        out.append(best)
    return torch.cat(out)


def nchw(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).permute(0, 3, 1, 2)


def features(x: np.ndarray) -> np.ndarray:
    return np.concatenate([preview_features(x[i:i + 4096]) for i in range(0, len(x), 4096)])


def clean_photos(cache: Path) -> np.ndarray:
    """The clean training photos (:data:`TRAIN_SETS` and the SICE best-exposed frames) as 128x128 previews, in
    a fixed order (``training_copies`` copy ``i * copies + c`` comes from photo ``i``)."""
    paths = [p for s in TRAIN_SETS for p in sorted(iter_photo_paths(SHARED / s))]
    paths += data.select_sice_references(SHARED / "sice_zerodcepp")
    return data.load_previews(paths, size=128, cache_dir=Path(cache) / "previews", progress=False)[0]


def degraded_with_targets(big: list, copies: int, seed: int, cfg: data.DegradeConfig
                          ) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """``copies`` degraded 64 px previews of each clean photo of ``big`` (copy ``i * copies + c`` from photo ``i``),
    their best global EVs against the clean previews (the regression targets), and each copy's degradation
    parameters."""
    clean = np.stack([make_preview(b) for b in big])
    x, params = data.degraded_previews(big, seed=seed, copies=copies, config=cfg, out_size=64, return_params=True)
    ev = best_ev_linear(srgb_to_linear_torch(nchw(x)), nchw(np.repeat(clean, copies, 0))).numpy()
    return x, ev, params


def training_copies(copies: int, seed: int, cache: Path) -> dict:
    """Degraded previews, best-EV targets and the degradation's own offsets (cached in ``cache``)."""
    f = cache / f"probe_global_ev_c{copies}_s{seed}.npz"
    if f.is_file():
        return dict(np.load(f))
    big = clean_photos(cache)
    cfg = data.DegradeConfig()
    x, ev, _ = degraded_with_targets(big, copies, seed, cfg)
    true = np.zeros(len(x), np.float32)
    for i in range(len(big)):
        for c in range(copies):
            p = data.degradation._draw_params(data.degradation.image_rng(seed, i, c), cfg)
            true[i * copies + c] = -float(data.degradation_ev_map(p, (32, 32)).mean()) * (p["tone_contrast"] or 1.0)
    out = {"x": x.astype(np.float32), "ev": ev.astype(np.float32), "true": true}
    np.savez(f, **out)
    return out


def pairs_of(d: Path) -> list[tuple[Path, Path]]:
    """(input, target) paths of a paired folder (``data.paired_folder``)."""
    return [(p.input_path, p.target_path) for p in data.paired_folder(d)]


def dev_sets(fam_root: Path) -> dict:
    sets = {s: pairs_of(fam_root / s) for s in DEV_SETS if (fam_root / s).is_dir()}
    sets["real"] = pairs_of(SHARED / "fivek_deeplpf") + pairs_of(SHARED / "fivek_extra")
    out = {}
    for name, pairs in sets.items():
        xs, ys = [_f32(read_photo(p).pixels) for p, _ in pairs], [_f32(read_photo(q).pixels) for _, q in pairs]
        out[name] = {"x": xs, "y": ys, "p": np.stack([make_preview(x) for x in xs]),
                     "oracle": np.array([oracle_global_ev(x, y) for x, y in zip(xs, ys, strict=True)])}
    return out


class MLP(nn.Module):
    def __init__(self, d: int = 51, h: int = 256) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d, h), nn.GELU(), nn.Linear(h, h), nn.GELU(), nn.Linear(h, 1))

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.net(f).squeeze(-1)


class CNN(nn.Module):
    def __init__(self, w: int = 32, d: int = 51) -> None:
        super().__init__()

        def block(i: int, o: int) -> nn.Module:
            return nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.GELU())

        self.conv = nn.Sequential(block(4, w), nn.MaxPool2d(2), block(w, 2 * w), nn.MaxPool2d(2), block(2 * w, 4 * w),
                                  nn.MaxPool2d(2), block(4 * w, 4 * w), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Sequential(nn.Linear(4 * w + d, 256), nn.GELU(), nn.Linear(256, 1))

    def forward(self, img: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        lum = torch.log2(img.mean(1, keepdim=True).clamp_min(1e-3)) / 8
        return self.head(torch.cat([self.conv(torch.cat([img, lum], 1)), f], 1)).squeeze(-1)


def fit(net: nn.Module, inputs: list[torch.Tensor], y: torch.Tensor, epochs: int, bs: int = 256) -> nn.Module:
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-4)
    n = len(y)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 2e-3, total_steps=epochs * (n // bs))
    gen = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        perm = torch.randperm(n, generator=gen)
        for i in range(n // bs):
            idx = perm[i * bs:(i + 1) * bs]
            loss = nn.functional.smooth_l1_loss(net(*[a[idx] for a in inputs]), y[idx], beta=0.25)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return net.eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--copies", type=int, default=24)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cnn-epochs", type=int, default=6)
    ap.add_argument("--mlp-epochs", type=int, default=30)
    ap.add_argument("--fam-root", default="data/fam")
    ap.add_argument("--cache", default="runs/.cache")
    a = ap.parse_args()
    torch.manual_seed(0)
    t0 = time.time()
    tr = training_copies(a.copies, a.seed, Path(a.cache))
    x, ev = tr["x"], tr["ev"]
    f = features(x)
    dev = dev_sets(Path(a.fam_root))
    dfeat = {s: features(d["p"]) for s, d in dev.items()}
    print(f"{len(x)} training copies, {len(dev)} dev sets ({time.time() - t0:.0f} s)", flush=True)
    preds: dict[str, dict[str, np.ndarray]] = {}

    def trees(n: int, target: np.ndarray) -> dict:
        m = HistGradientBoostingRegressor(max_iter=300, learning_rate=0.05, random_state=0).fit(f[:n], target[:n])
        return {s: np.clip(m.predict(dfeat[s]), -3, 3) for s in dev}

    preds["trees6"] = trees(len(x) // a.copies * 6, ev)
    preds["trees"] = trees(len(x), ev)
    preds["true"] = trees(len(x), tr["true"])
    mu, sd = f.mean(0), f.std(0) + 1e-6
    ft, yt = torch.from_numpy((f - mu) / sd).float(), torch.from_numpy(ev).float()
    std = {s: torch.from_numpy((v - mu) / sd).float() for s, v in dfeat.items()}
    mlp = fit(MLP(), [ft], yt, a.mlp_epochs)
    with torch.no_grad():
        preds["mlp"] = {s: mlp(std[s]).clamp(-3, 3).numpy() for s in dev}
    if a.cnn_epochs > 0:
        cnn = fit(CNN(), [nchw(x), ft], yt, a.cnn_epochs)
        with torch.no_grad():
            preds["cnn"] = {s: cnn(nchw(dev[s]["p"]), std[s]).clamp(-3, 3).numpy() for s in dev}
    print(f"fitted ({time.time() - t0:.0f} s)\n")
    print("| set | " + " | ".join(preds) + " |  (mean abs EV error / PSNR dB of the EV applied globally)")
    print("|---|" + "---|" * len(preds))
    for s, d in dev.items():
        cells = []
        for p in preds.values():
            err = np.abs(p[s] - d["oracle"]).mean()
            db = np.mean([psnr(apply_ev(xi, float(e)), yi) for xi, yi, e in zip(d["x"], d["y"], p[s], strict=True)])
            cells.append(f"{err:.3f} / {db:.2f}")
        print(f"| {s} ({len(d['x'])}) | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
