// Command-line plumbing shared by `synchub hub ...` and `synchub agent ...`:
// flags parsed by node:util, validated by zod, bad input -> one line on stderr, exit 2.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { z } from 'zod';
import { describeIssue } from './protocol.ts';

/** A bad command line: printed as one line, exit code 2, nothing written. */
export class UsageError extends Error {}

type Options = NonNullable<ParseArgsConfig['options']>;

/** Parse flags and positionals, then validate them with `schema`. */
export function parseCommand<S extends z.ZodType>(
  argv: string[],
  options: Options,
  schema: S,
): z.infer<S> {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (err) {
    throw new UsageError((err as Error).message.split('\n')[0]);
  }
  const result = schema.safeParse({ ...parsed.values, positionals: parsed.positionals });
  if (!result.success) throw new UsageError(describeIssue(result.error).replace(/^positionals(\.\d+)?/, 'argument'));
  return result.data;
}

/** A port given on the command line as text. */
export const portFlag = z
  .string()
  .regex(/^\d+$/, 'must be a number')
  .transform(Number)
  .pipe(z.number().int().min(0).max(65535));

/** Run a CLI entry: usage errors and known failures become one line and a non-zero exit. */
export async function runCli(main: () => Promise<number | void>): Promise<void> {
  try {
    const code = await main();
    if (typeof code === 'number') process.exitCode = code;
  } catch (err) {
    const e = err as Error & { code?: string };
    if (err instanceof UsageError) {
      process.stderr.write(`synchub: ${e.message}\n`);
      process.exitCode = 2;
    } else {
      process.stderr.write(`synchub: ${e.code ? `${e.code}: ` : ''}${e.message}\n`);
      process.exitCode = 1;
    }
  }
}
