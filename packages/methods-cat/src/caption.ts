function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\/-]/g, "\\$&");
}

/**
 * The caption without its trigger word (CAT's c_no). First exactly what the
 * official code does, `text.replace(f"{trigger}, ", "")` (every occurrence, as
 * Python's str.replace), then the trigger as a standalone word ("a photo of
 * sks star" → "a photo of star"), then runs of spaces collapsed and the ends
 * trimmed. A trigger inside a longer word ("sksx") is kept. Case-sensitive.
 */
export function stripTrigger(caption: string, trigger: string): string {
  if (trigger === "") return caption;
  let s = caption.split(`${trigger}, `).join("");
  const word = new RegExp(`\\s*(?<![\\p{L}\\p{N}_])${escapeRegExp(trigger)}(?![\\p{L}\\p{N}_])`, "gu");
  s = s.replace(word, "");
  return s.replace(/ {2,}/g, " ").trim();
}
