"""The LoRA adapters of one loaded pipeline: loaded once, kept (LRU), switched per call.

Only the device's worker thread uses it. A call with no LoRA switches the adapters off (peft
then runs the base layers alone, so its images are byte-identical to those of a pipeline that
never saw a LoRA); a call with LoRAs activates exactly its set, at its weights.

With COMPILE, adapters live in fixed slots (`slot0`, `slot1`, ...) prepared for diffusers' LoRA
hot-swap: a new file replaces the weights of the least recently used slot in place, and every
filled slot stays active (those a request does not name at weight 0, which adds exactly 0), so
the compiled graphs see the same modules from one request to the next and do not recompile.
"""

from __future__ import annotations

import contextlib
import logging
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.model.errors import LoraError
from backend.model.lora_files import LoraFileError, describe, find, list_loras
from backend.model.tensor_files import load_tensors
from backend.model.types import LoraChoice

log = logging.getLogger(__name__)

MIN_HOTSWAP_RANK = 16  # slots are padded to the largest rank in LORAS_DIR, at least this


@dataclass
class _Adapter:
    adapter: str  # the peft adapter name (a slot with hot-swap)
    stamp: tuple[int, int]  # the file's (mtime_ns, size) when loaded: a changed file reloads
    text_encoder: bool


class LoraAdapters:
    """The adapters loaded into one pipeline, at most `capacity` (least recently used out)."""

    def __init__(self, pipeline: Any, loras_dir: Path, capacity: int, hotswap: bool) -> None:
        self.pipeline = pipeline
        self.loras_dir = loras_dir
        self.capacity = max(1, capacity)
        self.hotswap = hotswap
        self.loads = 0  # files loaded so far (for tests and the benchmark)
        self._loaded: OrderedDict[str, _Adapter] = OrderedDict()  # by file name, LRU first
        self._counter = 0
        self._enabled = False

    @property
    def loaded(self) -> tuple[str, ...]:
        """The file names whose adapters are loaded, least recently used first."""
        return tuple(self._loaded)

    def apply(self, choices: tuple[LoraChoice, ...]) -> tuple[tuple[str, float], ...]:
        """Make the pipeline run with exactly `choices`; returns the set that changes the text
        embeddings (the prompt cache's key), empty when no text encoder is touched."""
        choices = tuple(choice for choice in choices if choice.weight != 0)
        if not choices:
            if self._enabled:
                self.pipeline.disable_lora()
                self._enabled = False
            return ()
        adapters = [self._ensure(choice.name, keep={c.name for c in choices}) for choice in choices]
        weights = {
            entry.adapter: choice.weight for entry, choice in zip(adapters, choices, strict=True)
        }
        if self.hotswap:  # every filled slot active: the same modules run in every call
            names = [entry.adapter for entry in self._loaded.values()]
            values = [weights.get(name, 0.0) for name in names]
        else:
            names, values = list(weights), list(weights.values())
        if not self._enabled:
            self.pipeline.enable_lora()
            self._enabled = True
        self.pipeline.set_adapters(names, values)
        if self.hotswap:
            _scalings_as_tensors(self.pipeline)
        return tuple(
            (choice.name, choice.weight)
            for entry, choice in zip(adapters, choices, strict=True)
            if entry.text_encoder
        )

    def _ensure(self, name: str, keep: set[str]) -> _Adapter:
        """The loaded adapter of file `name`, loading it (and evicting the LRU) if needed."""
        path = find(self.loras_dir, name)
        if path is None:
            available = ", ".join(each.name for each in list_loras(self.loras_dir)) or "none"
            raise LoraError(
                f"LoRA '{name[:64]}' is not in this worker's LORAS_DIR. Available: {available}."
            )
        stat = path.stat()
        stamp = (stat.st_mtime_ns, stat.st_size)
        entry = self._loaded.get(name)
        if entry is not None and entry.stamp == stamp:
            self._loaded.move_to_end(name)
            return entry
        slot = None
        if entry is not None:  # the file changed on disk: load it again
            slot = self._drop(name, delete=not self.hotswap)
        while len(self._loaded) >= self.capacity:
            victim = next((each for each in self._loaded if each not in keep), None)
            if victim is None:
                break  # a request naming more LoRAs than the capacity: keep them all for now
            slot = self._drop(victim, delete=not self.hotswap)
        try:
            info = describe(path)
        except LoraFileError as error:
            raise LoraError(str(error)) from None
        # A freed name is used again: peft and diffusers keep bookkeeping per adapter name, and
        # a new name per load would let it grow with every file ever loaded.
        adapter = slot or self._new_name()
        self._load(path, adapter, info.rank, hotswap=self.hotswap and slot is not None)
        self._loaded[name] = _Adapter(adapter, stamp, info.text_encoder)
        self.loads += 1
        log.info("LoRA %s loaded as adapter %s", name, adapter)
        return self._loaded[name]

    def _new_name(self) -> str:
        # peft adapter names become module keys: plain identifiers, never the file name.
        name = f"slot{self._counter}" if self.hotswap else f"lora{self._counter}"
        self._counter += 1
        return name

    def _drop(self, name: str, delete: bool) -> str:
        entry = self._loaded.pop(name)
        if delete:
            self.pipeline.delete_adapters(entry.adapter)
            log.info("LoRA %s unloaded (MAX_LORAS_LOADED)", name)
        return entry.adapter

    def _load(self, path: Path, adapter: str, rank: int, hotswap: bool) -> None:
        pipeline = self.pipeline
        if self.hotswap and not getattr(self, "_prepared", False):
            # Before the first adapter: pad every slot to the largest rank the folder holds,
            # and keep scalings as tensors, so swapping files never changes a graph's shapes.
            ranks = [each.rank for each in list_loras(self.loras_dir)]
            target = max([MIN_HOTSWAP_RANK, rank, *ranks])
            pipeline.enable_lora_hotswap(target_rank=target, check_compiled="ignore")
            self._prepared = True
        try:
            state = load_tensors(path)  # safetensors only: nothing is unpickled
            pipeline.load_lora_weights(state, adapter_name=adapter, hotswap=hotswap)
        except Exception as error:  # a family or layout the pipeline cannot take
            log.warning("LoRA %s could not be loaded: %s", path.name, error)
            if not hotswap:
                # Nothing half-loaded stays behind (it may not have been created at all).
                with contextlib.suppress(Exception):
                    pipeline.delete_adapters(adapter)
            raise LoraError(
                f"LoRA '{path.stem}' cannot be applied to this model ({type(error).__name__}: "
                f"{str(error)[:200]})."
            ) from None


def _scalings_as_tensors(pipeline: Any) -> None:
    """peft's hot-swap preparation, again after set_adapters: scalings stay tensors, so a new
    weight is a new value, not a new constant in a compiled graph."""
    from peft.utils.hotswap import _convert_scalings_to_tensor

    for component in getattr(pipeline, "_lora_loadable_modules", ()):
        module = getattr(pipeline, component, None)
        if module is not None:
            _convert_scalings_to_tensor(module)
