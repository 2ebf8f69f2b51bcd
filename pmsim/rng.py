"""Named random streams: one numpy Generator per name, all from one seed.

Each stream's seed is derived from the run seed and a stable hash of its name,
so adding, removing or reordering streams never changes another stream's numbers.
"""

from __future__ import annotations

import hashlib

import numpy as np


def _name_key(name: str) -> tuple[int, ...]:
    digest = hashlib.blake2b(name.encode(), digest_size=16).digest()
    return tuple(int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4))


class RandomStreams:
    """Generators by stable name, spawned from ``SeedSequence(seed)``."""

    def __init__(self, seed: int):
        self.seed = int(seed)
        self._streams: dict[str, np.random.Generator] = {}

    def get(self, name: str) -> np.random.Generator:
        gen = self._streams.get(name)
        if gen is None:
            seq = np.random.SeedSequence(self.seed, spawn_key=_name_key(name))
            gen = self._streams[name] = np.random.Generator(np.random.PCG64(seq))
        return gen
