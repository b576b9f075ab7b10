"""The plugin API: hookspecs, manifest records and the registry.

A plugin's entry module imports only from here (and pydantic), never torch.
"""

from xlm_core.plugins.hookspecs import hookimpl, hookspec
from xlm_core.plugins.manifest import (
    COMPONENT_KINDS,
    STANDARD_PRESETS,
    ComponentRef,
    ConfidenceKind,
    ConfidenceSettings,
    FamilyConfig,
    FamilyManifest,
    PredictorSettings,
    StrictModel,
    TaskRef,
    standard_presets,
)
from xlm_core.plugins.registry import Family, PluginRecord, Registry, get_registry, reset_registry

__all__ = [
    "COMPONENT_KINDS",
    "STANDARD_PRESETS",
    "ComponentRef",
    "ConfidenceKind",
    "ConfidenceSettings",
    "Family",
    "FamilyConfig",
    "FamilyManifest",
    "PluginRecord",
    "PredictorSettings",
    "Registry",
    "StrictModel",
    "TaskRef",
    "get_registry",
    "hookimpl",
    "hookspec",
    "reset_registry",
    "standard_presets",
]
