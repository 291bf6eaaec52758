/**
 * The loop that sends an application's result, written once for every
 * handler of this package (wsgiref has it once too, in `finish_response`):
 * it refuses a result that is no iterable of chunks, pulls the chunks
 * (synchronously while it can, awaiting an `AsyncIterable` or its handler's
 * output when it must), writes each through the handler's `write()`,
 * leaves the iterator as `for...of` does when writing fails, and closes the
 * result before an error goes on. `BaseHandler` runs it to the end,
 * `FastCGIHandler` with a pause whenever the connection has a backlog,
 * and `ServerHandler` a chunk at a time as the client reads. Not exported
 * by `deno.json`.
 *
 * @example Sending a result through a handler's `write()`
 * ```ts
 * import { ResultLoop } from "./_result.ts";
 * import assert from "node:assert/strict";
 *
 * const sent: number[] = [];
 * const handler = { write: (data: Uint8Array) => void sent.push(data.length) };
 * const loop = new ResultLoop(handler, [new Uint8Array(2), new Uint8Array(3)]);
 * // A synchronous result goes out synchronously: nothing to await.
 * assert.equal(loop.pump(), undefined);
 * assert.ok(loop.done);
 * assert.deepEqual(sent, [2, 3]);
 * ```
 *
 * @module
 */

import type { ResponseBody } from "./types.ts";
import { concat } from "./_io.ts";
import {
  AssertionError,
  closeResult,
  isThenable,
  quote,
  repr,
  RESOLVED,
  typeName,
} from "./_internal.ts";

/** What a loop hands chunks to: a handler, through its `write()`. */
export interface ChunkWriter {
  /** Send one chunk (PEP 3333's `write`). */
  write(data: Uint8Array): void;
}

/**
 * Asked before each chunk is pulled: `true` pauses the loop (`pump()`
 * returns, to be called again later), a promise makes it wait and then
 * ask again, `false` lets it pull.
 */
export type Gate<T> = (owner: T) => boolean | Promise<void>;

/** The array iterator every plain `Array` has: such a result is walked
 * by index, which V8 runs without an iterator object. */
const ARRAY_VALUES = Array.prototype[Symbol.iterator];

/** The longest part of a string result quoted in an error message. */
const SHOWN_LENGTH = 40;

function shorten(text: string): string {
  return text.length > SHOWN_LENGTH
    ? text.slice(0, SHOWN_LENGTH) + "..."
    : text;
}

/**
 * Refuse a string or a bare `Uint8Array` as the application's result,
 * saying what it returned and what it should: both are iterable, but would
 * be sent one character or one number at a time. (Other results that are
 * not iterable are refused when the loop starts.)
 *
 * @param result What the application returned.
 * @returns `result`.
 * @throws {AssertionError} For a string or a `Uint8Array`.
 */
export function checkResult(result: ResponseBody): ResponseBody {
  const value = result as unknown;
  if (typeof value === "string") {
    throw new AssertionError(
      `The application returned a string (${
        quote(shorten(value))
      }); it must return an iterable of Uint8Array chunks, e.g. [new TextEncoder().encode(text)]`,
    );
  }
  if (value instanceof Uint8Array) {
    throw new AssertionError(
      `The application returned a bare Uint8Array (${value.length} bytes); it must return an iterable of Uint8Array chunks, e.g. [bytes]`,
    );
  }
  return result;
}

// Errors are built apart from the loop that throws them, to keep the code
// every request runs small: see "Startup cost" in _internal.ts.

function notIterable(result: unknown): TypeError {
  return new TypeError(
    `Cannot send the response: the application returned ${typeName(result)} ${
      repr(result)
    }, which is not iterable`,
  );
}

/** The chunk at `index` of a result is no `Uint8Array`: say so, rather
 * than blame a `write()` the application never called. */
function badChunk(value: unknown, index: number): AssertionError {
  const what = typeof value === "string"
    ? `a string (${quote(shorten(value))})`
    : `${typeName(value)} ${repr(value)}`;
  const hint = typeof value === "string"
    ? ", e.g. new TextEncoder().encode(text)"
    : "";
  return new AssertionError(
    `The application's result yielded ${what} at index ${index}; each chunk must be a Uint8Array${hint}`,
  );
}

