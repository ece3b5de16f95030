"""Benchmarks (`make bench`): each prints `name: value unit` lines (DESIGN §8)."""
