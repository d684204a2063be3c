"""Networks for 64x64 previews: the actor (policy), the value net (DE I) and the WGAN-GP critic.

All three share one small trunk: four 4x4 stride-2 convolutions (64->32->16->8->4 px) with ``width``,
2*width, 4*width, 4*width channels (default width 32: 32/64/128/128) and LeakyReLU(0.2), then an MLP head
(2048 -> 128 -> 1). There is NO batch normalisation anywhere: WGAN-GP needs a per-sample critic, and the
gradient gathering sums per-episode gradients, which must not depend on which episodes share a batch.
Default sizes: actor ~0.70 M parameters, value net the same, critic ~0.70 M.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from deepexposure.inference.episode import EXPOSURE_FEATURES, LOG_BINS
from deepexposure.inference.episode import PERCENTILES as _PERCENTILES
from deepexposure.learning.env import STATE_CHANNELS, srgb_to_linear_torch

__all__ = ["Actor", "ValueNet", "Critic", "critic_features", "gradient_penalty", "CRITIC_CHANNELS", "global_features",
           "soft_histogram", "exposure_features", "exposure_features_batched", "EXPOSURE_FEATURES", "GlobalExposureNet"]

CRITIC_CHANNELS = 6
_LUMA = (0.2126, 0.7152, 0.0722)


def _trunk(in_ch: int, width: int) -> nn.Sequential:
    chans = [in_ch, width, 2 * width, 4 * width, 4 * width]
    layers: list[nn.Module] = []
    for a, b in zip(chans[:-1], chans[1:], strict=True):
        layers += [nn.Conv2d(a, b, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
    layers.append(nn.Flatten())
    return nn.Sequential(*layers)


def _head(width: int, size: int, hidden: int, extra: int = 0) -> nn.Sequential:
    """MLP on the flattened trunk output (plus ``extra`` features concatenated to it) -> one number."""
    feat = 4 * width * (size // 16) ** 2 + extra
    return nn.Sequential(nn.Linear(feat, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, 1))


def _luma(srgb: torch.Tensor) -> torch.Tensor:
    w = torch.tensor(_LUMA, dtype=srgb.dtype, device=srgb.device).view(1, 3, 1, 1)
    return (srgb * w).sum(1, keepdim=True)


HIST_BINS = 16


def soft_histogram(y: torch.Tensor, mask: torch.Tensor, bins: int = HIST_BINS) -> torch.Tensor:
    """Histogram ``(B, bins)`` of ``y`` ``(B,1,H,W)`` in [0,1] over the pixels of ``mask`` ``(B,1,H,W)``, summing to 1
    (0 for an empty mask). Linear (triangular) binning on ``bins`` evenly spaced centres 0..1: each value splits
    between its two nearest centres, so the histogram is piecewise linear in ``y`` (differentiable) and its mean
    bin position equals the masked mean of ``y`` exactly."""
    c = torch.linspace(0.0, 1.0, bins, device=y.device, dtype=y.dtype).view(1, -1, 1, 1)
    w = (1.0 - (y.clamp(0.0, 1.0) - c).abs() * (bins - 1)).clamp(min=0.0)
    return (w * mask).sum((2, 3)) / mask.sum((2, 3)).clamp(min=1.0)


def global_features(s: torch.Tensor, bins: int = HIST_BINS) -> torch.Tensor:
    """Global statistics ``(B, 3*bins+2)`` of a state ``(B,8,H,W)``: luma histograms of the original preview, of the
    original inside the current segment and of the current image, the segment's area fraction and t/T."""
    s0, m, cur = s[:, :3], s[:, 3:4], s[:, 4:7]
    y0 = _luma(s0)
    one = torch.ones_like(m)
    return torch.cat([soft_histogram(y0, one, bins), soft_histogram(y0, m, bins),
                      soft_histogram(_luma(cur), one, bins), m.mean((2, 3)), s[:, 7:8, 0, 0]], dim=1)




