"""Benchmarks of the PyNet backends against PyTorch."""
