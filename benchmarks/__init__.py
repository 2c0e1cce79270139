"""pytest-benchmark suites: fastseq against its baselines and the memory ceiling.

A plain ``pytest`` runs every benchmark once as a correctness test;
``pytest benchmarks --benchmark-only`` times them and prints one group per
job plus the ratio table (see ``benchmarks/conftest.py``).
"""
