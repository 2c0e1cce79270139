"""Output checks shared by the benchmark suites: a fast wrong answer fails."""

import numpy as np


def denormalize(out, mean, std, atol=2e-3):
    """Float NHWC batch -> uint8 pixels, asserting each value was ``(p - mean[c]) / std[c]`` for an integer ``p``."""
    v = np.asarray(out, dtype=np.float64) * std + mean
    np.testing.assert_allclose(v, np.round(v), atol=atol, err_msg="values are not (pixel - mean) / std")
    assert v.min() > -0.5 and v.max() < 255.5, f"pixels outside 0..255: [{v.min()}, {v.max()}]"
    return np.round(v).astype(np.uint8)


def windows(patch, img, padding):
    """Every ``(top, left, flipped)`` where ``patch`` (h, w, C) is that window of the zero-padded ``img``."""
    if img.ndim == 2:
        img = img[:, :, None]
    padded = np.pad(img, ((padding, padding), (padding, padding), (0, 0)))
    h, w = patch.shape[:2]
    found = []
    for top in range(padded.shape[0] - h + 1):
        for left in range(padded.shape[1] - w + 1):
            win = padded[top : top + h, left : left + w]
            for flipped, cand in ((False, win), (True, win[:, ::-1])):
                if np.array_equal(cand, patch):
                    found.append((top, left, flipped))
    return found


def check_baseline(out, job, sources, samples=8):
    """Check a baseline's float32 NHWC batch for ``job``.

    Shape and dtype; every value a normalised integer pixel in 0..255; and the
    first ``samples`` outputs are (possibly flipped) crops of their zero-padded
    ``sources`` (source indices, one per output). Returns the
    ``(top, left, flipped)`` found for each checked sample.
    """
    out = np.asarray(out)
    assert out.dtype == np.float32, out.dtype
    assert out.shape == (len(sources), *job.crop, job.channels), out.shape
    assert np.isfinite(out).all()
    pixels = denormalize(out, job.mean, job.std)
    found = []
    for j in range(min(samples, len(sources))):
        f = windows(pixels[j], job.x[sources[j]], job.padding)
        assert f, f"output {j} is not a crop of padded source image {sources[j]}"
        found.append(f[0])
    return found
