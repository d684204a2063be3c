"""A dead zone for the natural EV (|EV| < t -> 0, so that well-exposed photos are left alone): its cost on the
family sets (leave-family-out trees) and the real pairs (docs/learning.md finding 26; not shipped).

Needs the cache and family sets of ``python experiments/fit_looks.py``. Run from the repository root:
``python experiments/probe_natural_deadzone.py``.
"""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fit_looks as F

from deepexposure import data
from deepexposure.evaluation.metrics import psnr
from deepexposure.image.render import render_rolloff
from deepexposure.image.segmentation import make_preview

#: Dead-zone widths tried (EV stops).
TS = (0.0, 0.1, 0.2, 0.3)


def dz(ev: float, t: float) -> float:
    """The EV with a dead zone of half-width ``t``."""
    return 0.0 if abs(ev) < t else ev


def score(pairs: list, model) -> dict[float, float]:
    """Mean PSNR of the pairs for each dead zone of :data:`TS`."""
    evs = [float(model.predict(make_preview(x))[0]) for _, x, _ in pairs]
    return {t: float(np.mean([psnr(F.q8(render_rolloff(x, [dz(e, t)], None)), y)
                              for (_, x, y), e in zip(pairs, evs, strict=True)])) for t in TS}


def main() -> None:
    tr = F.training_copies(12, 1, Path("runs/.cache"))
    sets = F.family_sets(Path("data/looks_fam"), 40)
    for name, pairs in sets.items():
        keep = np.ones(len(tr["ev"]), bool) if name == "mix" else ~tr["fam"][:, data.FAMILIES.index(name)]
        m = F.fit_trees(tr["feats"][keep], tr["ev"][keep])
        line = f"{name} " + " ".join(f"t={t}: {v:.2f}" for t, v in score(pairs, m).items())
        if name == "mix":  # the clean targets are well exposed: how far does the model move them?
            ev = np.abs([float(m.predict(make_preview(y))[0]) for _, _, y in pairs])
            line += f" | clean targets: median |EV| {np.median(ev):.2f}, {int((ev < 0.25).sum())}/{len(ev)} below 0.25"
        print(line, flush=True)
    full = F.fit_trees(tr["feats"], tr["ev"])
    real = [p for r in F.REAL for p in F.pair_list(F.SHARED / r)]
    print("real", " ".join(f"t={t}: {v:.2f}" for t, v in score(real, full).items()))


if __name__ == "__main__":
    main()
