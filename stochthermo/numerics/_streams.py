"""Named random streams of one seed: independent generators for every purpose of a run, derived from its seed.

The particles of a run's ensembles are drawn from the seed itself. Everything else random in a run (a reverse
SDE's noise, a bootstrap, a held-out sample, Hutchinson probes, a Monte Carlo check) draws from a stream of its
own, named by what it is for — an observer's streams are prefixed with its name (``response.bootstrap``), so no
two observers share one —: the stream ``name`` (with optional integer indices, e.g. a replica) of seed s is
seeded by ``numpy.random.SeedSequence(s, spawn_key=(crc32(name), *indices))``. Streams of different names,
indices or seeds are statistically independent, whatever the seeds a scenario lists — unlike seeds offset by
constants, where stream A of seed s + k is stream B of seed s when the offsets differ by k.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class RandomStreams:
    """The named streams of ``seed`` (module docstring)."""

    seed: int

    def seed_of(self, name: str, *indices: int) -> int:
        """The 63-bit seed of stream ``name`` (and ``indices``)."""
        sequence = np.random.SeedSequence(self.seed, spawn_key=(zlib.crc32(name.encode()), *indices))
        return int(sequence.generate_state(1, np.uint64)[0] >> np.uint64(1))

    def generator(self, name: str, *indices: int, device: torch.device | str = "cpu") -> torch.Generator:
        """A torch generator on ``device`` seeded by stream ``name`` (and ``indices``)."""
        return torch.Generator(device=device).manual_seed(self.seed_of(name, *indices))
