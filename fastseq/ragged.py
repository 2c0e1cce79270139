"""RaggedImages: uint8 images of different sizes in one flat buffer (NumPy only).

The in-memory (or memory-mapped) form of a photo folder's store: image ``i``
is ``pixels[offsets[i] : offsets[i] + H*W*C]`` laid out ``(H, W, C)``, with
``(H, W, C) = shapes[i]``. Every image has the same channel count ``C``
(1, 3 or 4: the ``color_mode`` it was decoded in); heights and widths vary.

The format is boring on purpose: three arrays that NumPy alone reads. The
resampling kernels take the arrays themselves (``kernels`` know nothing of
this class); ``ArraySequence`` takes a ``RaggedImages`` as ``x``.
"""

from __future__ import annotations

import numpy as np

from fastseq._memmap import MemmapRef

CHANNELS = (1, 3, 4)


def _describe(value):
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape} and dtype {value.dtype}"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


class RaggedImages:
    """A read-only list of uint8 images, each ``(H_i, W_i, C)``, stored flat.

    Args:
        pixels: 1-D uint8 array (a NumPy array or a read-only ``np.memmap``)
            holding every image's bytes.
        offsets: int64 ``(N,)``: where image ``i`` starts in ``pixels``.
        shapes: int64 ``(N, 3)``: image ``i``'s ``(height, width, channels)``;
            every channel count is the same, one of 1, 3 or 4.

    Raises:
        TypeError, ValueError: naming the argument and the value received,
            when an array has the wrong dtype or shape, or an image would
            reach outside ``pixels``.
    """

    def __init__(self, pixels, offsets, shapes):
        if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8 or pixels.ndim != 1:
            raise TypeError(f"pixels must be a 1-D uint8 array (or np.memmap), got {_describe(pixels)}.")
        if not pixels.flags.c_contiguous:
            raise ValueError("pixels must be C-contiguous; pass np.ascontiguousarray(pixels).")
        offsets = np.ascontiguousarray(offsets)
        shapes = np.ascontiguousarray(shapes)
        if offsets.ndim != 1 or offsets.dtype.kind not in "iu":
            raise TypeError(f"offsets must be a 1-D integer array, got {_describe(offsets)}.")
        if shapes.ndim != 2 or shapes.shape[1] != 3 or shapes.dtype.kind not in "iu":
            raise TypeError(f"shapes must be an integer array of shape (N, 3) (height, width, channels), "
                            f"got {_describe(shapes)}.")
        if len(offsets) != len(shapes):
            raise ValueError(f"offsets and shapes must have one row per image, got {len(offsets)} offsets and "
                             f"{len(shapes)} shapes.")
        offsets = offsets.astype(np.int64, copy=False)
        shapes = shapes.astype(np.int64, copy=False)
        if len(shapes):
            if shapes[:, :2].min() < 1:
                bad = int(np.flatnonzero(shapes[:, :2].min(axis=1) < 1)[0])
                raise ValueError(f"shapes[{bad}] is {shapes[bad].tolist()}: every image needs height and width >= 1.")
            channels = np.unique(shapes[:, 2])
            if len(channels) != 1 or int(channels[0]) not in CHANNELS:
                raise ValueError(f"every image must have the same channel count, one of {CHANNELS}; shapes have "
                                 f"channel counts {channels.tolist()}.")
            ends = offsets + shapes.prod(axis=1)
            if offsets.min() < 0 or ends.max() > pixels.size:
                bad = int(np.flatnonzero((offsets < 0) | (ends > pixels.size))[0])
                raise ValueError(f"image {bad} (offset {int(offsets[bad])}, shape {shapes[bad].tolist()}) reaches "
                                 f"outside pixels (size {pixels.size}).")
        offsets.flags.writeable = False
        shapes.flags.writeable = False
        view = pixels.view(np.ndarray) if not isinstance(pixels, np.memmap) else pixels
        self._pixels = pixels  # kept as given (a memmap pickles by reference)
        self.pixels = view
        self.offsets = offsets
        self.shapes = shapes

    @classmethod
    def from_images(cls, images):
        """Pack a list of uint8 ``(H, W, C)`` (or ``(H, W)``, grayscale) arrays into one buffer."""
        arrays = []
        for i, image in enumerate(images):
            a = np.asarray(image)
            if a.dtype != np.uint8 or a.ndim not in (2, 3):
                raise TypeError(f"images[{i}] must be a uint8 (H, W) or (H, W, C) array, got {_describe(a)}.")
            arrays.append(a[..., None] if a.ndim == 2 else a)
        shapes = np.array([a.shape for a in arrays], np.int64).reshape(-1, 3)
        sizes = shapes.prod(axis=1)
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64) if len(arrays) else np.zeros(0, np.int64)
        pixels = np.empty(int(sizes.sum()), np.uint8)
        for a, o, s in zip(arrays, offsets, sizes):
            pixels[o : o + s] = a.reshape(-1)
        return cls(pixels, offsets, shapes)

    def __len__(self):
        return len(self.offsets)

    @property
    def channels(self):
        """The channel count shared by every image (None for an empty list)."""
        return int(self.shapes[0, 2]) if len(self.shapes) else None

    @property
    def nbytes(self):
        """Bytes of pixels the images use (not counting unused bytes of ``pixels``)."""
        return int(self.shapes.prod(axis=1).sum())

    def image(self, i):
        """Image ``i`` as a read-only ``(H, W, C)`` view into ``pixels``."""
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"image index {i} out of range for {n} images.")
        h, w, c = (int(v) for v in self.shapes[i])
        start = int(self.offsets[i])
        view = self.pixels[start : start + h * w * c].reshape(h, w, c)
        view.flags.writeable = False
        return view

    def take(self, indices):
        """The images at ``indices`` (any order, repeats allowed), sharing this buffer."""
        indices = np.asarray(indices)
        if indices.ndim != 1 or (indices.size and indices.dtype.kind not in "iu"):
            raise TypeError(f"indices must be a 1-D integer array, got {_describe(indices)}.")
        n = len(self)
        if indices.size and (indices.min() < -n or indices.max() >= n):
            raise IndexError(f"indices must lie in [-{n}, {n}), got values from {indices.min()} to {indices.max()}.")
        return RaggedImages(self._pixels, self.offsets[indices], self.shapes[indices])

    def __getstate__(self):
        return {"pixels": MemmapRef.wrap(self._pixels), "offsets": self.offsets, "shapes": self.shapes}

    def __setstate__(self, state):
        pixels = state["pixels"]
        if isinstance(pixels, MemmapRef):
            pixels = pixels.open()
        self.__init__(pixels, state["offsets"], state["shapes"])

    def __repr__(self):
        if not len(self):
            return "RaggedImages(0 images)"
        h, w = self.shapes[:, 0], self.shapes[:, 1]
        return (f"RaggedImages({len(self)} images, channels={self.channels}, height {h.min()}..{h.max()}, "
                f"width {w.min()}..{w.max()}, {self.nbytes / 1e6:.1f} MB)")
