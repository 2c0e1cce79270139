"""LLVM intrinsics that Numba does not expose."""

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

_I32 = ir.IntType(32)


@intrinsic
def prefetch(typingctx, array, index):
    """Hint the CPU to load ``array``'s element ``index`` into the cache (``llvm.prefetch``, read, high locality).

    Only a hint: it never faults, so ``index`` may even be out of range. The
    fused kernel issues it for the next samples of a batch, whose rows sit at
    random places in a data set larger than the cache; without it the
    hardware prefetcher starts each image afresh.
    """
    if not isinstance(array, types.Array) or not isinstance(index, types.Integer):
        return None
    sig = types.void(array, index)

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        address = builder.bitcast(builder.gep(ary.data, [args[1]]), ir.IntType(8).as_pointer())
        fnty = ir.FunctionType(ir.VoidType(), [address.type, _I32, _I32, _I32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
        # (address, rw = read, locality = 3 (keep in all levels), cache = data)
        builder.call(fn, [address, ir.Constant(_I32, 0), ir.Constant(_I32, 3), ir.Constant(_I32, 1)])
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def fetch_add(typingctx, array, index, value):
    """Atomically add ``value`` to int64 ``array[index]`` and return the value before (``atomicrmw add``).

    The fused kernel's threads take blocks of the batch from a shared
    counter with it: a dynamic schedule without Numba's chunk-size setting,
    which costs about 4 us a launch from Python and cannot be set inside a
    cached function. ``index`` must be in range (no bounds check).

    Numba's own passes do not see this write: in the function that calls
    it, read the counter only through ``fetch_add`` (a plain ``array[0]``
    after a parallel loop was compiled as a read of the initial zero).
    """
    if not (
        isinstance(array, types.Array)
        and array.dtype == types.int64
        and isinstance(index, types.Integer)
        and isinstance(value, types.Integer)
    ):
        return None
    sig = types.int64(array, index, value)

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        pointer = builder.gep(ary.data, [args[1]])
        amount = context.cast(builder, args[2], signature.args[2], types.int64)
        return builder.atomic_rmw("add", pointer, amount, "seq_cst")

    return sig, codegen
