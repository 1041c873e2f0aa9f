"""The schedulers (samplers) a request may choose, by our name and by AUTOMATIC1111's label.

Torch-free at import: the view layer validates names with this table. diffusers is imported
only when a scheduler is built, on a device worker's thread.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from backend.model.catalogue import Family


@dataclass(frozen=True)
class SchedulerChoice:
    """One choosable scheduler: our API name, AUTOMATIC1111's label, and how to build it."""

    name: str
    label: str
    class_name: str
    options: Mapping[str, Any] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()  # other spellings AUTOMATIC1111 accepts (k-diffusion names)

    @property
    def karras(self) -> bool:
        """Whether this choice spaces its noise levels as Karras et al. do."""
        return bool(self.options.get("use_karras_sigmas"))


_DPMPP = {"algorithm_type": "dpmsolver++", "solver_order": 2}
_BASE_CHOICES = (
    SchedulerChoice("euler", "Euler", "EulerDiscreteScheduler", {}, ("k_euler",)),
    SchedulerChoice("euler_a", "Euler a", "EulerAncestralDiscreteScheduler", {}, ("k_euler_a",)),
    SchedulerChoice("heun", "Heun", "HeunDiscreteScheduler", {}, ("k_heun",)),
    SchedulerChoice("dpm2", "DPM2", "KDPM2DiscreteScheduler", {}, ("k_dpm_2",)),
    SchedulerChoice("dpm2_a", "DPM2 a", "KDPM2AncestralDiscreteScheduler", {}, ("k_dpm_2_a",)),
    SchedulerChoice("dpmpp_2m", "DPM++ 2M", "DPMSolverMultistepScheduler", _DPMPP, ("k_dpmpp_2m",)),
    SchedulerChoice(
        "dpmpp_2m_sde",
        "DPM++ 2M SDE",
        "DPMSolverMultistepScheduler",
        {**_DPMPP, "algorithm_type": "sde-dpmsolver++"},
        ("k_dpmpp_2m_sde",),
    ),
    SchedulerChoice("unipc", "UniPC", "UniPCMultistepScheduler", {}),
    SchedulerChoice("ddim", "DDIM", "DDIMScheduler", {}),
    SchedulerChoice("pndm", "PLMS", "PNDMScheduler", {"skip_prk_steps": True}),
    SchedulerChoice("lcm", "LCM", "LCMScheduler", {}),
)
# Schedulers that can space their sigmas the Karras way get a "<name>_karras" twin, which is
# also what AUTOMATIC1111 before 1.9 called "<label> Karras".
_KARRAS_CAPABLE = ("euler", "heun", "dpm2", "dpm2_a", "dpmpp_2m", "dpmpp_2m_sde", "unipc")
_KARRAS_CHOICES = tuple(
    SchedulerChoice(
        f"{choice.name}_karras",
        f"{choice.label} Karras",
        choice.class_name,
        {**choice.options, "use_karras_sigmas": True},
        tuple(f"{alias}_ka" for alias in choice.aliases),
    )
    for choice in _BASE_CHOICES
    if choice.name in _KARRAS_CAPABLE
)
# SD3, SD3.5 and FLUX are flow-matching models: the noise-prediction schedulers above do not
# apply to them. Sana is flow-matching too, sampled by DPM-Solver++ on flow sigmas: its own
# scheduler's config (use_flow_sigmas, flow_prediction) carries over to the choice built on it.
_FLOW_CHOICES = (SchedulerChoice("euler", "Euler", "FlowMatchEulerDiscreteScheduler", {}),)
_SANA_CHOICES = tuple(c for c in _BASE_CHOICES if c.name == "dpmpp_2m")
# PixArt-Σ predicts noise like SD (its pipeline takes any of diffusers' Karras schedulers; its
# own is DPM-Solver++ 2M); LCM needs a consistency-distilled model.
_PIXART_CHOICES = tuple(c for c in _BASE_CHOICES + _KARRAS_CHOICES if c.name != "lcm")

_BY_FAMILY: dict[Family, tuple[SchedulerChoice, ...]] = {
    Family.SD: _BASE_CHOICES + _KARRAS_CHOICES,
    Family.SDXL: _BASE_CHOICES + _KARRAS_CHOICES,
    Family.SD3: _FLOW_CHOICES,
    Family.FLUX: _FLOW_CHOICES,
    Family.PIXART: _PIXART_CHOICES,
    Family.SANA: _SANA_CHOICES,
}
SCHEDULER_NAMES: tuple[str, ...] = tuple(
    dict.fromkeys(c.name for choices in _BY_FAMILY.values() for c in choices)
)


def choices(family: Family) -> tuple[SchedulerChoice, ...]:
    """The schedulers a model of `family` can run with."""
    return _BY_FAMILY[family]


def find(name: str, family: Family) -> SchedulerChoice | None:
    """The choice called `name` (our name, label or alias, any case) for `family`, if any."""
    wanted = name.strip().lower()
    for choice in _BY_FAMILY[family]:
        if wanted in (choice.name, choice.label.lower(), *choice.aliases):
            return choice
    return None


def describe(scheduler_class: str, config: Mapping[str, Any], family: Family) -> SchedulerChoice:
    """The choice that matches a model's own scheduler (for metadata), or a generic stand-in."""
    karras = bool(config.get("use_karras_sigmas"))
    algorithm = config.get("algorithm_type")
    for choice in _BY_FAMILY[family]:
        if (
            choice.class_name == scheduler_class
            and choice.karras == karras
            and choice.options.get("algorithm_type", algorithm) == algorithm
        ):
            return choice
    return SchedulerChoice(scheduler_class, scheduler_class, scheduler_class)


def build(choice: SchedulerChoice | None, base: Any) -> Any:
    """A fresh scheduler for one generation: `choice` (or `base`'s own kind) on `base`'s config.

    Every run gets its own instance, so no state carries over from one request to the next.
    """
    import diffusers

    if choice is None:
        return type(base).from_config(base.config)
    return getattr(diffusers, choice.class_name).from_config(base.config, **choice.options)
