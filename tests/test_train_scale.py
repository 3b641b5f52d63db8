"""Scale features of the real training loop (`seqrender.experiments.train.train`, in process, tiny
model): gradient accumulation equals one pass over the same batch, torch.compile trains like eager,
fp16 (autocast + loss scaling) and bf16 track fp32, and the logged per-block max activation equals
one computed independently with forward hooks on the initial model."""
import math
import re
from pathlib import Path

import pytest
import torch
from accelerate.state import AcceleratorState
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from safetensors.torch import load_file

from seqrender.experiments.accumulation import micro_batches
from seqrender.experiments.cli import before_compose
from seqrender.experiments.config import ConfigError, validate_config

REPO = Path(__file__).resolve().parents[1]
TINY = ["threads=1", "dataset.num_scenes=6", "dataset.heldout_scenes=1", "dataset.views_per_scene=4",
        "dataset.resolution=16", "dataset.supersample=1", "model.layers=2", "model.hidden=32", "model.heads=2",
        "model.kv_heads=1", "model.window=2", "model.patch_size=4", "trainer.views=4", "trainer.batch_size=4", "trainer.warmup_steps=1",
        "trainer.ema_start=100", "trainer.progress=false", "trainer.steps=3", "trainer.checkpoint_every=3",
        "trainer.log_every=1", "trainer.cond_drop_prob=0"]


