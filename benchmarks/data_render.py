"""Cost of the embedded dataset: the procedural ray caster, scene generation and item loading.

Rows: rendering one scene (16 views, 64×64, 2×2 supersampling = 262k rays) with bounding-sphere
culling (what `render` does) against intersecting every ray with every primitive (the obvious
alternative), each with 1 and 2 intra-op threads; then a whole scene written to disk (render + PNG +
JSON) at 64 and 32 pixels, and one dataset item (4 views read from PNG). There is no matmul in a
ray caster, so the figure of merit is Mrays/s; this CPU's float32 matmul rate is printed for scale.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from _common import interleaved_medians, matmul_gflops, parse_args, report, time_fn
from seqrender.experiments.data import renderer
from seqrender.experiments.data.dataset import MultiViewDataset
from seqrender.experiments.data.embedded import EmbeddedConfig, _generate_scene
from seqrender.experiments.data.scenes import make_scene, orbit_cameras
from seqrender.experiments.data.seeding import generator_from

VIEWS, SIZE, SUPERSAMPLE = 16, 64, 2


def nearest_hit_without_culling(primitives, origins, dirs):
    """The alternative: every primitive against every ray, then a min over primitives."""
    hits = [p.intersect(origins, dirs) for p in primitives]
    distance, index = torch.stack([h.distance for h in hits]).min(dim=0)
    pick = index[None, :, None].expand(1, -1, 3)
    normal = torch.stack([h.normal for h in hits]).gather(0, pick)[0]
    colour = torch.stack([h.colour for h in hits]).gather(0, pick)[0]
    return distance, normal, colour


def render_case(culling: bool, scenes):
    def run():
        original = renderer._nearest_hit
        if not culling:
            renderer._nearest_hit = nearest_hit_without_culling
        try:
            for prims, K, E in scenes:
                renderer.render(prims, K, E, height=SIZE, width=SIZE, supersample=SUPERSAMPLE)
        finally:
            renderer._nearest_hit = original
    return run


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    repeats = 3 if args.quick else 7
    n_scenes = 4 if args.quick else 12
    scenes = []
    for i in range(n_scenes):
        g = generator_from(0, i)
        prims = make_scene(g)
        K, E = orbit_cameras(VIEWS, height=SIZE, width=SIZE, generator=g)
        scenes.append((prims, K, E))
    rays = n_scenes * VIEWS * (SIZE * SUPERSAMPLE) ** 2
    rows = []
    threads = torch.get_num_threads()
    for t in sorted({1, threads}):
        torch.set_num_threads(t)
        times = interleaved_medians({"culling": render_case(True, scenes),
                                     "no culling": render_case(False, scenes)}, repeats)
        for name, seconds in times.items():
            rows.append({"case": f"render, {name}", "threads": t, "ms/scene": 1e3 * seconds / n_scenes,
                         "Mrays/s": rays / seconds / 1e6, "speed-up": times["no culling"] / seconds})
    torch.set_num_threads(1)  # generation runs single-threaded (see embedded._single_thread)
    with tempfile.TemporaryDirectory() as tmp:
        for size in (64, 32):
            config = EmbeddedConfig(resolution=size)
            counter = iter(range(10**6))
            seconds = time_fn(lambda: _generate_scene(Path(tmp) / f"s{size}_{next(counter)}", config,
                                                       index=next(counter)), warmup=1, repeats=repeats * 2)
            rows.append({"case": f"generate + write scene {size}px", "threads": 1, "ms/scene": 1e3 * seconds,
                         "320 scenes (s)": 320 * seconds})
        folder = Path(tmp) / "item"
        _generate_scene(folder, EmbeddedConfig(), index=0)
        dataset = MultiViewDataset([folder], views=4)
        seconds = time_fn(lambda: dataset.get_item(0, generator=generator_from(1, 2)), warmup=2, repeats=repeats * 10)
        rows.append({"case": "dataset item (4 views 64px)", "threads": 1, "ms/scene": 1e3 * seconds})
    torch.set_num_threads(threads)
    report("Embedded data: renderer and generation (float32, CPU)", rows, json_path=args.json,
           matmul_gflops=matmul_gflops(), rays_per_scene=VIEWS * (SIZE * SUPERSAMPLE) ** 2,
           note="shared 2-core machine under load from other jobs: compare ratios within one run")


if __name__ == "__main__":
    main()
