"""The ragged image store: built once, reused, never stale, never half-written, one store for two builders."""

import json
import os
import pickle
import shutil
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st_
from numpy.testing import assert_array_equal
from PIL import Image

from fastseq.bench.photos import make_photo_folder, photo
from fastseq.photos import store as st
from fastseq.photos.decode import decode_image
from fastseq.ragged import RaggedImages

ROOT = Path(__file__).resolve().parent.parent


def listing(root):
    """Image files under ``root`` in a fixed order (the folders helper makes Keras' listing)."""
    exts = (".jpg", ".jpeg", ".png", ".gif", ".bmp")
    return sorted(str(p) for p in Path(root).rglob("*") if p.is_file() and p.suffix.lower() in exts)


@pytest.fixture
def folder(tmp_path):
    return make_photo_folder(tmp_path / "photos", n_images=12, n_classes=3, sizes=(30, 60), seed=1,
                             formats=("jpg", "png", "gif"))


@pytest.fixture
def counted(monkeypatch):
    """Count the files the store decodes (through its one decode function)."""
    calls = []
    real = st._decode_file
    lock = threading.Lock()

    def counting(path, options):
        with lock:
            calls.append(path)
        return real(path, options)

    monkeypatch.setattr(st, "_decode_file", counting)
    return calls


def assert_serves(store, files, **options):
    assert store.files == files
    assert isinstance(store.images, RaggedImages) and len(store.images) == len(files)
    for i, f in enumerate(files):
        assert_array_equal(store.images.image(i), decode_image(f, **options))


def test_build_once_then_reuse(folder, tmp_path, counted):
    files = listing(folder)
    first = st.build_or_open(folder, files, cache_dir=tmp_path / "cache", verbose=False)
    assert first.decoded == len(files) == len(counted) and first.skipped == []
    assert_serves(first, files)
    assert isinstance(first.images.pixels, np.memmap) or isinstance(first.images._pixels, np.memmap)
    again = st.build_or_open(folder, files, cache_dir=tmp_path / "cache", verbose=False)
    assert again.decoded == 0 and len(counted) == len(files) and again.path == first.path
    assert_serves(again, files)
    # In another order, or a subset (another split or class_names): served from the same store, nothing decoded.
    subset = files[::-3]
    part = st.build_or_open(folder, subset, cache_dir=tmp_path / "cache", verbose=False)
    assert part.decoded == 0 and part.path == first.path
    assert_serves(part, subset)


def test_layout_is_numpy_readable(folder, tmp_path):
    files = listing(folder)
    store = st.build_or_open(folder, files, cache_dir=tmp_path / "cache", color_mode="grayscale", verbose=False)
    d = store.path
    assert sorted(p.name for p in d.iterdir()) == ["manifest.json", "offsets.npy", "pixels.u8", "shapes.npy"]
    pixels = np.memmap(d / "pixels.u8", np.uint8, mode="r")
    offsets, shapes = np.load(d / "offsets.npy"), np.load(d / "shapes.npy")
    manifest = json.loads((d / "manifest.json").read_text())
    assert manifest["format"] == "fastseq.image-store" and manifest["version"] == 1
    assert manifest["root"] == str(folder) and manifest["options"] == {"color_mode": "grayscale",
                                                                      "exif_transpose": True, "max_side": None}
    assert manifest["paths"] == [str(Path(f).relative_to(folder).as_posix()) for f in files]
    assert manifest["sizes"] == [os.stat(f).st_size for f in files]
    assert manifest["mtime_ns"] == [os.stat(f).st_mtime_ns for f in files]
    for i, f in enumerate(files):
        h, w, c = shapes[i]
        assert c == 1
        assert_array_equal(pixels[offsets[i] : offsets[i] + h * w * c].reshape(h, w, c),
                           decode_image(f, "grayscale"))


def test_images_pickle_by_reference(folder, tmp_path):
    store = st.build_or_open(folder, listing(folder), cache_dir=tmp_path / "cache", verbose=False)
    blob = pickle.dumps(store.images)
    assert len(blob) < 10_000  # the memmap travels as its file name
    back = pickle.loads(blob)
    assert_array_equal(back.image(3), store.images.image(3))


