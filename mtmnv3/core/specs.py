"""Typed block specifications of MobileNetV3 (Howard et al., 2019, Tables 1 and 2).

Each row of the paper's tables is a frozen :class:`BlockSpec`. The compact
string form ``"k3_e64_c24_s2_se_hs"`` is parsed by :func:`parse_block` and
raises on any token it does not know (instead of silently skipping it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

__all__ = [
    "BlockSpec",
    "ARCH_SPECS",
    "LARGE_SPECS",
    "SMALL_SPECS",
    "STEM_CHANNELS",
    "LAST_CONV_EXPANSION",
    "parse_block",
]

#: Output channels of the 3x3 stride-2 stem convolution (both tables).
STEM_CHANNELS = 16
#: The final 1x1 conv expands the last block's channels by this factor
#: (960 = 6 x 160 in Large, 576 = 6 x 96 in Small).
LAST_CONV_EXPANSION = 6


@dataclass(frozen=True)
class BlockSpec:
    """One bneck row of the paper's table.

    Attributes:
        kernel: depthwise kernel size.
        expanded: expansion (hidden) channels, before the width multiplier.
        out: output channels, before the width multiplier.
        use_se: squeeze-and-excitation in this block (the paper's SE column).
        use_hs: hard-swish (True) or ReLU (False), the paper's NL column.
        stride: depthwise stride, 1 or 2.
    """

    kernel: int
    expanded: int
    out: int
    use_se: bool
    use_hs: bool
    stride: int

    def __post_init__(self) -> None:
        if self.kernel not in (3, 5, 7):
            raise ValueError(f"kernel must be 3, 5 or 7, got {self.kernel}")
        if self.stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {self.stride}")
        if self.expanded <= 0 or self.out <= 0:
            raise ValueError(f"channels must be positive, got expanded={self.expanded}, out={self.out}")

    def to_string(self) -> str:
        """Compact form, e.g. ``'k5_e72_c40_s2_se_re'``."""
        parts = [f"k{self.kernel}", f"e{self.expanded}", f"c{self.out}", f"s{self.stride}"]
        if self.use_se:
            parts.append("se")
        parts.append("hs" if self.use_hs else "re")
        return "_".join(parts)

    def minimalistic(self) -> BlockSpec:
        """The 'minimalistic' row: no SE, no hard-swish, 3x3 kernels."""
        return replace(self, kernel=3, use_se=False, use_hs=False)


def parse_block(text: str) -> BlockSpec:
    """Parse the compact form written by :meth:`BlockSpec.to_string`.

    Raises:
        ValueError: on a missing field or an unknown token.
    """
    fields: dict[str, int] = {}
    use_se = False
    use_hs: bool | None = None
    for token in text.split("_"):
        if token == "se":
            use_se = True
        elif token in ("hs", "re"):
            use_hs = token == "hs"
        elif token[:1] in ("k", "e", "c", "s") and token[1:].isdigit():
            fields[token[0]] = int(token[1:])
        else:
            raise ValueError(f"unknown token {token!r} in block string {text!r}")
    missing = [k for k in "kecs" if k not in fields]
    if missing or use_hs is None:
        raise ValueError(f"block string {text!r} lacks {missing + ([] if use_hs is not None else ['hs|re'])}")
    return BlockSpec(fields["k"], fields["e"], fields["c"], use_se, use_hs, fields["s"])


def _table(rows: Sequence[str]) -> tuple[BlockSpec, ...]:
    return tuple(parse_block(r) for r in rows)


#: Table 1, MobileNetV3-Large (the bneck rows; stem and last conv are fixed).
LARGE_SPECS = _table(
    [
        "k3_e16_c16_s1_re",
        "k3_e64_c24_s2_re",
        "k3_e72_c24_s1_re",
        "k5_e72_c40_s2_se_re",
        "k5_e120_c40_s1_se_re",
        "k5_e120_c40_s1_se_re",
        "k3_e240_c80_s2_hs",
        "k3_e200_c80_s1_hs",
        "k3_e184_c80_s1_hs",
        "k3_e184_c80_s1_hs",
        "k3_e480_c112_s1_se_hs",
        "k3_e672_c112_s1_se_hs",
        "k5_e672_c160_s2_se_hs",
        "k5_e960_c160_s1_se_hs",
        "k5_e960_c160_s1_se_hs",
    ]
)

#: Table 2, MobileNetV3-Small.
SMALL_SPECS = _table(
    [
        "k3_e16_c16_s2_se_re",
        "k3_e72_c24_s2_re",
        "k3_e88_c24_s1_re",
        "k5_e96_c40_s2_se_hs",
        "k5_e240_c40_s1_se_hs",
        "k5_e240_c40_s1_se_hs",
        "k5_e120_c48_s1_se_hs",
        "k5_e144_c48_s1_se_hs",
        "k5_e288_c96_s2_se_hs",
        "k5_e576_c96_s1_se_hs",
        "k5_e576_c96_s1_se_hs",
    ]
)

ARCH_SPECS: dict[str, tuple[BlockSpec, ...]] = {"large": LARGE_SPECS, "small": SMALL_SPECS}
