/**
 * The layer rules of docs/architecture.md and DESIGN.md ("Direction of imports"), checked by
 * `npm run lint:layers` (dependency-cruiser; part of `npm test`). Type-only imports count: a layer
 * that names another layer's types depends on it. Paths are relative to the repository root.
 *
 * .dependency-cruiser-known-violations.json is the baseline `lint:layers` ignores (`npm run
 * lint:layers:baseline` writes it); it is empty, and `npm run lint:layers:all` checks without it.
 * Keep it empty: fix a violation rather than baseline it.
 */
const LAYERS = ['core', 'adapters', 'model', 'rag', 'training', 'app', 'cli'];

/** A rule that `from` imports none of the layers outside `allowed` (its own layer always allowed). */
function onlyImports(from, allowed, comment) {
  const forbidden = LAYERS.filter((l) => l !== from && !allowed.includes(l));
  return {
    name: `${from}-imports-only-${allowed.length ? allowed.join('-') : 'itself'}`,
    comment,
    severity: 'error',
    from: { path: `^src/${from}/` },
    to: { path: `^src/(${forbidden.join('|')})/` },
  };
}

module.exports = {
  forbidden: [
    onlyImports('core', [], 'core is the platform-agnostic heart: it imports nothing of ours'),
    onlyImports('adapters', ['core'], 'adapters turn platform traffic into core messages: core only'),
    onlyImports('model', [], 'the model layer stands alone (backends, tokenizers, GPT, LoRA, the prompt layout)'),
    onlyImports('rag', ['core', 'model'], 'retrieval builds on core and model'),
    onlyImports('training', ['core', 'model', 'rag'], 'training builds on core, model and rag; app wires it'),
    onlyImports('app', ['core', 'adapters', 'model', 'rag', 'training'], 'app is the composition root; only cli sits above it'),
    onlyImports('cli', ['app'], 'the command line goes through the composition root'),
    {
      name: 'no-circular',
      comment: 'modules that import each other cannot be read, tested or replaced one at a time',
      severity: 'error',
      from: {},
      to: { circular: true },
    },
  ],
  options: {
    includeOnly: '^src/',
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { extensions: ['.ts', '.mjs', '.js', '.json'] },
  },
};
