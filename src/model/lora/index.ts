/** LoRA adapters: configuration, the adapter (train, save, load, merge), serving several, storage. */
export {
  LORA_TARGETS,
  DEFAULT_LORA_TARGETS,
  TARGET_SITE,
  TARGET_PATH,
  LoraConfigSchema,
  parseLoraTargets,
  resolveLoraConfig,
  type LoraTarget,
  type LoraConfig,
  type LoraConfigInput,
} from './config.ts';
export { LoraAdapter, LORA_FORMAT, modelFingerprint, assertSameBase, type BaseModelIdentity, type AdapterConfigFile } from './adapter.ts';
export { AdapterSet, type AdapterInfo } from './serving.ts';
export { AdapterStore, type StoredAdapter } from './store.ts';
export { ServedModels, attachAdapterToVersion, versionAdapterDir, type ServedModel, type ServedModelsOptions } from './served-models.ts';
