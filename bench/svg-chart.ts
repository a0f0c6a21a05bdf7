/**
 * A small SVG line-chart writer for docs/ (no dependency): numeric x and y
 * axes with round ticks, one polyline per series (a gap where a series has
 * no sample), vertical event markers, shaded bands, and a legend. The output
 * is plain SVG 1.1 that GitHub renders inline from markdown.
 */

export interface Series {
  readonly name: string;
  readonly color: string;
  /** [x, y] points in x order; y null is a gap (no sample). */
  readonly points: readonly (readonly [number, number | null])[];
}

export interface Marker {
  readonly x: number;
  readonly label: string;
  readonly color?: string;
}

export interface Band {
  readonly from: number;
  readonly to: number;
  readonly label: string;
}

export interface LineChart {
  readonly title: string;
  readonly xLabel: string;
  readonly yLabel: string;
  readonly series: readonly Series[];
  readonly markers?: readonly Marker[];
  readonly bands?: readonly Band[];
  readonly width?: number;
  readonly height?: number;
}

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const n = (x: number): string => (Math.round(x * 10) / 10).toString();

/**
 * Round tick values within [lo, hi], about `count` of them (1, 2, 5 × 10^k
 * steps); with `cover`, one more tick past hi when needed, so the last tick
 * is at least hi (a y axis must hold its largest value).
 */
export function ticks(lo: number, hi: number, count = 6, cover = false): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Math.round(v / step) * step);
  if (cover && (out.at(-1) ?? lo) < hi) out.push(Math.round(((out.at(-1) ?? lo) + step) / step) * step);
  return out;
}

export function renderLineChart(chart: LineChart): string {
  const width = chart.width ?? 900;
  const height = chart.height ?? 420;
  const m = { left: 70, right: 20, top: 48, bottom: 58 };
  const pw = width - m.left - m.right;
  const ph = height - m.top - m.bottom;
  const xs = chart.series.flatMap((s) => s.points.map((p) => p[0]));
  const ys = chart.series.flatMap((s) => s.points.flatMap((p) => (p[1] === null ? [] : [p[1]])));
  const xMin = Math.min(...xs, ...(chart.markers ?? []).map((k) => k.x));
  const xMax = Math.max(...xs, ...(chart.markers ?? []).map((k) => k.x));
  const yTicks = ticks(0, Math.max(1, ...ys) * 1.05, 6, true);
  const yMax = yTicks.at(-1)!;
  const xTicks = ticks(xMin, xMax, 10);
  const X = (x: number): number => m.left + ((x - xMin) / (xMax - xMin || 1)) * pw;
  const Y = (y: number): number => m.top + ph - (y / yMax) * ph;
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`);
  out.push(`<rect width="${width}" height="${height}" fill="#ffffff"/>`);
  out.push(`<text x="${width / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${esc(chart.title)}</text>`);
  for (const b of chart.bands ?? []) {
    out.push(`<rect x="${n(X(b.from))}" y="${m.top}" width="${n(X(b.to) - X(b.from))}" height="${ph}" fill="#f0f4ff"/>`);
    out.push(`<text x="${n((X(b.from) + X(b.to)) / 2)}" y="${m.top + 14}" text-anchor="middle" fill="#7080a0">${esc(b.label)}</text>`);
  }
  for (const t of yTicks) {
    out.push(`<line x1="${m.left}" x2="${m.left + pw}" y1="${n(Y(t))}" y2="${n(Y(t))}" stroke="#e4e4e4"/>`);
    out.push(`<text x="${m.left - 8}" y="${n(Y(t) + 4)}" text-anchor="end">${t}</text>`);
  }
  for (const t of xTicks) {
    out.push(`<line x1="${n(X(t))}" x2="${n(X(t))}" y1="${m.top + ph}" y2="${m.top + ph + 5}" stroke="#444"/>`);
    out.push(`<text x="${n(X(t))}" y="${m.top + ph + 19}" text-anchor="middle">${t}</text>`);
  }
  out.push(`<rect x="${m.left}" y="${m.top}" width="${pw}" height="${ph}" fill="none" stroke="#444"/>`);
  out.push(`<text x="${m.left + pw / 2}" y="${height - 14}" text-anchor="middle">${esc(chart.xLabel)}</text>`);
  out.push(`<text x="18" y="${m.top + ph / 2}" text-anchor="middle" transform="rotate(-90 18 ${m.top + ph / 2})">${esc(chart.yLabel)}</text>`);
  chart.markers?.forEach((k, i) => {
    const color = k.color ?? '#c03030';
    out.push(`<line x1="${n(X(k.x))}" x2="${n(X(k.x))}" y1="${m.top}" y2="${m.top + ph}" stroke="${color}" stroke-dasharray="5,4"/>`);
    out.push(`<text x="${n(X(k.x) + 4)}" y="${m.top + 30 + 14 * (i % 3)}" fill="${color}">${esc(k.label)}</text>`);
  });
  for (const s of chart.series) {
    // One path, with a move (M) after every gap.
    let d = '';
    let pen = false;
    for (const [x, y] of s.points) {
      if (y === null) {
        pen = false;
        continue;
      }
      d += `${pen ? 'L' : 'M'}${n(X(x))},${n(Y(Math.min(y, yMax)))}`;
      pen = true;
    }
    out.push(`<path d="${d}" fill="none" stroke="${s.color}" stroke-width="1.6" stroke-linejoin="round"/>`);
  }
  chart.series.forEach((s, i) => {
    const y = m.top - 14;
    const x = m.left + i * 260;
    out.push(`<line x1="${x}" x2="${x + 22}" y1="${y}" y2="${y}" stroke="${s.color}" stroke-width="3"/>`);
    out.push(`<text x="${x + 28}" y="${y + 4}">${esc(s.name)}</text>`);
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
