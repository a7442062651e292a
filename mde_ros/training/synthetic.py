"""Procedural RGB-D scenes with exact depth: rooms, floors, boxes, cylinders and spheres, ray-cast in numpy.

Surfaces are textured with real photographs (installed packages: scikit-learn's sample images, and
any folder of images given with `texture_dirs`, e.g. ViSP's Klimt/Solvay images) and procedural
patterns, lit by a directional light with cast shadows plus ambient light. Depth is the exact
z-distance along the optical axis of a pinhole camera, so the loss sees no sensor noise or holes.

Everything is vectorised over the pixels; one 252x336 frame takes ~0.1 s.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..geometry.intrinsics import CameraIntrinsics

_EPS = 1e-4
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".ppm", ".pgm", ".bmp")


@dataclass
class SyntheticFrame:
    rgb: np.ndarray  # HxWx3 uint8
    depth: np.ndarray  # HxW float32 metres (z along the optical axis)
    intrinsics: CameraIntrinsics


def load_textures(texture_dirs: list[Path] | None = None, size: int = 256) -> list[np.ndarray]:
    """Photographs (float32 RGB in [0, 1], ~`size` pixels) to texture surfaces with."""
    paths = []
    try:
        from importlib.resources import files

        paths += sorted(Path(str(files("sklearn.datasets").joinpath("images"))).glob("*.jpg"))
    except ModuleNotFoundError:
        pass
    for folder in texture_dirs or []:
        paths += sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in _IMAGE_SUFFIXES)
    textures = []
    for path in paths:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            continue
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0
        # Several crops per photograph: different content per surface.
        h, w = image.shape[:2]
        crop = min(h, w) // 2
        for y in range(0, h - crop + 1, max(1, (h - crop) // 2)):
            for x in range(0, w - crop + 1, max(1, (w - crop) // 2)):
                textures.append(cv2.resize(image[y : y + crop, x : x + crop], (size, size)))
    return textures


def procedural_texture(rng: np.random.Generator, size: int = 256) -> np.ndarray:
    """Noise, stripes, checkers or wood-like grain in random colours."""
    kind = rng.integers(4)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    if kind == 0:  # multi-octave value noise
        field = np.zeros((size, size), np.float32)
        for octave in (4, 8, 16, 64):
            noise = rng.random((octave, octave)).astype(np.float32)
            field += cv2.resize(noise, (size, size), interpolation=cv2.INTER_CUBIC) / octave**0.5
    elif kind == 1:
        field = (np.sin(2 * np.pi * rng.integers(2, 12) * (xx + 0.1 * rng.random() * yy)) > 0).astype(
            np.float32
        )
    elif kind == 2:
        n = rng.integers(2, 10)
        field = ((np.floor(xx * n) + np.floor(yy * n)) % 2).astype(np.float32)
    else:
        noise = cv2.resize(rng.random((8, 8)).astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
        field = np.sin(2 * np.pi * (rng.integers(5, 20) * yy + 3 * noise))
    field = (field - field.min()) / max(float(np.ptp(field)), 1e-6)
    a, b = rng.random(3).astype(np.float32), rng.random(3).astype(np.float32)
    return a[None, None, :] * field[..., None] + b[None, None, :] * (1 - field[..., None])


def _sample_wrapped(tex: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinear texture lookup at (u, v) pixel coordinates, tiling the texture."""
    size_y, size_x = tex.shape[:2]
    base = np.floor(uv)
    frac = (uv - base).astype(np.float32)
    x0, y0 = np.mod(base[:, 0].astype(np.int64), size_x), np.mod(base[:, 1].astype(np.int64), size_y)
    x1, y1 = (x0 + 1) % size_x, (y0 + 1) % size_y
    fx, fy = frac[:, :1], frac[:, 1:]
    top = tex[y0, x0] * (1 - fx) + tex[y0, x1] * fx
    bottom = tex[y1, x0] * (1 - fx) + tex[y1, x1] * fx
    return top * (1 - fy) + bottom * fy


class _Hits:
    """Nearest hit so far per ray: distance, normal, texture coordinates and surface id."""

    def __init__(self, n: int) -> None:
        self.t = np.full(n, np.inf, np.float32)
        self.normal = np.zeros((n, 3), np.float32)
        self.uv = np.zeros((n, 2), np.float32)
        self.surface = np.full(n, -1, np.int32)

    def update(self, t: np.ndarray, normal: np.ndarray, uv: np.ndarray, surface: int) -> None:
        closer = (t > _EPS) & (t < self.t)
        self.t[closer] = t[closer]
        self.normal[closer] = normal[closer]
        self.uv[closer] = uv[closer]
        self.surface[closer] = surface


