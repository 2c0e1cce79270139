"""fastseq: feed uint8 images to a Keras training loop at memory speed.

``import fastseq`` is cheap: it imports neither Keras nor TensorFlow and
compiles nothing. The Keras-facing names (``ArraySequence``,
``BackupAndRestore``, ``DeviceNormalize``, ``image_dataset_from_directory``,
``profile``, ``StarvationMonitor``) and ``fastseq.datasets`` are imported on first use.

The package has three parts: the product (``kernels/``, ``augment``,
``ragged``, ``sequence/``, ``callbacks``, ``layers``, ``photos/``,
``datasets/``), the measuring bench (``bench/``) and the starvation profiler
(``profiling/``); ``docs/design.md`` draws the tree. The lazy table below names
three of the profiler's objects: strings resolved on first use, so
``import fastseq`` loads neither the profiler nor Keras.
"""

from fastseq.augment import (
    AugMix,
    AutoContrast,
    CenterCrop,
    CutMix,
    Cutout,
    Equalization,
    Lambda,
    MixUp,
    Normalize,
    RandAugment,
    RandomAffine,
    RandomBrightness,
    RandomColorDegeneration,
    RandomColorJitter,
    RandomContrast,
    RandomCrop,
    RandomElasticTransform,
    RandomErasing,
    RandomFlip,
    RandomGaussianBlur,
    RandomGrayscale,
    RandomHue,
    RandomInvert,
    RandomPerspective,
    RandomPosterization,
    RandomResizedCrop,
    RandomRotation,
    RandomSaturation,
    RandomSharpness,
    RandomShear,
    RandomTranslation,
    RandomZoom,
    Rescale,
    Resize,
    Solarization,
    TrivialAugmentWide,
)

__version__ = "0.1.0"

# name -> (module, attribute); attribute None means the module itself.
_LAZY = {
    "ArraySequence": ("fastseq.sequence.array_sequence", "ArraySequence"),
    "BackupAndRestore": ("fastseq.callbacks", "BackupAndRestore"),
    "DeviceNormalize": ("fastseq.layers", "DeviceNormalize"),
    "profile": ("fastseq.profiling.measure", "profile"),
    "ProfileReport": ("fastseq.profiling.report", "ProfileReport"),
    "StarvationMonitor": ("fastseq.profiling.monitor", "StarvationMonitor"),
    "datasets": ("fastseq.datasets", None),
    "image_dataset_from_directory": ("fastseq.photos.folder_sequence", "image_dataset_from_directory"),
}

__all__ = [
    "RandAugment",
    "TrivialAugmentWide",
    "AugMix",
    "Lambda",
    "RandomAffine",
    "RandomElasticTransform",
    "RandomPerspective",
    "RandomRotation",
    "RandomShear",
    "RandomTranslation",
    "RandomZoom",
    "AutoContrast",
    "Equalization",
    "RandomBrightness",
    "RandomColorDegeneration",
    "RandomColorJitter",
    "RandomContrast",
    "RandomGaussianBlur",
    "RandomGrayscale",
    "RandomHue",
    "RandomInvert",
    "RandomPosterization",
    "RandomSaturation",
    "RandomSharpness",
    "Solarization",
    "ArraySequence",
    "BackupAndRestore",
    "CenterCrop",
    "CutMix",
    "Cutout",
    "DeviceNormalize",
    "MixUp",
    "Normalize",
    "ProfileReport",
    "RandomCrop",
    "RandomErasing",
    "RandomFlip",
    "RandomResizedCrop",
    "Rescale",
    "Resize",
    "StarvationMonitor",
    "datasets",
    "image_dataset_from_directory",
    "profile",
]


def __getattr__(name):
    try:
        module_name, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'fastseq' has no attribute {name!r}") from None
    import importlib

    module = importlib.import_module(module_name)
    value = module if attr is None else getattr(module, attr)
    globals()[name] = value
    return value
