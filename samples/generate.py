"""Deterministic generator of the bundled sample clips (H.264 + AAC in MKV, with JSON ground truth).

A fixed camera looks across a pedestrian plaza (``Camera``, ``build_scene``): people walk its paths, the light
drifts, the microphone hears the city; test clips add anomalies (``fast_mover``, ``forbidden_area``,
``large_object``, ``bang``, ``glass_break``, ``scream``, ``siren``), tampering clips (``TAMPER_CLIPS``) a black,
covered, defocused or moved picture. The scene, the anomalies and how their ground truth is drawn:
samples/README.md.

Everything is derived from each clip's seed, so the same command always writes the same bytes (libx264 and the
Matroska muxer in bitexact mode). Usage::

    python samples/generate.py --out samples/            # all clips (and the extra normal footage: not committed)
    python samples/generate.py --out samples/ --only test_2
    python samples/generate.py --out samples/ --only tamper_blackout --only tamper_moved   # tampering clips

Library use: ``render_clip(CLIPS_BY_NAME["test_1"], Path("test_1.mkv"))``, or ``build_scene`` +
``render_frames`` + ``render_audio`` for the raw RGB frames and float samples.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

WIDTH, HEIGHT, FPS = 640, 360, 25
SAMPLE_RATE = 16_000
GENERATOR_VERSION = 1

# x264: no B-frames (zero reorder delay), a closed 2 s GOP so that RTSP clients join quickly, and no sliced
# threads (over RTSP each slice would arrive as its own frame with a repeated pts; see FACTS.md).
X264_PARAMS = "bframes=0:keyint=50:min-keyint=50:scenecut=0:sliced-threads=0"
VIDEO_CRF = 26
VIDEO_PRESET = "faster"
AUDIO_BITRATE = 32_000
AAC_FRAME = 1024

Rgb = tuple[float, float, float]


# --------------------------------------------------------------------------------------- clip specifications
@dataclass(frozen=True)
class AnomalySpec:
    """One scripted anomaly. ``start`` is where its ground-truth interval begins (seconds, frame aligned)."""

    kind: str
    variant: str
    start: float


@dataclass(frozen=True)
class TamperSpec:
    """Someone tampers with the camera from ``start`` to ``end`` (seconds); ``kind`` as ``pipeline.tamper`` names
    it: blackout, covered, defocus, moved."""

    kind: str
    start: float
    end: float


@dataclass(frozen=True)
class ClipSpec:
    name: str
    duration_s: float
    seed: int
    anomalies: tuple[AnomalySpec, ...] = ()
    tamper: TamperSpec | None = None

    @property
    def n_frames(self) -> int:
        return int(round(self.duration_s * FPS))

    @property
    def n_samples(self) -> int:
        return int(round(self.duration_s * SAMPLE_RATE))


CLIPS: tuple[ClipSpec, ...] = (
    ClipSpec("normal_train_1", 120.0, 1101),
    ClipSpec("normal_train_2", 120.0, 1102),
    ClipSpec("normal_eval", 40.0, 1153),
    ClipSpec(
        "test_1",
        45.0,
        2101,
        (
            AnomalySpec("fast_mover", "bicycle", 10.0),
            AnomalySpec("scream", "scream", 19.6),
            AnomalySpec("forbidden_area", "walk_lawn", 28.4),
            AnomalySpec("bang", "bang", 39.0),
        ),
    ),
    ClipSpec(
        "test_2",
        45.0,
        2122,
        (
            AnomalySpec("large_object", "van", 9.0),
            AnomalySpec("glass_break", "glass_break", 23.0),
            AnomalySpec("fast_mover", "car_backfire", 31.8),
            AnomalySpec("bang", "bang", 42.0),
        ),
    ),
    ClipSpec(
        "test_3",
        45.0,
        2143,
        (
            AnomalySpec("fast_mover", "scooter", 8.8),
            AnomalySpec("siren", "siren", 21.0),
            AnomalySpec("forbidden_area", "run_scream", 31.6),
            AnomalySpec("glass_break", "glass_break", 41.6),
        ),
    ),
)
# More normal footage for the default model package (`make model`): six more 2-minute clips of the same plaza,
# made on demand and not committed (each is the same bytes every time from its seed; model.json names their sha256).
# 16 min of normal life instead of the committed 4: people take every route often enough that each patch of the
# picture has seen its share of walkers (with 4 min, a walker on a rarely taken route scored as high as a trespasser).
EXTRA_NORMAL_CLIPS: tuple[ClipSpec, ...] = tuple(
    ClipSpec(f"normal_train_{i}", 120.0, 1100 + i) for i in range(3, 9)
)
# Camera tampering, one clip per kind: normal plaza life, then the camera is blinded, covered, defocused or
# knocked aside (that one stays moved to the end). Kept short: the tampering checks learn the normal view in
# the first 3 s. Not used for training.
TAMPER_CLIPS: tuple[ClipSpec, ...] = (
    ClipSpec("tamper_blackout", 16.0, 3101, tamper=TamperSpec("blackout", 6.0, 11.0)),
    ClipSpec("tamper_covered", 16.0, 3102, tamper=TamperSpec("covered", 6.0, 11.0)),
    ClipSpec("tamper_defocus", 16.0, 3103, tamper=TamperSpec("defocus", 6.0, 11.0)),
    ClipSpec("tamper_moved", 16.0, 3104, tamper=TamperSpec("moved", 6.0, 16.0)),
)
CLIPS_BY_NAME = {c.name: c for c in (*CLIPS, *EXTRA_NORMAL_CLIPS, *TAMPER_CLIPS)}


# ----------------------------------------------------------------------------------------- camera and layout
@dataclass(frozen=True)
class Camera:
    """Pinhole camera 6 m up with a level optical axis; pixel edges at integers, pixel centres at +0.5."""

    focal: float = 400.0
    horizon: float = 40.0
    height: float = 6.0
    cx: float = WIDTH / 2

    def project(self, x: np.ndarray | float, z: np.ndarray | float, h: np.ndarray | float = 0.0):
        """Ground point (x, z) at height h (metres) -> image (u, v) in pixels."""
        return self.cx + self.focal * np.asarray(x) / z, self.horizon + self.focal * (
            self.height - np.asarray(h)
        ) / z

    def scale(self, z: float) -> float:
        """Pixels per metre at depth z."""
        return self.focal / z


CAM = Camera()
BUILDING_Z = 40.0
PROM_Z = (13.4, 18.6)
FACADE_WALK_Z = 33.4
AXIS_X = (-2.6, 1.6)
DIAG_A, DIAG_B, DIAG_HALF_WIDTH = (-3.2, 3.0), (-9.9, 14.8), 1.0
DOOR_X, DOOR_W, DOOR_H = -0.5, 2.2, 2.6
SUN = (0.55, -0.35)  # ground shadow offset per metre of height (sun behind-left of the camera)
FORBIDDEN = {  # (x0, x1, z0, z1): lawns and planted beds where nobody walks
    "lawn_front_right": (2.0, 60.0, 2.0, 13.2),
    "planter_back_left": (-60.0, -3.0, 19.6, 33.2),
    "lawn_back_right": (2.0, 60.0, 19.6, 33.2),
}
MIC = (0.0, 6.0, 0.0)  # x, height, z of the microphone (at the camera)
SPEED_OF_SOUND = 343.0


def x_offscreen(z: float, margin: float = 1.0) -> float:
    """|X| beyond which something of half-width ``margin`` at depth z is out of view."""
    return (CAM.cx / CAM.focal) * z + margin


def in_forbidden(x: np.ndarray, z: np.ndarray) -> np.ndarray:
    inside = np.zeros(np.shape(x), bool)
    for x0, x1, z0, z1 in FORBIDDEN.values():
        inside |= (x >= x0) & (x <= x1) & (z >= z0) & (z <= z1)
    return inside


# ------------------------------------------------------------------------------------- anti-aliased painting
class Painter:
    """Paints anti-aliased shapes into a float RGB image region (optionally tracking premultiplied alpha).

    Coordinates are global image pixels; ``x0``/``y0`` say where the region sits in the image.
    """

    def __init__(self, rgb: np.ndarray, alpha: np.ndarray | None = None, x0: int = 0, y0: int = 0) -> None:
        self.rgb, self.alpha, self.x0, self.y0 = rgb, alpha, x0, y0
        self.h, self.w = rgb.shape[:2]

    def _window(self, xmin: float, xmax: float, ymin: float, ymax: float):
        j0 = max(int(math.floor(xmin)) - self.x0, 0)
        j1 = min(int(math.ceil(xmax)) + 1 - self.x0, self.w)
        i0 = max(int(math.floor(ymin)) - self.y0, 0)
        i1 = min(int(math.ceil(ymax)) + 1 - self.y0, self.h)
        if j0 >= j1 or i0 >= i1:
            return None
        px = (np.arange(j0, j1, dtype=np.float32) + (self.x0 + 0.5))[None, :]
        py = (np.arange(i0, i1, dtype=np.float32) + (self.y0 + 0.5))[:, None]
        return (slice(i0, i1), slice(j0, j1)), px, py

    def _paint(self, sl, cov: np.ndarray, colour: Rgb, opacity: float) -> None:
        a = cov * opacity if opacity != 1.0 else cov
        region = self.rgb[sl]
        region += a[..., None] * (np.asarray(colour, np.float32) - region)
        if self.alpha is not None:
            self.alpha[sl] += a * (1.0 - self.alpha[sl])

    def _shade(self, sl, cov: np.ndarray, factor: float, opacity: float) -> None:
        self.rgb[sl] *= (1.0 - cov * (opacity * (1.0 - factor)))[..., None]

    @staticmethod
    def _capsule_cov(px, py, ax, ay, bx, by, r):
        bax, bay = bx - ax, by - ay
        pax, pay = px - ax, py - ay
        hh = np.clip((pax * bax + pay * bay) / (bax * bax + bay * bay + 1e-9), 0.0, 1.0)
        d = np.hypot(pax - bax * hh, pay - bay * hh) - r
        cov = np.clip(0.5 - d, 0.0, 1.0)
        if r < 0.5:  # sub-pixel width: keep the integrated intensity right
            cov *= 2 * r / (r + 0.5)
        return cov

    def capsule(
        self, ax, ay, bx, by, r, colour: Rgb, opacity: float = 1.0, shade: float | None = None
    ) -> None:
        win = self._window(min(ax, bx) - r - 1, max(ax, bx) + r + 1, min(ay, by) - r - 1, max(ay, by) + r + 1)
        if win is None:
            return
        sl, px, py = win
        cov = self._capsule_cov(px, py, ax, ay, bx, by, r)
        if shade is None:
            self._paint(sl, cov, colour, opacity)
        else:
            self._shade(sl, cov, shade, opacity)

    @staticmethod
    def _ellipse_d(px, py, cx, cy, rx, ry):
        dx, dy = (px - cx) / rx, (py - cy) / ry
        k = np.sqrt(dx * dx + dy * dy)
        grad = np.sqrt((dx / rx) ** 2 + (dy / ry) ** 2)
        return np.where(k > 1e-3, (k - 1.0) * k / np.maximum(grad, 1e-6), -min(rx, ry))

    def ellipse(self, cx, cy, rx, ry, colour: Rgb, opacity: float = 1.0, shade: float | None = None) -> None:
        rx, ry = max(rx, 0.3), max(ry, 0.3)
        win = self._window(cx - rx - 1, cx + rx + 1, cy - ry - 1, cy + ry + 1)
        if win is None:
            return
        sl, px, py = win
        cov = np.clip(0.5 - self._ellipse_d(px, py, cx, cy, rx, ry), 0.0, 1.0)
        if shade is None:
            self._paint(sl, cov, colour, opacity)
        else:
            self._shade(sl, cov, shade, opacity)

    def ring(self, cx, cy, rx, ry, thickness, colour: Rgb, opacity: float = 1.0) -> None:
        rx, ry = max(rx, 0.3), max(ry, 0.3)
        win = self._window(
            cx - rx - thickness - 1, cx + rx + thickness + 1, cy - ry - thickness - 1, cy + ry + thickness + 1
        )
        if win is None:
            return
        sl, px, py = win
        d = np.abs(self._ellipse_d(px, py, cx, cy, rx, ry)) - thickness / 2
        self._paint(sl, np.clip(0.5 - d, 0.0, 1.0), colour, opacity)

    def polygon(self, pts: np.ndarray, colour: Rgb, opacity: float = 1.0, shade: float | None = None) -> None:
        """Convex polygon, vertices in either winding."""
        pts = np.asarray(pts, np.float64)
        win = self._window(pts[:, 0].min() - 1, pts[:, 0].max() + 1, pts[:, 1].min() - 1, pts[:, 1].max() + 1)
        if win is None:
            return
        sl, px, py = win
        nxt = np.roll(pts, -1, axis=0)
        area = np.sum(pts[:, 0] * nxt[:, 1] - nxt[:, 0] * pts[:, 1])
        sign = 1.0 if area > 0 else -1.0
        d = None
        for (ax, ay), (bx, by) in zip(pts, nxt, strict=True):
            ex, ey = bx - ax, by - ay
            length = math.hypot(ex, ey)
            if length < 1e-9:
                continue
            # outward normal for counter-clockwise (in image coordinates, y down) = (ey, -ex) * sign
            nx, ny = sign * ey / length, -sign * ex / length
            di = (px - ax) * nx + (py - ay) * ny
            d = di if d is None else np.maximum(d, di)
        if d is None:
            return
        cov = np.clip(0.5 - d, 0.0, 1.0)
        if shade is None:
            self._paint(sl, cov, colour, opacity)
        else:
            self._shade(sl, cov, shade, opacity)


def _mul(c: Rgb, k: float) -> Rgb:
    return (min(c[0] * k, 255.0), min(c[1] * k, 255.0), min(c[2] * k, 255.0))


def draw_box(p: Painter, x0, x1, z0, z1, h0, h1, colour: Rgb, top: Rgb | None = None, opacity: float = 1.0):
    """An axis-aligned box on the ground plane: its top, near face and the side face the camera can see."""
    faces = []
    if h1 < CAM.height:
        faces.append(([(x0, z0, h1), (x1, z0, h1), (x1, z1, h1), (x0, z1, h1)], top or _mul(colour, 1.12)))
    if x0 > 0:
        faces.append(([(x0, z0, h0), (x0, z1, h0), (x0, z1, h1), (x0, z0, h1)], _mul(colour, 0.78)))
    if x1 < 0:
        faces.append(([(x1, z0, h0), (x1, z1, h0), (x1, z1, h1), (x1, z0, h1)], _mul(colour, 0.78)))
    faces.append(([(x0, z0, h0), (x1, z0, h0), (x1, z0, h1), (x0, z0, h1)], colour))
    for corners, col in faces:
        xs = np.array([c[0] for c in corners])
        zs = np.array([c[1] for c in corners])
        hs = np.array([c[2] for c in corners])
        u, v = CAM.project(xs, zs, hs)
        p.polygon(np.stack([u, v], axis=1), col, opacity)


def _box_bbox(x0, x1, z0, z1, h0, h1) -> tuple[float, float, float, float]:
    xs = np.array([x0, x1, x0, x1] * 2)
    zs = np.array([z0, z0, z1, z1] * 2)
    hs = np.array([h0] * 4 + [h1] * 4)
    u, v = CAM.project(xs, zs, hs)
    return float(u.min()), float(v.min()), float(u.max()), float(v.max())


# ---------------------------------------------------------------------------------------- motion along paths
@dataclass
class Track:
    """Motion along a ground polyline: s(t) is piecewise linear and never decreases."""

    pts: np.ndarray  # (n, 2) X, Z in metres
    t_knots: np.ndarray
    s_knots: np.ndarray
    cum: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        seg = np.hypot(*np.diff(self.pts, axis=0).T)
        self.cum = np.concatenate([[0.0], np.cumsum(seg)])

    @property
    def length(self) -> float:
        return float(self.cum[-1])

    @property
    def t_start(self) -> float:
        return float(self.t_knots[0])

    @property
    def t_end(self) -> float:
        return float(self.t_knots[-1])

    def shifted(self, dt: float) -> Track:
        return Track(self.pts, self.t_knots + dt, self.s_knots)

    def s_at(self, t):
        return np.interp(t, self.t_knots, self.s_knots)

    def state(self, t):
        """(x, z, hx, hz, s) at time(s) t; outside [t_start, t_end] the end points are held."""
        s = self.s_at(t)
        x = np.interp(s, self.cum, self.pts[:, 0])
        z = np.interp(s, self.cum, self.pts[:, 1])
        idx = np.clip(np.searchsorted(self.cum, s, side="right") - 1, 0, len(self.pts) - 2)
        d = self.pts[idx + 1] - self.pts[idx]
        n = np.hypot(d[..., 0], d[..., 1]) + 1e-9
        return x, z, d[..., 0] / n, d[..., 1] / n, s

    @staticmethod
    def constant(pts, t0: float, speed: float, pause_at: float | None = None, pause_s: float = 0.0) -> Track:
        pts = np.asarray(pts, np.float64)
        length = float(np.sum(np.hypot(*np.diff(pts, axis=0).T)))
        if pause_at is None or pause_s <= 0:
            return Track(pts, np.array([t0, t0 + length / speed]), np.array([0.0, length]))
        s1 = pause_at * length
        t1 = t0 + s1 / speed
        return Track(
            pts,
            np.array([t0, t1, t1 + pause_s, t1 + pause_s + (length - s1) / speed]),
            np.array([0.0, s1, s1, length]),
        )

    @staticmethod
    def segment_speeds(pts, t0: float, speeds: Sequence[float]) -> Track:
        pts = np.asarray(pts, np.float64)
        seg = np.hypot(*np.diff(pts, axis=0).T)
        t = t0 + np.concatenate([[0.0], np.cumsum(seg / np.asarray(speeds))])
        return Track(pts, t, np.concatenate([[0.0], np.cumsum(seg)]))

    @staticmethod
    def kinematic(pts, t0: float, v0: float, phases: Sequence[tuple[float, float]]) -> Track:
        """Start at speed v0, then (duration, acceleration) phases; the last one runs until the path ends."""
        pts = np.asarray(pts, np.float64)
        length = float(np.sum(np.hypot(*np.diff(pts, axis=0).T)))
        dt = 0.01
        ts, ss = [t0], [0.0]
        t, s, v = t0, 0.0, v0
        for i, (dur, acc) in enumerate(phases):
            end = math.inf if i == len(phases) - 1 else t + dur
            while t < end - 1e-9 and s < length:
                v_new = max(v + acc * dt, 0.0)
                s = min(s + 0.5 * (v + v_new) * dt, length)
                v, t = v_new, t + dt
                ts.append(t)
                ss.append(s)
                if v == 0.0 and acc <= 0 and end == math.inf:
                    raise ValueError("vehicle stops before the end of its path")
        ss_arr = np.maximum.accumulate(np.asarray(ss))
        return Track(pts, np.asarray(ts), ss_arr)


# ---------------------------------------------------------------------------------------------------- actors
@dataclass(frozen=True)
class Look:
    height: float
    build: float
    torso: Rgb
    legs: Rgb
    skin: Rgb
    hair: Rgb
    shoes: Rgb
    bag: Rgb | None
    stride: float  # metres per step


TORSO_COLOURS = [
    (35, 35, 40),
    (55, 65, 95),
    (150, 32, 36),
    (205, 205, 200),
    (88, 108, 70),
    (172, 142, 104),
    (112, 112, 118),
    (42, 92, 152),
    (182, 122, 42),
    (118, 52, 92),
    (230, 225, 210),
    (24, 60, 48),
]
LEG_COLOURS = [
    (42, 56, 92),
    (30, 30, 32),
    (150, 130, 100),
    (92, 92, 98),
    (62, 60, 72),
    (172, 166, 156),
    (60, 75, 110),
]
SKIN_COLOURS = [(232, 196, 166), (208, 160, 126), (162, 112, 82), (112, 76, 56), (240, 212, 188)]
HAIR_COLOURS = [(30, 25, 20), (72, 50, 30), (152, 120, 72), (202, 192, 172), (18, 18, 18), (110, 60, 35)]


def _jitter(rng: np.random.Generator, c: Sequence[float], k: float = 0.12) -> Rgb:
    f = 1.0 + rng.uniform(-k, k)
    return (min(c[0] * f, 255.0), min(c[1] * f, 255.0), min(c[2] * f, 255.0))


def random_look(rng: np.random.Generator) -> Look:
    height = float(np.clip(rng.normal(1.72, 0.09), 1.5, 1.95))
    bag = _jitter(rng, TORSO_COLOURS[rng.integers(len(TORSO_COLOURS))]) if rng.random() < 0.25 else None
    return Look(
        height=height,
        build=float(rng.uniform(0.88, 1.15)),
        torso=_jitter(rng, TORSO_COLOURS[rng.integers(len(TORSO_COLOURS))]),
        legs=_jitter(rng, LEG_COLOURS[rng.integers(len(LEG_COLOURS))]),
        skin=_jitter(rng, SKIN_COLOURS[rng.integers(len(SKIN_COLOURS))], 0.06),
        hair=_jitter(rng, HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))], 0.1),
        shoes=_jitter(rng, [(30, 30, 30), (200, 200, 200), (80, 50, 30)][rng.integers(3)], 0.1),
        bag=bag,
        stride=height * float(rng.uniform(0.40, 0.46)),
    )


@dataclass
class Actor:
    """Something that moves through the scene: a person or a vehicle (``kind``) on a ``track``."""

    kind: str  # person | bicycle | scooter | car | van
    track: Track
    look: Look | None = None
    colour: Rgb = (160, 160, 160)
    run_above: float = 2.6  # m/s above which a person runs
    step_level: float = 1.0  # loudness of the footsteps relative to a normal walker
    pair: int = -1

    def bbox(self, x: float, z: float, hx: float, hz: float) -> tuple[float, float, float, float]:
        """Image bounding box (u0, v0, u1, v1) of the actor standing at ground point (x, z)."""
        if self.kind in ("car", "van"):
            half_l, half_w, top = (2.15, 0.9, 1.45) if self.kind == "car" else (2.75, 1.0, 2.45)
            return _box_bbox(x - half_l, x + half_l, z - half_w, z + half_w, 0.0, top)
        s = CAM.scale(z)
        u, v = CAM.project(x, z)
        if self.kind == "person":
            assert self.look is not None
            h, half = self.look.height, 0.32 * self.look.height
        elif self.kind == "bicycle":
            h, half = 1.75, 0.95 * abs(hx) + 0.35
        else:
            h, half = 1.9, 0.6 * abs(hx) + 0.35
        return float(u - half * s), float(v - h * s), float(u + half * s), float(v + 0.05 * s)


def visible_fraction(box: tuple[float, float, float, float]) -> float:
    u0, v0, u1, v1 = box
    area = max(u1 - u0, 1e-6) * max(v1 - v0, 1e-6)
    iw = max(0.0, min(u1, WIDTH) - max(u0, 0.0))
    ih = max(0.0, min(v1, HEIGHT) - max(v0, 0.0))
    return iw * ih / area


class _BodyParts:
    """Body parts in the walker's frame (forward, lateral, up; metres), painted far to near."""

    def __init__(self, u: float, v: float, s: float, hx: float, hz: float) -> None:
        self.u, self.v, self.s, self.hx, self.hz = u, v, s, hx, hz
        self.items: list[tuple[float, Callable[[Painter], None]]] = []

    def pt(self, f: float, lat: float, up: float) -> tuple[float, float, float]:
        """Image position and depth of a body point."""
        return (
            self.u + (f * self.hx + lat * self.hz) * self.s,
            self.v - up * self.s,
            f * self.hz - lat * self.hx,
        )

    def limb(self, a, b, r: float, colour: Rgb, opacity: float, bias: float = 0.0) -> None:
        ax, ay, da = self.pt(*a)
        bx, by, db = self.pt(*b)
        rr = r * self.s
        self.items.append(((da + db) / 2 + bias, lambda p: p.capsule(ax, ay, bx, by, rr, colour, opacity)))

    def blob(self, c, rx: float, ry: float, colour: Rgb, opacity: float, bias: float = 0.0) -> None:
        cx, cy, d = self.pt(*c)
        self.items.append((d + bias, lambda p: p.ellipse(cx, cy, rx * self.s, ry * self.s, colour, opacity)))

    def wheel(self, c, radius: float, thickness: float, colour: Rgb, opacity: float) -> None:
        cx, cy, d = self.pt(*c)
        rx = max(radius * abs(self.hx), 0.03) * self.s
        self.items.append(
            (d, lambda p: p.ring(cx, cy, rx, radius * self.s, thickness * self.s, colour, opacity))
        )

    def paint(self, p: Painter) -> None:
        for _, fn in sorted(self.items, key=lambda it: -it[0]):
            fn(p)


