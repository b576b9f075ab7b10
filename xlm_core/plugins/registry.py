"""A typed facade over pluggy: discovers and loads plugins, and answers what is usable.

Nothing outside this module calls ``pm.hook.*``. Each entry point is loaded
inside its own error handling (``isolation``), so one broken plugin is reported
as ``failed`` and never stops the CLI or the other plugins; what its hooks must
return is checked in ``validation``.
"""

from __future__ import annotations

import functools
import os
import re
import types
from collections import defaultdict
from collections.abc import Callable, Iterable
from importlib import metadata
from typing import Any, Literal

import attrs
import pluggy

from xlm_core.errors import PluginError, StrictPluginError
from xlm_core.plugins import hookspecs
from xlm_core.plugins.isolation import SigintWatch, plugin_failure, printable
from xlm_core.plugins.isolation import describe_exception as describe_exception  # its old home
from xlm_core.plugins.manifest import (
    COMPONENT_KINDS,
    ComponentKind,
    ComponentRef,
    FamilyManifest,
    TaskRef,
)
from xlm_core.plugins.validation import check_plugin

ENTRY_POINT_GROUP = "xlm.plugins"
Status = Literal["ok", "failed", "incompatible", "disabled"]


@attrs.define(slots=True)
class PluginRecord:
    """One row of ``xlm plugins list``: where a plugin came from and whether it is usable."""

    name: str
    distribution: str | None
    version: str | None
    api_version: str | None = None
    status: Status = "ok"
    error: str | None = None
    warnings: list[str] = attrs.field(factory=list)
    manifest: FamilyManifest | None = None
    components: dict[str, ComponentRef] = attrs.field(factory=dict)
    tasks: list[TaskRef] = attrs.field(factory=list)

    @property
    def source(self) -> str:
        """``xlm-mdlm 0.1.0``, or ``registered in-process``."""
        if not self.distribution:
            return "registered in-process"
        # Installed metadata is written by the plugin's author, like its error messages.
        return printable(f"{self.distribution} {self.version}")

    @property
    def origin(self) -> str:
        """``plugin 'mdlm' (xlm-mdlm 0.1.0)``: how every message names a plugin."""
        return f"plugin {self.name!r} ({self.source})"

    def as_row(self) -> dict[str, Any]:
        """Exactly the keys of ``xlm plugins list --json``."""
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "api_version": self.api_version,
            "status": self.status,
            "error": self.error,
        }

    def fail(self, message: str, status: Status = "failed") -> None:
        self.status, self.error = status, f"{self.origin}: {message}"


class Family:
    """A loaded, validated family: its manifest and lazily resolved, contract-checked components."""

    def __init__(self, record: PluginRecord):
        assert record.manifest is not None
        self.record = record
        self.manifest: FamilyManifest = record.manifest
        self._resolved: dict[str, Any] = {}

    @property
    def name(self) -> str:
        return self.record.name

    def component(self, kind: ComponentKind) -> Any:
        """Import and contract-check one component class (first use only); failures mark the plugin failed."""
        if kind not in self._resolved:
            ref = self.record.components[kind]
            with SigintWatch() as sigint:
                try:
                    obj = ref.resolve()
                except BaseException as exc:  # even a plugin's sys.exit() must not escape
                    problem = plugin_failure(exc, sigint)
                    self.record.fail(f"cannot import {kind} {ref.path!r}: {problem}")
                    raise PluginError(self.record.error) from exc
            from xlm_core.components import contract_violation  # imports torch: only on first use

            problem = contract_violation(kind, obj)
            if problem:
                self.record.fail(f"{kind} {ref.path!r} {problem}")
                raise PluginError(self.record.error)
            self._resolved[kind] = obj
        return self._resolved[kind]

    def resolve_all(self) -> dict[str, Any]:
        return {kind: self.component(kind) for kind in COMPONENT_KINDS}

    def make_config(self, **overrides: Any) -> Any:
        return self.manifest.config(**overrides)

    def preset(self, name: str) -> dict[str, Any]:
        try:
            return self.manifest.presets[name]
        except KeyError:
            known = ", ".join(sorted(self.manifest.presets)) or "none"
            raise PluginError(f"unknown preset {name!r} for {self.name!r} (known: {known})") from None


