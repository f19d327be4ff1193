"""What limits novel views of the appearance route (issue 14's ±30° goals)?

    python benchmarks/novel_view_ceiling.py [--checkpoint live3dpe/model/weights/default_small.safetensors]

The appearance route re-projects the input photo onto the model's geometry (model/guide.py). Here
the same re-projection rule runs with the geometry and the fill swapped for ground truth, one at a
time, on the held-out synthetic people of `live3dpe.train.evaluate` (input frontal, truth at yaw
-30° / +30°, unedited): the gap between a row and the model says what that part costs.

  geometry: the model's rendered surface (its ray grid; the median depth, as the renderer's guide
            uses) | the model's expected depth (the rule before the median) | the true depth at the
            model's ray grid (area-averaged, then upsampled as the model's is) | 64² rays | per pixel.
  fill (where the input never saw the surface or the point lands beyond the crop): the crop's
            coarse edge colour where the photo ends, else the model's neural colour (the shipped rule) |
            the neural colour also beyond the crop (the rule up to commit 250f3a9) |
            push-pull inpainting from the visible re-projection.
  background: as the geometry says | the true background plate (the input's background,
            push-pull inpainted behind the head, at the same pixel).

And where the shipped model's error lies: its squared error split by region of the true view, the
head's silhouette band (the true mask dilated minus eroded by BAND px: about one ray of a 32² grid
at 256 px), the head inside it and the background outside it.

Writes `benchmarks/results/novel_view_ceiling.{json,md}` and a contact sheet (`.png`).
"""
from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from common import RESULTS, environment
from PIL import Image
from torch import Tensor

from live3dpe.model import cameras
from live3dpe.model.checkpoint import load_checkpoint
from live3dpe.model.guide import inside_crop, reproject_input
from live3dpe.model.network import to_input_resolution
from live3dpe.model.types import Guide
from live3dpe.synth.person import sample_person
from live3dpe.synth.render import render
from live3dpe.train.evaluate import EVAL_SEED

Fill = Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]  # colour, visibility, grid, neural -> image
FILLS: dict[str, Fill] = {
    "crop edge, neural colour (shipped)": lambda c, vis, grid, neural: vis * c + (1 - vis) * neural,
    "neural colour (previous)": lambda c, vis, grid, neural: inside_crop(grid) * vis * c + (1 - inside_crop(grid) * vis) * neural,
    "push-pull": lambda c, vis, grid, neural: push_pull(c, vis),
}
FAR = 9.0  # world units: the true depth of background rays (the head is at ~2.5)
BAND = 6  # px each side of the true silhouette at 256 px


def resize(x: Tensor, size: int, mode: str = "bilinear") -> Tensor:
    if x.shape[-1] == size:
        return x
    return F.interpolate(x, size=(size, size), mode=mode, **({} if mode in ("area", "nearest") else {"align_corners": False}))


def push_pull(image: Tensor, weight: Tensor) -> Tensor:
    """Fill where weight ~ 0 from weighted neighbours at ever coarser scales. [B,C,S,S], [B,1,S,S]."""
    if image.shape[-1] <= 1:
        return (image * weight).sum((2, 3), keepdim=True) / weight.sum((2, 3), keepdim=True).clamp_min(1e-6) * torch.ones_like(image)
    w = F.avg_pool2d(weight, 2)
    coarse = push_pull(F.avg_pool2d(image * weight, 2) / w.clamp_min(1e-6), w.clamp(max=1))
    return weight * image + (1 - weight) * resize(coarse, image.shape[-1])


def psnr(pred: Tensor, truth: Tensor) -> float:
    return float(10 * torch.log10(4 / ((pred.clamp(-1, 1) - truth) ** 2).mean().clamp_min(1e-10)))


def regions(mask: Tensor, band: int) -> dict[str, Tensor]:
    """True mask [B, 1, H, W] -> {region: 0/1 map}: silhouette band (±band px), head inside it, background outside."""
    dilated = F.max_pool2d(mask, 2 * band + 1, 1, band)
    eroded = 1 - F.max_pool2d(1 - mask, 2 * band + 1, 1, band)
    return {"silhouette band": dilated - eroded, "head": eroded, "background": 1 - dilated}


