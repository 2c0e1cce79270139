"""fastseq's photo-folder listing and splits against Keras' own, on the same folders.

Keras lists a folder without opening a file, so the listing trees here hold
empty files: what is compared is which paths Keras and fastseq take, in which
order, with which labels and class names, for each split. The pixels and the
sequences are tested in ``test_folder_sequence.py``.
"""

import os
import warnings

import numpy as np
import pytest

from fastseq.photos import listing as folders

keras = pytest.importorskip("keras")
from keras.src.utils import dataset_utils  # noqa: E402  (Keras' own listing, the reference)


def touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")


def make_tree(root):
    """A folder with every listing corner Keras has: nested, upper-case, hidden and non-image files."""
    names = {
        "cats": ["c1.jpg", "c2.JPG", "c3.jpeg", "C4.PNG", "sub/c5.png", "sub/deeper/c6.gif", ".hidden.jpg",
                 "notes.txt", "c7.jpg.bak", "c8.bmp", ".cache/c9.jpg", "z10.Jpeg"],
        "dogs": ["d1.png", "d2.jpg", "d3.jpg", "a/d4.jpg", "b/d5.jpg", "b/d6.JPEG", "d7.tiff", "d8.webp"],
        "birds": ["b1.jpg", "b2.jpg", "b3.bmp", "b4.GIF", "b5.png", "b6.jpg", "b7.jpg"],
        ".hidden_class": ["h1.jpg", "h2.jpg"],
        "": ["top1.jpg", "top2.png", "readme.md"],
    }
    for cls, files in names.items():
        for f in files:
            touch(root / cls / f)
    return root


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return make_tree(tmp_path_factory.mktemp("tree") / "photos")


def keras_listing(directory, labels="inferred", class_names=None, shuffle=True, seed=None, follow_links=False,
                  validation_split=None, subset=None):
    """Keras' (paths, labels, class_names) per split, from Keras' own functions."""
    paths, lab, names = dataset_utils.index_directory(
        str(directory), labels if not isinstance(labels, np.ndarray) else list(labels),
        formats=folders.ALLOWLIST_FORMATS, class_names=class_names, shuffle=shuffle, seed=seed,
        follow_links=follow_links, verbose=False,
    )
    if labels is not None and not isinstance(labels, str):
        lab = np.asarray(lab)
    subsets = ["training", "validation"] if subset == "both" else [subset]
    return [dataset_utils.get_training_or_validation_split(paths, lab, validation_split, s) for s in subsets], names


def keras_paths(directory, **kwargs):
    """``file_paths`` of the dataset(s) keras.utils.image_dataset_from_directory returns."""
    ds = keras.utils.image_dataset_from_directory(str(directory), verbose=False, **kwargs)
    ds = ds if isinstance(ds, (list, tuple)) else [ds]
    return [d.file_paths for d in ds], ds[0].class_names


@pytest.mark.parametrize("seed", [0, 1, 1234])
@pytest.mark.parametrize("validation_split,subset", [(None, None), (0.2, "training"), (0.2, "validation"),
                                                     (0.5, "both"), (0.33, "both")])
