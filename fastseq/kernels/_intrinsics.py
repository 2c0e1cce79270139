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


_V4 = ir.VectorType(ir.FloatType(), 4)


@intrinsic
def lerp4(typingctx, src, offset, dst, index, weight):
    """``dst[index:index+4] = p + (q - p) * weight`` with ``p = src[offset:offset+4]``, ``q = src[offset+3:offset+7]``.

    One 4-lane float32 operation (two unaligned vector loads, sub, mul, add,
    one vector store; IEEE arithmetic per lane, no FMA, so each lane equals
    the scalar ``p + (q - p) * weight``). The ragged bilinear pass lerps an
    RGB pixel with it: lanes 0..2 are the pixel's channels, lane 3 spills
    into the next pixel's first channel, which that pixel's store then
    overwrites. Numba's LLVM emits no gathers on AMD CPUs, so the scalar
    per-channel loop stayed scalar: 23% off the whole pass at 224x224.
    No bounds check: ``src`` needs 7 readable values from ``offset``,
    ``dst`` 4 writable ones from ``index``.
    """
    if not (isinstance(src, types.Array) and src.dtype == types.float32 and isinstance(dst, types.Array)
            and dst.dtype == types.float32 and isinstance(offset, types.Integer) and isinstance(index, types.Integer)
            and weight == types.float32):
        return None
    sig = types.void(src, offset, dst, index, weight)

    def codegen(context, builder, signature, args):
        s = context.make_array(signature.args[0])(context, builder, args[0])
        t = context.make_array(signature.args[2])(context, builder, args[2])
        o = context.cast(builder, args[1], signature.args[1], types.int64)
        i = context.cast(builder, args[3], signature.args[3], types.int64)
        p = builder.load(builder.bitcast(builder.gep(s.data, [o]), _V4.as_pointer()), align=4)
        q_at = builder.add(o, ir.Constant(ir.IntType(64), 3))
        q = builder.load(builder.bitcast(builder.gep(s.data, [q_at]), _V4.as_pointer()), align=4)
        f = builder.insert_element(ir.Constant(_V4, ir.Undefined), args[4], ir.Constant(_I32, 0))
        f = builder.shuffle_vector(f, ir.Constant(_V4, ir.Undefined), ir.Constant(ir.VectorType(_I32, 4), [0] * 4))
        result = builder.fadd(p, builder.fmul(builder.fsub(q, p), f))
        builder.store(result, builder.bitcast(builder.gep(t.data, [i]), _V4.as_pointer()), align=4)
        return context.get_dummy_value()

    return sig, codegen
