"""Training configuration: one dataclass per component, nested in :class:`TrainConfig`, saved as JSON.

The dataclasses are the one source of truth of what a config may hold: :meth:`TrainConfig.from_dict` (so
``--config`` and a run's config.json) refuses unknown keys, values of the wrong type and values outside
:data:`LIMITS` with one :class:`~deepexposure.errors.ConfigError` line naming the key."""

from __future__ import annotations

import dataclasses
import json
import math
import typing
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from deepexposure.atomic import atomic_write_text
from deepexposure.errors import ConfigError
from deepexposure.image.segmentation import PREVIEW_SIZE, SEGMENT_DEFAULTS

__all__ = ["ModelConfig", "RLConfig", "OptimConfig", "RunConfig", "TrainConfig", "LIMITS"]


@dataclass
class ModelConfig:
    """Network sizes (see deepexposure.learning.models)."""

    width: int = 32  #: channels of the first conv layer of actor/value trunks (then x2, x4, x4)
    hidden: int = 128  #: hidden units of the MLP heads
    critic_width: int = 32  #: channels of the critic's first conv layer
    max_ev: float = 3.0  #: actor output bound, EV stops (tanh * max_ev)
    size: int = 64  #: preview side in pixels
    #: actor also sees luma histograms (models.global_features); our addition, see docs/learning.md
    global_features: bool = False
    #: actor = global EV from exposure statistics (models.GlobalExposureNet) + per-segment residual; ours
    global_branch: bool = False
    residual_ev: float = 1.5  #: bound of the per-segment residual of the global-branch actor, EV stops


@dataclass
class RLConfig:
    """The episode, the reward and the gradient gathering."""

    variant: str = "I"  #: "I" (value net + TD, Eq. 6-9) or "II" (critic as value, Eq. 14-15)
    #: T: segments per preview = steps per episode (smaller images are padded with no-op steps)
    segments: int = SEGMENT_DEFAULTS["max_segments"]
    #: Felzenszwalb scale, smoothing sigma and minimum region size (pixels) on the 64x64 preview; defaults: the one
    #: source of truth, deepexposure.image.segmentation.SEGMENT_DEFAULTS. Saved in the policy (config["segmentation"]).
    seg_scale: float = SEGMENT_DEFAULTS["scale"]
    seg_sigma: float = SEGMENT_DEFAULTS["sigma"]
    seg_min_size: int = SEGMENT_DEFAULTS["min_size"]
    gamma: float = 0.99  #: discount
    batch_size: int = 8  #: episodes whose gradients are gathered into one update (paper: 8)
    episodes_per_task: int = 4  #: episodes per task (fixed, so results do not depend on the process count)
    ou_theta: float = 0.015  #: OU mean reversion (paper's zeta)
    ou_sigma: float = 0.03  #: OU increment std, EV
    ou_mu: float = 0.0  #: OU mean, EV
    n_critic: int = 2  #: critic updates per actor update
    critic_warmup: int = 100  #: first steps where the critic gets warmup_n_critic updates instead
    warmup_n_critic: int = 5  #: critic updates per step during warmup
    gp_lambda: float = 10.0  #: WGAN-GP gradient-penalty weight
    flip: bool = True  #: random horizontal flips of inputs (with labels) and experts
    #: Paired anchor (our extension, not in the paper; 0 = the paper's unpaired method): the actor also minimises
    #: ``paired_weight * MSE(S_T, target)`` on the inputs whose clean target is known (synthetic degradations),
    #: per step on its own segment, like the behaviour-cloning term of TD3+BC. See docs/learning.md.
    paired_weight: float = 0.0
    #: Which image the paired anchor compares with the target: "local" (the episode's final image, per step on its
    #: own segment), "fusion" (the preview fused from the original and every EV, env.fuse_evs_torch: the renderer
    #: ``enhance`` uses) or "both" (the sum of the two MSEs). Our extension, see docs/learning.md.
    paired_render: str = "local"
    #: Supervised warm start of the actor's global branch (model.global_branch; ours): this many Adam steps
    #: (batch 256, lr 1e-3) fitting the best single global EV of every input whose clean target is known,
    #: before the first RL step. 0 = off.
    global_pretrain_steps: int = 0
    #: Synthetic degradation of the ``--synthetic-inputs`` (deepexposure.data.DegradeConfig fields; {} = the
    #: default family mix; {"preset": "v1"} = the single error model of releases <= 0.1).
    degrade: dict = field(default_factory=dict)