def test_never_stale_and_only_changes_decoded(folder, tmp_path, counted):
    files = listing(folder)
    cache = tmp_path / "cache"
    st.build_or_open(folder, files, cache_dir=cache, verbose=False)
    counted.clear()
    changed, removed = files[2], files[5]
    new_pixels = photo(41, 37, seed=99)
    Image.fromarray(new_pixels).save(changed, format="PNG" if changed.endswith("png") else "GIF"
                                     if changed.endswith("gif") else "JPEG")
    os.utime(changed, ns=(time.time_ns(), time.time_ns() + 10**9))  # a new mtime even on a coarse clock
    os.remove(removed)
    added = str(folder / "class_1" / "nested" / "deeper" / "added.PNG")  # nested folder, upper-case extension
    Path(added).parent.mkdir(parents=True)
    Image.fromarray(photo(33, 45, seed=98)).save(added, format="PNG")
    now = listing(folder)
    assert added in now and removed not in now
    store = st.build_or_open(folder, now, cache_dir=cache, verbose=False)
    assert sorted(counted) == sorted([changed, added]) and store.decoded == 2
    assert_serves(store, now)
    assert store.images.image(now.index(changed)).shape[:2] == (41, 37)
    # The old generation is gone, the new one is current; a further call decodes nothing.
    assert [p.name for p in store.path.parent.iterdir() if p.name.startswith("gen-")] == [store.path.name]
    assert st.build_or_open(folder, now, cache_dir=cache, verbose=False).decoded == 0
    # Asking for a file that was removed: reported as skipped, never served from the old store.
    with pytest.warns(st.SkippedImageWarning, match="no such file"):
        gone = st.build_or_open(folder, files, cache_dir=cache, verbose=False)
    assert removed in gone.skipped and removed not in gone.files


def test_each_color_mode_and_option_has_its_own_store(folder, tmp_path):
    files = listing(folder)
    paths = set()
    for kw in ({}, {"color_mode": "grayscale"}, {"color_mode": "rgba"}, {"exif_transpose": False},
               {"max_side": 40}):
        store = st.build_or_open(folder, files, cache_dir=tmp_path / "cache", verbose=False, **kw)
        assert store.decoded == len(files)
        assert_serves(store, files, **kw)
        assert store.images.channels == {"grayscale": 1, "rgba": 4}.get(kw.get("color_mode"), 3)
        paths.add(store.path.parent)
    assert len(paths) == 5


def test_max_side_caps_the_stored_long_side(folder, tmp_path):
    files = listing(folder)
    store = st.build_or_open(folder, files, cache_dir=tmp_path / "cache", max_side=35, verbose=False)
    assert store.images.shapes[:, :2].max() == 35
    full = st.build_or_open(folder, files, cache_dir=tmp_path / "cache", verbose=False)
    assert full.images.shapes[:, :2].max() > 35
    small_already = full.images.shapes[:, :2].max(axis=1) <= 35
    assert_array_equal(store.images.shapes[small_already], full.images.shapes[small_already])


