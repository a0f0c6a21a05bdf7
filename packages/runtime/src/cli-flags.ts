/**
 * Command-line flags with environment-variable equivalents, shared by the
 * `walwire-primary` and `walwire-replica` commands.
 *
 * Precedence: a flag on the command line, then its environment variable,
 * then the default. `--help` lists every flag with its variable and default.
 * Errors name the flag and the value received (WALWIRE_ERR_INVALID_OPTION).
 */
import { InvalidOptionError } from '@walwire/protocol';

export type FlagType = 'string' | 'integer' | 'boolean' | 'list';

export interface FlagSpec {
  /** Long name without dashes, e.g. `data-dir`. */
  readonly name: string;
  readonly type: FlagType;
  readonly description: string;
  /** Environment variable; defaults to WALWIRE_ + the name upper-cased with `_`. */
  readonly env?: string;
  readonly default?: string | number | boolean | readonly string[];
  /** Shown in --help instead of the literal default (e.g. "a temp dir"). */
  readonly defaultLabel?: string;
  /** Refuse to start without it (setupCommand). */
  readonly required?: boolean;
  /** Integer flags: inclusive range. */
  readonly min?: number;
  readonly max?: number;
}

export type FlagValue = string | number | boolean | string[] | undefined;
export type ParsedFlags = Readonly<Record<string, FlagValue>>;

export function envName(spec: FlagSpec): string {
  return spec.env ?? `WALWIRE_${spec.name.toUpperCase().replace(/-/g, '_')}`;
}

function convert(spec: FlagSpec, raw: string, source: string): FlagValue {
  switch (spec.type) {
    case 'string':
      return raw;
    case 'list':
      return raw.split(',').map((s) => s.trim()).filter((s) => s !== '');
    case 'boolean':
      if (['1', 'true', 'yes', 'on', ''].includes(raw)) return true;
      if (['0', 'false', 'no', 'off'].includes(raw)) return false;
      throw new InvalidOptionError(`${source} must be true or false, received ${JSON.stringify(raw)}`);
    case 'integer': {
      const n = Number(raw);
      const min = spec.min ?? Number.MIN_SAFE_INTEGER;
      const max = spec.max ?? Number.MAX_SAFE_INTEGER;
      if (!/^-?\d+$/.test(raw) || n < min || n > max) {
        throw new InvalidOptionError(`${source} must be an integer from ${min} to ${max}, received ${JSON.stringify(raw)}`);
      }
      return n;
    }
  }
}

/**
 * Parses argv (without node and script) and env against `specs`. Repeated
 * list flags accumulate. Returns the values and the positional arguments.
 */
export function parseFlags(
  specs: readonly FlagSpec[],
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>> = process.env,
): { flags: ParsedFlags; positionals: string[]; help: boolean } {
  const byName = new Map(specs.map((s) => [s.name, s]));
  const fromArgs = new Map<string, FlagValue>();
  const positionals: string[] = [];
  let help = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--help' || arg === '-h') {
      help = true;
      continue;
    }
    if (!arg.startsWith('--')) {
      positionals.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    let name = arg.slice(2, eq < 0 ? undefined : eq);
    let negated = false;
    if (!byName.has(name) && name.startsWith('no-') && byName.get(name.slice(3))?.type === 'boolean') {
      name = name.slice(3);
      negated = true;
    }
    const spec = byName.get(name);
    if (spec === undefined) throw new InvalidOptionError(`unknown flag --${name}; see --help`);
    let raw: string;
    if (eq >= 0) raw = arg.slice(eq + 1);
    else if (spec.type === 'boolean') raw = negated ? 'false' : 'true';
    else {
      const next = argv[++i];
      if (next === undefined) throw new InvalidOptionError(`flag --${name} needs a value`);
      raw = next;
    }
    const value = convert(spec, raw, `flag --${name}`);
    const prev = fromArgs.get(name);
    fromArgs.set(name, spec.type === 'list' && Array.isArray(prev) ? [...prev, ...(value as string[])] : value);
  }
  const flags: Record<string, FlagValue> = {};
  for (const spec of specs) {
    if (fromArgs.has(spec.name)) flags[spec.name] = fromArgs.get(spec.name);
    else if (env[envName(spec)] !== undefined) flags[spec.name] = convert(spec, env[envName(spec)]!, `environment variable ${envName(spec)}`);
    else flags[spec.name] = Array.isArray(spec.default) ? [...(spec.default as string[])] : (spec.default as FlagValue);
  }
  return { flags, positionals, help };
}

/** The --help text: usage, then one block per flag with its variable and default. */
export function formatHelp(usage: string, summary: string, specs: readonly FlagSpec[]): string {
  const lines = [`Usage: ${usage}`, '', summary, '', 'Flags (each also read from the environment variable shown):', ''];
  for (const spec of specs) {
    const value = spec.type === 'boolean' ? '' : spec.type === 'list' ? ' <a,b,…>' : spec.type === 'integer' ? ' <n>' : ' <value>';
    const def = spec.defaultLabel ?? (spec.default === undefined ? 'none' : Array.isArray(spec.default) ? spec.default.join(',') || 'none' : String(spec.default));
    lines.push(`  --${spec.name}${value}`);
    lines.push(`      ${spec.description}`);
    lines.push(`      env ${envName(spec)}; default ${def}`);
  }
  lines.push('  --help', '      Show this help and exit.');
  return lines.join('\n');
}
