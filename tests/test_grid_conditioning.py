"""4Real-Video-V2 grid conditioning: the CFG unconditional branch sees nothing of the given cells, and
row-only / column-only / row+column samples give the model exactly the row, the column or both."""
import pytest
import torch
from torch import nn

from seqrender.experiments.data.dynamic import GridScenes
from seqrender.experiments.grid import (GridBatch, copy_anchor, given_cells, given_parts, grid_flow_loss, grid_velocity,
                                       make_grid_batch)
from seqrender.experiments.grid_eval import copy_baselines, grid_eval_batches, grid_model_method
from seqrender.flowmatch import guided_velocity, make_timestep_sampler
from seqrender.models.fourreal import FourReal, FourRealConfig

V, T, C, H, W = 3, 4, 3, 8, 8
SETTINGS = ("row->grid", "column->grid", "row+column->grid")


def random_model(seed: int = 0) -> FourReal:
    """A tiny FourReal with every weight random (adaLN-Zero and the final layer start at zero, which
    would make the output ignore its input)."""
    torch.manual_seed(seed)
    model = FourReal(FourRealConfig(in_channels=C, patch_size=4, hidden=24, heads=2, kv_heads=1, layers=1,
                                    backend="reference"))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    return model.eval()


def grids(batch: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(batch, V, T, C, H, W, generator=gen) * 2 - 1, torch.randn(batch, V, T, C, H, W, generator=gen)


def held(x: torch.Tensor, noise: torch.Tensor, given: torch.Tensor) -> torch.Tensor:
    """z as the sampler holds it: given cells clean, the others noise."""
    return torch.where(given[:, :, :, None, None, None], x, noise)


@pytest.mark.parametrize("setting", SETTINGS)
def test_unconditional_velocity_ignores_given_cells_and_conditional_does_not(setting):
    model = random_model()
    x, noise = grids(2, 0)
    other = torch.rand_like(x) * 2 - 1
    given = given_cells(V, T, setting).expand(2, V, T)
    x2 = torch.where(given[:, :, :, None, None, None], other, x)        # new content in the given cells only
    t = torch.tensor([0.4, 0.8])
    with torch.no_grad():
        def velocity(x_, drop):
            return grid_velocity(model, held(x_, noise, given), t, x=x_, given=given,
                                 drop_condition=torch.full((2,), drop))
        assert torch.equal(velocity(x, True), velocity(x2, True))
        assert (velocity(x, False) - velocity(x2, False)).abs().amax() > 1e-3
        # the sampler's batched [cond; uncond] call: the guided field still depends on the given cells,
        # its unconditional half does not
        def field(x_):
            def fn(z, tt, *, drop_condition):
                return grid_velocity(model, z, tt, x=x_.repeat(2, 1, 1, 1, 1, 1), given=given.repeat(2, 1, 1),
                                     drop_condition=drop_condition)
            return guided_velocity(fn, held(x_, noise, given), t, guidance_scale=0.0)   # scale 0 = uncond
        assert torch.equal(field(x), field(x2))


def test_dropped_training_samples_ignore_given_cells():
    """Condition dropout in training uses the same blanking: the loss of a dropped sample does not
    change with its given cells' content (its unknown cells and noise fixed)."""
    model = random_model(1)
    x, noise = grids(1, 1)
    given = given_cells(V, T).expand(1, V, T)
    x2 = torch.where(given[:, :, :, None, None, None], torch.zeros_like(x), x)

    def loss(x_, drop):
        batch = GridBatch(x=x_, noise=noise, t=torch.tensor([0.5]), given=given, drop_condition=torch.tensor([drop]))
        with torch.no_grad():
            return grid_flow_loss(model, batch)
    assert torch.equal(loss(x, True), loss(x2, True))
    assert loss(x, False) != loss(x2, False)


class Spy(nn.Module):
    """Records what each call receives; returns a velocity that encodes z and the conditioning."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def forward(self, z, t, *, row=None, column=None):
        self.calls.append(dict(z=z, row=row, column=column))
        out = z * t[:, None, None, None, None, None]
        if row is not None:
            out = out + row[:, None].mean()
        if column is not None:
            out = out + 10 * column[:, :, None].mean()
        return out


@pytest.mark.parametrize("setting, row, column", [("row->grid", True, False), ("column->grid", False, True),
                                                  ("row+column->grid", True, True)])
def test_each_setting_gives_the_model_only_its_part(setting, row, column):
    scenes = GridScenes(images=torch.rand(5, V, T, C, H, W), intrinsics=torch.zeros(5, V, 3, 3),
                        extrinsics=torch.zeros(5, V, 4, 4))
    batch = make_grid_batch(scenes, seed=0, step=3, indices=range(4), batch_size=4,
                            sampler=make_timestep_sampler("uniform"), cond_drop_prob=0.0, settings=(setting,))
    expected = torch.zeros(V, T, dtype=torch.bool)
    expected[0, :] |= row
    expected[:, 0] |= column
    assert torch.equal(batch.given, expected.expand(4, V, T))
    spy = Spy()
    grid_flow_loss(spy, batch)
    (call,) = spy.calls
    assert (call["row"] is not None) == row and (call["column"] is not None) == column
    if row:
        assert torch.equal(call["row"], batch.x[:, 0])
    if column:
        assert torch.equal(call["column"], batch.x[:, :, 0])
    # z: given cells clean, every other cell on the path (1 − t)x + tε
    t = batch.t[:, None, None, None, None, None]
    path = (1 - t) * batch.x + t * batch.noise
    mask = expected[None, :, :, None, None, None]
    assert torch.allclose(call["z"], torch.where(mask, batch.x, path), atol=1e-6)


def test_mixed_batch_equals_one_sample_at_a_time():
    """A batch mixing the three settings and dropped conditions gives each sample the velocity it
    gets alone (grouping by conditioning keeps order and content)."""
    model = random_model(2)
    x, noise = grids(6, 2)
    given = torch.stack([given_cells(V, T, SETTINGS[i % 3]) for i in range(6)])
    drop = torch.tensor([False, False, False, True, False, True])
    t = torch.linspace(0.1, 0.9, 6)
    z = held(x, noise, given)
    with torch.no_grad():
        together = grid_velocity(model, z, t, x=x, given=given, drop_condition=drop)
        alone = torch.cat([grid_velocity(model, z[i:i + 1], t[i:i + 1], x=x[i:i + 1], given=given[i:i + 1],
                                         drop_condition=drop[i:i + 1]) for i in range(6)])
    assert (together - alone).abs().amax() <= 1e-5 * together.abs().amax()   # float32 batching noise


def test_row_only_velocity_ignores_the_column_and_column_only_ignores_the_row():
    model = random_model(3)
    x, noise = grids(1, 3)
    t = torch.tensor([0.5])
    for setting, hidden in (("row->grid", (slice(1, None), 0)), ("column->grid", (0, slice(1, None)))):
        given = given_cells(V, T, setting)[None]
        z = held(x, noise, given)                             # z fixed; only the clean grid x changes
        x2 = x.clone()
        x2[(0, *hidden)] = -x2[(0, *hidden)]                  # the part this setting does not give
        with torch.no_grad():
            a = grid_velocity(model, z, t, x=x, given=given, drop_condition=torch.tensor([False]))
            b = grid_velocity(model, z, t, x=x2, given=given, drop_condition=torch.tensor([False]))
        assert torch.equal(a, b), setting


def test_eval_batches_and_baselines_follow_the_setting():
    scenes = GridScenes(images=torch.rand(2, V, T, C, H, W), intrinsics=torch.zeros(2, V, 3, 3),
                        extrinsics=torch.zeros(2, V, 4, 4))
    for setting in SETTINGS:
        (batch,) = grid_eval_batches(scenes, num_items=2, batch_size=2, seed=0, setting=setting)
        assert torch.equal(batch.is_reference, given_cells(V, T, setting).expand(2, V, T))
    assert set(copy_baselines("row->grid")) == {"row_same_time"}
    assert set(copy_baselines("column->grid")) == {"column_same_view"}
    assert set(copy_baselines("row+column->grid")) == {"row_same_time", "column_same_view"}
    with pytest.raises(ValueError, match="grid setting must be one of"):
        given_cells(V, T, "row->column")


def test_untrained_velocity_is_zero_so_one_step_scoring_is_exact():
    """grid_eval scores the untrained init with one step: valid because its velocity is exactly 0."""
    torch.manual_seed(0)
    model = FourReal(FourRealConfig(in_channels=C, patch_size=4, hidden=24, heads=2, kv_heads=1, layers=1))
    x, noise = grids(2, 4)
    given = given_cells(V, T).expand(2, V, T)
    with torch.no_grad():
        v = grid_velocity(model, held(x, noise, given), torch.tensor([0.3, 1.0]), x=x, given=given,
                          drop_condition=torch.tensor([False, True]))
    assert torch.equal(v, torch.zeros_like(v))


@pytest.mark.parametrize("prefer", ["column", "row"])
@pytest.mark.parametrize("setting", SETTINGS)
def test_copy_anchor_is_the_copy_baseline_of_the_setting(setting, prefer):
    """Residual data space: each unknown cell's anchor is what the setting's copy baseline predicts
    (same view at time 0 when the column is given, else same time in view 0; the row first with
    prefer="row" when both are given); zero on given cells."""
    x, _ = grids(2, 5)
    given = given_cells(V, T, setting).expand(2, V, T)
    anchor = copy_anchor(x, given, prefer)
    row, column = given_parts(setting)
    use_column = column and not (row and prefer == "row")
    for v in range(V):
        for t in range(T):
            want = torch.zeros_like(x[:, 0, 0]) if given[0, v, t] else x[:, v, 0] if use_column else x[:, 0, t]
            assert torch.equal(anchor[:, v, t], want), (setting, v, t)


def test_residual_batch_puts_the_path_on_the_difference_from_the_copy():
    scenes = GridScenes(images=torch.rand(5, V, T, C, H, W), intrinsics=torch.zeros(5, V, 3, 3),
                        extrinsics=torch.zeros(5, V, 4, 4))
    kwargs = dict(seed=0, step=1, indices=range(3), batch_size=3, sampler=make_timestep_sampler("uniform"),
                  cond_drop_prob=0.0)
    plain, residual = make_grid_batch(scenes, **kwargs), make_grid_batch(scenes, **kwargs, residual=True)
    assert plain.anchor is None and torch.equal(plain.x, residual.x) and torch.equal(plain.noise, residual.noise)
    unknown = ~residual.given[:, :, :, None, None, None]
    copy = residual.x[:, :, :1].expand_as(residual.x)          # row+column: the same view at time 0
    t = residual.t[:, None, None, None, None, None]
    want = torch.where(unknown, (1 - t) * (residual.x - copy) + t * residual.noise, residual.x)
    assert torch.allclose(residual.noised(), want, atol=1e-6)
    # a model that predicts the residual velocity exactly has zero loss; the plain target does not
    exact = residual.noise - (residual.x - copy)
    assert grid_flow_loss(lambda z, t, **_: exact, residual).item() < 1e-10
    assert grid_flow_loss(lambda z, t, **_: exact, plain).item() > 1e-2


def test_frame_times_draw_one_t_per_cell_and_put_each_unknown_cell_at_its_own_t():
    """`frame_times` (the model's `frame_time`): t (B, V, T) from the sampler; noised() puts each
    unknown cell on the (residual) path at its own t and keeps the given cells clean."""
    scenes = GridScenes(images=torch.rand(5, V, T, C, H, W), intrinsics=torch.zeros(5, V, 3, 3),
                        extrinsics=torch.zeros(5, V, 4, 4))
    kwargs = dict(seed=0, step=1, indices=range(3), batch_size=3, sampler=make_timestep_sampler("uniform"),
                  cond_drop_prob=0.0, residual=True)
    batch = make_grid_batch(scenes, **kwargs, frame_times=True)
    assert batch.t.shape == (3, V, T) and bool((batch.t.flatten(1).std(dim=1) > 0.01).all())
    t = batch.t[:, :, :, None, None, None]
    unknown = ~batch.given[:, :, :, None, None, None]
    want = torch.where(unknown, (1 - t) * batch.target + t * batch.noise, batch.x)
    torch.testing.assert_close(batch.noised(), want, atol=1e-6, rtol=0)
    assert make_grid_batch(scenes, **kwargs).t.shape == (3,)


@pytest.mark.parametrize("setting, anchor, constant_over", [
    ("column->grid", "column", "times"), ("row->grid", "column", "views"), ("row->grid", "row", "views"),
    ("row+column->grid", "column", "times"), ("row+column->grid", "row", "views")])
def test_residual_sampler_returns_the_copy_baseline_for_a_static_grid(setting, anchor, constant_over):
    """A grid whose unknown cells equal their copy baseline (constant over time: the column's copy;
    over views: the row's): the residual target is 0, so the exact velocity is z/t, and the sampler
    must return the grid itself (an image-space sampler with the same velocity returns zeros in the
    unknown cells). With both given, the anchor is the copy `trainer.grid_anchor` names: the other
    copy is not the grid, so the same velocity returns that copy instead."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from seqrender.experiments.cli import CONFIG_DIR
    from seqrender.experiments.config import validate_config
    from seqrender.experiments.configstore import mirror_registry, prepare_registry

    base = torch.rand(1, V, 1, C, H, W) if constant_over == "times" else torch.rand(1, 1, T, C, H, W)
    images = base.expand(1, V, T, C, H, W).contiguous()
    scenes = GridScenes(images=images, intrinsics=torch.zeros(1, V, 3, 3), extrinsics=torch.zeros(1, V, 4, 4))
    (batch,) = grid_eval_batches(scenes, num_items=1, batch_size=1, seed=0, setting=setting)
    prepare_registry()
    mirror_registry()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        raw = compose(config_name="config", overrides=["model=fourreal", "dataset=embedded4d", "trainer.grid_residual=true",
                                                       f"trainer.grid_anchor={anchor}", "schedule.num_steps=6",
                                                       "eval.guidance_scale=1.0"])
    cfg = validate_config(OmegaConf.to_container(raw, resolve=True))

    def exact(z, t, **_):
        return z / t.clamp_min(1e-6)[:, None, None, None, None, None]

    out = grid_model_method(exact, cfg)(batch)
    assert torch.allclose(out, images, atol=1e-5)  # static: the copy baseline is the grid itself
    if setting == "row+column->grid":  # the other anchor copies the other given video
        other = cfg.model_copy(update={"trainer": cfg.trainer.model_copy(
            update={"grid_anchor": "column" if anchor == "row" else "row"})})
        copy = images[:, :1].expand_as(images) if anchor == "column" else images[:, :, :1].expand_as(images)
        unknown = (slice(None), slice(1, None), slice(1, None))  # the given cells stay themselves
        assert torch.allclose(grid_model_method(exact, other)(batch)[unknown], copy[unknown], atol=1e-5)
        assert not torch.allclose(copy[unknown], images[unknown], atol=1e-2)
