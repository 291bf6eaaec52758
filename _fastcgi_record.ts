/**
 * The FastCGI 1.0 record codec, the bytes on the wire and nothing else: the
 * record types, roles and statuses of the specification, record headers
 * and padding, name-value pairs, a read buffer that cuts a byte stream into
 * records, and the step from a request's `PARAMS` to its environ. The
 * gateway's side of a connection (`_fastcgi_connection.ts`) is built on
 * it. Not exported by `deno.json`.
 *
 * @example Framing bytes as records, and reading them back
 * ```ts
 * import { frame, RecordReader, STDOUT } from "./_fastcgi_record.ts";
 * import assert from "node:assert/strict";
 *
 * const records = frame(STDOUT, 1, new TextEncoder().encode("hello"));
 * // A header of 8 bytes, 5 of content, 3 of padding.
 * assert.equal(records.length, 16);
 * const reader = new RecordReader();
 * reader.room().set(records);
 * reader.filled(records.length);
 * assert.ok(reader.next());
 * assert.equal(reader.type, STDOUT);
 * assert.equal(new TextDecoder().decode(reader.content), "hello");
 * assert.ok(!reader.next());
 * ```
 *
 * @module
 */

import { decodeLatin1, isAscii, quote } from "./_internal.ts";

// Record types, roles, flags and statuses of the FastCGI 1.0 specification.
/** The only version of the protocol. */
export const FCGI_VERSION_1 = 1;
/** A request begins (host to application). */
export const BEGIN_REQUEST = 1;
/** The host no longer wants a request's response. */
export const ABORT_REQUEST = 2;
/** A request is over (application to host). */
export const END_REQUEST = 3;
/** A request's CGI variables, as name-value pairs. */
export const PARAMS = 4;
/** A request's body. */
export const STDIN = 5;
/** A response's bytes. */
export const STDOUT = 6;
/** A request's error stream, to the host's error log. */
export const STDERR = 7;
/** The host asks for configuration values. */
export const GET_VALUES = 9;
/** The answer to `GET_VALUES`. */
export const GET_VALUES_RESULT = 10;
/** The answer to a management record of a type not known. */
export const UNKNOWN_TYPE = 11;
/** The one role this gateway plays. */
export const RESPONDER = 1;
/** The `BEGIN_REQUEST` flag that keeps the connection open after it. */
export const KEEP_CONN = 1;
/** `END_REQUEST`: the request is complete. */
export const REQUEST_COMPLETE = 0;
/** `END_REQUEST`: refused, too many requests. */
export const OVERLOADED = 2;
/** `END_REQUEST`: refused, a role other than the Responder. */
export const UNKNOWN_ROLE = 3;

/** The bytes of a record header. */
export const HEADER_SIZE = 8;
/** The most content one record carries (its length field has 16 bits). */
export const MAX_CONTENT = 65535;
/** The largest record: header, content, padding. */
export const MAX_RECORD = HEADER_SIZE + MAX_CONTENT + 255;
/** A read buffer to begin with; it grows for large records. */
const INITIAL_READ_SIZE = 16 * 1024;
/** The read buffer once a stream carries large records (bodies). */
const LARGE_READ_SIZE = 4 * MAX_RECORD;

/** Why a record stream cannot be read any further. */
export class ProtocolError extends Error {
  /**
   * @param message What is wrong, after `Cannot read a FastCGI record: `.
   */
  constructor(message: string) {
    super(`Cannot read a FastCGI record: ${message}`);
    this.name = "ProtocolError";
  }
}

// --- Name-value pairs --------------------------------------------------

/** A name-value pair's length at `at`: 1 byte, or 4 with the high bit set;
 * `-1` when the bytes end first. */
function pairLength(bytes: Uint8Array, at: number): [number, number] {
  if (at >= bytes.length) return [-1, at];
  const first = bytes[at];
  if (first < 0x80) return [first, at + 1];
  if (at + 4 > bytes.length) return [-1, at];
  const length = ((first & 0x7f) * 0x1000000) +
    (bytes[at + 1] << 16 | bytes[at + 2] << 8 | bytes[at + 3]);
  return [length, at + 4];
}

/**
 * Decode FastCGI name-value pairs, calling `onPair` with views of each
 * name and value.
 *
 * @returns `false` when the pairs are malformed (after the good ones).
 */
