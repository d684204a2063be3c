#!/usr/bin/env python
"""Supervised probe: how well can an actor regress exposures from a preview, with no critic at all?

Trains a fresh actor on the paired anchor alone (the synthetic inputs of the shipped model's training data and their
clean previews; per-step MSE of the exposed segment, i.e. the final local image's MSE, or the preview fusion's MSE,
or both) and prints the dev set's preview PSNR (64x64, hard masks) of the local image and of the preview fusion
(``env.fuse_evs_torch``) every 500 steps. It separates what the network can learn from the data (this probe) from
what the adversarial training adds or costs, and compares actor variants (``--global-features``) cheaply.
Used for docs/learning.md, findings 8-9. About 10 minutes per 2,000 steps on 2 cores.

Usage:
  python experiments/probe_supervised.py [--global-features] [--loss local|fusion|both] [--steps 2000]
      [--init actor.pt] [--lr 3e-4] [--save actor.pt]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from deepexposure.data import paired_folder
from deepexposure.image.io import read_photo
from deepexposure.image.segmentation import make_preview, segment
from deepexposure.learning.config import TrainConfig
from deepexposure.learning.dataset import build_training_data
from deepexposure.learning.env import fuse_evs_torch, masks_tensor, state, step
from deepexposure.learning.models import Actor

T = 6


def _nchw(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, np.float32)).permute(0, 3, 1, 2).contiguous()


def rollout(actor: Actor, s0: torch.Tensor, lab: torch.Tensor, target: torch.Tensor | None = None,
            loss: str = "local") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(local image, preview fusion, loss) of the deterministic episode; states detached between steps."""
    masks = masks_tensor(lab, T)
    cur, acts, total = s0, [], s0.new_zeros(())
    for t in range(T):
        m = masks[:, t : t + 1]
        a = actor(state(s0, m, cur, t, T))
        nxt = step(s0, cur, m, a)
        if target is not None and loss != "fusion":
            total = total + (((nxt - target) ** 2) * m).mean()
        acts.append(a)
        cur = nxt.detach() if actor.training else nxt
    fused = fuse_evs_torch(s0, torch.stack(acts, 1))
    if target is not None and loss != "local":
        total = total + ((fused - target) ** 2).mean()
    return cur, fused, total


@torch.no_grad()
def dev_psnr(actor: Actor, x: torch.Tensor, y: torch.Tensor, lab: torch.Tensor) -> tuple[float, float]:
    """Mean preview PSNR (dB, peak 1) over the dev pairs of the local image and of the fusion."""
    actor.eval()
    loc, fus = [], []
    for i in range(0, len(x), 50):
        cur, fused, _ = rollout(actor, x[i : i + 50], lab[i : i + 50])
        for img, out in ((cur, loc), (fused, fus)):
            out += (-10 * torch.log10(((img - y[i : i + 50]) ** 2).mean((1, 2, 3)))).tolist()
    actor.train()
    return float(np.mean(loc)), float(np.mean(fus))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="../shared/data", help="the shared photo folder")
    ap.add_argument("--pairs", default="data/dev", help="paired dev folder (input/, target/)")
    ap.add_argument("--global-features", action="store_true", help="actor with luma histograms (models.Actor)")
    ap.add_argument("--loss", choices=["local", "fusion", "both"], default="local")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-4, help="Adam lr, decayed exponentially to 1%% over --steps")
    ap.add_argument("--copies", type=int, default=8)
    ap.add_argument("--init", default=None, help="actor state_dict to start from (fine-tuning)")
    ap.add_argument("--save", default=None, help="write the actor's state_dict here at the end")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_flush_denormal(True)
    seg = TrainConfig().segmentation()
    d = Path(args.data)
    data = build_training_data(synthetic=[d / "bsds500/train", d / "bsds500/val", d / "sun_hays80"],
                               experts=[d / "sun_hays80"], copies=args.copies, seed=0, segmentation=seg,
                               cache_dir="runs/.cache", progress=False)
    k = data.has_target
    x, y, lab = _nchw(data.inputs[k]), _nchw(data.targets[k]), torch.from_numpy(data.labels[k]).long()
    dx, dy, dl = [], [], []
    for p in paired_folder(args.pairs):
        xi = make_preview(read_photo(p.input_path).pixels)
        dx.append(xi)
        dy.append(make_preview(read_photo(p.target_path).pixels))
        dl.append(segment(xi, **seg))
    dx_t, dy_t, dl_t = _nchw(np.stack(dx)), _nchw(np.stack(dy)), torch.from_numpy(np.stack(dl)).long()
    torch.manual_seed(args.seed)
    actor = Actor(global_features=args.global_features)
    if args.init:
        actor.load_state_dict(torch.load(args.init, weights_only=True))
    print(f"{len(x)} training inputs, {len(dx)} dev pairs; start: local/fusion "
          f"{'/'.join(f'{v:.2f}' for v in dev_psnr(actor, dx_t, dy_t, dl_t))} dB", flush=True)
    opt = torch.optim.Adam(actor.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, 0.01 ** (1 / args.steps))
    rng = np.random.default_rng(args.seed)
    t0 = time.time()
    for it in range(1, args.steps + 1):
        idx = torch.from_numpy(rng.integers(len(x), size=args.batch))
        flip = torch.from_numpy(rng.random(args.batch) < 0.5)
        s0 = torch.where(flip[:, None, None, None], x[idx].flip(-1), x[idx])
        tgt = torch.where(flip[:, None, None, None], y[idx].flip(-1), y[idx])
        lb = torch.where(flip[:, None, None], lab[idx].flip(-1), lab[idx])
        _, _, loss = rollout(actor, s0, lb, tgt, args.loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if it % 500 == 0 or it == args.steps:
            loc, fus = dev_psnr(actor, dx_t, dy_t, dl_t)
            print(f"step {it}: loss {float(loss.detach()):.5f}  dev preview PSNR local {loc:.3f} fusion {fus:.3f} dB "
                  f"({time.time() - t0:.0f} s)", flush=True)
    if args.save:
        torch.save(actor.state_dict(), args.save)


if __name__ == "__main__":
    main()