/**
 * Call `result.close()` for `owner` (once per request, see `closeResult`),
 * then throw `error`: what every path that fails while a result is open
 * does. Not `BaseHandler.close()`, which would also forget the request
 * that `handleError()` still answers (bpo-29183).
 *
 * @param result The application's result.
 * @param owner The handler.
 * @param error The error to throw.
 * @returns A promise that rejects with `error` (or with the error of
 * `close()`, as in wsgiref).
 */
export async function closeThenThrow(
  result: unknown,
  owner: object,
  error: unknown,
): Promise<never> {
  await closeResult(result, owner);
  throw error;
}

/**
 * One result being sent: `pump()` pulls its chunks and writes them through
 * the owner's `write()`, synchronously while it can; it returns a promise
 * only when it has to wait (an `AsyncIterable`, or a gate that asks it to).
 *
 * When a chunk cannot be written (or the gate fails), the iterator is left
 * as `for...of` leaves it (its `return()` called, awaited, its errors
 * dropped in favour of the first); whatever fails, the result's `close()`
 * is called before the error goes on. `stop()` ends it from outside.
 */
export class ResultLoop<T extends ChunkWriter = ChunkWriter> {
  /** The application's result. */
  readonly result: unknown;
  /** Every chunk has been written. */
  done = false;
  /** `stop()` was called: whoever called it closes the result. */
  stopped = false;
  readonly #owner: T;
  readonly #skipEmpty: boolean;
  #array: ArrayLike<unknown> | null = null;
  #iterator: Iterator<unknown> | AsyncIterator<unknown> | null = null;
  #async = false;
  #failed = false;
  /** Chunks pulled so far. */
  #count = 0;

  /**
   * @param owner The handler whose `write()` takes the chunks.
   * @param result The application's result.
   * @param skipEmpty Leave empty chunks out (PEP 3333: no headers before
   * the first non-empty chunk).
   */
  constructor(owner: T, result: unknown, skipEmpty = false) {
    this.#owner = owner;
    this.result = result;
    this.#skipEmpty = skipEmpty;
  }