def exposure_features(srgb: torch.Tensor) -> torch.Tensor:
    """Global exposure statistics ``(B, 51)`` of previews ``(B,3,H,W)`` sRGB [0,1] (no gradient needed).

    From the log2 of the linear Rec.709 luminance ``L = log2(Y + 2**-12)`` (stops below white, in [-12, 0]):
    a 24-bin linearly binned histogram over [-12, 0]; its 1/5/10/25/50/75/90/95/99th percentiles / 4; the
    fraction of pixels whose largest sRGB channel is >= 250/255 and <= 5/255; the mean of ``L`` / 4 in a 4x4
    grid. The statistics of the learned global-EV baseline (``learned-global``) and of the actor's global branch.
    Numpy twin (channels last): :func:`deepexposure.inference.episode.exposure_features`.
    """
    lin = srgb_to_linear_torch(srgb)
    y = _luma(lin)
    ly = torch.log2(y + 2.0**-12)
    one = torch.ones_like(y)
    hist = soft_histogram((ly + 12.0) / 12.0, one, LOG_BINS)
    flat = ly.flatten(1).sort(dim=1).values
    n = flat.shape[1]
    idx = torch.tensor([min(n - 1, round(q * (n - 1))) for q in _PERCENTILES], device=srgb.device)
    pct = flat.index_select(1, idx) / 4.0
    mx = srgb.amax(1, keepdim=True)
    hi = (mx >= 250.0 / 255.0).to(srgb.dtype).mean((1, 2, 3))[:, None]
    lo = (mx <= 5.0 / 255.0).to(srgb.dtype).mean((1, 2, 3))[:, None]
    grid = F.adaptive_avg_pool2d(ly, 4).flatten(1) / 4.0
    return torch.cat([hist, pct, hi, lo, grid], dim=1)


def exposure_features_batched(srgb: torch.Tensor, chunk: int = 512) -> torch.Tensor:
    """:func:`exposure_features` of many previews ``(N,3,H,W)``, ``chunk`` at a time (bounded memory) -> ``(N, 51)``."""
    with torch.no_grad():
        return torch.cat([exposure_features(srgb[i : i + chunk]) for i in range(0, len(srgb), chunk)])


class GlobalExposureNet(nn.Module):
    """MLP ``exposure_features (B,51) -> global EV (B,)`` (stops, unbounded): the actor's global branch."""

    def __init__(self, hidden: int = 128) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(EXPOSURE_FEATURES, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, hidden),
                                 nn.LeakyReLU(0.2), nn.Linear(hidden, 1))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.mlp(feats).squeeze(1)


class Actor(nn.Module):
    """Deterministic policy: state ``(B,8,64,64)`` -> EV ``(B,)`` in stops, ``max_ev * tanh(.)`` in [-max_ev, max_ev].

    ``global_features=True`` (our addition, off in the paper-faithful default of old policy files) also feeds
    :func:`global_features` (luma histograms, segment area, step) through a one-layer MLP into the head: exposure
    is a global, histogram-like property that a small strided CNN reads only approximately (docs/learning.md).

    ``global_branch=True`` (our addition): the EV is ``max_ev * tanh((g + r) / max_ev)`` where ``g`` is a global
    EV read by :class:`GlobalExposureNet` from :func:`exposure_features` of the original preview (the same for
    every step) and ``r = residual_ev * tanh(head(.))`` is the per-segment residual of the CNN.
    """

    def __init__(self, *, width: int = 32, hidden: int = 128, size: int = 64, max_ev: float = 3.0,
                 in_channels: int = STATE_CHANNELS, global_features: bool = False, global_branch: bool = False,
                 residual_ev: float = 1.5) -> None:
        super().__init__()
        self.max_ev = float(max_ev)
        self.global_features = bool(global_features)
        self.global_branch = bool(global_branch)
        self.residual_ev = float(residual_ev)
        if self.global_branch:
            self.gnet = GlobalExposureNet(hidden)
        self.body = _trunk(in_channels, width)
        if self.global_features:
            self.gmlp = nn.Sequential(nn.Linear(3 * HIST_BINS + 2, hidden), nn.LeakyReLU(0.2))
        self.head = _head(width, size, hidden, extra=hidden if self.global_features else 0)
        nn.init.zeros_(self.head[-1].weight)  # start at EV 0 everywhere (identity policy)
        nn.init.zeros_(self.head[-1].bias)

    def forward(self, s: torch.Tensor, feats: torch.Tensor | None = None) -> torch.Tensor:
        """EVs ``(B,)`` for states ``s`` ``(B,8,H,W)``. ``feats``: :func:`exposure_features` of ``s[:, :3]``
        ``(B,51)`` when already computed (ONNX inference computes them in numpy, once per episode); with
        ``global_branch`` and None they are computed here."""
        f = self.body(s)
        if self.global_features:
            f = torch.cat([f, self.gmlp(global_features(s))], dim=1)
        if self.global_branch:
            r = self.residual_ev * torch.tanh(self.head(f).squeeze(1))
            return self.max_ev * torch.tanh((self.global_ev(s, feats) + r) / self.max_ev)
        return self.max_ev * torch.tanh(self.head(f).squeeze(1))

    def episode_features(self, s0: torch.Tensor) -> torch.Tensor | None:
        """:func:`exposure_features` of the original previews ``s0`` ``(B,3,H,W)`` for every step of an episode
        (the global branch reads only the original, so they are computed once per episode); None without
        ``global_branch``."""
        if not self.global_branch:
            return None
        with torch.no_grad():
            return exposure_features(s0)

    def global_ev(self, s: torch.Tensor, feats: torch.Tensor | None = None) -> torch.Tensor:
        """The global branch's EV ``(B,)`` for states ``(B,8,H,W)`` (only with ``global_branch``); ``feats``:
        their :func:`exposure_features` if already computed."""
        if feats is None:
            with torch.no_grad():
                feats = exposure_features(s[:, :3])
        return self.gnet(feats)


