"""The model families: the one table from a family's name to its config class and its model class.

    model = build_model(FAMILIES["lae"].config(n_pixels=784, n_chains=2))

lae.config takes the names (RunConfig's `model` choices, MODELS) and builds each family's config from it;
lae.linear_gaussian builds every family on the tractable model. A new family: its config (a ModelConfig naming its
`run_options`) and model (a LatentModel) in a module of its own, and one row here.
"""

from __future__ import annotations

from typing import NamedTuple

from lae.controls import MAP, Frozen, FrozenConfig, MAPConfig
from lae.flows import VAEFlow, VAEFlowConfig
from lae.lae import LAE, LAEConfig
from lae.models import LatentModel, ModelConfig
from lae.vae import IWAE, LVAE, VAE, IWAEConfig, LVAEConfig, VAEConfig


class Family(NamedTuple):
    config: type[ModelConfig]
    model: type[LatentModel]


FAMILIES: dict[str, Family] = {
    "vae": Family(VAEConfig, VAE),
    "iwae": Family(IWAEConfig, IWAE),
    "lvae": Family(LVAEConfig, LVAE),
    "lae": Family(LAEConfig, LAE),
    "vae_flow": Family(VAEFlowConfig, VAEFlow),
    "frozen": Family(FrozenConfig, Frozen),  # LAE's controls (lae.controls): Phi fixed at its initial value,
    "map": Family(MAPConfig, MAP),  # and Phi trained by the optimizer (amortized MAP)
}


def build_model(config: ModelConfig) -> LatentModel:
    """The model of the family whose config class `config` is (exactly, not a subclass)."""
    for family in FAMILIES.values():
        if type(config) is family.config:
            return family.model(config)
    raise TypeError(f"no model family has config class {type(config).__name__}")
