"""The learner: critic (WGAN-GP) updates, gathered actor/value gradients, schedules, logging, checkpoints.

One step ``k`` (all randomness derived from (seed, k), so a resumed run repeats an uninterrupted one exactly):

1. the batch's input previews (and flips) are drawn from ``numpy.random.default_rng([seed, k, 1])``;
2. the episodes run in tasks of ``episodes_per_task`` (:mod:`.workers`; with N processes each runs a block of the
   tasks, :mod:`.distributed`) with the current actor/critic/value and OU noise seeded from (seed, k, episode);
   every task's gradients reach every process and are summed in task order and divided by the batch size;
3. the critic gets ``n_critic`` WGAN-GP updates (``warmup_n_critic`` during the first ``critic_warmup`` steps),
   each split into the same tasks and summed the same way: the first on the episodes' final images, the next
   ones on fresh no-grad rollouts of the current actor;
4. the gathered actor (and value) gradients are applied; every learning rate decays by one exponential step.
"""

from __future__ import annotations

import math
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import torch

from deepexposure.errors import DeepExposureError
from deepexposure.learning.checkpoint import (
    CHECKPOINT_NAME,
    load_checkpoint,
    rng_states,
    save_checkpoint,
    set_rng_states,
)
from deepexposure.learning.config import TrainConfig
from deepexposure.learning.dataset import TrainData
from deepexposure.learning.distributed import SINGLE, World
from deepexposure.learning.env import apply_ev_torch, masks_tensor, run_episode
from deepexposure.learning.models import Actor, Critic, ValueNet
from deepexposure.learning.noise import OUNoise
from deepexposure.learning.policy import Policy, select_device
from deepexposure.learning.workers import (
    compute_gradients,
    critic_gradients,
    episode_noise,
    episode_seed,
    flat,
    unflat,
)

__all__ = ["Trainer", "TrainingError"]


class TrainingError(DeepExposureError):
    """Training cannot go on (a non-finite loss, a run folder in the wrong state)."""


_NOT_RESULT_KEYS = ("threads", "log_every", "image_every", "checkpoint_every", "keep_policies")
#: Statistics summed over the tasks of a step (actor/value pass; critic update), in row order (workers.flat).
_ACTOR_STATS = ("actor_loss", "value_loss", "reward", "abs_ev", "n_ev", "paired_mse", "ev_sum", "ev_count")
_CRITIC_STATS = ("critic_loss", "gp", "wasserstein")


def _result_config(d: dict) -> dict:
    """The config without the fields that do not change results (parallelism, logging cadence)."""
    run = {k: v for k, v in d.get("run", {}).items() if k not in _NOT_RESULT_KEYS}
    return {**d, "run": run}


def _horizonless(d: dict) -> dict:
    """The config without ``run.steps`` (a resume may extend or shorten the horizon)."""
    return {**d, "run": {k: v for k, v in d.get("run", {}).items() if k != "steps"}}


def _to_nchw(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).permute(0, 3, 1, 2).contiguous()


@torch.no_grad()
def best_global_ev(x: torch.Tensor, y: torch.Tensor, *, bound: float = 3.0, chunk: int = 1024) -> torch.Tensor:
    """Per image, the global EV (stops, in [-bound, bound]) minimising the sRGB MSE of ``apply_ev_torch(x, ev)``
    to ``y`` (both ``(N,3,H,W)``): a 0.25 EV grid, then a 0.01 EV grid within +-0.25 of the best -> ``(N,)``."""
    out = []
    for i in range(0, len(x), chunk):
        xi, yi = x[i : i + chunk], y[i : i + chunk]
        best = torch.zeros(len(xi), device=x.device)
        coarse, fine = torch.arange(-bound, bound + 1e-6, 0.25), torch.arange(-0.25, 0.2501, 0.01)
        for grid, refine in ((coarse, False), (fine, True)):
            centre = best if refine else torch.zeros_like(best)  # the fine grid is centred on the coarse best
            cands = (grid.to(x.device)[None, :] + centre[:, None]).clamp(-bound, bound)
            errs = torch.stack([((apply_ev_torch(xi, c.view(-1, 1, 1, 1)) - yi) ** 2).mean((1, 2, 3))
                                for c in cands.T], dim=1)
            best = cands.gather(1, errs.argmin(1, keepdim=True)).squeeze(1)
        out.append(best)
    return torch.cat(out)


