/**
 * The ShapeWorld renderer: attributes + a seeded Rng → a 32×32 RGB image
 * (Float32Array, HWC, values in [0, 1]) and the exact truth behind it.
 *
 * Every pixel the object may touch is supersampled on a 4×4 grid; each
 * sub-sample is tested against the unit shape (rotated and scaled into place)
 * and, inside, against the texture in object-local coordinates, so edges and
 * texture boundaries are both anti-aliased. Pixels the object cannot reach are
 * the background colour exactly.
 */
import { AptError, Rng } from "@apt/core";
import {
  BACKGROUND_RGB,
  CHANNELS,
  COLOR_RGB,
  IMAGE_SIZE,
  MAX_ROTATION_DEG,
  SIZE_RADIUS,
  secondaryRgb,
  type Attributes,
  type Position,
  type RGB,
} from "./attributes.js";
import { SHAPE_TESTS } from "./shapes.js";

/** Sub-samples per pixel along each axis (SUPERSAMPLE² per pixel). */
export const SUPERSAMPLE = 4;

/** Texture geometry, in pixels of the object-local frame (it turns with the object). */
export const TEXTURE_GEOMETRY = {
  /** Diagonal stripes (45° in the object frame): period and the primary share of it. */
  stripePeriod: 4,
  stripeDuty: 0.5,
  /** Secondary-colour dots on a square grid. */
  dotPeriod: 4.5,
  dotRadius: 1.3,
  /** Side of one check. */
  checkCell: 3,
} as const;

/** The continuous part of an image: where the object is, how big, how turned, and the texture's phase. */
export interface Placement {
  /** Centre, in pixels (0…32, x right, y down; the canvas centre is 16, 16). */
  cx: number;
  cy: number;
  /** Radius of the circle holding the shape, in pixels. */
  radius: number;
  /** Rotation in degrees, counter-clockwise as seen. */
  rotation: number;
  /** Texture phase along the object's x and y axes, as fractions of the pattern period. */
  phaseX: number;
  phaseY: number;
}

/** What the renderer knows about one image. */
export interface Truth {
  attributes: Attributes;
  placement: Placement;
  /** Colours actually used (sRGB 0–255). */
  primaryRgb: RGB;
  secondaryRgb: RGB;
  backgroundRgb: RGB;
  /** Object area in pixels (sum of per-pixel coverage). */
  maskArea: number;
  /** Share of the object's area in the secondary colour (0 for solid). */
  secondaryShare: number;
  /** Pixel bounds of the covered pixels: x0 ≤ x < x1, y0 ≤ y < y1. */
  bbox: readonly [number, number, number, number];
  /** Coverage-weighted centre of the mask, in pixels. */
  centroid: readonly [number, number];
}

export interface Rendered {
  /** [32, 32, 3], HWC, row-major, values in [0, 1]. */
  image: Float32Array;
  /** [32, 32] object coverage in [0, 1]. */
  mask: Float32Array;
  truth: Truth;
}

const CENTER = IMAGE_SIZE / 2;
/** Jitter of the centre along the axis a position names (± px), and across it; "center" jitters ±ALONG_JITTER both ways. */
const ALONG_JITTER = 0.5;
const ACROSS_JITTER = 1;
/** Largest shift from the centre for left/right/top/bottom (small objects). */
const MAX_OFFSET = 8;
/** Pixels kept clear at the canvas edge. */
const BORDER = 1;

/**
 * Draws the continuous jitter for these attributes: radius uniform in the size
 * bin, rotation uniform in ±15°, the centre shifted towards the named side as
 * far as the object keeps off the border pixels (at most 8 px), texture phases.
 */
export function samplePlacement(attrs: Pick<Attributes, "size" | "position">, rng: Rng): Placement {
  const bin = SIZE_RADIUS[attrs.size];
  if (bin === undefined) throw new AptError("BAD_INPUT", `unknown size ${JSON.stringify(attrs.size)}`);
  const radius = bin[0] + rng.uniform() * (bin[1] - bin[0]);
  const rotation = (2 * rng.uniform() - 1) * MAX_ROTATION_DEG;
  const along = (2 * rng.uniform() - 1) * ALONG_JITTER;
  const across = (2 * rng.uniform() - 1) * ACROSS_JITTER;
  const phaseX = rng.uniform();
  const phaseY = rng.uniform();
  // The shape keeps off the border pixels even at the far end of the jitter.
  const offset = Math.min(MAX_OFFSET, CENTER - radius - ALONG_JITTER - BORDER);
  const [dx, dy] = positionVector(attrs.position);
  let cx: number;
  let cy: number;
  if (dx !== 0) {
    cx = CENTER + dx * (offset + along);
    cy = CENTER + across;
  } else if (dy !== 0) {
    cx = CENTER + across;
    cy = CENTER + dy * (offset + along);
  } else {
    cx = CENTER + along;
    cy = CENTER + (across * ALONG_JITTER) / ACROSS_JITTER;
  }
  return { cx, cy, radius, rotation, phaseX, phaseY };
}

