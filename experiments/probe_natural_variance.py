"""How much the family scores of the natural trees move with which training copies they get (docs/learning.md
finding 26): leave-family-out trees fitted on copies 0-5 (the learned-global baseline), 6-11, the even and the odd
copies, all 12 (the shipped natural model), and the mean EV of the four half-data models (a bag).

Needs the cache of ``python experiments/fit_looks.py`` (runs/.cache) and its family sets (data/looks_fam).
Run from the repository root: ``python experiments/probe_natural_variance.py``.
"""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fit_looks as F

from deepexposure import data
from deepexposure.evaluation.metrics import psnr


def main() -> None:
    tr = F.training_copies(12, 1, Path("runs/.cache"))
    sets = F.family_sets(Path("data/looks_fam"), 40)
    for name in ("white_balance", "jpeg", "noise", "tone"):
        keep = ~tr["fam"][:, data.FAMILIES.index(name)]
        res = {}
        subsets = {"copies 0-5": tr["copy"] < 6, "copies 6-11": tr["copy"] >= 6, "even": tr["copy"] % 2 == 0,
                   "odd": tr["copy"] % 2 == 1, "all 12": np.ones_like(keep)}
        models = {k: F.fit_trees(tr["feats"][keep & m], tr["ev"][keep & m]) for k, m in subsets.items()}
        for k, mdl in models.items():
            res[k] = np.mean([psnr(F.q8(F.natural(x, mdl)[0]), y) for _, x, y in sets[name]])
        # bagged: mean EV of the four half-data models
        def bag(x, models=models):
            from deepexposure.image.render import render_rolloff
            from deepexposure.image.segmentation import make_preview
            p = make_preview(x)
            ev = np.mean([models[k].predict(p)[0] for k in ("copies 0-5", "copies 6-11", "even", "odd")])
            return render_rolloff(x, [float(ev)], None)
        res["bag of 4 halves"] = np.mean([psnr(F.q8(bag(x)), y) for _, x, y in sets[name]])
        print(name, " ".join(f"{k}: {v:.2f}" for k, v in res.items()), flush=True)


if __name__ == "__main__":
    main()
