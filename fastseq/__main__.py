"""fastseq: fast, correct image batches for Keras (bench, profile, compile, convert).

Each sub-command lives in its own module, which exposes
``configure_parser(parser)`` and ``run(args) -> int``. Those modules import
Keras/TensorFlow only inside ``run`` so that ``--help`` stays instant.
"""

import argparse
import contextlib
import importlib
import os
import sys
import tempfile
import warnings

COMMANDS = {
    "bench": ("fastseq.bench.cli", "throughput of fastseq against the baselines and the memory-bandwidth ceiling"),
    "profile": ("fastseq.profiling.cli", "measure how input-bound (starved) a Keras training run is"),
    "compile": ("fastseq.warmup", "compile the kernel variants ahead of time (Docker builds, CI caches, new machines)"),
    "convert": ("fastseq.datasets.convert",
                "convert CIFAR-10, MNIST/IDX or an image folder into a .npy memmap cache, or a photo folder into a "
                "ragged image store"),
}


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m fastseq", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        module = importlib.import_module(module_name)
        module.configure_parser(p)
        p.set_defaults(_run=module.run)
    return parser


def quiet_tensorflow():
    """Keep TensorFlow's start-up log and Keras' warnings out of the command's tables.

    Only the command line does this; ``import fastseq`` leaves the user's
    logging as it is. TensorFlow writes its start-up lines (oneDNN, CPU
    features, a missing CUDA driver, ``cuInit`` failures) from C++ straight
    to file descriptor 2, before ``TF_CPP_MIN_LOG_LEVEL`` applies, so that
    descriptor is pointed at a temporary file while TensorFlow loads and
    looks for devices; what it wrote is shown if loading fails.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    warnings.filterwarnings("ignore", module=r"(keras|tensorflow|absl)(\.|$)")
    with tempfile.TemporaryFile() as log, _stderr_to(log):
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()
            tf.get_logger().setLevel("ERROR")
        except ImportError:
            return  # the command itself reports what is missing, if it needs TensorFlow
        except Exception:
            log.seek(0)
            sys.__stderr__.write(log.read().decode(errors="replace"))
            raise


@contextlib.contextmanager
def _stderr_to(file):
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        os.dup2(file.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.command in ("bench", "profile"):
        quiet_tensorflow()
    return args._run(args) or 0


if __name__ == "__main__":
    sys.exit(main())