function positionVector(position: Position): [number, number] {
  switch (position) {
    case "center":
      return [0, 0];
    case "left":
      return [-1, 0];
    case "right":
      return [1, 0];
    case "top":
      return [0, -1];
    case "bottom":
      return [0, 1];
    default:
      throw new AptError("BAD_INPUT", `unknown position ${JSON.stringify(position)}`);
  }
}

function fract(v: number): number {
  return v - Math.floor(v);
}

/** 0 = primary, 1 = secondary, at object-local pixel coordinates (x right, y up). */
type TexturePick = (x: number, y: number) => 0 | 1;

function texturePick(texture: Attributes["texture"], placement: Placement): TexturePick {
  const g = TEXTURE_GEOMETRY;
  switch (texture) {
    case "solid":
      return () => 0;
    case "striped": {
      const phase = placement.phaseX;
      return (x, y) => (fract((x + y) / Math.SQRT2 / g.stripePeriod + phase) < g.stripeDuty ? 0 : 1);
    }
    case "dotted": {
      const ox = placement.phaseX * g.dotPeriod;
      const oy = placement.phaseY * g.dotPeriod;
      const r2 = g.dotRadius * g.dotRadius;
      return (x, y) => {
        const u = x + ox;
        const v = y + oy;
        const du = u - g.dotPeriod * Math.round(u / g.dotPeriod);
        const dv = v - g.dotPeriod * Math.round(v / g.dotPeriod);
        return du * du + dv * dv <= r2 ? 1 : 0;
      };
    }
    case "checkered": {
      const ox = placement.phaseX * 2 * g.checkCell;
      const oy = placement.phaseY * 2 * g.checkCell;
      return (x, y) => ((Math.floor((x + ox) / g.checkCell) + Math.floor((y + oy) / g.checkCell)) & 1 ? 1 : 0);
    }
    default:
      throw new AptError("BAD_INPUT", `unknown texture ${JSON.stringify(texture)}`);
  }
}

function checkAttributes(attrs: Attributes): void {
  if (SHAPE_TESTS[attrs.shape] === undefined) throw new AptError("BAD_INPUT", `unknown shape ${JSON.stringify(attrs.shape)}`);
  if (COLOR_RGB[attrs.color] === undefined) throw new AptError("BAD_INPUT", `unknown colour ${JSON.stringify(attrs.color)}`);
  if (BACKGROUND_RGB[attrs.background] === undefined) {
    throw new AptError("BAD_INPUT", `unknown background ${JSON.stringify(attrs.background)}`);
  }
  const s = attrs.secondaryColor;
  if (s !== undefined && typeof s !== "string") {
    if (!Array.isArray(s) || s.length !== 3 || s.some((v) => typeof v !== "number" || !(v >= 0 && v <= 255))) {
      throw new AptError("BAD_INPUT", `secondaryColor must be a colour name or an [r, g, b] triple in 0…255, got ${JSON.stringify(s)}`);
    }
  } else if (s !== undefined && COLOR_RGB[s] === undefined) {
    throw new AptError("BAD_INPUT", `unknown secondaryColor ${JSON.stringify(s)}`);
  }
}

/**
 * Renders one image with its mask and truth. The jitter comes from `rng`
 * (six uniforms) unless a placement is given.
 */
