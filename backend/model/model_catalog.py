"""The models a server may serve: the default (switchable) and what MODELS_DIR holds.

Pure Python, no torch: the API processes of the scale-out mode list and check models with it.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path

from backend.model import single_file
from backend.model.catalogue import ModelName, ModelSpec
from backend.model.errors import ModelNotFoundError
from backend.model.registry import is_refiner_folder, resolve_model

# What a request may call a model: a plain folder name, never a path.
_REQUEST_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class ModelCatalog:
    """The models this server can serve: the configured default plus the folders of MODELS_DIR.

    Requests name models by folder name only; a name is never turned into a path outside
    MODELS_DIR (no separators, no `..`, and a symlink that leads out of MODELS_DIR is refused).
    """

    def __init__(self, default_model: str, models_dir: Path) -> None:
        self.models_dir = models_dir
        self._default = resolve_model(default_model, models_dir)
        self.configured = self._default  # DEFAULT_MODEL's: servable wherever its folder is
        self._specs: dict[str, ModelSpec] = {self._default.name: self._default}
        self._lock = threading.Lock()
        self._shared: Callable[[], str | None] | None = None  # see `follow`
        self._next_look = 0.0

    @property
    def default(self) -> ModelSpec:
        """The model requests that name none get (a shared switch is looked up once a second)."""
        if self._shared is not None and time.monotonic() >= self._next_look:
            self._next_look = time.monotonic() + 1.0  # before resolving: it reads `default`
            name = self._shared()
            if name and name != self._default.name:
                # A name this process's MODELS_DIR lacks: keep the default it has.
                with contextlib.suppress(ModelNotFoundError):
                    self._default = self.resolve(name)
        return self._default

    def follow(self, shared: Callable[[], str | None]) -> None:
        """Take the default from `shared` (a name, or None for no switch), as the API processes
        of the scale-out mode share one switched default through Redis."""
        self._shared = shared

    def resolve(self, name: str | None) -> ModelSpec:
        """The spec of a model a request names (None: the default); ModelNotFoundError if none."""
        default = self.default  # read once: another thread may switch it meanwhile
        if name is None or name == default.name:
            return default
        if name == self.configured.name:
            return self.configured
        if not self._servable(name):
            raise ModelNotFoundError(name, self.available())
        with self._lock:
            if name not in self._specs:  # reading configs is cheap, but not free: once per name
                self._specs[name] = resolve_model(name, self.models_dir)
            return self._specs[name]

    def set_default(self, spec: ModelSpec) -> None:
        """Serve `spec` (resolved by `resolve`) to requests that name no model, from now on."""
        with self._lock:
            self._default = spec

    def available(self) -> list[str]:
        """Names a request may use: the default and every servable folder or file in MODELS_DIR."""
        names = {self.default.name, self.configured.name}
        if self.models_dir.is_dir():
            folders = [p.name for p in self.models_dir.iterdir() if p.is_dir()]
            files = single_file.listed_names(self.models_dir)
            names.update(name for name in folders + files if self._servable(name))
        return sorted(names)

    def listing(self) -> list[ModelSpec]:
        """Every model worth showing: the catalogue's names (present or not) and the rest."""
        names = {name.value for name in ModelName} | set(self.available())
        return [self.default] + [
            self._spec_for_listing(name) for name in sorted(names - {self.default.name})
        ]

    def _spec_for_listing(self, name: str) -> ModelSpec:
        try:
            return self.resolve(name)
        except ModelNotFoundError:
            return ModelName(name).spec(self.models_dir)  # a catalogue name without its folder

    def _servable(self, name: str) -> bool:
        if not _REQUEST_NAME.fullmatch(name) or ".." in name:
            return False
        path: Path | None = self.models_dir / name
        if is_refiner_folder(path):  # used as `refiner`, never drawn from alone
            return False
        if not (path / "model_index.json").is_file():  # then a single-file checkpoint, or none
            path = single_file.checkpoint_path(name, self.models_dir)
        try:
            return path is not None and path.resolve().is_relative_to(self.models_dir.resolve())
        except OSError:  # a symlink loop, say
            return False
