import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, describeConfig, loadConfig } from '../../src/app/config.ts';

const cwd = () => mkdtempSync(join(tmpdir(), 'teamllm-config-'));

function problems(fn: () => unknown): string[] {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  throw new Error('expected a ConfigError');
}

describe('loadConfig', () => {
  it('selects PostgreSQL with TEAMLLM_DATABASE_URL (pool size, shared models folder), SQLite without, and never shows its password', () => {
    const dir = cwd();
    expect(loadConfig({ env: {}, cwd: dir }).database).toBeUndefined();
    const url = 'postgres://bot:s3cret-pw@db.internal:5432/teamllm';
    const config = loadConfig({ env: { TEAMLLM_DATABASE_URL: url, TEAMLLM_DATABASE_POOL_SIZE: '25', TEAMLLM_MODELS_DIR: 'shared/models' }, cwd: dir });
    expect(config.database).toEqual({ url, poolSize: 25 });
    expect(config.modelsDir).toBe(join(dir, 'shared/models'));
    expect(loadConfig({ env: { TEAMLLM_DATABASE_URL: url }, cwd: dir }).database?.poolSize).toBe(10);
    expect(JSON.stringify(describeConfig(config))).not.toContain('s3cret-pw');
    const found = problems(() => loadConfig({ env: { TEAMLLM_DATABASE_URL: 'mysql://bot:s3cret-pw@db/teamllm' }, cwd: dir }));
    expect(found[0]).toMatch(/^TEAMLLM_DATABASE_URL .*postgres:\/\//);
    expect(found.join('\n')).not.toContain('s3cret-pw');
  });

  it('has working defaults with an empty environment', () => {
    const dir = cwd();
    const config = loadConfig({ env: {}, cwd: dir });
    expect(config).toMatchObject({ home: join(dir, '.teamllm'), port: 3000, host: '127.0.0.1', adapters: ['web'], admins: [], sampleKnowledgeBase: true });
  });

  it('names every invalid key, where it came from, and never prints a secret', () => {
    const found = problems(() =>
      loadConfig({ env: { TEAMLLM_PORT: 'eighty', TEAMLLM_ADMINS: 'slack:U1,bob', SLACK_BOT_TOKEN: 'xoxp-very-secret-value' }, cwd: cwd() }),
    );
    expect(found.find((p) => p.startsWith('TEAMLLM_PORT (from environment)'))).toMatch(/got "eighty"/);
    expect(found.find((p) => p.startsWith('TEAMLLM_ADMINS'))).toMatch(/"bob" is not platform:userId/);
    const token = found.find((p) => p.startsWith('SLACK_BOT_TOKEN'))!;
    expect(token).toMatch(/must start with xoxb-/);
    expect(found.join('\n')).not.toContain('very-secret');
  });

  it('says which keys an enabled adapter is missing', () => {
    expect(problems(() => loadConfig({ env: { TEAMLLM_ADAPTERS: 'web,slack' }, cwd: cwd() }))).toEqual([
      'the slack adapter is enabled but SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET are not set',
    ]);
    expect(problems(() => loadConfig({ env: { TEAMLLM_ADAPTERS: 'web,teams' }, cwd: cwd() }))[0]).toMatch(/unknown adapter "teams"/);
  });

  it('turns on a platform when its credentials are present, and refuses half a set', () => {
    const env = { SLACK_BOT_TOKEN: 'xoxb-1', SLACK_SIGNING_SECRET: 'abcdefgh12' };
    expect(loadConfig({ env, cwd: cwd() }).adapters).toEqual(['web', 'slack']);
    expect(problems(() => loadConfig({ env: { FEISHU_APP_ID: 'cli_1' }, cwd: cwd() }))).toEqual([
      'the feishu adapter is enabled but FEISHU_APP_SECRET is not set',
      'the feishu adapter in webhook mode needs FEISHU_VERIFICATION_TOKEN or FEISHU_ENCRYPT_KEY to check callbacks',
    ]);
    expect(loadConfig({ env: { FEISHU_APP_ID: 'cli_1', FEISHU_APP_SECRET: 's', FEISHU_MODE: 'ws' }, cwd: cwd() }).adapters).toEqual(['web', 'feishu']);
  });

  it('reads a config file with the same keys, lets the environment win, and rejects unknown keys', () => {
    const dir = cwd();
    writeFileSync(join(dir, 'teamllm.config.yaml'), 'TEAMLLM_PORT: 4000\nTEAMLLM_ADMINS: slack:U1\nTEAMLLM_ADMIN_TOKEN: a-long-admin-token-123\n');
    const config = loadConfig({ env: { TEAMLLM_PORT: '5000' }, cwd: dir });
    expect(config.port).toBe(5000);
    expect(config.admins).toEqual(['slack:U1']);
    expect(config.file).toBe(join(dir, 'teamllm.config.yaml'));
    expect(describeConfig(config)).toMatchObject({ TEAMLLM_PORT: '5000', TEAMLLM_ADMIN_TOKEN: '[redacted]' });

    writeFileSync(join(dir, 'bad.yaml'), 'TEAMLLM_PROT: 1\n');
    expect(problems(() => loadConfig({ env: {}, cwd: dir, file: 'bad.yaml' }))[0]).toMatch(/TEAMLLM_PROT \(in .*bad.yaml\) is not a known key/);
    expect(problems(() => loadConfig({ env: {}, cwd: dir, file: 'missing.yaml' }))[0]).toMatch(/does not exist/);
    writeFileSync(join(dir, 'list.yaml'), '- a\n- b\n');
    expect(problems(() => loadConfig({ env: {}, cwd: dir, file: 'list.yaml' }))[0]).toMatch(/must be a mapping/);
  });
});
