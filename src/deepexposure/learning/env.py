"""The exposure environment at preview size, in torch (batched, differentiable in the actions).

An episode exposes a 64x64 preview ``S0`` segment by segment. With hard masks ``M_t`` (one per segment, disjoint,
covering the image; empty masks pad images with fewer than ``T`` segments and make their steps no-ops):

    S^l_0 = S0,    S^l_{t+1} = S^l_t * (1 - M_t) + apply_ev_torch(S0, e_t) * M_t

so after ``T`` steps ``S^l_T = sum_t M_t * apply_ev(S0, e_t)``: exactly the local renderer with hard masks at
preview size (each segment is exposed from the ORIGINAL preview, never twice). The state fed to the networks is
``[S0 (3), M_t (1), S^l_t (3), t/T (1)]`` = 8 channels; the constant step plane is our addition to the paper's 7
channels (it tells the value net how many steps are left). Everything is differentiable in ``e_t``.
:mod:`deepexposure.inference.episode` holds the numpy twins of :func:`state`, :func:`step` and :func:`masks_tensor`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from deepexposure.inference.episode import STATE_CHANNELS

__all__ = ["apply_ev_torch", "srgb_to_linear_torch", "linear_to_srgb_torch", "state", "step", "run_episode",
           "STATE_CHANNELS", "masks_tensor", "mertens_fuse_torch", "fuse_evs_torch"]

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

    ``srgb(clip(linear(x) * 2**ev, 0, 1))``: the differentiable twin of :func:`deepexposure.image.color.apply_ev`.
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
    feats = actor.episode_features(s0) if hasattr(actor, "episode_features") else None  # once, not T times
    for t in range(n_steps):
        m = masks[:, t : t + 1]
        e = actor(state(s0, m, cur, t, n_steps), feats) if feats is not None else actor(state(s0, m, cur, t, n_steps))
        if noise is not None:
            e = (e + noise[:, t]).clamp(-actor.max_ev, actor.max_ev)
        cur = step(s0, cur, m, e)
        evs.append(e)
    return torch.stack(evs, dim=1), cur


# ----------------------------------------------------------------------------------------------- fusion in torch
def _reflect101(x: torch.Tensor, pad: int, dim: int) -> torch.Tensor:
    """Pad ``x`` by ``pad`` on both sides of ``dim`` with OpenCV's BORDER_REFLECT_101, also for sizes <= pad
    (where ``F.pad(mode="reflect")`` refuses): index i maps to its mirror with period 2(n-1)."""
    n = x.shape[dim]
    idx = torch.arange(-pad, n + pad, device=x.device)
    if n == 1:
        idx = torch.zeros_like(idx)
    else:
        period = 2 * (n - 1)
        idx = idx.remainder(period)
        idx = torch.where(idx >= n, period - idx, idx)
    return x.index_select(dim, idx)


def _blur5(x: torch.Tensor) -> torch.Tensor:
    """[1 4 6 4 1]/16 blur in both directions of (N,C,H,W) with reflect-101 borders (OpenCV's pyrDown/pyrUp
    kernel), as four 2x2 box averages ([1 1]^4 = [1 4 6 4 1]): faster on CPU than a depthwise convolution."""
    p = _reflect101(_reflect101(x, 2, 3), 2, 2)
    for _ in range(4):
        p = F.avg_pool2d(p, 2, stride=1)
    return p


def _pyr_down(x: torch.Tensor) -> torch.Tensor:
    return _blur5(x)[..., ::2, ::2]


def _pyr_up(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``cv2.pyrUp(x, dstsize)`` for ``size`` = (2h or 2h-1, 2w or 2w-1): zero insertion to (2h, 2w), the 5-tap
    blur times 4 (reflect-101 at that size), then a crop; this is what OpenCV does for odd sizes (checked)."""
    n, c, h, w = x.shape
    up = x.new_zeros(n, c, 2 * h, 2 * w)
    up[..., ::2, ::2] = x
    return (4.0 * _blur5(up))[..., : size[0], : size[1]]


def mertens_fuse_torch(images: torch.Tensor, *, sigma: float = 0.2, levels: int | None = None) -> torch.Tensor:
    """Differentiable Mertens fusion of ``images`` ``(B,K,3,H,W)`` sRGB [0,1] -> ``(B,3,H,W)`` clipped to [0,1].

    The torch twin of :func:`deepexposure.image.fusion.mertens_fuse` with default exponents (1, 1, 1) and
    ``grey_zero``-like stable weights: contrast |4-neighbour Laplacian| of the grey image (0.299/0.587/0.114),
    saturation sqrt(sum_c (c - mean)^2), well-exposedness prod_c exp(-(c - 0.5)^2 / (2 sigma^2)), weights + 1e-12
    normalised over K, blended over ``levels`` (default ``int(log2(min(H, W)))``) Gaussian/Laplacian pyramid
    levels with OpenCV's 5-tap kernel and reflect-101 borders. Used at preview size by the fused paired anchor.
    """
    b, k, _, h, w = images.shape
    x = images.clamp(0.0, 1.0).reshape(b * k, 3, h, w)
    grey = (x * torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)).sum(1, True)
    lap = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]], dtype=x.dtype, device=x.device)
    contrast = F.conv2d(_reflect101(_reflect101(grey, 1, 2), 1, 3), lap.view(1, 1, 3, 3)).abs()
    sat = ((x - x.mean(1, keepdim=True)) ** 2).sum(1, keepdim=True).add(1e-12).sqrt()
    expo = torch.exp(-((x - 0.5) ** 2).sum(1, keepdim=True) / (2 * sigma**2))
    wgt = (contrast * sat * expo + 1e-12).reshape(b, k, 1, h, w)
    wgt = (wgt / wgt.sum(1, keepdim=True)).reshape(b * k, 1, h, w)
    n_lev = int(math.log2(min(h, w))) if levels is None else int(levels)
    gw, gx = [wgt], [x]
    for _ in range(n_lev):
        gw.append(_pyr_down(gw[-1]))
        gx.append(_pyr_down(gx[-1]))
    out = None
    for lvl in range(n_lev, -1, -1):
        band = gx[lvl] if lvl == n_lev else gx[lvl] - _pyr_up(gx[lvl + 1], gx[lvl].shape[-2:])
        fused = (gw[lvl] * band).reshape(b, k, 3, *band.shape[-2:]).sum(1)
        out = fused if out is None else _pyr_up(out, fused.shape[-2:]) + fused
    return out.clamp(0.0, 1.0)


def fuse_evs_torch(s0: torch.Tensor, evs: torch.Tensor, **kw) -> torch.Tensor:
    """The fusion renderer at preview size, differentiable in ``evs`` ``(B,T)``: Mertens fusion of ``s0``
    ``(B,3,H,W)`` and ``apply_ev_torch(s0, evs[:, t])`` for every t -> ``(B,3,H,W)``."""
    copies = [s0] + [apply_ev_torch(s0, evs[:, t].reshape(-1, 1, 1, 1)) for t in range(evs.shape[1])]
    return mertens_fuse_torch(torch.stack(copies, dim=1), **kw)