@pytest.mark.parametrize("shuffle", [True, False])
def test_same_files_labels_and_split_as_keras(tree, seed, validation_split, subset, shuffle):
    ours = folders.list_folder(str(tree), seed=seed, shuffle=shuffle, validation_split=validation_split,
                               subset=subset, verbose=False)
    theirs, names = keras_listing(tree, seed=seed, shuffle=shuffle, validation_split=validation_split, subset=subset)
    paths, keras_names = keras_paths(tree, seed=seed, shuffle=shuffle, validation_split=validation_split,
                                     subset=subset)
    assert ours.class_names == names == keras_names == ["birds", "cats", "dogs"]
    assert len(ours.splits) == len(theirs) == len(paths)
    for split, (kpaths, klabels), kds_paths in zip(ours.splits, theirs, paths):
        assert split.file_paths == kpaths == kds_paths
        np.testing.assert_array_equal(split.labels, klabels)
        assert split.labels.dtype == np.int32
    if subset in (None, "both"):
        assert sorted(sum((s.file_paths for s in ours.splits), [])) == sorted(ours.files)
    # What a reader checks by eye: nested, upper-case and hidden files are in; the rest is out.
    base = [os.path.relpath(p, tree) for p in ours.files]
    for expected in ("cats/C4.PNG", "cats/sub/deeper/c6.gif", "cats/.hidden.jpg", "cats/.cache/c9.jpg",
                     "cats/z10.Jpeg", "dogs/b/d6.JPEG"):
        assert expected in base
    for excluded in ("cats/notes.txt", "cats/c7.jpg.bak", "dogs/d7.tiff", "dogs/d8.webp", ".hidden_class/h1.jpg",
                     "top1.jpg"):
        assert excluded not in base
    if validation_split:
        n = len(ours.files)
        assert len(ours.splits[-1].file_paths) == (int(validation_split * n) if subset != "training"
                                                   else n - int(validation_split * n))


@pytest.mark.parametrize("seed", [3, 77])
def test_no_labels_lists_the_whole_tree_like_keras(tree, seed):
    for kwargs in ({"labels": None}, {"label_mode": None}):
        ours = folders.list_folder(str(tree), seed=seed, verbose=False, **kwargs)
        [(theirs, _)], _ = keras_listing(tree, labels=None, seed=seed)
        paths, names = keras_paths(tree, seed=seed, **kwargs)
        assert ours.splits[0].file_paths == theirs == paths[0]
        assert ours.splits[0].labels is None and ours.class_names is None and names is None
        assert os.path.join(str(tree), "top1.jpg") in ours.files  # top level and hidden class folder too
        assert os.path.join(str(tree), ".hidden_class/h1.jpg") in ours.files


@pytest.mark.parametrize("shuffle,seed", [(False, None), (True, 5), (True, 99)])
def test_labels_as_a_list_like_keras(tree, shuffle, seed):
    n = len(folders.list_folder(str(tree), labels=None, shuffle=False, verbose=False).files)
    given = [(i * 7) % 3 for i in range(n)]
    ours = folders.list_folder(str(tree), labels=given, shuffle=shuffle, seed=seed, validation_split=0.25,
                               subset="both", verbose=False)
    theirs, names = keras_listing(tree, labels=list(given), shuffle=shuffle, seed=seed, validation_split=0.25,
                                  subset="both")
    paths, _ = keras_paths(tree, labels=list(given), shuffle=shuffle, seed=seed, validation_split=0.25,
                           subset="both")
    assert ours.class_names == names == ["0", "1", "2"]
    for split, (kpaths, klabels), kp in zip(ours.splits, theirs, paths):
        assert split.file_paths == kpaths == kp
        np.testing.assert_array_equal(split.labels, klabels)
    assert given == [(i * 7) % 3 for i in range(n)]  # the caller's list is not shuffled in place


@pytest.mark.parametrize("class_names", [["dogs", "cats"], ["cats"], ["birds", "dogs", "cats"]])
def test_class_names_given_keep_their_order_like_keras(tree, class_names):
    ours = folders.list_folder(str(tree), class_names=class_names, seed=11, verbose=False)
    (theirs, names) = keras_listing(tree, class_names=class_names, seed=11)
    paths, knames = keras_paths(tree, class_names=class_names, seed=11)
    assert ours.class_names == names == knames == class_names
    assert ours.splits[0].file_paths == theirs[0][0] == paths[0]
    np.testing.assert_array_equal(ours.splits[0].labels, theirs[0][1])


