/**
 * Type shapes of the gateway interface (PEP 3333), as `wsgiref.types` names
 * them: the environ, the input and error streams, `start_response`, `write`
 * and the application itself.
 *
 * Strings in an environ, a status and header lines are latin-1 strings: each
 * character code is one byte (0–255).
 *
 * @example Typing an application
 * ```ts
 * import type { Application } from "@wsgi/wsgiref/types";
 * import assert from "node:assert/strict";
 *
 * const app: Application = (_environ, startResponse) => {
 *   startResponse("200 OK", [["Content-Type", "text/plain"]]);
 *   return [new TextEncoder().encode("Hello")];
 * };
 * assert.equal(typeof app, "function");
 * ```
 *
 * @module
 */

/**
 * A list of `[name, value]` header pairs, in order, as given to
 * `startResponse`.
 *
 * @example Usage
 * ```ts
 * import type { HeaderList } from "@wsgi/wsgiref/types";
 * import assert from "node:assert/strict";
 *
 * const headers: HeaderList = [["Content-Type", "text/plain"]];
 * assert.equal(headers[0][0], "Content-Type");
 * ```
 */
export type HeaderList = [string, string][];

/**
 * The request body stream, `environ["wsgi.input"]`. Synchronous: servers read
 * or spool the body before they call the application.
 *
 * @example Usage
 * ```ts
 * import type { InputStream } from "@wsgi/wsgiref/types";
 * import { setupTestingDefaults } from "@wsgi/wsgiref/util";
 * import assert from "node:assert/strict";
 *
 * const environ = {};
 * setupTestingDefaults(environ);
 * const input = (environ as { "wsgi.input": InputStream })["wsgi.input"];
 * assert.equal(input.read().length, 0);
 * ```
 */
export interface InputStream {
  /** Read up to `size` bytes; with no size or a negative one, all the rest. */
  read(size?: number): Uint8Array;
  /** Read one line, up to and including `"\n"`, at most `size` bytes. */
  readline(size?: number): Uint8Array;
  /** Read the remaining lines; stop once `hint` bytes have been read. */
  readlines(hint?: number): Uint8Array[];
  /** Iterate over the remaining lines. */
  [Symbol.iterator](): Iterator<Uint8Array>;
  /**
   * Read into `buffer` up to its length, fewer only at the end, and return
   * how many bytes were read (`0` at the end), as Python's `readinto()`.
   * An extension of this package, not PEP 3333: its servers' inputs have
   * it; check for it before use. Unlike `read()`, it makes no new buffer,
   * so a large body read in a loop leaves no garbage behind.
   */
  readinto?(buffer: Uint8Array): number;
}

/**
 * The error stream, `environ["wsgi.errors"]`: text for the server's log.
 *
 * @example Usage
 * ```ts
 * import type { ErrorStream } from "@wsgi/wsgiref/types";
 * import assert from "node:assert/strict";
 *
 * const lines: string[] = [];
 * const errors: ErrorStream = {
 *   write: (s) => void lines.push(s),
 *   writelines: (seq) => void lines.push(...seq),
 *   flush: () => {},
 * };
 * errors.write("oops\n");
 * assert.deepEqual(lines, ["oops\n"]);
 * ```
 */
export interface ErrorStream {
  /** Write a string. */
  write(s: string): void;
  /** Write each string of a sequence. */
  writelines(seq: Iterable<string>): void;
  /** Push buffered text out. */
  flush(): void;
}

/**
 * The imperative `write` callable that `startResponse` returns.
 *
 * @example Usage
 * ```ts
 * import type { Write } from "@wsgi/wsgiref/types";
 * import assert from "node:assert/strict";
 *
 * const chunks: Uint8Array[] = [];
 * const write: Write = (data) => void chunks.push(data);
 * write(new Uint8Array([104, 105]));
 * assert.equal(chunks.length, 1);
 * ```
 */
export type Write = (data: Uint8Array) => void;

/**
 * `start_response(status, headers, exc_info)`: begins the response and
 * returns the `write` callable. `excInfo` is the caught error, given only
 * when the application calls it again from an error handler.
 *
 * @example Usage
 * ```ts
 * import type { StartResponse } from "@wsgi/wsgiref/types";
 * import assert from "node:assert/strict";
 *
 * let seen = "";
 * const startResponse: StartResponse = (status) => {
 *   seen = status;
 *   return () => {};
 * };
 * startResponse("204 No Content", []);
 * assert.equal(seen, "204 No Content");
 * ```
 */
export type StartResponse = (
  status: string,
  headers: HeaderList,
  excInfo?: unknown,
) => Write;

/**
 * Something that reads synchronously into a buffer, as `Deno.FsFile` and
 * `Deno.stdin` do: the number of bytes read, or `null` at the end.
 *
 * @example Usage
 * ```ts
 * import type { SyncReader } from "@wsgi/wsgiref/types";
 * import assert from "node:assert/strict";
 *
 * const reader: SyncReader = { readSync: () => null };
 * assert.equal(reader.readSync(new Uint8Array(1)), null);
 * ```
 */
