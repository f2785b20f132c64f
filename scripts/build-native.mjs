#!/usr/bin/env node
/**
 * Builds the optional native backend (native/src/*.cc -> native/build/teamllm_native.node).
 *
 * Run by `npm install` (package.json `install`) and by hand: `node scripts/build-native.mjs`.
 * It does not fail the install: whatever goes wrong, it prints one line saying why and exits 0,
 * and teamllm then runs on its wasm backend. Compiler output goes to native/build/build.log.
 * The one exception is this project's own CI (CI=true, and not installed as a dependency under
 * node_modules): .ci/run installs the compiler and OpenBLAS, so a build that fails there is a bug
 * and exits 1 (TEAMLLM_NATIVE_BUILD=0 still skips it on purpose).
 *
 * Only a C++ compiler is required. The float32 products use OpenBLAS when its header and library
 * are found; without them (or with TEAMLLM_NATIVE_BLAS=off) the addon is built with
 * -DTEAMLLM_NO_OPENBLAS on native/src/sgemm.cc's own GEMM instead, and the one line says so.
 * Under CI=true a missing OpenBLAS is still an error (CI installs it) unless TEAMLLM_NATIVE_BLAS=off.
 *
 * Why not node-gyp: node-gyp downloads Node's headers unless told where they are, needs Python,
 * and npm runs it implicitly for any package with a root binding.gyp (which must not happen here:
 * the addon is optional). The addon is a handful of C++ files against Node-API, so we call the
 * C++ compiler directly with the headers that ship with Node (or node-gyp's cache).
 *
 * Environment:
 *   TEAMLLM_NATIVE_BUILD=0   skip the build (and remove an earlier one: teamllm runs on wasm)
 *   TEAMLLM_NATIVE_BLAS=off  build on the addon's own GEMM even where OpenBLAS is installed
 *   TEAMLLM_NATIVE_OUT       build into this directory instead of native/build (tests)
 *   CI=true                  a failed build exits 1 (see above)
 *   CXX                      the C++ compiler (default g++, then c++, then clang++)
 *   TEAMLLM_NATIVE_MARCH     -march value (default "native": the build machine's own CPU; the
 *                            loader refuses a build made for a CPU with features this one lacks)
 *   TEAMLLM_NATIVE_CFLAGS / TEAMLLM_NATIVE_LDFLAGS  extra flags (e.g. -I/opt/openblas/include)
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const srcDir = path.join(root, 'native', 'src');
const buildDir = process.env.TEAMLLM_NATIVE_OUT ? path.resolve(process.env.TEAMLLM_NATIVE_OUT) : path.join(root, 'native', 'build');
const output = path.join(buildDir, 'teamllm_native.node');
const logFile = path.join(buildDir, 'build.log');
const PREFIX = 'teamllm native backend:';
/** This project's CI, where the build must succeed (a package installed under node_modules never fails its user's install). */
const strict = process.env.CI === 'true' && !root.split(path.sep).includes('node_modules');

let log = '';

function done(line, code = 0) {
  console.log(`${PREFIX} ${line}`);
  try {
    mkdirSync(buildDir, { recursive: true });
    writeFileSync(logFile, `${log}\n${line}\n`);
  } catch {
    // the one line above is what matters
  }
  process.exit(code);
}

/** `failed`: something went wrong (exit 1 under CI=true); otherwise the build was skipped on purpose. */
function skip(reason, failed = true) {
  // An addon left from an earlier build would not match these sources: remove it, so that what
  // this line says (wasm) is what happens.
  try {
    rmSync(output, { force: true });
  } catch {
    // nothing to remove
  }
  if (failed && strict) {
    console.error(`${PREFIX} CI=true requires the native backend (.ci/run installs g++ and libopenblas-dev); failing the install.`);
    done(`not built (${reason}). Details: native/build/build.log`, 1);
  }
  done(`not built (${reason}); teamllm will use the wasm backend. Details: native/build/build.log`);
}

/** Directory holding node_api.h (Node's own headers; no download). */
function nodeHeaders() {
  const candidates = [
    process.env.npm_config_nodedir && path.join(process.env.npm_config_nodedir, 'include', 'node'),
    path.join(path.dirname(process.execPath), '..', 'include', 'node'),
    path.join(os.homedir(), '.cache', 'node-gyp', process.versions.node, 'include', 'node'),
    path.join(os.homedir(), '.node-gyp', process.versions.node, 'include', 'node'),
    '/usr/include/node',
    '/usr/local/include/node',
  ].filter(Boolean);
  return candidates.find((d) => existsSync(path.join(d, 'node_api.h')));
}

