/**
 * Request bodies for the servers: gathered before the application runs, so
 * that `wsgi.input` can stay synchronous. A body is held in memory up to a
 * threshold, spooled to an unlinked temporary file above it, and refused
 * over a maximum. A server may also share one `BodyBudget` among all its
 * bodies: past its memory budget bodies spool even under the threshold,
 * past its disk budget they are refused (503). `simple_server.ts` feeds a
 * body from a `ReadableStream`, `fastcgi.ts` from `STDIN` records. Not
 * exported by `deno.json`.
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
import { quote, repr, typeName } from "./_internal.ts";

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
  /** What all the server's bodies may hold together; `undefined` for no
   * limit. */
  budget?: BodyBudget;
}

/**
 * The bytes a server holds for the requests in flight, in memory and in
 * spool files, against its two budgets. Every `BodySpool` given the budget
 * charges what it keeps and refunds it on `release()`; a server may charge
 * other request data it holds in memory (FastCGI parameters) with
 * `takeMemory()` and `refundMemory()`.
 *
 * @example Usage
 * ```ts
 * import { BodyBudget, BodySpool } from "./_body.ts";
 * import assert from "node:assert/strict";
 *
 * const budget = new BodyBudget(4, 1024);
 * const spool = new BodySpool({ spoolThreshold: 100, maxBodySize: 100, budget });
 * spool.append(new TextEncoder().encode("hello"));
 * // Over the memory budget: spooled, although under the threshold.
 * assert.ok(spool.spooled);
 * assert.deepEqual([budget.memory, budget.disk], [0, 5]);
 * spool.release();
 * assert.deepEqual([budget.memory, budget.disk], [0, 0]);
 * ```
 */
export class BodyBudget {
  /** The most bytes held in memory. */
  readonly memoryBudget: number;
  /** The most bytes held in spool files. */
  readonly diskBudget: number;
  /** Bytes held in memory now. */
  memory = 0;
  /** Bytes held in spool files now. */
  disk = 0;

  /**
   * @param memoryBudget The most bytes held in memory (`Infinity`: no
   * limit).
   * @param diskBudget The most bytes held in spool files.
   */
  constructor(memoryBudget: number, diskBudget: number) {
    this.memoryBudget = memoryBudget;
    this.diskBudget = diskBudget;
  }

  /**
   * Charge `bytes` of memory, if they fit in the budget.
   *
   * @param bytes The bytes to hold.
   * @returns Whether they were charged.
   */
  takeMemory(bytes: number): boolean {
    if (this.memory + bytes > this.memoryBudget) return false;
    this.memory += bytes;
    return true;
  }

  /**
   * Give back memory charged with `takeMemory()`.
   *
   * @param bytes The bytes let go.
   */
  refundMemory(bytes: number): void {
    this.memory -= bytes;
  }

  /** Charge `bytes` of disk, if they fit in the budget. */
  takeDisk(bytes: number): boolean {
    if (this.disk + bytes > this.diskBudget) return false;
    this.disk += bytes;
    return true;
  }

  /** Give back disk charged with `takeDisk()`. */
  refundDisk(bytes: number): void {
    this.disk -= bytes;
  }
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

/** Thrown when a request body would take the server past its disk budget
 * (`BodyBudget`). */
export class OverBudget extends Error {
  /** The budget that was passed. */
  readonly diskBudget: number;

