/**
 * Request bodies for the servers: gathered before the application runs, so
 * that `wsgi.input` can stay synchronous. A body is held in memory up to a
 * threshold, spooled to an unlinked temporary file above it, and refused
 * over a maximum. `simple_server.ts` feeds it from a `ReadableStream`,
 * `fastcgi.ts` from `STDIN` records. Not exported by `deno.json`.
 *
 * @example Usage
 * ```ts
 * import { BodySpool } from "./_body.ts";
 * import assert from "node:assert/strict";
 *
 * const spool = new BodySpool({ spoolThreshold: 4, maxBodySize: 100 });
 * spool.append(new TextEncoder().encode("hello "));
 * spool.append(new TextEncoder().encode("world"));
 * const input = spool.input();
 * assert.equal(new TextDecoder().decode(input.read()), "hello world");
 * spool.release();
 * ```
 *
 * @module
 */

import type { Application, InputStream } from "./types.ts";
import { BytesInput, concat, ReaderInput } from "./_io.ts";
import { quote, typeName } from "./_internal.ts";

const MIB = 1024 * 1024;
/** Bodies up to this many bytes stay in memory by default. */
export const DEFAULT_SPOOL_THRESHOLD = MIB;
/** Bodies over this many bytes are refused by default. */
export const DEFAULT_MAX_BODY_SIZE = 1024 * MIB;

/** Where a server keeps request bodies, and how large it takes them. */
export interface BodyLimits {
  /** Bodies up to this many bytes stay in memory. */
  spoolThreshold: number;
  /** Bodies over this many bytes are refused. */
  maxBodySize: number;
  /** The directory of spool files; `undefined` for the system's. */
  tempDir?: string;
}

/** Thrown when a request body is over `maxBodySize`. */
export class BodyTooLarge extends Error {
  /**
   * @param maxBodySize The limit that was passed.
   */
  constructor(maxBodySize: number) {
    super(`The request body is larger than ${maxBodySize} bytes`);
    this.name = "BodyTooLarge";
  }
}

/** Refuse an option that is not a number. */
function checkNumber(value: unknown, name: string): asserts value is number {
  if (typeof value !== "number") {
    throw new TypeError(
      `Cannot create the server: ${name} must be a number, not ${
        typeName(value)
      } ${quote(value)}`,
    );
  }
}

/**
 * A size option: `undefined` gives `fallback`; otherwise a non-negative
 * integer or `Infinity`.
 */
export function checkSize(
  value: unknown,
  name: string,
  fallback: number,
): number {
  if (value === undefined) return fallback;
  checkNumber(value, name);
  if (!(value >= 0) || (value !== Infinity && !Number.isSafeInteger(value))) {
    throw new RangeError(
      `Cannot create the server: ${name} must be a non-negative integer or Infinity, not ${value}`,
    );
  }
  return value;
}

/** A count option (connections, requests): `undefined` gives `fallback`;
 * otherwise a positive integer. */
export function checkCount(
  value: unknown,
  name: string,
  fallback: number,
): number {
  if (value === undefined) return fallback;
  checkNumber(value, name);
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new RangeError(
      `Cannot create the server: ${name} must be a positive integer, not ${value}`,
    );
  }
  return value;
}

/** One element of a Content-Length list: digits, with optional spaces and
 * tabs around them (RFC 9110 §5.6.1's OWS). */
const LENGTH_ELEMENT = /^[ \t]*([0-9]+)[ \t]*$/;

/**
 * A request's `Content-Length` value as one decimal number, or `null` when
 * it is not a valid length and the request must be refused (400).
 *
 * RFC 9110 §8.6: the value is one or more digits; a list of the same
 * decimal value repeated (`"3, 3"`, which a proxy or a server that joins
 * repeated header lines makes of two `Content-Length: 3` lines) may be
 * taken as that value. Spaces and tabs around each element are dropped and
 * leading zeros go (`" 03 "` → `"3"`). Anything else is `null`: an empty
 * value or element, differing values, a sign, any other character, or a
 * value over `Number.MAX_SAFE_INTEGER` (beyond it, lengths can no longer
 * be told apart).
 *
 * @example Usage
 * ```ts
 * import { normalizeContentLength } from "./_body.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(normalizeContentLength("3, 3"), "3");
 * assert.equal(normalizeContentLength("3, 4"), null);
 * ```
 *
 * @param value The field value, repeated lines joined with `", "`.
 * @returns The length in decimal digits, or `null`.
 */
