"""One job's progress across the passes of a pipeline call (hires fix, refiner: two passes).

The step callback of each pass reports steps on one scale that only grows: the steps of the
passes already run, plus this pass's, out of a total that counts the passes still to come.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from backend.model.run_control import RunControl

StepHook = Callable[[int, int], None]  # (step just finished, total steps)


class Progress:
    """Progress of one pipeline call's requests, pass after pass."""

    def __init__(self, controls: Sequence[RunControl], on_step: StepHook) -> None:
        self.controls = controls
        self.on_step = on_step
        self.done = 0  # steps of the passes already run

    def callback(
        self, planned: int, later: int = 0, on_latents: Callable[..., Any] | None = None
    ) -> Callable[..., dict]:
        """diffusers' step-end callback for a pass of `planned` steps, `later` steps to follow:
        progress, the caller's hook, deadlines and cancellation; `on_latents(pipeline, step,
        timestep, latents)` may replace the latents (the call must then pass them in)."""

        def callback(pipeline: Any, step: int, timestep: Any, kwargs: dict) -> dict:
            if on_latents is not None:
                kwargs["latents"] = on_latents(pipeline, step, timestep, kwargs["latents"])
            # diffusers' own count: img2img's strength and the refiner's switch shorten it.
            steps = getattr(pipeline, "num_timesteps", None) or planned
            current, total = self.done + step + 1, self.done + steps + later
            self.on_step(current, total)
            for control in self.controls:
                control.progress(current, total)
            # Every request checked (each may end itself at its deadline), then: does anyone
            # still want these images? If not, diffusers skips the remaining steps.
            if self.stopped():
                pipeline._interrupt = True
            return kwargs

        return callback

    def passed(self, pipeline: Any, planned: int) -> None:
        """A pass of `pipeline` ended: later passes count on from its steps."""
        self.done += getattr(pipeline, "num_timesteps", None) or planned

    def stopped(self) -> bool:
        """Whether nobody wants these images any more (every request checked)."""
        stops = [control.should_stop() for control in self.controls]
        return all(stops)
