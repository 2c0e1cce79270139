"""Decode one image file to uint8 ``(H, W, C)`` pixels the way Keras does (NumPy, Pillow, simplejpeg).

Keras 3.15's ``image_dataset_from_directory`` decodes with
``tf.io.decode_image(contents, channels=C, expand_animations=False)``, C = 1,
3 or 4 for ``color_mode`` "grayscale", "rgb" or "rgba". This module gives the
same pixels without TensorFlow (each case is tested against TF):

- JPEG: ``simplejpeg.decode_jpeg(fastdct=True, fastupsample=False)``, the same
  libjpeg-turbo settings as TF (fast integer DCT, fancy upsampling): equal.
  Grayscale output is libjpeg's luma (the Y channel), as TF's. A grayscale
  JPEG under "rgb" gives three equal channels. Progressive and any chroma
  subsampling: equal.
- CMYK/YCCK JPEG: raw CMYK from libjpeg-turbo, then TF's own integer
  conversion (``r = c * k // 255`` with an Adobe marker, inverted without):
  equal.
- PNG, GIF, BMP (and anything else Pillow reads): Pillow, with TF's
  conversions: palette, grey+alpha and RGBA to RGB drop alpha (equal);
  RGB to grey with libpng's weights ``(9797 R + 19234 G + 3737 B) >> 15``
  (equal); 16-bit samples keep their high byte (libpng's ``strip_16``, as TF:
  equal, never clipped); a GIF's first frame, its transparent pixels black,
  on TF's canvas (the largest frame's size, not the GIF's logical screen:
  equal).

Where TensorFlow refuses (so Keras stops with an error) fastseq decodes:
``color_mode="rgba"`` on a JPEG or GIF gives alpha 255 (0 where a GIF is
transparent); "grayscale" on a GIF or BMP uses libpng's weights and on a CMYK
JPEG libjpeg's luma. Where TF is wrong fastseq is right: a 1, 2 or 4-bit
grey PNG under "rgba" gets alpha 255 (TF gives 1, 3 or 15), an 8-bit palette
BMP its palette colours (TF reads the indices). Known small differences: a
16-bit RGB(A) PNG under "grayscale" (fastseq converts the 8-bit samples, libpng
the 16-bit ones: off by at most 1) and a JPEG libjpeg-turbo refuses but
Pillow reads (decoded by Pillow, whose accurate DCT differs by about 1 level).
A 32-bit BMP under "rgba" keeps its fourth byte as alpha, as TF does.

EXIF orientation: with ``exif_transpose=True`` (fastseq's default) a photo
is turned upright as viewers show it; Keras ignores the tag
(``exif_transpose=False`` gives its raw pixels).
"""

from __future__ import annotations

import io
import os
import struct

import numpy as np

COLOR_MODES = {"grayscale": 1, "rgb": 3, "rgba": 4}
ORIENTATION_TAG = 0x0112
_JPEG_MAGIC = b"\xff\xd8\xff"


def channels_of(color_mode):
    """The channel count of a Keras ``color_mode``, or a ValueError naming the choices."""
    try:
        return COLOR_MODES[color_mode]
    except (KeyError, TypeError):
        raise ValueError(f'color_mode must be one of "grayscale", "rgb" or "rgba", got {color_mode!r}.') from None


def check_max_side(max_side):
    """``max_side`` as an int >= 1, or None; a ValueError naming it otherwise."""
    if max_side is None:
        return None
    if isinstance(max_side, (bool, np.bool_)) or not isinstance(max_side, (int, np.integer)) or max_side < 1:
        raise ValueError(f"max_side must be a positive int (the longest stored side, in pixels) or None, "
                         f"got {max_side!r}.")
    return int(max_side)


# --- JPEG markers --------------------------------------------------------------------------


def _jpeg_segments(data):
    """Yield ``(marker, payload)`` of a JPEG's header segments, up to the first scan."""
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            i += 2
            continue
        if marker in (0xDA, 0xD9):  # start of scan, end of image
            return
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        yield marker, data[i + 4 : i + 2 + length]
        i += 2 + length