function addonApiHeaders() {
  try {
    const require = createRequire(path.join(root, 'package.json'));
    const dir = path.dirname(require.resolve('node-addon-api/package.json'));
    return existsSync(path.join(dir, 'napi.h')) ? dir : undefined;
  } catch {
    return undefined;
  }
}

function findCompiler() {
  const names = process.env.CXX ? [process.env.CXX] : ['g++', 'c++', 'clang++'];
  for (const name of names) {
    const r = spawnSync(name, ['--version'], { encoding: 'utf8' });
    if (r.status === 0) return name;
  }
  return undefined;
}

/** Compiles a tiny program to find cblas.h and libopenblas; returns an error text or undefined. */
function checkBlas(cxx, extraCflags, extraLdflags) {
  mkdirSync(buildDir, { recursive: true });
  const probe = path.join(buildDir, 'probe-blas.cc');
  writeFileSync(
    probe,
    '#include <cblas.h>\nint main(){float a=1,b=1,c=0;cblas_sgemm(CblasRowMajor,CblasNoTrans,CblasNoTrans,1,1,1,1.f,&a,1,&b,1,0.f,&c,1);return c==1.f?0:1;}\n',
  );
  const exe = path.join(buildDir, 'probe-blas');
  const r = spawnSync(cxx, [probe, ...extraCflags, '-o', exe, ...extraLdflags, '-lopenblas'], { encoding: 'utf8' });
  log += `$ ${cxx} probe-blas.cc -lopenblas\n${r.stdout ?? ''}${r.stderr ?? ''}\n`;
  rmSync(probe, { force: true });
  if (r.status !== 0) {
    const text = `${r.stderr ?? ''}${r.error?.message ?? ''}`;
    if (/cblas\.h/.test(text)) return 'OpenBLAS headers missing: install libopenblas-dev (Debian/Ubuntu) or openblas-devel';
    if (/-lopenblas|openblas/.test(text)) return 'OpenBLAS library missing: install libopenblas-dev';
    return `cannot compile against OpenBLAS: ${text.split('\n').find((l) => l.trim()) ?? 'unknown error'}`;
  }
  const run = spawnSync(exe, [], { encoding: 'utf8' });
  rmSync(exe, { force: true });
  if (run.status !== 0) return 'the OpenBLAS test program failed to run';
  return undefined;
}

/** CPU feature flags of this machine (Linux /proc/cpuinfo), for the loader's compatibility check. */
function cpuFlags() {
  try {
    const text = readFileSync('/proc/cpuinfo', 'utf8');
    const line = text.split('\n').find((l) => /^(flags|Features)\s*:/.test(l));
    return line ? line.split(':')[1].trim().split(/\s+/) : [];
  } catch {
    return [];
  }
}

function run(cmd, args) {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    child.on('error', (err) => resolve({ code: -1, out: `${out}${err.message}` }));
    child.on('close', (code) => resolve({ code, out }));
  });
}