  /**
   * @param diskBudget The budget that was passed.
   */
  constructor(diskBudget: number) {
    super(
      `The request bodies in flight would take more than ${diskBudget} bytes of disk`,
    );
    this.name = "OverBudget";
    this.diskBudget = diskBudget;
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

/** A TCP port option: an integer from 0 (any free port) to 65535. */
export function checkPort(port: unknown): asserts port is number {
  if (typeof port !== "number" || !Number.isInteger(port)) {
    throw new TypeError(
      `Cannot create the server: the port must be an integer, not ${
        typeName(port)
      } ${quote(port)}`,
    );
  }
  if (port < 0 || port > 65535) {
    throw new RangeError(
      `Cannot create the server: the port must be from 0 to 65535, not ${port}`,
    );
  }
}

/** A `handlerClass` option: anything callable with `new`. */
export function checkHandlerClass<T>(handlerClass: T): T {
  if (typeof handlerClass !== "function") {
    throw new TypeError(
      `Cannot create the server: handlerClass must be a class, not ${
        typeName(handlerClass)
      } ${repr(handlerClass)}`,
    );
  }
  return handlerClass;
}

/** The body options both servers take, checked, with their defaults. */
export function checkBodyOptions(
  options: { spoolThreshold?: unknown; maxBodySize?: unknown },
): { spoolThreshold: number; maxBodySize: number } {
  return {
    spoolThreshold: checkSize(
      options.spoolThreshold,
      "spoolThreshold",
      DEFAULT_SPOOL_THRESHOLD,
    ),
    maxBodySize: checkSize(
      options.maxBodySize,
      "maxBodySize",
      DEFAULT_MAX_BODY_SIZE,
    ),
  };
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
 * removes its spool file once the response is over. With a `BodyBudget` in
 * its limits, it charges the bytes it holds (in memory or on disk) until
 * `release()`.
 */
export class BodySpool {
  readonly #limits: BodyLimits;
  #chunks: Uint8Array[] = [];
  #length = 0;
  #file: Deno.FsFile | null = null;
  #path: string | null = null;
  /** What is charged to the budget now. */
  #memory = 0;
  #disk = 0;

  /**
   * @param limits The spool threshold, the maximum, the spool directory
   * and the budget.
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
   * `chunk`'s memory, so a piece kept in memory is copied. A body goes to
   * a file once over `spoolThreshold`, or once its piece would take the
   * budget's memory past its limit.
   *
   * @throws {BodyTooLarge} Once the body is over `maxBodySize`; nothing
   * more may be appended then.
   * @throws {OverBudget} When the piece would take the budget's disk past
   * its limit; nothing more may be appended then.
   */
  append(chunk: Uint8Array, borrowed = false): void {
    const limits = this.#limits;
    const length = this.#length + chunk.length;
    if (length > limits.maxBodySize) {
      throw new BodyTooLarge(limits.maxBodySize);
    }
    const budget = limits.budget;
    if (this.#file !== null) {
      this.#chargeDisk(budget, chunk.length);
      this.#length = length;
      writeAllSync(this.#file, chunk);
      return;
    }
    if (
      length <= limits.spoolThreshold &&
      (budget === undefined || budget.takeMemory(chunk.length))
    ) {
      if (budget !== undefined) this.#memory += chunk.length;
      this.#chunks.push(borrowed ? chunk.slice() : chunk);
      this.#length = length;
      return;
    }
    // To a file: over the threshold, or over the memory budget.
    this.#chargeDisk(budget, length);
    const file = this.#openFile();
    this.#length = length;
    for (const piece of this.#chunks) writeAllSync(file, piece);
    writeAllSync(file, chunk);
    this.#chunks = [];
    budget?.refundMemory(this.#memory);
    this.#memory = 0;
  }

  #chargeDisk(budget: BodyBudget | undefined, bytes: number): void {
    if (budget === undefined) return;
    if (!budget.takeDisk(bytes)) throw new OverBudget(budget.diskBudget);
    this.#disk += bytes;
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

  /** Drop the body: close and remove the spool file, refund the budget.
   * Idempotent. */
  release(): void {
    const file = this.#file;
    const path = this.#path;
    this.#file = this.#path = null;
    this.#chunks = [];
    const budget = this.#limits.budget;
    if (budget !== undefined) {
      budget.refundMemory(this.#memory);
      budget.refundDisk(this.#disk);
      this.#memory = this.#disk = 0;
    }
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

/** What a request refused for want of room is told. */
export const BUSY_MESSAGE =
  "The server is too busy to take this request now; try again later.";

/** The answer to a request refused for want of room (503). */
export const BUSY_APP: Application = errorApp(
  "503 Service Unavailable",
  BUSY_MESSAGE,
);

/**
 * The application that answers a body over `maxBodySize` (413), one past
 * the disk budget (503) or one that could not be read (400), instead of
 * the server's application.
 */
export function bodyErrorApp(error: unknown, maxBodySize: number): Application {
  return error instanceof BodyTooLarge
    ? errorApp(
      "413 Request Entity Too Large",
      `The request body is larger than ${maxBodySize} bytes.`,
    )
    : error instanceof OverBudget
    ? BUSY_APP
    : errorApp("400 Bad Request", "The request body could not be read.");
}