def _knee(hip, foot, thigh: float, shin: float, forward: float = 1.0):
    """Two-link leg in the (forward, up) plane: knee bends forwards."""
    (hf, hu), (ff, fu) = hip, foot
    df, du = ff - hf, fu - hu
    d = max(math.hypot(df, du), 1e-6)
    d_c = min(d, thigh + shin - 1e-4)
    a = (thigh * thigh - shin * shin + d_c * d_c) / (2 * d_c)
    hgt = math.sqrt(max(thigh * thigh - a * a, 0.0))
    mf, mu = hf + df * a / d, hu + du * a / d
    # perpendicular pointing forward
    pf, pu = -du / d, df / d
    if pf * forward < 0:
        pf, pu = -pf, -pu
    return mf + pf * hgt, mu + pu * hgt


def _shadow(p: Painter, x: float, z: float, height: float, radius: float, opacity: float) -> None:
    u0, v0 = CAM.project(x, z)
    u1, v1 = CAM.project(x + SUN[0] * height, z + SUN[1] * height)
    p.capsule(
        float(u0), float(v0), float(u1), float(v1), radius * CAM.scale(z), (0, 0, 0), opacity, shade=0.62
    )


def draw_person(
    p: Painter,
    look: Look,
    x: float,
    z: float,
    hx: float,
    hz: float,
    s_path: float,
    speed: float,
    run_above: float,
    opacity: float = 1.0,
) -> None:
    h, b = look.height, look.build
    running = speed > run_above
    _shadow(p, x, z, h, 0.17, opacity)
    u, v = CAM.project(x, z)
    body = _BodyParts(float(u), float(v), CAM.scale(z), hx, hz)
    stride = look.stride * (1.45 if running else 1.0)
    phase = math.pi * s_path / stride  # one step per stride length, two steps per gait cycle
    amp = (0.62 if running else 0.36) * min(1.0, speed / 1.0) if speed > 0.05 else 0.0
    bob = (0.03 if running else 0.012) * h * abs(math.cos(phase))
    lean = 0.07 * h if running else 0.0
    hip = 0.53 * h + bob
    leg_len = 0.53 * h
    for side in (1.0, -1.0):
        lat = side * 0.055 * h * b
        theta = side * amp * math.sin(phase)
        lift = (0.12 if running else 0.05) * h * max(0.0, side * math.cos(phase)) if amp else 0.0
        ff, fu = leg_len * math.sin(theta), max(0.0, hip - leg_len * math.cos(theta)) + lift
        kf, ku = _knee((0.0, hip), (ff, fu + 0.03 * h), 0.27 * h, 0.27 * h)
        body.limb((0.0, lat, hip), (kf, lat, ku), 0.047 * h * b, look.legs, opacity)
        body.limb((kf, lat, ku), (ff, lat, fu + 0.03 * h), 0.04 * h * b, look.legs, opacity)
        body.limb(
            (ff - 0.02 * h, lat, fu + 0.012 * h),
            (ff + 0.07 * h, lat, fu + 0.012 * h),
            0.022 * h,
            look.shoes,
            opacity,
            bias=0.01,
        )
        # arms swing against the leg on the same side
        beta = -side * (0.9 if running else 0.55) * amp * math.sin(phase)
        sl = side * 0.125 * h * b
        arm = 0.36 * h
        hand_f = lean + arm * math.sin(beta)
        hand_u = 0.79 * h + bob - arm * math.cos(beta) * (0.75 if running else 1.0)
        body.limb((lean, sl, 0.79 * h + bob), (hand_f, sl * 1.05, hand_u), 0.032 * h * b, look.torso, opacity)
        body.blob((hand_f, sl * 1.05, hand_u), 0.028 * h, 0.028 * h, look.skin, opacity, bias=-0.01)
    frontal = abs(hz)
    torso_r = h * b * (0.068 + 0.032 * frontal)
    body.limb((0.0, 0.0, 0.57 * h + bob), (lean, 0.0, 0.77 * h + bob), torso_r, look.torso, opacity)
    if look.bag is not None:
        body.limb(
            (lean * 0.5 - 0.09 * h, 0.0, 0.62 * h + bob),
            (lean - 0.09 * h, 0.0, 0.74 * h + bob),
            0.06 * h,
            look.bag,
            opacity,
        )
    body.limb(
        (lean, 0.0, 0.80 * h + bob),
        (lean * 1.1, 0.0, 0.87 * h + bob),
        0.026 * h,
        look.skin,
        opacity,
        bias=0.02,
    )
    head = (lean * 1.2, 0.0, 0.915 * h + bob)
    body.blob(head, 0.062 * h, 0.068 * h, look.skin, opacity, bias=-0.02)
    if hz > 0.3:  # seen from behind: the back of the head is hair
        body.blob(head, 0.063 * h, 0.069 * h, look.hair, opacity, bias=-0.03)
    else:
        body.blob(
            (head[0] - 0.012 * h * (1 - frontal), 0.0, head[2] + 0.03 * h),
            0.06 * h,
            0.045 * h,
            look.hair,
            opacity,
            bias=-0.03,
        )
    body.paint(p)


