// Command-line plumbing shared by `synchub hub ...`, `synchub agent ...` and `synchub demo`:
// flags parsed by node:util, each also read from its SYNCHUB_* variable, validated by zod;
// bad input -> one line on stderr, exit 2; `--help` -> the command's help on stdout, exit 0.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { z } from 'zod';

/** A bad command line: printed as one line, exit code 2, nothing written. */
export class UsageError extends Error {}

/** `--help` was asked for: the text goes to stdout and the command exits 0 without doing anything. */
export class HelpRequested extends Error {}

type Options = NonNullable<ParseArgsConfig['options']>;

/** What `--help` prints for one command, and what the area's command list shows. */
export interface CommandHelp {
  /** e.g. `synchub agent tail --hub <ws-url> --project <project> [--after N]` */
  usage: string;
  /** One line: what the command does. */
  summary: string;
  /** Flags worth explaining, one per line (`--after N   start after this seq (default 0)`). */
  details?: string;
  /** A command line to copy. */
  example: string;
}

/** The variable that stands in for a flag: `--admin-port` -> `SYNCHUB_ADMIN_PORT`. */
export function envName(flag: string): string {
  return `SYNCHUB_${flag.replace(/-/g, '_').toUpperCase()}`;
}

/** The full help of one command. */
export function formatHelp(help: CommandHelp): string {
  const details = help.details ? `\n\n${help.details.replace(/^/gm, '  ')}` : '';
  return (
    `usage: ${help.usage}\n\n${help.summary}${details}\n\n` +
    `Every flag can also be set by its SYNCHUB_* variable (--admin-port = SYNCHUB_ADMIN_PORT); a flag beats its variable.\n\n` +
    `example:\n  ${help.example}\n`
  );
}

/** A list of commands with their one-line summaries, for `synchub --help` and `synchub hub --help`. */
export function formatCommandList(commands: CommandHelp[]): string {
  return commands.map((c) => `  ${c.usage}\n      ${c.summary}`).join('\n');
}

const TRUE = new Set(['1', 'true', 'yes', 'on']);
const FALSE = new Set(['0', 'false', 'no', 'off', '']);

/**
 * Parse flags and positionals, fill flags not given from their SYNCHUB_* variables, then validate
 * with `schema`. A bad value is refused the same way whether it came from a flag or a variable;
 * the message names where it came from.
 */
export function parseCommand<S extends z.ZodType>(
  argv: string[],
  options: Options,
  schema: S,
  help: CommandHelp,
  env: NodeJS.ProcessEnv = process.env,
): z.infer<S> {
  if (argv.includes('--help') || argv.includes('-h')) throw new HelpRequested(formatHelp(help));
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (err) {
    throw new UsageError((err as Error).message.split('\n')[0]);
  }
  const values: Record<string, unknown> = { ...parsed.values };
  const fromEnv = new Set<string>();
  for (const [flag, spec] of Object.entries(options)) {
    const text = env[envName(flag)];
    if (values[flag] !== undefined || text === undefined) continue;
    fromEnv.add(flag);
    if (spec.type === 'string') values[flag] = text;
    else if (TRUE.has(text.toLowerCase())) values[flag] = true;
    else if (FALSE.has(text.toLowerCase())) values[flag] = false;
    else throw new UsageError(`${envName(flag)}: expected true or false, got ${JSON.stringify(text)}`);
  }
  const result = schema.safeParse({ ...values, positionals: parsed.positionals });
  if (!result.success) {
    const issue = result.error.issues[0]!;
    const key = String(issue.path[0] ?? '');
    const where = key === 'positionals' ? 'argument' : fromEnv.has(key) ? envName(key) : key in options ? `--${key}` : key || 'input';
    throw new UsageError(`${where}: ${issue.message}`);
  }
  return result.data;
}

/** A port given on the command line as text. */
export const portFlag = z
  .string()
  .regex(/^\d+$/, 'must be a number')
  .transform(Number)
  .pipe(z.number().int().min(0).max(65535));

/** A count given on the command line as text (`--after 120`). */
export const countFlag = z
  .string()
  .regex(/^\d+$/, 'must be a whole number')
  .transform(Number)
  .pipe(z.number().int().min(0).max(Number.MAX_SAFE_INTEGER));

/** Run a CLI entry: help goes to stdout; usage errors and known failures become one line and a non-zero exit. */
export async function runCli(main: () => Promise<number | void>): Promise<void> {
  try {
    const code = await main();
    if (typeof code === 'number') process.exitCode = code;
  } catch (err) {
    const e = err as Error & { code?: string };
    if (err instanceof HelpRequested) {
      process.stdout.write(e.message);
    } else if (err instanceof UsageError) {
      process.stderr.write(`synchub: ${e.message}\n`);
      process.exitCode = 2;
    } else {
      process.stderr.write(`synchub: ${e.code ? `${e.code}: ` : ''}${e.message}\n`);
      process.exitCode = 1;
    }
  }
}
