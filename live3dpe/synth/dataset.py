"""Write synthetic datasets in the EG3D layout, and read EG3D-layout datasets.

Layout of a written dataset (the root is itself a valid EG3D dataset: its only image
files are the input views, so EG3D's own loader reads it unchanged):

    ROOT/dataset.json                {"labels": [["00000/img00000000.png", [25 floats]], ...]}
    ROOT/00000/img00000000.png       input view: the unedited person at that camera
    ROOT/extras/00000/img00000000.npz
        depth  float16[H, W]          distance along each pixel's ray (inf = background)
        mask   bool[H, W]             person foreground
        part   int8[H, W]             `landmarks.Part` per pixel (-1 = background)
        edited uint8[H, W, 3]         the same person and camera, edited in `style`
        edited_depth, edited_mask     the edited geometry (styles may add volume)
    ROOT/prompts.npz                 per style name: uint8[K, H, W, 3] image prompts,
                                     renders of *other* people (not in the dataset) in the style
    ROOT/synth.json                  {"resolution", "seed", "styles": {name: {"train", "heldout"}},
                                      "samples": [{"image", "extras", "person", "view", "style",
                                                   "phrase", "heldout_phrase", "yaw", "pitch"}]}

Images are grouped 1000 per folder as in EG3D's FFHQ archives.
"""
from __future__ import annotations

import io
import json
import zipfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from live3dpe.model.cameras import Camera
from live3dpe.synth.person import sample_person
from live3dpe.synth.render import render
from live3dpe.synth.styles import STYLES

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


@dataclass(frozen=True)
class SynthConfig:
    """What `write_dataset` makes: people x styles_per_person x views samples."""

    people: int = 16
    views: int = 4
    styles: tuple[str, ...] = tuple(STYLES)
    styles_per_person: int = 1
    resolution: int = 128
    references: int = 4  # image prompts per style
    seed: int = 0
    yaw_std: float = 0.3  # radians, roughly FFHQ's spread
    pitch_std: float = 0.1
    supersample: int = 1  # odd; 3 antialiases at ~5x the cost


def sample_cameras(rng: np.random.Generator, n: int, yaw_std: float, pitch_std: float) -> np.ndarray:
    """Orbit cameras with FFHQ-like pose spread. -> labels float32 [n, 25]."""
    yaw = np.clip(rng.normal(0, yaw_std, n), -3 * yaw_std, 3 * yaw_std)
    pitch = np.clip(rng.normal(0, pitch_std, n), -3 * pitch_std, 3 * pitch_std)
    return Camera.from_yaw_pitch(torch.as_tensor(yaw, dtype=torch.float32), torch.as_tensor(pitch, dtype=torch.float32)).label.numpy()


def _person_samples(cfg: SynthConfig, index: int) -> list[dict]:
    """Everything rendered for dataset person `index` (runs in a worker)."""
    rng = np.random.default_rng([cfg.seed, 0, index])
    person = sample_person(rng)
    order = rng.permutation(len(cfg.styles))
    chosen = [cfg.styles[(index + int(k)) % len(cfg.styles)] for k in order[: cfg.styles_per_person]]
    out = []
    for s_i, name in enumerate(chosen):
        style = STYLES[name]
        edited = style.apply(person)
        labels = sample_cameras(rng, cfg.views, cfg.yaw_std, cfg.pitch_std)
        for v, label in enumerate(labels):
            a = render(person, label, cfg.resolution, supersample=cfg.supersample)
            b = render(edited, label, cfg.resolution, supersample=cfg.supersample)
            out.append(
                dict(
                    label=label, image=a.image, depth=a.depth, mask=a.mask, part=a.part,
                    edited=b.image, edited_depth=b.depth, edited_mask=b.mask, person=index, view=s_i * cfg.views + v,
                    style=name, phrase=style.train_phrases[int(rng.integers(8))],
                    heldout_phrase=style.heldout_phrases[int(rng.integers(5))],
                )  # fmt: skip
            )
    return out


def _reference_images(cfg: SynthConfig, name: str) -> np.ndarray:
    """Image prompts for a style: people drawn from a stream disjoint from the dataset's."""
    imgs = []
    for k in range(cfg.references):
        rng = np.random.default_rng([cfg.seed, 1, list(STYLES).index(name), k])
        person = STYLES[name].apply(sample_person(rng))
        label = sample_cameras(rng, 1, cfg.yaw_std / 2, cfg.pitch_std / 2)[0]
        imgs.append(render(person, label, cfg.resolution, supersample=cfg.supersample).image)
    return np.stack(imgs) if imgs else np.zeros((0, cfg.resolution, cfg.resolution, 3), np.uint8)


def _write_png(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1])):
        raise RuntimeError(f"could not write {path}")


