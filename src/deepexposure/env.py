"""The exposure environment at preview size, in torch (batched, differentiable in the actions).

An episode exposes a 64x64 preview ``S0`` segment by segment. With hard masks ``M_t`` (one per segment, disjoint,
covering the image; empty masks pad images with fewer than ``T`` segments and make their steps no-ops):

    S^l_0 = S0,    S^l_{t+1} = S^l_t * (1 - M_t) + apply_ev_torch(S0, e_t) * M_t

so after ``T`` steps ``S^l_T = sum_t M_t * apply_ev(S0, e_t)``: exactly the local renderer with hard masks at
preview size (each segment is exposed from the ORIGINAL preview, never twice). The state fed to the networks is
``[S0 (3), M_t (1), S^l_t (3), t/T (1)]`` = 8 channels; the constant step plane is our addition to the paper's 7
channels (it tells the value net how many steps are left). Everything is differentiable in ``e_t``.
"""

from __future__ import annotations

import torch

__all__ = ["apply_ev_torch", "srgb_to_linear_torch", "linear_to_srgb_torch", "state", "step", "run_episode",
           "STATE_CHANNELS", "masks_tensor"]

STATE_CHANNELS = 8
_A = 0.055
_THRESH_SRGB = 0.04045
_THRESH_LIN = 0.0031308


def srgb_to_linear_torch(x: torch.Tensor) -> torch.Tensor:
    """IEC 61966-2-1 decoding of sRGB in [0,1] (any shape) -> linear light in [0,1]; twin of color.srgb_to_linear."""
    x = x.clamp(0.0, 1.0)
    hi = ((x.clamp(min=_THRESH_SRGB) + _A) / (1 + _A)) ** 2.4
    return torch.where(x <= _THRESH_SRGB, x / 12.92, hi)


def linear_to_srgb_torch(x: torch.Tensor) -> torch.Tensor:
    """IEC 61966-2-1 encoding; linear values are clipped to [0,1] first (zero gradient where clipped)."""
    x = x.clamp(0.0, 1.0)
    hi = (1 + _A) * x.clamp(min=_THRESH_LIN) ** (1 / 2.4) - _A  # clamp inside: no inf gradient at 0
    return torch.where(x <= _THRESH_LIN, x * 12.92, hi)


def apply_ev_torch(srgb: torch.Tensor, ev: torch.Tensor) -> torch.Tensor:
    """Expose sRGB ``(B,3,H,W)`` in [0,1] by ``ev`` stops (``(B,1,1,1)`` or ``(B,1,H,W)``) in linear light.

    ``srgb(clip(linear(x) * 2**ev, 0, 1))``: the differentiable twin of :func:`deepexposure.color.apply_ev`.
    """
    return linear_to_srgb_torch(srgb_to_linear_torch(srgb) * torch.exp2(ev))


def masks_tensor(labels: torch.Tensor, n_steps: int) -> torch.Tensor:
    """Hard masks ``(B,T,H,W)`` float from int labels ``(B,H,W)``; labels >= T are merged into the last mask."""
    lab = labels.long().clamp(max=n_steps - 1)
    return (lab[:, None] == torch.arange(n_steps, device=labels.device)[None, :, None, None]).to(torch.float32)


def state(s0: torch.Tensor, mask_t: torch.Tensor, cur: torch.Tensor, t: int, n_steps: int) -> torch.Tensor:
    """Network input ``(B,8,H,W)``: original preview, mask of segment t ``(B,1,H,W)``, current image, t/T plane."""
    plane = torch.full_like(mask_t, t / n_steps)
    return torch.cat([s0, mask_t, cur, plane], dim=1)


def step(s0: torch.Tensor, cur: torch.Tensor, mask_t: torch.Tensor, ev: torch.Tensor) -> torch.Tensor:
    """Transition: ``cur`` outside ``mask_t`` (B,1,H,W), ``apply_ev_torch(s0, ev)`` inside; ``ev`` (B,) or (B,1,1,1)."""
    ev = ev.reshape(-1, 1, 1, 1)
    return cur * (1 - mask_t) + apply_ev_torch(s0, ev) * mask_t


@torch.no_grad()
def run_episode(actor: torch.nn.Module, s0: torch.Tensor, masks: torch.Tensor,
                noise: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Roll out the (deterministic, or ``noise``-perturbed ``(B,T)``) actor; returns (evs (B,T), final image)."""
    n_steps = masks.shape[1]
    cur = s0
    evs = []
    for t in range(n_steps):
        m = masks[:, t : t + 1]
        e = actor(state(s0, m, cur, t, n_steps))
        if noise is not None:
            e = (e + noise[:, t]).clamp(-actor.max_ev, actor.max_ev)
        cur = step(s0, cur, m, e)
        evs.append(e)
    return torch.stack(evs, dim=1), cur
