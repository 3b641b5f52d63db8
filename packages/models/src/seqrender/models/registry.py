"""A small typed registry: one table per kind ("posenc", "model", "sampler", "schedule", "solver",
"dataset", ...), each mapping a name to a config dataclass and a builder.

    register("posenc", "gta", PosencConfig, build_posenc)      # or as a decorator on the builder
    build("posenc", "gta", {"...": ...}, head_dim=64)          # -> builder(PosencConfig(...), head_dim=64)

Config classes are plain dataclasses with defaults whose fields are simple types (int, float, str,
bool, list, tuple, Optional, Literal), so the experiments layer can mirror every entry into Hydra's
ConfigStore group of the same kind and validate it with pydantic. This module imports neither.

Third-party packages register through the entry-point group ``seqrender.plugins``: each entry point
is a module (registering on import) or a callable (called once with no arguments).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Callable

PLUGIN_GROUP = "seqrender.plugins"

Builder = Callable[..., Any]


class RegistryError(ValueError):
    """Unknown kind/name, duplicate registration, bad config or a plugin that fails to load."""


@dataclass(frozen=True)
class Entry:
    """One registered component: its config dataclass and the builder `builder(config, **kwargs)`."""

    kind: str
    name: str
    config_cls: type
    builder: Builder


_TABLES: dict[str, dict[str, Entry]] = {}
_LOADED_PLUGINS: set[tuple[str, str]] = set()


def register(kind: str, name: str, config_cls: type, builder: Builder | None = None):
    """Register `builder(config, **kwargs)` under (kind, name) with config dataclass `config_cls`.

    Without `builder` it returns a decorator. Registering the same builder and config again is a
    no-op (re-imports); registering a different one under a taken name raises RegistryError.
    """
    if not dataclasses.is_dataclass(config_cls) or not isinstance(config_cls, type):
        raise RegistryError(f"config_cls for {kind} '{name}' must be a dataclass type, got {config_cls!r}")
    if builder is None:
        def decorator(fn: Builder) -> Builder:
            register(kind, name, config_cls, fn)
            return fn
        return decorator
    table = _TABLES.setdefault(kind, {})
    entry = Entry(kind, name, config_cls, builder)
    old = table.get(name)
    if old is not None and (old.builder, old.config_cls) != (builder, config_cls):
        raise RegistryError(f"{kind} '{name}' is already registered by {_qualname(old.builder)}")
    table[name] = entry
    return builder


def kinds() -> list[str]:
    """Kinds that have at least one registered name, sorted."""
    return sorted(k for k, table in _TABLES.items() if table)


def names(kind: str) -> list[str]:
    """Registered names of `kind`, sorted (empty for a kind nobody registered)."""
    return sorted(_TABLES.get(kind, {}))


def entry(kind: str, name: str) -> Entry:
    """The Entry for (kind, name); RegistryError listing the registered names if unknown."""
    table = _TABLES.get(kind, {})
    if name not in table:
        listed = ", ".join(sorted(table)) or "(none)"
        raise RegistryError(f"unknown {kind} '{name}'; registered: {listed}")
    return table[name]


def config_class(kind: str, name: str) -> type:
    """The config dataclass registered for (kind, name)."""
    return entry(kind, name).config_cls


def make_config(kind: str, name: str, cfg: Any = None) -> Any:
    """Turn `cfg` (None, a mapping of field values, or a config instance) into a config instance."""
    cls = config_class(kind, name)
    if cfg is None:
        return cls()
    if isinstance(cfg, cls):
        return cfg
    if hasattr(cfg, "items"):
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(cfg) - fields)
        if unknown:
            raise RegistryError(
                f"unknown field(s) {', '.join(unknown)} for {kind} '{name}'; "
                f"allowed: {', '.join(sorted(fields)) or '(none)'}")
        return cls(**dict(cfg.items()))
    raise RegistryError(f"cfg for {kind} '{name}' must be None, a mapping or {cls.__name__}, "
                        f"got {type(cfg).__name__}")


def build(kind: str, name: str, cfg: Any = None, **kwargs: Any) -> Any:
    """Build the component (kind, name) from `cfg` (None = defaults, mapping, or config instance);
    `kwargs` go to the builder unchanged (e.g. `head_dim=` for posenc)."""
    found = entry(kind, name)
    return found.builder(make_config(kind, name, cfg), **kwargs)


def load_plugins() -> list[str]:
    """Load every entry point of group ``seqrender.plugins`` not loaded before (idempotent).

    A module entry point registers on import; a callable one is called with no arguments. Returns
    the names of the entry points loaded by this call.
    """
    loaded = []
    for ep in metadata.entry_points(group=PLUGIN_GROUP):
        key = (ep.name, ep.value)
        if key in _LOADED_PLUGINS:
            continue
        try:
            obj = ep.load()
            if callable(obj):
                obj()
        except Exception as exc:  # a broken plugin must name itself, not crash anonymously
            raise RegistryError(f"plugin '{ep.name}' ({ep.value}) failed to load: {exc}") from exc
        _LOADED_PLUGINS.add(key)
        loaded.append(ep.name)
    return loaded


def _qualname(fn: Builder) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"
