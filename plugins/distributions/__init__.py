"""Built-in distributions: analytic laws, point clouds (toy 2-D sets, files of points, weighted points) and
images. The Gaussian mixture and the point cloud themselves are the engine's (:mod:`stochthermo.measures`),
registered here."""

from stochthermo.measures import GaussianMixture, PointCloud

from .analytic import Gaussian, Uniform
from .image_files import ImageArray, read_images
from .images import Images
from .point_clouds import EightGaussians, Empirical, Moons, SwissRoll, WeightedPoints

__all__ = ["EightGaussians", "Empirical", "Gaussian", "GaussianMixture", "ImageArray", "Images", "Moons",
           "PointCloud", "SwissRoll", "Uniform", "WeightedPoints", "read_images"]
