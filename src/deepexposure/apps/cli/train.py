"""``deepexposure train``: learn an exposure policy (DE I or DE II) from unpaired inputs and expert photos."""

from __future__ import annotations

import math
import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from deepexposure.data import FAMILIES as _FAMILIES
from deepexposure.data import check_fivek_paired
from deepexposure.errors import DataError, DeepExposureError, need_extra

if TYPE_CHECKING:
    from deepexposure.learning.config import TrainConfig

__all__ = ["COMMANDS", "train"]

#: Options that set a TrainConfig field: option name -> (section, field). Each overrides ``--config`` only when
#: given on the command line (its default is None).
_CONFIG_OPTIONS: dict[str, tuple[str, str]] = {
    "variant": ("rl", "variant"),
    "steps": ("run", "steps"),
    "seed": ("run", "seed"),
    "segments": ("rl", "segments"),
    "paired_weight": ("rl", "paired_weight"),
    "paired_render": ("rl", "paired_render"),
    "global_features": ("model", "global_features"),
    "threads": ("run", "threads"),
    "global_branch": ("model", "global_branch"),
    "global_pretrain": ("rl", "global_pretrain_steps"),
    "degrade": ("rl", "degrade"),
}


def _apply_options(cfg: TrainConfig, given: dict) -> TrainConfig:
    """Set the TrainConfig fields of the options in ``given`` (name -> value) that are not None; returns ``cfg``."""
    for name, value in given.items():
        if value is not None:
            section, field = _CONFIG_OPTIONS[name]
            setattr(getattr(cfg, section), field, value)
    return cfg


def _differences(a: dict, b: dict, prefix: str = "") -> list[str]:
    """Dotted names of the fields whose values differ between two nested config dicts."""
    out = []
    for k in sorted(a.keys() | b.keys()):
        if isinstance(a.get(k), dict) and isinstance(b.get(k), dict):
            out += _differences(a[k], b[k], f"{prefix}{k}.")
        elif a.get(k) != b.get(k):
            out.append(f"{prefix}{k}")
    return out


_MAX_THREADS = 1024  #: = training.config.MAX_THREADS (not imported here: it would import torch for --help)
_MAX_SEED = 2**63 - 1  #: = training.config.MAX_SEED


def _not_nan(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """Click's FloatRange lets NaN through (every comparison with it is false): refuse it."""
    if value is not None and math.isnan(value):
        raise click.BadParameter("must be a number, not nan", ctx=ctx, param=param)
    return value


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
@click.option("--fivek-paired", is_flag=True,
              help="With --fivek: also use expert C's own renders of the train_input fold as the targets of those "
                   "inputs (a paired variant of the paper's unpaired split; the critic's experts stay the "
                   "train_expert fold). Inputs without a render are used unpaired.")
@click.option("--pairs", "pairs", multiple=True, type=click.Path(path_type=str), metavar="DIR",
              help="Paired folder DIR with DIR/input/* and DIR/target/* matched by file stem (as evaluate and "
                   "make-pairs use; repeatable): each input is trained on WITH its retouched target (paired anchor, "
                   "global warm start, learned-global baseline). Pairs whose sides differ in aspect ratio by more "
                   "than 1% are skipped.")
@click.option("--pairs-repeat", type=click.IntRange(1), default=1, show_default=True,
              help="Times each real pair (--pairs, --fivek-paired) appears among the inputs, so that a few hundred "
                   "of them are not swamped by the --copies of every synthetic input (random horizontal flips are drawn per batch anyway).")
@click.option("--variant", type=click.Choice(["I", "II"]), default=None,
              help="DE I (value network, TD) or DE II (critic as value) (default: I).")
@click.option("--out", required=True, type=click.Path(path_type=str), help="Run folder, e.g. runs/NAME.")
@click.option("--steps", type=click.IntRange(1), default=None, help="Actor updates (also the lr-schedule length). With --resume: a new total, e.g. more to train longer; the "
                   "learning rates then decay from where they are to their final value at the new last step.")
@click.option("--minutes", type=click.FloatRange(0, min_open=True), default=None, callback=_not_nan,
              help="Stop after this much wall time (the lr schedule still spans --steps).")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint.")
@click.option("--workers", type=click.IntRange(0), default=None, hidden=True,
              help="Removed: run several processes with torchrun (see --help).")
@click.option("--threads", type=click.IntRange(1, _MAX_THREADS), default=None,
              help="Torch threads of each training process (default 2; may change on --resume).")
@click.option("--timeout", "timeout_s", type=click.FloatRange(1, 1e9), default=300.0, show_default=True,
              callback=_not_nan,
              help="With torchrun: seconds a process waits for the others at a step before the run stops.")
@click.option("--seed", type=click.IntRange(0, _MAX_SEED), default=None, help="Random seed (default 0).")
@click.option("--segments", type=click.IntRange(1, 16), default=None, help="Segments per photo = steps per episode.")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="A config.json (TrainConfig: sections model, rl, optim, run) to start from; the options above "
                   "override it where given. Unknown keys and bad values are refused before anything starts.")