export function renderWithTruth(attrs: Attributes, rng: Rng, placement?: Placement): Rendered {
  checkAttributes(attrs);
  const place = placement ?? samplePlacement(attrs, rng);
  const inside = SHAPE_TESTS[attrs.shape];
  const pick = texturePick(attrs.texture, place);
  const primary = COLOR_RGB[attrs.color];
  const secondary = attrs.texture === "solid" ? primary : secondaryRgb(attrs);
  const bg = BACKGROUND_RGB[attrs.background];

  const n = IMAGE_SIZE;
  const image = new Float32Array(n * n * CHANNELS);
  const mask = new Float32Array(n * n);
  const bgR = bg[0] / 255;
  const bgG = bg[1] / 255;
  const bgB = bg[2] / 255;
  for (let i = 0; i < n * n; i++) {
    image[i * 3] = bgR;
    image[i * 3 + 1] = bgG;
    image[i * 3 + 2] = bgB;
  }

  const { cx, cy, radius } = place;
  const theta = (place.rotation * Math.PI) / 180;
  const cos = Math.cos(theta);
  const sin = Math.sin(theta);
  const inv = 1 / radius;
  const x0 = Math.max(0, Math.floor(cx - radius));
  const x1 = Math.min(n, Math.ceil(cx + radius));
  const y0 = Math.max(0, Math.floor(cy - radius));
  const y1 = Math.min(n, Math.ceil(cy + radius));
  const ss = SUPERSAMPLE;
  const weight = 1 / (ss * ss);
  const pr = primary[0] / 255;
  const pg = primary[1] / 255;
  const pb = primary[2] / 255;
  const sr = secondary[0] / 255;
  const sg = secondary[1] / 255;
  const sb = secondary[2] / 255;

  let area = 0;
  let secondaryArea = 0;
  let sumX = 0;
  let sumY = 0;
  let bx0 = n;
  let by0 = n;
  let bx1 = 0;
  let by1 = 0;
  for (let py = y0; py < y1; py++) {
    for (let px = x0; px < x1; px++) {
      let covered = 0;
      let second = 0;
      for (let j = 0; j < ss; j++) {
        // Screen y grows downwards; the object frame's y grows upwards.
        const dy = cy - (py + (j + 0.5) / ss);
        for (let i = 0; i < ss; i++) {
          const dx = px + (i + 0.5) / ss - cx;
          // Undo the object's counter-clockwise rotation.
          const lx = cos * dx + sin * dy;
          const ly = -sin * dx + cos * dy;
          if (!inside(lx * inv, ly * inv)) continue;
          covered++;
          second += pick(lx, ly);
        }
      }
      if (covered === 0) continue;
      const first = covered - second;
      const cov = covered * weight;
      const o = (py * n + px) * 3;
      image[o] = bgR * (1 - cov) + (pr * first + sr * second) * weight;
      image[o + 1] = bgG * (1 - cov) + (pg * first + sg * second) * weight;
      image[o + 2] = bgB * (1 - cov) + (pb * first + sb * second) * weight;
      mask[py * n + px] = cov;
      area += cov;
      secondaryArea += second * weight;
      sumX += cov * (px + 0.5);
      sumY += cov * (py + 0.5);
      if (px < bx0) bx0 = px;
      if (py < by0) by0 = py;
      if (px + 1 > bx1) bx1 = px + 1;
      if (py + 1 > by1) by1 = py + 1;
    }
  }

  const truth: Truth = {
    attributes: { ...attrs },
    placement: place,
    primaryRgb: primary,
    secondaryRgb: secondary,
    backgroundRgb: bg,
    maskArea: area,
    secondaryShare: area > 0 ? secondaryArea / area : 0,
    bbox: area > 0 ? [bx0, by0, bx1, by1] : [0, 0, 0, 0],
    centroid: area > 0 ? [sumX / area, sumY / area] : [place.cx, place.cy],
  };
  return { image, mask, truth };
}

/** Renders one image: [32, 32, 3] HWC in [0, 1]. */
export function render(attrs: Attributes, rng: Rng, placement?: Placement): Float32Array {
  return renderWithTruth(attrs, rng, placement).image;
}

/** The seed of item `index` of a batch rendered from `seed` (items are independent of each other). */
export function itemSeed(seed: number, index: number): number {
  let z = (Math.imul(seed >>> 0, 0x9e3779b1) ^ Math.imul((index + 1) >>> 0, 0x85ebca6b)) >>> 0;
  z = Math.imul(z ^ (z >>> 15), 0x2c1b3c6d) >>> 0;
  z = Math.imul(z ^ (z >>> 12), 0x297a2d39) >>> 0;
  return (z ^ (z >>> 15)) >>> 0;
}

export interface RenderBatchOptions {
  /** Also return the masks ([N, 32, 32]). */
  masks?: boolean;
  /** Fixed placements, one per item (e.g. to re-render a scene with other attributes). */
  placements?: readonly Placement[];
}

export interface RenderedBatch {
  /** [N, 32, 32, 3], HWC per image, values in [0, 1]. */
  images: Float32Array;
  shape: [number, number, number, number];
  truths: Truth[];
  /** [N, 32, 32] when asked for. */
  masks?: Float32Array;
}

/**
 * Renders a batch. Item i draws its jitter from `new Rng(itemSeed(seed, i))`,
 * so an item's pixels depend only on (seed, i, its attributes).
 */
export function renderBatch(list: readonly Attributes[], seed: number, options: RenderBatchOptions = {}): RenderedBatch {
  const per = IMAGE_SIZE * IMAGE_SIZE * CHANNELS;
  const images = new Float32Array(list.length * per);
  const masks = options.masks ? new Float32Array(list.length * IMAGE_SIZE * IMAGE_SIZE) : undefined;
  if (options.placements !== undefined && options.placements.length !== list.length) {
    throw new AptError("BAD_INPUT", `renderBatch: ${options.placements.length} placements for ${list.length} items`);
  }
  const truths = list.map((attrs, i) => {
    const r = renderWithTruth(attrs, new Rng(itemSeed(seed, i)), options.placements?.[i]);
    images.set(r.image, i * per);
    masks?.set(r.mask, i * IMAGE_SIZE * IMAGE_SIZE);
    return r.truth;
  });
  const out: RenderedBatch = { images, shape: [list.length, IMAGE_SIZE, IMAGE_SIZE, CHANNELS], truths };
  if (masks) out.masks = masks;
  return out;
}
