export { configSchema, type Config } from './schema.ts';
export {
  loadConfig,
  redactConfig,
  describeSettings,
  secretSettingPaths,
  secretValues,
  type LoadConfigOptions,
} from './load.ts';
