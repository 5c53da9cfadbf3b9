"""Where an augmentation's randomness comes from.

Parameters are drawn from a small ``random.Random`` (a scalar draw costs ~0.1 µs, a torch
``Generator`` draw ~2 µs, and a pipeline draws a dozen per image). Its seed comes from what the
caller passes: an int (the same int gives the same output every time), a ``torch.Generator``
(one 63-bit draw, so successive calls differ but replay from the generator's seed), or nothing:
then one draw from torch's default generator. Inside a DataLoader worker torch seeds that
generator per worker (``base_seed + worker_id``), so workers differ and a run seeded with
``torch.manual_seed`` replays — no ``worker_init_fn`` needed.
"""

from __future__ import annotations

import math
import random
from typing import Any, Sequence, TypeVar

import numpy as np
import torch

__all__ = ["Rng", "make_rng", "worker_seed", "torch_generator"]

T = TypeVar("T")
_SEED_BOUND = 2**63 - 1


class Rng:
    """Scalar draws for parameter sampling. Array randomness (noise) is drawn at apply time from
    a torch generator seeded by a 64-bit number sampled here (``torch_generator``), so parameters
    stay small records and both backends draw the same numbers on the CPU."""

    __slots__ = ("_r",)

    def __init__(self, seed: int) -> None:
        self._r = random.Random(seed)

    def uniform(self, lo: float, hi: float) -> float:
        return lo if lo == hi else self._r.uniform(lo, hi)

    def log_uniform(self, lo: float, hi: float) -> float:
        return lo if lo == hi else math.exp(self._r.uniform(math.log(lo), math.log(hi)))

    def random(self) -> float:
        return self._r.random()

    def integer(self, lo: int, hi: int) -> int:
        """Uniform over ``lo..hi`` inclusive (either order)."""
        lo, hi = min(lo, hi), max(lo, hi)
        return lo if lo == hi else self._r.randint(lo, hi)

    def pick(self, options: Sequence[T], weights: Sequence[float] | None = None) -> T:
        if weights is None:
            return options[self._r.randrange(len(options))]
        return self._r.choices(options, weights=weights)[0]

    def sample(self, n_items: int, k: int) -> list[int]:
        return self._r.sample(range(n_items), k)

    def seed64(self) -> int:
        return self._r.getrandbits(64)


def make_rng(seed: Any) -> Rng:
    if seed is None:
        return Rng(int(torch.randint(_SEED_BOUND, (), dtype=torch.int64)))
    if isinstance(seed, torch.Generator):
        return Rng(int(torch.randint(_SEED_BOUND, (), generator=seed, dtype=torch.int64)))
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        return Rng(int(seed))
    raise ValueError(f"seed must be an int, a torch.Generator or None (draw from torch's default generator), "
                     f"got {type(seed).__name__} {seed!r}")


def worker_seed() -> int:
    """The seed torch gave this process (per DataLoader worker); for users who want to seed a
    ``torch.Generator`` of their own in ``worker_init_fn``."""
    return torch.initial_seed() % _SEED_BOUND


def torch_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """The generator array randomness (noise, random erasing) is drawn from, seeded by a plan's
    64-bit number. Both backends use it, so on the CPU they draw identical arrays; a CUDA
    generator (Philox) gives the same distribution but other numbers."""
    g = torch.Generator(device=device)
    g.manual_seed(int(seed) % (_SEED_BOUND + 1))
    return g