def write_dataset(out_dir: str | Path, cfg: SynthConfig = SynthConfig(), workers: int = 1, progress: bool = False) -> Path:
    """Render and write a dataset (layout in the module docstring). -> path of dataset.json."""
    unknown = [s for s in cfg.styles if s not in STYLES]
    if unknown or not cfg.styles:
        raise ValueError(f"unknown styles {unknown}; choose from {sorted(STYLES)}")
    if not 1 <= cfg.styles_per_person <= len(cfg.styles):
        raise ValueError("styles_per_person must be between 1 and the number of styles")
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    total = cfg.people * cfg.styles_per_person * cfg.views
    bar = tqdm(total=total, unit="pair", disable=not progress, desc="synth")
    labels, samples = [], []
    pool = ProcessPoolExecutor(workers) if workers > 1 else None
    try:
        results = pool.map(_person_samples, [cfg] * cfg.people, range(cfg.people)) if pool else (_person_samples(cfg, i) for i in range(cfg.people))
        for person_samples in results:
            for s in person_samples:
                i = len(samples)
                rel = f"{i // 1000:05d}/img{i:08d}.png"
                extras = f"extras/{i // 1000:05d}/img{i:08d}.npz"
                _write_png(root / rel, s["image"])
                (root / extras).parent.mkdir(parents=True, exist_ok=True)
                np.savez_compressed(
                    root / extras, depth=s["depth"].astype(np.float16), mask=s["mask"], part=s["part"],
                    edited=s["edited"], edited_depth=s["edited_depth"].astype(np.float16), edited_mask=s["edited_mask"],
                )  # fmt: skip
                labels.append([rel, [float(x) for x in s["label"]]])
                yaw, pitch = Camera(torch.as_tensor(s["label"])[None]).yaw_pitch
                samples.append(
                    {"image": rel, "extras": extras, "person": s["person"], "view": s["view"], "style": s["style"],
                     "phrase": s["phrase"], "heldout_phrase": s["heldout_phrase"], "yaw": float(yaw), "pitch": float(pitch)}
                )  # fmt: skip
                bar.update(1)
        refs = pool.map(_reference_images, [cfg] * len(cfg.styles), cfg.styles) if pool else map(lambda n: _reference_images(cfg, n), cfg.styles)
        np.savez_compressed(root / "prompts.npz", **dict(zip(cfg.styles, refs)))
    finally:
        bar.close()
        if pool:
            pool.shutdown()
    meta = {
        "resolution": cfg.resolution,
        "seed": cfg.seed,
        "styles": {n: {"train": list(STYLES[n].training_texts), "heldout": list(STYLES[n].heldout_phrases)} for n in cfg.styles},
        "samples": samples,
    }
    (root / "synth.json").write_text(json.dumps(meta, indent=1))
    (root / "dataset.json").write_text(json.dumps({"labels": labels}))
    return root / "dataset.json"


class _Files:
    """Uniform read access to a dataset folder or zip archive (as EG3D accepts both)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.zip = zipfile.ZipFile(path) if path.is_file() else None

    def names(self) -> list[str]:
        if self.zip:
            return [n for n in self.zip.namelist() if not n.endswith("/")]
        return [p.relative_to(self.path).as_posix() for p in self.path.rglob("*") if p.is_file()]

    def read(self, name: str) -> bytes:
        return self.zip.read(name) if self.zip else (self.path / name).read_bytes()


def _decode(data: bytes) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError("could not decode image")
    return img[..., ::-1]


def _to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """uint8 [H, W, 3] -> float [3, H, W] in [-1, 1] (the model's image range)."""
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float() / 127.5 - 1


class EG3DDataset(Dataset):
    """An EG3D-layout dataset (folder or zip): every image file under the root, sorted,
    labelled through dataset.json, exactly as EG3D's ImageFolderDataset reads it.

    Items: {"image": float[3, H, W] in [-1, 1], "label": float[25], "name": str}. With
    `extras=True` and a synthetic dataset, also "depth"/"edited_depth" float[1, H, W]
    (inf = background), "mask"/"edited_mask" float[1, H, W], "edited" float[3, H, W],
    "reference" float[3, H, W] (an image prompt of the style), "person", "style", "phrase".
    """

    def __init__(self, path: str | Path, extras: bool = False) -> None:
        self.files = _Files(Path(path))
        names = self.files.names()
        self.image_names = sorted(n for n in names if n.lower().endswith(IMAGE_EXTENSIONS))
        if not self.image_names:
            raise FileNotFoundError(f"no images under {path}")
        labels = json.loads(self.files.read("dataset.json"))["labels"] if "dataset.json" in names else None
        if labels is None:
            raise FileNotFoundError(f"{path} has no dataset.json with camera labels")
        by_name = {n.replace("\\", "/"): lab for n, lab in labels}
        missing = [n for n in self.image_names if n not in by_name]
        if missing:
            raise ValueError(f"{len(missing)} images have no label in dataset.json, e.g. {missing[0]}")
        self.labels = torch.tensor([by_name[n] for n in self.image_names], dtype=torch.float32).reshape(-1, 25)
        self.extras = extras
        self.meta: dict[str, dict] = {}
        self.prompts: dict[str, np.ndarray] = {}
        if extras:
            if "synth.json" not in names:
                raise FileNotFoundError(f"{path} has no synth.json: extras exist only for synthetic datasets")
            self.meta = {s["image"]: s for s in json.loads(self.files.read("synth.json"))["samples"]}
            if "prompts.npz" in names:
                with np.load(io.BytesIO(self.files.read("prompts.npz"))) as z:
                    self.prompts = {k: z[k] for k in z.files}

    def __len__(self) -> int:
        return len(self.image_names)

    def __getitem__(self, index: int) -> dict:
        name = self.image_names[index]
        item = {"image": _to_tensor(_decode(self.files.read(name))), "label": self.labels[index], "name": name}
        if self.extras:
            m = self.meta[name]
            with np.load(io.BytesIO(self.files.read(m["extras"]))) as z:
                item["depth"] = torch.from_numpy(z["depth"].astype(np.float32))[None]
                item["mask"] = torch.from_numpy(z["mask"].astype(np.float32))[None]
                item["edited"] = _to_tensor(z["edited"])
                item["edited_depth"] = torch.from_numpy(z["edited_depth"].astype(np.float32))[None]
                item["edited_mask"] = torch.from_numpy(z["edited_mask"].astype(np.float32))[None]
            refs = self.prompts.get(m["style"])
            if refs is not None and len(refs):
                item["reference"] = _to_tensor(refs[index % len(refs)])
            item.update(person=m["person"], style=m["style"], phrase=m["phrase"])
        return item

