"""Ultralytics' import path for the benchmark function: ``from jaxyolo.utils.benchmarks import benchmark`` (as
``from ultralytics.utils.benchmarks import benchmark``). The implementation is ``jaxyolo.engine.benchmark``."""

from jaxyolo.engine.benchmark import BenchmarkFailure, BenchmarkTable, benchmark  # noqa: F401

__all__ = ["benchmark", "BenchmarkTable", "BenchmarkFailure"]
