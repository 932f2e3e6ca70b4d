"""segexp: config-driven semantic segmentation experiments with U-Nets, Hydra and MLflow."""

import os

# TensorFlow's C++ start-up chatter (CPU feature and CUDA probes) hides the useful output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
