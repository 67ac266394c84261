"""Vectorised numpy drawing of one procedural face (used by ``synthetic-faces``).

A face is painted back to front on an ``(R, R, 3)`` float canvas: background
gradient, shoulders, long hair (female), neck, face, beard (male), nose, mouth,
eyes, eyebrows, front hair, eyeglasses and wrinkles (old). Every shape is an
anti-aliased alpha map computed in *face coordinates* ``(u, v)`` – the face is
about ``u ∈ [-0.45, 0.45]``, ``v ∈ [-0.55, 0.6]``, ``v`` pointing down – so
pose jitter (translation, scale, rotation) costs one coordinate transform, and
small parts are computed only inside their bounding box.

The attributes are drawn where a face shows them:

===============  =============================================================
``Male``         short hair, beard or stubble, broader jaw, thicker eyebrows
                 (many pixels); female faces have long hair framing the face
``Smiling``      mouth corners raised by about two pixels at 64×64 (a few
                 pixels: deliberately subtler than ``Male``)
``Blond_Hair``   hair colour
``Eyeglasses``   two rings and a bridge around the eyes
``Young``        old faces have greyer hair and forehead wrinkles
``Skin_Tone``    0 light, 1 medium, 2 dark skin colour
===============  =============================================================

Nuisance variation (pose, lighting gradient, gaussian noise, hair styles,
background colours, eye, clothing and frame colours) comes from a per-image
generator; every random number is drawn in a fixed order whatever the
attributes are, so flipping one attribute with the same seed changes only the
pixels that show that attribute.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

REGION_NAMES = ("mouth", "eyes", "hair", "beard", "face", "skin", "background")

# Nuisance ranges: pose shift (image half-widths), relative scale, rotation,
# lighting gradient across the image, global brightness and noise level.
POSE_SHIFT = 0.07
POSE_SCALE = 0.1
POSE_DEGREES = 10.0
LIGHT_GRADIENT = 0.4
BRIGHTNESS = 0.12
NOISE_SIGMA = (0.01, 0.05)

# Smiles vary in intensity t ~ U(0, 1): the mouth corners rise by
# lerp(SMILE_LIFT, t) face units (one face unit is about 30 px at 64×64, so 0.06
# ≈ 2 px) and, above TEETH_FROM, the lips part by lerp(TEETH_OPENING, ·) to show
# a row of teeth. Faint smiles look much like neutral mouths, whose corners move
# by NEUTRAL_LIFT: the overlap is what a biased model resolves with gender.
SMILE_LIFT = (0.03, 0.09)
SMILE_WIDEN = 0.25  # a full smile is this much wider than the mouth at rest
NEUTRAL_LIFT = (-0.03, 0.015)
TEETH_FROM = 0.25
TEETH_OPENING = (0.06, 0.13)
# Teeth are the brightest thing in the picture (eyes, background and clothes stay darker).
TEETH = np.array([1.0, 0.99, 0.96], np.float32)
SCLERA = np.array([0.86, 0.85, 0.82], np.float32)

SKIN_TONES = np.array([[0.93, 0.78, 0.67], [0.76, 0.55, 0.40], [0.45, 0.30, 0.21]], np.float32)
DARK_HAIR = np.array([[0.07, 0.06, 0.05], [0.22, 0.14, 0.09], [0.40, 0.26, 0.15], [0.50, 0.22, 0.12]],
                     np.float32)
BLOND_HAIR = np.array([0.86, 0.72, 0.42], np.float32)
GREY_HAIR = np.array([0.72, 0.72, 0.72], np.float32)
LIP_TINT = np.array([0.62, 0.18, 0.20], np.float32)
IRIS_COLOURS = np.array([[0.30, 0.18, 0.08], [0.25, 0.45, 0.65], [0.30, 0.50, 0.30], [0.12, 0.08, 0.05]],
                        np.float32)

_N_DRAWS = 64  # uniform numbers drawn per face before the noise field
# Which of them describe the person rather than the photo: skin and hair colour, greying, iris, face and jaw
# shape, eye and mouth placement, lip thickness, hair length and style, hairline, beard style and extent. The
# others are the photo's: pose, background, clothes, frame colour, expression, lighting and noise level.
IDENTITY_DRAWS = (*range(11, 23), 26, *range(31, 38), *range(39, 51))
_TRIANGULAR_STD = math.sqrt(2 * (256 ** 2 - 1) / 12)  # of the sum of two uniform bytes


class _Draws:
    """Hands out the face's uniform random numbers in a fixed order."""

    def __init__(self, values: np.ndarray):
        self.values = values
        self.k = 0

    def __call__(self, lo: float = 0.0, hi: float = 1.0) -> float:
        value = lo + (hi - lo) * float(self.values[self.k])
        self.k += 1
        return value

    def colour(self, spread: float) -> np.ndarray:
        return np.array([self(-spread, spread) for _ in range(3)], np.float32)

    def choice(self, n: int) -> int:
        return min(int(self() * n), n - 1)


