"""segexp: config-driven semantic segmentation experiments with U-Nets, Hydra and MLflow."""

__version__ = "0.1.0"
