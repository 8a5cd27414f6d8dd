// The one tar module of berth: a streaming reader (push parser for the unpacker, async entries for
// image archives) and a writer (image export, fixture layers, benchmarks).
export {
  DEFAULT_LIMITS,
  EntryType,
  nameText,
  type TarEntry,
  type TarLimits,
  type Timespec,
} from './entry.js';
export { parsePax, parsePaxTime } from './fields.js';
export { TarParser, type TarSink } from './parser.js';
export { readTar, type TarStreamEntry } from './stream.js';
export {
  TAR_END,
  type TarWriteData,
  type TarWriteEntry,
  tarBuffer,
  tarChunks,
  tarHeader,
  tarPadding,
} from './writer.js';