async function main() {
  const flag = (process.env.TEAMLLM_NATIVE_BUILD ?? '').toLowerCase();
  if (['0', 'false', 'no', 'off', 'skip'].includes(flag)) skip('TEAMLLM_NATIVE_BUILD is off', false);
  if (process.platform === 'win32') skip('Windows builds are not supported');
  if (!existsSync(srcDir)) skip('native/src is missing');

  const cxx = findCompiler();
  if (!cxx) skip('no C++ compiler found: install g++ (build-essential)');
  const nodeInc = nodeHeaders();
  if (!nodeInc) skip(`Node.js headers for ${process.version} not found (no include/node/node_api.h next to node)`);
  const napiInc = addonApiHeaders();
  if (!napiInc) skip('node-addon-api is not installed');

  const extraCflags = (process.env.TEAMLLM_NATIVE_CFLAGS ?? '').split(/\s+/).filter(Boolean);
  const extraLdflags = (process.env.TEAMLLM_NATIVE_LDFLAGS ?? '').split(/\s+/).filter(Boolean);
  // OpenBLAS when present; otherwise (or when told to) our own GEMM (native/src/sgemm.cc).
  const blasFlag = (process.env.TEAMLLM_NATIVE_BLAS ?? '').toLowerCase();
  const blasOff = ['0', 'false', 'no', 'off', 'own'].includes(blasFlag);
  const blasError = blasOff ? 'TEAMLLM_NATIVE_BLAS=off' : checkBlas(cxx, extraCflags, extraLdflags);
  // CI installs OpenBLAS: there, not finding it is a bug (unless turned off on purpose).
  if (blasError && !blasOff && strict) skip(blasError);
  const useBlas = !blasError;
  if (!useBlas) log += `OpenBLAS not used (${blasError}): building the addon's own GEMM (-DTEAMLLM_NO_OPENBLAS)\n`;

  const march = process.env.TEAMLLM_NATIVE_MARCH ?? 'native';
  // GCC defaults to 256-bit vectors even on AVX-512 CPUs; the exp/erf loops run ~2x faster with
  // 512-bit ones where the build machine has them.
  const wide = march === 'native' && cpuFlags().includes('avx512f') ? ['-mprefer-vector-width=512'] : [];
  const cflags = [
    '-std=c++17',
    '-O3',
    '-fPIC',
    '-pthread',
    `-march=${march}`,
    ...wide,
    // No errno from sqrt/log and free use of FMA: lets the loops vectorize. NaN and infinity
    // semantics are kept (no -ffast-math).
    '-fno-math-errno',
    '-fno-trapping-math',
    '-ffp-contract=fast',
    // `#pragma omp simd` on reductions (vectorization hints only; no OpenMP runtime is linked).
    '-fopenmp-simd',
    '-fvisibility=hidden',
    '-DNAPI_VERSION=8',
    '-DNODE_ADDON_API_CPP_EXCEPTIONS',
    `-I${nodeInc}`,
    `-I${napiInc}`,
    ...(useBlas ? [] : ['-DTEAMLLM_NO_OPENBLAS']),
    ...extraCflags,
  ];
  const sources = readdirSync(srcDir).filter((f) => f.endsWith('.cc'));
  const objDir = path.join(buildDir, 'obj');
  mkdirSync(objDir, { recursive: true });
  const started = Date.now();
  // Compile the files in parallel (one process per core), then link.
  const queue = [...sources];
  const objects = [];
  let failure;
  const workers = Array.from({ length: Math.max(1, Math.min(os.availableParallelism?.() ?? 2, queue.length)) }, async () => {
    for (;;) {
      const file = queue.shift();
      if (!file || failure) return;
      const obj = path.join(objDir, file.replace(/\.cc$/, '.o'));
      objects.push(obj);
      const args = [...cflags, '-c', path.join(srcDir, file), '-o', obj];
      const r = await run(cxx, args);
      log += `$ ${cxx} ${args.join(' ')}\n${r.out}\n`;
      if (r.code !== 0) failure ??= `compiling ${file} failed: ${r.out.split('\n').find((l) => /error/.test(l)) ?? 'see log'}`;
    }
  });
  await Promise.all(workers);
  if (failure) skip(failure);

  const tmpOut = `${output}.tmp`;
  const linkArgs = ['-shared', '-pthread', '-o', tmpOut, ...objects, ...extraLdflags, ...(useBlas ? ['-lopenblas'] : [])];
  const linked = await run(cxx, linkArgs);
  log += `$ ${cxx} ${linkArgs.join(' ')}\n${linked.out}\n`;
  if (linked.code !== 0) skip(`linking failed: ${linked.out.split('\n').find((l) => l.trim()) ?? 'see log'}`);
  renameSync(tmpOut, output);
  writeFileSync(
    path.join(buildDir, 'build-info.json'),
    `${JSON.stringify(
      {
        node: process.version,
        napi: process.versions.napi,
        platform: process.platform,
        arch: process.arch,
        march,
        // Which float32 GEMM the addon runs on: 'openblas', or 'own' (native/src/sgemm.cc).
        gemm: useBlas ? 'openblas' : 'own',
        ...(useBlas ? {} : { gemmReason: blasError }),
        // The loader checks that the running CPU has these (only for -march=native builds).
        cpuFlags: march === 'native' ? cpuFlags() : [],
        builtAt: new Date().toISOString(),
      },
      null,
      2,
    )}\n`,
  );
  rmSync(objDir, { recursive: true, force: true });
  const rel = path.relative(root, output);
  const outName = rel.startsWith('..') || path.isAbsolute(rel) ? output : rel;
  const gemm = useBlas ? 'OpenBLAS' : `own GEMM; OpenBLAS not used: ${blasError};`;
  done(`built ${outName} in ${((Date.now() - started) / 1000).toFixed(1)} s (${gemm} -march=${march})`.replace('OpenBLAS -march', 'OpenBLAS, -march'));
}

main().catch((err) => skip(`unexpected error: ${err instanceof Error ? err.message : String(err)}`));
