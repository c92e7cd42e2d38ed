/**
 * GPT-2's byte → unicode table, which CLIP's byte-level BPE also uses: every
 * byte gets a printable character so that BPE symbols never contain
 * whitespace or control characters. Printable Latin-1 bytes map to
 * themselves; the other 68 bytes take code points 256, 257, … in byte order
 * (so the space byte 0x20 becomes "Ġ", U+0120).
 */
function buildByteToUnicode(): string[] {
  const table = new Array<string>(256);
  const printable = (b: number) =>
    (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  let next = 256;
  for (let b = 0; b < 256; b++) table[b] = String.fromCharCode(printable(b) ? b : next++);
  return table;
}

/** Indexed by byte value. */
export const BYTE_TO_UNICODE: readonly string[] = buildByteToUnicode();

export const UNICODE_TO_BYTE: ReadonlyMap<string, number> = new Map(BYTE_TO_UNICODE.map((ch, b) => [ch, b]));

const utf8 = new TextEncoder();

/** The byte-level spelling of a string: its UTF-8 bytes, each as its table character. */
export function toByteLevel(text: string): string {
  let out = "";
  for (const b of utf8.encode(text)) out += BYTE_TO_UNICODE[b]!;
  return out;
}
