/**
 * Synchronous streams shared by the handlers, the server and the utilities:
 * `wsgi.input` over bytes in memory or over a synchronous reader, and
 * `wsgi.errors` in memory or over a byte writer. Not exported by `deno.json`.
 *
 * @example Usage
 * ```ts
 * import { BytesInput } from "./_io.ts";
 * import assert from "node:assert/strict";
 *
 * const input = new BytesInput(new TextEncoder().encode("a\nb"));
 * assert.deepEqual(input.readlines().map((l) => l.length), [2, 1]);
 * ```
 *
 * @module
 */

import type { ErrorStream, InputStream, SyncReader } from "./types.ts";
import { quote, repr, typeName } from "./_internal.ts";

/** How much `ReaderInput` asks its reader for at a time. */
const READ_BUFFER_SIZE = 64 * 1024;
/**
 * The size of each next buffer once `read()` has handed out part of one.
 * Their bytes become the application's garbage; V8 frees an array buffer's
 * memory on a sweeper thread, which falls behind on thousands of 64 KiB
 * ones but keeps up with a 16th as many of 1 MiB.
 */
const HANDED_OUT_BUFFER_SIZE = 1024 * 1024;
/**
 * How many arrays of `PACING_ARRAY_LENGTH` small integers (16 KiB each)
 * `paceCollector()` makes per handed-out buffer: 128 KiB of V8 heap per
 * MiB of body.
 */
const PACING_ARRAYS = 8;
const PACING_ARRAY_LENGTH = 4096;
/** Where `paceCollector()` leaves its last array: stored, it is made. */
const pacingSink: unknown[][] = [[]];
const EMPTY = new Uint8Array(0);
const NEWLINE = 0x0a;
// Created on first use: a CGI request that logs nothing never needs it.
let utf8Encoder: TextEncoder | undefined;

/**
 * Allocate short-lived memory on V8's heap, in step with the buffers that
 * `read()` hands out. V8 frees the memory of array buffers that died young
 * when it scavenges its young generation, and it scavenges when that fills
 * up, or once 64 MiB of young array buffers have piled up. Reading a
 * spooled body makes next to no heap objects, at gigabytes a second, so
 * without this the pieces an application drops pile up to that 64 MiB and
 * past it while the sweeper catches up: a 1 GiB body read in 64 KiB pieces
 * peaked at 150-220 MiB resident, against 89-110 MiB with these 128 KiB of
 * heap per MiB handed out (`deno task bench:memory`). They cost some 12 µs
 * per MiB: reading 1 GiB from the page cache took 168 ms instead of 156
 * (medians of five).
 */
function paceCollector(): void {
  for (let i = 0; i < PACING_ARRAYS; i++) {
    pacingSink[0] = new Array(PACING_ARRAY_LENGTH).fill(i);
  }
}

/** Join byte chunks; one chunk is returned as is. */
export function concat(pieces: Uint8Array[], total: number): Uint8Array {
  if (pieces.length === 0) return EMPTY;
  if (pieces.length === 1) return pieces[0];
  const out = new Uint8Array(total);
  let offset = 0;
  for (const piece of pieces) {
    out.set(piece, offset);
    offset += piece.length;
  }
  return out;
}

/**
 * A size argument as Python's binary streams take it: `undefined`, `null` or
 * a negative integer mean "no limit" (`-1`); anything but an integer is a
 * `TypeError`.
 */
function checkSize(size: unknown, action: string, what = "size"): number {
  if (size === undefined || size === null) return -1;
  if (typeof size !== "number" || !Number.isInteger(size)) {
    throw new TypeError(
      `Cannot ${action}: ${what} must be an integer, null or undefined, not ${
        typeName(size)
      } ${quote(size)}`,
    );
  }
  return size < 0 ? -1 : size;
}

/** Refuse a `readinto()` target that is not a `Uint8Array`. */
function checkTarget(target: unknown): Uint8Array {
  if (!(target instanceof Uint8Array)) {
    throw new TypeError(
      `Cannot read into the buffer: wsgi.input.readinto() takes a Uint8Array, not ${
        typeName(target)
      } ${repr(target)}`,
    );
  }
  return target;
}