def draw_bicycle(
    p: Painter, look: Look, x: float, z: float, hx: float, hz: float, s_path: float, frame: Rgb
) -> None:
    _shadow(p, x, z, 1.6, 0.35, 1.0)
    u, v = CAM.project(x, z)
    body = _BodyParts(float(u), float(v), CAM.scale(z), hx, hz)
    tyre = (28, 28, 30)
    for f in (-0.53, 0.53):
        body.wheel((f, 0.0, 0.35), 0.34, 0.05, tyre, 1.0)
    bb, seat, head, rear, front = (-0.05, 0.3), (-0.22, 0.88), (0.42, 0.9), (-0.53, 0.35), (0.53, 0.35)
    for a, c in ((bb, seat), (seat, rear), (bb, rear), (bb, head), (seat, head), (head, front)):
        body.limb((a[0], 0.0, a[1]), (c[0], 0.0, c[1]), 0.025, frame, 1.0)
    body.limb((head[0], 0.0, head[1]), (0.36, 0.0, 1.03), 0.022, (40, 40, 40), 1.0)
    crank = s_path / 4.8 * 2 * math.pi
    hip = (-0.2, 0.98)
    for side in (1.0, -1.0):
        pf = bb[0] + 0.17 * math.cos(crank + (0 if side > 0 else math.pi))
        pu = bb[1] + 0.17 * math.sin(crank + (0 if side > 0 else math.pi))
        kf, ku = _knee(hip, (pf, pu), 0.46, 0.46)
        lat = side * 0.11
        body.limb((hip[0], lat, hip[1]), (kf, lat, ku), 0.075, look.legs, 1.0)
        body.limb((kf, lat, ku), (pf, lat, pu), 0.065, look.legs, 1.0)
        body.limb((pf - 0.04, lat, pu), (pf + 0.1, lat, pu), 0.04, look.shoes, 1.0, bias=0.01)
        body.limb((0.16, side * 0.17, 1.42), (0.36, side * 0.2, 1.03), 0.05, look.torso, 1.0)
    body.limb((hip[0], 0.0, hip[1]), (0.16, 0.0, 1.42), 0.14, look.torso, 1.0)
    body.blob((0.27, 0.0, 1.6), 0.11, 0.12, look.skin, 1.0, bias=-0.02)
    body.blob((0.27, 0.0, 1.66), 0.13, 0.08, (230, 60, 30), 1.0, bias=-0.03)  # helmet
    body.paint(p)


def draw_scooter(p: Painter, look: Look, x: float, z: float, hx: float, hz: float) -> None:
    h = look.height
    _shadow(p, x, z, h, 0.2, 1.0)
    u, v = CAM.project(x, z)
    body = _BodyParts(float(u), float(v), CAM.scale(z), hx, hz)
    dark = (35, 35, 38)
    body.limb((-0.4, 0.0, 0.1), (0.45, 0.0, 0.1), 0.05, dark, 1.0)
    body.wheel((-0.42, 0.0, 0.1), 0.1, 0.05, (20, 20, 20), 1.0)
    body.wheel((0.5, 0.0, 0.1), 0.1, 0.05, (20, 20, 20), 1.0)
    body.limb((0.5, 0.0, 0.12), (0.42, 0.0, 1.05), 0.025, (70, 70, 75), 1.0)
    body.limb((0.42, -0.25, 1.05), (0.42, 0.25, 1.05), 0.02, dark, 1.0)
    hip = 0.13 + 0.5 * h
    for side, foot_f in ((1.0, 0.12), (-1.0, -0.15)):
        lat = side * 0.08
        body.limb((0.0, lat, hip), (foot_f, lat, 0.16), 0.045 * h, look.legs, 1.0)
        body.limb(
            (0.06, side * 0.13 * h, 0.13 + 0.78 * h), (0.42, side * 0.24, 1.05), 0.03 * h, look.torso, 1.0
        )
    body.limb(
        (0.0, 0.0, hip + 0.04 * h), (0.08, 0.0, 0.13 + 0.77 * h), h * (0.07 + 0.03 * abs(hz)), look.torso, 1.0
    )
    head = (0.1, 0.0, 0.13 + 0.915 * h)
    body.blob(head, 0.062 * h, 0.068 * h, look.skin, 1.0, bias=-0.02)
    body.blob((head[0], 0.0, head[2] + 0.03 * h), 0.06 * h, 0.045 * h, look.hair, 1.0, bias=-0.03)
    body.paint(p)


def draw_vehicle(p: Painter, kind: str, x: float, z: float, hx: float, colour: Rgb) -> None:
    """Car or van driving along +-X (side view from above)."""
    direction = 1.0 if hx >= 0 else -1.0
    if kind == "car":
        half_l, half_w, h0, h1, wheel_x, wheel_r = 2.15, 0.9, 0.28, 0.95, 1.35, 0.32
    else:
        half_l, half_w, h0, h1, wheel_x, wheel_r = 2.75, 1.0, 0.35, 2.45, 1.95, 0.36
    zn = z - half_w
    # shadow on the ground under and beside the vehicle
    gx0, gx1, gz0, gz1 = x - half_l - 0.2, x + half_l + 0.2, z - half_w - 0.2, z + half_w + 0.2
    sh = 0.6 * (h1 if kind == "van" else 1.4)
    corners = [
        (gx0, gz1),
        (gx0 + SUN[0] * sh, gz1 + SUN[1] * sh),
        (gx0 + SUN[0] * sh, gz0 + SUN[1] * sh),
        (gx1 + SUN[0] * sh, gz0 + SUN[1] * sh),
        (gx1, gz0),
        (gx0, gz0),
    ]
    us, vs = CAM.project(np.array([c[0] for c in corners]), np.array([c[1] for c in corners]))
    hull = np.stack([us, vs], axis=1)
    p.polygon(hull[[0, 4, 5]], (0, 0, 0), shade=0.5)
    p.polygon(np.array([hull[5], hull[4], hull[3], hull[2]]), (0, 0, 0), shade=0.5)
    p.polygon(np.array([hull[0], hull[1], hull[2], hull[5]]), (0, 0, 0), shade=0.5)
    draw_box(p, x - half_l, x + half_l, z - half_w, z + half_w, h0, h1, colour)
    s = CAM.scale(zn)
    glass = (44, 52, 62)
    if kind == "car":
        c0, c1 = (-1.3, 0.8) if direction > 0 else (-0.8, 1.3)
        draw_box(p, x + c0, x + c1, z - 0.78, z + 0.78, h1, 1.42, glass, top=_mul(colour, 1.1))
        lamp_h = 0.7
    else:
        fx = x + direction * half_l
        wx0, wx1 = sorted((fx - direction * 1.15, fx - direction * 0.25))
        quad = CAM.project(np.array([wx0, wx1, wx1, wx0]), zn - 0.01, np.array([1.45, 1.45, 2.15, 2.15]))
        p.polygon(np.stack(quad, axis=1), glass)
        quad = CAM.project(
            np.array([x - half_l, x + half_l, x + half_l, x - half_l]),
            zn - 0.01,
            np.array([1.0, 1.0, 1.18, 1.18]),
        )
        p.polygon(np.stack(quad, axis=1), (40, 80, 160))
        lamp_h = 0.9
    for wxo in (-wheel_x, wheel_x):
        wu, wv = CAM.project(x + wxo, zn - 0.01, wheel_r)
        p.ellipse(float(wu), float(wv), wheel_r * s, wheel_r * s, (22, 22, 24))
        p.ellipse(float(wu), float(wv), 0.13 * s, 0.13 * s, (150, 150, 156))
    hu, hv = CAM.project(x + direction * (half_l - 0.12), zn - 0.01, lamp_h)
    p.ellipse(float(hu), float(hv), 0.12 * s, 0.07 * s, (250, 245, 220))
    tu, tv = CAM.project(x - direction * (half_l - 0.08), zn - 0.01, lamp_h)
    p.ellipse(float(tu), float(tv), 0.08 * s, 0.08 * s, (200, 20, 20))


def draw_actor(p: Painter, a: Actor, t: float) -> None:
    x, z, hx, hz, s = (float(q) for q in a.track.state(t))
    speed = _speed(a.track, t)
    look = a.look  # (cars and vans have none)
    if a.kind == "person":
        assert look is not None
        opacity = float(np.clip((BUILDING_Z - z) / 1.2, 0.0, 1.0))  # fades into / out of the door
        draw_person(p, look, x, z, hx, hz, s, speed, a.run_above, opacity)
    elif a.kind == "bicycle":
        assert look is not None
        draw_bicycle(p, look, x, z, hx, hz, s, a.colour)
    elif a.kind == "scooter":
        assert look is not None
        draw_scooter(p, look, x, z, hx, hz)
    else:
        draw_vehicle(p, a.kind, x, z, hx, a.colour)


def _speed(track: Track, t: float) -> float:
    i = int(np.clip(np.searchsorted(track.t_knots, t, side="right") - 1, 0, len(track.t_knots) - 2))
    dt = track.t_knots[i + 1] - track.t_knots[i]
    return float((track.s_knots[i + 1] - track.s_knots[i]) / dt) if dt > 0 else 0.0


# ---------------------------------------------------------------------------------------------- normal crowd
PROM_LANES = {1: (14.3, 15.7), -1: (16.3, 17.7)}  # by direction along X
FACADE_LANES = {1: (35.0, 36.2), -1: (37.0, 38.2)}
AXIS_LANES = {1: (-1.9, -0.8), -1: (-0.3, 0.8)}  # by direction along Z
DOOR_Z = 39.9


def _lane(rng: np.random.Generator, lanes: dict[int, tuple[float, float]], direction: int) -> float:
    lo, hi = lanes[direction]
    return float(rng.uniform(lo, hi))


def _diag_x(z: float, offset: float) -> float:
    (ax, az), (bx, bz) = DIAG_A, DIAG_B
    return ax + (bx - ax) * (z - az) / (bz - az) + offset


ROUTES = {  # origin-destination: weight (per direction pair, both directions listed)
    "L-R": 3.0,
    "R-L": 3.0,
    "FL-FR": 1.1,
    "FR-FL": 1.1,
    "B-D": 1.0,
    "D-B": 1.0,
    "B-L": 0.5,
    "B-R": 0.5,
    "L-B": 0.5,
    "R-B": 0.5,
    "D-L": 0.45,
    "D-R": 0.45,
    "L-D": 0.45,
    "R-D": 0.45,
    "BL-L": 0.45,
    "BL-R": 0.45,
    "L-BL": 0.45,
    "R-BL": 0.45,
    "D-FL": 0.35,
    "D-FR": 0.35,
    "FL-D": 0.35,
    "FR-D": 0.35,
    "B-FL": 0.2,
    "FR-B": 0.2,
}