export function decodePairs(
  bytes: Uint8Array,
  onPair: (name: Uint8Array, value: Uint8Array) => void,
): boolean {
  let at = 0;
  while (at < bytes.length) {
    const [nameLength, afterName] = pairLength(bytes, at);
    if (nameLength < 0) return false;
    const [valueLength, start] = pairLength(bytes, afterName);
    if (valueLength < 0) return false;
    const end = start + nameLength + valueLength;
    if (end > bytes.length) return false;
    onPair(
      bytes.subarray(start, start + nameLength),
      bytes.subarray(start + nameLength, end),
    );
    at = end;
  }
  return true;
}

/** Encode name-value pairs (latin-1 names and values, one byte a char). */
export function encodePairs(pairs: [string, string][]): Uint8Array {
  const parts: number[] = [];
  for (const [name, value] of pairs) {
    for (const length of [name.length, value.length]) {
      if (length < 0x80) parts.push(length);
      else {
        parts.push(
          0x80 | (length >>> 24),
          (length >>> 16) & 0xff,
          (length >>> 8) & 0xff,
          length & 0xff,
        );
      }
    }
    for (const text of [name, value]) {
      for (let i = 0; i < text.length; i++) parts.push(text.charCodeAt(i));
    }
  }
  return Uint8Array.from(parts);
}

// Created on first use, with the BOM kept: a leading EF BB BF is not ASCII,
// and must reach the check below rather than vanish.
let utf8: TextDecoder | undefined;

/**
 * Bytes as a latin-1 string, one char per byte. Parameters are ASCII as a
 * rule, which the UTF-8 decoder turns into the same string natively; any
 * other byte makes a char above `\x7F` (never ASCII) in its output, and the
 * bytes are decoded one by one instead. (`TextDecoder("latin1")` is
 * windows-1252, which maps `\x80`–`\x9F` elsewhere.)
 *
 * @param bytes The bytes, not kept.
 * @returns The string.
 */
export function latin1Text(bytes: Uint8Array): string {
  utf8 ??= new TextDecoder("utf-8", { ignoreBOM: true });
  const text = utf8.decode(bytes);
  return isAscii(text) ? text : decodeLatin1(bytes);
}

/** The length of a pair at `at` of `text` (a char a byte): 1 byte, or 4
 * with the high bit set. The next position is left in `lengthEnd`. */
let lengthEnd = 0;
function textLength(text: string, at: number): number {
  const first = text.charCodeAt(at);
  if (first < 0x80) {
    lengthEnd = at + 1;
    return first;
  }
  if (at + 4 > text.length) return -1;
  lengthEnd = at + 4;
  return (first & 0x7f) * 0x1000000 + (text.charCodeAt(at + 1) << 16 |
    text.charCodeAt(at + 2) << 8 | text.charCodeAt(at + 3));
}

/**
 * The request's parameters as an environ; `null` when malformed. Names and
 * values become latin-1 strings, one char per byte, as PEP 3333 wants
 * them. `HTTP_CONTENT_TYPE` and `HTTP_CONTENT_LENGTH`, which nginx passes
 * along with the other request headers, are left out: their values are
 * `CONTENT_TYPE` and `CONTENT_LENGTH` (the first fills a missing
 * `CONTENT_TYPE`).
 *
 * @param params The `PARAMS` content: bytes, or already as `latin1Text()`.
 * @returns The environ, or `null`.
 */
export function paramsToEnviron(
  params: Uint8Array | string,
): Record<string, string> | null {
  // One string for the whole block, cut by index: each name and value is a
  // slice of it, with no bytes copied or decoded apart.
  const text = typeof params === "string" ? params : latin1Text(params);
  const environ: Record<string, string> = {};
  const end = text.length;
  let headerType: string | undefined;
  for (let at = 0; at < end;) {
    const nameLength = textLength(text, at);
    if (!(nameLength >= 0) || lengthEnd >= end) return null;
    const valueLength = textLength(text, lengthEnd);
    if (!(valueLength >= 0)) return null;
    const start = lengthEnd;
    const stop = start + nameLength + valueLength;
    if (stop > end) return null;
    const name = text.slice(start, start + nameLength);
    const value = text.slice(start + nameLength, stop);
    at = stop;
    if (name === "HTTP_CONTENT_TYPE") headerType = value;
    // An own "__proto__" key would become the prototype when the handler
    // copies the environ.
    else if (name !== "HTTP_CONTENT_LENGTH" && name !== "__proto__") {
      environ[name] = value;
    }
  }
  if (headerType !== undefined && !("CONTENT_TYPE" in environ)) {
    environ.CONTENT_TYPE = headerType;
  }
  return environ;
}

