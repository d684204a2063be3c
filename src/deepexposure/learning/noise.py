"""Ornstein-Uhlenbeck exploration noise on the actions (EV stops).

Discrete OU process (unit time step): ``x_{k+1} = x_k + theta * (mu - x_k) + sigma * N(0, 1)``.
Paper values: theta = 0.015 (their "zeta"), mu = 0, sigma = 0.03. The state restarts at ``x0`` (default mu) at the
start of every episode and every episode draws from its own generator (seeded from (seed, step, episode)), so the
noise of an episode depends on nothing else: not on the worker that ran it, nor on a resume.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["OUNoise"]


@dataclass
class OUNoise:
    """One OU process. ``theta``: mean reversion per step; ``sigma``: std of each increment (EV); ``mu``: mean (EV)."""

    theta: float = 0.015
    sigma: float = 0.03
    mu: float = 0.0
    x: float = 0.0

    def reset(self, x0: float | None = None) -> None:
        """Restart the process at ``x0`` (default: ``mu``)."""
        self.x = self.mu if x0 is None else float(x0)

    def sample(self, generator: torch.Generator) -> float:
        """Advance one step and return the new value."""
        eps = float(torch.randn((), generator=generator, dtype=torch.float64))
        self.x = self.x + self.theta * (self.mu - self.x) + self.sigma * eps
        return self.x

    def path(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """The next ``n`` values as a float32 tensor ``(n,)``."""
        return torch.tensor([self.sample(generator) for _ in range(n)], dtype=torch.float32)

    def state_dict(self) -> dict:
        return {"theta": self.theta, "sigma": self.sigma, "mu": self.mu, "x": self.x}

    def load_state_dict(self, d: dict) -> None:
        self.theta, self.sigma, self.mu, self.x = (float(d[k]) for k in ("theta", "sigma", "mu", "x"))
