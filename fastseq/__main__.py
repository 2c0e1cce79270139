"""fastseq: fast, correct image batches for Keras (bench, profile, convert).

Each sub-command lives in its own module, which exposes
``configure_parser(parser)`` and ``run(args) -> int``. Those modules import
Keras/TensorFlow only inside ``run`` so that ``--help`` stays instant.
"""

import argparse
import importlib
import sys

COMMANDS = {
    "bench": ("fastseq.bench.cli", "throughput of fastseq against the baselines and the memory-bandwidth ceiling"),
    "profile": ("fastseq.profiling.cli", "measure how input-bound (starved) a Keras training run is"),
    "convert": ("fastseq.datasets.convert", "convert CIFAR-10, MNIST/IDX or an image folder into a .npy memmap cache"),
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


def main(argv=None):
    args = build_parser().parse_args(argv)
    return args._run(args) or 0


if __name__ == "__main__":
    sys.exit(main())