def build_route(name: str, rng: np.random.Generator, lateral: float = 0.0) -> np.ndarray:
    """Waypoints of a walking route; ``lateral`` shifts the lanes (a companion walking alongside)."""
    origin, dest = name.split("-")
    pts: list[tuple[float, float]] = []

    def prom_z(direction: int) -> float:
        return _lane(rng, PROM_LANES, direction) + lateral

    def fac_z(direction: int) -> float:
        return _lane(rng, FACADE_LANES, direction) + lateral

    def axis_x(direction: int) -> float:
        return _lane(rng, AXIS_LANES, direction) + lateral

    if origin in ("L", "R") and dest in ("L", "R"):
        d = 1 if origin == "L" else -1
        z = prom_z(d)
        pts = [(-d * x_offscreen(z), z), (d * x_offscreen(z), z)]
    elif origin in ("FL", "FR") and dest in ("FL", "FR"):
        d = 1 if origin == "FL" else -1
        z = fac_z(d)
        pts = [(-d * x_offscreen(z), z), (d * x_offscreen(z), z)]
    elif {origin, dest} == {"B", "D"}:
        d = 1 if origin == "B" else -1
        x = axis_x(d)
        pts = [(x, 4.0), (x, DOOR_Z)] if d == 1 else [(x, DOOR_Z), (x, 4.0)]
    elif origin in ("B", "D") and dest in ("L", "R"):
        dz = 1 if origin == "B" else -1
        dx = -1 if dest == "L" else 1
        x, z = axis_x(dz), prom_z(dx)
        pts = [(x, 4.0 if origin == "B" else DOOR_Z), (x, z), (dx * x_offscreen(z), z)]
    elif origin in ("L", "R") and dest in ("B", "D"):
        dx = 1 if origin == "L" else -1
        dz = -1 if dest == "B" else 1
        x, z = axis_x(dz), prom_z(dx)
        pts = [(-dx * x_offscreen(z), z), (x, z), (x, 4.0 if dest == "B" else DOOR_Z)]
    elif origin == "BL" or dest == "BL":
        off = float(rng.uniform(-0.6, 0.6)) + lateral
        if origin == "BL":
            dx = -1 if dest == "L" else 1
            z = prom_z(dx)
            pts = [(_diag_x(4.0, off), 4.0), (_diag_x(z, off), z), (dx * x_offscreen(z), z)]
        else:
            dx = 1 if origin == "L" else -1
            z = prom_z(dx)
            pts = [(-dx * x_offscreen(z), z), (_diag_x(z, off), z), (_diag_x(4.0, off), 4.0)]
    elif origin == "D" and dest in ("FL", "FR"):
        dx = -1 if dest == "FL" else 1
        x, z = axis_x(-1), fac_z(dx)
        pts = [(x, DOOR_Z), (x, z), (dx * x_offscreen(z), z)]
    elif origin in ("FL", "FR") and dest == "D":
        dx = 1 if origin == "FL" else -1
        x, z = axis_x(1), fac_z(dx)
        pts = [(-dx * x_offscreen(z), z), (x, z), (x, DOOR_Z)]
    elif origin == "B" and dest == "FL":
        x, z = axis_x(1), fac_z(-1)
        pts = [(x, 4.0), (x, z), (-x_offscreen(z), z)]
    elif origin == "FR" and dest == "B":
        x, z = axis_x(-1), fac_z(-1)
        pts = [(x_offscreen(z), z), (x, z), (x, 4.0)]
    else:
        raise ValueError(f"unknown route {name}")
    return np.asarray(pts, np.float64)


def _frame_times(duration: float) -> np.ndarray:
    return np.arange(int(round(duration * FPS))) / FPS


def _visible_frames(actor: Actor, times: np.ndarray, min_fraction: float = 0.2) -> np.ndarray:
    """Boolean per frame time: the actor is on its path and at least ``min_fraction`` of it is in view."""
    out = np.zeros(len(times), bool)
    active = (times >= actor.track.t_start) & (times <= actor.track.t_end)
    idx = np.nonzero(active)[0]
    if len(idx) == 0:
        return out
    x, z, hx, hz, _ = actor.track.state(times[idx])
    for k, i in enumerate(idx):
        out[i] = (
            visible_fraction(actor.bbox(float(x[k]), float(z[k]), float(hx[k]), float(hz[k]))) >= min_fraction
        )
    return out


def _too_close(track: Track, others: Sequence[Track], min_dist: float) -> bool:
    for o in others:
        t0, t1 = max(track.t_start, o.t_start), min(track.t_end, o.t_end)
        if t1 <= t0:
            continue
        ts = np.arange(t0, t1, 0.1)
        x1, z1, *_ = track.state(ts)
        x2, z2, *_ = o.state(ts)
        if np.any(np.hypot(x1 - x2, z1 - z2) < min_dist):
            return True
    return False


def build_crowd(
    rng: np.random.Generator, duration: float, present: Sequence[Actor], max_people: int = 6
) -> list[Actor]:
    """People walking the paths, arriving as a Poisson process whose rate drifts (busy and quiet spells).

    Nobody walks into the vehicles among ``present``, and at most ``max_people`` people (counting those in
    ``present``) are in view at once.
    """
    names = list(ROUTES)
    weights = np.array([ROUTES[n] for n in names])
    weights /= weights.sum()
    times = _frame_times(duration)
    count = np.zeros(len(times), int)
    for a in present:
        if a.kind == "person":
            count += _visible_frames(a, times, 0.05)
    avoid = [a.track for a in present if a.kind != "person"]
    periods = rng.uniform(45, 110, size=2)
    phases = rng.uniform(0, 2 * np.pi, size=2)

    def busy(t: float) -> float:
        return float(
            np.clip(
                1.0
                + 0.6 * np.sin(2 * np.pi * t / periods[0] + phases[0])
                + 0.3 * np.sin(2 * np.pi * t / periods[1] + phases[1]),
                0.15,
                2.0,
            )
        )

    actors: list[Actor] = []
    t = -50.0
    pair_id = 0
    while True:
        t += float(rng.exponential(7.0 / busy(t)))
        if t >= duration:
            break
        route = names[int(rng.choice(len(names), p=weights))]
        speed = float(rng.uniform(1.0, 1.8))
        n = 2 if rng.random() < 0.22 else 1
        pause = rng.random() < 0.12 and n == 1 and route in ("L-R", "R-L", "FL-FR", "FR-FL")
        pause_at, pause_s = float(rng.uniform(0.3, 0.7)), float(rng.uniform(2.0, 6.0))
        group: list[Actor] = []
        for k in range(n):
            pts = build_route(route, rng, lateral=0.55 * k)
            start = t + (float(rng.uniform(-0.3, 0.3)) if k else 0.0)
            track = Track.constant(
                pts, start, speed * (1.0 + 0.01 * k), pause_at if pause else None, pause_s if pause else 0.0
            )
            group.append(Actor("person", track, random_look(rng), pair=pair_id if n == 2 else -1))
        pair_id += 1
        if any(a.track.t_end < 0 for a in group):
            continue
        vis = [_visible_frames(a, times, 0.05) for a in group]
        add = np.sum(vis, axis=0)
        if np.any(count + add > max_people):
            continue
        if any(_too_close(a.track, avoid, 3.0) for a in group):
            continue
        count += add
        actors.extend(group)
    return actors


# ------------------------------------------------------------------------------------------------ background
def _value_noise(u: np.ndarray, v: np.ndarray, cell: float, rng: np.random.Generator) -> np.ndarray:
    """Smooth noise in [-1, 1] over ground coordinates, lattice spacing ``cell`` metres."""
    gu, gv = u / cell, v / cell
    iu0, iv0 = int(np.floor(gu.min())), int(np.floor(gv.min()))
    table = rng.uniform(-1, 1, size=(int(np.floor(gv.max())) - iv0 + 2, int(np.floor(gu.max())) - iu0 + 2))
    iu, iv = np.floor(gu).astype(int), np.floor(gv).astype(int)
    fu, fv = gu - iu, gv - iv
    fu, fv = fu * fu * (3 - 2 * fu), fv * fv * (3 - 2 * fv)
    iu, iv = iu - iu0, iv - iv0
    a = table[iv, iu] * (1 - fu) + table[iv, iu + 1] * fu
    b = table[iv + 1, iu] * (1 - fu) + table[iv + 1, iu + 1] * fu
    return (a * (1 - fv) + b * fv).astype(np.float32)


def _cell_noise(
    u: np.ndarray, v: np.ndarray, cu: float, cv: float, rng: np.random.Generator, offset_rows: bool = False
) -> np.ndarray:
    """A random value in [-1, 1] per slab of a cu x cv grid (running bond when ``offset_rows``)."""
    iv = np.floor(v / cv).astype(int)
    shift = (iv % 2) * 0.5 * cu if offset_rows else 0.0
    iu = np.floor((u + shift) / cu).astype(int)
    iu0, iv0 = iu.min(), iv.min()
    table = rng.uniform(-1, 1, size=(iv.max() - iv0 + 1, iu.max() - iu0 + 1))
    return table[iv - iv0, iu - iu0].astype(np.float32)


def _joints(
    u: np.ndarray,
    v: np.ndarray,
    fu: np.ndarray | float,
    fv: np.ndarray | float,
    cu: float,
    cv: float,
    width: float,
    offset_rows: bool = False,
) -> np.ndarray:
    """Anti-aliased joint lines of a slab grid (0..1), faded out where slabs get smaller than ~3 px."""
    iv = np.floor(v / cv)
    shift = (iv % 2) * 0.5 * cu if offset_rows else 0.0

    def lines(coord, foot, cell):
        d = np.abs(((coord / cell) + 0.5) % 1.0 - 0.5) * cell
        sigma = np.maximum(width, foot) / 2
        peak = np.minimum(1.0, width / np.maximum(foot, 1e-6)) * np.clip((cell / foot - 2.0) / 2.0, 0, 1)
        return peak * np.exp(-0.5 * (d / sigma) ** 2)

    return np.maximum(lines(u + shift, fu, cu), lines(v, fv, cv)).astype(np.float32)


@dataclass
class Background:
    albedo: np.ndarray  # (H, W, 3) float32
    ground_x: np.ndarray  # (H, W) ground X of each pixel (facade pixels: X at the facade)
    ground_z: np.ndarray  # (H, 1) ground Z of each row (facade rows: BUILDING_Z)
    vignette: np.ndarray  # (H, W, 1)
    occluders: list[tuple[float, tuple[int, int, int, int], np.ndarray, np.ndarray]]  # z, box, rgb, alpha


def _smooth_rect(x, z, x0, x1, z0, z1, fx, fz) -> np.ndarray:
    """Soft 0..1 mask of a ground rectangle, edges blurred by the pixel footprint."""
    ax = np.clip((x - x0) / fx + 0.5, 0, 1) * np.clip((x1 - x) / fx + 0.5, 0, 1)
    az = np.clip((z - z0) / fz + 0.5, 0, 1) * np.clip((z1 - z) / fz + 0.5, 0, 1)
    return (ax * az).astype(np.float32)


def _ground_capsule(x, z, a, b, r, soft) -> np.ndarray:
    (ax, az), (bx, bz) = a, b
    bax, baz = bx - ax, bz - az
    hh = np.clip(((x - ax) * bax + (z - az) * baz) / (bax * bax + baz * baz + 1e-9), 0, 1)
    d = np.hypot(x - ax - bax * hh, z - az - baz * hh) - r
    return np.clip(0.5 - d / soft, 0, 1).astype(np.float32)


FIXED_OBJECTS = (  # kind, x, z
    ("lamp", -3.1, 12.9),
    ("lamp", 2.4, 19.2),
    ("lamp", -8.2, 19.2),
    ("lamp", 10.8, 19.2),
    ("lamp", -3.2, 33.0),
    ("lamp", 2.2, 33.0),
    ("bench", -5.2, 19.1),
    ("bench", 6.6, 19.1),
    ("bench", -16.0, 19.1),
    ("bin", -3.4, 18.95),
    ("bin", 4.4, 19.0),
    ("tree", 7.8, 26.0),
    ("tree", 16.5, 29.5),
    ("tree", -10.5, 27.0),
    ("tree", -21.0, 30.5),
    ("tree", 24.0, 24.0),
    ("shrub", 3.7, 10.2),
    ("shrub", -4.6, 24.5),
)


def _render_fixed(kind: str, x: float, z: float, rng: np.random.Generator):
    """Render a fixed object into an RGBA patch: (box, rgb premultiplied, alpha) or None if out of view."""
    if kind == "lamp":
        u0, v0, u1, v1 = _box_bbox(x - 0.35, x + 0.35, z - 0.1, z + 0.1, 0.0, 4.8)
    elif kind == "bench":
        u0, v0, u1, v1 = _box_bbox(x - 0.95, x + 0.95, z - 0.3, z + 0.3, 0.0, 0.95)
    elif kind == "bin":
        u0, v0, u1, v1 = _box_bbox(x - 0.3, x + 0.3, z - 0.3, z + 0.3, 0.0, 0.95)
    else:
        rad, hc, top = (2.4, 4.7, 7.2) if kind == "tree" else (0.85, 0.6, 1.5)
        u0, v0, u1, v1 = _box_bbox(x - rad, x + rad, z - rad, z + rad, 0.0, top)
    bx0, by0 = max(int(u0) - 2, 0), max(int(v0) - 2, 0)
    bx1, by1 = min(int(u1) + 3, WIDTH), min(int(v1) + 3, HEIGHT)
    if bx0 >= bx1 or by0 >= by1:
        return None
    rgb = np.zeros((by1 - by0, bx1 - bx0, 3), np.float32)
    alpha = np.zeros((by1 - by0, bx1 - bx0), np.float32)
    p = Painter(rgb, alpha, bx0, by0)
    s = CAM.scale(z)
    if kind == "lamp":
        ub, vb = CAM.project(x, z, 0.0)
        ut, vt = CAM.project(x, z, 4.5)
        p.capsule(float(ub), float(vb - 0.3 * s), float(ut), float(vt), 0.065 * s, (58, 60, 64))
        p.ellipse(float(ub), float(vb - 0.15 * s), 0.12 * s, 0.15 * s, (48, 50, 54))
        p.ellipse(float(ut), float(vt - 0.1 * s), 0.3 * s, 0.14 * s, (40, 42, 46))
        p.ellipse(float(ut), float(vt - 0.02 * s), 0.2 * s, 0.06 * s, (235, 232, 210))
    elif kind == "bench":
        wood, iron = (128, 90, 58), (45, 45, 48)
        for lx in (-0.75, 0.7):
            draw_box(p, x + lx, x + lx + 0.06, z - 0.22, z + 0.22, 0.0, 0.42, iron)
        draw_box(p, x - 0.9, x + 0.9, z + 0.17, z + 0.23, 0.45, 0.92, wood)
        draw_box(p, x - 0.9, x + 0.9, z - 0.22, z + 0.2, 0.4, 0.46, wood)
    elif kind == "bin":
        draw_box(p, x - 0.25, x + 0.25, z - 0.25, z + 0.25, 0.0, 0.9, (40, 70, 50), top=(25, 30, 28))
    else:
        if kind == "tree":
            ub, vb = CAM.project(x, z, 0.0)
            ut, vt = CAM.project(x, z, 3.6)
            p.capsule(float(ub), float(vb), float(ut), float(vt), 0.16 * s, (86, 66, 48))
        n = 46 if kind == "tree" else 14
        offs = rng.normal(0, 1, size=(n, 3))
        offs /= np.maximum(np.linalg.norm(offs, axis=1, keepdims=True), 1e-6)
        offs *= rad * 0.7 * rng.uniform(0.3, 1.0, size=(n, 1)) ** 0.5
        order = np.argsort(-offs[:, 1])  # far leaves first
        base = np.array([62, 98, 48]) if kind == "tree" else np.array([52, 88, 44])
        for k in order:
            ox, oz, oh = offs[k]
            cu, cv = CAM.project(x + ox, z + oz, hc + oh * 0.8)
            light = 0.8 + 0.22 * (oh / rad) - 0.12 * (oz / rad)  # lit from above, darker at the back
            cr, cg, cb = (float(c) for c in np.clip(base * light * rng.uniform(0.85, 1.15), 0, 255))
            col = (cr, cg, cb)
            rr = rad * rng.uniform(0.35, 0.55) * CAM.scale(z + oz)
            p.ellipse(float(cu), float(cv), rr, rr * 0.9, col)
    return (bx0, by0, bx1, by1), rgb, alpha