def _plane(o, d, normal, offset, tangent):
    """Plane n.p = offset; uv from the tangent and n x tangent."""
    denom = d @ normal
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (offset - o @ normal) / denom
    t = np.where(np.abs(denom) > 1e-8, t, np.inf)
    p = o + t[:, None] * d
    bitangent = np.cross(normal, tangent)
    uv = np.stack([p @ tangent, p @ bitangent], 1)
    return t, np.broadcast_to(normal, d.shape), uv


def _box(o, d, centre, half, yaw):
    c, s = np.cos(yaw), np.sin(yaw)
    rot = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]], np.float32)  # local -> world
    ol, dl = (o - centre) @ rot, d @ rot
    with np.errstate(divide="ignore", invalid="ignore"):
        t1, t2 = (-half - ol) / dl, (half - ol) / dl
    near, far = np.minimum(t1, t2), np.maximum(t1, t2)
    near = np.nan_to_num(near, nan=-np.inf)
    far = np.nan_to_num(far, nan=np.inf)
    tmin, tmax = near.max(1), far.min(1)
    hit = (tmax >= tmin) & (tmin > _EPS)
    t = np.where(hit, tmin, np.inf)
    axis = near.argmax(1)
    sign = -np.sign(dl[np.arange(len(d)), axis])
    local_n = np.zeros_like(dl)
    local_n[np.arange(len(d)), axis] = sign
    p = ol + np.where(np.isfinite(t), t, 0)[:, None] * dl
    uv = np.where(
        (axis == 0)[:, None], p[:, [2, 1]], np.where((axis == 1)[:, None], p[:, [0, 2]], p[:, [0, 1]])
    )
    return t, local_n @ rot.T, uv


def _cylinder(o, d, centre, radius, height):
    """Vertical cylinder standing on y = centre[1], with a top cap."""
    ox, oz = o[:, 0] - centre[0], o[:, 2] - centre[2]
    a = d[:, 0] ** 2 + d[:, 2] ** 2
    b = 2 * (ox * d[:, 0] + oz * d[:, 2])
    c = ox**2 + oz**2 - radius**2
    disc = b * b - 4 * a * c
    with np.errstate(invalid="ignore", divide="ignore"):
        t = (-b - np.sqrt(disc)) / (2 * a)
    y = o[:, 1] + t * d[:, 1]
    side = (disc > 0) & (t > _EPS) & (y >= centre[1]) & (y <= centre[1] + height)
    t = np.where(side, t, np.inf)
    px, pz = ox + np.nan_to_num(t, posinf=0) * d[:, 0], oz + np.nan_to_num(t, posinf=0) * d[:, 2]
    normal = np.stack([px / radius, np.zeros_like(px), pz / radius], 1)
    uv = np.stack([np.arctan2(pz, px) * radius, y - centre[1]], 1)
    # top cap
    with np.errstate(divide="ignore", invalid="ignore"):
        tc = (centre[1] + height - o[:, 1]) / d[:, 1]
    cx, cz = ox + np.nan_to_num(tc) * d[:, 0], oz + np.nan_to_num(tc) * d[:, 2]
    cap = (tc > _EPS) & (cx**2 + cz**2 <= radius**2) & (tc < t)
    t = np.where(cap, tc, t)
    normal[cap] = (0, 1, 0)
    uv[cap] = np.stack([cx, cz], 1)[cap]
    return t.astype(np.float32), normal, uv


def _sphere(o, d, centre, radius):
    oc = o - centre
    a = (d * d).sum(1)
    b = 2 * (oc * d).sum(1)
    c = (oc * oc).sum(1) - radius**2
    disc = b * b - 4 * a * c
    with np.errstate(invalid="ignore"):
        t = (-b - np.sqrt(disc)) / (2 * a)
    t = np.where((disc > 0) & (t > _EPS), t, np.inf)
    p = oc + np.nan_to_num(t, posinf=0)[:, None] * d
    normal = p / radius
    uv = np.stack(
        [np.arctan2(p[:, 2], p[:, 0]) * radius, np.arccos(np.clip(normal[:, 1], -1, 1)) * radius], 1
    )
    return t.astype(np.float32), normal, uv