class _Canvas:
    """A channels-first RGB canvas with the face coordinates of every pixel."""

    def __init__(self, size: int, tx: float, ty: float, scale: float, angle: float):
        self.size = size
        self.img = np.empty((3, size, size), np.float32)
        axis = (np.arange(size, dtype=np.float32) + 0.5) * np.float32(2.0 / size) - np.float32(1.0)
        self.x, self.y = axis[None, :], axis[:, None]
        c, s = math.cos(angle), math.sin(angle)
        self.pose = (tx, ty, scale, c, s)
        dx, dy = (axis - tx) / scale, (axis - ty) / scale
        self.u = (c * dx)[None, :] + (s * dy)[:, None]
        self.v = (-s * dx)[None, :] + (c * dy)[:, None]
        self.px = 2.0 / size / scale  # one pixel in face units

    def box(self, u0: float, u1: float, v0: float, v1: float) -> tuple[slice, slice]:
        """Pixel rows and columns covering a face-coordinate box (with a one-pixel margin)."""
        tx, ty, scale, c, s = self.pose
        half = self.size / 2.0
        cu, cv, hu, hv = (u0 + u1) / 2, (v0 + v1) / 2, (u1 - u0) / 2, (v1 - v0) / 2
        col = (tx + scale * (c * cu - s * cv) + 1.0) * half - 0.5
        row = (ty + scale * (s * cu + c * cv) + 1.0) * half - 0.5
        ext_c = scale * (abs(c) * hu + abs(s) * hv) * half
        ext_r = scale * (abs(s) * hu + abs(c) * hv) * half
        r0, r1 = max(int(row - ext_r) - 1, 0), min(int(row + ext_r) + 3, self.size)
        c0, c1 = max(int(col - ext_c) - 1, 0), min(int(col + ext_c) + 3, self.size)
        return slice(r0, max(r0, r1)), slice(c0, max(c0, c1))

    def uv(self, box: tuple[slice, slice]) -> tuple[np.ndarray, np.ndarray]:
        return self.u[box], self.v[box]

    def paint(self, box: tuple[slice, slice], alpha: np.ndarray, colour: np.ndarray) -> None:
        region = self.img[(slice(None), *box)]
        delta = colour[:, None, None] - region
        delta *= alpha
        region += delta

    def full(self, box: tuple[slice, slice], alpha: np.ndarray) -> np.ndarray:
        out = np.zeros((self.size, self.size), np.float32)
        out[box] = alpha
        return out


def _unit(a: np.ndarray) -> np.ndarray:
    """Clamp to ``[0, 1]`` in place (two ufunc calls: cheaper than ``np.clip`` on small arrays)."""
    np.maximum(a, 0.0, out=a)
    return np.minimum(a, 1.0, out=a)


def _ellipse(u, v, cx, cy, rx, ry, px):
    """Anti-aliased alpha of the ellipse centred ``(cx, cy)`` with radii ``(rx, ry)``."""
    q = u - cx
    q *= 1.0 / rx
    q *= q
    w = v - cy
    w *= 1.0 / ry
    w *= w
    q += w
    # q ≈ 1 + 2·distance/r near the outline: a one-pixel ramp around q = 1.
    k = min(rx, ry) / (2.0 * px)
    q *= -k
    q += k + 0.5
    return _unit(q)


