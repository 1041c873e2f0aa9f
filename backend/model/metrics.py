"""Prometheus metrics of the model layer: generations, batches, loads, the prompt cache.

Each engine registers into the registry it is given (the app's, or a worker process's own):
tests build many apps in one process, and a process-global registry would refuse the second
set of metric names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

# From a turbo model's one step on a GPU to a 50-step SDXL image on a CPU.
SECONDS_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900)


class StateCollector(Collector):
    """Gauges read at scrape time (queue depths, job counts), so they can never drift."""

    def __init__(self, read: Callable[[], Iterable[GaugeMetricFamily]]) -> None:
        self._read = read

    def collect(self) -> Iterable[GaugeMetricFamily]:
        return self._read()


class ModelMetrics:
    """The metrics the device workers and the engine update."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        registry = self.registry
        self.generation_seconds = Histogram(
            "t2i_generation_seconds",
            "Time on the device per pipeline call (one call may serve a micro-batch).",
            ["model"],
            buckets=SECONDS_BUCKETS,
            registry=registry,
        )
        self.queue_seconds = Histogram(
            "t2i_queue_wait_seconds",
            "Time a generation waited for its device.",
            buckets=SECONDS_BUCKETS,
            registry=registry,
        )
        self.batch_images = Histogram(
            "t2i_batch_images",
            "Images drawn per pipeline call.",
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=registry,
        )
        self.images = Counter(
            "t2i_images_generated", "Images generated, by model.", ["model"], registry=registry
        )
        self.failures = Counter(
            "t2i_generation_failures",
            "Generations that failed on the device, by error type.",
            ["error"],
            registry=registry,
        )
        self.model_load_seconds = Gauge(
            "t2i_model_load_seconds",
            "How long the latest load of each model took.",
            ["model", "device"],
            registry=registry,
        )
        self.warmup_seconds = Gauge(
            "t2i_model_warmup_seconds",
            "How long the warm-up (torch.compile) of each model's latest load took.",
            ["model", "device"],
            registry=registry,
        )
        self.prompt_cache = Counter(
            "t2i_prompt_cache_lookups",
            "Prompt embeddings looked up in the cache, by result (hit or miss).",
            ["result"],
            registry=registry,
        )
        for result in ("hit", "miss"):
            self.prompt_cache.labels(result)

    def watch(self, read: Callable[[], Iterable[GaugeMetricFamily]]) -> None:
        """Export gauges computed by `read` at every scrape."""
        self.registry.register(StateCollector(read))
