"""fastseq.photos.decode against tf.io.decode_image, Keras 3.15's decoder, on files made here.

Every case is exact (difference 0) where TensorFlow decodes the file; where TF
refuses (Keras then stops with an error) or is wrong, the test names the case
and checks what fastseq gives instead.
"""

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_array_equal
from PIL import Image, ImageOps

from fastseq.bench.photos import photo
from fastseq.photos.decode import decode_image, jpeg_orientation, stored_shape

tf = pytest.importorskip("tensorflow")

CHANNELS = {"grayscale": 1, "rgb": 3, "rgba": 4}


def keras_decode(data, color_mode):
    """What keras.utils.image_dataset_from_directory's load_image does before resizing."""
    return tf.io.decode_image(data, channels=CHANNELS[color_mode], expand_animations=False).numpy()


def encode(image, fmt, **kw):
    b = io.BytesIO()
    image.save(b, format=fmt, **kw)
    return b.getvalue()


def png16(array):
    """A 16-bit PNG (Pillow writes 16-bit grey only): (H, W, C) uint16, C = 1, 2, 3 or 4."""
    h, w, c = array.shape
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    raw = b"".join(b"\x00" + array[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def rgb():
    return photo(53, 71, seed=11)


def same_as_keras(data, color_mode):
    expected = keras_decode(data, color_mode)
    actual = decode_image(data, color_mode)
    assert actual.dtype == np.uint8 and actual.flags.c_contiguous
    assert_array_equal(actual, expected)
    return actual


@pytest.mark.parametrize("color_mode", ["rgb", "grayscale"])
@pytest.mark.parametrize("options", [dict(quality=90), dict(quality=75, progressive=True), dict(subsampling=0),
                                     dict(subsampling=1), dict(quality=95, optimize=True)],
                         ids=["baseline", "progressive", "444", "422", "optimized"])
def test_jpeg_equals_keras(rgb, options, color_mode):
    same_as_keras(encode(Image.fromarray(rgb), "JPEG", **options), color_mode)


@settings(max_examples=15, deadline=None)
@given(h=st.integers(1, 40), w=st.integers(1, 40), quality=st.integers(30, 100), sub=st.sampled_from([0, 1, 2]),
       seed=st.integers(0, 2**16))
def test_jpeg_any_size_equals_keras(h, w, quality, sub, seed):
    image = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    data = encode(Image.fromarray(image), "JPEG", quality=quality, subsampling=sub)
    same_as_keras(data, "rgb")
    same_as_keras(data, "grayscale")


@pytest.mark.parametrize("color_mode", ["rgb", "grayscale"])
def test_grayscale_jpeg_under_rgb_has_three_equal_channels(rgb, color_mode):
    out = same_as_keras(encode(Image.fromarray(rgb).convert("L"), "JPEG", quality=90), color_mode)
    if color_mode == "rgb":
        assert out.shape[2] == 3 and (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()


@pytest.mark.parametrize("adobe", [True, False], ids=["adobe-marker", "no-adobe-marker"])
def test_cmyk_jpeg_to_rgb(rgb, adobe):
    data = encode(Image.fromarray(rgb).convert("CMYK"), "JPEG", quality=90)
    if not adobe:  # drop the APP14 "Adobe" segment: TF then reads the CMYK as not inverted
        i = data.find(b"\xff\xee")
        assert data[i + 4 : i + 9] == b"Adobe"
        data = data[:i] + data[i + 2 + struct.unpack(">H", data[i + 2 : i + 4])[0] :]
    out = same_as_keras(data, "rgb")
    if adobe:  # and it is the photo, give or take the JPEG round trip
        assert np.abs(out.astype(int) - rgb).mean() < 6


def test_cmyk_jpeg_under_grayscale_is_libjpeg_luma_of_the_rgb(rgb):
    """TF refuses (Keras stops); fastseq takes libjpeg's luma of the RGB it gives under "rgb"."""
    data = encode(Image.fromarray(rgb).convert("CMYK"), "JPEG", quality=90)
    with pytest.raises(Exception):  # noqa: B017 - TensorFlow's error class differs between versions
        keras_decode(data, "grayscale")
    r, g, b = (keras_decode(data, "rgb")[..., k].astype(np.int64) for k in range(3))
    assert_array_equal(decode_image(data, "grayscale")[..., 0], (19595 * r + 38470 * g + 7471 * b + 32768) >> 16)


@pytest.mark.parametrize("mode", ["RGB", "L", "CMYK"], ids=["rgb-jpeg", "grayscale-jpeg", "cmyk-jpeg"])
def test_jpeg_under_rgba_is_opaque(rgb, mode):
    """TF refuses 4 channels for JPEG (Keras stops); fastseq gives Keras' RGB plus alpha 255."""
    data = encode(Image.fromarray(rgb).convert(mode), "JPEG", quality=90)
    with pytest.raises(Exception, match="4 channels"):
        keras_decode(data, "rgba")
    out = decode_image(data, "rgba")
    assert_array_equal(out[..., :3], keras_decode(data, "rgb"))
    assert (out[..., 3] == 255).all()


def rgba_of(rgb):
    return Image.merge("RGBA", (*Image.fromarray(rgb).split(), Image.fromarray(rgb[..., 0] // 2 + 7)))


@pytest.mark.parametrize("color_mode", ["grayscale", "rgb", "rgba"])
@pytest.mark.parametrize("kind", ["rgb", "rgba", "palette", "palette-trns", "gray", "gray-alpha"])
def test_png_equals_keras(rgb, kind, color_mode):
    """Palette PNG -> RGB, RGBA PNG under rgb drops alpha (rgba keeps it), grey PNG under rgb: three channels."""
    image = {
        "rgb": lambda: Image.fromarray(rgb),
        "rgba": lambda: rgba_of(rgb),
        "palette": lambda: Image.fromarray(rgb).convert("P", palette=Image.ADAPTIVE),
        "palette-trns": lambda: Image.fromarray(rgb).convert("P", palette=Image.ADAPTIVE),
        "gray": lambda: Image.fromarray(rgb).convert("L"),
        "gray-alpha": lambda: Image.merge("LA", (Image.fromarray(rgb).convert("L"), Image.fromarray(rgb[..., 1]))),
    }[kind]()
    data = encode(image, "PNG", **({"transparency": 3} if kind == "palette-trns" else {}))
    out = same_as_keras(data, color_mode)
    if kind == "rgba" and color_mode == "rgba":
        assert_array_equal(out[..., 3], rgb[..., 0] // 2 + 7)


@pytest.mark.parametrize("color_mode", ["grayscale", "rgb", "rgba"])
@pytest.mark.parametrize("channels", [1, 2, 3, 4], ids=["gray16", "gray-alpha16", "rgb16", "rgba16"])
def test_16bit_png_keeps_the_high_byte_never_clips(channels, color_mode):
    values = np.random.default_rng(channels).integers(0, 65536, (19, 23, channels), dtype=np.uint16)
    values[0, 0] = 65535  # clipping would show here: 65535 -> 255, not 255 -> 255 only
    data = png16(values)
    if channels >= 3 and color_mode == "grayscale":
        # libpng weighs the 16-bit samples, fastseq the 8-bit ones: within 1 level.
        diff = decode_image(data, color_mode).astype(int) - keras_decode(data, color_mode)
        assert np.abs(diff).max() <= 1
        return
    out = same_as_keras(data, color_mode)
    if channels == 1:
        assert_array_equal(out[..., 0], values[..., 0] >> 8)
        assert out.max() == 255 and len(np.unique(out)) > 200  # scaled over the whole range


def test_low_bit_depth_grey_png_under_rgba_is_opaque(rgb):
    """TF gives alpha 1 for a 1-bit grey PNG under rgba (a libpng filler quirk); fastseq gives 255."""
    data = encode(Image.fromarray(rgb).convert("1"), "PNG")
    expected = keras_decode(data, "rgba")
    out = decode_image(data, "rgba")
    assert_array_equal(out[..., :3], expected[..., :3])
    assert (expected[..., 3] == 1).all() and (out[..., 3] == 255).all()
    same_as_keras(data, "rgb")
    same_as_keras(data, "grayscale")


def gif_frames(rgb, n=3):
    return [Image.fromarray(np.roll(rgb, 9 * k, axis=1)).convert("P", palette=Image.ADAPTIVE) for k in range(n)]


def test_gif_first_frame(rgb):
    frames = gif_frames(rgb)
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=80, loop=0)
    out = same_as_keras(data, "rgb")
    assert_array_equal(out, np.asarray(frames[0].convert("RGB")))


def test_gif_transparent_pixels_are_black_as_tf(rgb):
    frame = gif_frames(rgb, 1)[0]
    index = int(np.bincount(np.asarray(frame).ravel()).argmax())
    data = encode(frame, "GIF", transparency=index)
    out = same_as_keras(data, "rgb")
    mask = np.asarray(frame) == index
    assert mask.any() and (out[mask] == 0).all()
    # TF refuses grayscale and rgba GIFs (Keras stops); fastseq: libpng's grey weights, alpha 0 where transparent.
    rgba = decode_image(data, "rgba")
    assert_array_equal(rgba[..., :3], out)
    assert_array_equal(rgba[..., 3], np.where(mask, 0, 255))
    r, g, b = (out[..., k].astype(np.int64) for k in range(3))
    assert_array_equal(decode_image(data, "grayscale")[..., 0], (9797 * r + 19234 * g + 3737 * b) >> 15)


@pytest.mark.parametrize("color_mode", ["rgb", "rgba"])
def test_bmp_equals_keras(rgb, color_mode):
    same_as_keras(encode(Image.fromarray(rgb), "BMP"), color_mode)
    same_as_keras(encode(Image.fromarray(rgb).convert("L"), "BMP"), color_mode)
    out = same_as_keras(encode(rgba_of(rgb), "BMP"), color_mode)  # 32-bit: TF keeps the fourth byte as alpha
    if color_mode == "rgba":
        assert_array_equal(out[..., 3], rgb[..., 0] // 2 + 7)


def test_palette_bmp_gets_its_colours(rgb):
    """TF misreads an 8-bit palette BMP (it takes the indices); fastseq gives the palette's colours."""
    image = Image.fromarray(rgb).convert("P", palette=Image.ADAPTIVE)
    assert_array_equal(decode_image(encode(image, "BMP")), np.asarray(image.convert("RGB")))


TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
             5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
             8: Image.Transpose.ROTATE_90}


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_exif_orientation_upright_by_default_raw_as_keras_on_request(rgb, orientation, fmt):
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(Image.fromarray(rgb), fmt, exif=exif.tobytes(), **({"quality": 90} if fmt == "JPEG" else {}))
    raw = decode_image(data, exif_transpose=False)
    assert_array_equal(raw, keras_decode(data, "rgb"))  # Keras ignores the tag
    upright = decode_image(data)
    expected = raw if orientation == 1 else np.asarray(Image.fromarray(raw).transpose(TRANSPOSE[orientation]))
    assert_array_equal(upright, expected)
    if fmt == "JPEG":
        assert jpeg_orientation(data) == orientation
        # The same geometry Pillow's own exif_transpose gives (Pillow's decode differs by its DCT, so compare shape).
        assert upright.shape == np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data)))).shape


@pytest.mark.parametrize("color_mode", ["grayscale", "rgb", "rgba"])
def test_max_side_shrinks_the_long_side_with_lanczos(rgb, color_mode):
    data = encode(Image.fromarray(rgb), "PNG")  # 53 x 71
    full = decode_image(data, color_mode)
    small = decode_image(data, color_mode, max_side=30)
    assert small.shape == (22, 30, CHANNELS[color_mode])  # 53 * 30 / 71 = 22.4
    mode = {"grayscale": "L", "rgb": "RGB", "rgba": "RGBA"}[color_mode]
    pil = Image.fromarray(full[..., 0] if color_mode == "grayscale" else full, mode)
    assert_array_equal(small.reshape(pil.resize((30, 22), Image.Resampling.LANCZOS).size[::-1] + (-1,)),
                       np.asarray(pil.resize((30, 22), Image.Resampling.LANCZOS)).reshape(small.shape))
    assert_array_equal(decode_image(data, color_mode, max_side=71), full)  # not larger than max_side: untouched
    assert stored_shape(io.BytesIO(data), color_mode, max_side=30) == small.shape


@pytest.mark.parametrize("content, match", [(b"", "empty file"), (b"plain text, not an image", "not an image format"),
                                            (None, "truncated")], ids=["zero-byte", "non-image", "truncated-jpeg"])
def test_unreadable_files_raise(rgb, content, match):
    if content is None:
        full = encode(Image.fromarray(rgb), "JPEG", quality=90)
        content = full[: len(full) // 2]
    with pytest.raises(Exception, match=match):
        decode_image(content)


def test_bad_arguments_are_named(rgb):
    data = encode(Image.fromarray(rgb), "PNG")
    with pytest.raises(ValueError, match="color_mode must be one of"):
        decode_image(data, "RGB")
    with pytest.raises(ValueError, match="max_side must be a positive int"):
        decode_image(data, max_side=0)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "BMP", "JPEG-big-header"])
def test_stored_shape_from_the_header_is_the_decoded_shape(rgb, tmp_path, fmt):
    path = tmp_path / "image"
    image = Image.fromarray(rgb)
    if fmt == "JPEG-big-header":  # the frame header lies past the first 64 KiB: Pillow reads it
        image.save(path, format="JPEG", icc_profile=bytes(200_000))
        assert path.read_bytes().find(b"\xff\xc0") > 1 << 16
    else:
        image.save(path, format=fmt)
    for color_mode in ("grayscale", "rgb", "rgba"):
        assert stored_shape(path, color_mode) == decode_image(path, color_mode).shape
        assert stored_shape(path, color_mode, max_side=40) == decode_image(path, color_mode, max_side=40).shape


def shipped_images():
    """Real photos and drawings an installed package ships (matplotlib's sample data)."""
    import matplotlib

    folder = Path(matplotlib.get_data_path()) / "sample_data"
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".gif", ".bmp"))


