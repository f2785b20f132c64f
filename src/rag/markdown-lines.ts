/**
 * Hard-wrapped markdown (many handbooks wrap at 80 columns) as one line per block: a paragraph or
 * list item continues on the following lines that start no block of their own, and a sentence or
 * a link that runs over a line break must be read whole. Blank lines, headings, table rows and
 * fenced code stay as they are.
 */
const BLOCK_START = /^\s*(?:#{1,6}\s|>|[-*+]\s|\d+[.)]\s|\||```|~~~)/;
const ENDS_AT_LINE_END = /^\s*(?:#{1,6}\s|\|)/;
const FENCE = /^\s*(?:```|~~~)/;

export function unwrapMarkdown(text: string): string {
  const out: string[] = [];
  let open = false;
  let inFence = false;
  for (const line of text.split(/\r?\n/)) {
    if (FENCE.test(line)) inFence = !inFence;
    if (inFence || FENCE.test(line) || !line.trim()) {
      out.push(line);
      open = false;
      continue;
    }
    if (open && !BLOCK_START.test(line)) {
      out[out.length - 1] += ` ${line.trim()}`;
      continue;
    }
    out.push(line);
    open = !ENDS_AT_LINE_END.test(line);
  }
  return out.join('\n');
}