def test_where_the_cache_lives(tmp_path, monkeypatch):
    monkeypatch.delenv("FASTSEQ_CACHE_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert st.default_cache_dir() == tmp_path / "home" / ".cache" / "fastseq"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert st.default_cache_dir() == tmp_path / "xdg" / "fastseq"
    monkeypatch.setenv("FASTSEQ_CACHE_DIR", str(tmp_path / "env"))
    assert st.default_cache_dir() == tmp_path / "env"
    d = st.store_dir(tmp_path / "My Photos")
    assert d.parent == tmp_path / "env" / "images" and d.name.startswith("My_Photos-")
    assert st.store_dir(tmp_path / "My Photos", cache_dir=tmp_path / "arg").parent == tmp_path / "arg" / "images"
    assert st.store_dir(tmp_path / "a") != st.store_dir(tmp_path / "b")
    assert st.store_dir(tmp_path / "a") != st.store_dir(tmp_path / "a", color_mode="grayscale")


def test_env_var_is_used_by_build_or_open(folder, tmp_path, monkeypatch):
    monkeypatch.setenv("FASTSEQ_CACHE_DIR", str(tmp_path / "from-env"))
    store = st.build_or_open(folder, listing(folder), verbose=False)
    assert tmp_path / "from-env" in store.path.parents


def test_unreadable_files_warn_once_each_and_the_rest_is_served(folder, tmp_path, counted):
    files = listing(folder)
    empty = folder / "class_0" / "empty.jpg"
    empty.write_bytes(b"")
    truncated = folder / "class_1" / "truncated.jpg"
    truncated.write_bytes(Path(files[0]).read_bytes()[:300])
    text = folder / "class_2" / "notes.png"
    text.write_text("not an image at all")
    bad = [str(empty), str(truncated), str(text)]
    everything = listing(folder)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        store = st.build_or_open(folder, everything, cache_dir=tmp_path / "cache", verbose=False)
    messages = [str(w.message) for w in caught if issubclass(w.category, st.SkippedImageWarning)]
    assert len(messages) == 3 and all(sum(b in m for m in messages) == 1 for b in bad)
    assert "empty file" in store.reasons[str(empty)] and "not an image" in store.reasons[str(text)]
    assert store.skipped == [f for f in everything if f in bad]
    assert_serves(store, [f for f in everything if f not in bad])
    # Recorded in the store: the next call warns again but decodes nothing.
    counted.clear()
    with pytest.warns(st.SkippedImageWarning):
        again = st.build_or_open(folder, everything, cache_dir=tmp_path / "cache", verbose=False)
    assert counted == [] and again.skipped == store.skipped
    # strict: an error naming each file.
    with pytest.raises(ValueError, match="could not be decoded") as err:
        st.build_or_open(folder, everything, cache_dir=tmp_path / "cache", verbose=False, strict=True)
    assert all(b in str(err.value) for b in bad) and "strict=False" in str(err.value)
    # Fixed on disk: decoded again and served.
    Image.fromarray(photo(20, 20, seed=5)).save(empty, format="JPEG")
    counted.clear()
    with pytest.warns(st.SkippedImageWarning) as caught:
        fixed = st.build_or_open(folder, everything, cache_dir=tmp_path / "cache", verbose=False)
    assert counted == [str(empty)] and len(caught) == 2
    assert str(empty) in fixed.files and str(empty) not in fixed.skipped


def test_disk_too_small_is_refused_with_the_numbers_and_the_fix(folder, tmp_path, monkeypatch):
    files = listing(folder)
    need = sum(decode_image(f).size for f in files)
    monkeypatch.setattr(st.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**12, 10**12 - 1000, 1000))
    with pytest.raises(st.StoreSpaceError) as err:
        st.build_or_open(folder, files, cache_dir=tmp_path / "cache", verbose=False)
    message = str(err.value)
    assert f"{need / 1e9:.2f} GB" in message and "0.00 GB free" in message and "cache_dir" in message
    assert "max_side" in message and str(tmp_path) in message
    assert not list((tmp_path / "cache").rglob("pixels.u8"))


def test_size_is_printed_before_building(folder, tmp_path, capsys):
    files = listing(folder)
    need = sum(decode_image(f).size for f in files)
    st.build_or_open(folder, files, cache_dir=tmp_path / "cache", verbose=True)
    err = capsys.readouterr().err
    assert f"{need / 1e6:.1f} MB" in err and str(tmp_path / "cache") in err and f"decoding {len(files)} of" in err
    st.build_or_open(folder, files, cache_dir=tmp_path / "cache", verbose=True)
    assert capsys.readouterr().err == ""  # reused: silent


def test_build_memory_stays_flat(tmp_path):
    folder = make_photo_folder(tmp_path / "photos", n_images=60, n_classes=2, sizes=(200, 300), seed=2)
    files = listing(folder)
    tracemalloc.start()
    store = st.build_or_open(folder, files, cache_dir=tmp_path / "cache", verbose=False, workers=2)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    total = store.images.nbytes
    assert total > 8e6
    assert peak < total / 4, f"peak {peak / 1e6:.1f} MB while building a {total / 1e6:.1f} MB store"


