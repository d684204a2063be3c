"""The work of one task: synchronous gradient gathering (A3C-style workers, made reproducible).

Every update the batch's episodes are split into fixed tasks of ``episodes_per_task`` episodes. Each training
process (``torch.distributed``, :mod:`.distributed`; one process without torchrun) runs its block of tasks with
the current parameters; every process then receives every task's gradients and sums them in task order. A task's
result depends only on (parameters, its previews/masks, its episode seeds), with the seeds derived from
(seed, step, episode index) and never from the process rank, so any process count gives the same update, bit for
bit. The critic's WGAN-GP updates are split into the same tasks (:func:`critic_gradients`).

:func:`compute_gradients` and :func:`critic_gradients` are pure functions (nothing about processes in them).

Actor gradient (documented exactly; states are detached, so each term is the deterministic policy gradient
``grad_theta mu(s_t) * grad_a A(s_t, a)`` of its own step, flowing through the differentiable transition):

* DE I:  ``A_t = r_t + gamma * V(s_{t+1}(e_t)) - V(s_t)`` with ``r_t = 0`` for t < T-1 and, at the last step,
  ``A = D(S_T(e)) - V(s_{T-1})`` (terminal, V = 0 after it). Actor loss ``-sum_t A_t``, gradients only into the actor.
  Value loss ``sum_t (V(s_t) - y_t)^2`` with the TD target ``y_t = r_t + gamma * V(s_{t+1})`` detached (Eq. 6, 9).
* DE II: no value net; ``V(s_t) = gamma^(T-t) D(S_t)`` (paper Eq. 14-15) with t = 1..T counting the image S_t
  *after* the t-th action, so ``A_t = (gamma - 1) gamma^(T-t) c(S_t)`` where the paper's ``c`` follows the original
  WGAN code's sign (critic high on fakes). Our critic is high on experts (``c = -D``), so the actor maximises
  ``A_t = (1 - gamma) gamma^(T-t) D(S_t(e_t))``: each step is pushed to make the partly exposed image look like an
  expert photo, weighted by ``gamma^(T-t)`` (Adam makes the overall ``1-gamma`` scale irrelevant).

Paired anchor (optional, ``paired_weight > 0``; our extension): ``- w * sum_t mean_px(M_t (S_{t+1} - Y)^2)`` is
added to the actor objective for episodes with a known target ``Y``. Since ``S_T = sum_t M_t apply_ev(S0, e_t)``,
the per-step terms sum to the MSE of the final image, and each step's term depends on its own ``e_t`` only.
With ``paired_render = "fusion"`` the term is instead ``- w * mean_px(F(S0, e_1..e_n) - Y)^2`` where ``F`` is the
fusion renderer at preview size (:func:`deepexposure.learning.env.fuse_evs_torch`, the episode's n non-empty segments'
executed EVs): it depends on every EV jointly, so its gradient reaches each step's action through the fusion;
``"both"`` adds the two.

Exploration: the executed action is ``clip(mu(s_t) + OU_t, -max_ev, max_ev)``; the gradient is taken at the
executed action (straight-through for the noise).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from deepexposure.learning.env import fuse_evs_torch, state, step
from deepexposure.learning.models import Actor, Critic, ValueNet, gradient_penalty
from deepexposure.learning.noise import OUNoise

__all__ = ["TaskResult", "compute_gradients", "critic_gradients", "episode_noise", "episode_seed", "PAIRED_RENDERS",
           "fused_paired_error", "flat", "unflat"]

PAIRED_RENDERS = ("local", "fusion", "both")


def episode_seed(seed: int, step_index: int, episode: int, stream: int = 3) -> int:
    """64-bit seed of one episode from (run seed, step, episode index in the batch, stream id)."""
    return int(np.random.SeedSequence([seed, step_index, stream, episode]).generate_state(2, np.uint32).astype(
        np.uint64) @ np.array([1 << 32, 1], dtype=np.uint64)) & ((1 << 63) - 1)


def episode_noise(seeds: list[int], n_steps: int, *, theta: float, sigma: float, mu: float) -> torch.Tensor:
    """OU noise ``(E, T)`` float32: one fresh process per episode, each on its own seeded generator."""
    out = []
    for s in seeds:
        g = torch.Generator().manual_seed(int(s))
        ou = OUNoise(theta=theta, sigma=sigma, mu=mu)
        ou.reset()
        out.append(ou.path(n_steps, g))
    return torch.stack(out) if out else torch.zeros(0, n_steps)


@dataclass
class TaskResult:
    """Gradients (sums over the task's episodes) and per-task sums of statistics."""

    actor_grads: list[torch.Tensor]
    value_grads: list[torch.Tensor] | None
    stats: dict = field(default_factory=dict)
    finals: torch.Tensor | None = None  #: final images (E,3,H,W), detached
    evs: torch.Tensor | None = None  #: executed EVs (E,T)


def fused_paired_error(s0: torch.Tensor, evs: torch.Tensor, masks: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-episode MSE ``(E,)`` between the preview fusion of ``s0`` ``(E,3,H,W)`` with the EVs ``(E,T)`` of its
    non-empty segments (masks ``(E,T,H,W)``; empty ones are trailing) and ``targets`` ``(E,3,H,W)``."""
    n_used = (masks.flatten(2).amax(2) > 0).sum(1)
    err = s0.new_zeros(s0.shape[0])
    for n in n_used.unique().tolist():
        sel = (n_used == n).nonzero().squeeze(1)
        fused = fuse_evs_torch(s0[sel], evs[sel, : int(n)])
        err = err.index_put((sel,), ((fused - targets[sel]) ** 2).mean(dim=(1, 2, 3)))
    return err


def compute_gradients(actor: Actor, critic: Critic, value: ValueNet | None, s0: torch.Tensor, masks: torch.Tensor,
                      seeds: list[int], targets: torch.Tensor | None = None, target_w: torch.Tensor | None = None,
                      *, variant: str, gamma: float, ou_theta: float, ou_sigma: float, ou_mu: float,
                      paired_weight: float = 0.0, paired_render: str = "local") -> TaskResult:
    """Run the episodes of one task and return gradients summed over them (see the module doc for the losses).

    ``s0``: previews (E,3,H,W) sRGB [0,1]; ``masks``: (E,T,H,W) hard segment masks; ``seeds``: E episode seeds;
    ``targets`` (E,3,H,W) and ``target_w`` (E,) (1 where the target is known): only used if ``paired_weight > 0``.
    Only the actor (and, for DE I, the value net) receive gradients; module parameters are not modified.
    """
    n_steps = masks.shape[1]
    noise = episode_noise(seeds, n_steps, theta=ou_theta, sigma=ou_sigma, mu=ou_mu).to(s0.device)
    cur = s0
    actor_obj = s0.new_zeros(())
    value_loss = s0.new_zeros(())
    paired = s0.new_zeros(())
    use_pairs = paired_weight > 0 and targets is not None and target_w is not None
    acts = []  # executed actions, with their graph (the fused anchor needs them)
    feats = actor.episode_features(s0)  # the global branch's statistics of the original, once per episode
    for t in range(n_steps):
        m = masks[:, t : t + 1]
        st = state(s0, m, cur, t, n_steps)
        a = actor(st, feats)
        a_exec = a + (noise[:, t] + a.detach()).clamp(-actor.max_ev, actor.max_ev) - a.detach()
        nxt = step(s0, cur, m, a_exec)
        last = t == n_steps - 1
        if variant == "I":
            assert value is not None
            v_t = value(st)
            if last:
                r = critic(nxt)
                q, y = r, r.detach()
            else:
                v_next = value(state(s0, masks[:, t + 1 : t + 2], nxt, t + 1, n_steps))
                q, y = gamma * v_next, gamma * v_next.detach()
            actor_obj = actor_obj + (q - v_t.detach()).sum()
            value_loss = value_loss + ((v_t - y) ** 2).sum()
        elif variant == "II":
            score = critic(nxt)
            actor_obj = actor_obj + ((1 - gamma) * gamma ** (n_steps - 1 - t) * score).sum()
            if last:
                r = score.detach()
        else:
            raise ValueError(f"unknown variant {variant!r}")
        if use_pairs and paired_render != "fusion":
            err = (((nxt - targets) ** 2) * m).mean(dim=(1, 2, 3))  # mean over pixels and channels
            paired = paired + (err * target_w).sum()
        acts.append(a_exec)
        cur = nxt.detach()
    acts_t = torch.stack(acts, 1)
    if use_pairs and paired_render != "local" and bool(target_w.any()):
        paired = paired + (fused_paired_error(s0, acts_t, masks, targets) * target_w).sum()
    actor_params = list(actor.parameters())
    actor_grads = list(torch.autograd.grad(paired_weight * paired - actor_obj, actor_params, retain_graph=variant == "I"))
    value_grads = None
    if variant == "I":
        value_grads = list(torch.autograd.grad(value_loss, list(value.parameters())))
    evs_t = acts_t.detach()
    used = masks.flatten(2).amax(2) > 0  # (E,T) steps whose segment is non-empty
    stats = {"actor_loss": float(-actor_obj.detach()), "value_loss": float(value_loss.detach()),
             "reward": float(r.detach().sum()), "abs_ev": float((evs_t.abs() * used).sum()), "n_ev": float(used.sum()),
             "paired_mse": float(paired.detach()), "ev_sum": float(evs_t.sum()), "ev_count": float(evs_t.numel())}
    return TaskResult(actor_grads, value_grads, stats, cur.detach(), evs_t)


# ----------------------------------------------------------------------------------------------- critic task

def critic_gradients(critic: Critic, real: torch.Tensor, fake: torch.Tensor, alpha: torch.Tensor, *,
                     gp_lambda: float) -> tuple[list[torch.Tensor], dict]:
    """Gradients of one task's share of the WGAN-GP critic loss, summed over its samples.

    ``sum_i D(fake_i) - D(real_i) + gp_lambda * (||grad D(x_i)|| - 1)^2`` with ``x_i = alpha_i real_i +
    (1 - alpha_i) fake_i``; divided by the batch size (by the caller) this is the gradient of the usual mean loss.
    ``real``, ``fake``: (E,3,H,W) sRGB [0,1]; ``alpha``: (E,) in [0,1). Parameters are not modified. Returns
    (gradients, sums of critic_loss, gp and wasserstein over the task).
    """
    d_real = critic(real)
    d_fake = critic(fake)
    gp = gradient_penalty(critic, real, fake, alpha=alpha, reduction="sum")
    loss = d_fake.sum() - d_real.sum() + gp_lambda * gp
    grads = list(torch.autograd.grad(loss, list(critic.parameters())))
    return grads, {"critic_loss": float(loss.detach()), "gp": float(gp.detach()),
                   "wasserstein": float((d_real.sum() - d_fake.sum()).detach())}


def flat(tensors: list[torch.Tensor], stats: list[float]) -> torch.Tensor:
    """One row: the tensors flattened one after the other, then ``stats`` (float32, on the tensors' device)."""
    dev = tensors[0].device
    return torch.cat([*(t.reshape(-1).float() for t in tensors), torch.tensor(stats, dtype=torch.float32,
                                                                               device=dev)])


def unflat(row: torch.Tensor, like: list[torch.Tensor]) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Inverse of :func:`flat`: tensors shaped like ``like`` (views of ``row``) and the remaining stats."""
    out, i = [], 0
    for t in like:
        out.append(row[i : i + t.numel()].view_as(t))
        i += t.numel()
    return out, row[i:]
