// The plots of bench/shed.ts, from its results (docs/shed.json): docs/shed.svg (goodput and admitted p99
// against offered load, a pair of panels per shape, one line per server) and docs/shed-step.svg (goodput
// over time as the database slows down 10x and recovers).
//   node --import tsx bench/shed-plot.ts      (redraws from docs/shed.json)
import { readFileSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';

export interface Point {
  server: string;
  load: number;
  goodput: number;
  ratio: number;
  p50: number;
  p99: number;
  shed: number;
  shedFirstSecond: number;
  /** Of the shed, those refused for the event loop's sake. */
  waitedTooLong: number;
  failed: number;
}

export interface Step {
  server: string;
  /** Goodput/s in each half second. */
  series: number[];
  fifthSecondSlowed: number;
  secondSecondBack: number;
}

export interface Results {
  quick: boolean;
  objective: number;
  shapes: { name: string; work: string; capacity: number; points: Point[] }[];
  step: Step[];
  stepTimes?: { slow: number; back: number; end: number };
  aborts: { before: number; after: number; control: { before: number; after: number } } | undefined;
}

const COLORS: Record<string, string> = {
  none: '#b22',
  'under-pressure': '#888',
  floodgate: '#16a',
  'floodgate-aimd': '#6a1',
};
const NAMES: Record<string, string> = {
  none: 'unprotected',
  'under-pressure': '@fastify/under-pressure',
  floodgate: 'Floodgate gradient2',
  'floodgate-aimd': 'Floodgate aimd',
};

const W = 300; // one panel
const H = 200;
const PAD = 40;

/** A panel at (dx, dy): `series` as lines over x in [x0, x1], y in [0, yMax]. */
function panel(
  dx: number,
  dy: number,
  title: string,
  xs: number[],
  xLabel: (x: number) => string,
  series: { key: string; ys: number[] }[],
  yMax: number,
  yLabel: string,
  marks: { y: number; label: string }[] = [],
  w = W,
): string {
  const x0 = Math.min(...xs);
  const x1 = Math.max(...xs);
  const x = (v: number) => dx + PAD + ((w - PAD - 10) * (v - x0)) / (x1 - x0 || 1);
  const y = (v: number) => dy + H - PAD + 10 - ((H - PAD - 10) * Math.min(v, yMax)) / yMax;
  const out = [
    `<text x="${dx + w / 2}" y="${dy + 14}" font-size="12" text-anchor="middle">${title}</text>`,
    `<line x1="${dx + PAD}" y1="${y(0)}" x2="${dx + w - 10}" y2="${y(0)}" stroke="#000"/>`,
    `<line x1="${dx + PAD}" y1="${y(0)}" x2="${dx + PAD}" y2="${y(yMax)}" stroke="#000"/>`,
    `<text x="${dx + PAD - 4}" y="${y(yMax) + 4}" font-size="10" text-anchor="end">${yLabel}</text>`,
    `<text x="${dx + PAD - 4}" y="${y(0)}" font-size="10" text-anchor="end">0</text>`,
  ];
  for (const v of xs.length <= 6 ? xs : xs.filter((_, i) => i % 4 === 0)) {
    out.push(`<text x="${x(v)}" y="${y(0) + 14}" font-size="10" text-anchor="middle">${xLabel(v)}</text>`);
  }
  for (const m of marks) {
    out.push(
      `<line x1="${dx + PAD}" y1="${y(m.y)}" x2="${dx + w - 10}" y2="${y(m.y)}" stroke="#000" stroke-dasharray="3 3" stroke-opacity="0.5"/>`,
      `<text x="${dx + w - 12}" y="${y(m.y) - 3}" font-size="9" text-anchor="end">${m.label}</text>`,
    );
  }
  for (const s of series) {
    const pts = s.ys.map((v, i) => `${x(xs[i]!).toFixed(1)},${y(v).toFixed(1)}`).join(' ');
    out.push(`<polyline fill="none" stroke="${COLORS[s.key] ?? '#000'}" stroke-width="2" points="${pts}"/>`);
  }
  return out.join('\n');
}

function legend(servers: string[], dy: number): string {
  return servers
    .map(
      (s, k) =>
        `<text x="${PAD + 170 * k}" y="${dy}" font-size="11" fill="${COLORS[s] ?? '#000'}">${NAMES[s] ?? s}</text>`,
    )
    .join('\n');
}

function svg(width: number, height: number, title: string, body: string): string {
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif">
<title>${title}</title>
<rect width="100%" height="100%" fill="#fff"/>
${body}
</svg>
`;
}

export function plot(results: Results): void {
  const servers = [...new Set(results.shapes.flatMap((s) => s.points.map((p) => p.server)))];
  const parts: string[] = [];
  results.shapes.forEach((shape, row) => {
    const loads = [...new Set(shape.points.map((p) => p.load))];
    const of = (server: string, value: (p: Point) => number) =>
      loads.map((l) => value(shape.points.find((p) => p.server === server && p.load === l)!));
    const dy = row * H;
    parts.push(
      panel(
        0,
        dy,
        `${shape.name}: goodput/s within ${results.objective} ms`,
        loads,
        (l) => `${l}x`,
        servers.map((key) => ({ key, ys: of(key, (p) => p.goodput) })),
        Math.round(shape.capacity * 1.2),
        String(Math.round(shape.capacity * 1.2)),
        [{ y: shape.capacity, label: 'capacity' }],
      ),
      panel(
        W,
        dy,
        `${shape.name}: p99 of admitted, ms`,
        loads,
        (l) => `${l}x`,
        servers.map((key) => ({ key, ys: of(key, (p) => p.p99) })),
        1000,
        '1000',
        [{ y: results.objective, label: 'objective' }],
      ),
    );
  });
  const rows = results.shapes.length;
  parts.push(legend(servers, rows * H + 16));
  writeFileSync(
    resolve(import.meta.dirname, '../docs/shed.svg'),
    svg(
      2 * W + 60,
      rows * H + 30,
      'Goodput and admitted p99 against offered load, by shape and server',
      parts.join('\n'),
    ),
  );

  const times = results.stepTimes;
  if (times === undefined || results.step.length === 0) return;
  const xs = results.step[0]!.series.map((_, i) => (i + 1) * 0.5);
  const step = panel(
    0,
    0,
    `8 x 20 ms offered 800/s; 10x slower from ${times.slow / 1000} s to ${times.back / 1000} s`,
    xs,
    (t) => `${t}s`,
    results.step.map((s) => ({ key: s.server, ys: s.series })),
    480,
    '480/s',
    [
      { y: 400, label: 'capacity' },
      { y: 40, label: 'slowed capacity' },
    ],
    2 * W,
  );
  writeFileSync(
    resolve(import.meta.dirname, '../docs/shed-step.svg'),
    svg(
      2 * W + 60,
      H + 30,
      'Goodput over time as the database slows down 10x and recovers',
      `${step}\n${legend(
        results.step.map((s) => s.server),
        H + 16,
      )}`,
    ),
  );
}

if (import.meta.url === `file://${process.argv[1]}`) {
  plot(JSON.parse(readFileSync(resolve(import.meta.dirname, '../docs/shed.json'), 'utf8')) as Results);
}