def test_open_store_reads_a_cache_entry_or_a_generation(folder, tmp_path):
    files = listing(folder)
    built = st.build_or_open(folder, files, cache_dir=tmp_path / "cache", verbose=False)
    for where in (built.path, built.path.parent):
        opened = st.open_store(where)
        assert opened.path == built.path and opened.files == files and opened.decoded == 0
        assert_array_equal(opened.images.pixels, built.images.pixels)
    with pytest.raises(FileNotFoundError, match="not a fastseq image store"):
        st.open_store(tmp_path)


def test_bad_arguments_are_named(folder, tmp_path):
    files = listing(folder)
    with pytest.raises(ValueError, match="inside root"):
        st.build_or_open(folder / "class_0", files, cache_dir=tmp_path / "cache")
    with pytest.raises(ValueError, match="color_mode"):
        st.build_or_open(folder, files, color_mode="RGB", cache_dir=tmp_path / "cache")
    with pytest.raises(ValueError, match="max_side"):
        st.build_or_open(folder, files, max_side=-1, cache_dir=tmp_path / "cache")
    with pytest.raises(TypeError, match="exif_transpose"):
        st.build_or_open(folder, files, exif_transpose="yes", cache_dir=tmp_path / "cache")


BUILDER = textwrap.dedent("""
    import json, sys, time
    from fastseq.photos import store as st
    root, cache, listing, delay = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    real = st._decode_file
    def slow(path, options):
        time.sleep(delay)
        return real(path, options)
    st._decode_file = slow
    files = json.loads(open(listing).read())
    s = st.build_or_open(root, files, cache_dir=cache, verbose=False, workers=2)
    print(json.dumps({"decoded": s.decoded, "path": str(s.path), "n": len(s.files)}))
""")


def spawn(tmp_path, folder, files, delay):
    script = tmp_path / "builder.py"
    script.write_text(BUILDER)
    lst = tmp_path / "files.json"
    lst.write_text(json.dumps(files))
    return subprocess.Popen([sys.executable, str(script), str(folder), str(tmp_path / "cache"), str(lst), str(delay)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_a_build_killed_half_way_leaves_nothing_that_looks_complete(folder, tmp_path, counted):
    files = listing(folder)
    proc = spawn(tmp_path, folder, files, delay=0.5)
    deadline = time.time() + 60
    pixels = []
    while time.time() < deadline and not any(p.stat().st_size for p in pixels):
        time.sleep(0.05)
        pixels = list((tmp_path / "cache").rglob(".tmp-*/pixels.u8"))
    assert pixels, "the builder never started writing"
    proc.kill()
    proc.wait()
    keydir = pixels[0].parent.parent
    assert not (keydir / "current").exists() and not list(keydir.glob("gen-*"))
    with pytest.raises(FileNotFoundError):
        st.open_store(keydir)
    store = st.build_or_open(folder, files, cache_dir=tmp_path / "cache", verbose=False)
    assert store.decoded == len(files)
    assert_serves(store, files)
    assert not list(keydir.glob(".tmp-*"))  # the dead build's leftovers are gone


@pytest.mark.slow
def test_two_processes_building_at_once_end_with_one_store(folder, tmp_path):
    files = listing(folder)
    procs = [spawn(tmp_path, folder, files, delay=0.05) for _ in range(2)]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert sorted(r["decoded"] for r in results) == [0, len(files)]  # one built it, the other reused it
    assert results[0]["path"] == results[1]["path"]
    keydir = Path(results[0]["path"]).parent
    assert [p.name for p in keydir.glob("gen-*")] == [Path(results[0]["path"]).name]
    assert not list(keydir.glob(".tmp-*"))
    assert_serves(st.open_store(keydir), files)


def test_upper_case_extensions_and_nested_folders(tmp_path):
    root = tmp_path / "photos"
    names = ["a/IMG_0001.JPG", "a/deep/er/IMG_0002.JPEG", "b/x.PNG", "b/y/z.Gif", "b/w.BMP"]
    for k, name in enumerate(names):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".gif": "GIF", ".bmp": "BMP"}[path.suffix.lower()]
        Image.fromarray(photo(20 + k, 30 - k, seed=k)).save(path, format=fmt)
    files = [str(root / n) for n in names]
    store = st.build_or_open(root, files, cache_dir=tmp_path / "cache", verbose=False)
    assert store.skipped == []
    assert_serves(store, files)
    assert json.loads((store.path / "manifest.json").read_text())["paths"] == names


def test_an_empty_listing_gives_an_empty_store(tmp_path):
    (tmp_path / "photos").mkdir()
    store = st.build_or_open(tmp_path / "photos", [], cache_dir=tmp_path / "cache", verbose=False)
    assert len(store.images) == 0 and store.files == [] and store.skipped == []
    assert st.build_or_open(tmp_path / "photos", [], cache_dir=tmp_path / "cache", verbose=False).decoded == 0


def test_a_lock_the_file_system_refuses_still_builds(folder, tmp_path, monkeypatch):
    import fcntl

    def refuse(fd, op):
        raise OSError(37, "No locks available")

    monkeypatch.setattr(fcntl, "flock", refuse)
    files = listing(folder)
    store = st.build_or_open(folder, files, cache_dir=tmp_path / "cache", verbose=False)
    assert_serves(store, files)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st_.lists(st_.tuples(st_.sampled_from(["modify", "add", "delete", "noop"]), st_.integers(0, 50),
                                st_.sampled_from(["JPEG", "PNG"])), min_size=1, max_size=4))
