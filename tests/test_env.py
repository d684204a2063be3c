"""The differentiable exposure environment agrees with the numpy renderer and has correct gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepexposure.image.color import apply_ev
from deepexposure.image.fusion import mertens_fuse
from deepexposure.image.segmentation import masks_from_labels
from deepexposure.learning.env import (
    apply_ev_torch,
    fuse_evs_torch,
    masks_tensor,
    mertens_fuse_torch,
    run_episode,
    state,
    step,
)
from deepexposure.learning.models import Actor


def _img(seed: int, shape=(2, 16, 16, 3)) -> np.ndarray:
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


@pytest.mark.parametrize("ev", [-2.5, -1.0, 0.0, 0.7, 2.0])
def test_apply_ev_torch_matches_numpy(ev):
    x = _img(0)
    x[0, 0, 0] = 0.0  # exact black and white and values around the sRGB threshold
    x[0, 0, 1] = 1.0
    x[0, 0, 2] = 0.04
    ref = apply_ev(x, ev)
    got = apply_ev_torch(torch.from_numpy(x).permute(0, 3, 1, 2), torch.full((2, 1, 1, 1), ev))
    np.testing.assert_allclose(got.permute(0, 2, 3, 1).numpy(), ref, atol=2e-6)


def test_apply_ev_torch_ev_map_matches_numpy():
    x = _img(1)
    evmap = np.random.default_rng(2).uniform(-2, 2, (2, 16, 16, 1)).astype(np.float32)
    ref = apply_ev(x, evmap)
    got = apply_ev_torch(torch.from_numpy(x).permute(0, 3, 1, 2), torch.from_numpy(evmap).permute(0, 3, 1, 2))
    np.testing.assert_allclose(got.permute(0, 2, 3, 1).numpy(), ref, atol=2e-6)


def test_transition_gradient_matches_finite_difference():
    rng = np.random.default_rng(3)
    s0 = torch.from_numpy(rng.uniform(0.05, 0.6, (2, 3, 8, 8))).double()  # no clipping at +-0.5 EV
    cur = torch.from_numpy(rng.uniform(0, 1, (2, 3, 8, 8))).double()
    labels = torch.from_numpy(rng.integers(0, 3, (2, 8, 8)))
    m = masks_tensor(labels, 3)[:, 1:2].double()
    ev = torch.tensor([0.3, -0.4], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda e: step(s0, cur, m, e), (ev,), eps=1e-6, atol=1e-7)


def test_episode_equals_local_render_with_hard_masks():
    """After T steps the image is sum_t M_t * apply_ev(S0, e_t): each segment exposed once from the original."""
    x = _img(4, (1, 64, 64, 3))
    labels = np.zeros((64, 64), np.int32)
    labels[:, 20:] = 1
    labels[40:, :] = 2
    torch.manual_seed(0)
    actor = Actor(width=8, hidden=16)
    torch.nn.init.normal_(actor.head[-1].weight, std=0.5)  # non-zero actions
    s0 = torch.from_numpy(x).permute(0, 3, 1, 2)
    masks = masks_tensor(torch.from_numpy(labels)[None], 4)
    evs, final = run_episode(actor, s0, masks)
    assert evs.shape == (1, 4) and evs.abs().max() > 0.01
    hard = masks_from_labels(labels, 3)
    ref = sum(hard[t][..., None] * apply_ev(x[0], float(evs[0, t])) for t in range(3))
    np.testing.assert_allclose(final[0].permute(1, 2, 0).numpy(), ref, atol=2e-6)


def test_state_layout():
    s0 = torch.rand(2, 3, 8, 8)
    m = torch.zeros(2, 1, 8, 8)
    cur = torch.rand(2, 3, 8, 8)
    s = state(s0, m, cur, 2, 4)
    assert s.shape == (2, 8, 8, 8)
    assert torch.equal(s[:, :3], s0) and torch.equal(s[:, 4:7], cur) and torch.all(s[:, 7] == 0.5)


def test_masks_tensor_pads_with_empty_masks():
    labels = torch.tensor([[[0, 1], [1, 1]]])
    m = masks_tensor(labels, 4)
    assert m.shape == (1, 4, 2, 2)
    assert torch.equal(m.sum(1), torch.ones(1, 2, 2)) and m[:, 2:].sum() == 0


@pytest.mark.parametrize("shape", [(64, 64), (37, 23), (5, 9)])
def test_mertens_fuse_torch_matches_the_numpy_fusion(shape):
    rng = np.random.default_rng(3)
    base = rng.random((shape[0] // 4 + 2, shape[1] // 4 + 2, 3)).astype(np.float32)
    img = np.clip(np.kron(base, np.ones((4, 4, 1), np.float32))[: shape[0], : shape[1]]
                  + 0.05 * rng.standard_normal((*shape, 3)).astype(np.float32), 0, 1)
    evs = [-1.5, 0.5, 2.0]
    ref = mertens_fuse([img] + [apply_ev(img, e) for e in evs], grey_zero=True)
    x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None]
    got = fuse_evs_torch(x, torch.tensor([evs]))[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(got, ref, atol=2e-5)
    stack = torch.stack([x[0]] + [apply_ev_torch(x, torch.tensor(e).view(1, 1, 1, 1))[0] for e in evs])[None]
    assert torch.equal(mertens_fuse_torch(stack), fuse_evs_torch(x, torch.tensor([evs])))


def test_fused_image_gradient_matches_finite_difference():
    torch.manual_seed(6)
    x = torch.rand(1, 3, 16, 16, dtype=torch.float64) * 0.6 + 0.2
    target = torch.rand(1, 3, 16, 16, dtype=torch.float64)
    evs = torch.tensor([[0.3, -0.4]], dtype=torch.float64, requires_grad=True)

    def loss(e: torch.Tensor) -> torch.Tensor:
        return ((fuse_evs_torch(x, e) - target) ** 2).mean()

    (g,) = torch.autograd.grad(loss(evs), evs)
    h = 1e-5
    for j in range(2):
        d = torch.zeros_like(evs)
        d[0, j] = h
        fd = (loss(evs.detach() + d) - loss(evs.detach() - d)) / (2 * h)
        assert float(g[0, j]) == pytest.approx(float(fd), rel=1e-4, abs=1e-9)
    assert float(g.abs().sum()) > 0
