"""``deepexposure train``: learn an exposure policy (DE I or DE II) from unpaired inputs and expert photos."""

from __future__ import annotations

from pathlib import Path

import click

from deepexposure.errors import DataError, DeepExposureError

__all__ = ["COMMANDS", "train"]


@click.command(no_args_is_help=True)
@click.option("--inputs", multiple=True, type=click.Path(path_type=str),
              help="Badly exposed photos (files or folders; repeatable), used as they are.")
@click.option("--synthetic-inputs", multiple=True, type=click.Path(path_type=str),
              help="Well-exposed photos (files or folders) degraded synthetically (data.DegradeConfig) into inputs.")
@click.option("--copies", type=click.IntRange(1), default=4, show_default=True,
              help="Synthetic degradations per --synthetic-inputs photo.")
@click.option("--sice", multiple=True, type=click.Path(path_type=str),
              help="SICE/Zero-DCE++ folder: its clearly under/over-exposed frames are added to the inputs.")
@click.option("--sice-references", multiple=True, type=click.Path(path_type=str),
              help="SICE/Zero-DCE++ folder: the best-exposed frame of each bracket is added to "
                   "--synthetic-inputs.")
@click.option("--experts", multiple=True, type=click.Path(path_type=str),
              help="Well-exposed (expert) photos, files or folders (repeatable).")
@click.option("--fivek", type=click.Path(path_type=str), default=None,
              help="MIT-Adobe FiveK root: train_input fold as inputs, expert C of train_expert as experts.")
@click.option("--variant", type=click.Choice(["I", "II"]), default="I", show_default=True,
              help="DE I (value network, TD) or DE II (critic as value).")
@click.option("--out", required=True, type=click.Path(path_type=str), help="Run folder, e.g. runs/NAME.")
@click.option("--steps", type=click.IntRange(1), default=None, help="Actor updates (also the lr-schedule length).")
@click.option("--minutes", type=click.FloatRange(0, min_open=True), default=None,
              help="Stop after this much wall time (the lr schedule still spans --steps).")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint.")
@click.option("--workers", type=click.IntRange(0), default=None, help="Gradient worker processes (0: in-process).")
@click.option("--seed", type=int, default=None, help="Random seed (default 0).")
@click.option("--segments", type=click.IntRange(1, 16), default=None, help="Segments per photo = steps per episode.")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="A config.json (TrainConfig) to start from; the options above override it.")
@click.option("--paired-weight", type=click.FloatRange(min=0), default=None,
              help="Weight of the paired anchor MSE(result, clean target) on --synthetic-inputs (our extension; "
                   "0 = the paper's unpaired method, the default).")
@click.option("--paired-render", type=click.Choice(["local", "fusion", "both"]), default=None,
              help="Image the paired anchor compares with the target: the local result, the preview fusion "
                   "(the renderer enhance uses) or both (default: local).")
@click.option("--global-features/--no-global-features", default=None,
              help="Feed luma histograms of the state to the actor's head (our extension; default: off).")
@click.option("--device", default=None, help="Torch device (default: CUDA if present, else CPU).")
def train(inputs, synthetic_inputs, copies, sice, sice_references, experts, fivek, variant, out, steps, minutes,
          resume, workers, seed, segments, config_path, paired_weight, paired_render, global_features, device):
    """Train a DeepExposure policy (unpaired, WGAN-GP critic reward); writes OUT/policy.pt.

    \b
    Example (the project's data, about 20 minutes on 2 CPU cores):
      deepexposure train --variant I --out runs/de1 --minutes 20 \\
        --synthetic-inputs ../shared/data/bsds500/train --sice ../shared/data/sice_zerodcepp \\
        --experts ../shared/data/sun_hays80 --experts ../shared/data/bsds500/val
    FiveK protocol:  deepexposure train --fivek /data/fivek --out runs/fivek --steps 20000
    """
    _need_training_extra()
    from deepexposure.training import TrainConfig, Trainer, TrainingError, build_training_data
    from deepexposure.training.checkpoint import CHECKPOINT_NAME

    out_dir = Path(out)
    if resume:
        if not (out_dir / CHECKPOINT_NAME).is_file():
            raise TrainingError(f"nothing to resume: {out_dir / CHECKPOINT_NAME} does not exist")
        cfg = TrainConfig.load(out_dir / "config.json")
    else:
        if out_dir.exists() and any(out_dir.iterdir()):
            raise TrainingError(f"{out_dir} is not empty; pass --resume to continue it or choose another --out")
        cfg = TrainConfig.load(config_path) if config_path else TrainConfig()
        cfg.rl.variant = variant
        if steps is not None:
            cfg.run.steps = steps
        if seed is not None:
            cfg.run.seed = seed
        if segments is not None:
            cfg.rl.segments = segments
        if paired_weight is not None:
            cfg.rl.paired_weight = paired_weight
        if paired_render is not None:
            cfg.rl.paired_render = paired_render
        if global_features is not None:
            cfg.model.global_features = global_features
    if workers is not None:
        cfg.run.workers = workers
    if not (inputs or synthetic_inputs or sice or sice_references or fivek):
        raise DataError("no inputs: give --inputs, --synthetic-inputs, --sice, --sice-references or --fivek")
    out_dir.mkdir(parents=True, exist_ok=True)
    data = build_training_data(inputs=inputs, synthetic=synthetic_inputs, experts=experts, sice=sice,
                               sice_references=sice_references, fivek=fivek,
                               copies=copies, seed=cfg.run.seed, segmentation=cfg.segmentation(),
                               cache_dir=out_dir.parent / ".cache")
    click.echo(f"{len(data.inputs)} input previews, {len(data.experts)} expert previews", err=True)
    if resume:
        trainer = Trainer.resume(out_dir, data, workers=workers, device=device)
    else:
        trainer = Trainer(cfg, data, out_dir, device=device)
    trainer.train(minutes=minutes)
    click.echo(f"step {trainer.step}: policy written to {out_dir / 'policy.pt'}", err=True)


def _need_training_extra() -> None:
    """Refuse (one line, exit 2) before any work when the ``train`` extra (tensorboard) is not installed."""
    try:
        import tensorboard  # noqa: F401 - only checking that it is there
    except ImportError:
        raise DeepExposureError("deepexposure train needs the training extra (tensorboard is not installed): "
                                "pip install 'deepexposure[train]'") from None


COMMANDS = [train]
