"""The model families: the one table from a family's name to its config class and its model class.

    model = build_model(FAMILIES["lae"].config(n_pixels=784, n_chains=2))

lae.config takes the names (RunConfig's `model` choices, MODELS) and builds each family's config from it;
lae.linear_gaussian builds every family on the tractable model. A new family: its config (a ModelConfig naming its
`run_options`) and model (a LatentModel) in a module of its own, and one row here, or, from another package, an entry
point (docs/extending.md):

    [project.entry-points."lae_bench.families"]
    vampprior = "vampprior:FAMILY"        # FAMILY = lae.families.Family(VampPriorConfig, VampPrior)

Installed families are discovered once, when this module is first imported, and join FAMILIES after the built-in
ones; a name already taken, or an entry point that fails to load or is not a (ModelConfig, LatentModel) pair, is left
out with one warning line (a broken plugin never stops the suite).
"""

from __future__ import annotations

from typing import NamedTuple

from lae.controls import MAP, Frozen, FrozenConfig, MAPConfig
from lae.flows import VAEFlow, VAEFlowConfig
from lae.lae import LAE, LAEConfig
from lae.models import LatentModel, ModelConfig
from lae.plugins import discover
from lae.vae import IWAE, LVAE, VAE, IWAEConfig, LVAEConfig, VAEConfig

ENTRY_POINT_GROUP = "lae_bench.families"


class Family(NamedTuple):
    config: type[ModelConfig]
    model: type[LatentModel]


BUILT_IN: dict[str, Family] = {
    "vae": Family(VAEConfig, VAE),
    "iwae": Family(IWAEConfig, IWAE),
    "lvae": Family(LVAEConfig, LVAE),
    "lae": Family(LAEConfig, LAE),
    "vae_flow": Family(VAEFlowConfig, VAEFlow),
    "frozen": Family(FrozenConfig, Frozen),  # LAE's controls (lae.controls): Phi fixed at its initial value,
    "map": Family(MAPConfig, MAP),  # and Phi trained by the optimizer (amortized MAP)
}


def as_family(value) -> Family:
    """An entry point's value as a Family: a Family, or any (config class, model class) pair. TypeError otherwise."""
    try:
        config, model = value
    except (TypeError, ValueError):
        raise TypeError(f"not a (config class, model class) pair: {value!r}") from None
    if not (isinstance(config, type) and issubclass(config, ModelConfig)):
        raise TypeError(f"config {config!r} is not a lae.models.ModelConfig subclass")
    if not (isinstance(model, type) and issubclass(model, LatentModel)):
        raise TypeError(f"model {model!r} is not a lae.models.LatentModel subclass")
    return Family(config, model)


FAMILIES: dict[str, Family] = discover(ENTRY_POINT_GROUP, BUILT_IN, as_family)


def build_model(config: ModelConfig) -> LatentModel:
    """The model of the family whose config class `config` is (exactly, not a subclass)."""
    for family in FAMILIES.values():
        if type(config) is family.config:
            return family.model(config)
    raise TypeError(f"no model family has config class {type(config).__name__}")
