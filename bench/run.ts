/**
 * `npm run bench [-- --quick] [-- --only ID,ID]`: runs every suite and writes
 * docs/benchmarks.md with the machine, the date, the commit, and each figure
 * beside its baseline and goal. With --only, the sections of the suites not
 * run are kept from the existing docs/benchmarks.md (matched by their
 * `## title` heading), so one suite can be re-run alone.
 */
import { execSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { fileURLToPath } from 'node:url';
import { type BenchSection, type Figure, makeContext } from './lib.js';
import { SUITES } from './suites.js';

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const onlyAt = args.indexOf('--only');
const only = onlyAt >= 0 ? new Set((args[onlyAt + 1] ?? '').split(',')) : undefined;

function sh(cmd: string): string {
  try {
    return execSync(cmd, { encoding: 'utf8' }).trim();
  } catch {
    return 'unknown';
  }
}

function fmt(n: number | undefined): string {
  if (n === undefined || Number.isNaN(n)) return '–';
  if (Math.abs(n) >= 100) return n.toFixed(0);
  if (Math.abs(n) >= 10) return n.toFixed(1);
  return n.toFixed(2);
}

function row(f: Figure): string {
  const goal = f.goal === undefined ? '–' : `${f.goal} ${f.met ? '✅ met' : '❌ not met'}`;
  const base = f.baseline === undefined ? '–' : `${f.baseline.name}: ${fmt(f.baseline.value)} ${f.baseline.unit}`;
  return `| ${f.name} | ${fmt(f.value)} ${f.unit} | ${f.p99 === undefined ? '–' : `${fmt(f.p99)} ${f.unit}`} | ${base} | ${f.ratio === undefined ? '–' : fmt(f.ratio)} | ${goal} |`;
}

function section(s: BenchSection): string {
  const lines = [`## ${s.title} (issue #${s.issue})`, '', '| Figure | Median | p99 | Baseline (same run) | Ratio | Goal |', '| --- | --- | --- | --- | --- | --- |'];
  lines.push(...s.figures.map(row));
  for (const f of s.figures) if (f.note) lines.push('', `- *${f.name}*: ${f.note}`);
  if (s.notes?.length) lines.push('', ...s.notes.map((n) => `${n}\n`));
  if (s.extra) lines.push('', s.extra);
  return lines.join('\n');
}

/** Title of a section heading line `## Title (issue #N)`. */
const headingTitle = (heading: string): string => heading.replace(/^## /, '').replace(/ \(issue #\d+\)$/, '').trim();

/**
 * The existing document's sections (from its first `## ` heading on) with
 * those just measured replaced in place, and new ones appended.
 */
function mergeSections(existing: string, fresh: readonly BenchSection[]): string[] {
  const parts = existing.split(/^(?=## )/m).filter((p) => p.startsWith('## '));
  const byTitle = new Map(fresh.map((s) => [s.title, section(s)]));
  const out = parts.map((p) => {
    const title = headingTitle(p.split('\n', 1)[0]!);
    const replaced = byTitle.get(title);
    byTitle.delete(title);
    return replaced ?? p.replace(/\n+$/, '');
  });
  return [...out, ...byTitle.values()].flatMap((p) => [p, '']);
}

async function main(): Promise<void> {
  const sections: BenchSection[] = [];
  for (const suite of SUITES) {
    if (only && !only.has(suite.id)) continue;
    const { ctx, cleanup } = makeContext(quick);
    ctx.log(`running ${suite.id}`);
    try {
      sections.push(await suite.run(ctx));
    } finally {
      cleanup();
    }
  }
  const cpu = cpus();
  const machine = [
    `- CPU: ${cpu.length} × ${cpu[0]?.model ?? 'unknown'}`,
    `- Memory: ${(totalmem() / 2 ** 30).toFixed(1)} GiB`,
    `- Disk (temp dir): ${sh("df -h --output=source,fstype,size $(node -p 'require(\"os\").tmpdir()') | tail -1")}`,
    `- Node ${process.version}, ${process.platform} ${process.arch}`,
  ];
  const out = fileURLToPath(new URL('../../docs/benchmarks.md', import.meta.url));
  const body = only !== undefined && existsSync(out) ? mergeSections(readFileSync(out, 'utf8'), sections) : sections.map(section);
  const doc = [
    '# Benchmarks',
    '',
    'Written by `npm run bench`; do not edit by hand. Each figure is measured next to its baseline in the same run.',
    '',
    `- Date: ${new Date().toISOString()}`,
    `- Commit: ${sh('git rev-parse --short HEAD')}${quick ? ' (quick profile)' : ''}`,
    ...machine,
    '',
    ...(only !== undefined ? [`Sections of suites not in \`--only ${[...only].join(',')}\` are kept from an earlier run (their commit may differ).`, ''] : []),
    ...body,
    '',
  ].join('\n');
  writeFileSync(out, doc);
  console.log(`wrote ${out}`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