def _tiff_orientation(tiff):
    if tiff[:2] == b"II":
        order = "little"
    elif tiff[:2] == b"MM":
        order = "big"
    else:
        return 1
    ifd = int.from_bytes(tiff[4:8], order)
    count = int.from_bytes(tiff[ifd : ifd + 2], order)
    for k in range(count):
        p = ifd + 2 + 12 * k
        if p + 12 > len(tiff):
            break
        if int.from_bytes(tiff[p : p + 2], order) == ORIENTATION_TAG:
            value = int.from_bytes(tiff[p + 8 : p + 10], order)
            return value if 1 <= value <= 8 else 1
    return 1


def jpeg_orientation(data):
    """The EXIF orientation (1..8) of JPEG bytes; 1 when there is none."""
    for marker, payload in _jpeg_segments(data):
        if marker == 0xE1 and payload[:6] == b"Exif\x00\x00":
            return _tiff_orientation(payload[6:])
    return 1


def _has_adobe_marker(data):
    return any(marker == 0xEE and payload[:5] == b"Adobe" for marker, payload in _jpeg_segments(data))


# --- colour conversions TF makes ------------------------------------------------------------


def _png_gray(rgb):
    """libpng's ``png_set_rgb_to_gray`` on 8-bit samples, as TF's PNG decoder calls it."""
    r, g, b = (rgb[..., k].astype(np.uint32) for k in range(3))
    return ((9797 * r + 19234 * g + 3737 * b) >> 15).astype(np.uint8)[..., None]


def _jpeg_gray(rgb):
    """libjpeg's luma (its RGB -> YCbCr Y, rounded)."""
    r, g, b = (rgb[..., k].astype(np.uint32) for k in range(3))
    return ((19595 * r + 38470 * g + 7471 * b + 32768) >> 16).astype(np.uint8)[..., None]


def _cmyk_to_rgb(cmyk, adobe):
    """TF's ``jpeg_mem.cc`` conversion of libjpeg's CMYK output."""
    c = cmyk[..., :3].astype(np.uint32)
    k = cmyk[..., 3:4].astype(np.uint32)
    rgb = c * k // 255 if adobe else (255 - c) * (255 - k) // 255  # Adobe writes inverted CMYK
    return rgb.astype(np.uint8)


def _with_alpha(rgb, alpha=None):
    out = np.empty(rgb.shape[:2] + (4,), np.uint8)
    out[..., :3] = rgb
    out[..., 3] = 255 if alpha is None else alpha
    return out


def _from_rgb(rgb, channels, gray):
    if channels == 3:
        return rgb
    if channels == 4:
        return _with_alpha(rgb)
    return gray(rgb)


# --- decoders ---------------------------------------------------------------------------------


def _decode_jpeg(data, channels):
    import simplejpeg

    _, _, colorspace, _ = simplejpeg.decode_jpeg_header(data)
    if colorspace in ("CMYK", "YCCK"):
        raw = simplejpeg.decode_jpeg(data, colorspace="CMYK", fastdct=True, fastupsample=False)
        return _from_rgb(_cmyk_to_rgb(raw, _has_adobe_marker(data)), channels, _jpeg_gray)
    space = {1: "GRAY", 3: "RGB", 4: "RGBA"}[channels]  # RGBA: libjpeg-turbo fills alpha with 255
    image = simplejpeg.decode_jpeg(data, colorspace=space, fastdct=True, fastupsample=False)
    return image.reshape(image.shape[0], image.shape[1], channels)


def _gif_frame_boxes(data):
    """``(left, top, width, height)`` of every frame of GIF bytes, read from its image descriptors."""
    if data[:6] not in (b"GIF87a", b"GIF89a") or len(data) < 13:
        return []
    pos, n, boxes = 13, len(data), []
    if data[10] & 0x80:  # global colour table
        pos += 3 * (2 << (data[10] & 7))
    while pos < n:
        block = data[pos]
        if block == 0x21:  # extension: label, then data sub-blocks
            pos += 2
        elif block == 0x2C:  # image descriptor, optional local colour table, LZW code size, data sub-blocks
            if pos + 10 > n:
                break
            boxes.append(struct.unpack("<HHHH", data[pos + 1 : pos + 9]))
            flags = data[pos + 9]
            pos += 10 + (3 * (2 << (flags & 7)) if flags & 0x80 else 0) + 1
        else:  # trailer (0x3B) or garbage
            break
        while pos < n and data[pos]:
            pos += data[pos] + 1
        pos += 1
    return boxes