@dataclass
class OptimConfig:
    """Adam learning rates, decayed exponentially to ``final_lr_fraction`` of the start over ``RunConfig.steps``."""

    lr_critic: float = 1e-4  #: paper 5e-5; larger for runs of a few thousand CPU steps (docs/learning.md)
    lr_actor: float = 1e-4  #: paper 1.5e-5; larger for short CPU runs
    lr_value: float = 1e-3  #: paper 5e-4; larger for short CPU runs
    final_lr_fraction: float = 0.01  #: lr at the last step / lr at the first step (paper 1e-3)
    beta1: float = 0.5  #: Adam beta1 (0.5, 0.9: the usual WGAN-GP choice; the paper does not say)
    beta2: float = 0.9  #: Adam beta2
    grad_clip: float = 0.0  #: clip the gathered gradient norms of actor/value to this (0 = off)


@dataclass
class RunConfig:
    """Run length, reproducibility, parallelism and logging."""

    steps: int = 5000  #: number of actor updates; the lr schedule spans exactly this many
    seed: int = 0  #: everything random derives from this (model init, batches, noise)
    #: torch intra-op threads of each training process (several processes: torchrun, docs/scaling.md)
    threads: int = 2
    log_every: int = 10  #: TensorBoard scalars every N steps
    image_every: int = 500  #: TensorBoard image grids every N steps
    checkpoint_every: int = 250  #: checkpoint (and policy.pt) every N steps
    keep_policies: bool = True  #: also keep a snapshot policies/step-NNNNNN.pt at every checkpoint


#: Most torch threads per training process (many more make OpenMP abort the process while allocating them).
MAX_THREADS = 1024
#: Largest run seed (torch's seeds are 64-bit).
MAX_SEED = 2**63 - 1

#: Allowed values of the config fields: dotted name -> ("range", low, high) (inclusive, None: open), ("above", low)
#: or ("choices", ...). Types come from the dataclasses' annotations.
LIMITS: dict[str, tuple] = {
    "model.width": ("range", 1, None), "model.hidden": ("range", 1, None), "model.critic_width": ("range", 1, None),
    "model.max_ev": ("above", 0), "model.size": ("choices", PREVIEW_SIZE), "model.residual_ev": ("above", 0),
    "rl.variant": ("choices", "I", "II"), "rl.segments": ("range", 1, 16), "rl.seg_scale": ("above", 0),
    "rl.seg_sigma": ("range", 0, None), "rl.seg_min_size": ("range", 1, None), "rl.gamma": ("range", 0, 1),
    "rl.batch_size": ("range", 1, None), "rl.episodes_per_task": ("range", 1, None), "rl.ou_theta": ("range", 0, 1),
    "rl.ou_sigma": ("range", 0, None), "rl.n_critic": ("range", 1, None), "rl.critic_warmup": ("range", 0, None),
    "rl.warmup_n_critic": ("range", 1, None), "rl.gp_lambda": ("range", 0, None),
    "rl.paired_weight": ("range", 0, None), "rl.paired_render": ("choices", "local", "fusion", "both"),
    "rl.global_pretrain_steps": ("range", 0, None),
    "optim.lr_critic": ("above", 0), "optim.lr_actor": ("above", 0), "optim.lr_value": ("above", 0),
    "optim.final_lr_fraction": ("above", 0), "optim.beta1": ("range", 0, 0.999), "optim.beta2": ("range", 0, 0.9999),
    "optim.grad_clip": ("range", 0, None),
    "run.steps": ("range", 1, None), "run.seed": ("range", 0, MAX_SEED), "run.threads": ("range", 1, MAX_THREADS),
    "run.log_every": ("range", 1, None), "run.image_every": ("range", 1, None),
    "run.checkpoint_every": ("range", 1, None),
}
_KINDS = {bool: ("true or false", lambda v: isinstance(v, bool)),
          int: ("a whole number", lambda v: isinstance(v, int) and not isinstance(v, bool)),
          float: ("a finite number",
                  lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)),
          str: ("a string", lambda v: isinstance(v, str)),
          dict: ("a JSON object", lambda v: isinstance(v, dict))}


