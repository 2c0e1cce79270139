"""File formats -> uint8 arrays: CIFAR-10, MNIST/Fashion-MNIST (npz or IDX), and a ``.npy`` memmap cache.

Imports neither Keras nor TensorFlow, and never downloads: a missing file
raises ``FileNotFoundError`` naming every place looked and how to get it.

Loaders return Keras' ``((x_train, y_train), (x_test, y_test))``:

- ``load_cifar10(path=None)``: uint8 ``(N, 32, 32, 3)``, labels uint8 ``(N, 1)``
  (Keras' shape; ``y.ravel()`` for ``(N,)``).
- ``load_mnist(path=None)``, ``load_fashion_mnist(path=None)``: uint8
  ``(N, 28, 28)``, labels uint8 ``(N,)``.

The cache: ``save(dir, x, y)`` writes ``x.npy``, ``y.npy`` and
``manifest.json`` atomically; ``open(dir)`` memory-maps them read-only.
``python -m fastseq convert SOURCE OUT_DIR`` fills ``OUT_DIR/train`` (and
``OUT_DIR/test``) from any supported source or an image folder.

Photo folders: ``build_or_open(root, files, ...)`` decodes image files once
(as Keras decodes them) into a ragged uint8 store in the cache folder
(``decode_image`` decodes one file) and ``open_store(path)`` opens one that
``convert`` wrote. These names live in ``fastseq.photos.store`` and
``fastseq.photos.decode`` (the photo path) and are handed on from here, where
they have always been documented; neither imports Keras.

``open`` is deliberately left out of ``__all__`` so that
``from fastseq.datasets import *`` does not shadow the built-in ``open``; call
it as ``fastseq.datasets.open``.
"""

from fastseq.datasets.cache import CachedDataset, open, save  # noqa: F401 (open is left out of __all__: see above)
from fastseq.datasets.cifar import CIFAR10_CLASSES, load_cifar10
from fastseq.datasets.mnist import FASHION_MNIST_CLASSES, MNIST_CLASSES, load_fashion_mnist, load_mnist, read_idx
from fastseq.photos.decode import decode_image
from fastseq.photos.store import SkippedImageWarning, Store, StoreSpaceError, build_or_open, open_store

__all__ = [
    "CIFAR10_CLASSES",
    "CachedDataset",
    "FASHION_MNIST_CLASSES",
    "MNIST_CLASSES",
    "SkippedImageWarning",
    "Store",
    "StoreSpaceError",
    "build_or_open",
    "decode_image",
    "load_cifar10",
    "load_fashion_mnist",
    "load_mnist",
    "open_store",
    "read_idx",
    "save",
]