def run_config(*overrides: str):
    before_compose([])
    with initialize_config_dir(config_dir=str(REPO / "experiments" / "configs"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[*TINY, *overrides])
    return validate_config(OmegaConf.to_container(cfg, resolve=True))


@pytest.fixture
def train_tiny(tmp_path, monkeypatch):
    """train_tiny(name, *overrides) -> (TrainResult, final model weights); fresh accelerate state."""
    from seqrender.experiments.job import load_split
    from seqrender.experiments.train import train

    monkeypatch.setenv("SEQRENDER_DATA", str(tmp_path / "data"))

    def run(name: str, *overrides: str, stop_at: int | None = None):
        AcceleratorState._reset_state(True)
        cfg = run_config(*overrides)
        result, _ = train(cfg, load_split(cfg, "train"), run_dir=tmp_path / name, stop_at=stop_at)
        AcceleratorState._reset_state(True)
        return result, load_file(result.checkpoint / "model.safetensors")

    return run


def assert_same_training(a, b, *, rtol, atol):
    (result_a, weights_a), (result_b, weights_b) = a, b
    assert result_a.step == result_b.step
    torch.testing.assert_close(torch.tensor(result_a.losses), torch.tensor(result_b.losses), rtol=rtol, atol=atol)
    assert weights_a.keys() == weights_b.keys()
    for name, value in weights_a.items():
        torch.testing.assert_close(weights_b[name], value, rtol=rtol, atol=atol, msg=name)


def test_micro_batches_split_and_errors():
    assert micro_batches(range(4, 12), 4) == [range(4, 6), range(6, 8), range(8, 10), range(10, 12)]
    with pytest.raises(ValueError, match="trainer.grad_accum=3"):
        micro_batches(range(8), 3)
    with pytest.raises(ConfigError, match=r"^trainer: .*grad_accum=3 must divide batch_size=4"):
        run_config("trainer.grad_accum=3")


def test_grad_accum_equals_one_pass_over_the_batch(train_tiny):
    """4 micro-batches of 1 sample accumulated = one batch of 4 (same samples, same update). The sums
    are rounded in another order, and the optimiser's normalised step turns that into up to ~1e-6 on
    a few near-zero weights (seen: 1.07e-6 on 2 of 9216 with per-frame timesteps); a micro-batch
    dropped, counted twice or given other samples moves weights by ~lr = 2e-3."""
    whole = train_tiny("whole", "trainer.grad_accum=1")
    accumulated = train_tiny("accum", "trainer.grad_accum=4")
    assert_same_training(whole, accumulated, rtol=1e-5, atol=5e-6)


def test_muon_trains_and_resumes_exactly(train_tiny):
    """`trainer.optimizer=muon`: two steps (the zero-initialised output layer passes no gradient to the
    blocks in the first) move the blocks' matrices unlike AdamW and every other parameter exactly like
    it; a run paused at a checkpoint and resumed (Muon momenta and AdamW moments restored) ends
    bit-identical to an uninterrupted one; FSDP is refused."""
    first = {name: train_tiny(name, f"trainer.optimizer={name}", "trainer.steps=2", "trainer.checkpoint_every=2")[1]
             for name in ("adamw", "muon")}
    assert not torch.allclose(first["adamw"]["blocks.0.modulation.linear.weight"],
                              first["muon"]["blocks.0.modulation.linear.weight"])
    for name in ("patch_embed.proj.weight", "final.linear.weight", "role_embed"):
        if name in first["adamw"]:
            torch.testing.assert_close(first["muon"][name], first["adamw"][name], rtol=0, atol=0, msg=name)
    muon = ["trainer.optimizer=muon", "trainer.steps=4", "trainer.checkpoint_every=2"]
    whole = train_tiny("whole", *muon)
    train_tiny("split", *muon, stop_at=2)
    assert_same_training(whole, train_tiny("split", *muon), rtol=0, atol=0)
    with pytest.raises(ConfigError, match=r"^trainer: .*optimizer=muon .* FSDP shards"):
        run_config("trainer.optimizer=muon", "trainer.sharding=fsdp")


def test_compile_trains_like_eager(train_tiny):
    """torch.compile (dynamo capture; the `eager` backend keeps CPU compile time to seconds) gives the
    losses and weights of the uncompiled run."""
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    small = ["trainer.steps=2", "trainer.checkpoint_every=2", "trainer.log_every=100", "model.layers=1", "posenc=none"]
    eager = train_tiny("eager", *small)
    compiled = train_tiny("compiled", *small, "trainer.compile=true", "trainer.compile_backend=eager")
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > 0  # dynamo really captured the model
    assert_same_training(eager, compiled, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("precision,dtype,tol", [("fp16", torch.float16, 2e-2), ("bf16", torch.bfloat16, 5e-2)])
def test_reduced_precision_autocasts_and_tracks_fp32(train_tiny, monkeypatch, precision, dtype, tol):
    seen = set()
    original = torch.nn.Linear.forward

    def record(self, x):
        out = original(self, x)
        seen.add(out.dtype)
        return out

    fp32, _ = train_tiny("fp32", "trainer.steps=1", "trainer.checkpoint_every=1")
    monkeypatch.setattr(torch.nn.Linear, "forward", record)
    reduced, _ = train_tiny(precision, "trainer.steps=1", "trainer.checkpoint_every=1",
                            f"trainer.precision={precision}")
    assert dtype in seen  # the matmuls ran in reduced precision
    assert math.isclose(reduced.losses[0], fp32.losses[0], rel_tol=tol)
    state = torch.load(reduced.checkpoint / "state.pt", weights_only=False)
    if precision == "fp16":  # dynamic loss scaling: torch's GradScaler, initial scale 2^16, saved for resume
        assert state["scaler"]["scale"] == 2.0**16 and state["scaler"]["_growth_tracker"] == 1
    else:
        assert state["scaler"] is None


def test_logged_max_activation_matches_hooks_on_initial_model(train_tiny, tmp_path, capsys):
    """Step 1's logged max |block output| equals forward hooks on the initial weights (same batch)."""
    from seqrender.experiments.job import load_split
    from seqrender.experiments.tasks import task_for
    from seqrender.experiments.train import build_model

    train_tiny("run", "trainer.steps=1", "trainer.checkpoint_every=1")
    logged = re.search(r"step 1/1 .*max_act ([0-9.e+-]+)@block(\d+)", capsys.readouterr().out)
    assert logged, "no max_act in the step log"
    cfg = run_config("trainer.steps=1")
    task = task_for(cfg)
    draw = task.batches(cfg, load_split(cfg, "train"), cfg.sampler.build())
    model = build_model(cfg)
    maxima = [0.0] * len(model.blocks)
    for i, block in enumerate(model.blocks):
        block.register_forward_hook(lambda m, a, out, i=i: maxima.__setitem__(i, float(out.abs().max())))
    task.loss(model, draw(0, range(cfg.trainer.batch_size)))
    assert float(logged.group(1)) == pytest.approx(max(maxima), rel=1e-3)
    assert int(logged.group(2)) == maxima.index(max(maxima))


def test_flop_count_matches_linear_formula():
    """forward + backward of y = x Wᵀ: 2·B·in·out + 4·B·in·out (input and weight gradients)."""
    from seqrender.experiments.throughput import FlopCount

    layer, x = torch.nn.Linear(64, 32, bias=False), torch.randn(8, 64, requires_grad=True)
    with FlopCount(True) as flops:
        layer(x).sum().backward()
    assert flops.total == 6 * 8 * 64 * 32
    with FlopCount(False) as off:
        layer(x).sum().backward()
    assert off.total == 0



def test_flop_count_of_grouped_query_attention_kernels(monkeypatch):
    """The CUDA attention kernels (flash here, on meta tensors) with 8 query and 2 kv heads count as
    multi-head attention with 8 heads: 4·B·Hq·N²·d forward (QKᵀ and PV), 10·B·Hq·N²·d backward (QKᵀ
    recomputed, dP, dV, dQ, dK). Also with torch < 2.12's formula, which asserted equal heads and
    crashed the first training step of every GQA model on CUDA."""
    from torch.utils import flop_counter

    from seqrender.experiments.throughput import FlopCount, gqa_flop_mapping

    def equal_heads_only(query_shape, key_shape, value_shape):
        assert query_shape[1] == key_shape[1] == value_shape[1], "shapes are incompatible"
        b, h, n, d = query_shape
        return 4 * b * h * n * key_shape[2] * d

    b, hq, hkv, n, d = 2, 8, 2, 64, 16
    q = torch.randn(b, hq, n, d, device="meta")
    k, v = (torch.randn(b, hkv, n, d, device="meta") for _ in range(2))
    backward = gqa_flop_mapping()[torch.ops.aten._scaled_dot_product_flash_attention_backward]
    assert backward((b, hq, n, d), (b, hq, n, d), (b, hkv, n, d), (b, hkv, n, d), out_shape=None) == 10 * b * hq * n * n * d
    for patched in (False, True):
        if patched:
            monkeypatch.setattr(flop_counter, "sdpa_flop_count", equal_heads_only)
        with FlopCount(True) as flops:
            torch.ops.aten._scaled_dot_product_flash_attention(q, k, v)
        assert flops.total == 4 * b * hq * n * n * d
    with pytest.raises(AssertionError, match="incompatible"), flop_counter.FlopCounterMode(display=False):
        torch.ops.aten._scaled_dot_product_flash_attention(q, k, v)  # torch's own formula, as before 2.12


@pytest.mark.parametrize("kv_heads", [4, 2])
def test_flop_count_includes_cpu_attention(kv_heads):
    """SDPA on the CPU (its flash kernel, which torch's counter has no formula for) counts 4·B·Hq·N·M·d
    forward and 10·B·Hq·N·M·d backward, with or without grouped-query attention; the linear layer
    around it adds 6·B·N·in·out."""
    import torch.nn.functional as F

    from seqrender.experiments.throughput import FlopCount

    b, hq, n, m, d = 2, 4, 48, 40, 16
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(b, hq, n, d, generator=gen, requires_grad=True)
    k, v = (torch.randn(b, kv_heads, m, d, generator=gen, requires_grad=True) for _ in range(2))
    layer = torch.nn.Linear(d, d, bias=False)
    with FlopCount(True) as flops:
        out = F.scaled_dot_product_attention(q, k, v, enable_gqa=kv_heads != hq)
        layer(out).sum().backward()
    assert flops.total == 14 * b * hq * n * m * d + 6 * b * hq * n * d * d

def test_throughput_rates(monkeypatch):
    from seqrender.experiments import throughput

    clock = iter([10.0, 14.0])
    monkeypatch.setattr(throughput.time, "perf_counter", lambda: next(clock))
    meter = throughput.ThroughputMeter(samples_per_step=8, tokens_per_sample=256, flops_per_step=2e9)
    for _ in range(5):
        meter.step()
    assert meter.rates() == pytest.approx({"samples_per_s": 10.0, "tokens_per_s": 2560.0, "model_gflops": 2.5})
    assert throughput.tokens_per_sample((2, 4, 3, 32, 32), 4) == 4 * 8 * 8       # Kaleido (B, V, C, H, W)
    assert throughput.tokens_per_sample((2, 4, 3, 16, 32, 32), 2) == 4 * 3 * 16 * 16  # grid (B, V, T, C, H, W)


def test_logged_throughput_is_consistent(train_tiny, capsys):
    """tokens/s = samples/s · V·(H/p)·(W/p); counted FLOPs per sample between 6 · (token-wise block
    weights) · tokens and twice 6 · (parameters per token · tokens + the pixel head's conv weights ·
    pixels, for it acts once per pixel of a generated view) (adaLN weights act once per sample)."""
    from seqrender.experiments.train import build_model

    train_tiny("run", "trainer.steps=4", "trainer.log_every=2", "trainer.checkpoint_every=4")
    lines = re.findall(r"step 4/4 .*samples_per_s ([0-9.e+]+) tokens_per_s ([0-9.e+]+) model_gflops ([0-9.e+]+)",
                       capsys.readouterr().out)
    samples, tokens, gflops = map(float, lines[0])
    per_sample = 4 * (16 // 4) ** 2
    assert tokens == pytest.approx(samples * per_sample, rel=1e-3)
    model = build_model(run_config())
    per_token = sum(m.weight.numel() for name, m in model.blocks.named_modules()  # token-wise linears
                    if isinstance(m, torch.nn.Linear) and "modulation" not in name)
    head = sum(p.numel() for p in model.pixel_head.parameters()) if model.pixel_head is not None else 0
    params = sum(p.numel() for p in model.parameters()) - head
    pixels = 4 * 16 * 16
    assert 6 * per_token * per_sample <= gflops * 1e9 / samples <= 2 * 6 * (params * per_sample + head * pixels)
