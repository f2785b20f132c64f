/** Runs the real `teamllm` CLI against a home with no sample documents and no first-start training (the import tests' runner). */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const BIN = join(import.meta.dirname, '../../bin/teamllm.js');

export async function teamllm(home: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [BIN, ...args], {
      env: { ...process.env, TEAMLLM_HOME: home, TEAMLLM_SAMPLE_KB: 'false', TEAMLLM_QUICKSTART: 'off' },
      cwd: home,
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}
