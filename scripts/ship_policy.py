#!/usr/bin/env python
"""Ship a trained policy as the package default: copy RUN/policy.pt (or a snapshot) to
``src/deepexposure/assets/policy.pt``, export it to ``assets/policy.onnx`` (the default model, run without torch;
same model id) and write the model card ``assets/policy.json`` beside them.

The card records what a user needs to trust or reproduce the model: the run's full TrainConfig, the training
data (folders and counts, as given on the command line), the exact train command, the step, the file's SHA-256
and, if given, the dev-set summary (``deepexposure evaluate`` summary.json). The policy loads without it.

Example:
  python scripts/ship_policy.py runs/de1p --policy runs/de1p/policies/step-002400.pt \
      --command "deepexposure train ..." --data "bsds500/train x4 synthetic; sice selected; experts ..." \
      --summary eval/dev_fusion/summary.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
from pathlib import Path

import torch

from deepexposure.learning.export import OPSET, export_onnx
from deepexposure.learning.policy import Policy

ASSETS = Path(__file__).resolve().parents[1] / "src" / "deepexposure" / "assets"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="training run folder (holds config.json)")
    ap.add_argument("--policy", type=Path, default=None, help="policy file (default RUN/policy.pt)")
    ap.add_argument("--command", required=True, help="the exact train command of the run")
    ap.add_argument("--data", required=True, help="description of the training data")
    ap.add_argument("--summary", type=Path, default=None, help="evaluate summary.json on the dev set")
    args = ap.parse_args()
    src = args.policy or args.run / "policy.pt"
    pol = Policy.load(src)  # refuses anything that is not a loadable policy
    dst = ASSETS / "policy.pt"
    tmp = dst.with_suffix(".pt.tmp")
    shutil.copyfile(src, tmp)
    tmp.replace(dst)
    onnx_file = export_onnx(pol, ASSETS / "policy.onnx", overwrite=True)
    card = {
        "model_id": pol.model_id,
        "sha256": hashlib.sha256(dst.read_bytes()).hexdigest(),
        "source": str(src),
        "onnx": {"file": onnx_file.name, "sha256": hashlib.sha256(onnx_file.read_bytes()).hexdigest(),
                 "exported_by": f"deepexposure.learning.export.export_onnx (torch {torch.__version__}, opset {OPSET})"},
        "policy_config": pol.config,
        "train_config": json.loads((args.run / "config.json").read_text()),
        "train_command": args.command,
        "training_data": args.data,
        "dev_summary": json.loads(args.summary.read_text()) if args.summary else None,
    }
    (ASSETS / "policy.json").write_text(json.dumps(card, indent=2) + "\n")
    print(f"shipped {src} -> {dst} ({dst.stat().st_size / 1e6:.1f} MB) and {onnx_file}, model {pol.model_id}")


if __name__ == "__main__":
    main()
