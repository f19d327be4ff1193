"""`live3dpe weights ...`: convert official weights into our checkpoint format and inspect checkpoints."""
from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

KINDS = ("3dpe", "live3d-lt")


def register(subparsers: argparse._SubParsersAction) -> None:
    weights = subparsers.add_parser(
        "weights",
        help="import official weights, inspect checkpoints",
        description="Manage live3dpe checkpoints (.safetensors + JSON metadata).",
    )
    sub = weights.add_subparsers(dest="weights_command", metavar="ACTION", required=True)

    imp = sub.add_parser(
        "import",
        help="convert an official checkpoint into a live3dpe .safetensors",
        description=(
            "Convert an official checkpoint into our format. --kind 3dpe: the 3DPE release "
            "(3dpe.pt: encoder + renderer, every key checked). --kind live3d-lt: a Live3D "
            "reconstruction encoder, loaded into the prior and fusion parts only; combine it with "
            "--base to keep the renderer and prompt side of an existing checkpoint. The text-prompt "
            "projection has no official counterpart and keeps its base (or random) values. "
            "Loads with weights_only=True: no code in the file is run."
        ),
    )
    imp.add_argument("source", type=Path, help="official checkpoint (.pt / .pth)")
    imp.add_argument("output", type=Path, help="where to write (must end in .safetensors; a .json sidecar is written next to it)")
    imp.add_argument("--kind", choices=KINDS, default="3dpe", help="what the source holds (default: 3dpe)")
    imp.add_argument("--preset", help="model preset the weights are sized for (default: paper, or that of --base)")
    imp.add_argument("--base", type=Path, help="start from this live3dpe checkpoint instead of random init")
    imp.add_argument("--seed", type=int, default=0, help="seed for parts left at random init (default: 0)")
    imp.set_defaults(func=_import)

    info = sub.add_parser(
        "info",
        help="show a checkpoint's metadata and sizes",
        description="Print a checkpoint's preset, text back-end, version, checksum, training info and parameter counts.",
    )
    info.add_argument("checkpoint", type=Path, help="a live3dpe .safetensors file")
    info.add_argument("--verify", action="store_true", help="also load every tensor and check the sha256 and shapes")
    info.add_argument("--json", action="store_true", help="print the metadata as JSON only")
    info.set_defaults(func=_info)


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _import(args: argparse.Namespace) -> int:
    import torch

    from .checkpoint import SUFFIX, build_net, load_checkpoint, save_checkpoint
    from .config import get_preset
    from .importer import import_live3d_encoder, import_official

    if not args.source.is_file():
        raise FileNotFoundError(f"official checkpoint {args.source} not found")
    if args.output.suffix != SUFFIX:  # checked again when saving; here so it fails before the slow import
        raise ValueError(f"output must end in {SUFFIX}, got {args.output.name!r}")
    if args.output.is_dir():
        raise ValueError(f"output {args.output} is a directory; give a file name ending in {SUFFIX}")
    if args.base is not None:
        net, base_meta = load_checkpoint(args.base)
        if args.preset not in (None, base_meta.preset):
            raise ValueError(f"--base is preset {base_meta.preset!r} but --preset {args.preset!r} was given")
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(args.seed)
            net = build_net(get_preset(args.preset or "paper"))
    load = import_official if args.kind == "3dpe" else import_live3d_encoder
    report = load(net, args.source)
    training = {
        "imported_from": args.source.name,
        "import_kind": args.kind,
        "source_sha256": _file_sha256(args.source),
        "base": str(args.base) if args.base else None,
        "left_as_is": sorted({k.split(".")[0] for k in report.not_in_checkpoint}),
    }
    meta = save_checkpoint(net, args.output, training)
    print(f"mapped {len(report.loaded)} tensors from {args.source} ({args.kind})")
    if report.ignored_official:
        print(f"ignored {len(report.ignored_official)} official tensors that take no part in the forward pass:")
        for key in report.ignored_official:
            print(f"  {key}")
    if report.not_in_checkpoint:
        origin = "from --base" if args.base else f"random, seed {args.seed}"
        print(f"{len(report.not_in_checkpoint)} of our tensors not in the source kept their values ({origin}):")
        for key in report.not_in_checkpoint:
            print(f"  {key}")
    print(f"wrote {args.output} (preset {meta.preset}, sha256 {meta.sha256[:16]}...)")
    return 0


def _info(args: argparse.Namespace) -> int:
    from safetensors import safe_open

    from .checkpoint import load_checkpoint, read_meta

    meta = read_meta(args.checkpoint)
    if args.json:
        print(json.dumps(meta.to_dict(), indent=2, sort_keys=True))
    else:
        counts: dict[str, int] = {}
        with safe_open(str(args.checkpoint), framework="pt") as f:
            for key in f.keys():
                n = 1
                for d in f.get_slice(key).get_shape():
                    n *= d
                counts[key.split(".")[0]] = counts.get(key.split(".")[0], 0) + n
        print(f"checkpoint:      {args.checkpoint}")
        print(f"preset:          {meta.preset} (input {meta.config.input_resolution}, output {meta.config.render.output_resolution})")
        print(f"text back-end:   {meta.text_backend} ({meta.text_dim}-d tokens)")
        print(f"live3dpe:        {meta.live3dpe_version}")
        print(f"sha256:          {meta.sha256}")
        print(f"parameters:      {sum(counts.values()):,}")
        for part, n in sorted(counts.items()):
            print(f"  {part:<14} {n:,}")
        print("training:        " + json.dumps(meta.training, sort_keys=True))
    if args.verify:
        load_checkpoint(args.checkpoint)
        print("verified: checksum and every key/shape match the config")
    return 0
