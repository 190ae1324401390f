// SVG status badges (/api/badge/{nodes,trust,requests,tags,task-executors}): flat two-part badges
// that projects embed in READMEs; labels and the 1.2K / 3.4M / 5.6B abbreviation as in the reference.
import type { DashSummary } from "./data.ts";

export const BADGES: Record<string, { label: string; value: (s: DashSummary) => number }> = {
  nodes: { label: "online nodes", value: (s) => s.active_nodes },
  trust: { label: "trust links", value: (s) => s.total_trust_links },
  requests: { label: "requests", value: (s) => s.total_requests },
  tags: { label: "tags", value: (s) => s.unique_tags },
  "task-executors": { label: "task executors", value: (s) => s.task_executors },
};

/** 999 → "999", 1234 → "1.2K", 3_400_000 → "3.4M", 5.6e9 → "5.6B". */
export function abbreviate(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(1)}B`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)}K`;
  return String(Math.max(0, Math.trunc(n)));
}

const xml = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");

/** Approximate text width in px of 11px Verdana (good enough for short labels and numbers). */
function textWidth(s: string): number {
  let w = 0;
  for (const ch of s) w += ch === " " ? 3.9 : /[0-9]/.test(ch) ? 7 : /[A-Z]/.test(ch) ? 7.5 : /[ijlt.]/.test(ch) ? 3.5 : /[mw]/.test(ch) ? 9.7 : 6.6;
  return Math.ceil(w);
}

export function badgeSvg(label: string, value: string, color = "#3b82f6"): string {
  const lw = textWidth(label) + 12;
  const vw = textWidth(value) + 12;
  const w = lw + vw;
  const L = xml(label), V = xml(value);
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="20" role="img" aria-label="${L}: ${V}">` +
    `<title>${L}: ${V}</title>` +
    `<linearGradient id="s" x2="0" y2="100%"><stop offset="0" stop-color="#bbb" stop-opacity=".1"/><stop offset="1" stop-opacity=".1"/></linearGradient>` +
    `<clipPath id="r"><rect width="${w}" height="20" rx="3" fill="#fff"/></clipPath>` +
    `<g clip-path="url(#r)"><rect width="${lw}" height="20" fill="#555"/><rect x="${lw}" width="${vw}" height="20" fill="${color}"/><rect width="${w}" height="20" fill="url(#s)"/></g>` +
    `<g fill="#fff" text-anchor="middle" font-family="Verdana,Geneva,DejaVu Sans,sans-serif" font-size="11">` +
    `<text x="${lw / 2}" y="15" fill="#010101" fill-opacity=".3">${L}</text><text x="${lw / 2}" y="14">${L}</text>` +
    `<text x="${lw + vw / 2}" y="15" fill="#010101" fill-opacity=".3">${V}</text><text x="${lw + vw / 2}" y="14">${V}</text>` +
    `</g></svg>`;
}
