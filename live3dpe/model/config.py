"""Model presets: one dataclass, one code path.

`paper` reproduces the official 3DPE sizes (the importer maps `3dpe.pt` onto it);
`tiny` keeps the same topology with small widths and resolutions so it trains on a
2-core CPU. Spatial sizes follow from `input_resolution`: E_low/F run at 1/4 and 1/8,
E_high at 1/4, the triplane at 1/2 of the input.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RenderConfig:
    """Volume rendering settings (official `rendering_kwargs`)."""

    neural_resolution: int = 128  # rays per side before super-resolution
    output_resolution: int = 512  # after super-resolution
    coarse_samples: int = 48
    fine_samples: int = 48
    ray_start: float = 2.25
    ray_end: float = 3.3
    box_warp: float = 1.0
    camera_radius: float = 2.7
    camera_pivot: tuple[float, float, float] = (0.0, 0.0, 0.2)
    fov_deg: float = 18.837


@dataclass(frozen=True)
class ModelConfig:
    """All sizes of the editor. Field names describe the official module they size."""

    name: str = "paper"
    input_resolution: int = 512
    # triplane: 3 planes x plane_channels, at input_resolution // 2
    plane_channels: int = 32
    # E_low: ResNet-34 stem + layer1 + layer2 (no BatchNorm), ASPP, F (SegFormer)
    elow_channels: tuple[int, int] = (64, 128)
    elow_blocks: tuple[int, int] = (3, 4)
    aspp_channels: int = 256
    aspp_rates: tuple[int, int, int] = (12, 24, 36)
    f_dim: int = 1024
    f_blocks: int = 2
    f_heads: int = 4
    f_out_channels: int = 128
    # E_high
    ehigh_channels: tuple[int, int] = (64, 128)
    ehigh_extra_convs: int = 5
    # prompt side: reference encoder (MAE ViT) + single-head cross-attention (Eq. 2)
    ref_resolution: int = 224
    ref_patch: int = 16
    ref_dim: int = 768
    ref_depth: int = 12
    ref_heads: int = 12
    cross_pre_channels: int = 96
    # E_t fusion decoder (Eq. 3)
    final_dim: int = 1024
    final_heads: int = 2
    final_sr_ratio: int = 2
    final_hidden: tuple[int, int] = (256, 128)
    mlp_ratio: int = 2
    # OSG decoder and super-resolution
    decoder_hidden: int = 64
    style_dim: int = 512
    sr_channels: tuple[int, int] = (256, 128)
    render: RenderConfig = field(default_factory=RenderConfig)
    # Appearance route (0 = off, the official design): the prompt drives a colour-transform field
    # over the input (appearance.py) instead of the cross-attention, and the renderer re-projects
    # the aligned input crop, taken at `guide_resolution`, onto the learned geometry (guide.py).
    appearance_channels: int = 0
    guide_resolution: int = 0

    def __post_init__(self) -> None:
        if (self.appearance_channels > 0) != (self.guide_resolution > 0):
            raise ValueError("appearance_channels and guide_resolution go together: both > 0 (appearance route) or both 0")
        if self.guide_resolution and self.guide_resolution < self.input_resolution:
            raise ValueError(f"guide_resolution {self.guide_resolution} is below input_resolution {self.input_resolution}")

    @property
    def appearance_route(self) -> bool:
        """True when the prompt edits the input's appearance and rendering re-projects the input."""
        return self.appearance_channels > 0

    @property
    def triplane_resolution(self) -> int:
        return self.input_resolution // 2

    @property
    def triplane_channels(self) -> int:
        return 3 * self.plane_channels

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        d = dict(d)
        render = RenderConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.pop("render", {}).items()})
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - fields
        if unknown:
            raise ValueError(f"unknown ModelConfig fields: {sorted(unknown)}")
        return cls(render=render, **{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


PAPER = ModelConfig()

TINY = ModelConfig(
    name="tiny",
    input_resolution=128,
    plane_channels=16,
    elow_channels=(16, 32),
    elow_blocks=(2, 2),
    aspp_channels=64,
    f_dim=128,
    f_blocks=1,
    f_heads=2,
    f_out_channels=32,
    ehigh_channels=(16, 32),
    ehigh_extra_convs=3,
    ref_resolution=112,
    ref_patch=16,
    ref_dim=128,
    ref_depth=2,
    ref_heads=4,
    cross_pre_channels=24,
    final_dim=128,
    final_heads=2,
    final_sr_ratio=2,
    final_hidden=(64, 32),
    decoder_hidden=32,
    style_dim=64,
    sr_channels=(32, 16),
    render=RenderConfig(neural_resolution=32, output_resolution=128, coarse_samples=12, fine_samples=12),
)

# `tiny`'s network on the appearance route: what the bundled default model uses. The triplane
# only has to carry geometry (and colour where the input never saw the head); the person's
# detail comes from the 256-px input crop itself.
SMALL = dataclasses.replace(TINY, name="small", appearance_channels=32, guide_resolution=256)

PRESETS: dict[str, ModelConfig] = {"paper": PAPER, "tiny": TINY, "small": SMALL}


def get_preset(name: str) -> ModelConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}") from None