@click.option("--paired-weight", type=click.FloatRange(min=0), default=None,
              help="Weight of the paired anchor MSE(result, clean target) on --synthetic-inputs (our extension; "
                   "0 = the paper's unpaired method, the default).")
@click.option("--paired-render", type=click.Choice(["local", "fusion", "both"]), default=None,
              help="Image the paired anchor compares with the target: the local result, the preview fusion "
                   "(the renderer enhance uses) or both (default: local).")
@click.option("--global-features/--no-global-features", default=None,
              help="Feed luma histograms of the state to the actor's head (our extension; default: off).")
@click.option("--global-branch/--no-global-branch", default=None,
              help="Actor = global EV from exposure statistics + per-segment residual EVs (our extension; "
                   "warm-started by --global-pretrain steps).")
@click.option("--global-pretrain", type=click.IntRange(0), default=None,
              help="Supervised steps fitting the global branch to the best global EV of the synthetic inputs.")
@click.option("--withhold", multiple=True, type=click.Choice(list(_FAMILIES)),
              help="Degradation family left out of the synthetic inputs (repeatable; leave-family-out runs).")
@click.option("--degrade-preset", type=click.Choice(["mix", "v1"]), default=None,
              help="Synthetic error model: the family mix (default) or v1, the single model of releases <= 0.1.")
@click.option("--device", default=None, help="Torch device (default: CUDA if present, else CPU).")
def train(inputs, synthetic_inputs, copies, sice, sice_references, experts, fivek, fivek_paired, pairs, pairs_repeat,
          variant, out, steps, minutes, resume, workers, threads, timeout_s, seed, segments, config_path,
          paired_weight, paired_render, global_features, global_branch, global_pretrain, withhold, degrade_preset,
          device):
    """Train a DeepExposure policy (unpaired, WGAN-GP critic reward); writes OUT/policy.pt.

    \b
    Example (the project's data, about 20 minutes on 2 CPU cores):
      deepexposure train --variant I --out runs/de1 --minutes 20 \\
        --synthetic-inputs ../shared/data/bsds500/train --sice ../shared/data/sice_zerodcepp \\
        --experts ../shared/data/sun_hays80 --experts ../shared/data/bsds500/val
    FiveK protocol:  deepexposure train --fivek /data/fivek --out runs/fivek --steps 20000
    Real retouched pairs (DIR/input + DIR/target), each 8 times:
      deepexposure train --pairs DIR --pairs-repeat 8 --synthetic-inputs ... --experts ... --out runs/p
    N processes (same results as one; several machines: docs/scaling.md):
      torchrun --nproc-per-node N -m deepexposure train ...
    """
    check_fivek_paired(fivek, fivek_paired)  # before torch is imported and before the run folder exists
    if workers:
        raise DeepExposureError("--workers was removed: run N training processes with "
                                "torchrun --nproc-per-node N -m deepexposure train ... (docs/scaling.md)")
    _need_training_extra()
    from deepexposure.learning.distributed import SINGLE, RankZeroFailed, init_world, launched_by_torchrun
    from deepexposure.learning.trainer import Trainer

    try:  # checked before the process group and the run folder exist
        file_cfg = _load_config(config_path)
        if device is not None:
            from deepexposure.learning.policy import select_device

            select_device(device)
    except DeepExposureError:
        if launched_by_torchrun() and os.environ.get("RANK", "0") != "0":  # process 0 says it, once
            time.sleep(3)
            click.get_current_context().exit(2)
        raise
    world = SINGLE
    if launched_by_torchrun():
        world, device = init_world(device, timeout_s=timeout_s)
    given = {"variant": variant, "steps": steps, "seed": seed, "segments": segments, "paired_weight": paired_weight,
             "paired_render": paired_render, "global_features": global_features, "threads": threads,
             "global_branch": global_branch, "global_pretrain": global_pretrain,
             "degrade": ({"preset": degrade_preset or "mix", "withhold": sorted(withhold)}
                         if withhold or degrade_preset else None)}
    try:
        cfg, data = world.from_rank0(lambda: _prepare(
            Path(out), given, resume=resume, file_cfg=file_cfg, inputs=inputs, synthetic_inputs=synthetic_inputs,
            copies=copies, sice=sice, sice_references=sice_references, experts=experts, fivek=fivek,
            fivek_paired=fivek_paired, pairs=pairs, pairs_repeat=pairs_repeat))
        if resume:
            trainer = Trainer.resume(Path(out), data, device=device, world=world, threads=threads,
                                     steps=cfg.run.steps)
        else:
            trainer = Trainer(cfg, data, Path(out), device=device, world=world)
        trainer.train(minutes=minutes)
    except RankZeroFailed:  # process 0 reports the error; give it the time to, before torchrun stops everyone
        world.close()
        time.sleep(10)
        click.get_current_context().exit(2)
    except DeepExposureError as exc:
        if world.is_main or str(exc).startswith("process "):
            raise
        raise type(exc)(f"process {world.rank} of {world.size}: {exc}") from None
    finally:
        world.close()
    if world.is_main:
        click.echo(f"step {trainer.step}: policy written to {Path(out) / 'policy.pt'}"
                   + (f" ({world.size} processes)" if world.size > 1 else ""), err=True)


