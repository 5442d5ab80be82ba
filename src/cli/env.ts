/**
 * `MOCKFLEET_*` environment variables become flags (yargs .env('MOCKFLEET')); with .strict(), one
 * naming no flag of the command (MOCKFLEET_DIR, say, set for some other tool) would stop the
 * command as an "Unknown argument". This middleware drops those keys before validation and
 * warns once, naming them. A flag given on the command line is never dropped.
 */
import type { Arguments } from 'yargs';

const PREFIX = 'MOCKFLEET_';

interface OptionsView {
  getOptions(): { key?: Record<string, unknown>; alias?: Record<string, string[]> };
}

function camel(kebab: string): string {
  return kebab.replace(/-([a-z0-9])/g, (_m, c: string) => c.toUpperCase());
}

/** Returns the yargs middleware; `warn` receives the one warning line. */
export function ignoreUnknownEnvFlags(env: NodeJS.ProcessEnv, argvRaw: readonly string[], warn: (line: string) => void): (argv: Arguments, y: unknown) => void {
  let warned = false;
  return (argv, y) => {
    const opts = (y as OptionsView).getOptions();
    const known = new Set<string>(Object.keys(opts.key ?? {}));
    for (const [k, aliases] of Object.entries(opts.alias ?? {})) {
      known.add(k);
      for (const a of aliases) known.add(a);
    }
    const ignored: string[] = [];
    for (const name of Object.keys(env)) {
      if (!name.startsWith(PREFIX) || name.length === PREFIX.length) continue;
      const kebab = name.slice(PREFIX.length).toLowerCase().replace(/_/g, '-');
      if (known.has(kebab) || known.has(camel(kebab))) continue;
      if (argvRaw.some((a) => a === `--${kebab}` || a.startsWith(`--${kebab}=`))) continue;
      delete argv[kebab];
      delete argv[camel(kebab)];
      ignored.push(name);
    }
    if (ignored.length > 0 && !warned) {
      warned = true;
      warn(`mockfleet: warning: ignoring environment variable${ignored.length > 1 ? 's' : ''} ${ignored.sort().join(', ')}: no such flag`);
    }
  };
}
