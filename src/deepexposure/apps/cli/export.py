"""``deepexposure export-onnx``: a torch policy (policy.pt or training run) as an ONNX model for torch-free inference."""

from __future__ import annotations

import click

__all__ = ["COMMANDS", "export_onnx"]


@click.command("export-onnx", no_args_is_help=True)
@click.argument("source", type=click.Path(path_type=str))
@click.option("-o", "--out", required=True, type=click.Path(path_type=str),
              help="Output .onnx file (or a folder, for FOLDER/policy.onnx).")
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
def export_onnx(source, out, overwrite):
    """Export the policy of SOURCE (a policy.pt or a training run folder) to ONNX.

    The .onnx file holds the actor and, in its metadata, the policy's architecture, training config
    (segments, max EV, segmentation) and model id (the same id as the policy.pt, so recipes name the same model):
    `enhance --model FILE.onnx` runs it with ONNX Runtime, without torch. A run folder with a policy.onnx is run
    from it. The export is checked against torch before it is written. Needs the training extra (torch, onnx).

    \b
    Examples:
      deepexposure export-onnx runs/mine -o runs/mine/policy.onnx
      deepexposure export-onnx runs/mine/policies/step-002500.pt -o mine-2500.onnx
    """
    from deepexposure.learning.export import export_policy_file

    path = export_policy_file(source, out, overwrite=overwrite)
    from deepexposure.inference.onnx_policy import OnnxPolicy

    click.echo(f"wrote {path} (model {OnnxPolicy.load(path, device='cpu').model_id})", err=True)


COMMANDS = [export_onnx]
