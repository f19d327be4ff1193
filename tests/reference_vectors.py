"""The 3DPE conformance vectors, full or compact, behind one interface for the conformance tests.

The full vectors (~40 MB, `../shared/reference/conformance`, or `$LIVE3DPE_REFERENCE/conformance`)
are optional. A compact copy ships in `tests/data/conformance_compact` (under 2 MB) so anyone can
check the fidelity claim from a plain clone:

* inputs are not stored: every one was drawn from a seeded numpy generator (recipes in
  vectors.json), so they are regenerated here and checked against the sha256 of the original
  arrays (`manifest.json`);
* each reference output is reduced to `COMPACT_VALUES` elements at the positions of the
  reference's own subsampling rule (default_rng(7), CONVENTIONS.md §10), plus its per-channel
  mean and std and sum of |x|, computed from the full tensor;
* the small JSON/py files (weights rule, checksums, layout, tolerances) are copied as they are.

`Conformance.check` compares a tensor with every reference present: the full vectors when
found (all elements, as the vectors define) and always the compact copy (its subset and
statistics, whose tolerances the elementwise ones imply). `python tests/reference_vectors.py
[FULL_DIR]` rebuilds the compact copy; `test_compact_copy_is_derived_from_the_full_vectors`
checks it is up to date whenever the full vectors are present.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np

REPO = Path(__file__).resolve().parents[1]
COMPACT = REPO / "tests" / "data" / "conformance_compact"
COMPACT_VALUES = 8192
SUBSAMPLE_SEED = 7
COPIED = ("CONVENTIONS.md", "vectors.json", "synth_weights.py", "synth_weight_checksums.json")
LAYOUT = "official_3dpe_checkpoint_layout.json"  # lives next to the conformance folder in the full set

# vector file -> arrays compared by the tests: name -> channel axis
OUTPUTS: dict[str, dict[str, int]] = {
    "vec_a_encoder_edit.npz": {
        "elow_backbone": 1, "elow_aspp": 1, "f_feature": 1, "high_feature": 1, "ref_query_tokens": 2,
        "cross_attn_out": 1, "triplane": 1, "mae_tokens": 2, "mae_pos_embed_official": 2,
    },
    "vec_b_encoder_rec.npz": {"triplane": 1},
    "vec_c_camera_rays.npz": {"ray_origins": 2, "ray_dirs": 2},
    "vec_d_planes_decoder.npz": {"sampled_features": 3, "decoder_raw33": 1, "sigma": 2, "rgb": 2},
    "vec_e_raymarch.npz": {"rgb": 2, "depth": 2, "weights": 3},
    "vec_f_superres.npz": {"sr_full": 1, "block0_img": 1},
}  # fmt: skip
# small arrays kept whole
KEPT = {"vec_c_camera_rays.npz": ("labels", "horizontal_mean", "vertical_mean"), "vec_d_planes_decoder.npz": ("plane_axes",), "vec_f_superres.npz": ("const",)}


def regenerate_inputs(vector: str) -> dict[str, np.ndarray]:
    """The vector's inputs from the recipes in vectors.json (all numpy, seed 1234)."""
    rng = np.random.default_rng(1234)
    if vector in ("vec_a_encoder_edit.npz", "vec_b_encoder_rec.npz"):
        x_u8 = rng.integers(0, 256, (512, 512, 3), dtype=np.uint8)
        return {"x_u8": x_u8, "r_u8": rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)} if vector.startswith("vec_a") else {"x_u8": x_u8}
    if vector == "vec_d_planes_decoder.npz":
        planes = (rng.standard_normal((1, 3, 32, 64, 64)) * 0.5).astype(np.float32)
        return {"planes": planes, "points": rng.uniform(-0.6, 0.6, (1, 4096, 3)).astype(np.float32)}
    if vector == "vec_e_raymarch.npz":
        colors_u8 = rng.integers(0, 256, (1, 4096, 96, 32), dtype=np.uint8)
        densities = (rng.standard_normal((1, 4096, 96, 1)) * 8 + rng.uniform(-4, 12, (1, 4096, 1, 1))).astype(np.float32)
        depths = np.sort(rng.uniform(2.25, 3.3, (1, 4096, 96, 1)), axis=2).astype(np.float32)
        return {"colors_u8": colors_u8, "densities": densities, "depths": depths}
    if vector == "vec_f_superres.npz":
        return {"features": rng.uniform(-1, 1, (1, 32, 128, 128)).astype(np.float32)}
    return {}


