/**
 * ShapeWorld's attributes: the closed sets of shapes, colours, textures,
 * backgrounds, sizes and positions, their exact RGB values and geometry, and
 * the shape × colour pairs held out of training to measure composition.
 *
 * Every attribute value is also the single word the prompt grammar uses for
 * it, and the word sets never overlap (object colours and background colours
 * are disjoint), so a prompt names each attribute unambiguously.
 */

export const SHAPES = ["circle", "square", "triangle", "star", "heart", "ring", "cross", "diamond"] as const;
export type Shape = (typeof SHAPES)[number];

export const COLORS = ["red", "orange", "yellow", "green", "cyan", "blue", "purple", "pink"] as const;
export type Color = (typeof COLORS)[number];

export const TEXTURES = ["solid", "striped", "dotted", "checkered"] as const;
export type Texture = (typeof TEXTURES)[number];

export const BACKGROUNDS = ["black", "white", "gray", "navy", "brown", "beige"] as const;
export type Background = (typeof BACKGROUNDS)[number];

export const SIZES = ["small", "medium", "large"] as const;
export type Size = (typeof SIZES)[number];

export const POSITIONS = ["center", "left", "right", "top", "bottom"] as const;
export type Position = (typeof POSITIONS)[number];

/** An sRGB colour, 0–255 per channel. */
export type RGB = readonly [number, number, number];

/** Object colours, sRGB 0–255. */
export const COLOR_RGB: Readonly<Record<Color, RGB>> = {
  red: [220, 30, 30],
  orange: [250, 140, 0],
  yellow: [245, 225, 30],
  green: [30, 170, 50],
  cyan: [30, 200, 220],
  blue: [30, 80, 235],
  purple: [140, 40, 210],
  pink: [250, 120, 200],
};

/** Background colours, sRGB 0–255. */
export const BACKGROUND_RGB: Readonly<Record<Background, RGB>> = {
  black: [10, 10, 10],
  white: [240, 240, 240],
  gray: [128, 128, 128],
  navy: [20, 30, 90],
  brown: [110, 65, 30],
  beige: [225, 205, 160],
};

/** The attribute kinds, in the order the grammar states them. */
export const ATTRIBUTE_KINDS = ["size", "color", "texture", "shape", "position", "background"] as const;
export type AttributeKind = (typeof ATTRIBUTE_KINDS)[number];

/** The values of each attribute kind. */
export const ATTRIBUTE_VALUES = {
  shape: SHAPES,
  color: COLORS,
  texture: TEXTURES,
  background: BACKGROUNDS,
  size: SIZES,
  position: POSITIONS,
} as const satisfies Record<AttributeKind, readonly string[]>;

/** Everything that decides what an image shows; the continuous jitter is drawn at render time. */
export interface Attributes {
  shape: Shape;
  color: Color;
  texture: Texture;
  background: Background;
  size: Size;
  position: Position;
  /**
   * The texture's second colour: a palette colour or an explicit sRGB triple.
   * Default: a darker or lighter shade of `color`, whichever stands further
   * from the background (see `secondaryRgb`). Ignored for "solid".
   */
  secondaryColor?: Color | RGB;
}

/** Some attributes; a missing one means "any". */
export type PartialAttributes = Partial<Attributes>;

/**
 * Object radius (px) per size bin: the radius of the circle that holds the
 * unit shape, drawn uniformly inside the bin. The bins are disjoint, so mask
 * areas of one shape are ordered small < medium < large.
 */
export const SIZE_RADIUS: Readonly<Record<Size, readonly [number, number]>> = {
  small: [6.5, 7.5],
  medium: [8.75, 9.75],
  large: [10.5, 11.5],
};

/** The canvas: IMAGE_SIZE × IMAGE_SIZE pixels, 3 channels (HWC). */
export const IMAGE_SIZE = 32;
export const CHANNELS = 3;

/** Maximum rotation jitter (degrees, either way); no shape changes identity within it. */
export const MAX_ROTATION_DEG = 15;

/**
 * Shape × colour pairs never shown in training (`sampleAttributes(…, {
 * excludeHeldOut: true })`), kept to measure composition: 6 of the 64 pairs
 * (9%), each shape and each colour at most once, so every shape and every
 * colour is still seen in 7 or 8 colours / shapes.
 */
export const HELD_OUT: readonly { readonly shape: Shape; readonly color: Color }[] = [
  { shape: "circle", color: "green" },
  { shape: "square", color: "pink" },
  { shape: "triangle", color: "blue" },
  { shape: "star", color: "orange" },
  { shape: "heart", color: "cyan" },
  { shape: "ring", color: "red" },
];

/** Whether a (possibly partial) attribute set is one of the held-out shape × colour pairs. */
export function isHeldOut(attrs: { shape?: Shape | undefined; color?: Color | undefined }): boolean {
  return HELD_OUT.some((h) => h.shape === attrs.shape && h.color === attrs.color);
}

const DARK = 0.45;
const LIGHT = 0.6;

/** A darker shade of an sRGB colour. */
export function darker(rgb: RGB): RGB {
  return [Math.round(rgb[0] * DARK), Math.round(rgb[1] * DARK), Math.round(rgb[2] * DARK)];
}

/** A lighter shade of an sRGB colour (mixed towards white). */
export function lighter(rgb: RGB): RGB {
  return [
    Math.round(rgb[0] + (255 - rgb[0]) * LIGHT),
    Math.round(rgb[1] + (255 - rgb[1]) * LIGHT),
    Math.round(rgb[2] + (255 - rgb[2]) * LIGHT),
  ];
}

function distance2(a: RGB, b: RGB): number {
  return (a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2 + (a[2] - b[2]) ** 2;
}

/**
 * The texture's second colour for these attributes: `secondaryColor` when
 * given, otherwise the darker or lighter shade of the object colour, whichever
 * is further from the background, so the silhouette stays visible.
 */
export function secondaryRgb(attrs: Pick<Attributes, "color" | "background" | "secondaryColor">): RGB {
  const s = attrs.secondaryColor;
  if (s !== undefined) return typeof s === "string" ? COLOR_RGB[s] : s;
  const base = COLOR_RGB[attrs.color];
  const bg = BACKGROUND_RGB[attrs.background];
  const dark = darker(base);
  const light = lighter(base);
  return distance2(dark, bg) >= distance2(light, bg) ? dark : light;
}
