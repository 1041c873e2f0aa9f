"""One device's loaded models: load, LRU, idle unload, warm-up; `pipeline_call.py` runs them.

No threads here: the device worker's thread is the only caller while the server runs, because
diffusers schedulers keep per-call state and loading must never race a generation. torch and
diffusers are imported inside the methods, so building one is instant.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from backend.config import Settings
from backend.model.catalogue import ModelSpec
from backend.model.errors import (
    DeviceOutOfMemoryError,
    ModelFolderError,
    ModelUnavailableError,
)
from backend.model.lora_adapters import LoraAdapters
from backend.model.metrics import ModelMetrics
from backend.model.model_assets import prepared
from backend.model.pipeline_call import LoadedModel, RawOutput, StepHook, call_pipeline
from backend.model.prompt_cache import PromptCache
from backend.model.registry import ModelFolder, check_tiny_vae, display_path, inspect_folder
from backend.model.run_control import RunControl
from backend.model.types import GenerationRequest

if TYPE_CHECKING:
    from backend.model.speed import Applied

log = logging.getLogger(__name__)


class ModelResidency:
    """The pipelines one device holds, and the one way to run them."""

    def __init__(self, device: str, settings: Settings, metrics: ModelMetrics) -> None:
        self.device_setting = device
        self.settings = settings
        self.metrics = metrics
        self.device_name: str | None = None  # known once torch has resolved `auto`
        self.description = ""  # e.g. the GPU's model
        self.model_errors: dict[str, str] = {}  # latest failure per model, cleared on success
        self.loaded_models: tuple[str, ...] = ()  # a snapshot other threads may read
        # Fault-injection seam for tests and benchmarks: called after every denoising step,
        # before deadlines and cancellations are checked.
        self.step_hook: StepHook | None = None
        self.last_step_at: float | None = None  # wall clock of the latest denoising step
        self.device: Any = None
        self._dtype: Any = None
        self._broken: set[str] = set()  # models whose weights failed to load: not retried
        self._loaded: OrderedDict[str, LoadedModel] = OrderedDict()  # least recently used first

    def pipeline(self, name: str) -> Any:
        """A loaded pipeline, or None (a seam for tests and benchmarks)."""
        loaded = self._loaded.get(name)
        return loaded.pipeline if loaded else None

    def broken(self, name: str) -> bool:
        """Whether `name` failed to load here (and will not be retried)."""
        return name in self._broken

    def memory(self) -> dict[str, int] | None:
        """Device memory in bytes (CUDA only)."""
        if self.device is None:
            return None
        from backend.model import device as devices

        return devices.memory(self.device)

    def resolve(self) -> None:
        """Turn the DEVICE setting into torch objects; raises a ModelLayerError if unusable."""
        from backend.model import device as devices

        self.device = devices.resolve_device(self.device_setting)
        self.device_name = str(self.device)
        self.description = devices.describe(self.device)
        self._dtype = devices.resolve_dtype(self.settings.torch_dtype, self.device)

    def generate(
        self, spec: ModelSpec, requests: Sequence[GenerationRequest], controls: Sequence[RunControl]
    ) -> list[RawOutput]:
        """One pipeline call for `requests` (compatible by `batch_key`); one output each."""
        model = self.model(spec)
        hook = self.step_hook  # read once: a hook that replaces itself does so for the next call

        def on_step(step: int, total: int) -> None:
            self.last_step_at = time.time()
            if hook is not None:
                hook(step, total)

        with prepared(model, spec, requests, self.settings):  # its embeddings and VAE
            return call_pipeline(
                model, requests, controls, self.settings.memory, on_step,
                models_dir=self.settings.models_dir, vaes_dir=self.settings.assets.vaes_dir,
            )  # fmt: skip

    def model(self, spec: ModelSpec) -> LoadedModel:
        """The loaded model for `spec`, loading it (and unloading the least recently used)."""
        if spec.name in self._loaded:
            self._loaded.move_to_end(spec.name)
            loaded = self._loaded[spec.name]
            loaded.last_used = time.monotonic()
            return loaded
        try:
            # Cheap and torch-free: fails before anything is unloaded.
            folder = inspect_folder(spec, drop_t5=self.settings.memory.sd3_drop_t5)
            if self.settings.speed.tiny_vae:
                check_tiny_vae(folder.family, self.settings.models_dir)
        except ModelFolderError as error:
            self._record_failure(spec, str(error))
            raise
        while len(self._loaded) >= self.settings.max_loaded_models:
            self._unload(next(iter(self._loaded)), "to make room (MAX_LOADED_MODELS)")
        started = time.perf_counter()
        log.info("loading model %s from %s", spec.name, display_path(folder.path))
        pipeline, applied = self._load(spec, folder)
        settings = self.settings
        cache_size = settings.speed.prompt_cache_size
        prompts = (
            PromptCache(cache_size, lambda result: self.metrics.prompt_cache.labels(result).inc())
            if cache_size
            else None
        )
        assets = settings.assets
        # LoRA layers sit in the UNet/transformer (and text encoders): only their compilation
        # needs hot-swap slots; a compiled VAE decoder never sees an adapter.
        hotswap = bool(set(applied.compiled) - {"vae"})
        loras = LoraAdapters(pipeline, assets.loras_dir, assets.max_loras_loaded, hotswap)
        self._loaded[spec.name] = LoadedModel(
            pipeline, folder.family, pipeline.scheduler, prompts, loras
        )
        self.loaded_models = tuple(self._loaded)
        self.model_errors.pop(spec.name, None)
        seconds = time.perf_counter() - started
        self.metrics.model_load_seconds.labels(spec.name, self.device_name).set(seconds)
        log.info(
            "model %s ready on %s in %.2fs (%s)",
            spec.name, self.device_name, seconds, applied.describe(),
        )  # fmt: skip
        return self._loaded[spec.name]

    def _load(self, spec: ModelSpec, folder: ModelFolder) -> tuple[Any, Applied]:
        """Load, speed up and (with COMPILE) warm up `folder`; raises a ModelLayerError."""
        import torch

        from backend.model import host_memory, loader

        settings = self.settings
        unusable: str | None = None  # why the model cannot serve with these settings
        try:
            with host_memory.mapped_blocks():
                pipeline, applied = loader.load_pipeline(
                    folder,
                    self.device,
                    self._dtype,
                    settings.memory,
                    speed=settings.speed,
                    models_dir=settings.models_dir,
                )
            if applied.compiled:
                applied = self._warm_up(spec, pipeline, applied)
        except torch.cuda.OutOfMemoryError:
            pipeline = None  # handled below, outside the except block
        except (ModelFolderError, ModelUnavailableError) as error:
            # A tiny VAE that does not fit the model, or a compilation that failed.
            pipeline, unusable = None, str(error)
        except Exception as error:  # a corrupt file, a diffusers incompatibility, ...
            log.exception("loading model %s failed", spec.name)
            # The exception text may hold internals; the client gets its type and where to look.
            pipeline = None
            unusable = (
                f"Model '{spec.name}' in '{display_path(spec.folder)}' failed to load "
                f"({type(error).__name__}); the server log has the details."
            )
        # Raised out here, where no traceback pins the half-built pipeline's memory.
        if unusable is not None:
            self._broken.add(spec.name)  # the same settings would fail again: not retried
            self._record_failure(spec, unusable)
            self.release_memory()
            raise ModelUnavailableError(unusable)
        if pipeline is None:
            self.release_memory()
            message = (
                f"Model '{spec.name}' does not fit in {self.device_name}'s free memory; try "
                "CPU_OFFLOAD=model, a smaller TORCH_DTYPE or fewer MAX_LOADED_MODELS."
            )
            self._record_failure(spec, message)
            raise DeviceOutOfMemoryError(message)
        return pipeline, applied

    def _warm_up(self, spec: ModelSpec, pipeline: Any, applied: Applied) -> Applied:
        """Compile now, with one generation at the model's default size, not in a request."""
        from backend.model.speed import warm_up

        try:
            seconds = warm_up(pipeline, spec.defaults)
        except Exception as error:
            # Typically no C compiler for TorchInductor; the message says what to change.
            log.exception("COMPILE: warming up model %s failed", spec.name)
            raise ModelUnavailableError(
                f"Model '{spec.name}' could not be compiled with COMPILE="
                f"{','.join(self.settings.speed.compile)} ({type(error).__name__}); set "
                "COMPILE=false, or see the server log (TorchInductor needs a C compiler)."
            ) from None
        self.metrics.warmup_seconds.labels(spec.name, self.device_name).set(seconds)
        log.info("model %s compiled and warmed up in %.1fs", spec.name, seconds)
        return replace(applied, warmup_seconds=seconds)

    def _record_failure(self, spec: ModelSpec, message: str) -> None:
        log.error("model %s cannot serve on %s: %s", spec.name, self.device_name, message)
        self.model_errors[spec.name] = message

    def _unload(self, name: str, reason: str) -> None:
        del self._loaded[name]
        self.loaded_models = tuple(self._loaded)
        self.release_memory()  # now, not at some later garbage collection
        log.info("unloaded model %s from %s %s", name, self.device_name, reason)

    def release_memory(self) -> None:
        from backend.model import device as devices

        devices.release_memory(self.device)

    def idle_wait(self) -> float | None:
        """How long the queue may stay empty before the next idle model is due to unload."""
        idle = self.settings.memory.idle_unload_seconds
        if not idle or not self._loaded:
            return None
        oldest = min(loaded.last_used for loaded in self._loaded.values())
        return max(0.0, oldest + idle - time.monotonic())

    def unload_idle(self) -> None:
        idle = self.settings.memory.idle_unload_seconds
        now = time.monotonic()
        for name, loaded in list(self._loaded.items()):
            if now - loaded.last_used >= idle:
                self._unload(name, f"after {idle:g}s without requests (IDLE_UNLOAD_SECONDS)")