// --- Writing records ---------------------------------------------------

/** Write a record header at `at`; the padding keeps records 8-aligned. */
export function putHeader(
  out: Uint8Array,
  at: number,
  type: number,
  id: number,
  length: number,
  padding: number,
): void {
  out[at] = FCGI_VERSION_1;
  out[at + 1] = type;
  out[at + 2] = id >>> 8;
  out[at + 3] = id & 0xff;
  out[at + 4] = length >>> 8;
  out[at + 5] = length & 0xff;
  out[at + 6] = padding;
  out[at + 7] = 0;
}

/** The padding after `length` bytes of content, to a multiple of 8. */
export function paddingOf(length: number): number {
  return (8 - (length & 7)) & 7;
}

// Buffers that frames are built in, reused once written: neither a
// request's few records nor a long stream's chunks leave garbage (a new
// buffer costs V8 more than copying the bytes it holds). Small ones for
// headers, short bodies and END_REQUEST; large ones for response chunks.
const SMALL_BUFFER = 4 * 1024;
const LARGE_BUFFER = 128 * 1024;
const SMALL_POOL: ArrayBuffer[] = [];
const LARGE_POOL: ArrayBuffer[] = [];
const SMALL_LIMIT = 64;
const LARGE_LIMIT = 16;
const POOLED = new WeakSet<ArrayBufferLike>();

/**
 * A buffer for `size` bytes of records: a view of a pooled buffer when it
 * fits, which `releaseFrame()` takes back once the bytes are written. Its
 * bytes are whatever they were: the caller writes every one.
 *
 * @param size The bytes needed.
 * @returns The buffer, `size` bytes long.
 */
export function frameBuffer(size: number): Uint8Array {
  const small = size <= SMALL_BUFFER;
  if (!small && size > LARGE_BUFFER) return new Uint8Array(size);
  let buffer = (small ? SMALL_POOL : LARGE_POOL).pop();
  if (buffer === undefined) {
    buffer = new ArrayBuffer(small ? SMALL_BUFFER : LARGE_BUFFER);
    POOLED.add(buffer);
  }
  return new Uint8Array(buffer, 0, size);
}

/** Give a written frame's buffer back to the pool (a frame not from the
 * pool is left alone). Its bytes must not be used after. */
export function releaseFrame(frame: Uint8Array): void {
  const buffer = frame.buffer;
  if (!POOLED.has(buffer)) return;
  if (buffer.byteLength === SMALL_BUFFER) {
    if (SMALL_POOL.length < SMALL_LIMIT) SMALL_POOL.push(buffer as ArrayBuffer);
  } else if (LARGE_POOL.length < LARGE_LIMIT) {
    LARGE_POOL.push(buffer as ArrayBuffer);
  }
}

/**
 * Frames one after the other in one buffer (a pooled one when it fits),
 * for one write; the frames themselves are released.
 *
 * @param frames The frames, in order.
 * @param total Their bytes together.
 * @returns The joined bytes.
 */
export function joinFrames(frames: Uint8Array[], total: number): Uint8Array {
  const out = frameBuffer(total);
  let at = 0;
  for (const piece of frames) {
    out.set(piece, at);
    at += piece.length;
    releaseFrame(piece);
  }
  return out;
}

/**
 * `data` as records of `type` (at most `MAX_CONTENT` bytes of content
 * each, padded to a multiple of 8), copied into one buffer; nothing for
 * empty `data`.
 */
export function frame(type: number, id: number, data: Uint8Array): Uint8Array {
  let size = 0;
  for (let left = data.length; left > 0; left -= MAX_CONTENT) {
    const length = Math.min(left, MAX_CONTENT);
    size += HEADER_SIZE + length + paddingOf(length);
  }
  const out = frameBuffer(size);
  let at = 0;
  for (let offset = 0; offset < data.length; offset += MAX_CONTENT) {
    const length = Math.min(data.length - offset, MAX_CONTENT);
    const padding = paddingOf(length);
    putHeader(out, at, type, id, length, padding);
    out.set(
      length === data.length ? data : data.subarray(offset, offset + length),
      at + HEADER_SIZE,
    );
    at += HEADER_SIZE + length;
    // Zeros, not what a pooled buffer held before (another response).
    for (const stop = at + padding; at < stop; at++) out[at] = 0;
  }
  return out;
}

