/**
 * `npm run bench [-- --quick] [-- --only ID,ID]`: runs every suite and writes
 * docs/benchmarks.md with the machine, the date, the commit, and each figure
 * beside its baseline and goal. With `--only`, just those suites run and
 * their sections replace (or are appended to) the ones already in
 * docs/benchmarks.md, each marked with its own date and commit; the other
 * sections are kept as they were.
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
  const goal = f.goal === undefined ? 'none set (context)' : `${f.goal} ${f.met ? '✅ met' : '❌ not met'}`;
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

const SUMMARY_HEADING = '## Goals at a glance';

/**
 * `doc` with its goal summary rebuilt from the figure tables below it (so an
 * `--only` run that replaces a section updates the summary too): every row
 * whose goal is marked met or not met, in document order.
 */
function withSummary(doc: string): string {
  const parts = doc.split(/\n(?=## )/).filter((p) => !p.startsWith(SUMMARY_HEADING));
  const rows: string[] = [];
  let met = 0;
  for (const part of parts) {
    const issue = /^## .*\(issue #(\d+)\)/.exec(part)?.[1];
    if (issue === undefined) continue;
    for (const line of part.split('\n')) {
      const cells = line.split(' | ');
      if (cells.length !== 6 || !line.startsWith('| ')) continue;
      const [name, median, p99, , ratio, goal] = [cells[0]!.slice(2), cells[1]!, cells[2]!, cells[3]!, cells[4]!, cells[5]!.replace(/ \|$/, '')];
      if (!goal.includes('✅') && !goal.includes('❌')) continue;
      if (goal.includes('✅')) met++;
      const measured = `${median}${p99 !== '–' ? `, p99 ${p99}` : ''}${ratio !== '–' ? `, ratio ${ratio}` : ''}`;
      rows.push(`| #${issue} | ${name} | ${measured} | ${goal} |`);
    }
  }
  const summary = [
    SUMMARY_HEADING,
    '',
    `${met} of ${rows.length} goals met. Figures without a goal are in the sections below, marked "none set (context)".`,
    '',
    '| Issue | Figure | Measured | Goal |',
    '| --- | --- | --- | --- |',
    ...rows,
    '',
  ].join('\n');
  const first = parts.findIndex((p) => p.startsWith('## '));
  if (first < 0) return doc;
  return [...parts.slice(0, first), summary, ...parts.slice(first)].join('\n');
}

/** `existing` with the sections of `fresh` replaced (matched by title and issue) or appended; the rest kept. */
function mergeInto(existing: string, fresh: readonly BenchSection[], quick: boolean): string {
  const stamp = `_Measured on its own (\`--only\`) on ${new Date().toISOString()}, commit ${sh('git rev-parse --short HEAD')}${quick ? ', quick profile' : ''}; the header above describes the last full run._`;
  const render = (s: BenchSection): string => {
    const [heading, ...rest] = section(s).split('\n');
    return `${[heading, '', stamp, ...rest].join('\n')}\n`;
  };
  const parts = existing.split(/\n(?=## )/);
  const used = new Set<BenchSection>();
  const merged = parts.map((part) => {
    const s = fresh.find((f) => part.startsWith(`## ${f.title} (issue #${f.issue})`));
    if (s === undefined) return part;
    used.add(s);
    return render(s);
  });
  merged.push(...fresh.filter((s) => !used.has(s)).map(render));
  const doc = merged.join('\n');
  return doc.endsWith('\n') ? doc : `${doc}\n`;
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
  const doc = [
    '# Benchmarks',
    '',
    'Written by `npm run bench`; do not edit by hand. Each figure is measured next to its baseline in the same run.',
    '',
    `- Date: ${new Date().toISOString()}`,
    `- Commit: ${sh('git rev-parse --short HEAD')}${quick ? ' (quick profile)' : ''}`,
    ...machine,
    '',
    ...sections.map(section),
    '',
  ].join('\n');
  const out = fileURLToPath(new URL('../../docs/benchmarks.md', import.meta.url));
  writeFileSync(out, withSummary(only && existsSync(out) ? mergeInto(readFileSync(out, 'utf8'), sections, quick) : doc));
  console.log(`wrote ${out}`);
}


main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
