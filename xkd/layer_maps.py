"""Which teacher layer a student layer is matched with: BERT-k initialisation, PKD, Aguilar et al., masks."""

from __future__ import annotations

from xkd.errors import XKDError

PKD_MAPPINGS = ("skip", "last")


def uniform_map(n: int, m: int) -> list[int]:
    """Student layer j (0-based) <-> teacher layer round((j+1)·n/m) - 1: every n/m-th, ending at the top."""
    return [round((j + 1) * n / m) - 1 for j in range(m)]


def pkd_layers(n: int, m: int, mapping: str = "skip") -> list[int]:
    """The teacher layers (0-based) PKD matches with the student's first m-1 layers.

    `skip` takes every n/m-th layer (12->6: 2, 4, 6, 8, 10 in 1-based terms), `last` the m-1 layers just below
    the top one (12->6: 7..11). The top layers are left to the KD term on the logits.
    """
    if not 1 <= m <= n:
        raise XKDError(f"PKD needs a student with at most as many layers as the teacher ({m} > {n})")
    if mapping == "skip":
        return uniform_map(n, m)[:-1]
    if mapping == "last":
        return list(range(n - m, n - 1))
    raise XKDError(f"unknown PKD mapping '{mapping}'; choose one of: {', '.join(PKD_MAPPINGS)}")