def test_follow_links_like_keras(tmp_path):
    root = make_tree(tmp_path / "p")
    outside = tmp_path / "elsewhere"
    touch(outside / "o1.jpg")
    touch(outside / "o2.png")
    os.symlink(outside, root / "dogs" / "linked")
    os.symlink(outside / "o1.jpg", root / "birds" / "file_link.jpg")
    for follow in (False, True):
        ours = folders.list_folder(str(root), follow_links=follow, shuffle=False, verbose=False)
        [(theirs, _)], _ = keras_listing(root, follow_links=follow, shuffle=False)
        assert ours.splits[0].file_paths == theirs
        assert (os.path.join(str(root), "dogs/linked/o1.jpg") in ours.files) is follow
        assert os.path.join(str(root), "birds/file_link.jpg") in ours.files


def test_pathlib_and_trailing_slash_give_keras_strings(tree):
    for directory in (tree, str(tree) + "/"):
        ours = folders.list_folder(directory, shuffle=False, verbose=False)
        paths, _ = keras_paths(directory, shuffle=False)
        assert ours.splits[0].file_paths == paths[0]
        assert all(isinstance(p, str) for p in ours.files)


def test_seed_none_draws_a_seed_like_keras(tree):
    a = folders.list_folder(str(tree), verbose=False)
    b = folders.list_folder(str(tree), verbose=False)
    assert 0 <= a.seed < 10**6 and 0 <= b.seed < 10**6
    np.random.seed(4)
    c = folders.list_folder(str(tree), verbose=False)
    np.random.seed(4)
    [(theirs, _)], _ = keras_listing(tree, seed=np.random.randint(1e6))
    assert c.splits[0].file_paths == theirs


def test_verbose_prints_keras_lines(tree, capsys):
    folders.list_folder(str(tree), seed=1, validation_split=0.2, subset="both")
    out = capsys.readouterr().out
    n = len(folders.list_folder(str(tree), verbose=False).files)
    assert f"Found {n} files belonging to 3 classes." in out
    assert f"Using {n - int(0.2 * n)} files for training." in out
    assert f"Using {int(0.2 * n)} files for validation." in out
    folders.list_folder(str(tree), seed=1, validation_split=0.2, subset="both", verbose=False)
    assert capsys.readouterr().out == ""


def test_label_targets_have_keras_dtypes_and_shapes():
    labels = np.array([0, 1, 1, 0], np.int32)
    y, k = folders.label_targets(labels, "int", 2)
    assert y.dtype == np.int32 and y.shape == (4,) and k is None
    y, k = folders.label_targets(labels, "binary", 2)
    assert y.dtype == np.float32 and y.shape == (4, 1) and k is None
    np.testing.assert_array_equal(y[:, 0], labels)
    y, k = folders.label_targets(labels, "categorical", 2)
    assert k == 2 and y.dtype == np.int32
    assert folders.label_targets(labels, None, 2) == (None, None)


# ---- errors: Keras raises the same type; ours name the argument and the fix ----------------------


def both_raise(tree, kind, match, **kwargs):
    with pytest.raises(kind) as theirs:
        keras.utils.image_dataset_from_directory(str(tree), verbose=False, **kwargs)
    with pytest.raises(kind, match=match):
        folders.list_folder(str(tree), verbose=False, **{k: v for k, v in kwargs.items() if k != "image_size"})
    return theirs


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"labels": "folders"}, "`labels` must be 'inferred'"),
        ({"labels": [0, 1], "class_names": ["cats"]}, "only pass `class_names` if"),
        ({"label_mode": "sparse"}, "`label_mode` must be one of"),
        ({"color_mode": "cmyk"}, "`color_mode` must be one of"),
        ({"validation_split": 1.5, "subset": "training", "seed": 1}, "between 0 and 1"),
        ({"validation_split": 0.2}, "`validation_split` must be set, and inversely"),
        ({"subset": "training"}, "`validation_split` must be set, and inversely"),
        ({"validation_split": 0.2, "subset": "train", "seed": 1}, '`subset` must be either "training"'),
        ({"validation_split": 0.2, "subset": "training"}, "must provide a `seed`"),
        ({"class_names": ["cats", "wolves"]}, r"\['wolves'\] are not subfolders"),
        ({"labels": None, "class_names": ["cats"]}, "cannot be specified"),
        ({"labels": [0, 1, 2]}, "len\\(labels\\) is 3 while we found"),
        ({"label_mode": "binary"}, "exactly 2 class_names"),
    ],
)
def test_keras_errors(tree, kwargs, match):
    both_raise(tree, ValueError, match, **kwargs)


