"""Rendering novel views from a trained checkpoint: `python experiments/render.py` (command.py),
masked-autoregressive generation (generate.py), camera trajectories (trajectories.py), scene inputs
(inputs.py: embedded held-out scenes, Blender folders, plain photos via structure-from-motion in
sfm.py) and the written outputs (outputs.py)."""


class RenderError(ValueError):
    """A user error in a render's inputs; the message is one line naming the field, file or frame."""
