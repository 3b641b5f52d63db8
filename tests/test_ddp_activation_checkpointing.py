"""`trainer.activation_checkpointing`: wrapping Kaleido's blocks recomputes their forward pass in the
backward pass (each block runs twice per step) and leaves outputs, gradients and state-dict keys
equal to the unwrapped model's."""
import copy

import pytest
import torch

from seqrender.experiments.activation_checkpointing import checkpoint_blocks
from seqrender.models import registry


def _inputs(generator: torch.Generator) -> tuple[tuple, dict]:
    b, v, c, h, w = 2, 3, 3, 8, 8
    extrinsics = torch.eye(4).repeat(b, v, 1, 1)
    extrinsics[..., :3, 3] = torch.randn(b, v, 3, generator=generator)
    kwargs = dict(is_reference=torch.tensor([[True, False, False]] * b),
                  intrinsics=torch.tensor([[8.0, 0, 4], [0, 8.0, 4], [0, 0, 1]]).repeat(b, v, 1, 1),
                  extrinsics=extrinsics)
    return (torch.randn(b, v, c, h, w, generator=generator), torch.rand(b, generator=generator)), kwargs


def _forward_backward(model, args, kwargs, calls: list[int]) -> torch.Tensor:
    """One forward + backward, appending to `calls` each time a block's forward runs."""
    for block in model.blocks:
        inner = getattr(block, "_checkpoint_wrapped_module", block)
        inner.forward = _counting(inner.forward, calls)  # forward hooks do not fire on recomputation
    out = model(*args, **kwargs)
    out.pow(2).mean().backward()
    return out


def _counting(forward, calls: list[int]):
    def counted(*args, **kwargs):
        calls.append(1)
        return forward(*args, **kwargs)
    return counted


def test_checkpointed_blocks_recompute_and_match():
    torch.manual_seed(0)
    plain = registry.build("model", "kaleido", {"layers": 2, "hidden": 32, "heads": 2, "kv_heads": 1,
                                                "in_channels": 3, "patch_size": 2, "window": 2}, posenc="gta")
    wrapped = copy.deepcopy(plain)
    assert checkpoint_blocks(wrapped) == 2
    args, kwargs = _inputs(torch.Generator().manual_seed(1))
    plain_calls, wrapped_calls = [], []
    out_plain = _forward_backward(plain, args, kwargs, plain_calls)
    out_wrapped = _forward_backward(wrapped, args, kwargs, wrapped_calls)
    assert (len(plain_calls), len(wrapped_calls)) == (2, 4)  # one recomputation per block
    torch.testing.assert_close(out_wrapped, out_plain, rtol=0, atol=0)
    assert wrapped.state_dict().keys() == plain.state_dict().keys()
    grads = dict(plain.named_parameters())
    for name, param in wrapped.named_parameters():
        name = name.replace("_checkpoint_wrapped_module.", "")
        torch.testing.assert_close(param.grad, grads[name].grad, rtol=1e-6, atol=1e-7, msg=name)


def test_model_without_blocks_is_refused():
    with pytest.raises(ValueError, match="activation_checkpointing"):
        checkpoint_blocks(torch.nn.Linear(2, 2))
