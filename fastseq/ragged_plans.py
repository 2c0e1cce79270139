"""How a batch is made from photos of different sizes (``RaggedImages``): the resample plan and the draws. NumPy only.

``ArraySequence`` over a :class:`fastseq.ragged.RaggedImages` (a photo
folder's store) resamples every sample from its original photo, once, to
the crop's output size:

* ``Resize(h, w)``: the whole photo (Keras' ``tf.image.resize``), or with
  ``crop_to_aspect_ratio`` Keras' ``smart_resize`` box, or with
  ``pad_to_aspect_ratio`` the photo resized into ``tf.image.resize_with_pad``'s
  window of a zero output (:func:`fastseq.kernels.ragged.keras_boxes`,
  :func:`~fastseq.kernels.ragged.keras_pad_windows`); ``crop=(ch, cw)``
  keeps the centre of that;
* ``RandomResizedCrop(h, w)``: torchvision's box drawn on each original
  photo, with that photo's own size
  (:class:`~fastseq.kernels.ragged.RaggedResizedCropParams`).

Flip bits are the ones every other crop draws for the same sample.
"""

from __future__ import annotations

import numpy as np

from fastseq import kernels
from fastseq.augment import RandomResizedCrop, Resize
from fastseq.kernels import ragged as ragged_kernels


class RaggedPlan:
    """The batch pass over a ``RaggedImages``: called like a ``FusedPlan``, ``plan(indices, boxes, flips, out=None)``.

    ``boxes`` None means each sample's deterministic ``Resize`` box (and
    window); a ``RandomResizedCrop`` passes the boxes it drew.
    """

    def __init__(self, x, *, crop, normalize, dtype, data_format):
        if not isinstance(crop, (Resize, RandomResizedCrop)):
            raise TypeError(f"a RaggedImages x needs crop=Resize(...) or RandomResizedCrop(...), got {crop!r}.")
        normalize = {} if normalize is None else normalize.kernel_kwargs()
        resize = isinstance(crop, Resize)
        self.crop = crop
        self._boxes = self._windows = None
        if resize:
            scaled = (crop.height, crop.width)
            self._boxes = ragged_kernels.keras_boxes(x.shapes, scaled, crop_to_aspect_ratio=crop.crop_to_aspect_ratio)
            if crop.pad_to_aspect_ratio:
                windows = ragged_kernels.keras_pad_windows(x.shapes, scaled)
                oh, ow = crop.output_size
                windows[:, 0] -= (crop.height - oh) // 2  # into the coordinates of the centre crop
                windows[:, 1] -= (crop.width - ow) // 2
                self._windows = windows
        self._plan = ragged_kernels.RaggedResizePlan(
            x.pixels,
            x.offsets,
            x.shapes,
            size=crop.output_size if resize else (crop.height, crop.width),
            scaled_size=(crop.height, crop.width) if resize else None,
            interpolation=crop.interpolation,
            antialias=crop.antialias,
            dtype=dtype,
            data_format=data_format,
            **normalize,
        )
        self.dtype, self.data_format = dtype, data_format

    def output_shape(self, n):
        return self._plan.output_shape(n)

    def compile(self, *, serial=False):
        self._plan.compile(serial=serial)

    def __call__(self, indices, boxes=None, flips=None, out=None):
        indices = np.asarray(indices, np.int64)
        if boxes is None and self._boxes is not None:
            boxes = self._boxes[indices]
        windows = None if self._windows is None else self._windows[indices]
        return self._plan(indices, boxes, flips, out=out, windows=windows)


def random_draws(crop, flip, shapes):
    """The per-sample draw object for a ``RaggedImages`` sequence, or None when nothing is random.

    ``RandomResizedCrop``: boxes on each photo and flip bits
    (``RaggedResizedCropParams``). ``Resize`` with a flip: the flip bits of
    ``RandomParams`` (the same bits any crop draws for the sample; its
    corners are ignored).
    """
    horizontal = 0.0 if flip is None else flip.horizontal
    vertical = 0.0 if flip is None else flip.vertical
    if isinstance(crop, RandomResizedCrop):
        return ragged_kernels.RaggedResizedCropParams(
            shapes, scale=crop.scale, ratio=crop.ratio, horizontal=horizontal, vertical=vertical
        )
    if flip is not None:
        return kernels.RandomParams(image_size=(1, 1), crop_size=(1, 1), horizontal=horizontal, vertical=vertical)
    return None