def _check_value(name: str, value, kind: type) -> None:
    """Raise :class:`ConfigError` unless ``value`` has the field's type ``kind`` and lies within :data:`LIMITS`."""
    what, ok = _KINDS[kind]
    if not ok(value):
        raise ConfigError(f"config key {name} must be {what}, got {json.dumps(value)[:60]}")
    rule, *args = LIMITS.get(name, ("range", None, None))
    if rule == "choices" and value not in args:
        raise ConfigError(f"config key {name} must be {' or '.join(map(str, args))}, got {value!r}")
    if rule == "above" and not value > args[0]:
        raise ConfigError(f"config key {name} must be above {args[0]}, got {value!r}")
    if rule == "range" and ((args[0] is not None and value < args[0]) or (args[1] is not None and value > args[1])):
        span = f"from {args[0]} to {args[1]}" if args[1] is not None else f"at least {args[0]}"
        raise ConfigError(f"config key {name} must be {span}, got {value!r}")


def _section(cls, name: str, d) -> dict:
    """``d`` checked against dataclass ``cls`` (section ``name`` of the config): every key known, every value of
    the field's type and within :data:`LIMITS`. Returns ``d``."""
    if not isinstance(d, dict):
        raise ConfigError(f"config key {name} must be a JSON object of settings, got {json.dumps(d)[:60]}")
    hints = typing.get_type_hints(cls)
    for key, value in d.items():
        if key not in hints:
            raise ConfigError(f"unknown config key {name}.{key} (the {name} settings are: {', '.join(hints)})")
        _check_value(f"{name}.{key}", value, typing.get_origin(hints[key]) or hints[key])
    return d


_SECTIONS = {"model": ModelConfig, "rl": RLConfig, "optim": OptimConfig, "run": RunConfig}


@dataclass
class TrainConfig:
    """Everything a training run needs besides the data; saved as ``config.json`` and inside every checkpoint."""

    model: ModelConfig = field(default_factory=ModelConfig)
    rl: RLConfig = field(default_factory=RLConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """The config of ``d`` (sections model, rl, optim, run; a missing key keeps its default), or
        :class:`ConfigError` naming the first unknown key or bad value (see :data:`LIMITS`)."""
        if not isinstance(d, dict):
            raise ConfigError(f"a training config must be a JSON object with the sections {', '.join(_SECTIONS)}, "
                              f"got {type(d).__name__ if d is not None else 'null'}")
        for key in d:
            if key not in _SECTIONS:
                owners = [s for s, c in _SECTIONS.items() if key in typing.get_type_hints(c)]
                hint = f" (did you mean {owners[0]}.{key}? settings go in their section)" if owners else ""
                raise ConfigError(f"unknown config key {key}{hint}; the sections are {', '.join(_SECTIONS)}")
        run = dict(_section(RunConfig, "run", {k: v for k, v in d.get("run", {}).items() if k != "workers"}
                            if isinstance(d.get("run", {}), dict) else d["run"]))
        if d.get("run", {}).get("workers", 0):  # RunConfig.workers (a process pool) was replaced by torchrun
            warnings.warn(f"run.workers = {d['run']['workers']} is ignored: gradient worker processes were "
                          f"replaced by torchrun (torchrun --nproc-per-node N -m deepexposure train ...; "
                          f"docs/scaling.md)", stacklevel=2)
        rl = _section(RLConfig, "rl", d.get("rl", {}))
        if "degrade" in rl:
            from deepexposure.data import DegradeConfig

            try:
                DegradeConfig.from_dict(rl["degrade"])
            except (ValueError, TypeError) as exc:
                raise ConfigError(f"config key rl.degrade: {exc}") from None
        return cls(model=ModelConfig(**_section(ModelConfig, "model", d.get("model", {}))), rl=RLConfig(**rl),
                   optim=OptimConfig(**_section(OptimConfig, "optim", d.get("optim", {}))), run=RunConfig(**run))

    def save(self, path: str | Path) -> None:
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        """Read and check a config file (:meth:`from_dict`); anything wrong is one :class:`ConfigError` line."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read the config {path}: {getattr(exc, 'strerror', None) or exc}") from None
        try:
            d = json.loads(text)
        except RecursionError:
            raise ConfigError(f"the config {path} is nested too deeply") from None
        except ValueError as exc:
            raise ConfigError(f"the config {path} is not JSON ({exc})") from None
        try:
            return cls.from_dict(d)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None

    def check(self) -> TrainConfig:
        """Raise :class:`ConfigError` when a field was set (e.g. by a command-line option) to a bad value."""
        TrainConfig.from_dict(self.to_dict())
        return self

    def segmentation(self) -> dict:
        """Keyword arguments of deepexposure.image.segmentation.segment used for this run."""
        return {"max_segments": self.rl.segments, "scale": self.rl.seg_scale, "sigma": self.rl.seg_sigma,
                "min_size": self.rl.seg_min_size}
