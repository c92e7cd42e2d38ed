/**
 * The shipped personalization concepts: objects the base model has never
 * seen, each of a class (a shape word) it knows well.
 *
 * Novelty comes from attribute values pretraining never renders:
 * - a `secondaryColor` (the texture's second colour) other than the automatic
 *   darker/lighter shade: pretraining draws its attributes with
 *   `sampleAttributes`, which never sets one, so every pretraining texture is
 *   two shades of one colour ("red star with cyan stripes" is new);
 * - and/or a held-out shape × colour pair (`HELD_OUT`), never in training data.
 *
 * Shape, colour, texture and second colour are fixed; size, position and
 * background vary across the four reference images. The references use
 * medium and large sizes, four positions (never "top") and four backgrounds,
 * so the evaluation prompts can ask for what no reference shows (small, at
 * top, an unseen background).
 */
import type { Background, Color, Position, RGB, Shape, Size, Texture } from "../world/attributes.js";
import type { IDENTIFIERS } from "../world/grammar.js";

/** One of the reserved trigger words. */
export type Identifier = (typeof IDENTIFIERS)[number];

/** What makes a concept the concept: fixed across its images. */
export interface ConceptAttributes {
  shape: Shape;
  color: Color;
  texture: Texture;
  /** The texture's second colour; absent: the automatic shade (held-out-pair concepts). */
  secondaryColor?: Color | RGB;
}

/** The free attributes of one reference image. */
export interface ReferenceLayout {
  size: Size;
  position: Position;
  background: Background;
}

export interface ConceptDefinition {
  /** Folder name under `concepts/`, kebab-case. */
  name: string;
  /** In words, for humans ("a red star with cyan stripes"). */
  description: string;
  /** The trigger word ("sks"), one of IDENTIFIERS, unique across concepts. */
  identifier: Identifier;
  /** The class word: the concept's shape. */
  classWord: Shape;
  attributes: ConceptAttributes;
  /** `renderBatch(references, seed)` renders the reference images. */
  seed: number;
  /** Size, position and background of the 4 reference images. */
  references: readonly ReferenceLayout[];
  /**
   * Backgrounds of the evaluation prompts that change the background: the
   * first is one no reference shows; both keep the object and its second
   * colour more than 90 (sRGB distance) from the background.
   */
  evalBackgrounds: readonly [Background, Background];
}

/** The reference layout every concept uses (backgrounds aside): medium/large, center/left/right/bottom. */
const LAYOUT: readonly Pick<ReferenceLayout, "size" | "position">[] = [
  { size: "medium", position: "center" },
  { size: "large", position: "left" },
  { size: "medium", position: "right" },
  { size: "large", position: "bottom" },
];

function references(backgrounds: readonly [Background, Background, Background, Background]): ReferenceLayout[] {
  return LAYOUT.map((l, i) => ({ ...l, background: backgrounds[i]! }));
}

/** The shipped concepts, one per shape, in a stable order. */
export const CONCEPT_DEFINITIONS: readonly ConceptDefinition[] = [
  {
    name: "red-star-cyan-stripes",
    description: "a red star with cyan stripes",
    identifier: "sks",
    classWord: "star",
    attributes: { shape: "star", color: "red", texture: "striped", secondaryColor: "cyan" },
    seed: 501,
    references: references(["gray", "black", "beige", "navy"]),
    evalBackgrounds: ["white", "brown"],
  },
  {
    name: "purple-heart-yellow-dots",
    description: "a purple heart with yellow dots",
    identifier: "zxv",
    classWord: "heart",
    attributes: { shape: "heart", color: "purple", texture: "dotted", secondaryColor: "yellow" },
    seed: 502,
    references: references(["white", "navy", "gray", "brown"]),
    evalBackgrounds: ["black", "beige"],
  },
  {
    name: "blue-ring-orange-checks",
    description: "a blue ring checkered in orange",
    identifier: "qwe",
    classWord: "ring",
    attributes: { shape: "ring", color: "blue", texture: "checkered", secondaryColor: "orange" },
    seed: 503,
    references: references(["black", "beige", "white", "gray"]),
    evalBackgrounds: ["navy", "brown"],
  },
  {
    name: "green-diamond-pink-stripes",
    description: "a green diamond with pink stripes",
    identifier: "bnk",
    classWord: "diamond",
    attributes: { shape: "diamond", color: "green", texture: "striped", secondaryColor: "pink" },
    seed: 504,
    references: references(["navy", "white", "brown", "black"]),
    evalBackgrounds: ["gray", "beige"],
  },
  {
    name: "yellow-cross-purple-checks",
    description: "a yellow cross checkered in purple",
    identifier: "vlo",
    classWord: "cross",
    attributes: { shape: "cross", color: "yellow", texture: "checkered", secondaryColor: "purple" },
    seed: 505,
    references: references(["brown", "gray", "navy", "white"]),
    evalBackgrounds: ["black", "beige"],
  },
  {
    name: "pink-square-green-dots",
    description: "a pink square with green dots (pink square is also a held-out pair)",
    identifier: "tyr",
    classWord: "square",
    attributes: { shape: "square", color: "pink", texture: "dotted", secondaryColor: "green" },
    seed: 506,
    references: references(["beige", "black", "gray", "navy"]),
    evalBackgrounds: ["white", "brown"],
  },
  {
    name: "yellow-triangle-black-stripes",
    description: "a yellow triangle with near-black stripes (an sRGB second colour outside the palette)",
    identifier: "wuz",
    classWord: "triangle",
    attributes: { shape: "triangle", color: "yellow", texture: "striped", secondaryColor: [20, 20, 20] },
    seed: 507,
    // Near-black stripes stay visible only on white, gray, brown and beige.
    references: references(["white", "brown", "gray", "white"]),
    evalBackgrounds: ["beige", "gray"],
  },
  {
    name: "green-circle-checkered",
    description: "a green checkered circle (green circle is a held-out pair; the usual shades)",
    identifier: "kep",
    classWord: "circle",
    attributes: { shape: "circle", color: "green", texture: "checkered" },
    seed: 508,
    references: references(["gray", "navy", "white", "black"]),
    evalBackgrounds: ["brown", "beige"],
  },
];

/**
 * Five concepts for continual runs, learned in this order: five different
 * classes (star, heart, ring, diamond, cross), each novel by its second colour.
 */
export const CONTINUAL_SEQUENCE: readonly string[] = [
  "red-star-cyan-stripes",
  "purple-heart-yellow-dots",
  "blue-ring-orange-checks",
  "green-diamond-pink-stripes",
  "yellow-cross-purple-checks",
];
