"""TensorFlow's CPU kernels, chosen by the toolkit rather than left to the user's environment.

Every entry point imports this module before TensorFlow, because TensorFlow reads the setting
once, when it loads:

    import cpu_kernels  # noqa: F401  # isort: skip  (first: TensorFlow reads its kernel choice on load)

oneDNN: TensorFlow's x86 builds contain oneDNN kernels but turn them on by default only on CPUs
with AVX-512-class features; elsewhere (AVX2 CPUs such as AMD Zen 2/3 or older Intel) the
matrix products run on Eigen's kernels. Measured on a 2-core AMD EPYC (Zen 3, AVX2): a 2048²
fp32 matmul at 88.6 GFLOP/s with Eigen and 126.5 with oneDNN, and the fine-tuning and
pretraining steps correspondingly faster (benchmarks/README.md, "CPU kernels"). So oneDNN is on
everywhere, which also makes an AVX2 machine run the same kernels as an AVX-512 one. The test
suite runs with it: every numerical tolerance holds. An explicit TF_ENABLE_ONEDNN_OPTS=0 in
the environment still wins.
"""

import os

ONEDNN_VARIABLE = "TF_ENABLE_ONEDNN_OPTS"

os.environ.setdefault(ONEDNN_VARIABLE, "1")


def onednn_enabled():
    """Whether the loaded TensorFlow runs oneDNN kernels (imports TensorFlow)."""
    from tensorflow.python.util import _pywrap_util_port

    return bool(_pywrap_util_port.IsMklEnabled())
