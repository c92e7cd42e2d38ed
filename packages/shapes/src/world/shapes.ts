/**
 * The unit shapes: inside tests in object-local coordinates (x right, y up),
 * scaled so that every shape lies within the unit circle for any rotation.
 * The renderer scales them by the object radius and supersamples them.
 */
import type { Shape } from "./attributes.js";

/** (x, y) in the unit frame → whether the point is inside the shape. */
export type InsideTest = (x: number, y: number) => boolean;

const CIRCLE_R = 0.97;
const RING_INNER = 0.5;
const SQUARE_HALF = 0.7;
const DIAMOND_HALF_WIDTH = 0.72;
const DIAMOND_HALF_HEIGHT = 0.99;
const CROSS_ARM = 0.93;
const CROSS_HALF_WIDTH = 0.34;
const STAR_POINTS = 5;
const STAR_INNER = 0.5;
/** The heart curve (x² + y² − 1)³ − x²y³ ≤ 0 spans x ∈ ±1.14, y ∈ [−1, 1.24]; scaled and lifted to fit the unit circle. */
const HEART_SCALE = 1.28;
const HEART_LIFT = 0.22;

/** Half-planes of a convex polygon given counter-clockwise: n·p ≤ c for each edge. */
function convexPolygon(vertices: readonly (readonly [number, number])[]): InsideTest {
  const edges = vertices.map((a, i) => {
    const b = vertices[(i + 1) % vertices.length]!;
    // Outward normal of a counter-clockwise edge a→b is (dy, −dx).
    const nx = b[1] - a[1];
    const ny = -(b[0] - a[0]);
    return [nx, ny, nx * a[0] + ny * a[1]] as const;
  });
  return (x, y) => {
    for (const [nx, ny, c] of edges) if (nx * x + ny * y > c) return false;
    return true;
  };
}

const TRIANGLE = convexPolygon([
  [0, 1],
  [-Math.sqrt(3) / 2, -0.5],
  [Math.sqrt(3) / 2, -0.5],
]);

/** A five-pointed star with one point up, folded into a half sector and tested against its edge. */
function star(x: number, y: number): boolean {
  const r2 = x * x + y * y;
  if (r2 > 1) return false;
  const sector = (2 * Math.PI) / STAR_POINTS;
  // Angle measured clockwise from +y, folded into [0, sector / 2].
  let a = Math.atan2(x, y);
  a = ((a % sector) + sector) % sector;
  if (a > sector / 2) a = sector - a;
  const r = Math.sqrt(r2);
  const px = r * Math.sin(a);
  const py = r * Math.cos(a);
  // Edge from the tip T = (0, 1) to the inner vertex V at angle sector / 2; the origin is inside.
  const vx = STAR_INNER * Math.sin(sector / 2);
  const vy = STAR_INNER * Math.cos(sector / 2);
  const cross = (vx - 0) * (py - 1) - (vy - 1) * (px - 0);
  return cross <= 0;
}

function heart(x: number, y: number): boolean {
  const hx = x * HEART_SCALE;
  const hy = y * HEART_SCALE + HEART_LIFT;
  const q = hx * hx + hy * hy - 1;
  return q * q * q - hx * hx * hy * hy * hy <= 0;
}

export const SHAPE_TESTS: Readonly<Record<Shape, InsideTest>> = {
  circle: (x, y) => x * x + y * y <= CIRCLE_R * CIRCLE_R,
  square: (x, y) => Math.abs(x) <= SQUARE_HALF && Math.abs(y) <= SQUARE_HALF,
  triangle: TRIANGLE,
  star,
  heart,
  ring: (x, y) => {
    const r2 = x * x + y * y;
    return r2 <= CIRCLE_R * CIRCLE_R && r2 >= RING_INNER * RING_INNER;
  },
  cross: (x, y) => {
    const ax = Math.abs(x);
    const ay = Math.abs(y);
    return (ax <= CROSS_HALF_WIDTH && ay <= CROSS_ARM) || (ay <= CROSS_HALF_WIDTH && ax <= CROSS_ARM);
  },
  diamond: (x, y) => Math.abs(x) / DIAMOND_HALF_WIDTH + Math.abs(y) / DIAMOND_HALF_HEIGHT <= 1,
};
