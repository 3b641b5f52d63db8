"""Mirrors the component registry into Hydra's ConfigStore: one config group per registry kind,
one option per registered name, so `posenc=gta` on the command line and
`registry.build("posenc", "gta", ...)` name the same thing.

Each option is a plain dict node `{"name": <name>, **defaults of the config dataclass}` (not a
structured config), so type errors surface from pydantic in `seqrender.experiments.config` with our
messages rather than from OmegaConf.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from hydra.core.config_store import ConfigStore

from seqrender.models import registry


def prepare_registry() -> None:
    """Register everything a run can name: built-ins, the embedded datasets, entry-point plugins.

    Idempotent; called before Hydra composes and again inside (possibly remote) job processes.
    """
    import seqrender.experiments.data  # noqa: F401  (registers the "dataset" kind)

    registry.load_plugins()


def default_node(kind: str, name: str) -> dict[str, Any]:
    """`{"name": name, **field defaults}` of the config dataclass registered for (kind, name)."""
    config = registry.config_class(kind, name)()
    return {"name": name, **_plain(dataclasses.asdict(config))}


def mirror_registry(store: ConfigStore | None = None) -> None:
    """Store `default_node(kind, name)` as option `name` of group `kind`, for every entry."""
    store = store or ConfigStore.instance()
    for kind in registry.kinds():
        for name in registry.names(kind):
            store.store(group=kind, name=name, node=default_node(kind, name))


def _plain(value: Any) -> Any:
    """Tuples -> lists (OmegaConf has no tuple), recursively."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