/** Where a `ChunkReader` gets its bytes. */
interface ChunkSource {
  /**
   * The next chunk, `null` at the end. `kept` says whether part of the
   * chunk before was handed out (so its memory must never be written
   * again); if not, the source may refill the same memory.
   */
  pull(kept: boolean): Uint8Array | null;
  /** Read straight into `target`, bypassing the chunks (`0` at the end);
   * `null` when the source cannot. */
  direct: ((target: Uint8Array) => number) | null;
  /** From how many bytes a `readinto()` goes straight into its target. */
  directMin: number;
}

/** The source of bytes that are all in memory already. */
const NO_MORE: ChunkSource = {
  pull: () => null,
  direct: null,
  directMin: Infinity,
};

/**
 * The reading core of both inputs: a current chunk plus a source of the
 * next ones. `read()` and `readline()` hand out subarrays of the chunks
 * (no copy: the bytes are the application's); `readinto()` copies them
 * into the caller's buffer, and then the source may reuse their memory.
 */
class ChunkReader {
  #chunk: Uint8Array;
  #pos = 0;
  #source: ChunkSource;
  #ended = false;
  /** Whether part of the current chunk was handed out. */
  #kept = false;

  constructor(first: Uint8Array, source: ChunkSource) {
    this.#chunk = first;
    this.#source = source;
  }