class ValueNet(nn.Module):
    """State value ``V(s)`` (DE I): state ``(B,8,64,64)`` -> ``(B,)`` unbounded, in critic-score units."""

    def __init__(self, *, width: int = 32, hidden: int = 128, size: int = 64,
                 in_channels: int = STATE_CHANNELS) -> None:
        super().__init__()
        self.body = _trunk(in_channels, width)
        self.head = _head(width, size, hidden)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(s)).squeeze(1)


def critic_features(srgb: torch.Tensor) -> torch.Tensor:
    """Critic input ``(B,6,H,W)`` from sRGB ``(B,3,H,W)`` in [0,1], all differentiable.

    Channels: R, G, B; contrast = |3x3 Laplacian| of the gamma-encoded luma (Rec.709 weights); saturation =
    standard deviation over R,G,B; illumination = luma blurred by a 7x7 box (replicate padding).
    """
    y = _luma(srgb)
    lap = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]], dtype=srgb.dtype, device=srgb.device)
    contrast = F.conv2d(F.pad(y, (1, 1, 1, 1), mode="replicate"), lap.view(1, 1, 3, 3)).abs()
    mean = srgb.mean(1, keepdim=True)
    sat = ((srgb - mean) ** 2).mean(1, keepdim=True).add(1e-8).sqrt()
    illum = F.avg_pool2d(F.pad(y, (3, 3, 3, 3), mode="replicate"), 7, stride=1)
    return torch.cat([srgb, contrast, sat, illum], dim=1)


class Critic(nn.Module):
    """WGAN-GP critic: sRGB ``(B,3,64,64)`` -> score ``(B,)``, HIGH = looks like an expert photo. No normalisation."""

    def __init__(self, *, width: int = 32, hidden: int = 128, size: int = 64) -> None:
        super().__init__()
        self.body = _trunk(CRITIC_CHANNELS, width)
        self.head = _head(width, size, hidden)

    def forward(self, srgb: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(critic_features(srgb))).squeeze(1)


def gradient_penalty(critic, real: torch.Tensor, fake: torch.Tensor, *,
                     generator: torch.Generator | None = None, alpha: torch.Tensor | None = None,
                     reduction: str = "mean") -> torch.Tensor:
    """WGAN-GP term ``mean((||grad_x critic(x_hat)||_2 - 1)^2)`` at random interpolates of ``real`` and ``fake``.

    ``critic``: any callable (B,...) -> (B,). Interpolation weights uniform in [0,1), one per sample, drawn from
    ``generator`` unless given as ``alpha`` (B,). ``reduction``: "mean", "sum" or "none" (the (B,) terms).
    Multiply by lambda (10) outside.
    """
    if alpha is None:
        alpha = torch.rand(real.shape[0], generator=generator, device=real.device, dtype=real.dtype)
    alpha = alpha.reshape(real.shape[0], *([1] * (real.dim() - 1)))
    x = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
    out = critic(x)
    (grad,) = torch.autograd.grad(out.sum(), x, create_graph=True)
    terms = (grad.flatten(1).norm(dim=1) - 1) ** 2
    if reduction == "none":
        return terms
    return terms.sum() if reduction == "sum" else terms.mean()
