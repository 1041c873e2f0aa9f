"""One thread per device: it loads and unloads pipelines, and runs every generation there.

Pipelines are only ever called, loaded and unloaded on their device's thread: diffusers
schedulers keep per-call state and are not thread-safe, loading or unloading must never race a
running generation, and a single consumer gives a natural queue for admission control and
batching. torch and diffusers are imported inside the thread, so creating a worker (and the
Flask app around it) is instant and `/ping` answers while they load.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from backend.config import Settings
from backend.metrics import ServerMetrics
from backend.model import schedulers
from backend.model.catalogue import Family, ModelSpec
from backend.model.errors import (
    DeviceOutOfMemoryError,
    GenerationFailedError,
    ModelFolderError,
    ModelLayerError,
    ModelNotReadyError,
    ModelUnavailableError,
    QueueFullError,
)
from backend.model.jobs import Job, RawOutput
from backend.model.prompt_cache import PromptCache, uses_guidance
from backend.model.registry import ModelFolder, check_tiny_vae, display_path, inspect_folder

if TYPE_CHECKING:
    from backend.model.speed import Applied

log = logging.getLogger(__name__)

StepHook = Callable[[int, int], None]  # (step just finished, total steps)


class WorkerState(StrEnum):
    """Where a device worker is in its life."""

    LOADING = "loading"  # importing torch and loading the default model
    READY = "ready"
    FAILED = "failed"  # the device itself cannot be used
    STOPPED = "stopped"


def batch_key(job: Job) -> tuple:
    """Jobs with equal keys can share one pipeline call (each keeps its prompts and seeds)."""
    r = job.request
    # With and without a negative prompt differ in how the unconditional embedding is made.
    return (
        job.spec.name,
        r.width,
        r.height,
        r.steps,
        r.guidance_scale,
        r.scheduler,
        bool(r.negative_prompt),
    )


@dataclass
class _Loaded:
    pipeline: Any
    family: Family
    base_scheduler: Any  # the model's own scheduler, kept pristine as the template for each run
    prompts: PromptCache | None  # None: PROMPT_CACHE_SIZE=0, the pipeline encodes every prompt
    last_used: float = field(default_factory=time.monotonic)


class DeviceWorker:
    """Owns one device's pipelines, its bounded queue, and the thread that alone may touch them."""

    def __init__(
        self,
        index: int,
        device: str,
        settings: Settings,
        preload: ModelSpec,
        metrics: ServerMetrics | None = None,
    ) -> None:
        self.index = index
        self.device_setting = device
        self.settings = settings
        self.preload = preload
        self.metrics = metrics or ServerMetrics()
        self.device_name: str | None = None  # known once torch has resolved `auto`
        self.description = ""  # e.g. the GPU's model
        self.state = WorkerState.LOADING
        self.error: str | None = None  # why the device cannot be used
        self.model_errors: dict[str, str] = {}  # latest failure per model, cleared on success
        self.loaded_models: tuple[str, ...] = ()  # a snapshot other threads may read
        self.served = 0
        # Fault-injection seam for tests and benchmarks: called on this thread after every
        # denoising step, before deadlines and cancellations are checked.
        self.step_hook: StepHook | None = None
        self._broken: set[str] = set()  # models whose weights failed to load: not retried
        self._loaded: OrderedDict[str, _Loaded] = OrderedDict()  # least recently used first
        self._device: Any = None
        self._dtype: Any = None
        self._queue: deque[Job] = deque()
        self._running: tuple[Job, ...] = ()  # the batch on the device now
        self._batch_seconds = 1.0  # a moving average, for Retry-After
        self._load_ended = threading.Event()
        # Guards the queue, the running batch and the state: no job can land behind stop(),
        # and a full queue is judged on a consistent view.
        self._lock = threading.Condition()
        self._thread = threading.Thread(
            target=self._run, name=f"device-{index}-{device}", daemon=True
        )

    def pipeline(self, name: str) -> Any:
        """A loaded pipeline, or None. A seam for tests and benchmarks: only this worker's
        thread may call it while the server runs."""
        loaded = self._loaded.get(name)
        return loaded.pipeline if loaded else None

    def broken(self, name: str) -> bool:
        """Whether `name` failed to load here (and will not be retried)."""
        return name in self._broken

    def memory(self) -> dict[str, int] | None:
        """Device memory in bytes (CUDA only)."""
        if self._device is None:
            return None
        from backend.model import device as devices

        return devices.memory(self._device)

    @property
    def queued(self) -> int:
        """Jobs waiting for this device."""
        return len(self._queue)

    @property
    def running(self) -> int:
        """Jobs in the batch on the device now."""
        return len(self._running)

    @property
    def pending(self) -> int:
        """Jobs queued or running here."""
        return len(self._queue) + len(self._running)

    def has_room(self) -> bool:
        """Whether `submit` would accept a job now."""
        with self._lock:
            return self._has_room()

    def _has_room(self) -> bool:
        # MAX_QUEUE_SIZE counts jobs that wait behind the running batch: an idle device takes
        # one more, the job it is about to start.
        limit = self.settings.serving.max_queue_size + (0 if self._running else 1)
        return len(self._queue) < limit

    def retry_after(self) -> int:
        """Seconds until a place in the queue is likely to free up."""
        batches = len(self._queue) / self.settings.serving.max_batch_size + 1
        return max(1, min(600, math.ceil(self._batch_seconds * batches)))

    def start(self) -> None:
        """Start loading in the background; returns at once."""
        self._thread.start()

    def refuse(self) -> None:
        """Refuse new jobs from now on; queued ones are still served."""
        with self._lock:
            self.state = WorkerState.STOPPED
            self._lock.notify_all()

    def stop(self, timeout: float | None = None) -> None:
        """Refuse new jobs, finish the queued ones, then end the thread."""
        self.refuse()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def wait_until_loaded(self, timeout: float | None) -> bool:
        """Block until start-up ended (either way); False if still loading after `timeout`."""
        return self._load_ended.wait(timeout)

    def submit(self, job: Job) -> None:
        """Queue a job, or refuse it at once (still loading, unusable, or the queue is full)."""
        with self._lock:
            if self.state is WorkerState.LOADING:
                raise ModelNotReadyError(
                    f"Model '{self.preload.name}' is still loading; retry shortly."
                )
            if self.state is not WorkerState.READY:
                raise ModelUnavailableError(self.error or "The server is shutting down.")
            if job.spec.name in self._broken:
                raise ModelUnavailableError(self.model_errors[job.spec.name])
            if not self._has_room():
                raise QueueFullError(
                    f"The server is busy: {len(self._queue)} generations are already waiting "
                    f"for {self.device_name}. Retry later.",
                    self.retry_after(),
                )
            job.position = self.position
            self._queue.append(job)
            self._lock.notify_all()

    def position(self, job: Job) -> int | None:
        """How many jobs wait ahead of `job` (0: it runs next); None if it is not queued."""
        with self._lock:
            try:
                return self._queue.index(job)
            except ValueError:
                return 0 if job.started is None and not job.status.final else None

    def withdraw(self, job: Job) -> None:
        """Take a cancelled or abandoned job out of the queue, freeing its place at once."""
        with self._lock, contextlib.suppress(ValueError):
            self._queue.remove(job)

    def _run(self) -> None:
        usable = False
        try:
            usable = self._resolve()
        finally:
            if not usable:
                self._load_ended.set()
        if usable:
            self._serve_forever()

    def _serve_forever(self) -> None:
        try:
            if self._device.type == "cpu":
                # Values below ~1e-38 take a slow microcode path on x86; flushing them to zero
                # changes no visible pixel. It is per thread: this one runs the pipelines.
                import torch

                torch.set_flush_denormal(True)
            # A failure is recorded in model_errors; the device still serves the other models.
            with contextlib.suppress(ModelLayerError):
                self._model(self.preload)
            self._set_state(WorkerState.READY)
        finally:
            self._load_ended.set()
        while True:
            batch = self._take()
            if batch is None:
                return
            if batch:
                self._serve(batch)
            else:
                self._unload_idle()

    def _take(self) -> list[Job] | None:
        """The next batch: the oldest job and compatible ones behind it. [] when it is time to
        unload idle models; None once stopped and drained."""
        serving = self.settings.serving
        with self._lock:
            while not self._queue:
                if self.state is WorkerState.STOPPED:
                    return None
                if not self._lock.wait(self._idle_wait()) and not self._queue:
                    return []
            batch = [self._queue.popleft()]
            room = serving.max_batch_size - batch[0].request.num_images
            # With BATCH_WAIT_MS a lone job waits that long for company; under load, the queue
            # fills while the device is busy and batches form without any waiting.
            until = time.monotonic() + serving.batch_wait_ms / 1000
            while room > 0:
                room = self._gather(batch, room)
                # Counted as running from now: while it waits for company, admission must see
                # the device as busy.
                self._running = tuple(batch)
                left = until - time.monotonic()
                if room <= 0 or left <= 0 or self.state is WorkerState.STOPPED:
                    break
                self._lock.wait(left)
            self._running = tuple(batch)
            return batch

    def _gather(self, batch: list[Job], room: int) -> int:
        """Move queued jobs that fit `batch` into it, oldest first; returns the room left."""
        key = batch_key(batch[0])
        for job in list(self._queue):
            if room <= 0:
                break
            if job.request.num_images <= room and batch_key(job) == key:
                self._queue.remove(job)
                batch.append(job)
                room -= job.request.num_images
        return room

    def _resolve(self) -> bool:
        """Turn the DEVICE setting into torch objects; False (and FAILED) if it cannot be used."""
        try:
            from backend.model import device as devices

            self._device = devices.resolve_device(self.device_setting)
            self.device_name = str(self._device)
            self.description = devices.describe(self._device)
            self._dtype = devices.resolve_dtype(self.settings.torch_dtype, self._device)
        except ModelLayerError as error:
            log.error("device %s cannot be used: %s", self.device_setting, error)
            self.error = str(error)
            self._set_state(WorkerState.FAILED)
            return False
        return True

    def _set_state(self, state: WorkerState) -> None:
        with self._lock:
            if self.state is not WorkerState.STOPPED:  # stop() during start-up wins
                self.state = state

    def _serve(self, batch: list[Job]) -> None:
        import torch

        images = sum(job.request.num_images for job in batch)
        # A job cancelled or past its deadline while queued is not run.
        jobs = [job for job in batch if job.begin(images)]
        failure: ModelLayerError | None = None
        out_of_memory = False
        started = time.monotonic()
        outputs: list[RawOutput] = []
        try:
            if jobs:
                outputs = self._generate(self._model(jobs[0].spec), jobs)
        except torch.cuda.OutOfMemoryError:
            out_of_memory = True  # no reference kept: its traceback pins the tensors
        except ModelLayerError as error:
            failure = error
        except BaseException:  # the thread must outlive any one request
            log.exception("generation failed on %s", self.device_name)
            failure = GenerationFailedError("The generation failed on the device.")
        if out_of_memory:
            # Outside the except block, where nothing holds the failed run's tensors any more.
            self._release_memory()
            failure = DeviceOutOfMemoryError(
                f"{self.device_name} ran out of memory for this request. Try a smaller size or "
                "fewer images, or set CPU_OFFLOAD=model, VAE_TILING=true or ATTENTION_SLICING=true."
            )
            log.warning("out of memory on %s; memory released", self.device_name)
        seconds = time.monotonic() - started
        if jobs and failure is None:
            self._batch_seconds = 0.8 * self._batch_seconds + 0.2 * seconds
            self.metrics.generation_seconds.labels(jobs[0].spec.name).observe(seconds)
            self.metrics.batch_images.observe(images)
        for job in jobs:
            self.metrics.queue_seconds.observe(job.queue_seconds())
            if failure is not None:
                self.metrics.failures.labels(type(failure).__name__).inc()
                job.fail(failure)
        for job, output in zip(jobs, outputs, strict=False):
            job.drawn(output)
            if job.raw is not None:
                self.metrics.images.labels(job.spec.name).inc(len(output.images))
        with self._lock:
            self._running = ()
            self.served += len(batch)

    def _model(self, spec: ModelSpec) -> _Loaded:
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
                    self._device,
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
            self._release_memory()
            raise ModelUnavailableError(unusable)
        if pipeline is None:
            self._release_memory()
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
        self._release_memory()  # now, not at some later garbage collection
        log.info("unloaded model %s from %s %s", name, self.device_name, reason)

    def _release_memory(self) -> None:
        from backend.model import device as devices

        devices.release_memory(self._device)

    def _idle_wait(self) -> float | None:
        """How long the queue may stay empty before the next idle model is due to unload."""
        idle = self.settings.memory.idle_unload_seconds
        if not idle or not self._loaded:
            return None
        oldest = min(loaded.last_used for loaded in self._loaded.values())
        return max(0.0, oldest + idle - time.monotonic())

    def _unload_idle(self) -> None:
        idle = self.settings.memory.idle_unload_seconds
        now = time.monotonic()
        for name, loaded in list(self._loaded.items()):
            if now - loaded.last_used >= idle:
                self._unload(name, f"after {idle:g}s without requests (IDLE_UNLOAD_SECONDS)")

    def _generate(self, model: _Loaded, jobs: list[Job]) -> list[RawOutput]:
        """One pipeline call for `jobs` (compatible by `batch_key`); one output per job."""
        import torch

        request = jobs[0].request
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
            torch.Generator("cpu").manual_seed(seed) for job in jobs for seed in job.request.seeds()
        ]
        with torch.inference_mode():
            texts, per_prompt = self._texts(model, jobs)
            output = pipeline(
                **texts,
                width=request.width,
                height=request.height,
                num_inference_steps=request.steps,
                guidance_scale=request.guidance_scale,
                num_images_per_prompt=per_prompt,
                generator=generators,
                output_type="pil",
                callback_on_step_end=self._step_end(jobs),
            )
        if choice is None:
            base = model.base_scheduler
            choice = schedulers.describe(type(base).__name__, base.config, model.family)
        images = list(output.images)
        outputs = []
        for job in jobs:
            count = job.request.num_images
            outputs.append(RawOutput(images[:count], choice))
            images = images[count:]
        return outputs

    @staticmethod
    def _texts(model: _Loaded, jobs: list[Job]) -> tuple[dict[str, Any], int]:
        """The pipeline's text arguments for `jobs`, and its num_images_per_prompt."""
        request = jobs[0].request
        if len(jobs) == 1 and model.prompts is None:
            # Exactly the call a lone request always made: MAX_BATCH_SIZE=1 changes nothing.
            # None, not "", so each family uses its own unconditional embedding (SDXL zeroes
            # it for an empty negative prompt).
            texts = {"prompt": request.prompt, "negative_prompt": request.negative_prompt or None}
            return texts, request.num_images
        # One entry per image, in the order the images come out; batch_key: all of the batch
        # has a negative prompt, or none has.
        per_image = [job.request for job in jobs for _ in range(job.request.num_images)]
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

    def _step_end(self, jobs: list[Job]) -> Callable[..., dict]:
        """diffusers' step-end callback: progress, the test seam, deadlines and cancellation."""
        hook = self.step_hook

        def callback(pipeline: Any, step: int, _timestep: Any, kwargs: dict) -> dict:
            total = getattr(pipeline, "num_timesteps", None) or jobs[0].request.steps
            if hook is not None:
                hook(step + 1, total)
            now = time.monotonic()
            for job in jobs:
                if job.expired(now):
                    job.expire()
                job.progress(step + 1, total)
            if not any(job.alive for job in jobs):
                # Nobody wants these images any more: diffusers skips the remaining steps.
                pipeline._interrupt = True
            return kwargs

        return callback
