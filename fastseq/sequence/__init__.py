"""``ArraySequence`` and its parts, one module each, in the order a sequence is built and served.

- ``options``: the arguments, checked once into an ``Options`` record (NumPy only);
- ``sharding``: ``shard="auto"``, read from Keras' distribution or JAX (imports Keras lazily);
- ``order``: which sample goes in which batch, per epoch and shard (NumPy only);
- ``plans``: from the options, the kernel pass and the per-sample draws (NumPy only);
- ``targets``: the batch's targets, gathered and mixed like its images (NumPy only);
- ``position``: the epoch and the served batches, shared with worker processes (NumPy only);
- ``_pool``: reused, page-aligned batch buffers;
- ``keras_quirks``: the Keras call patterns a sequence warns about;
- ``array_sequence``: ``ArraySequence`` itself, the ``keras.utils.PyDataset`` that assembles the above.

``fastseq.sequence.ArraySequence`` is loaded on first use, so importing one of
the NumPy-only parts (the batch order, say) does not import Keras.
"""


def __getattr__(name):
    if name == "ArraySequence":
        from fastseq.sequence.array_sequence import ArraySequence

        return ArraySequence
    raise AttributeError(f"module 'fastseq.sequence' has no attribute {name!r}")