def test_any_sequence_of_edits_is_served_fresh(ops):
    """After any edits, the store serves exactly what a fresh decode gives, decoding only the edited files."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        root = make_photo_folder(tmp / "photos", n_images=4, n_classes=2, sizes=(16, 24), seed=3)
        clock = [time.time_ns()]

        def touch(path):  # a strictly newer mtime, whatever the file system's timestamp granularity
            clock[0] += 10**9
            os.utime(path, ns=(clock[0], clock[0]))

        calls = []
        real = st._decode_file

        def counting(path, options):
            calls.append(path)
            return real(path, options)

        st._decode_file = counting
        try:
            st.build_or_open(root, listing(root), cache_dir=tmp / "cache", verbose=False)
            for k, (op, which, fmt) in enumerate(ops):
                files = listing(root)
                expected = set()
                if op == "modify" and files:
                    target = files[which % len(files)]
                    Image.fromarray(photo(17 + k, 19, seed=100 + k)).save(
                        target, format="PNG" if target.endswith("png") else "JPEG")
                    touch(target)
                    expected.add(target)
                elif op == "add":
                    target = root / f"class_{which % 2}" / f"new_{k}.{fmt.lower()}"
                    Image.fromarray(photo(18, 15 + k, seed=200 + k)).save(target, format=fmt)
                    touch(target)
                    expected.add(str(target))
                elif op == "delete" and files:
                    os.remove(files[which % len(files)])
                calls.clear()
                now = listing(root)
                store = st.build_or_open(root, now, cache_dir=tmp / "cache", verbose=False)
                assert set(calls) == expected and len(calls) == len(expected)
                assert_serves(store, now)
        finally:
            st._decode_file = real


def test_files_are_named_as_given(folder, tmp_path, monkeypatch):
    """Relative paths (Keras' file_paths for a relative directory) come back as given, in the given order."""
    monkeypatch.chdir(folder.parent)
    files = [os.path.relpath(f) for f in listing(folder)][::-1]
    store = st.build_or_open(folder.name, files, cache_dir=tmp_path / "cache", verbose=False)
    assert store.files == files and not os.path.isabs(files[0])
    assert_array_equal(store.images.image(0), decode_image(files[0]))
    again = st.build_or_open(folder.name, [Path(f) for f in files], cache_dir=tmp_path / "cache", verbose=False)
    assert again.decoded == 0 and again.files == files
