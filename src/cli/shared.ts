/** Helpers the command modules (src/cli/commands/) share: the user-error type, option parsers, a runtime per command. */
import { type Command, InvalidArgumentError } from 'commander';
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { loadConfig, type ConfigKey } from '../app/config.ts';
import { createLogger } from '../app/logger.ts';
import { createRuntime, type Runtime, type RuntimeOptions } from '../app/runtime.ts';

/** Thrown for a user error the CLI should print plainly (no stack) and exit with `code`. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly code = 1,
  ) {
    super(message);
  }
}

export function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError('must be a non-negative integer');
  return n;
}

export async function withRuntime<T>(
  program: Command,
  overrides: Partial<Record<ConfigKey, string>>,
  fn: (runtime: Runtime) => Promise<T>,
  quiet = true,
  runtimeOptions: RuntimeOptions = {},
): Promise<T> {
  const config = loadConfig({ file: program.opts<{ config?: string }>().config, overrides });
  // One-shot commands keep stderr quiet unless the user asked for a log level.
  const level = quiet && !config.values.TEAMLLM_LOG_LEVEL ? 'warn' : config.logLevel;
  const runtime = await createRuntime(config, { logger: createLogger(level), defaultMetrics: !quiet, ...runtimeOptions });
  try {
    return await fn(runtime);
  } finally {
    await runtime.close();
  }
}
/** Parameters from --config (YAML/JSON), --data and --set, as the key=value strings stages take. */
export function trainingParams(opts: { config?: string; data?: string; base?: string; set?: string[] }): Record<string, string> {
  const params: Record<string, string> = {};
  if (opts.config) {
    let parsed: unknown;
    try {
      parsed = parseYaml(readFileSync(opts.config, 'utf8'));
    } catch (err) {
      throw new CliError(`cannot read the training config ${opts.config}: ${(err as Error).message}`);
    }
    if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new CliError(`${opts.config} must be a mapping of key: value`);
    for (const [k, v] of Object.entries(parsed)) params[k] = String(v);
  }
  if (opts.data) params.data = opts.data;
  if (opts.base) params.base = opts.base;
  for (const pair of opts.set ?? []) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new CliError(`--set takes key=value, got "${pair}"`);
    params[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return params;
}
