"""fastseq: feed uint8 images to a Keras training loop at memory speed.

``import fastseq`` is cheap: it imports neither Keras nor TensorFlow and
compiles nothing. The Keras-facing names (``ArraySequence``, ``profile``,
``StarvationMonitor``) are imported on first use.
"""

from fastseq.augment import (
    CenterCrop,
    CutMix,
    Cutout,
    MixUp,
    Normalize,
    RandomCrop,
    RandomErasing,
    RandomFlip,
    Rescale,
)

__version__ = "0.1.0"

_LAZY = {
    "ArraySequence": ("fastseq.sequence", "ArraySequence"),
    "profile": ("fastseq.profiling", "profile"),
    "ProfileReport": ("fastseq.profiling", "ProfileReport"),
    "StarvationMonitor": ("fastseq.profiling", "StarvationMonitor"),
}

__all__ = [
    "ArraySequence",
    "CenterCrop",
    "CutMix",
    "Cutout",
    "MixUp",
    "Normalize",
    "ProfileReport",
    "RandomCrop",
    "RandomErasing",
    "RandomFlip",
    "Rescale",
    "StarvationMonitor",
    "profile",
]


def __getattr__(name):
    try:
        module_name, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'fastseq' has no attribute {name!r}") from None
    import importlib

    value = getattr(importlib.import_module(module_name), attr)
    globals()[name] = value
    return value
