"""A folder of photos -> a ragged uint8 store -> batches: ``fastseq.image_dataset_from_directory``.

- ``listing``: Keras' listing, labels, class names and split rules (``keras.utils.image_dataset_from_directory``'s);
- ``decode``: one file -> uint8 pixels, as Keras decodes it;
- ``store``: the decoded photos on disk, built once, checked on every open (a ``fastseq.ragged.RaggedImages``);
- ``folder_sequence``: ``image_dataset_from_directory`` and ``FolderSequence``, an ``ArraySequence`` over a store.

The photo path builds on ``fastseq.sequence``; the sequence never imports it.
``FolderSequence`` and ``image_dataset_from_directory`` are loaded on first use
(they import Keras); ``listing``, ``decode`` and ``store`` do not.
"""

_LAZY = {"FolderSequence", "image_dataset_from_directory"}


def __getattr__(name):
    if name in _LAZY:
        from fastseq.photos import folder_sequence

        return getattr(folder_sequence, name)
    raise AttributeError(f"module 'fastseq.photos' has no attribute {name!r}")