def _fixed_shadow(kind: str, x: float, z: float, gx: np.ndarray, gz: np.ndarray, fx, fz) -> np.ndarray:
    soft = np.maximum(np.maximum(fx, fz), 0.08)
    if kind == "lamp":
        m = _ground_capsule(gx, gz, (x, z), (x + SUN[0] * 4.5, z + SUN[1] * 4.5), 0.05, soft)
        return np.maximum(
            m,
            _ground_capsule(
                gx,
                gz,
                (x + SUN[0] * 4.55, z + SUN[1] * 4.55),
                (x + SUN[0] * 4.65, z + SUN[1] * 4.65),
                0.18,
                soft,
            ),
        )
    if kind == "bench":
        return 0.8 * _ground_capsule(
            gx,
            gz,
            (x - 0.8 + SUN[0] * 0.45, z + SUN[1] * 0.45),
            (x + 0.8 + SUN[0] * 0.45, z + SUN[1] * 0.45),
            0.25,
            soft,
        )
    if kind == "bin":
        return _ground_capsule(gx, gz, (x, z), (x + SUN[0] * 0.9, z + SUN[1] * 0.9), 0.24, soft)
    if kind == "tree":
        trunk = _ground_capsule(gx, gz, (x, z), (x + SUN[0] * 3.5, z + SUN[1] * 3.5), 0.14, soft)
        cx, cz = x + SUN[0] * 4.7, z + SUN[1] * 4.7
        canopy = np.clip(
            0.5 - (np.hypot((gx - cx) / 2.3, (gz - cz) / 1.9) - 1.0) * 2.3 / np.maximum(soft, 0.5), 0, 1
        )
        return np.maximum(trunk, 0.85 * canopy).astype(np.float32)
    return _ground_capsule(gx, gz, (x, z), (x + SUN[0] * 0.9, z + SUN[1] * 0.9), 0.75, np.maximum(soft, 0.3))


def render_background(seed: int = 7) -> Background:
    """The static scene (albedo before lighting) and fixed occluders; identical for every clip."""
    rng = np.random.default_rng(seed)
    ys = (np.arange(HEIGHT) + 0.5)[:, None]
    xs = (np.arange(WIDTH) + 0.5)[None, :]
    base_row = CAM.horizon + CAM.focal * CAM.height / BUILDING_Z
    ground = ys > base_row
    gz = np.where(ground, CAM.focal * CAM.height / np.maximum(ys - CAM.horizon, 1e-3), BUILDING_Z)
    gx = (xs - CAM.cx) * gz / CAM.focal
    fx = np.broadcast_to(gz / CAM.focal, gx.shape)  # metres per pixel across
    fz = np.broadcast_to(gz * gz / (CAM.focal * CAM.height), gx.shape)  # metres per pixel in depth
    gxb = np.broadcast_to(gx, (HEIGHT, WIDTH))
    gzb = np.broadcast_to(gz, (HEIGHT, WIDTH))
    albedo = np.zeros((HEIGHT, WIDTH, 3), np.float32)

    # --- ground materials
    stains = 1.0 + 0.05 * _value_noise(gxb, gzb, 3.0, rng) + 0.025 * _value_noise(gxb, gzb, 0.9, rng)
    grain = rng.normal(0, 1.6, size=(HEIGHT, WIDTH)).astype(np.float32)
    plaza_var = _cell_noise(gxb, gzb, 0.9, 0.9, rng)
    plaza_j = _joints(gxb, gzb, fx, fz, 0.9, 0.9, 0.025)
    fade_p = np.clip((0.9 / np.maximum(fx, fz) - 2.0) / 2.0, 0, 1)
    plaza = (
        np.array([122, 118, 112], np.float32)
        * ((1 + 0.05 * plaza_var * fade_p) * (1 - 0.3 * plaza_j))[..., None]
    )
    path_var = _cell_noise(gxb, gzb, 0.6, 0.3, rng, offset_rows=True)
    path_j = _joints(gxb, gzb, fx, fz, 0.6, 0.3, 0.015, offset_rows=True)
    fade_b = np.clip((0.3 / np.maximum(fx, fz) - 2.0) / 2.0, 0, 1)
    path = (
        np.array([166, 156, 142], np.float32)
        * ((1 + 0.05 * path_var * fade_b) * (1 - 0.22 * path_j))[..., None]
    )
    band = np.abs(((gxb / 6.0) + 0.5) % 1.0 - 0.5) * 6.0 < 0.25  # decorative bands across the promenade
    lawn_stripes = np.where((np.floor(gxb / 1.3) % 2) == 0, 1.04, 0.96) * np.clip(1.3 / fx - 2, 0, 1) + (
        1 - np.clip(1.3 / fx - 2, 0, 1)
    )
    lawn_tex = 1 + 0.10 * _value_noise(gxb, gzb, 1.2, rng) + 0.05 * _value_noise(gxb, gzb, 0.35, rng)
    lawn = np.array([72, 112, 50], np.float32) * (lawn_stripes * lawn_tex)[..., None]
    shrubs = _value_noise(gxb, gzb, 0.8, rng)
    flowers = _value_noise(gxb, gzb, 0.35, rng)
    soil = np.array([96, 76, 58], np.float32) * (1 + 0.06 * _value_noise(gxb, gzb, 0.5, rng))[..., None]
    green = np.array([50, 88, 42], np.float32) * (1 + 0.18 * _value_noise(gxb, gzb, 0.3, rng))[..., None]
    planter = np.where((shrubs > -0.1)[..., None], green, soil)
    planter = np.where(
        (flowers > 0.62)[..., None] & (shrubs > 0)[..., None],
        np.where(
            (_value_noise(gxb, gzb, 2.0, rng) > 0)[..., None],
            np.array([190, 60, 80], np.float32),
            np.array([215, 190, 70], np.float32),
        ),
        planter,
    )

    img = plaza.copy()
    on_path = np.zeros((HEIGHT, WIDTH), np.float32)
    on_path = np.maximum(on_path, _smooth_rect(gxb, gzb, -1e3, 1e3, PROM_Z[0], PROM_Z[1], fx, fz))
    on_path = np.maximum(on_path, _smooth_rect(gxb, gzb, -1e3, 1e3, FACADE_WALK_Z, 1e3, fx, fz))
    on_path = np.maximum(on_path, _smooth_rect(gxb, gzb, AXIS_X[0], AXIS_X[1], 0, 1e3, fx, fz))
    diag = _ground_capsule(gxb, gzb, DIAG_A, DIAG_B, DIAG_HALF_WIDTH, np.maximum(fx, 0.02))
    img = img * (1 - diag[..., None]) + (path * np.float32(0.93)) * diag[..., None]
    img = img * (1 - on_path[..., None]) + path * on_path[..., None]
    prom_band = band & (gzb > PROM_Z[0] + 0.3) & (gzb < PROM_Z[1] - 0.3)
    img = np.where(prom_band[..., None], img * np.array([0.78, 0.8, 0.86], np.float32), img)
    for name, (x0, x1, z0, z1) in FORBIDDEN.items():
        kerb = _smooth_rect(gxb, gzb, x0, x1, z0, z1, fx, fz)
        inner = _smooth_rect(gxb, gzb, x0 + 0.15, x1 - 0.15, z0 + 0.15, z1 - 0.15, fx, fz)
        img = img * (1 - kerb[..., None]) + np.float32(182) * kerb[..., None] * np.array(
            [1, 0.98, 0.94], np.float32
        )
        fill = planter if name.startswith("planter") else lawn
        img = img * (1 - inner[..., None]) + fill * inner[..., None]
    img = img * stains[..., None] + grain[..., None]
    # static shadows of the fixed objects
    shadow = np.zeros((HEIGHT, WIDTH), np.float32)
    for kind, x, z in FIXED_OBJECTS:
        shadow = np.maximum(shadow, _fixed_shadow(kind, x, z, gxb, gzb, fx, fz))
    img *= (1 - 0.38 * shadow)[..., None]
    albedo[:] = np.where(ground[..., None], img, 0)

    # --- the building: stone block with a glass shop front, brick block on the right
    fh = CAM.height - (ys - CAM.horizon) * BUILDING_Z / CAM.focal  # height on the facade
    fxm = np.broadcast_to((xs - CAM.cx) * BUILDING_Z / CAM.focal, (HEIGHT, WIDTH))
    fhm = np.broadcast_to(fh, (HEIGHT, WIDTH))
    foot = BUILDING_Z / CAM.focal
    stone = np.array([170, 160, 147], np.float32) * (1 + 0.03 * _value_noise(fxm, fhm, 1.5, rng))[..., None]
    stone *= (1 - 0.12 * _joints(fxm, fhm, foot, foot, 1.2, 0.5, 0.02))[..., None]
    brick = (
        np.array([140, 82, 62], np.float32)
        * (1 + 0.05 * _cell_noise(fxm, fhm, 0.25, 0.0833, rng, True))[..., None]
    )
    is_brick = fxm > 14.0
    fac = np.where(is_brick[..., None], brick, stone)
    pilaster = (np.abs(((fxm / 4.0) + 0.5) % 1.0 - 0.5) * 4.0 < 0.22) & ~is_brick & (fhm > 4.2)
    fac = np.where(pilaster[..., None], fac * 1.08, fac)
    # upper windows
    win_pitch = np.where(is_brick, 2.4, 3.2)
    wx = ((fxm / win_pitch) % 1.0) * win_pitch
    win_w = np.where(is_brick, 1.2, 1.7)
    floor_h = 3.4
    wh = (fhm - 4.4) % floor_h
    in_win = (
        (wx > (win_pitch - win_w) / 2)
        & (wx < (win_pitch + win_w) / 2)
        & (wh > 0.7)
        & (wh < 2.5)
        & (fhm > 4.4)
    )
    win_id = np.floor(fxm / win_pitch) * 7 + np.floor((fhm - 4.4) / floor_h)
    blind = (np.sin(win_id * 12.9898) * 43758.5453) % 1.0
    glass = np.stack([58 + 30 * blind, 70 + 30 * blind, 84 + 28 * blind], axis=-1).astype(np.float32)
    glass *= (1 + 0.25 * np.clip((wh - 0.7) / 1.8, 0, 1))[..., None]
    fac = np.where(in_win[..., None], glass, fac)
    sill = (
        (wx > (win_pitch - win_w) / 2 - 0.1)
        & (wx < (win_pitch + win_w) / 2 + 0.1)
        & (wh > 0.55)
        & (wh <= 0.7)
        & (fhm > 4.4)
    )
    fac = np.where(sill[..., None], np.float32(195), fac)
    # ground floor
    shop = (fhm < 3.8) & ~is_brick
    mull = np.abs(((fxm / 2.0) + 0.5) % 1.0 - 0.5) * 2.0 < 0.07
    shop_col = np.stack([50 + 22 * (fhm / 3.8), 62 + 24 * (fhm / 3.8), 74 + 26 * (fhm / 3.8)], axis=-1)
    shop_col = np.where(mull[..., None], np.float32(70), shop_col).astype(np.float32)
    fac = np.where(shop[..., None], shop_col, fac)
    fac = np.where(
        ((fhm >= 3.8) & (fhm < 4.3) & ~is_brick)[..., None], np.array([58, 58, 64], np.float32), fac
    )
    door = (np.abs(fxm - DOOR_X) < DOOR_W / 2) & (fhm < DOOR_H)
    door_frame = (np.abs(fxm - DOOR_X) < DOOR_W / 2 + 0.12) & (fhm < DOOR_H + 0.12) & ~door
    fac = np.where(door[..., None], np.array([26, 28, 32], np.float32), fac)
    fac = np.where(door_frame[..., None], np.array([150, 150, 155], np.float32), fac)
    brick_ground = (
        is_brick
        & (fhm < 3.8)
        & (((fxm - 14.0) % 2.4) > 0.5)
        & (((fxm - 14.0) % 2.4) < 1.9)
        & (fhm > 0.9)
        & (fhm < 2.9)
    )
    fac = np.where(brick_ground[..., None], np.array([60, 70, 80], np.float32), fac)
    fac = np.where((fhm < 0.3)[..., None], np.array([92, 90, 88], np.float32), fac)
    fac = fac + 0.6 * grain[..., None]
    albedo[:] = np.where(ground[..., None], albedo, fac)

    # --- fixed objects: baked into the background, and kept as patches to repaint over people behind them
    occluders = []
    for kind, x, z in FIXED_OBJECTS:
        patch = _render_fixed(kind, x, z, rng)
        if patch is None:
            continue
        (bx0, by0, bx1, by1), rgb, alpha = patch
        region = albedo[by0:by1, bx0:bx1]
        region[:] = rgb + (1 - alpha[..., None]) * region
        occluders.append((z, (bx0, by0, bx1, by1), rgb, alpha))
    np.clip(albedo, 0, 255, out=albedo)

    r2 = ((xs - CAM.cx) / CAM.cx) ** 2 + ((ys - HEIGHT / 2) / (HEIGHT / 2)) ** 2 * 0.56
    vignette = (1 - 0.1 * r2).astype(np.float32)[..., None]
    return Background(
        albedo,
        np.ascontiguousarray(gxb, np.float32),
        gz.astype(np.float32),
        np.broadcast_to(vignette, (HEIGHT, WIDTH, 1)).copy(),
        occluders,
    )