export function normalizeContentLength(value: string): string | null {
  // The common case, a plain number: no copy, no regular expression.
  const length = value.length;
  if (
    length > 0 && length < 16 &&
    (length === 1 || value.charCodeAt(0) !== 0x30)
  ) {
    let i = 0;
    for (; i < length; i++) {
      const c = value.charCodeAt(i);
      if (c < 0x30 || c > 0x39) break;
    }
    if (i === length) return value;
  }
  let found = -1;
  for (const element of value.split(",")) {
    const match = LENGTH_ELEMENT.exec(element);
    if (match === null) return null;
    const number = Number(match[1]);
    if (number > Number.MAX_SAFE_INTEGER) return null;
    if (found >= 0 && number !== found) return null;
    found = number;
  }
  return String(found);
}

/**
 * Write all of `data` to a spool file. Synchronously: a write to the page
 * cache takes microseconds, while Deno's async file writes, interleaved
 * with reads of a request body, slow an upload down by an order of
 * magnitude.
 */
function writeAllSync(file: Deno.FsFile, data: Uint8Array): void {
  for (let offset = 0; offset < data.length;) {
    offset += file.writeSync(data.subarray(offset));
  }
}

/**
 * One request body as it arrives: `append()` each piece, then `input()`
 * gives it to the application as `wsgi.input`, and `release()` closes and
 * removes its spool file once the response is over.
 */
export class BodySpool {
  readonly #limits: BodyLimits;
  #chunks: Uint8Array[] = [];
  #length = 0;
  #file: Deno.FsFile | null = null;
  #path: string | null = null;

  /**
   * @param limits The spool threshold, the maximum and the spool directory.
   */
  constructor(limits: BodyLimits) {
    this.#limits = limits;
  }

  /** The bytes appended so far. */
  get length(): number {
    return this.#length;
  }

  /** Whether the body has gone to a file. */
  get spooled(): boolean {
    return this.#file !== null;
  }

  /**
   * Add the next piece of the body. `borrowed` says the caller will reuse
   * `chunk`'s memory, so a piece kept in memory is copied.
   *
   * @throws {BodyTooLarge} Once the body is over `maxBodySize`; nothing
   * more may be appended then.
   */
  append(chunk: Uint8Array, borrowed = false): void {
    const length = this.#length + chunk.length;
    if (length > this.#limits.maxBodySize) {
      throw new BodyTooLarge(this.#limits.maxBodySize);
    }
    this.#length = length;
    if (this.#file !== null) {
      writeAllSync(this.#file, chunk);
      return;
    }
    this.#chunks.push(borrowed ? chunk.slice() : chunk);
    if (length > this.#limits.spoolThreshold) {
      const file = this.#openFile();
      for (const piece of this.#chunks) writeAllSync(file, piece);
      this.#chunks = [];
    }
  }

  /**
   * The body as `wsgi.input`, from its first byte. Call once, after the
   * last `append()`.
   *
   * @returns The input stream.
   */
  input(): InputStream {
    const file = this.#file;
    if (file === null) {
      const chunks = this.#chunks;
      this.#chunks = [];
      return new BytesInput(concat(chunks, this.#length));
    }
    file.seekSync(0, Deno.SeekMode.Start);
    return new ReaderInput(file, this.#length);
  }

  /** Drop the body: close and remove the spool file. Idempotent. */
  release(): void {
    const file = this.#file;
    const path = this.#path;
    this.#file = this.#path = null;
    this.#chunks = [];
    try {
      file?.close();
    } finally {
      if (path !== null) Deno.removeSync(path);
    }
  }

  #openFile(): Deno.FsFile {
    const path = Deno.makeTempFileSync({
      dir: this.#limits.tempDir,
      prefix: "wsgiref-body-",
    });
    this.#path = path;
    this.#file = Deno.openSync(path, { read: true, write: true });
    try {
      // Unlinked at once where the system allows it: nothing is left
      // behind, even if the process dies.
      Deno.removeSync(path);
      this.#path = null;
    } catch {
      // Windows: removed by release().
    }
    return this.#file;
  }
}

/** An application that answers with a short plain-text error, for a
 * request the server refuses without calling its application. */
export function errorApp(status: string, message: string): Application {
  return (_environ, startResponse) => {
    startResponse(status, [["Content-Type", "text/plain; charset=utf-8"]]);
    return [new TextEncoder().encode(message + "\n")];
  };
}

/**
 * The application that answers a body over `maxBodySize` (413) or one that
 * could not be read (400), instead of the server's application.
 */
export function bodyErrorApp(error: unknown, maxBodySize: number): Application {
  return error instanceof BodyTooLarge
    ? errorApp(
      "413 Request Entity Too Large",
      `The request body is larger than ${maxBodySize} bytes.`,
    )
    : errorApp("400 Bad Request", "The request body could not be read.");
}
