"""One device's loaded models and the pipeline call: load, LRU, idle unload, warm-up, texts.

No threads here: the device worker's thread is the only caller while the server runs, because
diffusers schedulers keep per-call state and loading must never race a generation. torch and
diffusers are imported inside the methods, so building one is instant.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from backend.config import Settings
from backend.model import schedulers
from backend.model.catalogue import Family, ModelSpec
from backend.model.errors import (
    DeviceOutOfMemoryError,
    ModelFolderError,
    ModelUnavailableError,
)
from backend.model.metrics import ModelMetrics
from backend.model.prompt_cache import PromptCache, uses_guidance
from backend.model.registry import ModelFolder, check_tiny_vae, display_path, inspect_folder
from backend.model.run_control import RunControl
from backend.model.types import GenerationRequest

if TYPE_CHECKING:
    from backend.model.schedulers import SchedulerChoice
    from backend.model.speed import Applied

log = logging.getLogger(__name__)

StepHook = Callable[[int, int], None]  # (step just finished, total steps)


@dataclass(frozen=True)
class RawOutput:
    """What the pipeline drew for one request: PIL images, and the scheduler that drew them."""

    images: list[Any]
    scheduler: SchedulerChoice


@dataclass
class _Loaded:
    pipeline: Any
    family: Family
    base_scheduler: Any  # the model's own scheduler, kept pristine as the template for each run
    prompts: PromptCache | None  # None: PROMPT_CACHE_SIZE=0, the pipeline encodes every prompt
    last_used: float = field(default_factory=time.monotonic)


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
        self._loaded: OrderedDict[str, _Loaded] = OrderedDict()  # least recently used first

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
        return self._generate(self.model(spec), requests, controls)

    def model(self, spec: ModelSpec) -> _Loaded:
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
        self._loaded[spec.name] = _Loaded(pipeline, folder.family, pipeline.scheduler, prompts)
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

    def _generate(
        self,
        model: _Loaded,
        requests: Sequence[GenerationRequest],
        controls: Sequence[RunControl],
    ) -> list[RawOutput]:
        import torch

        request = requests[0]
        choice = None
        if request.scheduler is not None:
            choice = schedulers.find(request.scheduler, model.family)
            if choice is None:  # the schemas check this first; reaching here is a bug
                raise ValueError(f"scheduler {request.scheduler!r} does not fit a {model.family}")
        pipeline = model.pipeline
        pipeline.scheduler = schedulers.build(choice, model.base_scheduler)
        memory = self.settings.memory
        tile = memory.vae_tiling == "true" or (
            memory.vae_tiling == "auto"
            and request.width * request.height > memory.vae_tiling_pixels
        )
        # Decoding a large image in tiles bounds its memory; small ones decode faster whole.
        (pipeline.vae.enable_tiling if tile else pipeline.vae.disable_tiling)()
        # One CPU generator per image: image k of a request starts from the same noise as a
        # request for seed+k alone, on any device, batched with other requests or not.
        generators = [
            torch.Generator("cpu").manual_seed(seed) for each in requests for seed in each.seeds()
        ]
        with torch.inference_mode():
            texts, per_prompt = self._texts(model, requests)
            output = pipeline(
                **texts,
                width=request.width,
                height=request.height,
                num_inference_steps=request.steps,
                guidance_scale=request.guidance_scale,
                num_images_per_prompt=per_prompt,
                generator=generators,
                output_type="pil",
                callback_on_step_end=self._step_end(controls, request.steps),
            )
        if choice is None:
            base = model.base_scheduler
            choice = schedulers.describe(type(base).__name__, base.config, model.family)
        images = list(output.images)
        outputs = []
        for each in requests:
            outputs.append(RawOutput(images[: each.num_images], choice))
            images = images[each.num_images :]
        return outputs

    @staticmethod
    def _texts(model: _Loaded, requests: Sequence[GenerationRequest]) -> tuple[dict[str, Any], int]:
        """The pipeline's text arguments for `requests`, and its num_images_per_prompt."""
        request = requests[0]
        if len(requests) == 1 and model.prompts is None:
            # Exactly the call a lone request always made: MAX_BATCH_SIZE=1 changes nothing.
            # None, not "", so each family uses its own unconditional embedding (SDXL zeroes
            # it for an empty negative prompt).
            texts = {"prompt": request.prompt, "negative_prompt": request.negative_prompt or None}
            return texts, request.num_images
        # One entry per image, in the order the images come out; batch_key: all of the batch
        # has a negative prompt, or none has.
        per_image = [each for each in requests for _ in range(each.num_images)]
        prompts = [each.prompt for each in per_image]
        negatives = (
            [each.negative_prompt for each in per_image] if request.negative_prompt else None
        )
        if model.prompts is None:
            return {"prompt": prompts, "negative_prompt": negatives}, 1
        # The embeddings the call would compute itself, from the cache where seen before; per
        # image already (SD3 would not repeat given embeddings for num_images_per_prompt).
        guidance = uses_guidance(model.pipeline, request.guidance_scale)
        embeddings = model.prompts.embeddings(
            model.pipeline, model.family, prompts, negatives, guidance
        )
        return embeddings, 1

    def _step_end(self, controls: Sequence[RunControl], steps: int) -> Callable[..., dict]:
        """diffusers' step-end callback: progress, the test seam, deadlines and cancellation."""
        hook = self.step_hook

        def callback(pipeline: Any, step: int, _timestep: Any, kwargs: dict) -> dict:
            total = getattr(pipeline, "num_timesteps", None) or steps
            self.last_step_at = time.time()
            if hook is not None:
                hook(step + 1, total)
            for control in controls:
                control.progress(step + 1, total)
            # Every request checked (each may end itself at its deadline), then: does anyone
            # still want these images? If not, diffusers skips the remaining steps.
            stops = [control.should_stop() for control in controls]
            if all(stops):
                pipeline._interrupt = True
            return kwargs

        return callback
