"""Render a synthetic person from any 25-value camera: image, depth along the ray, mask, parts.

Shading is Lambert + ambient under the person's world-fixed light (plus the material
switches a style sets), so appearance is consistent across views. Images are
supersampled (odd factors, so the centre sub-sample of each pixel is exactly the pixel's
ray and depth/mask/part stay exact).
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from live3dpe.synth.expression import Expression, posed_vertices
from live3dpe.synth.head import Head, build_head
from live3dpe.synth.landmarks import Part
from live3dpe.synth.mesh import vertex_normals
from live3dpe.synth.person import Person
from live3dpe.synth.raster import Fragments, camera_origin, rasterize
from live3dpe.synth.texture import paint_face


@dataclass(frozen=True)
class RenderResult:
    """image uint8[H, W, 3] RGB; depth float32[H, W] distance along each pixel's ray
    (inf on the background); mask bool[H, W]; part int8[H, W] (`Part`, -1 = background)."""

    image: np.ndarray
    depth: np.ndarray
    mask: np.ndarray
    part: np.ndarray


@dataclass(frozen=True)
class Scene:
    """What is built once per (person, style): geometry and the painted face map."""

    person: Person
    head: Head
    texture: np.ndarray  # float32 [S, S, 3]
    two_sided: np.ndarray  # bool [T]


_SCENES: OrderedDict[tuple[int, int], tuple[Person, Scene]] = OrderedDict()
_CACHE_SIZE = 16


_HEADS: OrderedDict[int, tuple[object, Head]] = OrderedDict()


def _head_for(shape) -> Head:
    """Heads depend only on the shape; an appearance-only style reuses the original's."""
    hit = _HEADS.get(id(shape))
    if hit is not None and hit[0] is shape:
        return hit[1]
    head = build_head(shape)
    _HEADS[id(shape)] = (shape, head)
    while len(_HEADS) > _CACHE_SIZE:
        _HEADS.popitem(last=False)
    return head


def build_scene(person: Person, texture_size: int = 512) -> Scene:
    head = _head_for(person.shape)
    texture = paint_face(person.appearance, texture_size, person.seed)
    return Scene(person, head, texture, np.isin(head.mesh.part, [Part.HAIR, Part.MOUTH]))


def scene_for(person: Person, texture_size: int = 512) -> Scene:
    """`build_scene` with a small identity-keyed cache (people are immutable)."""
    key = (id(person), texture_size)
    hit = _SCENES.get(key)
    if hit is not None and hit[0] is person:
        _SCENES.move_to_end(key)
        return hit[1]
    scene = build_scene(person, texture_size)
    _SCENES[key] = (person, scene)
    while len(_SCENES) > _CACHE_SIZE:
        _SCENES.popitem(last=False)
    return scene


def _sample_texture(tex: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinear lookup, edges clamped. tex [S, S, 3], uv [N, 2] in [0, 1] -> [N, 3]."""
    S = tex.shape[0]
    xy = np.clip(uv * S - 0.5, 0, S - 1)
    i0 = np.minimum(xy.astype(np.int64), S - 2)
    f = (xy - i0)[..., None]
    x0, y0 = i0[:, 0], i0[:, 1]
    top = tex[y0, x0] * (1 - f[:, 0]) + tex[y0, x0 + 1] * f[:, 0]
    bottom = tex[y0 + 1, x0] * (1 - f[:, 0]) + tex[y0 + 1, x0 + 1] * f[:, 0]
    return top * (1 - f[:, 1]) + bottom * f[:, 1]


def _solid_noise(p: np.ndarray, freq: float, octaves: int = 3) -> np.ndarray:
    """Cheap smooth pseudo-noise of 3D points (sum of rotated sinusoids). [N, 3] -> [N]."""
    dirs = np.array([[0.8, 0.5, 0.3], [-0.3, 0.9, 0.4], [0.5, -0.2, 0.85], [0.1, 0.4, -0.9]])
    out = np.zeros(len(p))
    for o in range(octaves):
        f = freq * 2.1**o
        out += np.sin(p @ dirs.T * f + np.arange(4) * 1.7 + o).sum(1) / 2**o
    return out / 4


def _albedo(scene: Scene, frags: Fragments, sel: np.ndarray, part: np.ndarray) -> np.ndarray:
    app = scene.person.appearance
    mesh = scene.head.mesh
    tri = mesh.triangles[frags.triangle[sel]]
    b = frags.bary[sel]
    colours = {
        Part.SKIN: app.skin,
        Part.HAIR: app.hair,
        Part.MOUTH: app.mouth,
        Part.CLOTH: app.cloth,
        Part.PROP: app.prop,
    }
    albedo = np.zeros((len(tri), 3))
    for p, c in colours.items():
        albedo[part == p] = c
    face = part == Part.FACE
    if face.any():
        uv = np.einsum("nk,nkj->nj", b[face], mesh.uv[tri[face]])
        albedo[face] = _sample_texture(scene.texture, uv)
    hair = part == Part.HAIR
    if hair.any():
        strand = np.einsum("nk,nk->n", b[hair], mesh.strand[tri[hair]])
        rest = np.einsum("nk,nkj->nj", b[hair], mesh.rest[tri[hair]])
        streak = 0.5 * np.sin(strand + 3 * _solid_noise(rest, 25.0, 2)) + 0.5 * np.sin(2.7 * strand + 1.3)
        albedo[hair] *= (1 + app.hair_streaks * streak)[:, None]
    if app.veins:
        rest = np.einsum("nk,nkj->nj", b, mesh.rest[tri])
        v = np.abs(np.sin(rest @ np.array([14.0, 22.0, 8.0]) + 4.0 * _solid_noise(rest, 12.0)))
        albedo *= (1 - app.veins * np.exp(-((v / 0.12) ** 2)))[:, None]
    return albedo


def _shade(scene: Scene, frags: Fragments, vertices: np.ndarray, normals: np.ndarray, origin: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Colour of every covered pixel. -> rgb float [N, 3] and the covered-pixel selector."""
    person = scene.person
    app, light = person.appearance, person.lighting
    mesh = scene.head.mesh
    sel = frags.mask
    tri_id = frags.triangle[sel]
    part = mesh.part[tri_id]
    b = frags.bary[sel]
    n = np.einsum("nk,nkj->nj", b, normals[mesh.triangles[tri_id]])
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-9)
    view = origin - frags.point[sel]
    view /= np.linalg.norm(view, axis=1, keepdims=True)
    facing = np.sum(n * view, 1)
    back = facing < 0  # inside of the hair shell
    n[back] *= -1
    albedo = _albedo(scene, frags, sel, part)
    ldir = np.asarray(light.direction)
    lambert = np.clip(n @ ldir, 0, None)
    rgb = albedo * (light.ambient + light.diffuse * lambert)[:, None] * np.asarray(light.color)
    rgb[back] *= 0.5
    if app.specular:
        h = ldir + view
        h /= np.linalg.norm(h, axis=1, keepdims=True)
        spec = app.specular * np.clip(np.sum(n * h, 1), 0, 1) ** app.shininess * (lambert > 0)
        tint = albedo * app.metallic + (1 - app.metallic)
        rgb += spec[:, None] * tint
    if app.rim:
        rim = app.rim * (1 - np.abs(facing)) ** 2
        rgb += rim[:, None] * np.asarray(app.rim_color)
    if app.posterize:
        rgb = _posterize(rgb, app.posterize)
    if app.sketch:
        rgb = _sketch(rgb, np.abs(facing), mesh.rest, mesh.triangles[tri_id], b, app.sketch)
    return rgb, sel