export interface SyncReader {
  /** Fill `p` from the start; the count read, or `null` at the end. */
  readSync(p: Uint8Array): number | null;
  /** Release the underlying resource. */
  close?(): void;
}

/**
 * A file-like object for `FileWrapper`: `read(size)` returns at most `size`
 * bytes, an empty array at the end.
 *
 * @example Usage
 * ```ts
 * import type { FileLike } from "@wsgi/wsgiref/types";
 * import assert from "node:assert/strict";
 *
 * const empty: FileLike = { read: () => new Uint8Array(0) };
 * assert.equal(empty.read(10).length, 0);
 * ```
 */
export interface FileLike {
  /** Read at most `size` bytes; an empty array at the end. */
  read(size: number): Uint8Array;
  /** Release the underlying resource. */
  close?(): void;
}

/**
 * The shape of `environ["wsgi.file_wrapper"]`: a class that turns a
 * file-like object into an iterable of blocks.
 *
 * @example Usage
 * ```ts
 * import type { FileWrapperClass } from "@wsgi/wsgiref/types";
 * import { FileWrapper } from "@wsgi/wsgiref/util";
 * import assert from "node:assert/strict";
 *
 * const Wrapper: FileWrapperClass = FileWrapper;
 * const wrapped = new Wrapper({ read: () => new Uint8Array(0) });
 * assert.deepEqual([...wrapped], []);
 * ```
 */
export type FileWrapperClass = new (
  filelike: FileLike | SyncReader,
  blksize?: number,
) => Iterable<Uint8Array> & { close(): void };

/**
 * The request environment: CGI variables plus the `wsgi.*` keys. Every
 * well-known key is optional in the type, so a partial environ type-checks;
 * "missing" always means `!(key in environ)`.
 *
 * @example Usage
 * ```ts
 * import type { Environ } from "@wsgi/wsgiref/types";
 * import assert from "node:assert/strict";
 *
 * const environ: Environ = { REQUEST_METHOD: "GET", PATH_INFO: "/" };
 * assert.equal(environ.PATH_INFO, "/");
 * ```
 */
export interface Environ {
  /** Any other CGI variable or server extension. */
  [key: string]: unknown;
  /** The HTTP method, e.g. `GET`. */
  REQUEST_METHOD?: string;
  /** Where the application is mounted: `""` or a path starting with `/`. */
  SCRIPT_NAME?: string;
  /** The rest of the path, percent-decoded to latin-1. */
  PATH_INFO?: string;
  /** The raw query string, without `?`. */
  QUERY_STRING?: string;
  /** The request's `Content-Type`. */
  CONTENT_TYPE?: string;
  /** The request body's length in decimal, or `""`. */
  CONTENT_LENGTH?: string;
  /** The server's host name. */
  SERVER_NAME?: string;
  /** The server's port, as a string. */
  SERVER_PORT?: string;
  /** The protocol of the request, e.g. `HTTP/1.1`. */
  SERVER_PROTOCOL?: string;
  /** The gateway interface version, e.g. `CGI/1.1`. */
  GATEWAY_INTERFACE?: string;
  /** The client's address. */
  REMOTE_ADDR?: string;
  /** The `Host` request header. */
  HTTP_HOST?: string;
  /** The interface version, `[1, 0]`. */
  "wsgi.version"?: [number, number];
  /** `http` or `https`. */
  "wsgi.url_scheme"?: string;
  /** The request body. */
  "wsgi.input"?: InputStream;
  /** The error log stream. */
  "wsgi.errors"?: ErrorStream;
  /** Whether another thread may run the application at the same time. */
  "wsgi.multithread"?: boolean;
  /** Whether another process may run the application at the same time. */
  "wsgi.multiprocess"?: boolean;
  /** Whether the application runs only once in this process. */
  "wsgi.run_once"?: boolean;
  /** The server's file wrapper class. */
  "wsgi.file_wrapper"?: FileWrapperClass;
}

/**
 * What an application returns: an iterable (or, as this package's one
 * extension, an async iterable) of byte chunks, with an optional `close()`
 * that the server calls once the response is over.
 *
 * @example Usage
 * ```ts
 * import type { ResponseBody } from "@wsgi/wsgiref/types";
 * import assert from "node:assert/strict";
 *
 * const body: ResponseBody = [new Uint8Array([104, 105])];
 * assert.equal([...(body as Uint8Array[])].length, 1);
 * ```
 */
export type ResponseBody =
  & (Iterable<Uint8Array> | AsyncIterable<Uint8Array>)
  & { close?(): void | Promise<void> };

/**
 * A gateway-interface application: called once per request with the environ
 * and `startResponse`; may be `async`.
 *
 * @example Usage
 * ```ts
 * import type { Application } from "@wsgi/wsgiref/types";
 * import assert from "node:assert/strict";
 *
 * const app: Application = async (_environ, startResponse) => {
 *   startResponse("200 OK", [["Content-Type", "text/plain"]]);
 *   return [new TextEncoder().encode("hi")];
 * };
 * assert.equal(app.length, 2);
 * ```
 */
export type Application = (
  environ: Environ,
  startResponse: StartResponse,
) => ResponseBody | Promise<ResponseBody>;