class Registry:
    """All plugins found in the ``xlm.plugins`` entry point group, plus any registered in-process."""

    def __init__(self, *, discover: bool = True, disabled: Iterable[str] | None = None):
        self._pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self._pm.add_hookspecs(hookspecs)
        if disabled is None:
            disabled = os.environ.get("XLM_DISABLE_PLUGINS", "").split(",")
        self._disabled = {_disable_key(entry) for entry in disabled if entry.strip()}
        self._records: dict[str, list[PluginRecord]] = defaultdict(list)
        self._families: dict[str, Family] = {}
        if discover:
            self._discover()

    # -- loading ----------------------------------------------------------------------------

    def _discover(self) -> None:
        by_name: dict[str, list[metadata.EntryPoint]] = defaultdict(list)
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            by_name[ep.name].append(ep)
        for name, eps in sorted(by_name.items()):
            enabled = []
            for ep in eps:
                if self._is_disabled(name, _dist_of(ep)[0]):  # recorded as disabled, never imported
                    self.register(ep.load, name=name, distribution=_dist_of(ep))
                else:
                    enabled.append(ep)
            dists = {_dist_of(ep) for ep in enabled}
            if len(dists) > 1:  # the same family name from two distributions: neither wins
                names = " and ".join(sorted(f"{d} {v}" for d, v in dists))
                for ep in enabled:
                    record = PluginRecord(name, *_dist_of(ep))
                    record.fail(
                        f"family name {name!r} is registered by both {names}; uninstall one, "
                        f"or skip one with XLM_DISABLE_PLUGINS=DISTRIBUTION:{name}"
                    )
                    self._records[name].append(record)
            elif enabled:
                self.register(enabled[0].load, name=name, distribution=dists.pop())

    def _is_disabled(self, name: str, distribution: str | None) -> bool:
        if name in self._disabled:
            return True
        return distribution is not None and f"{_canonical(distribution)}:{name}" in self._disabled

    def register(
        self,
        module: types.ModuleType | object | Callable[[], Any],
        *,
        name: str,
        distribution: tuple[str | None, str | None] = (None, None),
    ) -> PluginRecord:
        """Load and validate one plugin (a module, an object with hookimpls, or a loader callable).

        Used for entry points and, in tests or notebooks, to register a family in-process.
        """
        record = PluginRecord(name, *distribution)
        self._records[name].append(record)
        if self._is_disabled(name, distribution[0]):
            record.status = "disabled"
            return record
        providers = [r for r in self._records[name] if r.status != "disabled"]
        if len(providers) > 1:
            others = " and ".join(r.origin for r in providers)
            for r in providers:
                r.fail(f"family name {name!r} is registered twice: {others}")
            self._families.pop(name, None)
            return record
        with SigintWatch() as sigint:
            try:
                plugin = module() if callable(module) and not isinstance(module, types.ModuleType) else module
                self._pm.register(plugin, name=name)
            except BaseException as exc:  # import errors, bad hookimpls, even sys.exit() at import
                record.fail(f"cannot load: {plugin_failure(exc, sigint)}")
                return record
            try:
                check_plugin(record, functools.partial(self._call, plugin))
            except BaseException as exc:  # whatever a plugin's hook raises, SystemExit included
                record.fail(plugin_failure(exc, sigint))
        if record.status != "ok":
            self._pm.unregister(plugin)
        else:
            self._families[name] = Family(record)
        return record

    def _call(self, plugin: object, hook: str) -> tuple[bool, Any]:
        """Call one plugin's implementation of ``hook``: (implemented, result)."""
        for impl in getattr(self._pm.hook, hook).get_hookimpls():
            if impl.plugin is plugin:
                return True, impl.function()
        return False, None

    # -- queries ----------------------------------------------------------------------------

    def records(self) -> list[PluginRecord]:
        """Every plugin found, whatever its status, sorted by name."""
        return [r for name in sorted(self._records) for r in self._records[name]]

    def families(self) -> list[Family]:
        """The usable families (status ``ok``)."""
        return [self._families[n] for n in sorted(self._families) if self._families[n].record.status == "ok"]

    def get(self, name: str) -> Family:
        """The family called ``name``, or a one-line :class:`PluginError` saying why it is unusable.

        Every command that uses a family gets it here, so this is where ``XLM_STRICT_PLUGINS=1``
        stops them all when any plugin failed (listings check after printing instead).
        """
        self.check_strict()
        family = self._families.get(name)
        if family is not None and family.record.status == "ok":
            return family
        records = self._records.get(name)
        if records:
            # a disabled provider explains nothing when another provider of the name failed
            record = next((r for r in records if r.status != "disabled"), records[0])
            if record.status == "disabled":
                raise PluginError(f"{record.origin} is disabled by XLM_DISABLE_PLUGINS")
            raise PluginError(record.error or f"{record.origin} is not usable")
        known = ", ".join(sorted(self._families)) or "none installed"
        hint = f"pip install xlm-{name}" if name.isidentifier() else "check the name"
        raise PluginError(f"unknown plugin {name!r} (installed: {known}); try `{hint}`")

    def failures(self) -> list[PluginRecord]:
        return [r for r in self.records() if r.status in ("failed", "incompatible")]

    def check_strict(self) -> None:
        """Under XLM_STRICT_PLUGINS=1, any failed or incompatible plugin is a hard error."""
        if strict_mode() and self.failures():
            raise StrictPluginError("; ".join(r.error or r.origin for r in self.failures()))


def strict_mode() -> bool:
    return os.environ.get("XLM_STRICT_PLUGINS", "").strip().lower() in {"1", "true", "yes", "on"}


def _canonical(distribution: str) -> str:
    """A distribution name as pip compares them (PEP 503): ``XLM_Toy`` and ``xlm-toy`` are one."""
    return re.sub(r"[-_.]+", "-", distribution.strip()).lower()


def _disable_key(entry: str) -> str:
    """An ``XLM_DISABLE_PLUGINS`` entry: ``name`` (all its providers) or ``distribution:name``."""
    distribution, colon, name = entry.strip().rpartition(":")
    return f"{_canonical(distribution)}:{name.strip()}" if colon else name


def _dist_of(ep: metadata.EntryPoint) -> tuple[str | None, str | None]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return None, None
    return dist.metadata["Name"], dist.version


_registry: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, discovered on first use."""
    global _registry
    if _registry is None:
        _registry = Registry()
    return _registry


def reset_registry(registry: Registry | None = None) -> None:
    """Replace (or forget) the process-wide registry; for tests and notebooks."""
    global _registry
    _registry = registry