# Scene kinds (default probabilities):
#   room      closed room with primitives, camera 0.2-1.8 m, pitched down (the original generator)
#   backdrop  near-level camera, objects and shelves (thin uprights and boards) before a wall 3-12 m away
#   open      outdoor-like: ground plane, far backdrop 15-80 m, no ceiling, scattered objects and poles
#   closeup   an object 0.25-1.2 m from the camera filling much of the view, background behind it
LAYOUTS = {"room": 0.3, "backdrop": 0.35, "open": 0.2, "closeup": 0.15}


def _shelf(rng, x, z, yaw, height) -> list:
    """Shelving unit: four thin uprights and 2-5 boards (thin structures with depth gaps between)."""
    width, depth = rng.uniform(0.6, 2.0), rng.uniform(0.25, 0.6)
    post = rng.uniform(0.012, 0.035)
    c, s = np.cos(yaw), np.sin(yaw)
    parts = []
    for dx in (-width / 2, width / 2):
        for dz in (-depth / 2, depth / 2):
            px, pz = x + c * dx + s * dz, z - s * dx + c * dz
            parts.append(
                (
                    "box",
                    np.array([px, height / 2, pz], np.float32),
                    np.array([post, height / 2, post], np.float32),
                    yaw,
                )
            )
    for level in np.sort(rng.uniform(0.05, 0.95, rng.integers(2, 6))) * height:
        half = np.array([width / 2, rng.uniform(0.008, 0.02), depth / 2], np.float32)
        parts.append(("box", np.array([x, level, z], np.float32), half, yaw))
    return parts


def _rods(rng, x, z, count: int) -> list:
    """Thin poles, legs and wires (1-4 cm), standing, leaning or horizontal."""
    rods = []
    for _ in range(count):
        r = rng.uniform(0.006, 0.02)
        length = rng.uniform(0.4, 2.5)
        px, pz = x + rng.normal(0, 0.6), z + rng.normal(0, 0.6)
        if rng.random() < 0.6:
            rods.append(("cylinder", np.array([px, 0, pz], np.float32), r, length))
        else:  # a horizontal bar at some height
            half = np.array([length / 2, r, r], np.float32)
            rods.append(
                ("box", np.array([px, rng.uniform(0.2, 1.8), pz], np.float32), half, rng.uniform(0, np.pi))
            )
    return rods


# Camera pitch (down > 0, radians) and height (m) ranges per layout.
_CAMERA = {
    "room": ((-0.1, 0.8), (0.2, 1.8)),
    "backdrop": ((-0.15, 0.4), (0.4, 2.0)),
    "open": ((-0.15, 0.3), (0.3, 3.0)),
    "closeup": ((-0.1, 0.9), (0.3, 1.6)),
}


def _rotation(pitch: float, roll: float, yaw: float) -> np.ndarray:
    cp, sp, cr, sr, cy, sy = (
        np.cos(pitch),
        np.sin(pitch),
        np.cos(roll),
        np.sin(roll),
        np.cos(yaw),
        np.sin(yaw),
    )
    r_pitch = np.array([[1, 0, 0], [0, cp, sp], [0, -sp, cp]])
    r_roll = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    r_yaw = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    flip = np.diag([1.0, -1.0, 1.0])  # camera y down -> world y up
    return (r_yaw @ r_pitch @ r_roll @ flip).astype(np.float32)


def _box_room(width: float, depth: float, height: float) -> list:
    """Floor, ceiling, side walls at +-width, back wall at depth, a wall 1 m behind the camera."""
    return [
        ((0, 1, 0), 0.0, (1, 0, 0), 1.0),
        ((0, -1, 0), -height, (1, 0, 0), 1.0),
        ((1, 0, 0), -width, (0, 0, 1), 1.0),
        ((-1, 0, 0), -width, (0, 0, 1), 1.0),
        ((0, 0, -1), -depth, (1, 0, 0), 1.0),
        ((0, 0, 1), -1.0, (1, 0, 0), 1.0),
    ]


def _bounds(obj) -> tuple[np.ndarray, float]:
    """Centre and radius of a sphere enclosing a primitive."""
    if obj[0] == "box":
        return obj[1], float(np.linalg.norm(obj[2]))
    if obj[0] == "cylinder":
        return obj[1] + np.array([0, obj[3] / 2, 0], np.float32), float(np.hypot(obj[2], obj[3] / 2))
    return obj[1], float(obj[2])