def _load_config(path: str | None) -> TrainConfig | None:
    """The ``--config`` file, checked (:meth:`TrainConfig.load`: one ConfigError line naming the key), or None."""
    from deepexposure.learning.config import TrainConfig

    return TrainConfig.load(path) if path else None


def _prepare(out_dir: Path, given: dict, *, resume: bool, file_cfg: TrainConfig | None, **data_options
             ) -> tuple[TrainConfig, object]:
    """Check the options against the run folder, and build the config and the training data (rank 0 only). A run
    folder made here is removed again when this fails (no empty folder left behind)."""
    made = not out_dir.exists()
    try:
        return _prepare_in(out_dir, given, resume=resume, file_cfg=file_cfg, **data_options)
    except BaseException:
        if made and out_dir.is_dir() and not any(out_dir.iterdir()):
            out_dir.rmdir()
        raise


def _prepare_in(out_dir: Path, given: dict, *, resume: bool, file_cfg: TrainConfig | None, inputs, synthetic_inputs,
                copies, sice, sice_references, experts, fivek, fivek_paired, pairs, pairs_repeat
                ) -> tuple[TrainConfig, object]:
    from deepexposure.atomic import unwritable
    from deepexposure.learning.checkpoint import CHECKPOINT_NAME
    from deepexposure.learning.config import TrainConfig
    from deepexposure.learning.dataset import build_training_data
    from deepexposure.learning.trainer import TrainingError

    blocked = unwritable(out_dir)
    if blocked:
        raise TrainingError(f"--out {out_dir}: cannot write the run there ({blocked})")
    unfinished = _stopped_before_first_checkpoint(out_dir)
    if resume:
        if unfinished:
            raise TrainingError(f"nothing to resume: the run in {out_dir} stopped before its first checkpoint; run "
                                "the same command without --resume to start it again")
        if not (out_dir / CHECKPOINT_NAME).is_file():
            raise TrainingError(f"nothing to resume: {out_dir / CHECKPOINT_NAME} does not exist")
        cfg = TrainConfig.load(out_dir / "config.json")
        # options and --config may repeat the run's settings but not change them (threads may: same results)
        asked = _apply_options(file_cfg or TrainConfig.from_dict(cfg.to_dict()), given).check()
        asked.run.threads = cfg.run.threads
        cfg.run.steps = asked.run.steps  # the horizon may change (Trainer.resume: the lr schedule follows it)
        changed = _differences(asked.to_dict(), cfg.to_dict())
        if changed:
            raise TrainingError(f"--resume continues {out_dir} with its own config.json; these differ from it: "
                                f"{', '.join(changed)}")
    else:
        if unfinished:  # what a run killed before its first checkpoint wrote: started again from scratch
            click.echo(f"{out_dir}: the run there stopped before its first checkpoint; starting it again", err=True)
            for name in unfinished:
                shutil.rmtree(out_dir / name) if (out_dir / name).is_dir() else (out_dir / name).unlink()
        if out_dir.exists() and any(out_dir.iterdir()):
            raise TrainingError(f"{out_dir} is not empty; pass --resume to continue it or choose another --out")
        cfg = _apply_options(file_cfg or TrainConfig(), given).check()
    if not (inputs or synthetic_inputs or sice or sice_references or fivek or pairs):
        raise DataError("no inputs: give --inputs, --synthetic-inputs, --sice, --sice-references, --pairs or --fivek")
    out_dir.mkdir(parents=True, exist_ok=True)
    data = build_training_data(inputs=inputs, synthetic=synthetic_inputs, experts=experts, sice=sice,
                               sice_references=sice_references, fivek=fivek, fivek_paired=fivek_paired, pairs=pairs,
                               pairs_repeat=pairs_repeat, copies=copies, seed=cfg.run.seed, segmentation=cfg.segmentation(), degrade=cfg.rl.degrade,
                               cache_dir=out_dir.parent / ".cache")
    click.echo(f"{len(data.inputs)} input previews ({int(data.has_target.sum())} with a target), "
               f"{len(data.experts)} expert previews", err=True)
    return cfg, data


#: What a run writes before its first checkpoint (Trainer.train: config.json, the learned-global baseline, the
#: TensorBoard folder).
_BEFORE_FIRST_CHECKPOINT = ("config.json", "learned_global.pkl", "tb")


def _stopped_before_first_checkpoint(out_dir: Path) -> list[str]:
    """The entries of ``out_dir`` when it holds only what a run writes before its first checkpoint (a run killed
    early: neither resumable nor empty), else []."""
    from deepexposure.atomic import is_temp_name

    if not out_dir.is_dir():
        return []
    names = [p.name for p in out_dir.iterdir()]
    if names and all(n in _BEFORE_FIRST_CHECKPOINT or is_temp_name(n) for n in names) and "config.json" in names:
        return names
    return []


def _need_training_extra() -> None:
    """Refuse (one line, exit 2) before any work when the ``train`` extra (torch, tensorboard) is not installed."""
    for module in ("torch", "tensorboard"):
        need_extra(module, "deepexposure train")


COMMANDS = [train]
