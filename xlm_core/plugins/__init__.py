"""The plugin API: hookspecs, manifest records, config base classes, presets and the registry.

A plugin's entry module imports only from here (and pydantic), never torch.
"""

from xlm_core.plugins.hookspecs import hookimpl, hookspec
from xlm_core.plugins.manifest import COMPONENT_KINDS, ComponentRef, FamilyManifest, TaskRef
from xlm_core.plugins.presets import STANDARD_PRESETS, standard_presets
from xlm_core.plugins.registry import Family, PluginRecord, Registry, get_registry, reset_registry
from xlm_core.plugins.settings import (
    ConfidenceKind,
    ConfidenceSettings,
    FamilyConfig,
    MaskedDiffusionConfig,
    NelboEstimator,
    PredictorSettings,
    ScheduleName,
    StrictModel,
)

__all__ = [
    "COMPONENT_KINDS",
    "STANDARD_PRESETS",
    "ComponentRef",
    "ConfidenceKind",
    "ConfidenceSettings",
    "Family",
    "FamilyConfig",
    "FamilyManifest",
    "MaskedDiffusionConfig",
    "NelboEstimator",
    "PluginRecord",
    "PredictorSettings",
    "Registry",
    "ScheduleName",
    "StrictModel",
    "TaskRef",
    "get_registry",
    "hookimpl",
    "hookspec",
    "reset_registry",
    "standard_presets",
]