def sha256(array: np.ndarray) -> str:
    a = np.ascontiguousarray(array)
    return hashlib.sha256(f"{a.dtype.str}|{a.shape}|".encode() + a.tobytes()).hexdigest()


def _stats(t: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray, float]:
    t = t.astype(np.float64)
    axes = tuple(i for i in range(t.ndim) if i != axis)
    return t.mean(axis=axes), t.std(axis=axes), float(np.abs(t).sum())


def _subsample_index(size: int) -> np.ndarray:
    return np.random.default_rng(SUBSAMPLE_SEED).choice(size, min(65536, size), replace=False)


@dataclass
class Expected:
    """What one reference knows of a tensor: its shape, values at `index` (C-order flat), statistics."""

    shape: tuple[int, ...]
    index: np.ndarray
    values: np.ndarray
    ch_mean: np.ndarray
    ch_std: np.ndarray
    abs_sum: float
    axis: int
    source: str

    def check(self, ours: np.ndarray, name: str, atol: float, rtol: float = 0.0, stats_atol: float | None = None, abs_sum_rtol: float | None = None) -> None:
        """Elementwise |ours - ref| <= atol + rtol|ref| at the known positions, and the statistics
        within the bounds that elementwise tolerance implies (tighter ones when given)."""
        ours = np.asarray(ours, np.float64)
        what = f"{name} vs the {self.source} reference"
        assert ours.shape == self.shape, f"{what}: shape {ours.shape}, expected {self.shape}"
        np.testing.assert_allclose(ours.reshape(-1)[self.index], self.values.astype(np.float64), rtol=rtol, atol=atol, err_msg=what)
        mean, std, abs_sum = _stats(ours, self.axis)
        s_atol = atol if stats_atol is None else stats_atol
        np.testing.assert_allclose(mean, self.ch_mean, atol=s_atol, rtol=max(rtol, 1e-4), err_msg=f"{what}: channel means")
        np.testing.assert_allclose(std, self.ch_std, atol=s_atol, rtol=max(rtol, 1e-4), err_msg=f"{what}: channel stds")
        bound = self.abs_sum * abs_sum_rtol if abs_sum_rtol is not None else (atol + rtol * np.abs(self.values).mean()) * ours.size
        assert abs(abs_sum - self.abs_sum) <= bound + 1e-12, f"{what}: sum |x| {abs_sum} vs {self.abs_sum} (bound {bound})"


class FullVectors:
    """The original vectors: every element where the file stores every element, else its 65,536-value subsample."""

    source = "full"

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._cache: dict[str, dict[str, np.ndarray]] = {}

    def arrays(self, vector: str) -> dict[str, np.ndarray]:
        if vector not in self._cache:
            data = dict(np.load(self.folder / vector))
            if vector == "vec_e_raymarch.npz":
                data |= dict(np.load(self.folder / "vec_e_raymarch_colors.npz"))
            self._cache[vector] = data
        return self._cache[vector]

    def expected(self, vector: str, name: str) -> Expected:
        data, axis = self.arrays(vector), OUTPUTS[vector][name]
        if name in data:  # stored whole
            t = data[name]
            mean, std, abs_sum = _stats(t, axis)
            return Expected(t.shape, np.arange(t.size), t.reshape(-1), mean, std, abs_sum, axis, self.source)
        p = "sr" if name == "sr_full" else name
        return Expected(
            tuple(int(s) for s in data[f"{p}__shape"]), data[f"{p}__idx"], data[f"{p}__val"],
            data[f"{p}__ch_mean"], data[f"{p}__ch_std"], float(data[f"{p}__abs_sum"]), axis, self.source,
        )  # fmt: skip

    def compact(self, vector: str) -> dict[str, np.ndarray]:
        """This vector's compact form (what `tests/data/conformance_compact` holds)."""
        data, out = self.arrays(vector), {}
        for name in OUTPUTS[vector]:
            e = self.expected(vector, name)
            if name in data:  # stored whole: subsample it by the reference's own rule
                index = _subsample_index(e.values.size)
                values = e.values[index]
            else:
                index, values = e.index, e.values
            out |= {
                f"{name}__shape": np.asarray(e.shape, np.int64), f"{name}__idx": np.asarray(index[:COMPACT_VALUES], np.int64),
                f"{name}__val": np.asarray(values[:COMPACT_VALUES], np.float32), f"{name}__ch_mean": e.ch_mean,
                f"{name}__ch_std": e.ch_std, f"{name}__abs_sum": np.float64(e.abs_sum),
            }  # fmt: skip
        for name in KEPT.get(vector, ()):
            out[name] = data[name]
        return out


