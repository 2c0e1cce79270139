"""Keras layers of the product: normalisation on the device, for uint8 batches.

A float32 batch is 4x the bytes of its uint8 pixels; on a GPU those bytes
cross PCIe every step, and on any backend they cross the data path from the
loader to the step. Shipping uint8 (``ArraySequence(..., dtype="uint8")``,
crop and flip still done in the kernel) and normalising in the model's first
layer moves 4x fewer bytes:

    norm = fastseq.Normalize(mean=(125.3, 123.0, 113.9), std=(63.0, 62.1, 66.7))
    train = fastseq.ArraySequence(x, y, crop=..., flip=..., dtype="uint8")   # was normalize=norm
    model = keras.Sequential([keras.Input((32, 32, 3), dtype="uint8"),
                              fastseq.DeviceNormalize(norm), ...])           # the one added line
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from fastseq.augment import Normalize, Rescale
from fastseq.kernels import _validate as validate


@keras.saving.register_keras_serializable(package="fastseq")
class DeviceNormalize(keras.layers.Layer):
    """``Normalize``/``Rescale`` as the model's first layer: uint8 in, ``v * a + b`` per channel out.

    The same per-channel float32 ``a``, ``b`` as the fused kernel's
    (``a = 1/std``, ``b = -mean/std`` for ``Normalize``; ``scale``,
    ``offset`` for ``Rescale``), applied as ``float32(v) * a + b``, so its
    output equals the host path's ``dtype="float32"`` batches within float32
    rounding (bit for bit where the backend does not fuse the multiply-add).

    Args:
        normalize (Normalize | Rescale): a ``fastseq.Normalize`` or ``fastseq.Rescale``.
        data_format (str): where the channel axis is: ``"channels_last"`` (the last
            axis) or ``"channels_first"`` (axis 1), as the sequence's batches.
        **kwargs (Any): Keras ``Layer`` arguments (``name``, ``dtype`` for the
            output's compute dtype, e.g. ``"mixed_float16"``).
    """

    def __init__(self, normalize: Normalize | Rescale, data_format: str = "channels_last", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(normalize, dict):  # from get_config
            normalize = Normalize(**normalize["normalize"]) if "normalize" in normalize else Rescale(**normalize["rescale"])
        if not isinstance(normalize, (Normalize, Rescale)):
            raise TypeError(
                "normalize must be fastseq.Normalize(mean, std) or fastseq.Rescale(scale, offset), "
                f"got {validate._describe(normalize)}."
            )
        if data_format not in ("channels_last", "channels_first"):
            raise ValueError(f"data_format must be 'channels_last' or 'channels_first', got {data_format!r}.")
        self.normalize = normalize
        self.data_format = data_format
        kw = dict(dict.fromkeys(("mean", "std", "scale", "offset")), **normalize.kernel_kwargs())
        a, b = validate.affine(normalize.channels, **kw)
        self._a, self._b = a, b

    def build(self, input_shape):
        axis = -1 if self.data_format == "channels_last" else 1
        channels = input_shape[axis]
        if channels is not None and self._a.size not in (1, channels):
            raise ValueError(
                f"DeviceNormalize({self.normalize!r}) has {self._a.size} per-channel values but its input "
                f"{tuple(input_shape)} has {channels} channels on axis {axis} ({self.data_format})."
            )
        shape = [1] * len(input_shape)
        shape[axis] = self._a.size
        self._a_const = np.asarray(self._a, np.float32).reshape(shape)
        self._b_const = np.asarray(self._b, np.float32).reshape(shape)

    def call(self, inputs):
        if keras.backend.backend() == "tensorflow":
            return _tf_affine()(inputs, self._a_const, self._b_const, self.compute_dtype)
        values = keras.ops.cast(inputs, "float32")
        out = keras.ops.add(keras.ops.multiply(values, self._a_const), self._b_const)
        return keras.ops.cast(out, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        spec = self.normalize
        if isinstance(spec, Normalize):
            values = {"normalize": {"mean": spec.kernel_kwargs()["mean"].tolist(), "std": spec.kernel_kwargs()["std"].tolist()}}
        else:
            values = {"rescale": {"scale": spec.kernel_kwargs()["scale"].tolist(),
                                  "offset": spec.kernel_kwargs()["offset"].tolist()}}
        config.update({"normalize": values, "data_format": self.data_format})
        return config


_TF_AFFINE = None


def _tf_affine():
    """``cast(float32(x) * a + b)`` as one XLA cluster on the TensorFlow backend.

    Keras compiles ``fit`` with XLA on TensorFlow only where there is a GPU;
    on a CPU the cast, multiply and add then run as three TensorFlow kernels,
    three passes over the batch: 3.4 ms for a CIFAR batch of 512 on 2 cores,
    against 0.27 ms fused (measured), which is what the JAX backend and a GPU
    get anyway. A ``jit_compile=True`` function inside the step is compiled
    as its own cluster whatever the outer setting.
    """
    global _TF_AFFINE
    if _TF_AFFINE is None:
        import tensorflow as tf

        @tf.function(jit_compile=True, autograph=False)
        def affine(x, a, b, dtype):
            return tf.cast(tf.cast(x, tf.float32) * a + b, dtype)

        _TF_AFFINE = affine
    return _TF_AFFINE