def _band(w, lo, hi, px):
    """Alpha of ``lo < w < hi`` with soft one-pixel edges."""
    a = w - lo
    a *= 1.0 / px
    a += 0.5
    b = hi - w
    b *= 1.0 / px
    b += 0.5
    _unit(a)
    a *= _unit(b)
    return a


def _above(w, lo, px):
    """Alpha of ``w > lo`` with a soft one-pixel edge."""
    a = w - lo
    a *= 1.0 / px
    a += 0.5
    return _unit(a)


def _rect(u, v, cx, cy, hx, hy, px):
    """Alpha of the axis-aligned rectangle ``|u-cx| < hx``, ``|v-cy| < hy`` (face coordinates)."""
    du = np.abs(u - cx)
    du -= hx
    dv = np.abs(v - cy)
    dv -= hy
    sdf = np.maximum(du, dv, out=du)
    sdf *= -1.0 / px
    sdf += 0.5
    return _unit(sdf)


def _parabola_stroke(u, v, cx, cy, half_width, lift, half_thick, px):
    """Stroke along ``v = cy - lift·((u-cx)/half_width)²`` for ``|u-cx| < half_width``.

    ``lift > 0`` raises both ends (a smile), ``lift < 0`` lowers them.
    """
    t = u - cx
    t *= 1.0 / half_width
    t2 = t * t
    t2 *= lift
    t2 += v
    t2 -= cy
    dist = np.abs(t2, out=t2)
    along = np.abs(t, out=t)
    along *= -half_width / px
    along += 0.5 + half_width / px
    dist *= -1.0 / px
    dist += 0.5 + half_thick / px
    _unit(dist)
    dist *= _unit(along)
    return dist


def _ring(u, v, cx, cy, radius, half_thick, px):
    dx = u - cx
    dx *= dx
    dy = v - cy
    dy *= dy
    dx += dy
    dist = np.sqrt(dx, out=dx)
    dist -= radius
    np.abs(dist, out=dist)
    dist *= -1.0 / px
    dist += 0.5 + half_thick / px
    return _unit(dist)