def _clear_of_camera(objects: list, origin: np.ndarray, margin: float = 0.2) -> list:
    """Drop primitives the camera would be inside of or pressed against."""
    kept = []
    for obj in objects:
        centre, radius = _bounds(obj)
        if np.linalg.norm(centre - origin) > radius + margin:
            kept.append(obj)
    return kept


class SceneGenerator:
    """Random indoor-like and outdoor-like scenes; `frame(rng)` renders one."""

    def __init__(
        self,
        width: int = 336,
        height: int = 252,
        texture_dirs: list[Path] | None = None,
        layouts: dict[str, float] | None = None,
    ) -> None:
        self.width, self.height = width, height
        self.photos = load_textures(texture_dirs)
        # Scene kinds and their probabilities; {"room": 1.0} is the generator the first default used.
        self.layouts = dict(layouts or LAYOUTS)
        unknown = set(self.layouts) - set(LAYOUTS)
        if unknown:
            raise ValueError(f"unknown scene layouts {sorted(unknown)}; known: {sorted(LAYOUTS)}")

    def _texture(self, rng: np.random.Generator) -> np.ndarray:
        if self.photos and rng.random() < 0.7:
            tex = self.photos[rng.integers(len(self.photos))]
            return np.clip(tex * rng.uniform(0.6, 1.3, 3).astype(np.float32), 0, 1)
        return procedural_texture(rng)

    def _objects(self, rng, room_w, room_d, cam_z_range, yaw):
        objects = []
        for _ in range(rng.integers(3, 14)):
            kind = rng.choice(["box", "box", "cylinder", "sphere"])
            z = rng.uniform(*cam_z_range) if rng.random() < 0.6 else rng.uniform(0.5, room_d * 0.95)
            x = np.clip(z * (np.tan(yaw) + rng.uniform(-0.5, 0.5)), -room_w * 0.9, room_w * 0.9)  # in view
            size = rng.uniform(0.1, 1.0) * (0.4 + 0.25 * z)
            if np.hypot(x, z) < 2.2 * size + 0.2:  # never around or against the camera
                continue
            if kind == "box":
                half = np.array(
                    [size * rng.uniform(0.3, 1.5), size * rng.uniform(0.3, 1.5), size * rng.uniform(0.3, 1.5)]
                )
                lift = half[1] if rng.random() < 0.8 else half[1] + rng.uniform(0, 1.5)
                objects.append(
                    (
                        "box",
                        np.array([x, lift, z], np.float32),
                        half.astype(np.float32),
                        rng.uniform(0, np.pi),
                    )
                )
            elif kind == "cylinder":
                objects.append(
                    ("cylinder", np.array([x, 0, z], np.float32), size * 0.5, size * rng.uniform(0.5, 3))
                )
            else:
                r = size * 0.5
                objects.append(
                    (
                        "sphere",
                        np.array([x, r if rng.random() < 0.8 else r + rng.uniform(0, 1.5), z], np.float32),
                        r,
                    )
                )
        return objects

    def _intersect(self, o, d, objects, hits: _Hits | None, first_id: int) -> np.ndarray:
        """Nearest object distance per ray (and record it in `hits` when given)."""
        nearest = np.full(len(d), np.inf, np.float32)
        for i, obj in enumerate(objects):
            if obj[0] == "box":
                t, n, uv = _box(o, d, obj[1], obj[2], obj[3])
            elif obj[0] == "cylinder":
                t, n, uv = _cylinder(o, d, obj[1], obj[2], obj[3])
            else:
                t, n, uv = _sphere(o, d, obj[1], obj[2])
            nearest = np.minimum(nearest, np.where(t > _EPS, t, np.inf))
            if hits is not None:
                hits.update(t, n, uv, first_id + i)
        return nearest

    def frame(self, rng: np.random.Generator) -> SyntheticFrame:
        h, w = self.height, self.width
        names = list(self.layouts)
        weights = np.array([self.layouts[n] for n in names], np.float64)
        layout = names[int(rng.choice(len(names), p=weights / weights.sum()))]
        fx = w * rng.uniform(0.7, 1.3)
        k = CameraIntrinsics(fx, fx, w / 2 + rng.normal(0, 3), h / 2 + rng.normal(0, 3), w, h)
        v, u = np.mgrid[0:h, 0:w].astype(np.float32)
        d_cam = np.stack([(u - k.cx) / k.fx, (v - k.cy) / k.fy, np.ones_like(u)], -1).reshape(-1, 3)
        # camera: y up world, looking along +z, pitched (down > 0), rolled a little; level views for
        # backdrop and open scenes (a robot or a person looking ahead), steeper ones for rooms
        pitch_range, height_range = _CAMERA[layout]
        pitch, roll, yaw = -rng.uniform(*pitch_range), rng.normal(0, 0.05), rng.uniform(-0.4, 0.4)
        world_r_cam = _rotation(pitch, roll, yaw)
        cam_height = rng.uniform(*height_range)
        origin = np.array([0, cam_height, 0], np.float32)
        d = d_cam @ world_r_cam.T
        o = np.broadcast_to(origin, d.shape)

        walls, objects = getattr(self, f"_{layout}")(rng, cam_height, yaw, origin, world_r_cam)
        hits = _Hits(len(d))
        for i, (normal, offset, tangent, _) in enumerate(walls):
            t, n, uv = _plane(o, d, np.array(normal, np.float32), offset, np.array(tangent, np.float32))
            hits.update(t.astype(np.float32), n, uv, i)
        self._intersect(o, d, objects, hits, len(walls))

        depth = (hits.t * d_cam[:, 2]).astype(np.float32)
        rgb = self._shade(rng, o, d, hits, objects, [wall[3] for wall in walls])
        depth = depth.reshape(h, w)
        depth[~np.isfinite(depth)] = np.nan
        return SyntheticFrame(self._camera_effects(rng, rgb.reshape(h, w, 3)), depth, k)

    def _room(self, rng, cam_height, yaw, origin, world_r_cam):
        room_w, room_d, room_h = rng.uniform(1.5, 8), rng.uniform(3, 20), rng.uniform(cam_height + 0.5, 5)
        walls = _box_room(room_w, room_d, room_h)
        return walls, self._objects(rng, room_w, room_d, (0.6, 3.0), yaw)

    def _backdrop(self, rng, cam_height, yaw, origin, world_r_cam):
        """Objects, a cluster of small parts (a bike, a chair) and shelves before a wall 3-12 m away."""
        back = rng.uniform(3, 12)
        room_w = rng.uniform(2, 10)
        walls = _box_room(room_w, back, rng.uniform(cam_height + 1.0, 6))
        if rng.random() < 0.5:  # no ceiling in view: a hall or a garage with a high roof
            walls = [wall for wall in walls if wall[0] != (0, -1, 0)]
        objects = []
        for _ in range(rng.integers(0, 4)):  # shelves along the back wall
            height = rng.uniform(0.8, 2.4)
            x = np.clip(back * (np.tan(yaw) + rng.uniform(-0.6, 0.6)), -room_w + 1, room_w - 1)
            objects += _shelf(rng, x, back - rng.uniform(0.3, 0.8), rng.normal(0, 0.1), height)
        # the subject: a cluster of parts (wheels, body, frame) in front of the backdrop
        z0 = rng.uniform(1.2, max(1.3, back - 1.0))
        x0 = z0 * (np.tan(yaw) + rng.uniform(-0.3, 0.3))
        objects += self._cluster(rng, x0, z0)
        objects += _rods(rng, x0, z0, int(rng.integers(0, 5)))
        objects += self._objects(rng, room_w, back, (1.0, back), yaw)[: rng.integers(0, 6)]
        return walls, _clear_of_camera(objects, origin)

    def _open(self, rng, cam_height, yaw, origin, world_r_cam):
        """Outdoor-like: ground, a far backdrop (hills, buildings, sky), objects and poles at 1-40 m."""
        far = rng.uniform(15, 80)
        walls = [((0, 1, 0), 0.0, (1, 0, 0), 1.0), ((0, 0, -1), -far, (1, 0, 0), far / 4)]
        objects = self._objects(rng, far, far, (1.0, min(40.0, far * 0.8)), yaw)
        for _ in range(rng.integers(0, 4)):
            z = rng.uniform(1.5, 25)
            objects += _rods(rng, z * (np.tan(yaw) + rng.uniform(-0.5, 0.5)), z, int(rng.integers(1, 4)))
        return walls, _clear_of_camera(objects, origin)

    def _closeup(self, rng, cam_height, yaw, origin, world_r_cam):
        """One object 0.25-1.2 m in front of the lens, a room or a far background behind it."""
        if rng.random() < 0.7:
            walls, objects = self._room(rng, cam_height, yaw, origin, world_r_cam)
        else:
            walls, objects = self._backdrop(rng, cam_height, yaw, origin, world_r_cam)
        dist = rng.uniform(0.25, 1.2)
        ray = world_r_cam @ np.array([rng.normal(0, 0.15), rng.normal(0, 0.15), 1.0], np.float32)
        size = dist * rng.uniform(0.2, 0.6)  # nearest surface at 0.4-0.8 x dist
        centre = (origin + dist * ray / np.linalg.norm(ray)).astype(np.float32)
        kind = rng.integers(3)
        if kind == 0:
            half = (size * rng.uniform(0.5, 1.0, 3) / np.sqrt(3)).astype(np.float32)
            near = ("box", centre, half, rng.uniform(0, np.pi))
        elif kind == 1:
            near = ("sphere", centre, size)
        else:
            height = size * rng.uniform(1.0, 4.0)
            base = np.array([centre[0], centre[1] - height / 2, centre[2]], np.float32)
            near = ("cylinder", base, size * 0.6, height)
        return walls, [near, *_clear_of_camera(objects, origin)]

    def _cluster(self, rng, x0, z0) -> list:
        """3-10 small parts packed in a ~1.5 x 1 x 0.6 m volume: a complex object before the backdrop."""
        parts = []
        for _ in range(rng.integers(3, 11)):
            x, y, z = x0 + rng.uniform(-0.8, 0.8), rng.uniform(0.05, 1.1), z0 + rng.uniform(-0.3, 0.3)
            size = rng.uniform(0.04, 0.35)
            kind = rng.integers(3)
            if kind == 0:
                half = (size * rng.uniform(0.2, 1.5, 3)).astype(np.float32)
                parts.append(("box", np.array([x, y, z], np.float32), half, rng.uniform(0, np.pi)))
            elif kind == 1:
                parts.append(("sphere", np.array([x, y, z], np.float32), size))
            else:
                parts.append(("cylinder", np.array([x, 0, z], np.float32), size * 0.5, y + size))
        return parts

    def _shade(self, rng, o, d, hits: _Hits, objects, wall_scales: list[float]) -> np.ndarray:
        colour = np.zeros((len(d), 3), np.float32)
        n_walls = len(wall_scales)
        for surface in range(n_walls + len(objects)):
            mask = hits.surface == surface
            if not mask.any():
                continue
            tex = self._texture(rng)
            # metres per texture repeat; a far backdrop gets larger ones (hills, facades, not noise)
            if surface < n_walls:
                scale = rng.uniform(0.3, 3.0) * wall_scales[surface]
            else:
                scale = rng.uniform(0.2, 1.5)
            uv = hits.uv[mask] / scale * tex.shape[0] + rng.uniform(0, tex.shape[0], 2)
            colour[mask] = _sample_wrapped(tex, np.nan_to_num(uv))
        light = np.array([rng.uniform(-1, 1), rng.uniform(0.5, 2), rng.uniform(-1, 1)], np.float32)
        light /= np.linalg.norm(light)
        normal = hits.normal * -np.sign((hits.normal * d).sum(1, keepdims=True) + 1e-9)  # face the camera
        diffuse = np.clip(normal @ light, 0, 1)
        points = o + np.nan_to_num(hits.t, posinf=0)[:, None] * d + normal * 1e-3
        lit = diffuse > 0
        shadow = np.zeros(len(d), bool)
        shadow[lit] = np.isfinite(
            self._intersect(points[lit], np.broadcast_to(light, points[lit].shape), objects, None, 0)
        )
        ambient = rng.uniform(0.25, 0.6)
        shading = ambient + (1 - ambient) * diffuse * ~shadow
        if rng.random() < 0.5:  # a lamp at the camera: nearer is brighter, as with flash or headlights
            shading *= 1 / (1 + rng.uniform(0.0, 0.15) * np.nan_to_num(hits.t, posinf=50) ** 2) ** 0.5
        return colour * shading[:, None]

    def _camera_effects(self, rng, rgb: np.ndarray) -> np.ndarray:
        rgb = np.clip(rgb * rng.uniform(0.7, 1.5), 0, 1) ** rng.uniform(0.7, 1.4)
        if rng.random() < 0.5:  # many robot cameras (and castel) are monochrome
            rgb = np.repeat(rgb.mean(2, keepdims=True), 3, axis=2)
        if rng.random() < 0.5:
            rgb = cv2.GaussianBlur(rgb, (0, 0), rng.uniform(0.3, 1.2))
        rgb = rgb + rng.normal(0, rng.uniform(0, 0.03), rgb.shape).astype(np.float32)
        return (np.clip(rgb, 0, 1) * 255).astype(np.uint8)