class _StopAtStepEnd:
    """While training: the first Ctrl+C (SIGINT) asks the loop to stop after the current step and save a checkpoint
    (so the run can be resumed); a second one stops at once. A no-op outside the main thread."""

    def __init__(self) -> None:
        self.asked = False
        self._old = None
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._on_sigint)

    def _on_sigint(self, signum, frame) -> None:
        if self.asked:
            raise KeyboardInterrupt
        self.asked = True
        from tqdm.auto import tqdm

        tqdm.write("interrupted: stopping after this step and saving a checkpoint (--resume continues; "
                        "Ctrl+C again to stop at once)")

    def restore(self) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
            self._old = None


class Trainer:
    """Train DE I or DE II on ``data``; the run folder ``out`` gets config.json, checkpoint.pt, policy.pt, tb/."""

    def __init__(self, config: TrainConfig, data: TrainData, out: str | os.PathLike, *,
                 device: str | None = None, tensorboard: bool = True, progress: bool = True,
                 world: World | None = None) -> None:
        self.cfg = config.check()  # every entry point (CLI, torchrun, resume, Python) goes through this one check
        self.out = Path(out)
        self.world = world or SINGLE
        if self.world.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
        self.device = select_device(device)
        self.progress = progress
        self.tensorboard = tensorboard
        torch.set_num_threads(max(1, config.run.threads))
        torch.set_flush_denormal(True)  # denormals can slow CPU convolutions by orders of magnitude
        m, rl = config.model, config.rl
        # variant and paired_render were checked with every other field by config.check() above
        torch.manual_seed(config.run.seed)
        self.actor = Actor(**self._arch()).to(self.device)
        self.critic = Critic(width=m.critic_width, hidden=m.hidden, size=m.size).to(self.device)
        self.value = ValueNet(width=m.width, hidden=m.hidden, size=m.size).to(self.device) if rl.variant == "I" else None
        o = config.optim
        betas = (o.beta1, o.beta2)
        self.opt_actor = torch.optim.Adam(self.actor.parameters(), lr=o.lr_actor, betas=betas)
        self.opt_critic = torch.optim.Adam(self.critic.parameters(), lr=o.lr_critic, betas=betas)
        self.opt_value = (torch.optim.Adam(self.value.parameters(), lr=o.lr_value, betas=betas)
                          if self.value is not None else None)
        decay = o.final_lr_fraction ** (1.0 / max(1, config.run.steps))
        self.scheds = [torch.optim.lr_scheduler.ExponentialLR(opt, decay)
                       for opt in (self.opt_actor, self.opt_critic, self.opt_value) if opt is not None]
        self.ou = OUNoise(theta=rl.ou_theta, sigma=rl.ou_sigma, mu=rl.ou_mu)  # template; restarted every episode
        self.step = 0
        self.inputs = _to_nchw(data.inputs).to(self.device)
        self.labels = torch.from_numpy(data.labels.astype(np.int64)).to(self.device)
        self.experts = _to_nchw(data.experts).to(self.device)
        self.targets = _to_nchw(data.targets).to(self.device)
        self.has_target = torch.from_numpy(np.asarray(data.has_target, np.float32)).to(self.device)
        self._writer = None
        if self.world.size > 1:  # every process starts from rank 0's parameters
            self._sync_models()

    # ------------------------------------------------------------------ persistence
    def _payload(self) -> dict:
        return {"format": "deepexposure-checkpoint", "version": 1, "config": self.cfg.to_dict(), "step": self.step,
                "actor": self.actor.state_dict(), "critic": self.critic.state_dict(),
                "value": self.value.state_dict() if self.value is not None else None,
                "opt_actor": self.opt_actor.state_dict(), "opt_critic": self.opt_critic.state_dict(),
                "opt_value": self.opt_value.state_dict() if self.opt_value is not None else None,
                "scheds": [s.state_dict() for s in self.scheds], "rng": rng_states(), "ou": self.ou.state_dict()}

    def save(self) -> Path | None:
        """Write checkpoint.pt (atomic) and policy.pt for the current step (rank 0 only; other processes: None)."""
        if not self.world.is_main:
            return None
        path = save_checkpoint(self.out / CHECKPOINT_NAME, self._payload())
        pol = self.policy()
        pol.save(self.out / "policy.pt")
        if self.cfg.run.keep_policies:
            pol.save(self.out / "policies" / f"step-{self.step:06d}.pt")
        return path

    def load(self, path: str | os.PathLike | None = None) -> None:
        """Restore everything from a checkpoint (default: the run folder's), read by rank 0 and sent to all."""
        self._restore(self.world.from_rank0(lambda: load_checkpoint(path or self.out / CHECKPOINT_NAME)))

    def _restore(self, d: dict) -> None:
        """Restore from checkpoint ``d``. Only ``run.steps`` (the horizon) may differ from the checkpoint's config:
        the learning rates then decay from where they are to their final fraction at the new last step."""
        saved = TrainConfig.from_dict(d.get("config", {})).to_dict()  # fields added since then get their defaults
        mine = self.cfg.to_dict()
        if _result_config(_horizonless(saved)) != _result_config(_horizonless(mine)):
            raise TrainingError("the checkpoint was written with a different configuration")
        step = int(d["step"])
        if self.cfg.run.steps < step:
            raise TrainingError(f"the run is already at step {step}: --steps {self.cfg.run.steps} is fewer "
                                "(give at least as many steps as it has done)")
        self.actor.load_state_dict(d["actor"])
        self.critic.load_state_dict(d["critic"])
        self.opt_actor.load_state_dict(d["opt_actor"])
        self.opt_critic.load_state_dict(d["opt_critic"])
        if self.value is not None:
            self.value.load_state_dict(d["value"])
            self.opt_value.load_state_dict(d["opt_value"])
        for s, sd in zip(self.scheds, d["scheds"], strict=True):
            s.load_state_dict(sd)
        set_rng_states(d["rng"])
        self.ou.load_state_dict(d["ou"])
        self.step = step
        if saved["run"]["steps"] != self.cfg.run.steps:
            self._new_horizon()

    def _new_horizon(self) -> None:
        """After a resume with another ``run.steps``: each learning rate decays exponentially from its current value
        to ``final_lr_fraction`` of its initial value at the new last step (the schedule continues on the new
        horizon; an uninterrupted run of that many steps would have decayed more slowly from the start)."""
        left = self.cfg.run.steps - self.step
        for s in self.scheds:
            for group in s.optimizer.param_groups:
                if left > 0:
                    final = group["initial_lr"] * self.cfg.optim.final_lr_fraction
                    s.gamma = (final / group["lr"]) ** (1.0 / left) if group["lr"] > 0 else 1.0

    def _sync_models(self) -> None:
        """Every process takes rank 0's network parameters (so a start is identical even on mixed hardware)."""
        state = self.world.from_rank0(lambda: {name: {k: v.detach().cpu() for k, v in net.state_dict().items()}
                                               for name, net in self._nets().items()})
        if not self.world.is_main:
            for name, net in self._nets().items():
                net.load_state_dict(state[name])

    def _nets(self) -> dict[str, torch.nn.Module]:
        nets = {"actor": self.actor, "critic": self.critic}
        return {**nets, "value": self.value} if self.value is not None else nets

    def _check_in_step(self) -> None:
        """Raise :class:`TrainingError` if the processes' parameters differ (one sum per tensor, compared exactly):
        they must be identical at every step; a difference means different software or hardware on some process."""
        if self.world.size == 1:
            return
        sums = torch.stack([p.detach().float().sum() for net in self._nets().values() for p in net.parameters()])
        every = self.world.gather_rows(sums[None].to(self.device), self.world.size)
        bad = [r for r in range(self.world.size) if not torch.equal(every[r], every[0])]
        if bad:
            raise TrainingError(f"the training processes diverged at step {self.step}: the parameters of process(es) "
                                f"{', '.join(map(str, bad))} differ from process 0's (run the same deepexposure and "
                                f"torch versions on the same kind of hardware everywhere)")

    @classmethod
    def resume(cls, out: str | os.PathLike, data: TrainData, *, threads: int | None = None,
               steps: int | None = None, **kw) -> Trainer:
        """A trainer continuing the run in ``out`` from its last checkpoint (config taken from the checkpoint). The
        process count (``world``) and ``threads`` may differ from the run's: they do not change results. ``steps``
        sets a new horizon (train longer, or stop sooner, but not before the step reached): the learning rates
        continue from their current values and reach their final fraction at the new last step (so the result
        differs from an uninterrupted run of ``steps``)."""
        world = kw.get("world") or SINGLE
        d = world.from_rank0(lambda: load_checkpoint(Path(out) / CHECKPOINT_NAME))
        cfg = TrainConfig.from_dict(d["config"])
        if threads is not None:
            cfg.run.threads = threads
        if steps is not None:
            cfg.run.steps = steps
        t = cls(cfg, data, out, **kw)
        t._restore(d)
        return t

    def _arch(self) -> dict:
        m = self.cfg.model
        return {"width": m.width, "hidden": m.hidden, "size": m.size, "max_ev": m.max_ev, "in_channels": 8,
                "global_features": m.global_features, "global_branch": m.global_branch, "residual_ev": m.residual_ev}

    def policy(self) -> Policy:
        """The current actor as a standalone :class:`Policy` (config: variant, T, max_ev, segmentation, step)."""
        m, rl = self.cfg.model, self.cfg.rl
        arch = self._arch()
        conf = {"variant": rl.variant, "segments": rl.segments, "max_ev": m.max_ev,
                "segmentation": self.cfg.segmentation(), "gamma": rl.gamma, "train_steps": self.step,
                "seed": self.cfg.run.seed, "size": m.size, "paired_weight": rl.paired_weight,
                "paired_render": rl.paired_render}
        return Policy.from_actor(self.actor, arch, conf, device="cpu")

    # ------------------------------------------------------------------ one step
    def _inputs(self, idx: np.ndarray, flip: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        x, lab, _, _ = self._batch(idx, flip)
        return x, masks_tensor(lab, self.cfg.rl.segments)

    def _batch(self, idx: np.ndarray, flip: np.ndarray) -> tuple[torch.Tensor, ...]:
        """Inputs, labels, targets and target weights of ``idx``, each flipped where ``flip``."""
        i = torch.from_numpy(idx).to(self.device)
        x, lab, y, w = self.inputs[i], self.labels[i], self.targets[i], self.has_target[i]
        if self.cfg.rl.flip:
            f = torch.from_numpy(flip).to(self.device)
            x = torch.where(f[:, None, None, None], x.flip(-1), x)
            y = torch.where(f[:, None, None, None], y.flip(-1), y)
            lab = torch.where(f[:, None, None], lab.flip(-1), lab)
        return x, lab, y, w

    def _experts(self, idx: np.ndarray, flip: np.ndarray) -> torch.Tensor:
        x = self.experts[torch.from_numpy(idx).to(self.device)]
        if self.cfg.rl.flip:
            x = torch.where(torch.from_numpy(flip).to(self.device)[:, None, None, None], x.flip(-1), x)
        return x

    def _task_slices(self, b: int) -> list[slice]:
        """The batch's fixed tasks: ``episodes_per_task`` consecutive episodes each (the last may be shorter)."""
        per = max(1, self.cfg.rl.episodes_per_task)
        return [slice(i, min(i + per, b)) for i in range(0, b, per)]

    def _reduce(self, rows: list[torch.Tensor], n: int, like: list[torch.Tensor], n_stats: int
                ) -> tuple[list[torch.Tensor], list[float]]:
        """This process's task rows (:func:`.workers.flat` of gradients shaped like ``like`` and ``n_stats``
        statistics) -> every task's, summed in task order on every process (the same sum for any process count):
        (summed gradients, summed statistics)."""
        width = sum(t.numel() for t in like) + n_stats
        mine = torch.stack(rows).to(self.device) if rows else torch.zeros((0, width), device=self.device)
        every = self.world.gather_rows(mine, n)
        total = every[0].clone()
        for row in every[1:]:  # task order: identical for any process count
            total.add_(row)
        tensors, stats = unflat(total, like)
        return tensors, stats.tolist()

    def _apply(self, net: torch.nn.Module, opt: torch.optim.Optimizer, total: list[torch.Tensor], b: int) -> None:
        """Set the gradients to the task sum / batch size, clip (``grad_clip``) and step the optimiser."""
        for p, g in zip(net.parameters(), total, strict=True):
            p.grad = g / b
        if self.cfg.optim.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(net.parameters(), self.cfg.optim.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)

    def _critic_step(self, tasks: list[slice], mine: range, real: torch.Tensor, fakes: dict, alpha: torch.Tensor,
                     b: int) -> dict:
        """One WGAN-GP update of the critic from this process's tasks (``fakes``: task index -> fake images)."""
        params = list(self.critic.parameters())
        rows = []
        for i in mine:
            sl = tasks[i]
            grads, st = critic_gradients(self.critic, real[sl], fakes[i], alpha[sl], gp_lambda=self.cfg.rl.gp_lambda)
            rows.append(flat(grads, [st[key] for key in _CRITIC_STATS]))
        total, sums = self._reduce(rows, len(tasks), params, len(_CRITIC_STATS))
        stats = {key: v / b for key, v in zip(_CRITIC_STATS, sums, strict=True)}
        if not math.isfinite(stats["critic_loss"]):
            raise TrainingError(f"non-finite critic loss at step {self.step}; stopped, the last good checkpoint "
                                f"is kept in {self.out}")
        self._apply(self.critic, self.opt_critic, total, b)
        return stats

    def train_step(self) -> dict:
        """One update (see the module doc); returns the step's statistics (the same on every process)."""
        cfg, rl = self.cfg, self.cfg.rl
        k, seed, b = self.step, cfg.run.seed, rl.batch_size
        n_in, n_ex = len(self.inputs), len(self.experts)
        rng = np.random.default_rng([seed, k, 1])
        idx, flip = rng.integers(n_in, size=b), rng.random(b) < 0.5
        s0, lab, targets, target_w = self._batch(idx, flip)
        masks = masks_tensor(lab, rl.segments)
        seeds = [episode_seed(seed, k, e) for e in range(b)]
        tasks = self._task_slices(b)
        mine = self.world.tasks(len(tasks))
        kw = {"variant": rl.variant, "gamma": rl.gamma, "ou_theta": rl.ou_theta, "ou_sigma": rl.ou_sigma,
              "ou_mu": rl.ou_mu, "paired_weight": rl.paired_weight, "paired_render": rl.paired_render}
        rows, finals = [], {}
        for i in mine:
            sl = tasks[i]
            r = compute_gradients(self.actor, self.critic, self.value, s0[sl], masks[sl], seeds[sl], targets[sl],
                                  target_w[sl], **kw)
            rows.append(flat(r.actor_grads + (r.value_grads or []), [r.stats[key] for key in _ACTOR_STATS]))
            finals[i] = r.finals
        like = list(self.actor.parameters()) + (list(self.value.parameters()) if self.value is not None else [])
        total, sums = self._reduce(rows, len(tasks), like, len(_ACTOR_STATS))
        stats = dict(zip(_ACTOR_STATS, sums, strict=True))
        for key in ("actor_loss", "value_loss"):
            if not math.isfinite(stats[key]):
                raise TrainingError(f"non-finite {key.replace('_', ' ')} at step {k}; stopped, the last good "
                                    f"checkpoint is kept in {self.out}")
        # critic: n_crit updates, each split into the same tasks
        n_crit = rl.warmup_n_critic if k < rl.critic_warmup else rl.n_critic
        gen = torch.Generator(device=self.device).manual_seed(episode_seed(seed, k, 0, stream=2))
        cstats: dict = {}
        for j in range(n_crit):
            real = self._experts(rng.integers(n_ex, size=b), rng.random(b) < 0.5)
            fakes = finals
            if j > 0:  # fresh no-grad rollouts of the current actor, task by task
                jdx, jflip = rng.integers(n_in, size=b), rng.random(b) < 0.5
                js = [episode_seed(seed, k, e, stream=4 + j) for e in range(b)]
                fakes = {}
                for i in mine:
                    sl = tasks[i]
                    x, mk = self._inputs(jdx[sl], jflip[sl])
                    noise = episode_noise(js[sl], rl.segments, theta=rl.ou_theta, sigma=rl.ou_sigma, mu=rl.ou_mu)
                    with torch.no_grad():
                        fakes[i] = run_episode(self.actor, x, mk, noise.to(self.device))[1]
            alpha = torch.rand(b, generator=gen, device=self.device)  # GP interpolation weights, whole batch
            cstats = self._critic_step(tasks, mine, real, fakes, alpha, b)
        stats.update(cstats)
        # actor / value
        n_actor = len(list(self.actor.parameters()))
        self._apply(self.actor, self.opt_actor, total[:n_actor], b)
        if self.value is not None:
            self._apply(self.value, self.opt_value, total[n_actor:], b)
        for s in self.scheds:
            s.step()
        self.step += 1
        stats["abs_ev"] /= max(stats.pop("n_ev"), 1.0)
        for key in ("actor_loss", "value_loss", "reward"):
            stats[key] /= b
        stats["paired_mse"] /= max(float(target_w.sum()), 1.0)
        stats["mean_ev"] = stats.pop("ev_sum") / max(stats.pop("ev_count"), 1.0)
        # TensorBoard images: this process's episodes (on rank 0, which logs, the batch's first ones)
        shown = torch.cat([finals[i] for i in mine]) if mine else s0[:0]
        n = len(shown)
        self._last = (s0[:n], shown, self.experts[torch.from_numpy(idx[:n] % n_ex).to(self.device)])
        return stats

    # ------------------------------------------------------------------ global branch warm start
    def _known_global_evs(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(inputs with a known target, their best global EVs), computed once; None without targets."""
        if getattr(self, "_known", None) is None:
            known = self.has_target > 0
            if not bool(known.any()):
                return None
            x = self.inputs[known]
            self._known = (x, best_global_ev(x, self.targets[known], bound=self.cfg.model.max_ev))
        return self._known

    def fit_baseline(self) -> Path | None:
        """Fit the learned-global baseline on this run's inputs with known targets and write
        ``learned_global.pkl`` beside the policy (skipped, with one line, without scikit-learn or targets)."""
        from deepexposure.errors import ModelError
        from deepexposure.learning.learned_global import LEARNED_GLOBAL_NAME, fit_learned_global

        known = self._known_global_evs()
        if known is None:
            return None
        try:
            lg = fit_learned_global(known[0].cpu(), known[1].cpu().numpy(), bound=self.cfg.model.max_ev,
                                    seed=self.cfg.run.seed)
        except ModelError as exc:
            import logging

            logging.getLogger(__name__).warning("learned-global baseline not fitted: %s", exc)
            return None
        return lg.save(self.out / LEARNED_GLOBAL_NAME)

    def pretrain_global(self) -> dict:
        """Fit the actor's global branch to :func:`best_global_ev` of every input with a known target (MSE in EV,
        Adam lr 1e-3, batch 256, ``rl.global_pretrain_steps`` steps, seeded by the run seed). Returns statistics."""
        known = self._known_global_evs()
        if known is None:
            return {}
        x, target_ev = known
        from deepexposure.learning.models import exposure_features_batched

        feats = exposure_features_batched(x)
        gnet = self.actor.gnet
        opt = torch.optim.Adam(gnet.parameters(), lr=1e-3)
        gen = torch.Generator().manual_seed(episode_seed(self.cfg.run.seed, 0, 0, stream=7))
        n, loss = len(feats), torch.zeros(())
        for _ in range(self.cfg.rl.global_pretrain_steps):
            i = torch.randint(n, (min(256, n),), generator=gen).to(self.device)
            loss = ((gnet(feats[i]) - target_ev[i]) ** 2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        with torch.no_grad():
            err = (gnet(feats) - target_ev).abs().mean()
        return {"pretrain_mse": float(loss.detach()), "pretrain_mae_ev": float(err)}

    # ------------------------------------------------------------------ loop
    def _log(self, stats: dict) -> None:
        if not self.tensorboard or not self.world.is_main:
            return
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.out / "tb"))
        if self.step % self.cfg.run.log_every == 0:
            for key, v in stats.items():
                self._writer.add_scalar(f"train/{key}", v, self.step)
            self._writer.add_scalar("train/lr_actor", self.opt_actor.param_groups[0]["lr"], self.step)
        if self.step % self.cfg.run.image_every == 0:
            s0, finals, experts = self._last
            self._writer.add_images("input", s0[:8].clamp(0, 1).cpu(), self.step)
            self._writer.add_images("result", finals[:8].clamp(0, 1).cpu(), self.step)
            self._writer.add_images("expert", experts[:8].clamp(0, 1).cpu(), self.step)

    def train(self, *, steps: int | None = None, minutes: float | None = None) -> dict:
        """Run until ``steps`` (default: config.run.steps) or ``minutes`` of wall time; checkpoints on the way and at
        the end. The lr schedule always spans config.run.steps. Returns the last step's statistics. Ctrl+C (SIGINT)
        stops after the step under way (the first one, when it comes before), saves a checkpoint and raises
        KeyboardInterrupt, so that the run can be resumed; a second Ctrl+C stops at once.

        With several processes (:mod:`.distributed`) every process calls this; rank 0 alone writes config.json,
        checkpoints, policies, the baseline and TensorBoard logs and shows progress; all stop at the same step
        (the first at which any process's clock passed ``minutes``)."""
        target = min(steps if steps is not None else self.cfg.run.steps, self.cfg.run.steps)
        stop = _StopAtStepEnd()  # Ctrl+C: stop after the current step with a checkpoint
        try:
            return self._train(target, minutes, stop)
        finally:
            stop.restore()

    def _train(self, target: int, minutes: float | None, stop: _StopAtStepEnd) -> dict:
        main = self.world.is_main
        if main:
            self.cfg.save(self.out / "config.json")
        deadline = None if minutes is None else time.monotonic() + 60.0 * minutes
        stats: dict = {}
        from tqdm.auto import tqdm

        if self.step == 0:
            if main:
                self.fit_baseline()
            if self.cfg.rl.global_pretrain_steps > 0 and self.cfg.model.global_branch:
                st = self.pretrain_global()
                if main:
                    tqdm.write(f"global branch warm start: mean |EV error| {st.get('pretrain_mae_ev', float('nan')):.3f}"
                               " on the training inputs")
            if self.world.size > 1:
                self._sync_models()
        bar = tqdm(total=target, initial=self.step, disable=not (self.progress and main), unit="step",
                   dynamic_ncols=True)
        try:
            while self.step < target:
                stats = self.train_step()
                self._log(stats)
                bar.update(1)
                bar.set_postfix(W=f"{stats['wasserstein']:.3f}", actor=f"{stats['actor_loss']:.3f}",
                                r=f"{stats['reward']:.3f}", ev=f"{stats['mean_ev']:+.2f}", refresh=False)
                if self.step % self.cfg.run.checkpoint_every == 0:
                    self._check_in_step()
                    self.save()
                if deadline is not None and self.world.any(time.monotonic() > deadline, self.device):
                    break
                if self.world.any(stop.asked, self.device):  # every process stops at the same step
                    self._check_in_step()
                    self.save()
                    raise KeyboardInterrupt
            self._check_in_step()
            self.save()
        finally:
            bar.close()
            self.close()
        return stats

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