def _gif_first_frame(im, data):
    """TF's first frame of a GIF: RGB and where it is opaque.

    TF's canvas is the largest frame's width and height (not the GIF's
    logical screen); the first frame sits at its offset in it, and what it
    leaves uncovered, as its transparent pixels, is black.
    """
    canvas = np.array(im.convert("RGB"))
    transparent = im.info.get("transparency")
    if im.mode == "P" and isinstance(transparent, int):
        opaque = np.asarray(im) != transparent
    else:
        opaque = np.ones(canvas.shape[:2], bool)
    boxes = _gif_frame_boxes(data)
    if not boxes:
        return np.where(opaque[..., None], canvas, 0).astype(np.uint8), opaque
    left, top, width, height = boxes[0]
    out_h, out_w = max(b[3] for b in boxes), max(b[2] for b in boxes)
    rgb = np.zeros((out_h, out_w, 3), np.uint8)
    shown = np.zeros((out_h, out_w), bool)
    bottom, right = min(top + height, out_h, canvas.shape[0]), min(left + width, out_w, canvas.shape[1])
    if bottom > top and right > left:
        shown[top:bottom, left:right] = opaque[top:bottom, left:right]
        rgb[top:bottom, left:right] = canvas[top:bottom, left:right]
    rgb[~shown] = 0
    return rgb, shown


def _bmp32_alpha(data, size):
    """The fourth byte of each pixel of an uncompressed 32-bit BMP, as TF reads it for alpha; None otherwise."""
    if len(data) < 34 or data[:2] != b"BM":
        return None
    start, header = struct.unpack("<II", data[10:18])
    width, height = struct.unpack("<ii", data[18:26])
    bits, compression = struct.unpack("<HI", data[28:34])
    if bits != 32 or compression not in (0, 3) or header < 40 or (abs(height), width) != size[::-1]:
        return None
    count = width * abs(height) * 4
    if start + count > len(data):
        return None
    alpha = np.frombuffer(data, np.uint8, count, start).reshape(abs(height), width, 4)[..., 3]
    return alpha[::-1] if height > 0 else alpha  # positive height: rows stored bottom-up


_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def _decode_pillow(data, channels):
    from PIL import Image, UnidentifiedImageError

    try:
        opened = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ValueError(f"not an image format fastseq reads (JPEG, PNG, GIF, BMP or another that Pillow "
                         f"reads); it starts with {data[:8]!r}") from None
    with opened as im:
        im.seek(0)  # an animation's first frame, as TF's expand_animations=False
        im.load()
        try:
            orientation = int(im.getexif().get(ORIENTATION_TAG, 1))
        except Exception:  # a broken EXIF block never makes the pixels unreadable
            orientation = 1
        gray = _jpeg_gray if im.format == "JPEG" else _png_gray
        if im.format == "GIF":
            rgb, opaque = _gif_first_frame(im, data)
            if channels == 4:
                return _with_alpha(rgb, np.where(opaque, 255, 0)), orientation
            return _from_rgb(rgb, channels, gray), orientation
        if im.mode in _SIXTEEN_BIT:
            # 16-bit grey: keep the high byte as libpng's strip_16 does (Pillow's convert("L") would clip).
            g = (np.clip(np.asarray(im).astype(np.int64), 0, 65535) >> 8).astype(np.uint8)[..., None]
            if channels == 1:
                return g, orientation
            rgb = np.repeat(g, 3, axis=2)
            return (rgb if channels == 3 else _with_alpha(rgb)), orientation
        if channels == 3:
            return np.asarray(im.convert("RGB")), orientation
        if channels == 4:
            alpha = _bmp32_alpha(data, im.size) if im.format == "BMP" and im.mode == "RGB" else None
            if alpha is not None:  # TF keeps a 32-bit BMP's fourth byte as alpha; Pillow drops it
                return _with_alpha(np.asarray(im), alpha), orientation
            return np.asarray(im.convert("RGBA")), orientation
        if im.mode in ("L", "LA", "La", "1"):
            return np.asarray(im.convert("L"))[..., None], orientation
        return gray(np.asarray(im.convert("RGB"))), orientation


