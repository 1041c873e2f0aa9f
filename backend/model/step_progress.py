"""One job's progress across the passes of a pipeline call (hires fix, refiner: two passes).

The step callback of each pass reports steps on one scale that only grows: the steps of the
passes already run, plus this pass's, out of a total that counts the passes still to come.
It also draws the live previews of the requests that ask for them, and ends the call early
when nobody wants its images any more, or every request in it was interrupted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from backend.model.run_control import RunControl
from backend.model.types import GenerationRequest

StepHook = Callable[[int, int], None]  # (step just finished, total steps)

log = logging.getLogger(__name__)


class Progress:
    """Progress of one pipeline call's requests, pass after pass."""

    def __init__(
        self,
        controls: Sequence[RunControl],
        on_step: StepHook,
        requests: Sequence[GenerationRequest] = (),
        previewer: Any = None,  # latent_preview.Previewer; None: no previews
    ) -> None:
        self.controls = controls
        self.on_step = on_step
        self.done = 0  # steps of the passes already run
        self.cut_short = False  # an interrupt ended a pass early: later passes are skipped
        self.skipped = False  # ... and it was AUTOMATIC1111's skip, for each request it stopped
        self.reached = 0  # the last step reported, on the call's one scale
        self.previewer = previewer
        # (control, first image, images, every, size) of the requests that want previews only:
        # a call without any pays one empty loop per step.
        self.previews: list[tuple[RunControl, int, int, int, tuple[int, int]]] = []
        first = 0
        for control, request in zip(controls, requests, strict=False):
            if request.preview_every > 0 and previewer is not None:
                size = request.output_size
                self.previews.append(
                    (control, first, request.num_images, request.preview_every, size)
                )
            first += request.num_images

    def callback(
        self, planned: int, later: int = 0, on_latents: Callable[..., Any] | None = None
    ) -> Callable[..., dict]:
        """diffusers' step-end callback for a pass of `planned` steps, `later` steps to follow:
        progress, previews, the caller's hook, deadlines, cancels and interrupts;
        `on_latents(pipeline, step, timestep, latents)` may replace the latents (the call must
        then pass them in)."""

        def callback(pipeline: Any, step: int, timestep: Any, kwargs: dict) -> dict:
            if on_latents is not None:
                kwargs["latents"] = on_latents(pipeline, step, timestep, kwargs["latents"])
            # diffusers' own count: img2img's strength and the refiner's switch shorten it.
            steps = getattr(pipeline, "num_timesteps", None) or planned
            current, total = self.done + step + 1, self.done + steps + later
            self.reached = current
            if self.previews and kwargs.get("latents") is not None:
                self._preview(pipeline, kwargs["latents"], current, total)
            self.on_step(current, total)
            for control in self.controls:
                control.progress(current, total)
            # Every request checked (each may end itself at its deadline), then: does anyone
            # still want these images? If not, diffusers skips the remaining steps.
            if self.stopped():
                pipeline._interrupt = True
            return kwargs

        return callback

    def _preview(self, pipeline: Any, latents: Any, current: int, total: int) -> None:
        for control, first, count, every, size in self.previews:
            if current % every == 0 and current < total and not control.should_stop():
                # The final images come anyway: no preview of the last step.
                sliced = latents[first : first + count]
                try:
                    preview = self.previewer.preview(pipeline, sliced, size, current, total)
                except Exception:  # a preview is never worth the images: no more of them
                    log.exception("live preview failed; this call goes on without previews")
                    self.previews = []
                    return
                control.take_preview(preview)

    def passed(self, pipeline: Any, planned: int) -> None:
        """A pass of `pipeline` ended: later passes count on from its steps."""
        self.done += getattr(pipeline, "num_timesteps", None) or planned

    def stopped(self) -> bool:
        """Whether the call should end now: nobody wants its images any more, or each request
        that still does was interrupted (its images are then drawn from the latents so far)."""
        stops = [control.should_stop() for control in self.controls]
        if all(stops):
            return True
        wanted = [control for control, stop in zip(self.controls, stops, strict=True) if not stop]
        if all(control.interrupted() for control in wanted):
            self.cut_short = True
            self.skipped = all(getattr(control, "skipped", False) for control in wanted)
            return True
        return False
