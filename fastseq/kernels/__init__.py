"""Numba kernels over uint8 image batches. NumPy and Numba only: no Keras, no files, no epochs.

Each public function validates its arguments (dtype, shape, contiguity,
every index and bound), allocates ``out`` when not given, and calls a
private compiled kernel that writes into it. The kernels run without bounds
checks, which is safe only because of those wrappers.
"""

from fastseq.kernels.config import threading_layer
from fastseq.kernels.gather import gather
from fastseq.kernels.halfprec import to_half_bits
from fastseq.kernels.images import FusedPlan, crop_flip, fused, normalize
from fastseq.kernels.mix import CutoutParams, ErasingParams, FusedMix, MixDraw, MixParams, MixPass, cutout, mix
from fastseq.kernels.ragged import (
    RaggedResizedCropParams,
    RaggedResizePlan,
    centre_crop_windows,
    keras_boxes,
    keras_pad_windows,
)
from fastseq.kernels.random import RandomParams, random_params
from fastseq.kernels.resize import ResizedCropParams, ResizePlan, resized_crop, resized_crop_params

__all__ = [
    "CutoutParams",
    "ErasingParams",
    "FusedMix",
    "FusedPlan",
    "MixDraw",
    "MixParams",
    "MixPass",
    "RaggedResizePlan",
    "RaggedResizedCropParams",
    "RandomParams",
    "ResizePlan",
    "ResizedCropParams",
    "centre_crop_windows",
    "crop_flip",
    "cutout",
    "fused",
    "gather",
    "keras_boxes",
    "keras_pad_windows",
    "mix",
    "normalize",
    "random_params",
    "resized_crop",
    "resized_crop_params",
    "threading_layer",
    "to_half_bits",
]
