"""Images along the true and the perturbed reverse processes at chosen times (docs/theory.md §7, E3).

For image data (a distribution with an ``image_shape``, such as ``images``) the first ``samples``
particles of the true reverse process — samples of P_t at every t, each row one probability-flow path from
noise (t = τ) to an image (t = 0) — and the same particles of each perturbed reverse process (their starts
share the standard-normal draws of the true start) are recorded at ``times`` (fractions of τ, snapped to
the grid), with the data's normalisation (pixels = ``pixel_offset`` + ``pixel_scale`` · x) in the attributes.
``images_figure`` (the observers' figures module) tiles them into image grids.
"""

from __future__ import annotations

import numpy as np

from stochthermo import Coordinate, Observer, ScenarioError, Variable, hookimpl
from stochthermo.roles import HoldsImages

from .figures import images_figure


class ImageSnapshots(Observer):
    """The first ``samples`` particles, as images, at ``times`` (fractions of τ)."""

    name = "image_snapshots"

    def __init__(self, times: list[float] = [0.0, 0.25, 0.5, 0.75, 1.0], samples: int = 8):  # noqa: B006
        if any(not 0 <= f <= 1 for f in times):
            raise ScenarioError(f"fractions of tau must lie in [0, 1], got {times}", key="times")
        if samples < 1:
            raise ScenarioError(f"must be >= 1, got {samples}", key="samples")
        self.fractions, self.samples = times, samples

    @classmethod
    def figures(cls, ds):
        return {"images": images_figure} if "forward_images" in ds and "reverse_images" in ds else {}

    def prepare(self, setup):
        if not isinstance(setup.data, HoldsImages):
            raise ScenarioError(f"image snapshots need image data (e.g. 'images'), not '{setup.data.name}'")
        if self.samples > setup.particles:
            raise ScenarioError(f"must be <= the {setup.particles} particles, got {self.samples}", key="samples")
        layout = setup.data.image_layout()
        self.image_shape = list(layout.shape)
        #: pixel values = offset + scale · x
        self.pixel_offset, self.pixel_scale = layout.offset, layout.scale
        times = setup.times.numpy()
        self.indices = [int(np.argmin(np.abs(times - f * times[-1]))) for f in self.fractions]
        self.image_times = times[self.indices]

    def coordinates(self):
        return {"image_time": Coordinate(self.image_times, "forward time of the images"),
                "image": Coordinate(np.arange(self.samples), "index of the sample"),
                "pixel": Coordinate(np.arange(int(np.prod(self.image_shape))), "flat pixel index")}

    def variables(self):
        attrs = {"image_shape": np.array(self.image_shape, dtype=np.int64), "pixel_offset": self.pixel_offset,
                 "pixel_scale": self.pixel_scale}
        return {
            "forward_images": Variable(("image_time", "image", "pixel"), "forward-process samples as images", "1",
                                       "x_t ~ P_t", "(1)", attrs=attrs,
                                       description="samples of P_t along the true reverse process, as images"),
            "reverse_images": Variable(("perturbation", "image_time", "image", "pixel"),
                                       "perturbed reverse samples as images", "1", "x_t ~ P~_t", "(79)", attrs=attrs,
                                       description="the same particles of the perturbed reverse process, as images"),
        }

    def observe(self, run, measured):
        def pick(trajectory):
            return trajectory.positions[self.indices, : self.samples].cpu().numpy()

        return {"forward_images": pick(run.forward),
                "reverse_images": np.stack([pick(trajectory) for trajectory in run.perturbed.values()])}


@hookimpl
def stochthermo_register_observers():
    return [ImageSnapshots]