@torch.no_grad()
def measure(checkpoint: str, people: int, size: int) -> tuple[dict, np.ndarray]:
    net, meta = load_checkpoint(checkpoint)
    if not net.cfg.appearance_route:
        raise SystemExit(f"{checkpoint} is preset {meta.preset!r}: this benchmark needs the appearance route (preset small)")
    rays = net.cfg.render.neural_resolution
    labels = cameras.Camera.from_yaw_pitch(torch.tensor([0.0, -math.radians(30), math.radians(30)]), torch.zeros(3)).label
    scores: dict[tuple[str, str, str], list[float]] = {}
    error: dict[str, list[float]] = {}  # region -> [squared error summed over its pixels, pixels]
    sheet = []
    for p in range(people):
        person = sample_person(np.random.default_rng([EVAL_SEED, p]))
        shots = [render(person, label.numpy(), size) for label in labels]
        images = torch.from_numpy(np.stack([s.image for s in shots])).permute(0, 3, 1, 2).float() / 127.5 - 1
        true_depth = torch.from_numpy(np.stack([np.nan_to_num(s.depth.astype(np.float32), posinf=FAR) for s in shots]))[:, None]
        masks = torch.from_numpy(np.stack([s.mask for s in shots]))[:, None].float()
        photo = images[:1]
        seen = Guide(photo, labels[:1], None)
        plate = push_pull(photo, 1 - masks[:1])
        planes, guide = net.planes(net.encoder.encode_features(to_input_resolution(photo, net.cfg.input_resolution)), photo, labels[:1])
        model_in = net.renderer(planes, labels[:1], deterministic=True)

        def at_rays(d: Tensor, n: int) -> Tensor:
            return resize(resize(d.clamp(max=net.cfg.render.ray_end), n, "area"), size)

        for v in (1, 2):
            out = net.renderer(planes, labels[v : v + 1], deterministic=True, guide=guide)
            neural = resize(net.renderer(planes, labels[v : v + 1], deterministic=True).image, size)
            truth, mask = images[v : v + 1], masks[v : v + 1]
            geometries: dict[str, tuple[Tensor, Tensor]] = {
                f"model ({rays}² rays)": (resize(out.surface, size), resize(model_in.surface, size)),
                f"model ({rays}² rays), expected depth (previous)": (resize(out.depth, size), resize(model_in.depth, size)),
                f"true, {rays}² rays": (at_rays(true_depth[v : v + 1], rays), at_rays(true_depth[:1], rays)),
                "true, 64² rays": (at_rays(true_depth[v : v + 1], 64), at_rays(true_depth[:1], 64)),
                "true, per pixel": (true_depth[v : v + 1], true_depth[:1]),
            }
            shipped = resize(out.image, size)
            scores.setdefault(("shipped model", "", ""), []).append(psnr(shipped, truth))
            squared = ((shipped - truth) ** 2).mean(1, keepdim=True)
            for name, region in regions(mask, BAND * size // 256).items():
                total = error.setdefault(name, [0.0, 0.0])
                total[0] += float((squared * region).sum())
                total[1] += float(region.sum())
            for g, (d_out, d_in) in geometries.items():
                colour, vis, grid = reproject_input(d_out, labels[v : v + 1], seen, d_in)
                for f, fill in FILLS.items():
                    image = fill(colour, vis, grid, neural)
                    scores.setdefault((g, f, "as geometry"), []).append(psnr(image, truth))
                    scores.setdefault((g, f, "true plate"), []).append(psnr(mask * image + (1 - mask) * plate, truth))
                    if p == 0 and v == 2 and f.endswith("(shipped)") and "previous" not in g:
                        sheet.append(image)
            if p == 0 and v == 2:
                sheet = [photo, shipped, *sheet, truth]
    rows = [{"geometry": g, "fill": f, "background": b, "psnr_novel": float(np.mean(v))} for (g, f, b), v in scores.items()]
    strip = torch.cat(sheet, -1)[0].permute(1, 2, 0)
    all_error, all_pixels = sum(e for e, _ in error.values()), sum(n for _, n in error.values())
    by_region = [{"region": name, "pixels": n / all_pixels, "error": e / all_error, "psnr": 10 * math.log10(4 / (e / n))} for name, (e, n) in error.items()]
    return {"checkpoint": checkpoint, "people": people, "resolution": size, "rays": rays, "rows": rows, "error_by_region": by_region}, ((strip + 1) * 127.5).clamp(0, 255).byte().numpy()


def markdown(result: dict) -> str:
    env = result["environment"]
    lines = [
        f"Device: {env['device']} · commit {env['commit']} · {env['date']}",
        "",
        f"Reconstruction PSNR at yaw ±30° (input frontal), {result['people']} held-out synthetic people at {result['resolution']} px, "
        f"`{Path(result['checkpoint']).name}` (its ray grid: {result['rays']}²). Every row uses the re-projection rule of "
        "`model/guide.py`; only the named part is swapped. Goal of issue 14: 22 dB.",
        "",
        "| geometry | fill of unseen surface | background | PSNR ±30° |",
        "|---|---|---|---|",
    ]
    for r in result["rows"]:
        lines.append(f"| {r['geometry']} | {r['fill'] or '—'} | {r['background'] or '—'} | {r['psnr_novel']:.2f} |")
    lines += [
        "",
        f"Where the shipped model's error lies (±30°, regions of the true view; the silhouette band is ±{BAND} px at 256 px):",
        "",
        "| region | share of pixels | share of squared error | PSNR within |",
        "|---|---|---|---|",
        *(f"| {r['region']} | {r['pixels']:.0%} | {r['error']:.0%} | {r['psnr']:.1f} |" for r in result["error_by_region"]),
    ]
    lines += [
        "",
        "Contact sheet (person 0, yaw +30°): input · shipped model · true geometry at "
        f"{result['rays']}² rays, 64² rays, per pixel (shipped fill) · truth: `novel_view_ceiling.png`.",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default="live3dpe/model/weights/default_small.safetensors")
    ap.add_argument("--people", type=int, default=6, help="held-out synthetic people (default 6, as `train bundle`'s evaluation)")
    ap.add_argument("--resolution", type=int, default=256, help="image size of input and truth (default 256, the guide's)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    result, sheet = measure(args.checkpoint, args.people, args.resolution)
    result["environment"] = environment(torch.device("cpu"))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "novel_view_ceiling.json").write_text(json.dumps(result, indent=1))
    (RESULTS / "novel_view_ceiling.md").write_text(markdown(result))
    Image.fromarray(sheet).save(RESULTS / "novel_view_ceiling.png")
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
