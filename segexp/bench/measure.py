"""What the benchmark measures besides throughput: memory, model FLOPs, machine peaks."""

from __future__ import annotations

import math
import os
import platform
import time
from pathlib import Path
from typing import Any


def _status_mib(field: str) -> float | None:
    """A ``kB`` field of ``/proc/self/status`` in MiB (None where there is no such file)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def peak_rss_mb() -> float:
    """Peak resident set size of this process since the last :func:`reset_peak_rss` (MiB)."""
    peak = _status_mib("VmHWM")
    if peak is not None:
        return peak
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def rss_mb() -> float:
    """Current resident set size (MiB)."""
    rss = _status_mib("VmRSS")
    return float("nan") if rss is None else rss


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter (Linux ``clear_refs``); False where not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def model_flops(model: Any) -> int:
    """Forward FLOPs per image (multiply + add = 2) of Conv2D, Conv2DTranspose, Dense layers.

    Exact for those layers (bias, activations, pooling, normalization are not counted).
    """
    import keras

    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += model_flops(layer)
            continue
        name = type(layer).__name__
        if name not in ("Conv2D", "Conv2DTranspose", "Dense"):
            continue
        kernel = tuple(int(d) for d in layer.kernel.shape)
        in_shape = tuple(layer.input.shape[1:])
        out_shape = tuple(layer.output.shape[1:])
        if name == "Conv2D":  # kernel [kh, kw, cin / groups, cout]
            total += 2 * math.prod(out_shape) * math.prod(kernel[:3])
        elif name == "Conv2DTranspose":  # kernel [kh, kw, cout, cin]
            total += 2 * math.prod(in_shape) * math.prod(kernel[:3])
        else:  # Dense over the last axis, applied at every other position
            total += 2 * math.prod(out_shape[:-1] or (1,)) * kernel[0] * kernel[1]
    return int(total)


def measure_peaks(
    matmul_size: int, conv_shape: tuple[int, int, int, int], repeats: int
) -> dict[str, float]:
    """Best-of-``repeats`` float32 matmul and 3x3 conv2d throughput (FLOP/s) on this machine."""
    import tensorflow as tf

    n = int(matmul_size)
    b, h, w, c = conv_shape
    gen = tf.random.Generator.from_seed(0)
    a = gen.normal((n, n))
    x = gen.normal((b, h, w, c))
    k = gen.normal((3, 3, c, c))

    @tf.function
    def mm(u: tf.Tensor) -> tf.Tensor:
        return tf.reduce_sum(tf.matmul(u, u))

    @tf.function
    def conv(u: tf.Tensor) -> tf.Tensor:
        return tf.reduce_sum(tf.nn.conv2d(u, k, 1, "SAME"))

    def best(fn: Any, arg: tf.Tensor) -> float:
        fn(arg).numpy()
        times = []
        for _ in range(max(1, repeats)):
            t0 = time.perf_counter()
            fn(arg).numpy()
            times.append(time.perf_counter() - t0)
        return min(times)

    mm_flops = 2.0 * n**3
    conv_flops = 2.0 * b * h * w * c * c * 9
    return {
        "matmul_flops_per_sec": mm_flops / best(mm, a),
        "conv_flops_per_sec": conv_flops / best(conv, x),
    }


def machine_info() -> dict[str, str]:
    """CPU model, cores, load and library versions for the table's header."""
    import keras
    import tensorflow as tf

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 0
    mem = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024**2:.1f} GiB RAM"
    except OSError:
        pass
    gpus = tf.config.list_physical_devices("GPU")
    return {
        "cpu": cpu,
        "cores": str(cores),
        "memory": mem,
        "gpus": ", ".join(g.name for g in gpus) or "none",
        "load": " ".join(f"{v:.2f}" for v in os.getloadavg()),
        "versions": f"Python {platform.python_version()}, TensorFlow {tf.__version__}, "
        f"Keras {keras.__version__}",
    }
