"""User-facing augmentation specs, one module per family (NumPy only).

* ``crops``: the window each sample is read from: ``RandomCrop``,
  ``CenterCrop``, ``RandomResizedCrop``, ``Resize``, and ``RandomFlip``;
* ``normalize``: ``Normalize`` and ``Rescale``, the output's units;
* ``erase_mix``: ``Cutout``, ``RandomErasing``, ``MixUp`` and ``CutMix``,
  passes over the made batch;
* ``geometry``: Keras' geometric layers (``RandomRotation`` ...) and
  ``RandomAffine``, each a 3x3 matrix per sample (or a displacement field);
* ``color``: Keras' color and filter layers (``RandomBrightness`` ...),
  run on each sample's values inside the pass;
* ``policies``: ``RandAugment``, ``TrivialAugmentWide`` and ``AugMix``, drawn per sample;
* ``user``: ``Lambda``, your own Numba function inside the pass;
* ``keras_layers``: Keras preprocessing layers read into these ops (imports Keras lazily);
* ``chain``: the one place that turns the ordered ``augment=[...]`` list
  into the per-sample program of the pass.

Every spec validates its arguments and draws nothing: the per-sample
parameters are a pure function of ``(seed, epoch, sample index, op)``
(``fastseq.kernels.random``), so threads, processes, batch sizes, shards
and resumed runs agree.
"""

from fastseq.augment.color import (
    AutoContrast,
    Equalization,
    RandomBrightness,
    RandomColorDegeneration,
    RandomColorJitter,
    RandomContrast,
    RandomGaussianBlur,
    RandomGrayscale,
    RandomHue,
    RandomInvert,
    RandomPosterization,
    RandomSaturation,
    RandomSharpness,
    Solarization,
)
from fastseq.augment.crops import (
    EVAL_CROP_FRACTION,
    FLIP_MODES,
    INTERPOLATIONS,
    PAD_MODES,
    CenterCrop,
    RandomCrop,
    RandomFlip,
    RandomResizedCrop,
    Resize,
)
from fastseq.augment.erase_mix import CutMix, Cutout, MixUp, RandomErasing
from fastseq.augment.geometry import (
    RandomAffine,
    RandomElasticTransform,
    RandomPerspective,
    RandomRotation,
    RandomShear,
    RandomTranslation,
    RandomZoom,
)
from fastseq.augment.normalize import Normalize, Rescale
from fastseq.augment.policies import AugMix, RandAugment, TrivialAugmentWide
from fastseq.augment.user import Lambda

#: Keras' 14 color and filter layers and its 6 geometric ones (plus RandomAffine), as fastseq ops.
COLOR_OPS = (
    AutoContrast, Equalization, RandomBrightness, RandomColorDegeneration, RandomColorJitter, RandomContrast, RandomGaussianBlur,
    RandomGrayscale, RandomHue, RandomInvert, RandomPosterization, RandomSaturation, RandomSharpness, Solarization,
)
GEOMETRY_OPS = (
    RandomAffine, RandomElasticTransform, RandomPerspective, RandomRotation, RandomShear, RandomTranslation, RandomZoom,
)

__all__ = [
    "EVAL_CROP_FRACTION", "FLIP_MODES", "INTERPOLATIONS", "PAD_MODES",
    "CenterCrop", "CutMix", "Cutout", "MixUp", "Normalize", "RandomCrop", "RandomErasing", "RandomFlip",
    "RandomResizedCrop", "Rescale", "Resize", "COLOR_OPS", "GEOMETRY_OPS",
    "AutoContrast",
    "Equalization",
    "RandomAffine",
    "RandomBrightness",
    "RandomColorDegeneration",
    "RandomColorJitter",
    "RandomContrast",
    "RandomElasticTransform",
    "RandomGaussianBlur",
    "RandomGrayscale",
    "RandomHue",
    "RandomInvert",
    "RandomPerspective",
    "RandomPosterization",
    "RandomRotation",
    "RandomSaturation",
    "RandomSharpness",
    "RandomShear",
    "RandomTranslation",
    "RandomZoom",
    "Solarization",
    "RandAugment", "TrivialAugmentWide", "AugMix", "Lambda",
]