  /** Replace a used-up chunk by the next one; false at the end. */
  #next(): boolean {
    while (!this.#ended) {
      const chunk = this.#source.pull(this.#kept);
      this.#kept = false;
      if (chunk === null) {
        this.#ended = true;
        break;
      }
      if (chunk.length > 0) {
        this.#chunk = chunk;
        this.#pos = 0;
        return true;
      }
    }
    this.#chunk = EMPTY;
    this.#pos = 0;
    return false;
  }

  /** Bytes from `from` to `to` of the current chunk, handed out. */
  #piece(from: number, to: number): Uint8Array {
    this.#kept = true;
    return this.#chunk.subarray(from, to);
  }

  read(size: unknown): Uint8Array {
    let want = checkSize(size, "read from wsgi.input");
    if (want === 0) return EMPTY;
    if (want < 0) want = Infinity;
    const pieces: Uint8Array[] = [];
    let total = 0;
    while (total < want) {
      if (this.#pos >= this.#chunk.length && !this.#next()) break;
      const end = Math.min(this.#chunk.length, this.#pos + (want - total));
      pieces.push(this.#piece(this.#pos, end));
      total += end - this.#pos;
      this.#pos = end;
    }
    return concat(pieces, total);
  }

  readinto(target: Uint8Array): number {
    const source = this.#source;
    let filled = 0;
    while (filled < target.length) {
      let left = this.#chunk.length - this.#pos;
      if (left === 0) {
        if (
          source.direct !== null && !this.#ended &&
          target.length - filled >= source.directMin
        ) {
          // As large as a chunk: straight into the target, no copy.
          const n = source.direct(
            filled === 0 ? target : target.subarray(filled),
          );
          if (n === 0) {
            this.#ended = true;
            break;
          }
          filled += n;
          continue;
        }
        if (!this.#next()) break;
        left = this.#chunk.length;
      }
      const n = Math.min(left, target.length - filled);
      target.set(this.#chunk.subarray(this.#pos, this.#pos + n), filled);
      this.#pos += n;
      filled += n;
    }
    return filled;
  }

  readline(size: unknown): Uint8Array {
    let limit = checkSize(size, "read a line from wsgi.input");
    if (limit === 0) return EMPTY;
    if (limit < 0) limit = Infinity;
    const pieces: Uint8Array[] = [];
    let total = 0;
    while (total < limit) {
      if (this.#pos >= this.#chunk.length && !this.#next()) break;
      let end = Math.min(this.#chunk.length, this.#pos + (limit - total));
      const newline = this.#chunk.subarray(this.#pos, end).indexOf(NEWLINE);
      if (newline >= 0) end = this.#pos + newline + 1;
      pieces.push(this.#piece(this.#pos, end));
      total += end - this.#pos;
      this.#pos = end;
      if (newline >= 0) break;
    }
    return concat(pieces, total);
  }

  readlines(hint: unknown): Uint8Array[] {
    let limit = checkSize(hint, "read lines from wsgi.input", "hint");
    if (limit <= 0) limit = Infinity;
    const lines: Uint8Array[] = [];
    let total = 0;
    while (total < limit) {
      const line = this.readline(undefined);
      if (line.length === 0) break;
      lines.push(line);
      total += line.length;
    }
    return lines;
  }

  *lines(): Generator<Uint8Array, void, undefined> {
    for (;;) {
      const line = this.readline(undefined);
      if (line.length === 0) return;
      yield line;
    }
  }
}

/**
 * `wsgi.input` over bytes in memory. `read()` with no size returns the rest
 * (a subarray, no copy).
 *
 * @example Usage
 * ```ts
 * import { BytesInput } from "./_io.ts";
 * import assert from "node:assert/strict";
 *
 * const input = new BytesInput(new TextEncoder().encode("one\ntwo"));
 * assert.equal(new TextDecoder().decode(input.readline()), "one\n");
 * assert.equal(new TextDecoder().decode(input.read()), "two");
 * ```
 */
export class BytesInput implements InputStream {
  #data: Uint8Array;
  // Made on first read: most requests (GETs) never read their empty body.
  #chunks: ChunkReader | null = null;

  /**
   * Wrap `data` without copying it.
   *
   * @param data The whole body; empty by default.
   */
  constructor(data: Uint8Array = EMPTY) {
    if (!(data instanceof Uint8Array)) {
      throw new TypeError(
        `Cannot create BytesInput: data must be a Uint8Array, not ${
          typeName(data)
        } ${repr(data)}`,
      );
    }
    this.#data = data;
  }

  get #reader(): ChunkReader {
    return this.#chunks ??= new ChunkReader(this.#data, NO_MORE);
  }

  /**
   * Read up to `size` bytes; with no size, `null` or a negative one, all
   * the rest.
   *
   * @param size The most bytes to return.
   * @returns The bytes read; empty at the end.
   */
  read(size?: number | null): Uint8Array {
    return this.#reader.read(size);
  }

  /**
   * Read into `buffer` up to its length, fewer only at the end: this
   * package's extension of `wsgi.input`, Python's `readinto()`, which
   * makes no new buffer.
   *
   * @param buffer Where the bytes go.
   * @returns How many bytes were read; `0` at the end.
   * @throws {TypeError} When `buffer` is not a `Uint8Array`.
   */
  readinto(buffer: Uint8Array): number {
    return this.#reader.readinto(checkTarget(buffer));
  }

  /**
   * Read one line, up to and including `"\n"`, at most `size` bytes.
   *
   * @param size The most bytes to return.
   * @returns The line; empty at the end.
   */
  readline(size?: number | null): Uint8Array {
    return this.#reader.readline(size);
  }

  /**
   * Read the remaining lines, stopping after the line that brings the total
   * to `hint` bytes or more (`hint` ≤ 0 or none: all lines).
   *
   * @param hint The byte count after which to stop.
   * @returns The lines read.
   */
  readlines(hint?: number | null): Uint8Array[] {
    return this.#reader.readlines(hint);
  }

  /**
   * Iterate over the remaining lines.
   *
   * @returns An iterator of lines.
   */
  [Symbol.iterator](): Iterator<Uint8Array> {
    return this.#reader.lines();
  }
}

/**
 * `wsgi.input` over a synchronous reader (`Deno.stdin`, a `Deno.FsFile`,
 * anything with `readSync`), reading at most `limit` bytes in total
 * (`undefined`/`null`: until the end), buffered internally (a 64 KiB
 * buffer, then 1 MiB ones once `read()` has handed bytes out).
 * Never reads a byte past `limit` from the reader.
 *
 * `read()` and `readline()` return subarrays of the internal buffer, which
 * is then never written again (a new one follows): the bytes are the
 * caller's. `readinto()` copies into the caller's buffer instead (or reads
 * straight into it, from 64 KiB), so one internal buffer serves a whole
 * body read that way: no garbage however large the body.
 *
 * @example Usage
 * ```ts
 * import { ReaderInput } from "./_io.ts";
 * import assert from "node:assert/strict";
 *
 * const data = new TextEncoder().encode("hello world");
 * let offset = 0;
 * const reader = {
 *   readSync(p: Uint8Array): number | null {
 *     if (offset >= data.length) return null;
 *     const n = Math.min(p.length, data.length - offset);
 *     p.set(data.subarray(offset, offset + n));
 *     offset += n;
 *     return n;
 *   },
 * };
 * const input = new ReaderInput(reader, 5);
 * assert.equal(new TextDecoder().decode(input.read()), "hello");
 * assert.equal(offset, 5);
 * ```
 */
export class ReaderInput implements InputStream {
  #reader: SyncReader;
  #remaining: number;
  // Created on first read: a request whose body is never read (most GETs)
  // pays only for the checks below.
  #chunks: ChunkReader | null = null;
  /** Where reads from the reader go; `#used` bytes of it are filled. */
  #buffer = EMPTY;
  #used = 0;
  /** Whether part of the buffer was handed out to the application. */
  #kept = false;

  /**
   * Read from `reader`, at most `limit` bytes.
   *
   * @param reader Something with `readSync(p): number | null`.
   * @param limit The most bytes to take from `reader`; `undefined` or
   * `null` for all of them.
   */
  constructor(reader: SyncReader, limit?: number | null) {
    if (
      typeof reader !== "object" || reader === null ||
      typeof (reader as Partial<SyncReader>).readSync !== "function"
    ) {
      throw readerInputError("reader", reader);
    }
    let remaining = Infinity;
    if (limit !== undefined && limit !== null) {
      if (typeof limit !== "number") {
        throw readerInputError("limit", limit);
      }
      if (!Number.isSafeInteger(limit) || limit < 0) {
        throw new RangeError(
          `Cannot create ReaderInput: limit must be a non-negative integer, not ${limit}`,
        );
      }
      remaining = limit;
    }
    this.#reader = reader;
    this.#remaining = remaining;
  }

  get #input(): ChunkReader {
    return this.#chunks ??= new ChunkReader(EMPTY, {
      pull: (kept) => this.#pull(kept),
      direct: (target) => this.#readSome(target),
      directMin: READ_BUFFER_SIZE,
    });
  }

  /** Read from the reader into `target`, no further than the limit: the
   * count, `0` at the end. */
  #readSome(target: Uint8Array): number {
    const remaining = this.#remaining;
    if (remaining <= 0) return 0;
    const space = target.length > remaining
      ? target.subarray(0, remaining)
      : target;
    const n = this.#reader.readSync(space);
    if (n === null || n === 0) {
      this.#remaining = 0; // the end, before the limit
      return 0;
    }
    if (!Number.isInteger(n) || n < 0 || n > space.length) {
      throw new RangeError(
        `Cannot read from wsgi.input: readSync() returned ${
          repr(n)
        } for a buffer of ${space.length} bytes`,
      );
    }
    this.#remaining = remaining - n;
    return n;
  }

  /**
   * The next bytes from the reader, `null` at the end or the limit. They
   * go into the free end of the buffer; once it is full, a buffer nothing
   * was handed out of (`readinto()` copies) is filled again from its
   * start, and otherwise a new one is made: bytes the application holds
   * are never written again.
   */
  #pull(kept: boolean): Uint8Array | null {
    if (this.#remaining <= 0) return null;
    if (kept) this.#kept = true;
    let size = READ_BUFFER_SIZE;
    if (!this.#kept) this.#used = 0;
    else if (this.#used >= this.#buffer.length) {
      this.#buffer = EMPTY;
      size = HANDED_OUT_BUFFER_SIZE;
    }
    if (this.#buffer.length === 0) {
      if (size === HANDED_OUT_BUFFER_SIZE) paceCollector();
      this.#buffer = new Uint8Array(Math.min(size, this.#remaining));
      this.#used = 0;
      this.#kept = false;
    }
    const used = this.#used;
    const n = this.#readSome(this.#buffer.subarray(used));
    if (n === 0) return null;
    this.#used = used + n;
    return this.#buffer.subarray(used, used + n);
  }

  /**
   * Read up to `size` bytes, waiting for more until `size` or the end; with
   * no size, `null` or a negative one, all the rest.
   *
   * @param size The most bytes to return.
   * @returns The bytes read; empty at the end.
   */
  read(size?: number | null): Uint8Array {
    return this.#input.read(size);
  }

  /**
   * Read into `buffer` up to its length, fewer only at the end: this
   * package's extension of `wsgi.input`, Python's `readinto()`, which
   * makes no new buffer (from 64 KiB, the reader fills `buffer` itself).
   *
   * @param buffer Where the bytes go.
   * @returns How many bytes were read; `0` at the end.
   * @throws {TypeError} When `buffer` is not a `Uint8Array`.
   */
  readinto(buffer: Uint8Array): number {
    return this.#input.readinto(checkTarget(buffer));
  }

  /**
   * Read one line, up to and including `"\n"`, at most `size` bytes.
   *
   * @param size The most bytes to return.
   * @returns The line; empty at the end.
   */
  readline(size?: number | null): Uint8Array {
    return this.#input.readline(size);
  }

  /**
   * Read the remaining lines, stopping after the line that brings the total
   * to `hint` bytes or more (`hint` ≤ 0 or none: all lines).
   *
   * @param hint The byte count after which to stop.
   * @returns The lines read.
   */
  readlines(hint?: number | null): Uint8Array[] {
    return this.#input.readlines(hint);
  }

  /**
   * Iterate over the remaining lines.
   *
   * @returns An iterator of lines.
   */
  [Symbol.iterator](): Iterator<Uint8Array> {
    return this.#input.lines();
  }
}

function checkText(s: unknown, action: string): string {
  if (typeof s !== "string") {
    throw new TypeError(
      `Cannot ${action}: expected a string, not ${typeName(s)} ${repr(s)}`,
    );
  }
  return s;
}

/**
 * An `ErrorStream` that collects text in memory; `value` is everything
 * written.
 *
 * @example Usage
 * ```ts
 * import { StringErrorStream } from "./_io.ts";
 * import assert from "node:assert/strict";
 *
 * const errors = new StringErrorStream();
 * errors.write("a\n");
 * errors.writelines(["b\n", "c\n"]);
 * assert.equal(errors.value, "a\nb\nc\n");
 * ```
 */
export class StringErrorStream implements ErrorStream {
  /** Everything written so far. */
  value = "";

  /**
   * Append a string.
   *
   * @param s The text.
   */
  write(s: string): void {
    this.value += checkText(s, "write to wsgi.errors");
  }

  /**
   * Append each string of a sequence.
   *
   * @param seq The texts.
   */
  writelines(seq: Iterable<string>): void {
    for (const s of seq) this.write(s);
  }

  /** Nothing to flush. */
  flush(): void {}
}

interface ByteWriter {
  writeSync?(p: Uint8Array): number;
  write?(p: Uint8Array): unknown;
  flush?(): unknown;
}

/**
 * Write all of `data` to a writer with `writeSync(p): number` (preferred)
 * or `write(p): number | void`, completing partial writes; a `write` that
 * returns nothing is taken to have written everything.
 *
 * @example Usage
 * ```ts
 * import { writeAll } from "./_io.ts";
 * import assert from "node:assert/strict";
 *
 * const got: number[] = [];
 * // A writer that takes one byte at a time.
 * writeAll({ writeSync: (p: Uint8Array) => (got.push(p[0]), 1) }, new Uint8Array([1, 2, 3]));
 * assert.deepEqual(got, [1, 2, 3]);
 * ```
 *
 * @param writer The destination.
 * @param data The bytes to write.
 * @throws {TypeError} When `writer` has neither method, or `write` returns a
 * promise.
 */
export function writeAll(writer: unknown, data: Uint8Array): void {
  const w = writer as ByteWriter | null;
  let method: "writeSync" | "write";
  if (
    typeof w === "object" && w !== null && typeof w.writeSync === "function"
  ) {
    method = "writeSync";
  } else if (
    typeof w === "object" && w !== null && typeof w.write === "function"
  ) {
    method = "write";
  } else {
    throw notAWriter(writer);
  }
  if (data.length === 0) return;
  const n = w[method]!(data);
  // Usually all at once; anything else is checked and completed apart.
  if (n !== data.length) writeRest(w, method, data, n);
}

/**
 * Go on after a `method` call on `data` that returned `n`: check `n`, then
 * write the rest, a call at a time, checking each count.
 */
function writeRest(
  w: ByteWriter,
  method: "writeSync" | "write",
  data: Uint8Array,
  n: unknown,
): void {
  let offset = 0;
  for (;;) {
    const rest = offset === 0 ? data : data.subarray(offset);
    if (n === undefined && method === "write") return;
    if (
      typeof n === "object" && n !== null &&
      typeof (n as { then?: unknown }).then === "function"
    ) {
      throw new TypeError(
        "Cannot write: write() returned a promise; a synchronous writer is needed",
      );
    }
    if (typeof n !== "number" || !Number.isInteger(n)) {
      throw new TypeError(
        `Cannot write: ${method}() returned ${typeName(n)} ${
          repr(n)
        }, not a byte count`,
      );
    }
    if (n <= 0 || n > rest.length) {
      throw new RangeError(
        `Cannot write: ${method}() returned ${n} for ${rest.length} bytes`,
      );
    }
    offset += n;
    if (offset >= data.length) return;
    n = w[method]!(data.subarray(offset));
  }
}

/**
 * Make an `ErrorStream` from an `ErrorStream` (returned as is if it has
 * `writelines`), or from a byte writer with `writeSync(p): number` or
 * `write(p): number | void` (strings UTF-8 encoded, partial writes
 * completed), e.g. `Deno.stderr`.
 *
 * @example Usage
 * ```ts
 * import { toErrorStream } from "./_io.ts";
 * import assert from "node:assert/strict";
 *
 * const chunks: Uint8Array[] = [];
 * const errors = toErrorStream({ write: (p: Uint8Array) => void chunks.push(p.slice()) });
 * errors.write("é");
 * assert.deepEqual(chunks, [new Uint8Array([0xc3, 0xa9])]);
 * ```
 *
 * @param stream An `ErrorStream` or a byte writer.
 * @returns An `ErrorStream`.
 * @throws {TypeError} When `stream` is neither.
 */
export function toErrorStream(stream: unknown): ErrorStream {
  const s = stream as Partial<ErrorStream> & ByteWriter;
  if (typeof s !== "object" || s === null) throw notAnErrorStream(stream);
  if (typeof s.writelines === "function" && typeof s.write === "function") {
    return stream as ErrorStream;
  }
  if (typeof s.writeSync !== "function" && typeof s.write !== "function") {
    throw notAnErrorStream(stream);
  }
  const write = (text: string): void => {
    checkText(text, "write to wsgi.errors");
    if (text.length > 0) {
      utf8Encoder ??= new TextEncoder();
      writeAll(s, utf8Encoder.encode(text));
    }
  };
  return {
    write,
    writelines(seq: Iterable<string>): void {
      for (const text of seq) write(text);
    },
    flush(): void {
      if (typeof s.flush === "function") s.flush();
    },
  };
}

// Errors are built apart from the checks that throw them, to keep the
// functions every request runs small: see "Startup cost" in _internal.ts.

function readerInputError(
  argument: "reader" | "limit",
  value: unknown,
): TypeError {
  const rule = argument === "reader"
    ? "must have a readSync method"
    : "must be a number, null or undefined";
  return new TypeError(
    `Cannot create ReaderInput: ${argument} ${rule}, not ${typeName(value)} ${
      argument === "reader" ? repr(value) : quote(value)
    }`,
  );
}

function notAWriter(writer: unknown): TypeError {
  return new TypeError(
    `Cannot write: the writer must have a writeSync or write method, not ${
      typeName(writer)
    } ${repr(writer)}`,
  );
}

function notAnErrorStream(stream: unknown): TypeError {
  return new TypeError(
    `Cannot use ${typeName(stream)} ${
      repr(stream)
    } as an error stream: it has no writelines, writeSync or write method`,
  );
}

let processErrors: ErrorStream | undefined;

/** The process's stderr as an `ErrorStream`, made once: the servers' error
 * and access log by default. */
export function processStderr(): ErrorStream {
  return processErrors ??= toErrorStream(Deno.stderr);
}
