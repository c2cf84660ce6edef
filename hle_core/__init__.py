"""HLE: Hierarchical Lovász Embeddings for proposal-free panoptic segmentation (Kerola et al., CVPR 2021).

Pure-PyTorch library, no ROS: network, losses, decoding, evaluation, tracking, runtime backends and the
``hle`` command (:mod:`hle_core.cli`). Importing this package is cheap on purpose (no torch, no OpenCV):
``hle --help`` and the ROS adapter's start-up depend on it.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
