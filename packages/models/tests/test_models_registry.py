"""Registry: lookups, config coercion, error messages and entry-point plugins."""
import copy
import importlib.metadata
import sys
from dataclasses import dataclass

import pytest

from seqrender.models import registry
from seqrender.models.registry import RegistryError


@dataclass
class ToyConfig:
    width: int = 3
    label: str = "a"


def toy_builder(cfg, **kwargs):
    return ("built", cfg, kwargs)


@pytest.fixture
def clean_registry(monkeypatch):
    """Run a test against a private copy of the registry tables and loaded-plugin set."""
    monkeypatch.setattr(registry, "_TABLES", copy.copy(registry._TABLES))
    monkeypatch.setattr(registry, "_LOADED_PLUGINS", set())
    for kind, table in registry._TABLES.items():
        registry._TABLES[kind] = dict(table)
    return registry


def test_unknown_name_lists_registered_names_on_one_line(clean_registry):
    for name in ("zeta", "alpha", "mid"):
        registry.register("toykind", name, ToyConfig, toy_builder)
    with pytest.raises(RegistryError) as info:
        registry.build("toykind", "nope")
    assert str(info.value) == "unknown toykind 'nope'; registered: alpha, mid, zeta"
    assert isinstance(info.value, ValueError)


def test_builtin_posenc_error_message():
    with pytest.raises(RegistryError, match=r"^unknown posenc 'foo'; registered: cape, gta, gta_plucker, none, plucker, rope$"):
        registry.build("posenc", "foo", head_dim=8)


def test_unknown_kind_has_no_names():
    assert registry.names("no-such-kind") == []
    with pytest.raises(RegistryError, match="registered: \\(none\\)"):
        registry.config_class("no-such-kind", "x")


def test_build_accepts_none_mapping_and_instance(clean_registry):
    registry.register("toykind", "toy", ToyConfig, toy_builder)
    assert registry.build("toykind", "toy") == ("built", ToyConfig(), {})
    assert registry.build("toykind", "toy", {"width": 5}, extra=1) == ("built", ToyConfig(width=5), {"extra": 1})
    cfg = ToyConfig(label="z")
    assert registry.build("toykind", "toy", cfg)[1] is cfg
    assert registry.config_class("toykind", "toy") is ToyConfig


def test_bad_config_field_names_field_and_allowed(clean_registry):
    registry.register("toykind", "toy", ToyConfig, toy_builder)
    with pytest.raises(RegistryError, match="unknown field\\(s\\) depth for toykind 'toy'; allowed: label, width"):
        registry.build("toykind", "toy", {"depth": 2})
    with pytest.raises(RegistryError, match="must be None, a mapping or ToyConfig"):
        registry.build("toykind", "toy", 3)


def test_decorator_and_duplicate_registration(clean_registry):
    @registry.register("toykind", "deco", ToyConfig)
    def deco(cfg):
        return cfg.width

    assert registry.build("toykind", "deco", {"width": 7}) == 7
    registry.register("toykind", "deco", ToyConfig, deco)  # same again: no-op
    with pytest.raises(RegistryError, match="already registered"):
        registry.register("toykind", "deco", ToyConfig, toy_builder)
    with pytest.raises(RegistryError, match="must be a dataclass"):
        registry.register("toykind", "bad", dict, toy_builder)


def test_builtin_kinds_are_registered():
    assert registry.names("sampler") == ["logit_normal", "mode", "uniform"]
    assert registry.names("schedule") == ["linear_quadratic", "linspace", "trailing"]
    assert registry.names("solver") == ["euler", "heun"]
    assert {"kaleido", "fourreal"} <= set(registry.names("model"))
    mode = registry.config_class("sampler", "mode")()
    assert (mode.scale, mode.shift) == (0.8, 3.0)  # Kaleido §3.2.3 default


PLUGIN_SOURCE = '''
from dataclasses import dataclass
from seqrender.models import registry

CALLS = []

@dataclass
class ToyPosencConfig:
    scale: float = 1.0

def register():
    CALLS.append(1)
    registry.register("posenc", "toy", ToyPosencConfig, lambda cfg, *, head_dim: ("toy", head_dim, cfg.scale))
'''

MODULE_PLUGIN_SOURCE = '''
from dataclasses import dataclass
from seqrender.models import registry

@dataclass
class EmptyConfig:
    pass

registry.register("solver", "toy_solver", EmptyConfig, lambda cfg: "toy-solver")
'''


def fake_entry_points(monkeypatch, tmp_path, entries):
    (tmp_path / "toy_plugin_callable.py").write_text(PLUGIN_SOURCE)
    (tmp_path / "toy_plugin_module.py").write_text(MODULE_PLUGIN_SOURCE)
    (tmp_path / "toy_plugin_broken.py").write_text("raise RuntimeError('boom')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for mod in ("toy_plugin_callable", "toy_plugin_module", "toy_plugin_broken"):
        monkeypatch.delitem(sys.modules, mod, raising=False)
    eps = [importlib.metadata.EntryPoint(name, value, registry.PLUGIN_GROUP) for name, value in entries]

    def entry_points(*, group):
        return [ep for ep in eps if ep.group == group]

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)


def test_load_plugins_callable_and_module_once(clean_registry, monkeypatch, tmp_path):
    fake_entry_points(monkeypatch, tmp_path, [("toy", "toy_plugin_callable:register"),
                                              ("toymod", "toy_plugin_module")])
    assert registry.load_plugins() == ["toy", "toymod"]
    assert registry.load_plugins() == []  # idempotent
    assert sys.modules["toy_plugin_callable"].CALLS == [1]
    assert "toy" in registry.names("posenc")
    assert registry.build("posenc", "toy", {"scale": 2.0}, head_dim=16) == ("toy", 16, 2.0)
    assert registry.build("solver", "toy_solver") == "toy-solver"


def test_broken_plugin_names_itself(clean_registry, monkeypatch, tmp_path):
    fake_entry_points(monkeypatch, tmp_path, [("broken", "toy_plugin_broken")])
    with pytest.raises(RegistryError, match=r"plugin 'broken' \(toy_plugin_broken\) failed to load: boom"):
        registry.load_plugins()


def test_posenc_frequency_family_is_a_config_field():
    assert registry.build("posenc", "gta", head_dim=8).frequencies == "geometric"
    assert registry.build("posenc", "gta", {"frequencies": "integer"}, head_dim=8).frequencies == "integer"
    with pytest.raises(ValueError, match="frequencies must be one of geometric, integer, wide"):
        registry.build("posenc", "rope", {"frequencies": "lang"}, head_dim=8)
