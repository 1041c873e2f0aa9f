"""Server settings: from `.env`, overridden by the environment, typed and validated.

This module must stay cheap to import: gunicorn's master reads it for `bind`, and it must never
pull in torch or diffusers. The groups, the schema and its checks live in `backend/settings/`;
every name is imported from here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dotenv import dotenv_values
from marshmallow import ValidationError

from backend.settings.groups import (
    SPEED_COMPONENTS,
    AccessSettings,
    Limits,
    MemorySettings,
    ScaleOutSettings,
    ServingSettings,
    Settings,
    SpeedSettings,
)
from backend.settings.paths import ROOT, resolve_path
from backend.settings.schema import SettingsSchema

__all__ = [
    "ROOT",
    "SPEED_COMPONENTS",
    "AccessSettings",
    "ConfigError",
    "Limits",
    "MemorySettings",
    "ScaleOutSettings",
    "ServingSettings",
    "Settings",
    "SpeedSettings",
    "env_file",
    "load_settings",
    "resolve_path",
    "setting_names",
]


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


def setting_names() -> list[str]:
    """Every variable the settings read (each is documented in README.md and .env)."""
    return [field.data_key or name for name, field in SettingsSchema().fields.items()]


def env_file() -> Path:
    """The `.env` file read for defaults (`ENV_FILE` may point elsewhere)."""
    return Path(os.environ.get("ENV_FILE", ROOT / ".env"))


def load_settings(overrides: Mapping[str, Any] | None = None) -> Settings:
    """Settings from `.env`, then the environment, then `overrides` (each wins over the last)."""
    raw: dict[str, Any] = {
        key: value for key, value in dotenv_values(env_file()).items() if value is not None
    }
    raw.update(os.environ)
    raw.update({key: str(value) for key, value in (overrides or {}).items()})
    # An empty variable (`DEVICE=`) means "use the default", as it does in most .env tooling.
    raw = {key: value for key, value in raw.items() if value != ""}
    try:
        settings: Settings = SettingsSchema().load(raw)
    except ValidationError as error:
        problems = "; ".join(
            f"{name}: {' '.join(map(str, messages))}"
            for name, messages in sorted(error.normalized_messages().items())
        )
        raise ConfigError(f"Invalid configuration: {problems}") from None
    return settings