/** An `END_REQUEST` record at `at` (16 bytes). */
export function putEndRequest(
  out: Uint8Array,
  at: number,
  id: number,
  appStatus: number,
  protocolStatus: number,
): void {
  putHeader(out, at, END_REQUEST, id, 8, 0);
  out[at + 8] = appStatus >>> 24;
  out[at + 9] = (appStatus >>> 16) & 0xff;
  out[at + 10] = (appStatus >>> 8) & 0xff;
  out[at + 11] = appStatus & 0xff;
  out[at + 12] = protocolStatus;
  out[at + 13] = out[at + 14] = out[at + 15] = 0; // reserved
}

/** An `END_REQUEST` record. */
export function endRequestRecord(
  id: number,
  appStatus: number,
  protocolStatus: number,
): Uint8Array {
  const out = new Uint8Array(HEADER_SIZE + 8);
  putEndRequest(out, 0, id, appStatus, protocolStatus);
  return out;
}

/** A management or request record with the given content (at most
 * `MAX_CONTENT` bytes). */
export function record(
  type: number,
  id: number,
  content: Uint8Array,
): Uint8Array {
  const padding = paddingOf(content.length);
  const out = new Uint8Array(HEADER_SIZE + content.length + padding);
  putHeader(out, 0, type, id, content.length, padding);
  out.set(content, HEADER_SIZE);
  return out;
}

// --- Reading records ---------------------------------------------------

/**
 * The read buffer of one stream of records: read into `room()`, report the
 * bytes with `filled(n)`, then take each whole record with `next()`, which
 * sets `type`, `id` and `content` (a view into the buffer, good until the
 * next `room()`: whatever is kept must be copied). Records split anywhere
 * are put back together; padding is skipped.
 *
 * The buffer starts small, which most requests fit in, and grows once for
 * a record that does not: large bodies then come in large reads.
 */
export class RecordReader {
  #buffer = new Uint8Array(INITIAL_READ_SIZE);
  #start = 0;
  #end = 0;
  /** The type of the record `next()` found. */
  type = 0;
  /** Its request id (0: a management record). */
  id = 0;
  /** Its content, a view into the read buffer. */
  content: Uint8Array = this.#buffer.subarray(0, 0);

  /** Bytes read and not yet taken as records: part of one, if any. */
  get pending(): number {
    return this.#end - this.#start;
  }

  /**
   * Where the next read goes: room for the rest of the record under way
   * (all of it, once its header is in), or more.
   *
   * @returns A view of the free end of the buffer.
   */
  room(): Uint8Array {
    if (this.#start === this.#end) this.#start = this.#end = 0;
    const buffer = this.#buffer;
    const used = this.#end - this.#start;
    let need = HEADER_SIZE;
    if (used >= HEADER_SIZE) {
      const at = this.#start;
      need += (buffer[at + 4] << 8 | buffer[at + 5]) + buffer[at + 6];
    }
    if (need > buffer.length) {
      const larger = new Uint8Array(LARGE_READ_SIZE);
      larger.set(buffer.subarray(this.#start, this.#end));
      this.#buffer = larger;
      this.#start = 0;
      this.#end = used;
    } else if (buffer.length - this.#start < need) {
      buffer.copyWithin(0, this.#start, this.#end);
      this.#start = 0;
      this.#end = used;
    }
    return this.#buffer.subarray(this.#end);
  }

  /**
   * Count `n` bytes read into the view `room()` returned.
   *
   * @param n The bytes read.
   */
  filled(n: number): void {
    this.#end += n;
  }

  /** Forget the bytes read and not taken. */
  clear(): void {
    this.#start = this.#end = 0;
  }

  /**
   * Take the next whole record.
   *
   * @returns `false` when no whole record is left in the buffer.
   * @throws {ProtocolError} For a record header of a version other than 1.
   */
  next(): boolean {
    const at = this.#start;
    if (this.#end - at < HEADER_SIZE) return false;
    const buffer = this.#buffer;
    const version = buffer[at];
    if (version !== FCGI_VERSION_1) {
      throw new ProtocolError(
        `version ${version} is not ${FCGI_VERSION_1} (a record header starts with ${
          quote(decodeLatin1(buffer.subarray(at, at + HEADER_SIZE)))
        })`,
      );
    }
    const length = buffer[at + 4] << 8 | buffer[at + 5];
    const total = HEADER_SIZE + length + buffer[at + 6];
    if (this.#end - at < total) return false;
    this.#start = at + total;
    this.type = buffer[at + 1];
    this.id = buffer[at + 2] << 8 | buffer[at + 3];
    this.content = buffer.subarray(at + HEADER_SIZE, at + HEADER_SIZE + length);
    return true;
  }
}
