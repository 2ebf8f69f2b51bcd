"""Which pmsim made a result: the release, and a digest of the code and data that ran.

The digest decides whether a stored run can be reused: a sweep resumed after the model
changed runs again rather than mixing numbers from two versions of the model, and a
Dask worker with other code installed is caught instead of trusted.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

__version__ = "0.1.0"  # the release (pyproject.toml's version); pmsim.__version__ too
PACKAGE = Path(__file__).resolve().parent
# Subpackages that only read finished results: a new figure or report wording reruns nothing.
READERS = ("plots", "report")


@functools.cache
def code_digest() -> str:
    """16 hex digits over every source and data file of the package (names and contents),
    except the result readers'."""
    h = hashlib.blake2b(digest_size=8)
    for path in sorted(
        p
        for p in PACKAGE.rglob("*")
        if p.suffix in (".py", ".yaml")
        and p.is_file()
        and p.relative_to(PACKAGE).parts[0] not in READERS
    ):
        h.update(path.relative_to(PACKAGE).as_posix().encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    return h.hexdigest()
