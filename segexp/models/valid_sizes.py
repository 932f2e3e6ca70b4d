"""Input sizes a valid-padding U-Net accepts: its layers' size arithmetic, without building."""

from __future__ import annotations

from typing import TYPE_CHECKING

from segexp.errors import ConfigError

if TYPE_CHECKING:
    from segexp.models.unet import UNetBuilder


def check_valid_size(b: UNetBuilder, size: tuple[int, int], name: str) -> None:
    """Refuse an input size at which a valid-padding U-Net would shift masks against images."""
    if b.padding != "valid" and "valid" not in b.padding_overrides.values():
        return
    for axis, n in enumerate(size):
        problem = size_problem(b, int(n), axis)
        if problem is None:
            continue
        below, above = nearest_valid(b, int(n), axis)
        sizes = " or ".join(str(v) for v in (below, above) if v is not None) or "none found"
        which = "height" if axis == 0 else "width"
        raise ConfigError(
            f"model {name}: input {which} {n} does not fit valid padding ({problem}), so "
            f"skip connections and the mask crop would misalign; nearest valid {which}s: "
            f"{sizes} (set model.input_shape or dataset.image_size)"
        )


def _conv_size(
    b: UNetBuilder,
    n: int,
    name: str,
    axis: int,
    kernel: tuple[int, int] | None = None,
    transpose: bool = False,
    strides: int = 1,
) -> int:
    k = (kernel or b.kernel_size)[axis]
    valid = b.padding_overrides.get(name, b.padding) == "valid"
    if transpose:  # Keras: n * s + max(k - s, 0) for valid, n * s for same
        return n * strides + (max(k - strides, 0) if valid else 0)
    return n - (k - 1) if valid else n


def _up_size(b: UNetBuilder, n: int, prefix: str, axis: int) -> int:
    name, k, s = f"{prefix}_up", b.up_kernel_size, b.pool_size
    if b.upsampling == "transpose":
        return _conv_size(b, n, name, axis, k, transpose=True, strides=s)
    if b.upsampling == "resize":
        return _conv_size(b, n * s, name, axis, k)
    return _conv_size(b, n, name, axis, k, transpose=True) * s


def size_problem(b: UNetBuilder, n: int, axis: int = 0) -> str | None:
    """Why input size ``n`` along ``axis`` misaligns the U-Net, or None when it fits."""
    size, skips = n, []
    for level in range(b.depth):
        for i in range(1, b.encoder_convs[level] + 1):
            n = _conv_size(b, n, f"enc{level}_conv{i}", axis)
        if n < b.pool_size:
            return f"enc{level} shrinks to {n} before pooling"
        if n % b.pool_size:
            return f"enc{level}_pool floors a feature map of {n}"
        skips.append(n)
        n //= b.pool_size
    for i in range(1, b.bottleneck_convs + 1):
        n = _conv_size(b, n, f"bottleneck_conv{i}", axis)
    if n < 1:
        return f"the bottleneck shrinks to {n}"
    for level in reversed(range(b.depth)):
        prefix = f"dec{level}"
        n = _up_size(b, n, prefix, axis)
        m = min(n, skips[level])
        if m < 1 or (skips[level] - m) % 2 or (n - m) % 2:
            return f"{prefix} crops {skips[level]} and {n} to {m} unevenly"
        n = m
        for i in range(1, b.decoder_convs[level] + 1):
            n = _conv_size(b, n, f"{prefix}_conv{i}", axis, transpose=b.decoder_transpose)
        if n < 1:
            return f"{prefix} shrinks to {n}"
    if (size - n) % 2:
        return f"the output ({n}) cannot be centred in the input"
    return None


def nearest_valid(
    b: UNetBuilder, n: int, axis: int = 0, span: int = 1024
) -> tuple[int | None, ...]:
    """The closest valid sizes below and above ``n`` (None when none within ``span``)."""
    below = next(
        (m for m in range(n - 1, max(0, n - span), -1) if size_problem(b, m, axis) is None),
        None,
    )
    above = next((m for m in range(n + 1, n + span) if size_problem(b, m, axis) is None), None)
    return below, above