  /** Start iterating the result; refuse one that is not iterable. */
  #open(): void {
    const result = this.result as Partial<
      Iterable<unknown> & AsyncIterable<unknown>
    >;
    const iterate = result?.[Symbol.iterator];
    if (typeof iterate === "function") {
      if (iterate === ARRAY_VALUES && Array.isArray(result)) {
        this.#array = result;
      } else this.#iterator = iterate.call(result);
    } else if (typeof result?.[Symbol.asyncIterator] === "function") {
      this.#iterator = result[Symbol.asyncIterator]!();
      this.#async = true;
    } else {
      throw notIterable(result);
    }
  }

  /** Check one chunk and hand it to the owner. */
  #write(value: unknown): void {
    const index = this.#count++;
    if (!(value instanceof Uint8Array)) throw badChunk(value, index);
    if (value.length > 0 || !this.#skipEmpty) this.#owner.write(value);
  }

  /**
   * Pull and write chunks until the result ends (`done`), the gate pauses
   * the loop, or `stop()` is called.
   *
   * @param gate Asked before each chunk: pause, wait or pull.
   * @returns `undefined` when it got there synchronously, else a promise
   * that settles then. A failure is always a rejected promise, once the
   * result is closed.
   */
  pump(gate?: Gate<T>): Promise<void> | undefined {
    if (this.done || this.stopped || this.#failed) return undefined;
    let pulling = true;
    try {
      if (this.#array === null && this.#iterator === null) this.#open();
      if (this.#async) return this.#pumpLater(gate, null);
      const owner = this.#owner;
      const array = this.#array;
      for (;;) {
        if (gate !== undefined) {
          const asked = gate(owner);
          if (asked === true) return undefined;
          if (asked !== false) return this.#pumpLater(gate, asked);
        }
        pulling = true;
        let value: unknown;
        if (array !== null) {
          if (this.#count >= array.length) {
            this.done = true;
            return undefined;
          }
          value = array[this.#count];
        } else {
          const step = (this.#iterator as Iterator<unknown>).next();
          if (step.done) {
            this.done = true;
            return undefined;
          }
          value = step.value;
        }
        pulling = false;
        this.#write(value);
        if (this.stopped) return undefined;
      }
    } catch (error) {
      return this.#fail(error, !pulling);
    }
  }

  /** `pump()` once it has to wait: for `waiting`, or an async iterator. */
  async #pumpLater(
    gate: Gate<T> | undefined,
    waiting: Promise<void> | null,
  ): Promise<void> {
    const owner = this.#owner;
    const array = this.#array;
    const iterator = this.#iterator;
    let pulling = false;
    try {
      for (;;) {
        if (waiting === null && gate !== undefined) {
          const asked = gate(owner);
          if (asked === true) return;
          if (asked !== false) waiting = asked;
        }
        if (waiting !== null) {
          await waiting;
          waiting = null;
          if (this.stopped) return;
          continue; // ask the gate again
        }
        pulling = true;
        let value: unknown;
        if (array !== null) {
          if (this.#count >= array.length) {
            this.done = true;
            return;
          }
          value = array[this.#count];
        } else {
          let step = iterator!.next();
          if (this.#async) step = await step;
          // Stopped while the iterator was busy: its chunk is dropped.
          if (this.stopped) return;
          if ((step as IteratorResult<unknown>).done) {
            this.done = true;
            return;
          }
          value = (step as IteratorResult<unknown>).value;
        }
        pulling = false;
        this.#write(value);
        if (this.stopped) return;
      }
    } catch (error) {
      await this.#fail(error, !pulling);
    }
  }

  /** The loop failed: leave the iterator unless the error came from it
   * (as `for...of` does), close the result, throw. */
  async #fail(error: unknown, leaveIterator: boolean): Promise<never> {
    this.#failed = true;
    const iterator = this.#iterator;
    if (leaveIterator && iterator !== null && !this.stopped) {
      try {
        const returned = iterator.return?.();
        if (isThenable(returned)) await returned;
      } catch {
        // As for...of: the error that made the loop leave is the one told.
      }
    }
    return await closeThenThrow(this.result, this.#owner, error);
  }

  /**
   * Leave the iteration before its end, as `break` leaves a `for...of`
   * loop: the iterator's `return()`, awaited; its error is thrown.
   *
   * @returns `undefined` when nothing is to wait for, else a promise.
   */
  leave(): Promise<void> | undefined {
    const iterator = this.#iterator;
    if (this.done || this.stopped || this.#failed || iterator === null) {
      return undefined;
    }
    this.stopped = true;
    if (typeof iterator.return !== "function") return undefined;
    const returned = iterator.return();
    return isThenable(returned) ? settled(returned) : undefined;
  }

  /**
   * End the iteration from outside (the client went away, the request was
   * cut short or aborted): a `pump()` under way returns, the next does
   * nothing, and the iterator's `return()` is called without waiting for
   * it (an async generator waiting inside `next()` only returns once that
   * settles). The caller closes the result.
   *
   * @param onError Where an error of `return()` goes.
   */
  stop(onError: (error: unknown) => void): void {
    if (this.stopped) return;
    this.stopped = true;
    const iterator = this.#iterator;
    if (iterator === null || this.done || this.#failed) return;
    try {
      const returned = iterator.return?.();
      if (isThenable(returned)) returned.then(undefined, onError);
    } catch (error) {
      onError(error);
    }
  }
}

async function settled(value: PromiseLike<unknown>): Promise<void> {
  await value;
}

/** What `sendResult()` needs of a handler: `BaseHandler`'s methods. */
export interface ResultHandler extends ChunkWriter {
  /** Whether the result is a `wsgiFileWrapper`. */
  resultIsFile(): boolean;
  /** Send a file wrapper result by a faster route, if there is one. */
  sendfile(): boolean | Promise<boolean>;
  /** Send the headers if no chunk did. */
  finishContent(): void;
  /** Close the result; forget the request. */
  close(): Promise<void>;
}

/**
 * wsgiref's `finish_response` for the handlers that send the whole result
 * at once: `sendfile()` for a file wrapper if it can, otherwise every
 * chunk through `loop` (`gate` asked before each), then `finishContent()`
 * and `close()`. On an error the result is closed and the error thrown;
 * `close()` is not called, so the state stays for `handleError()`. A
 * stopped loop leaves the closing to whoever stopped it.
 *
 * @param handler The handler.
 * @param loop The loop over the handler's result.
 * @param gate Asked before each chunk; never pauses here.
 * @returns A promise that settles when the response is sent; `RESOLVED`
 * itself when everything happened synchronously.
 */
export function sendResult<T extends ResultHandler>(
  handler: T,
  loop: ResultLoop<T>,
  gate?: Gate<T>,
): Promise<void> {
  let sent: boolean | PromiseLike<boolean> = false;
  try {
    if (handler.resultIsFile()) sent = handler.sendfile();
  } catch (error) {
    return closeThenThrow(loop.result, handler, error);
  }
  if (isThenable<boolean>(sent)) {
    return sendAfterFile(handler, loop, gate, sent);
  }
  if (sent) return handler.close();
  const pumping = loop.pump(gate);
  if (pumping !== undefined) return sendAfterPump(handler, loop, pumping);
  return finishSending(handler, loop);
}

/** `sendResult()` after a `sendfile()` that returned a promise. */
async function sendAfterFile<T extends ResultHandler>(
  handler: T,
  loop: ResultLoop<T>,
  gate: Gate<T> | undefined,
  sending: PromiseLike<boolean>,
): Promise<void> {
  let sent: boolean;
  try {
    sent = await sending;
  } catch (error) {
    return await closeThenThrow(loop.result, handler, error);
  }
  if (sent) return await handler.close();
  await loop.pump(gate);
  return await finishSending(handler, loop);
}

/** `sendResult()` once the loop has to wait. */
async function sendAfterPump<T extends ResultHandler>(
  handler: T,
  loop: ResultLoop<T>,
  pumping: Promise<void>,
): Promise<void> {
  await pumping;
  return await finishSending(handler, loop);
}

/** The chunks are out: `finishContent()` and `close()`. */
function finishSending<T extends ResultHandler>(
  handler: T,
  loop: ResultLoop<T>,
): Promise<void> {
  if (loop.stopped) return RESOLVED;
  try {
    handler.finishContent();
  } catch (error) {
    return closeThenThrow(loop.result, handler, error);
  }
  return handler.close();
}

/** The buffer of `Unsent.takeShared()`, grown up to `SHARED_LIMIT`. */
let shared = new Uint8Array(0);
const SHARED_LIMIT = 64 * 1024;

/**
 * Bytes a handler has written and not yet sent: the status, the headers
 * and the first chunk leave together, and until they leave an error page
 * can take their place (`takeBack`).
 */
export class Unsent {
  /** The chunks, in order. */
  chunks: Uint8Array[] = [];
  /** Their bytes together. */
  bytes = 0;

  /**
   * Keep a chunk (an empty one is left out).
   *
   * @param data The bytes, not copied.
   */
  push(data: Uint8Array): void {
    if (data.length > 0) {
      // Most responses are one chunk: an array of one, not a backing store
      // sized for growth.
      if (this.bytes === 0) this.chunks = [data];
      else this.chunks.push(data);
      this.bytes += data.length;
    }
  }

  /**
   * All the chunks as one, and forget them.
   *
   * @returns The bytes (the one chunk itself when there is one).
   */
  take(): Uint8Array {
    const data = concat(this.chunks, this.bytes);
    this.clear();
    return data;
  }

  /**
   * All the chunks as one, and forget them; several are joined in a
   * buffer shared by every `Unsent`, good until the next `takeShared()`:
   * for a consumer that copies them at once (a new buffer per response
   * costs more than the copy).
   *
   * @returns The bytes.
   */
  takeShared(): Uint8Array {
    const chunks = this.chunks;
    const bytes = this.bytes;
    if (chunks.length <= 1 || bytes > SHARED_LIMIT) return this.take();
    if (shared.length < bytes) {
      shared = new Uint8Array(
        Math.min(SHARED_LIMIT, Math.max(bytes, 4096) * 2),
      );
    }
    let at = 0;
    for (const chunk of chunks) {
      shared.set(chunk, at);
      at += chunk.length;
    }
    this.clear();
    return shared.subarray(0, bytes);
  }

  /** Forget the chunks. */
  clear(): void {
    if (this.bytes > 0) {
      this.chunks = [];
      this.bytes = 0;
    }
  }
}

/**
 * Take back what `handler` wrote while none of it has left: the headers
 * count as unsent again, so the error page can go instead.
 *
 * @param handler The handler.
 * @param unsent Its unsent bytes.
 */
export function takeBack(
  handler: { headersSent: boolean; bytesSent: number },
  unsent: Unsent,
): void {
  unsent.clear();
  handler.headersSent = false;
  handler.bytesSent = 0;
}
