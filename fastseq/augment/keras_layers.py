"""Keras preprocessing layers taken as they are: ``augment=keras.Sequential([...])`` (imports Keras only when given one).

Each layer is read from its ``get_config()`` and becomes the fastseq op of
the same name with the same arguments, so it means what the layer means
(each op documents where it differs from its layer, e.g. per-sample draws
where Keras draws per batch). Supported: Keras' 6 geometric layers
(``RandomRotation``, ``RandomZoom``, ``RandomTranslation``, ``RandomShear``,
``RandomPerspective``, ``RandomElasticTransform``), its 14 color and filter
layers, ``RandAugment``, ``AugMix``, and ``RandomFlip`` (a geometric op
here, in its place in the list: Keras 3 flips both axes together, with one
draw, for ``"horizontal_and_vertical"``; so does this op).

Refused, before any data is read, with an error naming the layer:

* a layer fastseq has no op for (the message lists the supported ones);
* a model inside the list or the ``Sequential`` (a nested model): list its
  layers instead;
* a layer with a ``value_range`` other than ``(0, 255)``: fastseq augments
  the uint8 pixels (0..255) before ``normalize``, where Keras' layer with
  ``(0, 1)`` would have seen values it clips to 1. Give the layer
  ``value_range=(0, 255)``, or use the fastseq op with ``value_range=(0, 1)``
  yourself if you mean "as Keras would on the pixels divided by 255" (its
  documented meaning).

Seeds, ``data_format`` and names are not read: draws come from the
sequence's seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fastseq.augment import color, geometry, policies
from fastseq.augment.geometry import _Geometry

_COLOR = ("AutoContrast", "Equalization", "RandomBrightness", "RandomColorDegeneration", "RandomColorJitter",
          "RandomContrast", "RandomGaussianBlur", "RandomGrayscale", "RandomHue", "RandomInvert", "RandomPosterization",
          "RandomSaturation", "RandomSharpness", "Solarization")
_GEOMETRY = ("RandomRotation", "RandomZoom", "RandomTranslation", "RandomShear", "RandomPerspective",
             "RandomElasticTransform")
_POLICIES = ("RandAugment", "AugMix")
SUPPORTED = _GEOMETRY + _COLOR + _POLICIES + ("RandomFlip",)


@dataclass(frozen=True)
class KerasRandomFlip(_Geometry):
    """Keras' ``RandomFlip`` as a geometric op: one draw ``u <= 0.5`` flips the image along the mode's axes.

    Keras 3 uses the same draw for both axes with ``"horizontal_and_vertical"``
    (both flips or neither); so does this op. Exact: a flip maps pixel
    centres to pixel centres, so it composes into its run with no blur.

    Args:
        mode: ``"horizontal"``, ``"vertical"`` or ``"horizontal_and_vertical"``.
    """

    mode: str = "horizontal_and_vertical"
    interpolation = "bilinear"
    fill_mode = "reflect"
    fill_value = 0.0
    n_draws = 1

    def __post_init__(self):
        if self.mode not in ("horizontal", "vertical", "horizontal_and_vertical"):
            raise ValueError("RandomFlip: mode must be 'horizontal', 'vertical' or 'horizontal_and_vertical', "
                             f"got {self.mode!r}.")

    def matrices(self, u, height, width):
        flip = np.asarray(u, np.float64)[:, 0] <= 0.5
        m = np.tile(np.eye(3), (len(flip), 1, 1))
        if self.mode != "vertical":
            m[flip, 0, 0], m[flip, 0, 2] = -1.0, width - 1.0
        if self.mode != "horizontal":
            m[flip, 1, 1], m[flip, 1, 2] = -1.0, height - 1.0
        return m


def is_keras_object(obj):
    """Whether ``obj`` is a Keras layer or model (by its classes' modules: this module imports Keras lazily)."""
    return any(c.__module__.split(".")[0] in ("keras", "tf_keras") for c in type(obj).__mro__)


def _layers(obj, where):
    """The layers of a ``Sequential`` (its own, not nested models') or ``[obj]`` for one layer."""
    import keras

    if isinstance(obj, keras.Model):
        if not isinstance(obj, keras.Sequential):
            raise TypeError(f"{where}: a Keras model other than a Sequential ({type(obj).__name__} {obj.name!r}) cannot "
                            "be read; give its preprocessing layers as a list or a keras.Sequential.")
        out = []
        for i, layer in enumerate(obj.layers):
            if isinstance(layer, keras.Model):
                raise TypeError(f"{where}: layer {i} of {obj.name!r} is a nested model ({type(layer).__name__} "
                                f"{layer.name!r}); list its layers in the outer Sequential instead.")
            out.append((f"{where} layer {i} ({type(layer).__name__} {layer.name!r})", layer))
        return out
    return [(f"{where} ({type(obj).__name__} {getattr(obj, 'name', '')!r})", obj)]


def from_keras(obj, where="augment"):
    """The fastseq ops for a Keras layer or a ``keras.Sequential`` of them, in order.

    Raises:
        TypeError: a nested model, or a layer fastseq has no op for (naming it and listing the supported ones).
        ValueError: a layer's ``value_range`` is not ``(0, 255)``, or its arguments fail the op's checks.
    """
    return tuple(op_for_layer(layer, name) for name, layer in _layers(obj, where))


def op_for_layer(layer, where="augment"):
    """The fastseq op with the same meaning as one Keras preprocessing layer (read from ``get_config()``)."""
    name = type(layer).__name__
    if name == "InputLayer":
        raise TypeError(f"{where}: an InputLayer is not an augmentation; build the Sequential without keras.Input.")
    if name not in SUPPORTED:
        raise TypeError(f"{where}: fastseq has no op for Keras' {name}. Supported layers: {', '.join(SUPPORTED)}. "
                        "Anything else: write it as a fastseq.Lambda, or apply it on the batch in your model.")
    config = layer.get_config()
    vr = config.get("value_range")
    if vr is not None and tuple(float(v) for v in vr) != (0.0, 255.0):
        raise ValueError(
            f"{where}: value_range={tuple(vr)!r}, but fastseq augments the uint8 pixels (0..255) before normalize, "
            "where Keras' layer would clip them to its range. Give the layer value_range=(0, 255), or use "
            f"fastseq.{name}(..., value_range={tuple(vr)!r}) yourself to mean 'as Keras would on the pixels scaled "
            "to that range'."
        )
    if name == "RandomFlip":
        return KerasRandomFlip(mode=config["mode"])
    module = color if name in _COLOR else geometry if name in _GEOMETRY else policies
    cls = getattr(module, name)
    kwargs = {f: config[f] for f in cls.__dataclass_fields__ if f in config}
    if name == "RandomShear":  # Keras stores a number f as (-f, f); fastseq's pairs are magnitudes (sign drawn)
        for f in ("x_factor", "y_factor"):
            v = kwargs.get(f)
            if isinstance(v, (tuple, list)) and len(v) == 2 and v[0] <= 0 and v[0] == -v[1]:
                kwargs[f] = abs(float(v[1]))
    try:
        return cls(**kwargs)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None


__all__ = ["KerasRandomFlip", "SUPPORTED", "from_keras", "is_keras_object", "op_for_layer"]
