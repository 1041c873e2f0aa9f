"""The interface the controllers use, and the plain answers it gives.

Two implementations stand behind it: the in-process `Engine` (QUEUE_BACKEND=local) and the
scale-out mode's remote engine (QUEUE_BACKEND=celery), which sends the work to worker
processes. Controllers, views and error shapes are the same for both.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from prometheus_client.core import GaugeMetricFamily

from backend.config import Settings
from backend.model.catalogue import ModelSpec
from backend.model.job_record import JobPreview, JobRecord
from backend.model.model_catalog import ModelCatalog
from backend.model.types import GenerationRequest, GenerationResult, OutputOptions


class WorkerState(StrEnum):
    """Where a device worker is in its life."""

    LOADING = "loading"  # importing torch and loading the default model
    READY = "ready"
    FAILED = "failed"  # the device itself cannot be used
    STOPPED = "stopped"


@dataclass(frozen=True)
class DeviceStatus:
    """One device, for /health."""

    index: int
    device: str
    description: str
    state: WorkerState
    loaded_models: tuple[str, ...]
    queue_depth: int  # waiting
    running: int  # in the batch on the device now
    served: int
    memory: dict[str, int] | None
    error: str | None
    last_step_at: float | None = None  # wall clock of its latest denoising step
    worker: str | None = None  # the worker process serving it (scale-out mode)


@dataclass(frozen=True)
class EngineStatus:
    """A snapshot of readiness, for /health."""

    state: WorkerState
    model: str
    device: str
    model_loaded: bool  # the default model is in memory right now, on some device
    error: str | None  # why the server cannot serve its default model, if it cannot
    loaded_models: tuple[str, ...]
    devices: tuple[DeviceStatus, ...]

    @property
    def ready(self) -> bool:
        """True when a request for the default model can be served."""
        return self.state is WorkerState.READY and self.error is None


@dataclass(frozen=True)
class ModelInfo:
    """One entry of the model listing."""

    spec: ModelSpec
    folder: str
    exists: bool
    loaded_on: tuple[str, ...]  # devices holding it in memory now
    default: bool
    error: str | None

    @property
    def loaded(self) -> bool:
        """In memory on some device."""
        return bool(self.loaded_on)


@dataclass(frozen=True)
class CurrentWork:
    """What one caller (an API key, or everyone without keys) has on the devices now, for
    AUTOMATIC1111's /sdapi/v1/progress: synchronous requests and jobs alike."""

    job: JobRecord | None  # the running one (else the next queued); None when idle
    job_count: int  # its generations queued or running
    preview: JobPreview | None = None  # the latest live preview of `job`, if it has one


class GenerationService(Protocol):
    """What the controllers may ask of the model layer, in either queue mode."""

    settings: Settings
    catalog: ModelCatalog

    def start(self) -> None:
        """Begin serving (in the background: returns at once)."""

    def stop(self, timeout: float | None = None) -> None:
        """Refuse new work, finish what was accepted (within `timeout`)."""

    def generate(
        self,
        request: GenerationRequest,
        output: OutputOptions | None = None,
        owner: str | None = None,
    ) -> GenerationResult:
        """Run one generation within REQUEST_TIMEOUT_SECONDS and return its encoded images;
        `owner` lets `current_work` and `interrupt` find it while it runs."""

    def submit_job(
        self,
        request: GenerationRequest,
        output: OutputOptions | None = None,
        owner: str | None = None,
    ) -> JobRecord:
        """Queue a generation to fetch later; with an `owner`, only that owner sees it."""

    def job(self, job_id: str, owner: str | None = None) -> JobRecord:
        """A submitted job, while it is kept."""

    def cancel_job(self, job_id: str, owner: str | None = None) -> JobRecord:
        """Cancel a queued or running job; a finished one is deleted with its images."""

    def job_result(self, job_id: str, owner: str | None = None) -> GenerationResult:
        """The encoded images of a job that succeeded."""

    def job_preview(self, job_id: str, owner: str | None = None) -> JobPreview | None:
        """The latest live preview of a kept job (None before the first, or without previews)."""

    def current_work(self, owner: str | None = None) -> CurrentWork:
        """The caller's generation on the devices now (every caller's, when `owner` is None)."""

    def interrupt(self, owner: str | None = None, skip: bool = False) -> int:
        """Stop the caller's running generations early, keeping the images their steps made
        (`skip`: AUTOMATIC1111's skip, reported as such: `notes["skipped"]`); returns how many
        were stopped."""

    def switch_default(self, name: str) -> ModelSpec:
        """Serve `name` to requests that name no model; NotImplementedError where it cannot."""

    def status(self) -> EngineStatus:
        """Whether the default model can be served, where, or why not."""

    def models(self) -> list[ModelInfo]:
        """Every model worth listing."""

    def state_metrics(self) -> Iterable[GaugeMetricFamily]:
        """Gauges read at scrape time (queues, jobs)."""