def render_face(attrs: Mapping[str, int], rng_seed: int | Sequence[int], image_size: int = 64,
                masks: bool = True, draws: np.ndarray | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Draw one face.

    Parameters
    ----------
    attrs:
        Integer codes of ``Male``, ``Smiling``, ``Blond_Hair``, ``Eyeglasses``,
        ``Young`` (0/1) and ``Skin_Tone`` (0 light, 1 medium, 2 dark); missing
        keys count as 0 (``Young`` as 1).
    rng_seed:
        Seed of the per-image ``numpy`` generator (an int or a sequence such
        as ``[seed, split_id, index]``); it fixes pose, colours, hair style,
        lighting and noise.
    image_size:
        Side of the returned image. Sizes below 64 are drawn at a multiple of
        the size (at least 64) and area-averaged down, so thin strokes such as
        the mouth survive.
    masks:
        Whether to compute the region masks (skip for speed when only the
        image is needed).
    draws:
        The face's uniform numbers in ``[0, 1)`` (:data:`IDENTITY_DRAWS` of
        them fix the person, the others the photo), given instead of drawn
        from ``rng_seed``; the noise field still comes from ``rng_seed``.
        ``synthetic-identities`` uses it to draw one person in many photos.

    Returns
    -------
    image:
        ``float32`` array ``(3, image_size, image_size)`` in ``[0, 1]``.
    masks:
        ``{region: bool (image_size, image_size)}`` for :data:`REGION_NAMES`
        (empty when ``masks=False``). ``beard`` is where a beard grows (the
        jaw and chin around the mouth) for every face, bearded or not, so it
        locates the sensitive cue.
    """
    size = int(image_size)
    factor = max(1, math.ceil(64 / size))
    rng = np.random.default_rng(rng_seed)
    values = rng.random(_N_DRAWS)
    d = _Draws(values if draws is None else np.asarray(draws, np.float64))
    male = bool(attrs.get("Male", 0))
    smiling = bool(attrs.get("Smiling", 0))
    blond = bool(attrs.get("Blond_Hair", 0))
    glasses = bool(attrs.get("Eyeglasses", 0))
    young = bool(attrs.get("Young", 1))
    tone = int(attrs.get("Skin_Tone", 0))

    cv = _Canvas(size * factor, tx=d(-1, 1) * POSE_SHIFT, ty=0.03 + d(-1, 1) * POSE_SHIFT,
                 scale=1.0 + d(-1, 1) * POSE_SCALE, angle=math.radians(d(-1, 1) * POSE_DEGREES))
    u, v, px = cv.u, cv.v, cv.px

    # -- colours -------------------------------------------------------------
    bg_a = np.array([d(0.12, 0.82), d(0.12, 0.82), d(0.12, 0.82)], np.float32)
    bg_b = np.clip(bg_a + d.colour(0.3), 0.05, 0.85)
    bg_angle = d(0.0, 2 * math.pi)
    skin = np.clip(SKIN_TONES[tone] * d(0.92, 1.06) + d.colour(0.03), 0.0, 1.0)
    hair = np.clip(DARK_HAIR[d.choice(len(DARK_HAIR))] + d.colour(0.04), 0.0, 1.0)
    blond_colour = np.clip(BLOND_HAIR + d.colour(0.07), 0.0, 1.0)
    if blond:
        hair = blond_colour
    greying = d(0.35, 0.75)
    if not young:
        hair = hair + greying * (GREY_HAIR - hair)
        skin = skin * 0.96
    clothes = np.array([d(0.05, 0.82), d(0.05, 0.82), d(0.05, 0.82)], np.float32)
    iris = IRIS_COLOURS[d.choice(len(IRIS_COLOURS))]
    frame = np.array([d(0.0, 0.5)] * 3, np.float32) + d.colour(0.1)
    lip = skin * 0.5 + LIP_TINT * 0.35

    # -- geometry ------------------------------------------------------------
    face_rx = d(0.43, 0.47) if male else d(0.39, 0.43)
    face_ry = d(0.54, 0.58) if male else d(0.52, 0.56)
    jaw_rx, jaw_cy, jaw_ry = (face_rx * d(0.92, 0.98), 0.24, 0.34) if male else (face_rx * d(0.62, 0.72), 0.2, 0.36)
    eye_y, eye_dx = d(-0.10, -0.05), d(0.15, 0.19)
    mouth_y, mouth_w = d(0.27, 0.32), d(0.11, 0.15)
    intensity = d()
    lift = (SMILE_LIFT[0] + intensity * (SMILE_LIFT[1] - SMILE_LIFT[0]) if smiling
            else NEUTRAL_LIFT[0] + intensity * (NEUTRAL_LIFT[1] - NEUTRAL_LIFT[0]))
    mouth_thick = d(0.016, 0.024)
    mouth_reach = mouth_w * (1.0 + SMILE_WIDEN)  # the widest this mouth can get
    if smiling:
        mouth_w *= 1.0 + SMILE_WIDEN * intensity
    opening = 0.0
    if smiling and intensity > TEETH_FROM:
        grin = (intensity - TEETH_FROM) / (1.0 - TEETH_FROM)
        opening = TEETH_OPENING[0] + grin * (TEETH_OPENING[1] - TEETH_OPENING[0])
    hair_len, hair_rx = d(0.45, 1.1), d(0.55, 0.68)
    bangs = d() < 0.35
    fem_hairline = d(-0.26, -0.18) if bangs else d(-0.40, -0.32)
    fem_inset = d(0.03, 0.07)  # how far long hair reaches over the sides of the face
    male_hairline = d(-0.40, -0.30) if young else d(-0.48, -0.34)
    beard_style = d.choice(3)  # full, stubble, goatee
    beard_strength = (d(0.8, 0.95), d(0.35, 0.55), d(0.8, 0.95))[beard_style]
    beard_top = d(0.08, 0.16)
    light_angle, light_strength = d(0.0, 2 * math.pi), d(0.0, LIGHT_GRADIENT)
    brightness = 1.0 + d(-1, 1) * BRIGHTNESS
    noise_sigma = d(*NOISE_SIGMA)

    # -- painting, back to front ----------------------------------------------
    grad = (0.5 * math.cos(bg_angle) * cv.x + 0.5) + (0.5 * math.sin(bg_angle)) * cv.y
    np.multiply(grad[None], (bg_b - bg_a)[:, None, None], out=cv.img)
    cv.img += bg_a[:, None, None]

    box = cv.box(-1.2, 1.2, 0.6, 2.0)
    su, sv = cv.uv(box)
    shoulders = _ellipse(su, sv, 0.0, 1.3, 0.95, 0.55, px)
    cv.paint(box, shoulders, clothes)

    back_hair = None
    if not male:
        box_h = cv.box(-hair_rx, hair_rx, -0.8, hair_len + 0.05)
        hu, hv = cv.uv(box_h)
        back = np.maximum(_ellipse(hu, hv, 0.0, -0.05, hair_rx, 0.72, px),
                          _rect(hu, hv, 0.0, (hair_len - 0.05) / 2, hair_rx, (hair_len + 0.05) / 2, px))
        cv.paint(box_h, back, hair)
        back_hair = cv.full(box_h, back) if masks else None

    box_n = cv.box(-0.2, 0.2, 0.2, 1.0)
    nu, nv = cv.uv(box_n)
    neck = _rect(nu, nv, 0.0, 0.575, 0.16, 0.375, px)
    cv.paint(box_n, neck, skin * 0.85)

    box_f = cv.box(-face_rx, face_rx, -face_ry, jaw_cy + jaw_ry)
    fu, fv = cv.uv(box_f)
    face = np.maximum(_ellipse(fu, fv, 0.0, 0.0, face_rx, face_ry, px),
                      _ellipse(fu, fv, 0.0, jaw_cy, jaw_rx, jaw_ry, px))
    cv.paint(box_f, face, skin)

    # The beard leaves a ring of skin around the lips so the smile stays visible.
    mouth_window = _ellipse(fu, fv, 0.0, mouth_y - 0.02, mouth_reach + 0.07, 0.18, px)
    beard_zone = face * _above(fv, beard_top, px)
    beard_zone *= 1.0 - mouth_window
    if beard_style == 2:
        beard_zone *= _above(-np.abs(fu), -0.2, px)
    if male:
        cv.paint(box_f, beard_zone * beard_strength, hair * 0.8)

    box_m = cv.box(-0.1, 0.1, 0.08, 0.2)
    mu, mv = cv.uv(box_m)
    cv.paint(box_m, _ellipse(mu, mv, 0.0, 0.15, 0.06, 0.022, px) * 0.5, skin * 0.6)

    box_m = cv.box(-mouth_w - 0.03, mouth_w + 0.03, mouth_y - 0.13, mouth_y + 0.16)
    mu, mv = cv.uv(box_m)
    if opening > 0.0:
        t = mu * (1.0 / mouth_w)
        upper = mouth_y - lift * t * t
        teeth = _band(mv, upper, upper + opening * (1.0 - t * t), px) * _band(t, -1.0, 1.0, px / mouth_w)
        cv.paint(box_m, teeth, TEETH)
        cv.paint(box_m, _parabola_stroke(mu, mv, 0.0, mouth_y + opening, mouth_w, lift + opening, mouth_thick, px),
                 lip)
    cv.paint(box_m, _parabola_stroke(mu, mv, 0.0, mouth_y, mouth_w, lift, mouth_thick, px), lip)

    # Eyes, brows and glasses are mirror-symmetric: draw both sides at once on |u|.
    box_e = cv.box(-eye_dx - 0.14, eye_dx + 0.14, eye_y - 0.14, eye_y + 0.13)
    eu, ev = cv.uv(box_e)
    eu = np.abs(eu)
    sclera = _ellipse(eu, ev, eye_dx, eye_y, 0.065, 0.035, px)
    cv.paint(box_e, sclera, SCLERA)
    cv.paint(box_e, _ellipse(eu, ev, eye_dx, eye_y, 0.028, 0.028, px) * sclera, iris)
    brow_thick = 0.028 if male else 0.016
    cv.paint(box_e, _parabola_stroke(eu, ev, eye_dx, eye_y - 0.085, 0.075, 0.02, brow_thick, px), hair * 0.7)

    box_c = cv.box(-face_rx - 0.08, face_rx + 0.08, -face_ry - 0.12, 0.62)
    cu, cvv = cv.uv(box_c)
    if male:
        window = _ellipse(cu, cvv, 0.0, 0.25, face_rx - 0.01, 0.25 - male_hairline, px)
        cap = (_ellipse(cu, cvv, 0.0, -0.06, face_rx + 0.03, face_ry + 0.07, px) * (1.0 - window)
               * _above(-cvv, 0.02, px))
    else:
        window = _ellipse(cu, cvv, 0.0, 0.18, face_rx - fem_inset, 0.18 - fem_hairline, px)
        cap = _ellipse(cu, cvv, 0.0, -0.05, face_rx + 0.06, face_ry + 0.06, px) * (1.0 - window)
    cv.paint(box_c, cap, hair)

    if glasses:
        rims = _ring(eu, ev, eye_dx, eye_y, 0.1, 0.014, px)
        bridge = _above(-eu, 0.1 - eye_dx, px) * _band(ev, eye_y - 0.03, eye_y - 0.005, px)
        cv.paint(box_e, np.maximum(rims, bridge), np.clip(frame, 0.0, 1.0))

    if not young:
        box_w = cv.box(-0.2, 0.2, -0.36, -0.18)
        wu, wv = cv.uv(box_w)
        lines = np.maximum(_parabola_stroke(wu, wv, 0.0, -0.3, 0.17, -0.015, 0.008, px),
                           _parabola_stroke(wu, wv, 0.0, -0.24, 0.15, -0.015, 0.008, px))
        cv.paint(box_w, lines * 0.5, skin * 0.7)

    # -- downsample, light, noise ---------------------------------------------
    img = cv.img
    if factor > 1:
        img = img.reshape(3, size, factor, size, factor).mean(axis=(2, 4))
    axis = (np.arange(size, dtype=np.float32) + 0.5) * np.float32(2.0 / size) - np.float32(1.0)
    gain = brightness * light_strength * 0.5
    light = (brightness + gain * math.cos(light_angle) * axis)[None, :] + (gain * math.sin(light_angle) * axis)[:, None]
    img *= light
    # Triangular noise (sum of two uniform bytes) with standard deviation ``noise_sigma``:
    # as good as gaussian here and several times cheaper to draw.
    noise = np.frombuffer(rng.bytes(2 * img.size), np.uint8).reshape(2, *img.shape).sum(axis=0, dtype=np.float32)
    noise *= noise_sigma / _TRIANGULAR_STD
    noise -= 255.0 * noise_sigma / _TRIANGULAR_STD
    img += noise
    image = _unit(img)

    if not masks:
        return image, {}
    face_full = cv.full(box_f, face)
    neck_full = np.maximum(cv.full(box_n, neck), 0.0) * (face_full < 0.5)
    cap_full = cv.full(box_c, cap)
    hair_full = np.maximum(cap_full, back_hair * (face_full < 0.5) * (neck_full < 0.5)
                           if back_hair is not None else 0.0)
    mouth_full = cv.full(box_f, mouth_window * face)
    eyes_full = _ellipse(np.abs(u), v, eye_dx, eye_y, 0.11, 0.07, px)
    beard_full = cv.full(box_f, beard_zone) * (cap_full < 0.5)
    shoulders_full = cv.full(box, shoulders)
    person = np.maximum.reduce([face_full, neck_full, hair_full, shoulders_full])
    skin_full = (np.maximum(face_full, neck_full) * (hair_full < 0.5) * (eyes_full < 0.5) * (mouth_full < 0.5)
                 * (beard_full < 0.5 if male else 1.0))
    region_alpha = {"mouth": mouth_full, "eyes": eyes_full * face_full, "hair": hair_full, "beard": beard_full,
                    "face": face_full, "skin": skin_full, "background": 1.0 - person}
    out = {}
    for name in REGION_NAMES:
        alpha = np.asarray(region_alpha[name], np.float32)
        if factor > 1:
            alpha = alpha.reshape(size, factor, size, factor).mean(axis=(1, 3))
        out[name] = alpha >= 0.5
    return image, out
