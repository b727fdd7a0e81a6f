"""Datasets and the batch streams that feed the trainer: base (the Dataset interface and shared checks),
images, mixtures (the 2D Gaussians), streaming, stacked_mnist, translation (paired and unpaired sets),
outlines (how edges2mnist draws its inputs), cache (built sets on disk). A new dataset is a module (or a
class) here and a YAML file in configs/dataset/. May import only the leaves (errors, ...); data knows
nothing of networks.

The names of gantrain 0.8.0's `gantrain.data` module are offered here: `gantrain.data.MNIST` is still a
valid `_target_`."""
from gantrain.data.base import Dataset, normalize, to_uint8_image  # noqa: F401
from gantrain.data.images import (CIFAR10, IMAGE_EXTENSIONS, MNIST, Digits, FashionMNIST,  # noqa: F401
                                  ImageFolder, LabelledImages, Subset, read_idx)
from gantrain.data.mixtures import Grid, Ring  # noqa: F401
from gantrain.data.streaming import (BatchStream, DeviceBatches, StreamedBatches, UnpairedBatches,  # noqa: F401
                                     epoch_permutation, make_batches)