class CompactVectors:
    """The shipped compact copy."""

    source = "compact"

    def __init__(self, folder: Path = COMPACT) -> None:
        self.folder = folder
        self._cache: dict[str, dict[str, np.ndarray]] = {}

    def arrays(self, vector: str) -> dict[str, np.ndarray]:
        if vector not in self._cache:
            self._cache[vector] = dict(np.load(self.folder / vector))
        return self._cache[vector]

    def expected(self, vector: str, name: str) -> Expected:
        d = self.arrays(vector)
        return Expected(
            tuple(int(s) for s in d[f"{name}__shape"]), d[f"{name}__idx"], d[f"{name}__val"], d[f"{name}__ch_mean"],
            d[f"{name}__ch_std"], float(d[f"{name}__abs_sum"]), OUTPUTS[vector][name], self.source,
        )  # fmt: skip


class Conformance:
    """Everything the conformance tests read: weights rule, JSON files, inputs and expected outputs."""

    def __init__(self, full: Path | None = None, compact: Path = COMPACT) -> None:
        self.compact = CompactVectors(compact)
        self.full = FullVectors(full) if full is not None else None
        self.manifest = json.loads((compact / "manifest.json").read_text())

    @classmethod
    def locate(cls) -> Conformance:
        root = Path(os.environ.get("LIVE3DPE_REFERENCE", REPO.parent / "shared" / "reference")) / "conformance"
        return cls(root if (root / "vectors.json").is_file() else None)

    @property
    def references(self) -> list:
        return [r for r in (self.full, self.compact) if r is not None]

    def json(self, name: str) -> dict:
        return json.loads((self.compact.folder / name).read_text())

    def synth(self) -> ModuleType:
        spec = importlib.util.spec_from_file_location("synth_weights", self.compact.folder / "synth_weights.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    def tolerance(self, vector: str, name: str | None = None) -> dict:
        desc = self.json("vectors.json")["descriptions"][vector]
        return desc["subsampled_tensors"][name][1] if name is not None else desc["tolerance"]

    def inputs(self, vector: str) -> dict[str, np.ndarray]:
        """Regenerated inputs, each checked against the sha256 of the original array."""
        arrays = regenerate_inputs(vector)
        for name, array in arrays.items():
            expected = self.manifest["inputs"][f"{vector}:{name}"]
            assert sha256(array) == expected, f"regenerated {vector}:{name} differs from the original (numpy's generator stream changed?)"
        return arrays

    def kept(self, vector: str, name: str) -> np.ndarray:
        return self.compact.arrays(vector)[name]

    def check(self, vector: str, name: str, ours, atol: float, rtol: float = 0.0, stats_atol: float | None = None, abs_sum_rtol: float | None = None) -> None:
        """Compare `ours` with this output of `vector` in every reference present."""
        ours = ours.detach().double().numpy() if hasattr(ours, "detach") else np.asarray(ours)
        for ref in self.references:
            ref.expected(vector, name).check(ours, f"{vector}:{name}", atol, rtol, stats_atol, abs_sum_rtol)


def build_compact(full: Path, out: Path = COMPACT) -> None:
    """Write the compact copy of the full vectors in `full` into `out`."""
    vectors = FullVectors(full)
    out.mkdir(parents=True, exist_ok=True)
    for name in COPIED:
        (out / name).write_bytes((full / name).read_bytes())
    (out / LAYOUT).write_bytes((full.parent / LAYOUT).read_bytes())
    manifest = {"compact_values": COMPACT_VALUES, "inputs": {}, "source_sha256": {}}
    for vector in OUTPUTS:
        for name, array in regenerate_inputs(vector).items():
            original = vectors.arrays(vector)[name]
            assert np.array_equal(original, array), f"recipe for {vector}:{name} does not reproduce the stored input"
            manifest["inputs"][f"{vector}:{name}"] = sha256(original)
        np.savez_compressed(out / vector, **vectors.compact(vector))
    for path in sorted(full.glob("*.npz")):
        manifest["source_sha256"][path.name] = hashlib.sha256(path.read_bytes()).hexdigest()
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO.parent / "shared" / "reference" / "conformance"
    build_compact(source)
    print(f"wrote {COMPACT} ({sum(p.stat().st_size for p in COMPACT.iterdir()) / 1e6:.2f} MB)")
