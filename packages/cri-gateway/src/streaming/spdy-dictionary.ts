/**
 * The zlib dictionary that SPDY/3 header blocks are compressed with (SPDY draft 3, section 2.6.10.1).
 * The draft gives it as bytes; here it is rebuilt from its two parts: header names and common
 * values, each preceded by its length as a 32-bit big-endian integer, then a run of status lines,
 * dates and media types without lengths. Its adler32 (the zlib DICTID) is 0xe3c6a7c2 and it is 1423
 * bytes long; spdy-frames.test.ts checks both, so a typo here cannot go unnoticed.
 */
const LENGTH_PREFIXED = [
  'options',
  'head',
  'post',
  'put',
  'delete',
  'trace',
  'accept',
  'accept-charset',
  'accept-encoding',
  'accept-language',
  'accept-ranges',
  'age',
  'allow',
  'authorization',
  'cache-control',
  'connection',
  'content-base',
  'content-encoding',
  'content-language',
  'content-length',
  'content-location',
  'content-md5',
  'content-range',
  'content-type',
  'date',
  'etag',
  'expect',
  'expires',
  'from',
  'host',
  'if-match',
  'if-modified-since',
  'if-none-match',
  'if-range',
  'if-unmodified-since',
  'last-modified',
  'location',
  'max-forwards',
  'pragma',
  'proxy-authenticate',
  'proxy-authorization',
  'range',
  'referer',
  'retry-after',
  'server',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'user-agent',
  'vary',
  'via',
  'warning',
  'www-authenticate',
  'method',
  'get',
  'status',
  '200 OK',
  'version',
  'HTTP/1.1',
  'url',
  'public',
  'set-cookie',
  'keep-alive',
  'origin',
];

const STATUS_CODES = [
  100, 101, 201, 202, 205, 206, 300, 302, 303, 304, 305, 306, 307, 402, 405, 406, 407, 408, 409, 410, 411,
  412, 413, 414, 415, 416, 417, 502, 504, 505,
];

const STATUS_LINES = [
  '203 Non-Authoritative Information',
  '204 No Content',
  '301 Moved Permanently',
  '400 Bad Request',
  '401 Unauthorized',
  '403 Forbidden',
  '404 Not Found',
  '500 Internal Server Error',
  '501 Not Implemented',
  '503 Service Unavailable',
];

const DATE_WORDS =
  'Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT';

const MEDIA_AND_CACHE = [
  'chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,',
  'text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.',
];

function build(): Buffer {
  const parts: Buffer[] = [];
  for (const word of LENGTH_PREFIXED) {
    const length = Buffer.alloc(4);
    length.writeUInt32BE(word.length);
    parts.push(length, Buffer.from(word, 'latin1'));
  }
  const tail = STATUS_CODES.join('') + STATUS_LINES.join('') + DATE_WORDS + MEDIA_AND_CACHE.join('');
  parts.push(Buffer.from(tail, 'latin1'));
  return Buffer.concat(parts);
}

/** The SPDY/3 header compression dictionary (1423 bytes). */
export const SPDY3_DICTIONARY: Buffer = build();

/** The dictionary's adler32 as zlib writes it in a stream's DICTID field. */
export const SPDY3_DICTIONARY_ID = 0xe3c6a7c2;
