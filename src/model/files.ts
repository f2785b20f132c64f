/**
 * Crash-safe file writing: write beside the target, flush, then rename over it. A reader never sees
 * a half-written file, and a killed process leaves at most a stray temporary file.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';

export function tempPath(target: string): string {
  return `${target}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
}

/**
 * A write that failed (ENOSPC on a full disk, EDQUOT, EIO...), said with the file it was for and
 * that what was there before is untouched; `code` is kept for callers that branch on it.
 */
export class WriteFailedError extends Error {
  readonly code: string | undefined;
  constructor(
    readonly target: string,
    cause: unknown,
  ) {
    const code = (cause as { code?: string } | undefined)?.code;
    const why = code === 'ENOSPC' ? 'no space left on device (ENOSPC)' : code === 'EDQUOT' ? 'disk quota exceeded (EDQUOT)' : cause instanceof Error ? cause.message : String(cause);
    super(`could not write ${target}: ${why}; the previous version of it is unchanged`, { cause });
    this.name = 'WriteFailedError';
    this.code = code;
  }
}

/** Errors of the disk itself (full, over quota, read-only, failing), as opposed to a wrong path. */
function isDiskError(err: unknown): boolean {
  return ['ENOSPC', 'EDQUOT', 'EIO', 'EROFS', 'EFBIG'].includes(String((err as { code?: unknown } | undefined)?.code));
}

export async function writeFileAtomic(file: string, data: string | Uint8Array): Promise<void> {
  await writeFileStreamAtomic(file, (write) => write(typeof data === 'string' ? Buffer.from(data) : data));
}

/**
 * writeFileAtomic for a file too large to hold in memory: `fill` writes it piece by piece (each
 * piece may be dropped once written); flushed, then renamed over the target.
 */
export async function writeFileStreamAtomic(file: string, fill: (write: (bytes: Uint8Array) => Promise<void>) => Promise<void>): Promise<void> {
  await fs.mkdir(path.dirname(file), { recursive: true });
  const tmp = tempPath(file);
  try {
    const handle = await fs.open(tmp, 'w');
    try {
      await fill(async (bytes) => {
        for (let at = 0; at < bytes.length; ) at += (await handle.write(bytes, at, bytes.length - at)).bytesWritten;
      });
      await handle.sync();
    } finally {
      await handle.close();
    }
    await fs.rename(tmp, file);
  } catch (err) {
    // A half-written temporary file on a full disk would only take more of the space that is missing.
    await fs.rm(tmp, { force: true }).catch(() => undefined);
    throw err instanceof WriteFailedError || !isDiskError(err) ? err : new WriteFailedError(file, err);
  }
}

export async function writeJsonAtomic(file: string, value: unknown): Promise<void> {
  await writeFileAtomic(file, `${JSON.stringify(value, null, 2)}\n`);
}

export async function readJson<T>(file: string): Promise<T> {
  return JSON.parse(await fs.readFile(file, 'utf8')) as T;
}

export async function exists(file: string): Promise<boolean> {
  try {
    await fs.access(file);
    return true;
  } catch {
    return false;
  }
}

/**
 * Builds a directory under a temporary name with `fill`, then renames it into place. Replaces an
 * existing directory of that name (renamed aside first, then removed).
 */
export async function writeDirAtomic(dir: string, fill: (tmpDir: string) => Promise<void>): Promise<void> {
  await fs.mkdir(path.dirname(dir), { recursive: true });
  const tmp = tempPath(dir);
  await fs.mkdir(tmp, { recursive: true });
  try {
    await fill(tmp);
    if (await exists(dir)) {
      const old = tempPath(`${dir}.old`);
      await fs.rename(dir, old);
      try {
        await fs.rename(tmp, dir);
      } catch (err) {
        // Put the previous folder back: a failed replace must leave what was there.
        await fs.rename(old, dir);
        throw err;
      }
      await fs.rm(old, { recursive: true, force: true });
    } else {
      await fs.rename(tmp, dir);
    }
  } catch (err) {
    await fs.rm(tmp, { recursive: true, force: true }).catch(() => undefined);
    if (err instanceof WriteFailedError) throw new WriteFailedError(dir, err.cause);
    throw isDiskError(err) ? new WriteFailedError(dir, err) : err;
  }
}