# --------------------------------------------------------------------------------------------------- weather
@dataclass(frozen=True)
class Cloud:
    t_mid: float  # when its centre passes X = 0
    z: float
    vx: float
    half_x: float
    half_z: float
    depth: float  # fractional darkening in the core


def build_clouds(rng: np.random.Generator, duration: float) -> list[Cloud]:
    clouds = []
    t = float(rng.uniform(-40, 30))
    while t < duration + 40:
        clouds.append(
            Cloud(
                t,
                float(rng.uniform(10, 45)),
                float(rng.choice([-1, 1]) * rng.uniform(3, 6)),
                float(rng.uniform(14, 35)),
                float(rng.uniform(10, 25)),
                float(rng.uniform(0.08, 0.14)),
            )
        )
        t += float(rng.uniform(35, 80))
    return clouds


def cloud_shade(clouds: Sequence[Cloud], t: float, gx: np.ndarray, gz: np.ndarray) -> np.ndarray | None:
    """Darkening 0..depth per (half-resolution) pixel, or None when no cloud is over the view."""
    out = None
    for c in clouds:
        cx = c.vx * (t - c.t_mid)
        if abs(cx) > c.half_x + 45:
            continue
        r = np.hypot((gx - cx) / c.half_x, (gz - c.z) / c.half_z)
        m = c.depth / (1 + np.exp((r - 1.0) / 0.12))
        out = m if out is None else np.maximum(out, m)
    return out


# -------------------------------------------------------------------------------------------- scene assembly
@dataclass
class AudioEvent:
    start: float
    samples: np.ndarray


@dataclass
class GroundTruth:
    start: float
    end: float
    modalities: list[str]
    kind: str
    detail: str
    box: list[float] | None = None

    def as_json(self) -> dict:
        d: dict = {
            "start": round(float(self.start), 3),
            "end": round(float(self.end), 3),
            "modalities": self.modalities,
            "kind": self.kind,
        }
        if self.box is not None:
            d["box"] = [round(float(b), 3) for b in self.box]
        d["detail"] = self.detail
        return d


@dataclass
class Scene:
    spec: ClipSpec
    actors: list[Actor]
    clouds: list[Cloud]
    audio_events: list[AudioEvent]
    ground_truth: list[GroundTruth]
    light_phase: tuple[float, float]


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, stream])


def _interval(mask: np.ndarray) -> tuple[float, float]:
    idx = np.nonzero(mask)[0]
    if len(idx) == 0:
        raise ValueError("anomaly never visible")
    if np.any(np.diff(idx) != 1):
        raise ValueError("anomaly visibility is not one interval")
    return idx[0] / FPS, (idx[-1] + 1) / FPS


def _union_box(actor: Actor, times: np.ndarray) -> list[float]:
    x, z, hx, hz, _ = actor.track.state(times)
    boxes = np.array(
        [actor.bbox(float(a), float(b), float(c), float(d)) for a, b, c, d in zip(x, z, hx, hz, strict=True)]
    )
    u0, v0 = max(boxes[:, 0].min(), 0.0), max(boxes[:, 1].min(), 0.0)
    u1, v1 = min(boxes[:, 2].max(), WIDTH), min(boxes[:, 3].max(), HEIGHT)
    return [u0 / WIDTH, v0 / HEIGHT, u1 / WIDTH, v1 / HEIGHT]


def _align(actor: Actor, start: float, condition: Callable[[Actor, np.ndarray], np.ndarray]) -> Actor:
    """Shift the actor in time so that ``condition`` first holds at frame time ``start``."""
    probe = np.arange(actor.track.t_start, actor.track.t_end + 1 / FPS, 1 / FPS)
    first = probe[np.argmax(condition(actor, probe))]
    # a hair early, so that float rounding cannot push the onset past the frame at ``start``
    return replace(actor, track=actor.track.shifted(start - first - 1e-4))


def _visible_cond(actor: Actor, times: np.ndarray) -> np.ndarray:
    return _visible_frames(actor, times)


def _on_forbidden_cond(actor: Actor, times: np.ndarray) -> np.ndarray:
    x, z, *_ = actor.track.state(times)
    active = (times >= actor.track.t_start) & (times <= actor.track.t_end)
    return _visible_frames(actor, times) & in_forbidden(x, z) & active


def _video_anomaly(spec: AnomalySpec, rng: np.random.Generator):
    """-> (actor, condition, modalities, detail, audio events relative to the actor's own clock)."""
    v = spec.variant
    if v == "bicycle":
        z = 15.4
        pts = [(-x_offscreen(z, 2.0), z), (x_offscreen(z, 2.0), z)]
        return (
            Actor("bicycle", Track.constant(pts, 0.0, 8.0), random_look(rng), colour=(30, 120, 200)),
            _visible_cond,
            ["video"],
            "cyclist crossing the promenade at 8 m/s",
        )
    if v == "scooter":
        z, x = 37.2, 0.2
        pts = [(x_offscreen(z, 1.5), z), (x, z), (x, 3.5)]
        return (
            Actor("scooter", Track.constant(pts, 0.0, 10.0), random_look(rng)),
            _visible_cond,
            ["video"],
            "e-scooter along the facade and down the axis walkway towards the camera at 10 m/s",
        )
    if v == "car_backfire":
        z = 16.5
        pts = [(x_offscreen(z, 4.0), z), (-x_offscreen(z, 4.0), z)]
        return (
            Actor("car", Track.constant(pts, 0.0, 12.0), colour=(165, 28, 30)),
            _visible_cond,
            ["video", "audio"],
            "car speeding along the promenade at 12 m/s, engine roar and a backfire",
        )
    if v == "van":
        z = 16.4
        pts = [(x_offscreen(z, 3.5), z), (-x_offscreen(z, 3.5) - 2.0, z)]
        track = Track.kinematic(pts, 0.0, 8.5, [(2.7, -3.1), (2.0, 0.0), (1.0, 3.4)])
        return (
            Actor("van", track, colour=(222, 222, 216)),
            _visible_cond,
            ["video"],
            "white van drives onto the promenade, stops for 2 s and drives off",
        )
    if v == "walk_lawn":
        zp = 15.0
        pts = [(-x_offscreen(zp), zp), (4.6, zp), (7.6, 4.0)]
        return (
            Actor("person", Track.constant(pts, 0.0, 1.35), random_look(rng)),
            _on_forbidden_cond,
            ["video"],
            "person leaves the promenade and walks across the front lawn out of view",
        )
    if v == "run_scream":
        zp = 17.0
        pts = [(x_offscreen(zp), zp), (-6.5, zp), (-7.0, 18.7), (-11.5, 33.8), (-x_offscreen(34.5), 34.5)]
        track = Track.segment_speeds(pts, 0.0, [1.4, 2.6, 3.6, 3.6])
        return (
            Actor("person", track, random_look(rng), step_level=2.2),
            _on_forbidden_cond,
            ["video", "audio"],
            "person runs screaming across the back-left planted bed",
        )
    raise ValueError(f"unknown video anomaly variant {v}")


def build_scene(spec: ClipSpec) -> Scene:
    """Everything that happens in a clip, decided from its seed before any pixel or sample is made."""
    times = _frame_times(spec.duration_s)
    actors: list[Actor] = []
    audio: list[AudioEvent] = []
    truth: list[GroundTruth] = []
    arng = _rng(spec.seed, 10)
    for i, an in enumerate(spec.anomalies):
        rng = _rng(spec.seed, 100 + i)
        if an.kind in ("bang", "glass_break", "scream", "siren"):
            samples = AUDIO_ANOMALIES[an.kind](rng)
            audio.append(AudioEvent(an.start, samples))
            truth.append(
                GroundTruth(
                    an.start,
                    an.start + len(samples) / SAMPLE_RATE,
                    ["audio"],
                    an.kind,
                    AUDIO_DETAILS[an.kind],
                )
            )
            continue
        actor, cond, modalities, detail = _video_anomaly(an, rng)
        # the car is heard before it is seen: its interval starts with the engine, CAR_LEAD_S earlier
        actor = _align(actor, an.start + (CAR_LEAD_S if an.variant == "car_backfire" else 0.0), cond)
        mask = cond(actor, times)
        t0, t1 = _interval(mask)
        box = _union_box(actor, times[mask])
        if an.variant == "car_backfire":
            engine, engine_start = car_pass_audio(actor.track, rng, t0, t1)
            audio.append(AudioEvent(engine_start, engine))
            t0, t1 = min(t0, engine_start), max(t1, engine_start + len(engine) / SAMPLE_RATE)
        if an.variant == "run_scream":
            scream = synth_scream(rng, 2.4)
            audio.append(AudioEvent(t0 + 0.6, scream))
            t1 = max(t1, t0 + 0.6 + len(scream) / SAMPLE_RATE)
        truth.append(GroundTruth(t0, t1, modalities, an.kind, detail, box))
        actors.append(actor)
    truth.sort(key=lambda g: g.start)
    _check_truth(spec, truth)
    if spec.tamper is not None:
        tp = spec.tamper
        truth.append(GroundTruth(tp.start, tp.end, ["tampering"], tp.kind, TAMPER_DETAILS[tp.kind]))
    crowd = build_crowd(_rng(spec.seed, 1), spec.duration_s, actors)
    actors = crowd + actors
    clouds = build_clouds(_rng(spec.seed, 2), spec.duration_s)
    light = tuple(float(v) for v in arng.uniform(0, 2 * np.pi, size=2))
    return Scene(spec, actors, clouds, audio, truth, light)  # type: ignore[arg-type]


def _check_truth(spec: ClipSpec, truth: Sequence[GroundTruth]) -> None:
    prev_end = -math.inf
    for g in truth:
        dur = g.end - g.start
        if g.start < 8.0 or g.end > spec.duration_s - 0.5:
            raise ValueError(
                f"{spec.name}: {g.kind} at {g.start:.2f}-{g.end:.2f} s is too close to the clip edges"
            )
        if not 2.0 - 1e-6 <= dur <= 8.0 + 1e-6:
            raise ValueError(f"{spec.name}: {g.kind} lasts {dur:.2f} s (want 2-8 s)")
        if g.start - prev_end < 6.0 - 1e-6:
            raise ValueError(f"{spec.name}: {g.kind} at {g.start:.2f} s is < 6 s after the previous anomaly")
        prev_end = g.end


# ------------------------------------------------------------------------------------------- video rendering
def light_gain(scene: Scene, t: float) -> float:
    """Slow drift of the daylight: a few % over a minute."""
    a, b = scene.light_phase
    return 1.0 + 0.025 * math.sin(2 * math.pi * t / 83.0 + a) + 0.012 * math.sin(2 * math.pi * t / 29.0 + b)


def render_frames(scene: Scene, background: Background | None = None) -> Iterator[np.ndarray]:
    """RGB uint8 frames (HEIGHT, WIDTH, 3), one per 1/FPS s from t = 0."""
    bg = background or render_background()
    nrng = _rng(scene.spec.seed, 3)
    pad = 24
    noise_bank = [nrng.normal(0, 1.1, size=(HEIGHT + pad, WIDTH + pad)).astype(np.float32) for _ in range(6)]
    gx_half = bg.ground_x[::2, ::2]
    gz_half = np.broadcast_to(bg.ground_z, (HEIGHT, WIDTH))[::2, ::2]
    frame = np.empty((HEIGHT, WIDTH, 3), np.float32)
    out = np.empty((HEIGHT, WIDTH, 3), np.uint8)
    for i in range(scene.spec.n_frames):
        t = i / FPS
        np.copyto(frame, bg.albedo)
        painter = Painter(frame)
        items: list[tuple[float, int, Actor | None, tuple]] = []
        for a in scene.actors:
            if not a.track.t_start <= t <= a.track.t_end:
                continue
            x, z, hx, hz, _ = (float(q) for q in a.track.state(t))
            box = a.bbox(x, z, hx, hz)
            if visible_fraction(box) > 0:
                items.append((z, 1, a, box))
        # fixed objects are in the background already; repaint one only where it stands in front of someone
        actor_boxes = [(z, b) for z, _, _, b in items]
        for oz, (bx0, by0, bx1, by1), rgb, alpha in bg.occluders:
            if any(
                z > oz and b[0] < bx1 and b[2] > bx0 and b[1] < by1 and b[3] > by0 for z, b in actor_boxes
            ):
                items.append((oz, 0, None, ((bx0, by0, bx1, by1), rgb, alpha)))
        for _z, _k, actor, payload in sorted(items, key=lambda it: (-it[0], it[1])):
            if actor is not None:
                draw_actor(painter, actor, t)
            else:
                (bx0, by0, bx1, by1), rgb, alpha = payload
                region = frame[by0:by1, bx0:bx1]
                region[:] = rgb + (1 - alpha[..., None]) * region
        illum = bg.vignette * np.float32(light_gain(scene, t))
        shade = cloud_shade(scene.clouds, t, gx_half, gz_half)
        if shade is not None:
            full = np.repeat(np.repeat(shade, 2, axis=0), 2, axis=1)[:HEIGHT, :WIDTH]
            illum = illum * (1 - full.astype(np.float32))[..., None]
        frame *= illum
        if scene.spec.tamper is not None:
            tamper_frame(frame, scene.spec.tamper, t)
        k = int(nrng.integers(len(noise_bank)))
        oy, ox = (int(v) for v in nrng.integers(0, pad, size=2))
        frame += noise_bank[k][oy : oy + HEIGHT, ox : ox + WIDTH, None]
        np.clip(frame, 0, 255, out=frame)
        np.rint(frame, out=frame)
        out[:] = frame
        yield out


