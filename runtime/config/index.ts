export { configSchema, type Config } from './schema.ts';
export { loadConfig, redactConfig, describeSettings, type LoadConfigOptions } from './load.ts';