def _posterize(rgb: np.ndarray, palette: tuple) -> np.ndarray:
    lum = rgb @ np.array([0.3, 0.59, 0.11])
    levels = np.clip((lum / 0.9 * len(palette)).astype(int), 0, len(palette) - 1)
    return np.asarray(palette)[levels]


def _sketch(rgb, facing, rest, tris, b, strength: float) -> np.ndarray:
    """Charcoal on paper: grey tone, hatching in the shadows, dark strokes on silhouettes."""
    p = np.einsum("nk,nkj->nj", b, rest[tris])
    lum = np.clip((rgb @ np.array([0.3, 0.59, 0.11]) - 0.1) * 1.6, 0, 1)
    hatch = (np.sin((p @ np.array([1.0, 0.7, 0.4])) * 900.0) > 0.3) * np.clip(0.7 - lum, 0, 1)
    contour = np.clip((0.4 - facing) / 0.4, 0, 1) ** 2
    g = np.clip((0.25 + 0.75 * lum) * (1 - 0.6 * hatch) * (1 - 0.8 * contour), 0, 1)
    out = g[:, None] * np.array([0.95, 0.93, 0.88])
    return rgb * (1 - strength) + out * strength


def _background(person: Person, R: int) -> np.ndarray:
    t = ((np.arange(R) + 0.5) / R)[:, None, None]
    top, bottom = np.asarray(person.background[0]), np.asarray(person.background[1])
    return np.broadcast_to(top * (1 - t) + bottom * t, (R, R, 3))


def render(
    person: Person,
    label: np.ndarray,
    resolution: int = 128,
    expression: Expression | None = None,
    supersample: int = 3,
    texture_size: int | None = None,
) -> RenderResult:
    """Render one view. label [25] (any 25-value camera) -> `RenderResult` at resolution².

    supersample (odd) antialiases the image; depth, mask and part come from each pixel's
    centre ray. A style is applied beforehand: `render(style.apply(person), ...)`."""
    if supersample < 1 or supersample % 2 == 0:
        raise ValueError(f"supersample must be odd, got {supersample}")
    scene = scene_for(person, texture_size or (256 if resolution <= 128 else 512))
    label = np.asarray(label, np.float64).reshape(25)
    R = resolution * supersample
    vertices = posed_vertices(scene.head, expression)
    normals = vertex_normals(vertices, scene.head.mesh.triangles)
    frags = rasterize(vertices, scene.head.mesh.triangles, label, R, two_sided=scene.two_sided)
    rgb, sel = _shade(scene, frags, vertices, normals, camera_origin(label))
    image = _background(person, R).copy()
    image[sel] = rgb
    c = supersample // 2
    if supersample > 1:
        image = image.reshape(resolution, supersample, resolution, supersample, 3).mean((1, 3))
    centre = (slice(c, None, supersample), slice(c, None, supersample))
    tri = frags.triangle[centre]
    mask = tri >= 0
    part = np.where(mask, scene.head.mesh.part[np.maximum(tri, 0)], -1).astype(np.int8)
    return RenderResult(
        image=np.clip(np.round(image * 255), 0, 255).astype(np.uint8),
        depth=np.ascontiguousarray(frags.depth[centre]),
        mask=mask,
        part=part,
    )

