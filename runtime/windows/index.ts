export { duration, parseDuration, DurationUnit, type Duration, type DurationParse } from './duration.ts';
export {
  hopping,
  session,
  sliding,
  tumbling,
  windowCloseTime,
  windowsProblem,
  WindowKind,
  type HoppingOptions,
  type HoppingWindows,
  type SessionOptions,
  type SessionWindows,
  type SlidingOptions,
  type SlidingWindows,
  type TumblingOptions,
  type TumblingWindows,
  type Windows,
} from './windows.ts';
export {
  addRecord,
  closeWindows,
  nextCloseTime,
  timeWindowStarts,
  windowedAggregation,
  type AddRecordResult,
  type CloseWindowsResult,
  type KeyWindowState,
  type StoredWindow,
  type WindowBounds,
  type WindowedAggregation,
  type WindowResult,
} from './aggregate.ts';
export { slidingRetentionMs } from './sliding.ts';
