"""How a batch is made from its sample indices: the kernel plan and the per-sample draws. NumPy only.

``fastseq.ArraySequence`` asks this module once, at construction (and after
unpickling), for :func:`make`: a :class:`Plan` made from its checked
``fastseq.sequence.options.Options`` alone. It is built from

* ``make_plan``: the compiled pass that turns sample indices (and their
  crop origins or boxes and flip bits) into a batch: a
  ``fastseq.kernels.ResizePlan`` for the resampling crops, else a
  ``fastseq.kernels.FusedPlan``; for a ``RaggedImages`` (photos of
  different sizes, a photo folder's store) a ``RaggedPlan``;
* ``CropFlipDraws``: each sample's crop origin (or box) and flip bits,
  a pure function of ``(seed, epoch, sample index)``, in the form the plan
  takes them;
* ``cutout_draws`` and ``mix_draws``: the Cutout/RandomErasing boxes
  and the MixUp/CutMix partners and weights, also keyed by ``(seed, epoch,
  sample index)``.

A new kind of source (images of different sizes, say) or a new crop adds a
branch here, where plans and draws are chosen, and the sequence that calls
them stays as it is.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from fastseq import kernels
from fastseq.augment import CenterCrop, Cutout, RandomCrop, RandomErasing, RandomResizedCrop, Resize
from fastseq.augment import chain as augment_chain
from fastseq.kernels import augment_pass
from fastseq.kernels import ragged as ragged_kernels
from fastseq.ragged import RaggedImages


@dataclasses.dataclass(frozen=True)
class Plan:
    """Everything the batches of one sequence are made with, from its options.

    Attributes:
        batch: the pass for the output dtype (see :func:`make_plan`).
        draws: each sample's crop origin (or box) and flip bits (:class:`CropFlipDraws`).
        cutout: the Cutout/RandomErasing box draws, or None.
        mix: the MixUp/CutMix partner, weight and box draws, or None.
        mix_plan: with ``mix``, the pass that makes samples and partners together, in float32 (or raw
            uint8) whatever the output dtype, so the blend is rounded once; else None.
        fused_mix: with ``mix`` and a ``FusedPlan``, the blend inside the fused pass; else None.
        mix_pass: with ``mix`` and no ``fused_mix`` (mixing after a resample), the blend of the made pairs
            (``fastseq.kernels.MixPass``); else None.
    """

    batch: object
    draws: CropFlipDraws
    cutout: object = None
    mix: object = None
    mix_plan: object = None
    fused_mix: object = None
    mix_pass: object = None


def make(o):
    """The :class:`Plan` for checked options ``o`` (``fastseq.sequence.options.Options``)."""
    x, dtype, data_format = o.x, o.dtype, o.data_format
    shapes = x.shapes if isinstance(x, RaggedImages) else None
    draws = CropFlipDraws(o.crop, o.flip, o.image_shape[:2], shapes=shapes)
    if o.augment:
        batch, draws = _augment_plan(o, draws, dtype)
    else:
        batch = make_plan(x, crop=o.crop, normalize=o.normalize, dtype=dtype, data_format=data_format)
    out_size = output_size(batch, data_format)
    mix = mix_draws(o.mix, o.num_items, out_size)
    mix_plan = fused_mix = mix_pass = None
    if mix is not None:
        pair_dtype = "uint8" if dtype == "uint8" else "float32"
        if pair_dtype == dtype:
            mix_plan = batch
        elif o.augment:
            mix_plan = _augment_plan(o, draws, pair_dtype)[0]
        else:
            mix_plan = make_plan(x, crop=o.crop, normalize=o.normalize, dtype=pair_dtype, data_format=data_format)
        if isinstance(mix_plan, kernels.FusedPlan):
            fused_mix = kernels.FusedMix(mix_plan, dtype)
        else:
            mix_pass = kernels.MixPass(dtype, data_format)
    plan = Plan(batch, draws, cutout_draws(o.cutout, out_size), mix, mix_plan, fused_mix, mix_pass)
    _start_compiles(plan, o.seed)
    return plan


def _start_compiles(plan, seed):
    """Have the first batch wait for no compiler: the draws compile now, the batch passes in the background.

    Until a pass is compiled (or loaded from Numba's cache), it makes
    batches with NumPy, with the same pixels (``prepare`` of the kernel
    plans, ``fastseq.kernels.quick``). The draws compile first, here: they
    are small, and a background compile in a thread holds Numba's compiler
    lock while it runs. Mixing after a resample has two passes: the pairs'
    resample and the blend (``MixPass``). ``FASTSEQ_BACKGROUND_COMPILE=0``
    leaves all of it to the first batch.
    """
    if plan.mix is None:
        passes = (plan.batch,)
    elif plan.fused_mix is not None:
        passes = (plan.fused_mix,)
    else:
        passes = (plan.mix_plan, plan.mix_pass)
    if not kernels.config.BACKGROUND_COMPILE:
        return
    one = np.zeros(1, np.int64)
    for draws in (plan.draws, plan.cutout, plan.mix):
        if draws is not None:
            draws(seed, 0, one)
    for batch_pass in passes:
        if hasattr(batch_pass, "prepare"):  # the augmentation pass has no NumPy tier: its first batch compiles it
            batch_pass.prepare()


def _augment_plan(o, crop_draws, dtype):
    """The augmentation pass and its draws, for options with an ``augment`` list (``fastseq.augment.chain``)."""
    x, crop = o.x, o.crop
    if isinstance(crop, RandomResizedCrop):
        out_size = (crop.height, crop.width)
    elif isinstance(crop, Resize):
        out_size = crop.output_size
    elif crop is not None:
        out_size = (crop.height, crop.width)
    else:
        out_size = o.image_shape[:2]
    chain = augment_chain.Chain(o.augment, crop=crop, out_size=out_size, channels=o.image_shape[2])
    boxes = None
    if isinstance(x, RaggedImages):
        pixels, offsets, shapes = x.pixels, x.offsets, x.shapes
        if isinstance(crop, Resize):
            boxes = ragged_kernels.keras_boxes(x.shapes, (crop.height, crop.width),
                                               crop_to_aspect_ratio=crop.crop_to_aspect_ratio)
    else:
        x4 = x if x.ndim == 4 else x[..., None]
        N, H, W, C = x4.shape
        pixels, offsets, shapes = x4.reshape(-1), np.arange(N, dtype=np.int64) * (H * W * C), np.tile([H, W, C], (N, 1))
    normalize = {} if o.normalize is None else o.normalize.kernel_kwargs()
    batch = augment_pass.AugmentPass(
        pixels, offsets, shapes, out_size=out_size, prog=chain.prog, run_interp=chain.run_interp,
        run_mode=chain.run_mode, run_fill=chain.run_fill, n_params=chain.n_params, n_fields=chain.n_fields,
        variant=chain.variant, dtype=dtype, data_format=o.data_format, lambdas=chain.lambdas,
        lambda_names=chain.lambda_names, **normalize,
    )
    return batch, AugmentDraws(chain, crop_draws, o.image_shape[:2], out_size, boxes)


class AugmentDraws:
    """Each sample's pass parameters for an ``augment`` list: ``draws(seed, epoch, idx) -> (AugmentDraw, None)``.

    The crop's corners or boxes and the flips come from the sequence's
    :class:`CropFlipDraws` (the very draws a sequence without ``augment``
    makes); :func:`fastseq.augment.chain.window_matrices` turns them into
    each sample's window map, and the chain composes the ops' draws onto it.
    """

    def __init__(self, chain, crop_draws, image_size, out_size, boxes=None):
        self.chain, self.crop_draws, self.image_size, self.out_size = chain, crop_draws, image_size, out_size
        self.random = crop_draws.random
        self._boxes = boxes  # a Resize of photos of different sizes: Keras' box of each photo

    def __call__(self, seed, epoch, idx):
        idx = np.asarray(idx, np.int64)
        origins, flips = self.crop_draws(seed, epoch, idx)
        boxes = None if self._boxes is None else self._boxes[idx]
        window = augment_chain.window_matrices(self.chain.crop, origins, flips, idx.size, self.image_size,
                                               self.out_size, boxes)
        mats, cparams, fields = self.chain.draw(seed, epoch, idx, window, kernels.random.uniforms)
        return augment_pass.AugmentDraw(mats, cparams, fields), None


def make_plan(x, *, crop, normalize, dtype, data_format):
    """The batch pass over ``x`` for these specs.

    Args:
        x: the sequence's images (checked by ``fastseq.sequence.options.check``).
        crop: a checked crop spec or None.
        normalize: a ``Normalize``/``Rescale`` or None.
        dtype: the output dtype name.
        data_format: "channels_last" or "channels_first".

    Returns:
        A ``fastseq.kernels.ResizePlan`` for ``RandomResizedCrop`` and
        ``Resize`` (called like a ``FusedPlan``, with boxes for origins), else
        a ``fastseq.kernels.FusedPlan``. Either is called as
        ``plan(indices, origins, flips, out=None)`` and has
        ``output_shape(batch_size)``.
    """
    if isinstance(x, RaggedImages):
        return RaggedPlan(x, crop=crop, normalize=normalize, dtype=dtype, data_format=data_format)
    normalize = {} if normalize is None else normalize.kernel_kwargs()
    if isinstance(crop, (RandomResizedCrop, Resize)):
        resize = isinstance(crop, Resize)
        return kernels.ResizePlan(
            x,
            size=crop.output_size if resize else (crop.height, crop.width),
            scaled_size=(crop.height, crop.width) if resize else None,
            dtype=dtype,
            data_format=data_format,
            **normalize,
        )
    return kernels.FusedPlan(
        x,
        crop=None if crop is None else (crop.height, crop.width),
        padding=0 if crop is None else crop.padding,
        pad_mode="constant" if crop is None else crop.pad_mode,
        fill=0 if crop is None else crop.fill,
        dtype=dtype,
        data_format=data_format,
        **normalize,
    )


class RaggedPlan:
    """The batch pass over a ``RaggedImages``: called like a ``FusedPlan``, ``plan(indices, boxes, flips, out=None)``.

    Every sample is resampled once from its original image to the crop's
    output size (``fastseq.kernels.ragged.RaggedResizePlan``):

    * ``Resize(h, w)``: the whole image (``tf.image.resize``); with
      ``crop_to_aspect_ratio`` Keras' ``smart_resize`` box
      (``keras_boxes``); with ``pad_to_aspect_ratio`` the image resized into
      ``tf.image.resize_with_pad``'s window of a zero output
      (``keras_pad_windows``); ``crop=(ch, cw)`` keeps the centre of that.
      ``boxes`` None means these deterministic boxes and windows.
    * ``RandomResizedCrop(h, w)``: the boxes its draws pass in.
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

    def prepare(self):
        """Compile the photo resample in the background, its NumPy tier serving meanwhile (``RaggedResizePlan.prepare``)."""
        self._plan.prepare()
        return self

    def compile(self, *, serial=False):
        self._plan.compile(serial=serial)

    def __call__(self, indices, boxes=None, flips=None, out=None):
        indices = np.asarray(indices, np.int64)
        if boxes is None and self._boxes is not None:
            boxes = self._boxes[indices]
        windows = None if self._windows is None else self._windows[indices]
        return self._plan(indices, boxes, flips, out=out, windows=windows)


def output_size(plan, data_format):
    """``(height, width)`` of the images ``plan`` makes."""
    shape = plan.output_shape(1)
    return tuple(shape[2:4]) if data_format == "channels_first" else tuple(shape[1:3])


class CropFlipDraws:
    """Each sample's crop origin (or box) and flip bits for a crop and a flip spec.

    ``draws(seed, epoch, indices)`` returns ``(origins, flips)`` as the plan
    of ``make_plan`` takes them: None for what the specs leave out, the
    centre corner for a ``CenterCrop``, int64 corners for a ``RandomCrop``,
    boxes for a ``RandomResizedCrop`` (with all-zero flips when there is no
    flip: the plan's fast path), uint8 flip bits for a ``RandomFlip``.
    A ``RandomResizedCrop``'s flip bits equal those a ``RandomCrop`` would
    draw for the same sample.

    Args:
        crop: a checked crop spec or None.
        flip: a ``RandomFlip`` or None.
        image_size: ``(H, W)`` of the source images (ignored with ``shapes``).
        shapes: for images of different sizes (a ``RaggedImages``), their
            int ``(N, 3)`` shapes; the crop is then a ``Resize`` or a
            ``RandomResizedCrop``.
    """

    def __init__(self, crop, flip, image_size, shapes=None):
        H, W = image_size
        self.crop, self.flip = crop, flip
        self._center = None
        #: The kernel's counter-based draw object (``RandomParams``,
        #: ``ResizedCropParams`` or ``RaggedResizedCropParams``), or None when nothing is random.
        self.random = None
        horizontal = 0.0 if flip is None else flip.horizontal
        vertical = 0.0 if flip is None else flip.vertical
        if shapes is not None:
            # Images of different sizes: boxes drawn with each image's own size; a Resize takes only
            # the flip bits (the ones every crop draws for the sample), its boxes are the plan's.
            if isinstance(crop, RandomResizedCrop):
                self.random = ragged_kernels.RaggedResizedCropParams(
                    shapes, scale=crop.scale, ratio=crop.ratio, horizontal=horizontal, vertical=vertical
                )
            elif flip is not None:
                self.random = kernels.RandomParams(
                    image_size=(1, 1), crop_size=(1, 1), horizontal=horizontal, vertical=vertical
                )
        elif isinstance(crop, CenterCrop):
            self._center = ((H - crop.height) // 2, (W - crop.width) // 2)
        elif isinstance(crop, RandomResizedCrop):
            # Boxes and flips in one compiled call.
            self.random = kernels.ResizedCropParams(
                image_size=(H, W), scale=crop.scale, ratio=crop.ratio, horizontal=horizontal, vertical=vertical
            )
        elif isinstance(crop, RandomCrop) or flip is not None:
            random_crop = isinstance(crop, RandomCrop)
            self.random = kernels.RandomParams(
                image_size=(H, W),
                crop_size=(crop.height, crop.width) if random_crop else (H, W),
                padding=crop.padding if random_crop else 0,
                horizontal=horizontal,
                vertical=vertical,
            )

    def __call__(self, seed, epoch, idx):
        """``(origins, flips)`` for the samples ``idx`` (int64) in ``epoch``."""
        if self._center is not None:
            return np.broadcast_to(np.array(self._center, np.int64), (idx.size, 2)), None
        if self.random is None:
            return None, None
        origins, flips = self.random(seed, epoch, idx)  # boxes, for a RandomResizedCrop
        if isinstance(self.crop, RandomResizedCrop):
            return origins, flips  # all zero without a flip: then the plan takes its fast path
        return (origins if isinstance(self.crop, RandomCrop) else None), (None if self.flip is None else flips)


def cutout_draws(cutout, out_size):
    """The boxes of a ``Cutout``/``RandomErasing`` on made images of ``out_size``, or None for no cutout."""
    if isinstance(cutout, Cutout):
        return kernels.CutoutParams(image_size=out_size, size=cutout.size, count=cutout.count)
    if isinstance(cutout, RandomErasing):
        return kernels.ErasingParams(
            image_size=out_size, probability=cutout.probability, scale=cutout.scale, ratio=cutout.ratio
        )
    return None


def mix_draws(mix, num_items, out_size):
    """The partners, weights and boxes of a ``MixUp``/``CutMix`` over ``num_items`` samples, or None."""
    if mix is None:
        return None
    return kernels.MixParams(num_items=num_items, image_size=out_size, alpha=mix.alpha, mode=mix.mode)