# ------------------------------------------------------------------------------------------------ tampering
TAMPER_DETAILS = {
    "blackout": "the picture goes black within 0.2 s (lens sprayed, light blocked) and comes back",
    "covered": "a hand slides over the lens, stays, and is taken away",
    "defocus": "the focus is turned: the picture blurs within 0.6 s, then is sharp again",
    "moved": "the camera is knocked upwards (the plaza drops, sky above the building comes in) and stays so",
}
# seconds each kind takes to set in (and to go away again)
_TAMPER_RAMP_S = {"blackout": 0.2, "covered": 0.3, "defocus": 0.6, "moved": 0.4}
_COVER_RGB = np.array([62.0, 47.0, 41.0], np.float32)  # the palm of a hand over the lens, out of focus
_SKY_TOP, _SKY_HORIZON = np.array([120.0, 150.0, 190.0], np.float32), np.array([200.0, 210.0, 220.0], np.float32)


def _box_blur(img: np.ndarray, radius: int, axis: int) -> np.ndarray:
    """Mean over 2 * radius + 1 pixels along ``axis``, edges repeated (three passes ~ a Gaussian)."""
    pad = [(0, 0)] * img.ndim
    pad[axis] = (radius + 1, radius)
    c = np.cumsum(np.pad(img, pad, mode="edge"), axis=axis, dtype=np.float64)
    n = img.shape[axis]
    hi = np.take(c, np.arange(2 * radius + 1, 2 * radius + 1 + n), axis=axis)
    lo = np.take(c, np.arange(0, n), axis=axis)
    return ((hi - lo) / (2 * radius + 1)).astype(np.float32)


def tamper_frame(frame: np.ndarray, tamper: TamperSpec, t: float) -> None:
    """Apply ``tamper`` at time ``t`` to the lit frame (before the sensor noise, which the sensor still adds)."""
    ramp = _TAMPER_RAMP_S[tamper.kind]
    p = min(1.0, max(0.0, (t - tamper.start) / ramp), max(0.0, (tamper.end - t) / ramp))
    if p <= 0.0:
        return
    if tamper.kind == "blackout":
        frame *= np.float32(1.0 - 0.97 * p)
    elif tamper.kind == "covered":
        edge = int(round(WIDTH * (1.0 - p)))  # the hand comes in from the right
        shade = 1.0 + 0.04 * np.linspace(-1.0, 1.0, HEIGHT, dtype=np.float32)[:, None, None]
        if edge < WIDTH:
            frame[:, edge:] = _COVER_RGB * shade
    elif tamper.kind == "defocus":
        radius = int(round(5 * p))
        if radius:
            for axis in (0, 1):
                for _ in range(3):
                    frame[:] = _box_blur(frame, radius, axis)
    elif tamper.kind == "moved":
        dy = int(round(120 * p))  # knocked upwards: the plaza drops out of the bottom, sky comes in at the top
        if dy:
            frame[dy:] = frame[: HEIGHT - dy].copy()
            down = np.linspace(0.0, 1.0, dy, dtype=np.float32)[:, None, None]
            frame[:dy] = _SKY_TOP + (_SKY_HORIZON - _SKY_TOP) * down
    else:
        raise ValueError(f"unknown tampering {tamper.kind!r}")