def orient(image, orientation):
    """Turn ``(H, W, C)`` pixels upright for an EXIF ``orientation`` (1..8), as ``PIL.ImageOps.exif_transpose``."""
    if orientation == 2:
        return image[:, ::-1]
    if orientation == 3:
        return image[::-1, ::-1]
    if orientation == 4:
        return image[::-1]
    if orientation == 5:
        return image.transpose(1, 0, 2)
    if orientation == 6:
        return np.rot90(image, -1)
    if orientation == 7:
        return image[::-1, ::-1].transpose(1, 0, 2)
    if orientation == 8:
        return np.rot90(image, 1)
    return image


def shrink(image, max_side):
    """Resize ``(H, W, C)`` so that its longer side is ``max_side`` (Pillow's Lanczos filter).

    Sides are rounded to the nearest pixel (at least 1); an image already
    within ``max_side`` is returned as it is.
    """
    from PIL import Image

    h, w, c = image.shape
    if max(h, w) <= max_side:
        return image
    scale = max_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    mode = {1: "L", 3: "RGB", 4: "RGBA"}[c]
    pil = Image.fromarray(np.ascontiguousarray(image[..., 0] if c == 1 else image), mode=mode)
    out = np.asarray(pil.resize(size, Image.Resampling.LANCZOS))
    return out.reshape(size[1], size[0], c)


def decode_image(source, color_mode="rgb", *, exif_transpose=True, max_side=None):
    """Decode one image file as Keras' ``image_dataset_from_directory`` does.

    Args:
        source (str | os.PathLike | bytes): a path, or the file's bytes.
        color_mode (str): "grayscale", "rgb" or "rgba" (1, 3 or 4 channels).
        exif_transpose (bool): turn a photo upright per its EXIF orientation tag
            (Keras ignores the tag: False gives its raw pixels).
        max_side (int | None): if given, shrink (Lanczos) so that the longer side is at most
            this many pixels; None keeps the original size.

    Returns:
        np.ndarray: C-contiguous uint8 ``(H, W, C)``.

    Raises:
        ValueError: a bad ``color_mode`` or ``max_side``.
        Exception: whatever the decoders raise for an unreadable file
            (``PIL.UnidentifiedImageError``, ``OSError``, ``ValueError``, ...).
    """
    channels = channels_of(color_mode)
    max_side = check_max_side(max_side)
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    else:
        with open(os.fspath(source), "rb") as f:
            data = f.read()
    if not data:
        raise ValueError("empty file (0 bytes)")
    image = None
    if data[:3] == _JPEG_MAGIC:
        try:
            image = _decode_jpeg(data, channels)
            orientation = jpeg_orientation(data)
        except ValueError:
            image = None  # libjpeg-turbo refused it (e.g. a recoverable corruption): Pillow may read it
    if image is None:
        image, orientation = _decode_pillow(data, channels)
    if exif_transpose and orientation != 1:
        image = orient(image, orientation)
    if max_side is not None:
        image = shrink(image, max_side)
    return np.ascontiguousarray(image)


def stored_shape(path, color_mode="rgb", *, max_side=None):
    """The ``(H, W, C)`` that ``decode_image`` will give, from the file's header (no decoding).

    Orientation is ignored (a transpose keeps the pixel count). Used to
    estimate a store's size before building it.

    Raises:
        Exception: the header cannot be read (the file will be skipped then).
    """
    channels = channels_of(color_mode)
    size = None
    if isinstance(path, (str, os.PathLike)):
        with open(path, "rb") as f:
            head = f.read(1 << 16)
        if head[:3] == _JPEG_MAGIC:
            import simplejpeg

            try:  # a few times faster than Pillow's open; the header almost always lies in the first 64 KiB
                size = simplejpeg.decode_jpeg_header(head)[:2]
            except ValueError:
                size = None
    if size is None:
        from PIL import Image

        with Image.open(path) as im:
            w, h = im.size
        size = (h, w)
    h, w = size
    if max_side is not None and max(h, w) > max_side:
        scale = max_side / max(h, w)
        h, w = max(1, round(h * scale)), max(1, round(w * scale))
    return h, w, channels