@pytest.mark.parametrize("color_mode", ["grayscale", "rgb", "rgba"])
def test_shipped_photos_equal_keras(color_mode):
    paths = shipped_images()
    assert any(p.suffix == ".jpg" for p in paths) and any(p.suffix == ".png" for p in paths)
    for path in paths:
        data = path.read_bytes()
        if color_mode == "rgba" and path.suffix == ".jpg":
            continue  # TF refuses 4 channels for JPEG: checked in test_jpeg_under_rgba_is_opaque
        same_as_keras(data, color_mode)


@pytest.mark.parametrize("offset", [(0, 0), (5, 4)], ids=["at-origin", "offset"])
def test_gif_whose_screen_is_larger_than_its_frame_as_tf(rgb, offset):
    """TF's canvas is the largest frame, not the GIF's logical screen: a 20x15 frame on a 30x25 screen gives 15x20."""
    frame = Image.fromarray(rgb[:15, :20]).convert("P", palette=Image.ADAPTIVE)
    for extra in ({}, {"save_all": True, "append_images": [frame.copy()], "duration": 50}):
        data = bytearray(encode(frame, "GIF", **extra))
        data[6:10] = struct.pack("<HH", 30, 25)  # the logical screen
        i = data.index(b"\x2c\x00\x00\x00\x00" + struct.pack("<HH", 20, 15))  # the first image descriptor
        data[i + 1 : i + 5] = struct.pack("<HH", *offset)
        out = same_as_keras(bytes(data), "rgb")
        assert out.shape == (15, 20, 3)
        left, top = offset
        assert_array_equal(out[top:, left:], np.asarray(frame.convert("RGB"))[: 15 - top, : 20 - left])
        assert (out[:top].sum() == 0) and (out[:, :left].sum() == 0)
