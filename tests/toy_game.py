"""A game written outside gantrain, for tests/test_game_seam.py: an `encoder` maps noise to 2D points and a
`critic` scores them against the data (a Wasserstein critic with weight clipping). Two networks named otherwise
than generator and discriminator; what it needs of gantrain is the Game base and `Game.build`."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from gantrain.data.streaming import make_batches
from gantrain.data.base import normalize
from gantrain.training.games import Built, Game, RunSetup


class ToyGame(Game):
    name = "toy"
    sampled = "encoder"
    watched = ("loss/critic", "loss/encoder")
    reported = ("loss/critic", "loss/encoder")

    def __init__(self, encoder: nn.Module, critic: nn.Module, batch_size: int, **base):
        super().__init__(**base)
        self.set_networks({"encoder": encoder, "critic": critic})
        self.batch_size = batch_size
        self.fixed_z = torch.randn(64, 4, generator=torch.Generator().manual_seed(1)).to(self.device)

    @classmethod
    def build(cls, setup: RunSetup) -> Built:
        dataset = setup.dataset
        encoder = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2)).to(setup.device)
        critic = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 1)).to(setup.device)
        batches = make_batches(dataset, setup.settings.batch_size, setup.seed, setup.device, 0)
        game = cls(encoder, critic, setup.settings.batch_size, **setup.base())
        return Built(game, batches, {"data_shape": list(dataset.shape), "data_kind": dataset.kind, "num_classes": None})

    def step(self, batch: Tensor) -> None:
        real = normalize(batch[0])
        fake = self.networks["encoder"](torch.randn(self.batch_size, 4, device=self.device))
        critic = self.networks["critic"]
        critic_loss = critic(fake.detach()).mean() - critic(real).mean()
        self.update("critic", critic_loss)
        self.clip_weights("critic", 0.1)
        critic.requires_grad_(False)
        encoder_loss = -critic(fake).mean()
        self.update("encoder", encoder_loss)
        critic.requires_grad_(True)
        self.stats.add("loss/critic", critic_loss)
        self.stats.add("loss/encoder", encoder_loss)

    def grid(self, sampler: nn.Module) -> Tensor:
        return sampler(self.fixed_z)
