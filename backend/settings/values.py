"""Parsing and checking the setting values that need more than a marshmallow field."""

from __future__ import annotations

from marshmallow import ValidationError

from backend.settings.groups import SPEED_COMPONENTS
from backend.settings.paths import resolve_path

DEVICE_PATTERN = r"^(auto|cpu|cuda(:\d+)?)$"
DEVICES_PATTERN = r"^(auto|(cpu|cuda(:\d+)?)(\s*,\s*(cpu|cuda(:\d+)?))*)$"


def components(value: str, name: str, allow_auto: bool) -> tuple[str, ...] | None:
    """A component list setting: auto (None), none/false, true (all), or unet,transformer,vae."""
    value = value.strip().lower()
    if allow_auto and value == "auto":
        return None
    if value in ("none", "false"):
        return ()
    if value == "true":
        return SPEED_COMPONENTS
    items = split(value)
    unknown = [item for item in items if item not in SPEED_COMPONENTS]
    if unknown or not items:
        choices = "auto, " if allow_auto else ""
        raise ValidationError(
            f"must be {choices}true, none, or a comma-separated list of "
            f"{', '.join(SPEED_COMPONENTS)} (got {', '.join(unknown) or 'nothing'})",
            name,
        )
    return items


def check_rate_limit(value: str) -> None:
    """RATE_LIMIT's validator: raises a ValidationError unless flask-limiter can parse it."""
    # `limits` is flask-limiter's own parser: what passes here is what the limiter enforces.
    from limits import parse_many

    try:
        parse_many(value)
    except ValueError:
        raise ValidationError(
            "must be flask-limiter notation such as 30/minute or 10/second;100/hour"
        ) from None


def split(value: str | None) -> tuple[str, ...]:
    """The items of a comma-separated setting, stripped; empty ones dropped."""
    return tuple(item.strip() for item in (value or "").split(",") if item.strip())


def api_keys(listed: str | None, file: str | None, variable: str = "API_KEYS") -> tuple[str, ...]:
    """Keys from API_KEYS (comma-separated) and API_KEYS_FILE (one per line, # comments)."""
    keys = list(split(listed))
    if file:
        path = resolve_path(file)
        try:
            lines = path.read_text().splitlines()
        except OSError as error:
            raise ValidationError(
                f"cannot read {path}: {error.strerror or error}", "API_KEYS_FILE"
            ) from None
        keys += [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    if any(len(key) < 16 for key in keys):
        # A short key can be guessed; refusing it is kinder than a breach.
        raise ValidationError("every API key must be at least 16 characters long", variable)
    return tuple(dict.fromkeys(keys))
