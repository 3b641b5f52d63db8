"""One strict check of a checkpoint's tensors against a model, shared by the local-file loaders
(AutoencoderKL, DINOv2): every mismatch is reported in one ValueError naming the keys and shapes."""
from __future__ import annotations

from collections.abc import Iterable, Mapping

from torch import Tensor


def check_state_dict(own: Mapping[str, Tensor], state: Mapping[str, Tensor], *, source: str, target: object,
                     optional: Iterable[str] = ()) -> None:
    """Raise ValueError unless `state` has exactly the keys of `own` (keys in `optional` may be
    absent) with the same shapes. The message names `source` (e.g. the file), `target` (e.g. the
    config), the first missing / unexpected keys and each mis-shaped key with both shapes."""
    missing = sorted(set(own) - set(state) - set(optional))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in sorted(set(own) & set(state)) if state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        raise ValueError(f"{source} does not match {target}: missing {missing[:5]} ({len(missing)}), "
                         f"unexpected {unexpected[:5]} ({len(unexpected)}), shape mismatches {shapes[:5]}")