def test_empty_folder_and_folder_without_class_subfolders(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    both_raise(empty, ValueError, "No images found in directory .* no class subfolders")
    flat = tmp_path / "flat"
    touch(flat / "a.jpg")
    touch(flat / "b.png")
    both_raise(flat, ValueError, "2 image\\(s\\) at its top level but no class subfolders.*labels=None")
    only_text = tmp_path / "text"
    touch(only_text / "a" / "x.txt")
    both_raise(only_text, ValueError, r"No images found.*class subfolders \['a'\] hold no image files")


def test_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError):
        keras.utils.image_dataset_from_directory(str(tmp_path / "nope"), verbose=False)
    for labels in ("inferred", None):
        with pytest.raises(FileNotFoundError, match="does not exist"):
            folders.list_folder(str(tmp_path / "nope"), labels=labels, verbose=False)
    touch(tmp_path / "file.jpg")
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        folders.list_folder(str(tmp_path / "file.jpg"), verbose=False)


def test_class_without_images_is_kept_like_keras_with_a_warning(tmp_path):
    root = tmp_path / "p"
    touch(root / "a" / "1.jpg")
    touch(root / "a" / "2.jpg")
    (root / "b").mkdir()
    touch(root / "c" / "3.jpg")
    _, knames = keras_paths(root, shuffle=False)
    with pytest.warns(UserWarning, match=r"\['b'\].*keep their label index \(1\)"):
        ours = folders.list_folder(str(root), shuffle=False, verbose=False)
    assert ours.class_names == knames == ["a", "b", "c"]
    np.testing.assert_array_equal(ours.splits[0].labels, [0, 0, 2])


def test_where_keras_is_silently_wrong_we_raise(tree, tmp_path):
    n = len(folders.list_folder(str(tree), labels=None, verbose=False).files)
    # int(0.01 * n) == 0: Keras would train on nothing or validate on everything.
    for subset in ("training", "validation", "both"):
        with pytest.raises(ValueError, match="keeps int.* = 0 files for validation"):
            folders.list_folder(str(tree), validation_split=0.5 / n, subset=subset, seed=1, verbose=False)
    with pytest.raises(ValueError, match="more than once"):
        folders.list_folder(str(tree), class_names=["cats", "cats"], verbose=False)
    with pytest.raises(ValueError, match="all-zero row"):
        folders.list_folder(str(tree), labels=[0, 2] * (n // 2) + [0] * (n % 2), label_mode="categorical",
                            verbose=False)
    with pytest.raises(ValueError, match="integer class index"):
        folders.list_folder(str(tree), labels=["a"] * n, verbose=False)
    for bad in (-1, 1.5, "1", True):
        with pytest.raises(ValueError, match="`seed` must be"):
            folders.list_folder(str(tree), seed=bad, verbose=False)
    with pytest.raises(ValueError, match="`validation_split` must be a number"):
        folders.list_folder(str(tree), validation_split="0.2", subset="training", seed=1, verbose=False)


@pytest.mark.parametrize("value", [0, (2, 3, 4), "big", (0, 5), (3.5, 4), None])
def test_image_size_errors(value):
    with pytest.raises(ValueError, match="image_size"):
        folders.image_size_arg(value)
    assert folders.image_size_arg(7) == (7, 7)
    assert folders.image_size_arg([3, 5]) == (3, 5)


def test_listing_is_quiet_about_warnings_on_a_normal_tree(tree):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        folders.list_folder(str(tree), verbose=False)