# ------------------------------------------------------------------------------------------- audio synthesis
def _fft_filter(x: np.ndarray, gain: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    spec = np.fft.rfft(x)
    f = np.fft.rfftfreq(len(x), 1 / SAMPLE_RATE)
    return np.fft.irfft(spec * gain(f), n=len(x))


def _coloured_noise(
    rng: np.random.Generator, n: int, exponent: float, lo: float = 20.0, hi: float = 7000.0
) -> np.ndarray:
    """Noise with power ~ 1/f**exponent between lo and hi Hz, unit RMS."""
    x = rng.standard_normal(n)

    def g(f):
        ff = np.maximum(f, lo)
        return ff ** (-exponent / 2) * (f >= lo * 0.5) / (1 + (f / hi) ** 8)

    y = _fft_filter(x, g)
    return y / (np.sqrt(np.mean(y * y)) + 1e-12)


def _bandpass(x: np.ndarray, lo: float, hi: float, order: int = 4) -> np.ndarray:
    return _fft_filter(x, lambda f: 1 / (1 + (lo / np.maximum(f, 1e-3)) ** order) / (1 + (f / hi) ** order))


def _add(out: np.ndarray, x: np.ndarray, start_s: float, gain: float = 1.0) -> None:
    i0 = int(round(start_s * SAMPLE_RATE))
    a0, b0 = max(i0, 0), min(i0 + len(x), len(out))
    if a0 < b0:
        out[a0:b0] += gain * x[a0 - i0 : b0 - i0]


def _env(n: int, attack: float, release: float) -> np.ndarray:
    e = np.ones(n)
    na, nr = max(int(attack * SAMPLE_RATE), 1), max(int(release * SAMPLE_RATE), 1)
    e[:na] = np.linspace(0, 1, na)
    e[-nr:] = np.minimum(e[-nr:], np.linspace(1, 0, nr))
    return e


def _formant_gain(freqs: np.ndarray, formants: Sequence[tuple[float, float, float]]) -> np.ndarray:
    g = np.zeros_like(freqs)
    for fc, bw, amp in formants:
        g += amp / (1 + ((freqs - fc) / (bw / 2)) ** 2)
    return g


VOWELS = [  # F1, F2, F3 (Hz)
    (730, 1090, 2440),
    (530, 1840, 2480),
    (270, 2290, 3010),
    (570, 840, 2410),
    (300, 870, 2240),
    (660, 1720, 2410),
]


def synth_voice(rng: np.random.Generator, dur: float, f0: float) -> np.ndarray:
    """A few seconds of speech-like sound: syllables with moving formants and a falling pitch, unit RMS."""
    n = int(dur * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    # syllable timeline
    bounds = [0.0]
    while bounds[-1] < dur:
        bounds.append(bounds[-1] + float(rng.uniform(0.13, 0.3)))
    syl = np.searchsorted(np.asarray(bounds), t, side="right") - 1
    pos = (t - np.asarray(bounds)[syl]) / (np.diff(bounds)[np.minimum(syl, len(bounds) - 2)])
    amp = np.sin(np.pi * np.clip(pos, 0, 1)) ** 0.7 * rng.uniform(0.4, 1.0, size=len(bounds))[syl]
    pause = rng.random(len(bounds)) < 0.15
    amp *= ~pause[syl]
    pitch = f0 * (1 + 0.08 * np.sin(2 * np.pi * t / dur * rng.uniform(0.5, 1.5)) - 0.1 * t / dur)
    pitch *= 1 + 0.05 * rng.uniform(-1, 1, size=len(bounds))[syl]
    phase = 2 * np.pi * np.cumsum(pitch) / SAMPLE_RATE
    vowel = np.asarray(VOWELS)[rng.integers(len(VOWELS), size=len(bounds))][syl]  # (n, 3)
    y = np.zeros(n)
    for k in range(1, int(3800 / f0)):
        fk = k * pitch
        g = np.zeros(n)
        for j, (bw, a) in enumerate(((90, 1.0), (110, 0.6), (170, 0.3))):
            g += a / (1 + ((fk - vowel[:, j]) / (bw / 2)) ** 2)
        y += g * np.sin(k * phase) / k**0.5
    y *= amp
    y += 0.15 * _bandpass(rng.standard_normal(n), 2000, 6000) * amp * (rng.random(len(bounds)) < 0.4)[syl]
    return y / (np.sqrt(np.mean(y * y)) + 1e-12)


def _distant(
    x: np.ndarray, rng: np.random.Generator, cutoff: float = 2500.0, reverb: float = 0.35
) -> np.ndarray:
    """Low-pass and a short diffuse tail: how a sound tens of metres away reaches the microphone."""
    y = _fft_filter(x, lambda f: 1 / (1 + (f / cutoff) ** 4))
    tail_n = int(0.6 * SAMPLE_RATE)
    ir = rng.standard_normal(tail_n) * np.exp(-np.arange(tail_n) / (0.18 * SAMPLE_RATE))
    ir = _fft_filter(ir, lambda f: 1 / (1 + (f / 3000) ** 2))
    ir *= reverb / np.sqrt(np.sum(ir * ir))
    ir[0] += 1.0
    m = len(y) + tail_n
    nfft = 1 << (m - 1).bit_length()
    return np.fft.irfft(np.fft.rfft(y, nfft) * np.fft.rfft(ir, nfft), nfft)[:m]


def _mic_distance(x: np.ndarray, z: np.ndarray, h: float = 1.0) -> np.ndarray:
    return np.sqrt((x - MIC[0]) ** 2 + (h - MIC[1]) ** 2 + (z - MIC[2]) ** 2)


def ambience(rng: np.random.Generator, n: int) -> np.ndarray:
    """Background noise (pink + brown) and mains hum with harmonics."""
    t = np.arange(n) / SAMPLE_RATE
    y = 0.0155 * _coloured_noise(rng, n, 1.0, 30) + 0.023 * _coloured_noise(rng, n, 2.0, 25, 2000)
    wobble = 1 + 0.1 * np.sin(2 * np.pi * t / rng.uniform(7, 13) + rng.uniform(0, 6))
    for k, a in ((1, 0.003), (2, 0.0016), (3, 0.0024), (5, 0.001), (7, 0.0005)):
        y += a * wobble * np.sin(2 * np.pi * 50.0 * k * t + rng.uniform(0, 2 * np.pi))
    return y


def traffic(rng: np.random.Generator, n: int) -> np.ndarray:
    """Distant vehicles on the street behind the building: swells of low rumble with an engine tone."""
    y = np.zeros(n)
    dur_total = n / SAMPLE_RATE
    t = float(rng.uniform(-6, 4))
    while t < dur_total:
        d = float(rng.uniform(4, 10))
        m = int(d * SAMPLE_RATE)
        tt = np.arange(m) / SAMPLE_RATE
        env = np.sin(np.pi * tt / d) ** 2
        rumble = _bandpass(rng.standard_normal(m), 40, float(rng.uniform(300, 700)), 2)
        rumble /= np.sqrt(np.mean(rumble**2)) + 1e-12
        f = float(rng.uniform(35, 70)) * (1.04 - 0.08 * tt / d)
        ph = 2 * np.pi * np.cumsum(f) / SAMPLE_RATE
        tone = sum(np.sin(k * ph) / k for k in range(1, 6))
        ev = env * (rumble + 0.35 * tone) * float(rng.uniform(0.008, 0.022))
        _add(y, ev, t)
        t += float(rng.uniform(4, 14))
    return y


def birds(rng: np.random.Generator, n: int) -> np.ndarray:
    y = np.zeros(n)
    t = float(rng.uniform(0, 12))
    while t < n / SAMPLE_RATE:
        base = float(rng.uniform(2600, 5200))
        level = float(rng.uniform(0.004, 0.014))
        tc = t
        for _ in range(int(rng.integers(2, 7))):
            d = float(rng.uniform(0.04, 0.12))
            m = int(d * SAMPLE_RATE)
            tt = np.arange(m) / SAMPLE_RATE
            f = base + float(rng.uniform(-900, 900)) * tt / d
            chirp = np.sin(2 * np.pi * np.cumsum(f) / SAMPLE_RATE) * np.sin(np.pi * tt / d) ** 2
            _add(y, level * chirp, tc)
            tc += d + float(rng.uniform(0.05, 0.2))
        t += float(rng.exponential(14.0))
    return y


def babble(rng: np.random.Generator, n: int) -> np.ndarray:
    """Faint voices of people out of view (across the plaza, in the street)."""
    y = np.zeros(n)
    t = float(rng.uniform(0, 8))
    while t < n / SAMPLE_RATE:
        d = float(rng.uniform(1.0, 3.5))
        v = synth_voice(rng, d, float(rng.choice([115, 130, 190, 215])) * float(rng.uniform(0.9, 1.1)))
        _add(y, _distant(v * float(rng.uniform(0.003, 0.008)), rng, 1800, 0.5), t)
        t += float(rng.exponential(9.0))
    return y


def footsteps(rng: np.random.Generator, n: int, actors: Sequence[Actor]) -> np.ndarray:
    """Footfalls of the people in the scene, louder when nearer the microphone; pairs sometimes chat."""
    y = np.zeros(n)
    grains = []
    for _ in range(12):
        m = int(0.09 * SAMPLE_RATE)
        tt = np.arange(m) / SAMPLE_RATE
        g = _bandpass(rng.standard_normal(m), 80, float(rng.uniform(900, 2200)), 2) * np.exp(-tt / 0.016)
        g += 0.4 * _bandpass(rng.standard_normal(m), 2500, 6000, 2) * np.exp(-tt / 0.004)
        grains.append(g / np.max(np.abs(g)))
    dur = n / SAMPLE_RATE
    chatted: set[int] = set()
    for a in actors:
        if a.kind != "person" or a.track.t_end < 0 or a.track.t_start > dur:
            continue
        assert a.look is not None
        step = a.look.stride
        s_k = np.arange(step * float(rng.uniform(0, 1)), a.track.length, step)
        ts = np.interp(s_k, a.track.s_knots + np.arange(len(a.track.s_knots)) * 1e-9, a.track.t_knots)
        x, z, *_ = a.track.state(ts)
        dist = _mic_distance(x, z, 0.0)
        keep = (ts >= 0) & (ts < dur) & (dist < 40)
        running = a.step_level > 1.5
        for tk, dk in zip(ts[keep], dist[keep], strict=True):
            level = 0.05 * a.step_level * (10.0 / max(dk, 7.0)) ** 1.3 * float(rng.uniform(0.6, 1.2))
            if not running and dk > 25:
                level *= 0.5
            _add(y, level * grains[int(rng.integers(len(grains)))], float(tk) + float(rng.normal(0, 0.01)))
        if a.pair >= 0 and a.pair not in chatted and rng.random() < 0.7:
            chatted.add(a.pair)
            t0 = max(a.track.t_start, 0.0) + float(
                rng.uniform(0, max(a.track.t_end - a.track.t_start - 3, 0.1))
            )
            if t0 < dur:
                xx, zz, *_ = a.track.state(t0)
                d = float(_mic_distance(np.asarray(xx), np.asarray(zz), 1.6))
                v = synth_voice(rng, float(rng.uniform(1.2, 3.0)), float(rng.choice([120, 200, 220])))
                _add(y, _distant(v * 0.012 * (12.0 / max(d, 8.0)), rng, 3000, 0.25), t0)
    return y


def synth_bang(rng: np.random.Generator) -> np.ndarray:
    """Two loud bangs ~0.7 s apart (firecracker / gunshot-like) with their echo off the building."""
    dur = 2.2
    n = int(dur * SAMPLE_RATE)
    y = np.zeros(n)
    for at, level in ((0.0, 1.0), (float(rng.uniform(0.55, 0.85)), float(rng.uniform(0.6, 0.8)))):
        m = int(1.4 * SAMPLE_RATE)
        tt = np.arange(m) / SAMPLE_RATE
        crack = rng.standard_normal(m) * np.exp(-tt / 0.008)
        body = _bandpass(rng.standard_normal(m), 60, 900, 2) * np.exp(-tt / 0.09) * 3
        thump = np.sin(2 * np.pi * 62 * tt) * np.exp(-tt / 0.12) * 0.8
        tail = _bandpass(rng.standard_normal(m), 100, 3000, 2) * np.exp(-tt / 0.4) * 0.35
        b = crack + body + thump + tail
        b /= np.max(np.abs(b))
        echo_at = 2 * BUILDING_Z / SPEED_OF_SOUND
        _add(y, level * b, at)
        _add(y, 0.22 * level * _fft_filter(b, lambda f: 1 / (1 + (f / 2500) ** 2)), at + echo_at)
    y *= _env(n, 0.0001, 0.3)
    return 0.7 * y / np.max(np.abs(y))


def synth_glass_break(rng: np.random.Generator) -> np.ndarray:
    """Sharp impact, a burst of high-frequency noise and ringing partials, then falling shards tinkling."""
    dur = float(rng.uniform(2.3, 2.6))
    n = int(dur * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    y = np.zeros(n)
    y += _bandpass(rng.standard_normal(n), 2000, 7500) * np.exp(-t / 0.07) * 1.2
    y += rng.standard_normal(n) * np.exp(-t / 0.004) * 1.5
    for _ in range(30):
        f = float(rng.uniform(1800, 7400))
        t0 = float(rng.uniform(0, 0.05))
        tau = float(rng.uniform(0.04, 0.35))
        tt = np.clip(t - t0, 0, None)
        y += (
            float(rng.uniform(0.1, 0.5))
            * np.sin(2 * np.pi * f * tt + rng.uniform(0, 6))
            * np.exp(-tt / tau)
            * (t >= t0)
        )
    for _ in range(int(rng.integers(8, 14))):
        t0 = float(rng.uniform(0.2, dur - 0.4))
        tt = np.clip(t - t0, 0, None)
        g = float(rng.uniform(0.08, 0.35)) * (1 - 0.6 * t0 / dur)
        for _ in range(4):
            f = float(rng.uniform(2500, 7500))
            y += g * np.sin(2 * np.pi * f * tt) * np.exp(-tt / rng.uniform(0.015, 0.08)) * (t >= t0)
    y *= _env(n, 0.0002, 0.25)
    return 0.5 * y / np.max(np.abs(y))


def synth_scream(rng: np.random.Generator, dur: float | None = None) -> np.ndarray:
    """A scream: harmonic sweep up to ~900 Hz with vibrato and roughness, open-vowel formants."""
    dur = dur or float(rng.uniform(2.2, 2.8))
    n = int(dur * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    peak = float(rng.uniform(800, 1000))
    f0 = 450 + (peak - 450) * np.clip(t / 0.35, 0, 1) ** 0.6
    f0 *= 1 - 0.25 * np.clip((t - 0.65 * dur) / (0.35 * dur), 0, 1) ** 1.5
    f0 *= 1 + 0.03 * np.sin(2 * np.pi * float(rng.uniform(5.5, 7.0)) * t)
    f0 *= 1 + 0.004 * _bandpass(rng.standard_normal(n), 10, 60, 2) / 0.1
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    formants = ((900, 250, 1.0), (1450, 300, 0.8), (2900, 450, 0.35), (4000, 600, 0.15))
    y = np.zeros(n)
    for k in range(1, 12):
        fk = k * f0
        y += _formant_gain(fk, formants) * np.sin(k * phase) * (fk < 7600)
    y *= 1 + 0.15 * np.sin(2 * np.pi * 33 * t)  # roughness
    y += 0.08 * _bandpass(rng.standard_normal(n), 1500, 6000) * np.max(np.abs(y))
    y *= _env(n, 0.08, 0.35) * (1 + 0.15 * np.sin(2 * np.pi * t / dur * 2.3))
    y = _distant(y, rng, 6000, 0.25)[:n]
    y *= _env(n, 0.0, 0.05)
    return 0.13 * y / np.sqrt(np.mean(y[: int(0.8 * n)] ** 2))


def synth_siren(rng: np.random.Generator) -> np.ndarray:
    """An emergency vehicle's wail passing on the street behind the building (approach, pass, recede)."""
    dur = float(rng.uniform(4.0, 4.4))
    n = int(dur * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    period = float(rng.uniform(2.6, 3.4))
    f0 = 640 + 560 * (0.5 - 0.5 * np.cos(2 * np.pi * t / period + rng.uniform(0, 1)))
    f0 *= 1 + 0.025 * np.tanh((dur / 2 - t) / 0.8)  # Doppler as it passes
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    y = sum(np.sin(k * phase) / k**1.1 for k in range(1, 9))
    env = np.exp(-(((t - dur / 2) / (dur * 0.32)) ** 2))
    env = np.maximum(env - env[0], 0)
    env /= env.max()
    y = _distant(y * env, rng, 4500, 0.3)[:n]
    y *= _env(n, 0.0, 0.1)
    return 0.4 * y / np.max(np.abs(y))


CAR_LEAD_S = 0.48  # a whole number of frames


def car_pass_audio(
    track: Track, rng: np.random.Generator, t_in: float, t_out: float
) -> tuple[np.ndarray, float]:
    """Engine roar with Doppler shift of a car on ``track`` (mic-relative), with a backfire as it passes.

    The car is in view from ``t_in`` to ``t_out``; the samples start CAR_LEAD_S earlier (the roar is heard
    before the car is seen) and end once it has faded. Returns the samples and their start time.
    """
    start, end = t_in - CAR_LEAD_S, t_out + 0.8
    n = int((end - start) * SAMPLE_RATE)
    tt = start + np.arange(n) / SAMPLE_RATE
    xs, zs, *_ = track.state(tt)
    dist = _mic_distance(xs, zs, 0.6)
    v_r = np.gradient(dist, 1 / SAMPLE_RATE)
    doppler = SPEED_OF_SOUND / (SPEED_OF_SOUND + v_r)
    fire = 105.0 * doppler
    phase = 2 * np.pi * np.cumsum(fire) / SAMPLE_RATE
    y = np.zeros(n)
    for k in range(1, 40):
        if k * 105 * 1.05 > 7000:
            break
        y += (1 / k**0.8) * np.sin(k * phase + rng.uniform(0, 6))
    y *= 1 + 0.25 * np.sin(phase / 2)  # uneven firing
    y += 0.9 * _bandpass(rng.standard_normal(n), 150, 2500, 2) * np.std(y)  # tyres and wind
    gain = 17.0 / np.maximum(dist, 5.0)
    fade = _env(n, 0.5, 0.9)
    y *= gain * fade
    y = 0.12 * y / np.sqrt(np.mean(y[np.argmin(dist) - 4000 : np.argmin(dist) + 4000] ** 2))
    bang_at = float(tt[np.argmin(dist)]) + 0.25 - start
    bang = synth_bang(rng)[: int(0.9 * SAMPLE_RATE)] * 0.8
    bang *= _env(len(bang), 0.0, 0.3)
    _add(y, bang, bang_at)
    return y, float(start)


AUDIO_ANOMALIES: dict[str, Callable[[np.random.Generator], np.ndarray]] = {
    "bang": synth_bang,
    "glass_break": synth_glass_break,
    "scream": synth_scream,
    "siren": synth_siren,
}
AUDIO_DETAILS = {
    "bang": "two loud bangs (firecracker / gunshot-like) with an echo off the building",
    "glass_break": "glass breaking: sharp impact, ringing high partials, falling shards",
    "scream": "a scream (rising harmonic sweep with vibrato)",
    "siren": "emergency siren wail passing behind the building",
}


def render_audio(scene: Scene) -> np.ndarray:
    """Mono float32 samples in [-1, 1] at SAMPLE_RATE, from t = 0."""
    n = scene.spec.n_samples
    seed = scene.spec.seed
    y = ambience(_rng(seed, 20), n)
    y += traffic(_rng(seed, 21), n)
    y += birds(_rng(seed, 22), n)
    y += babble(_rng(seed, 23), n)
    y += footsteps(_rng(seed, 24), n, scene.actors)
    for ev in scene.audio_events:
        _add(y, ev.samples, ev.start)
    peak = float(np.max(np.abs(y)))
    if peak > 0.95:
        raise ValueError(f"{scene.spec.name}: audio peak {peak:.2f} would clip")
    return y.astype(np.float32)


# -------------------------------------------------------------------------------------------------- encoding
def encode(out_path: Path, frames: Iterator[np.ndarray], audio: np.ndarray, n_frames: int) -> None:
    """Mux H.264 video and AAC audio into MKV, interleaved by time; written to a temporary name first."""
    import av

    tmp = out_path.with_name(out_path.name + ".part")
    container = av.open(str(tmp), "w", format="matroska", options={"fflags": "+bitexact"})
    try:
        vs = container.add_stream(
            "libx264",
            rate=FPS,
            options={"crf": str(VIDEO_CRF), "preset": VIDEO_PRESET, "x264-params": X264_PARAMS},
        )
        vs.width, vs.height, vs.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        vs.codec_context.flags |= av.codec.context.Flags.bitexact  # no version string in the stream headers
        aus = container.add_stream("aac", rate=SAMPLE_RATE, layout="mono")
        aus.bit_rate = AUDIO_BITRATE
        a_pos = 0
        for i, img in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(img, format="rgb24")
            vf.pts = i
            for pkt in vs.encode(vf):
                container.mux(pkt)
            a_until = len(audio) if i == n_frames - 1 else (i + 1) * SAMPLE_RATE // FPS
            while a_pos + AAC_FRAME <= a_until or (a_pos < a_until == len(audio)):
                chunk = audio[a_pos : a_pos + AAC_FRAME]
                af = av.AudioFrame.from_ndarray(chunk[None, :], format="fltp", layout="mono")
                af.sample_rate, af.pts = SAMPLE_RATE, a_pos
                for pkt in aus.encode(af):
                    container.mux(pkt)
                a_pos += len(chunk)
        for stream in (vs, aus):
            for pkt in stream.encode(None):
                container.mux(pkt)
    finally:
        container.close()
    os.replace(tmp, out_path)


def ground_truth_json(scene: Scene) -> dict:
    spec = scene.spec
    return {
        "clip": f"{spec.name}.mkv",
        "duration_s": spec.duration_s,
        "fps": FPS,
        "width": WIDTH,
        "height": HEIGHT,
        "sample_rate": SAMPLE_RATE,
        "seed": spec.seed,
        "generator_version": GENERATOR_VERSION,
        "anomalies": [g.as_json() for g in scene.ground_truth],
    }


def render_clip(spec: ClipSpec, out_path: Path, background: Background | None = None) -> dict:
    """Render one clip to ``out_path`` (.mkv) and its ground truth next to it (.json); returns the latter."""
    scene = build_scene(spec)
    audio = render_audio(scene)
    encode(out_path, render_frames(scene, background), audio, spec.n_frames)
    truth = ground_truth_json(scene)
    json_path = out_path.with_suffix(".json")
    json_path.write_text(json.dumps(truth, indent=2) + "\n")
    return truth


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent, help="output directory")
    parser.add_argument(
        "--only", action="append", choices=sorted(CLIPS_BY_NAME), help="clip(s) to regenerate"
    )
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    bg = render_background()
    t_all = time.monotonic()
    for spec in (*CLIPS, *EXTRA_NORMAL_CLIPS, *TAMPER_CLIPS):
        if args.only and spec.name not in args.only:
            continue
        t0 = time.monotonic()
        truth = render_clip(spec, args.out / f"{spec.name}.mkv", bg)
        size = (args.out / f"{spec.name}.mkv").stat().st_size
        n_anomalies = len(truth["anomalies"])
        elapsed = time.monotonic() - t0
        print(f"{spec.name}.mkv  {spec.duration_s:5.1f} s  {size / 1e6:5.2f} MB", end="  ")
        print(f"{n_anomalies} anomalies  ({elapsed:.1f} s)")
    print(f"done in {time.monotonic() - t_all:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
