"""Networks, one module per family: base (what every family shares), dcgan, mlp, sngan, translation
(U-Net, ResNet, PatchGAN). A new family is a new module here and a YAML file in configs/generator/ and
configs/discriminator/. May import only the leaves (errors, ...).

The names of gantrain 0.8.0's `gantrain.models` are offered here, so that `gantrain.models` keeps
importing (gantrain.moved)."""
from gantrain.nets.base import (CONDITIONINGS, LABEL_EMBEDDING, ConditionalBatchNorm2d, Discriminator,  # noqa: F401
                                Generator, truncate)
from gantrain.nets.dcgan import DCGANDiscriminator, DCGANGenerator, dcgan_plan  # noqa: F401
from gantrain.nets.mlp import MLPDiscriminator, MLPGenerator  # noqa: F401
