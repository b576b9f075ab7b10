"""What a loaded plugin's hooks must return before its family is usable.

Each check stops at the first problem and records it on the plugin's record as
one line that says what to change: the manifest and the entry point agree on the
name, the plugin API version is one this core provides, all four components are
named, and any tasks are ``TaskRef`` records.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import xlm_core
from xlm_core.plugins import hookspecs
from xlm_core.plugins.manifest import (
    COMPONENT_KINDS,
    ComponentRef,
    FamilyManifest,
    TaskRef,
    api_compatibility,
    api_version_hint,
    parse_version,
)

if TYPE_CHECKING:  # the registry imports this module
    from xlm_core.plugins.registry import PluginRecord

#: Calls the plugin's implementation of one hook: (implemented, result).
HookCall = Callable[[str], tuple[bool, Any]]


def check_plugin(record: PluginRecord, call: HookCall) -> None:
    """Fill ``record`` from the plugin's hooks, or mark it failed (or incompatible) saying why."""
    found, manifest = call("xlm_family")
    if not found:
        record.fail("does not implement xlm_family(); see docs/plugins.md")
        return
    if not isinstance(manifest, FamilyManifest):
        record.fail(f"xlm_family() returned {type(manifest).__name__}, expected FamilyManifest")
        return
    record.manifest, record.api_version = manifest, manifest.api_version
    if manifest.name != record.name:
        record.fail(
            f"xlm_family() names the family {manifest.name!r} but the entry point is "
            f"{record.name!r}; make them equal"
        )
        return
    compatibility = api_compatibility(manifest.api_version)
    if compatibility == "other_major":
        core_major = parse_version(xlm_core.PLUGIN_API_VERSION)[0]
        record.fail(
            f"targets plugin API {manifest.api_version} but xlm-core {xlm_core.__version__} "
            f"provides {xlm_core.PLUGIN_API_VERSION}; install a version of "
            f"{record.distribution or record.name} built for API {core_major}.x; "
            f"to port it, {api_version_hint()}",
            status="incompatible",
        )
        return
    if compatibility == "newer_minor":
        record.warnings.append(
            f"{record.origin} targets plugin API {manifest.api_version}, newer than "
            f"xlm-core's {xlm_core.PLUGIN_API_VERSION}; upgrade xlm-core"
        )
    for kind in COMPONENT_KINDS:
        hook = hookspecs.COMPONENT_HOOKS[kind]
        found, ref = call(hook)
        if not found:
            record.fail(f"missing component {kind!r}: implement {hook}()")
            return
        if not isinstance(ref, ComponentRef):
            record.fail(f"{hook}() returned {type(ref).__name__}, expected ComponentRef")
            return
        record.components[kind] = ref
    found, tasks = call("xlm_tasks")
    if found:
        if not all(isinstance(t, TaskRef) for t in tasks or ()):
            record.fail("xlm_tasks() must return a list of TaskRef")
            return
        record.tasks = list(tasks or ())
