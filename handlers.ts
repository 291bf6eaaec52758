/**
 * Base classes for servers and gateways that run a gateway-interface
 * application, as `wsgiref.handlers`: the one place where the status line,
 * the header block, `Content-Length`, the error page and the result's
 * `close()` are decided, for origin servers (`HTTP/1.0 200 OK`) and CGI
 * programs (`Status: 200 OK`) alike.
 *
 * Only `readEnviron()`, `CGIHandler` and `IISCGIHandler` read process state
 * (`Deno.env`, stdio); the other classes take their streams and environ as
 * arguments, so they run anywhere.
 *
 * @example A CGI program
 * ```ts ignore
 * #!/usr/bin/env -S deno run --allow-env
 * import { CGIHandler } from "@wsgi/wsgiref/handlers";
 *
 * await new CGIHandler().run((_environ, startResponse) => {
 *   startResponse("200 OK", [["Content-Type", "text/plain"]]);
 *   return [new TextEncoder().encode("Hello from CGI\n")];
 * });
 * ```
 *
 * @example Running an application over in-memory streams
 * ```ts
 * import { BaseCGIHandler } from "@wsgi/wsgiref/handlers";
 * import assert from "node:assert/strict";
 *
 * const out: Uint8Array[] = [];
 * const stdout = { write: (p: Uint8Array) => void out.push(p.slice()) };
 * const handler = new BaseCGIHandler({ readSync: () => null }, stdout, Deno.stderr, {
 *   REQUEST_METHOD: "GET",
 *   SERVER_PROTOCOL: "HTTP/1.1",
 * });
 * handler.osEnviron = {};
 * await handler.run((_environ, startResponse) => {
 *   startResponse("200 OK", [["Content-Type", "text/plain"]]);
 *   return [new TextEncoder().encode("hi")];
 * });
 * assert.equal(
 *   new TextDecoder().decode(new Uint8Array(out.flatMap((p) => [...p]))),
 *   "Status: 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi",
 * );
 * ```
 *
 * @module
 */

import type {
  Application,
  Environ,
  ErrorStream,
  FileWrapperClass,
  HeaderList,
  InputStream,
  ResponseBody,
  StartResponse,
  SyncReader,
  Write,
} from "./types.ts";
import { Headers } from "./headers.ts";
import { FileWrapper, guessScheme, isHopByHop } from "./util.ts";
import { ReaderInput, toErrorStream, writeAll } from "./_io.ts";
import { checkResult, ResultLoop, sendResult } from "./_result.ts";
import {
  AssertionError,
  closeResult,
  encodeLatin1,
  forgetClosedResult,
  isThenable,
  MONTH_NAMES,
  percentDecodeLatin1,
  quote,
  repr,
  RESOLVED,
  statusProblem,
  typeName,
  utf8ToLatin1,
} from "./_internal.ts";

// Weekday and month names for HTTP dates: always English, whatever the locale.
const WEEKDAY_NAMES = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

/** The largest time a `Date` holds, in seconds (ECMAScript's ±8.64e15 ms). */
const MAX_SECONDS = 8.64e12;

function pad2(n: number): string {
  return n < 10 ? "0" + n : String(n);
}

/**
 * Format a POSIX timestamp as an HTTP date (RFC 1123, the `Date` header's
 * format), always in GMT and in English: `Sun, 06 Nov 1994 08:49:37 GMT`.
 * Fractions of a second are dropped (rounded down), as `time.gmtime` does.
 *
 * @example Usage
 * ```ts
 * import { formatDateTime } from "@wsgi/wsgiref/handlers";
 * import assert from "node:assert/strict";
 *
 * assert.equal(formatDateTime(784111777), "Sun, 06 Nov 1994 08:49:37 GMT");
 * assert.equal(formatDateTime(0.9), "Thu, 01 Jan 1970 00:00:00 GMT");
 * ```
 *
 * @param seconds Seconds since the epoch, e.g. `Date.now() / 1000`.
 * @returns The date, e.g. `Thu, 01 Jan 1970 00:00:00 GMT`.
 * @throws {TypeError} When `seconds` is not a number.
 * @throws {RangeError} When `seconds` is not finite or is beyond what a
 * `Date` can hold (±8.64e12 seconds).
 */
export function formatDateTime(seconds: number): string {
  if (typeof seconds !== "number") {
    throw new TypeError(
      `Cannot format a date: seconds must be a number, not ${
        typeName(seconds)
      } ${quote(seconds)}`,
    );
  }
  if (!(Math.abs(seconds) <= MAX_SECONDS)) {
    throw new RangeError(
      `Cannot format a date: ${seconds} seconds is out of range`,
    );
  }
  const date = new Date(Math.floor(seconds) * 1000);
  const year = date.getUTCFullYear();
  return `${WEEKDAY_NAMES[date.getUTCDay()]}, ${pad2(date.getUTCDate())} ${
    MONTH_NAMES[date.getUTCMonth()]
  } ${String(year).padStart(4, " ")} ${pad2(date.getUTCHours())}:${
    pad2(date.getUTCMinutes())
  }:${pad2(date.getUTCSeconds())} GMT`;
}

/** CGI variables that carry request data, so bytes from the client. */
const REQUEST_VARIABLES: ReadonlySet<string> = new Set([
  "SCRIPT_NAME",
  "PATH_INFO",
  "QUERY_STRING",
  "REQUEST_METHOD",
  "AUTH_TYPE",
  "CONTENT_TYPE",
  "CONTENT_LENGTH",
  "HTTPS",
  "REMOTE_USER",
  "REMOTE_IDENT",
]);

function isRequestVariable(name: string): boolean {
  return REQUEST_VARIABLES.has(name) || name.startsWith("HTTP_") ||
    name.startsWith("SSL_") ||
    (name.startsWith("REDIRECT_") && isRequestVariable(name.slice(9)));
}

/**
 * Put back `PATH_INFO` and `QUERY_STRING` when the process environment lost
 * them: Deno leaves out variables whose value is not valid UTF-8, which a
 * request for `/caf%E9` produces. `REQUEST_URI` (the raw request target,
 * percent-encoded, so usually ASCII) still holds both. `PATH_INFO` is only
 * rebuilt when the decoded path starts with `SCRIPT_NAME`; a rewritten URL
 * is left alone.
 */
function recoverFromRequestUri(environ: Record<string, string>): void {
  const uri = environ.REQUEST_URI;
  if (uri === undefined) return;
  const target = utf8ToLatin1(uri);
  const mark = target.indexOf("?");
  if (!("QUERY_STRING" in environ)) {
    environ.QUERY_STRING = mark < 0 ? "" : target.slice(mark + 1);
  }
  if (!("PATH_INFO" in environ)) {
    const path = percentDecodeLatin1(
      mark < 0 ? target : target.slice(0, mark),
    );
    const script = environ.SCRIPT_NAME ?? "";
    if (path === script || path.startsWith(script + "/")) {
      environ.PATH_INFO = path.slice(script.length);
    }
  }
}

/**
 * Read the process environment (`Deno.env`) as an environ: request
 * variables (`PATH_INFO`, `QUERY_STRING`, `HTTP_*`, `SSL_*`, `CONTENT_*`...)
 * are re-encoded from the UTF-8 text Deno decoded back to latin-1 strings,
 * one char per byte, as PEP 3333 wants them; other variables are left as
 * they are. On Windows under Apache, whose environment already holds bytes
 * as latin-1 text, nothing is re-encoded.
 *
 * Deno leaves out variables whose value is not valid UTF-8. When
 * `PATH_INFO` or `QUERY_STRING` is missing that way but `REQUEST_URI` is
 * set (Apache, lighttpd and nginx set it), they are rebuilt from it.
 *
 * @example Usage
 * ```ts
 * import { readEnviron } from "@wsgi/wsgiref/handlers";
 * import assert from "node:assert/strict";
 *
 * // Under a CGI host, a request for /caf%C3%A9 gives PATH_INFO "/café",
 * // which readEnviron() turns into "/caf\xc3\xa9".
 * const environ = readEnviron();
 * assert.equal(environ.PATH, Deno.env.get("PATH"));
 * for (const [name, value] of Object.entries(environ)) {
 *   if (name.startsWith("HTTP_")) assert.ok(!/[^\x00-\xff]/.test(value));
 * }
 * ```
 *
 * @returns A new object of environment variables.
 * @throws {Deno.errors.NotCapable} Without `--allow-env`.
 */
export function readEnviron(): Record<string, string> {
  const environ = Deno.env.toObject();
  // Apache on Windows writes the request bytes as latin-1 text already.
  // (SERVER_SOFTWARE first: reading Deno.build costs more than the test.)
  const asIs =
    (environ.SERVER_SOFTWARE ?? "").toLowerCase().startsWith("apache/") &&
    Deno.build.os === "windows";
  if (!asIs) {
    for (const name in environ) {
      // Only request variables are scanned: the others (PATH, DOCUMENT_ROOT,
      // ...) are long and left as they are. An ASCII value comes back as is.
      if (isRequestVariable(name)) environ[name] = utf8ToLatin1(environ[name]);
    }
  }
  if (!("PATH_INFO" in environ && "QUERY_STRING" in environ)) {
    recoverFromRequestUri(environ);
  }
  return environ;
}

let processEnviron: Record<string, string> | undefined;

/**
 * The process environment as `readEnviron()` reads it, read once, or `{}`
 * when environment access is not granted (checked without a prompt).
 */
function defaultOsEnviron(): Record<string, string> {
  if (processEnviron === undefined) {
    const granted =
      Deno.permissions.querySync({ name: "env" }).state === "granted";
    processEnviron = granted ? readEnviron() : {};
  }
  return processEnviron;
}

/** Whether an error means the client went away (not worth a log entry). */
function isClientGone(error: unknown): boolean {
  return error instanceof Deno.errors.BrokenPipe ||
    error instanceof Deno.errors.ConnectionReset ||
    error instanceof Deno.errors.ConnectionAborted;
}

/** A thrown `null` or `undefined` cannot be passed on as `excInfo`. */
function asError(thrown: unknown): unknown {
  return thrown === null || thrown === undefined
    ? new Error(`The application threw ${thrown}`)
    : thrown;
}

/** What comes before the header lines: a CGI `Status:` line, or an origin
 * server's status line with `Date` and `Server`. */
function preamble(handler: BaseHandler): string {
  return handler.originServer
    ? originPreamble(handler)
    : `Status: ${handler.status}\r\n`;
}

/** An origin server's status line, then `Date` and `Server` unless the
 * application set them. */
function originPreamble(handler: BaseHandler): string {
  let preamble = `HTTP/${handler.httpVersion} ${handler.status}\r\n`;
  if (!handler.headers!.has("Date")) {
    preamble += `Date: ${formatDateTime(Date.now() / 1000)}\r\n`;
  }
  if (handler.serverSoftware && !handler.headers!.has("Server")) {
    preamble += `Server: ${handler.serverSoftware}\r\n`;
  }
  return preamble;
}

/** Keep `limit` stack frames: the innermost ones, or the outermost if < 0. */
function limitFrames(stack: string, limit: number | null): string {
  if (limit === null || !Number.isInteger(limit)) return stack;
  const lines = stack.split("\n");
  let first = lines.findIndex((line) => /^\s+at /.test(line));
  if (first < 0) first = lines.length;
  const head = lines.slice(0, first);
  const frames = lines.slice(first);
  const kept = limit >= 0
    ? frames.slice(0, limit)
    : frames.slice(Math.max(0, frames.length + limit));
  return [...head, ...kept].join("\n");
}

/** An error's stack (or its name and message), then its causes. */
function formatError(error: unknown, limit: number | null): string {
  let out = "";
  const seen = new Set<unknown>();
  let current: unknown = error;
  for (let depth = 0; depth < 8 && !seen.has(current); depth++) {
    seen.add(current);
    if (depth > 0) out += "Caused by: ";
    if (current instanceof Error) {
      const stack = typeof current.stack === "string"
        ? current.stack
        : `${current.name}: ${current.message}`;
      out += limitFrames(stack, limit) + "\n";
    } else {
      out += `Uncaught ${quote(current)}\n`;
      break;
    }
    if (current.cause === undefined) break;
    current = current.cause;
  }
  return out;
}

/** Whether `s` has ASCII digits from `start` to `end` (excluded). A loop,
 * not a regular expression: see `SCAN_LIMIT` in `_internal.ts`. */
function digitsAt(s: string, start: number, end: number): boolean {
  if (s.length < end) return false;
  for (let i = start; i < end; i++) {
    const code = s.charCodeAt(i);
    if (code < 0x30 || code > 0x39) return false;
  }
  return true;
}

/** The `Content-Length` of a request; `0` when absent, empty or `null`
 * (Python's `None`: wsgiref never reads it, so it cannot fail on it). */
function contentLength(environ: Environ): number {
  const value = environ.CONTENT_LENGTH;
  if (value === undefined || value === null || value === "") return 0;
  const digits = typeof value === "string" ? value.trim() : "";
  if (
    digits.length === 0 || digits.length > 15 ||
    !digitsAt(digits, 0, digits.length)
  ) {
    throw badContentLength(value);
  }
  return Number(digits);
}

// Errors are built apart from the checks that throw them, to keep the
// functions every request runs small: see "Startup cost" in _internal.ts.

function notAStr(what: string, value: unknown): AssertionError {
  return new AssertionError(`${what} must be of type str (got ${repr(value)})`);
}

function hopByHopError(name: string, value: string): AssertionError {
  return new AssertionError(
    `Hop-by-hop header, '${name}: ${value}', not allowed`,
  );
}

function badContentLength(value: unknown): RangeError {
  return new RangeError(
    `Cannot read CONTENT_LENGTH: ${quote(value)} is not a non-negative integer`,
  );
}

function handlerArgumentError(
  argument: string,
  rule: string,
  value: unknown,
): TypeError {
  return new TypeError(
    `Cannot create a handler: ${argument} must ${rule}, not ${
      typeName(value)
    } ${repr(value)}`,
  );
}

const ERROR_BODY = encodeLatin1(
  "A server error occurred.  Please contact the administrator.",
);
/** The default `wsgiVersion`: frozen, since every handler shares it. */
const WSGI_VERSION = Object.freeze([1, 0]) as unknown as [number, number];
/** The default `errorHeaders`, shared as wsgiref's class attribute. */
const ERROR_HEADERS: HeaderList = [["Content-Type", "text/plain"]];

/**
 * Run a gateway-interface application and send its response, as
 * `wsgiref.handlers.BaseHandler`. Subclasses provide the streams and the
 * request variables by overriding `_write`, `_flush`, `getStdin`,
 * `getStderr` and `addCgiVars`; `SimpleHandler` does so from constructor
 * arguments.
 *
 * The flow of one request: `run` → `setupEnviron` → the application (its
 * `startResponse` calls) → `finishResponse`, which `write`s each chunk
 * (headers go out before the first byte, through `sendHeaders`) and then
 * `close`s. An error before the headers are sent is logged and answered
 * with `errorStatus`/`errorHeaders`/`errorBody`; after that, the response
 * is cut short and the error logged. A client that goes away is not an
 * error.
 *
 * An asynchronous server that sends the body itself overrides
 * `finishResponse` (and `_write`/`_flush`), and must call `close()` once the
 * response is over.
 *
 * @example Usage
 * ```ts
 * import { BaseHandler } from "@wsgi/wsgiref/handlers";
 * import type { ErrorStream, InputStream } from "@wsgi/wsgiref/types";
 * import assert from "node:assert/strict";
 *
 * class MemoryHandler extends BaseHandler {
 *   output = "";
 *   log = "";
 *   override _write(data: Uint8Array): void {
 *     this.output += new TextDecoder().decode(data);
 *   }
 *   override _flush(): void {}
 *   override getStdin(): InputStream {
 *     const empty = new Uint8Array(0);
 *     return {
 *       read: () => empty,
 *       readline: () => empty,
 *       readlines: () => [],
 *       [Symbol.iterator]: () => [][Symbol.iterator](),
 *     };
 *   }
 *   override getStderr(): ErrorStream {
 *     return {
 *       write: (s) => void (this.log += s),
 *       writelines: (lines) => void (this.log += [...lines].join("")),
 *       flush: () => {},
 *     };
 *   }
 *   override addCgiVars(): void {
 *     Object.assign(this.environ!, { SERVER_PROTOCOL: "HTTP/1.0" });
 *   }
 * }
 * const handler = new MemoryHandler();
 * handler.osEnviron = {};
 * handler.originServer = false;
 * await handler.run((_environ, startResponse) => {
 *   startResponse("404 Not Found", [["Content-Type", "text/plain"]]);
 *   return [];
 * });
 * assert.equal(
 *   handler.output,
 *   "Status: 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n\r\n",
 * );
 * ```
 */
export class BaseHandler {
  // Configuration: override per subclass or per instance.

  /** `environ["wsgi.version"]`: one frozen `[1, 0]` shared by every
   * handler, as wsgiref's tuple (the application cannot change it). */
  wsgiVersion: [number, number] = WSGI_VERSION;
  /** `environ["wsgi.multithread"]`. */
  wsgiMultithread = true;
  /** `environ["wsgi.multiprocess"]`. */
  wsgiMultiprocess = true;
  /** `environ["wsgi.run_once"]`. */
  wsgiRunOnce = false;
  /** Whether we talk to the client directly (`HTTP/1.0 200 OK`) rather
   * than through a CGI host (`Status: 200 OK`). */
  originServer = true;
  /** The HTTP version of the status line an origin server sends. */
  httpVersion = "1.0";
  /** The `Server` header and `SERVER_SOFTWARE` of an origin server, or
   * `null` for none. */
  serverSoftware: string | null = null;
  #osEnviron: Record<string, string> | undefined = undefined;

  // Collaborator classes.

  /** `environ["wsgi.file_wrapper"]`; `null` leaves it out. */
  wsgiFileWrapper: FileWrapperClass | null = FileWrapper;
  /** The class that wraps the header list given to `startResponse`. */
  headersClass: new (headers: HeaderList) => Headers = Headers;

  // Error handling: override per subclass or per instance.

  /** How many stack frames `logException` writes: all for `null`, the
   * innermost `n` for `n >= 0`, the outermost `-n` for a negative `n`. */
  tracebackLimit: number | null = null;
  /** The status of the error page. */
  errorStatus = "500 Internal Server Error";
  /** The headers of the error page: one list shared by every handler, as
   * wsgiref's class attribute (`errorOutput()` sends a copy). */
  errorHeaders: HeaderList = ERROR_HEADERS;
  /** The body of the error page (shared: replace it, do not change it). */
  errorBody: Uint8Array = ERROR_BODY;

  // State of the current request: do not change these from outside.

  /** The status given to `startResponse`, or `null`. */
  status: string | null = null;
  /** What the application returned, or `null`. */
  result: ResponseBody | null = null;
  /** Whether the status and headers have been sent. */
  headersSent = false;
  /** The response headers given to `startResponse`, or `null`. */
  headers: Headers | null = null;
  /** Body bytes written so far. */
  bytesSent = 0;
  /** The environ of the current request, or `null`. */
  environ: Environ | null = null;

  /** Create a handler; `startResponse` and `write` are bound to it. */
  constructor() {
    // The application receives these as plain functions.
    this.startResponse = this.startResponse.bind(this);
    this.write = this.write.bind(this);
  }

  /**
   * Variables from the operating system copied into every environ, before
   * the request's own. By default the process environment, read once with
   * `readEnviron()` (`{}` without `--allow-env`); the CGI handlers set `{}`.
   *
   * @returns The variables.
   */
  get osEnviron(): Record<string, string> {
    return this.#osEnviron ?? defaultOsEnviron();
  }

  /**
   * Replace the variables copied into every environ.
   *
   * @param value The variables.
   */
  set osEnviron(value: Record<string, string>) {
    this.#osEnviron = value;
  }

  /**
   * Invoke the application and send its response. Errors are handled as
   * described on the class; only an error while handling an error is
   * thrown, after `close()`.
   *
   * @param application The application, synchronous or `async`.
   * @returns A promise that settles when the response is sent.
   */
  run(application: Application): Promise<void> {
    // close() is called by finishResponse(), never here except in the
    // double-error branch: a server that sends the body asynchronously
    // overrides finishResponse() and closes when it is done.
    let finished: Promise<void>;
    try {
      this.setupEnviron();
      const result = application(this.environ!, this.startResponse);
      if (isThenable<ResponseBody>(result)) return this.#runLater(result);
      this.result = checkResult(result);
      finished = this.finishResponse();
    } catch (thrown) {
      return this.#recover(thrown);
    }
    // A synchronous application pays for no promise of its own.
    return finished === RESOLVED
      ? finished
      : finished.then(undefined, (thrown) => this.#recover(thrown));
  }

  /** `run()` for an application that returned a promise. */
  async #runLater(result: PromiseLike<ResponseBody>): Promise<void> {
    try {
      this.result = checkResult(await result);
      await this.finishResponse();
    } catch (thrown) {
      await this.#recover(thrown);
    }
  }

  /** Answer an error from the application or the response. */
  async #recover(thrown: unknown): Promise<void> {
    // Clients close connections abruptly from time to time.
    if (isClientGone(thrown)) return;
    try {
      await this.handleError(asError(thrown));
    } catch (error) {
      // An error while handling an error: give up, let the server see it.
      await this.close();
      throw error;
    }
  }

  /** Build `this.environ` for one request: `osEnviron`, the CGI variables
   * (`addCgiVars`) and the `wsgi.*` keys. */
  setupEnviron(): void {
    this.environ = { ...this.osEnviron };
    this.addCgiVars();
    // addCgiVars() may replace the object (a server's own fresh environ).
    const environ = this.environ;
    environ["wsgi.input"] = this.getStdin();
    environ["wsgi.errors"] = this.getStderr();
    environ["wsgi.version"] = this.wsgiVersion;
    environ["wsgi.run_once"] = this.wsgiRunOnce;
    environ["wsgi.url_scheme"] = this.getScheme();
    environ["wsgi.multithread"] = this.wsgiMultithread;
    environ["wsgi.multiprocess"] = this.wsgiMultiprocess;
    if (this.wsgiFileWrapper !== null) {
      environ["wsgi.file_wrapper"] = this.wsgiFileWrapper;
    }
    if (
      this.originServer && this.serverSoftware &&
      !("SERVER_SOFTWARE" in environ)
    ) {
      environ.SERVER_SOFTWARE = this.serverSoftware;
    }
  }

  /**
   * Send the result: `sendfile()` for a `wsgiFileWrapper` result if it can,
   * otherwise `write()` each chunk (`for await` only for an
   * `AsyncIterable`), then `finishContent()`; finally `close()`. On an error
   * the result's `close()` is called and the error thrown; `close()` is not,
   * so the state stays for the error handler.
   *
   * An asynchronous server overrides this to send the body itself, and
   * calls `close()` once the response is over.
   *
   * @returns A promise that settles when the body is sent.
   */
  finishResponse(): Promise<void> {
    // Synchronous while it can be: a plain iterable result of a
    // synchronous application settles without a promise hop.
    return sendResult(this, new ResultLoop(this, this.result));
  }

  /**
   * The URL scheme of the request, for `environ["wsgi.url_scheme"]`.
   *
   * @returns `"http"` or `"https"`.
   */
  getScheme(): string {
    return guessScheme(this.environ!);
  }

  /** Set `Content-Length` when the result is an `Array` of exactly one
   * chunk: then every byte has been written before the headers go out. */
  setContentLength(): void {
    if (Array.isArray(this.result) && this.result.length === 1) {
      this.headers!.set("Content-Length", String(this.bytesSent));
    }
  }

  /** Make the last header changes before they are sent: here, add
   * `Content-Length` when the application set none and it is known. */
  cleanupHeaders(): void {
    if (!this.headers!.has("Content-Length")) this.setContentLength();
  }

  /**
   * PEP 3333's `start_response`: record the status and headers to send
   * before the first body byte. Bound to the handler, so it can be passed
   * around as a plain function.
   *
   * Called again with `excInfo` (the caught error), it replaces them if
   * nothing has been sent yet, and throws `excInfo` otherwise. Called again
   * without `excInfo`, it throws.
   *
   * Nothing is recorded when the arguments are refused.
   *
   * @param status E.g. `"200 OK"`: three digits, a space, a reason.
   * @param headers The `[name, value]` list; kept, not copied.
   * @param excInfo The caught error, when called from an error handler.
   * @returns The `write` callable.
   * @throws {AssertionError} For `Headers already set!`, a status or header
   * that is not a string, a status not shaped `NNN reason`, or a hop-by-hop
   * header.
   * @throws {TypeError} For a control character or a character above `\xFF`
   * in the status or a header, or a header list that is not an array of
   * pairs.
   * @throws {unknown} `excInfo`, when given after the headers were sent.
   */
  startResponse(
    status: string,
    headers: HeaderList,
    excInfo?: unknown,
  ): Write {
    if (excInfo !== undefined && excInfo !== null) {
      if (this.headersSent) throw excInfo;
    } else if (this.headers !== null) {
      throw new AssertionError("Headers already set!");
    }
    if (typeof status !== "string") throw notAStr("Status", status);
    if (Array.isArray(headers)) {
      for (const entry of headers as unknown[]) {
        if (!Array.isArray(entry) || entry.length !== 2) continue;
        if (typeof entry[0] !== "string") {
          throw notAStr("Header name", entry[0]);
        }
        if (typeof entry[1] !== "string") {
          throw notAStr("Header value", entry[1]);
        }
      }
    }
    const wrapped = new this.headersClass(headers);
    const problem = statusProblem(status);
    if (problem) {
      throw new TypeError(
        `Cannot start the response: status ${quote(status)} ${problem}`,
      );
    }
    if (status.length < 4) {
      throw new AssertionError("Status must be at least 4 characters");
    }
    if (!digitsAt(status, 0, 3)) {
      throw new AssertionError("Status message must begin w/3-digit code");
    }
    if (status[3] !== " ") {
      throw new AssertionError("Status message must have a space after code");
    }
    for (const [name, value] of headers) {
      if (isHopByHop(name)) throw hopByHopError(name, value);
    }
    this.status = status;
    this.headers = wrapped;
    return this.write;
  }

  /** Send what comes before the header lines: for an origin server the
   * status line and `Date` and `Server` unless the application set them
   * (nothing for an HTTP/0.9 client); for CGI the `Status:` line. */
  sendPreamble(): void {
    if (!this.originServer || this.clientIsModern()) {
      this._write(encodeLatin1(preamble(this), "Status line"));
    }
  }

  /**
   * PEP 3333's `write`: send a body chunk, with the status and headers
   * before the first one, then flush. Bound to the handler.
   *
   * @param data The bytes.
   * @throws {AssertionError} When `data` is not a `Uint8Array`, or before
   * `startResponse`.
   */
  write(data: Uint8Array): void {
    if (!(data instanceof Uint8Array)) {
      throw new AssertionError("write() argument must be a bytes instance");
    }
    if (!this.status) {
      throw new AssertionError("write() before start_response()");
    } else if (!this.headersSent) {
      // Before the first output, send the stored headers; bytesSent is
      // what a one-chunk result's Content-Length is computed from.
      this.bytesSent = data.length;
      this.sendHeaders();
    } else {
      this.bytesSent += data.length;
    }
    this._write(data);
    this._flush();
  }

  /**
   * Send a `wsgiFileWrapper` result by a faster, platform-specific route.
   * Called only when `resultIsFile()`. Return `true` when the file was
   * sent, `false` to have the result iterated as usual; throw when sending
   * was attempted but failed. Call `sendHeaders()` first if
   * `headersSent` is false. The default sends nothing.
   *
   * @returns Whether the file was sent.
   */
  sendfile(): boolean | Promise<boolean> {
    return false;
  }

  /** Make sure the headers went out even with an empty body; only then is
   * `Content-Length: 0` set, and only if the application set none (so a
   * HEAD response keeps its own). */
  finishContent(): void {
    if (!this.headersSent) {
      if (this.headers === null) {
        throw new AssertionError(
          "The application returned without calling start_response()",
        );
      }
      this.headers.setdefault("Content-Length", "0");
      this.sendHeaders();
    }
  }

  /**
   * Call the result's `close()` (awaited if it returns a promise) and reset
   * the state for the next request. A subclass may also drop the client
   * connection here.
   *
   * @returns A promise that settles once the result is closed.
   */
  close(): Promise<void> {
    let closing: PromiseLike<unknown> | undefined;
    try {
      closing = closeResult(this.result, this);
    } catch (error) {
      this.#reset();
      return Promise.reject(error);
    }
    if (closing === undefined) {
      this.#reset();
      return RESOLVED;
    }
    return Promise.resolve(closing).then(
      () => this.#reset(),
      (error) => {
        this.#reset();
        throw error;
      },
    );
  }

  /** Forget the request that is over. */
  #reset(): void {
    forgetClosedResult(this);
    this.result =
      this.headers =
      this.status =
      this.environ =
        null;
    this.bytesSent = 0;
    this.headersSent = false;
  }

  /** Send the status and headers, after `cleanupHeaders()`; an origin
   * server sends nothing of them to an HTTP/0.9 client. */
  sendHeaders(): void {
    this.cleanupHeaders();
    // Format (and so check) the header block before anything goes out: an
    // application that put a bad line into its list directly gets the error
    // page, not half a response.
    const headers = this.headers!;
    const modern = !this.originServer || this.clientIsModern();
    if (
      modern && this.sendPreamble === SEND_PREAMBLE &&
      headers.toBytes === TO_BYTES
    ) {
      // What sendPreamble() and toBytes() would write, as one string: one
      // encoding, one buffer (each costs more than the bytes it holds).
      // toString() has refused any header char above \xFF: only the
      // preamble, which comes first, can fail to encode.
      const block = headers.toString();
      this.headersSent = true;
      this._write(encodeLatin1(preamble(this) + block, "Status line"));
      return;
    }
    const block = modern ? headers.toBytes() : null;
    this.headersSent = true;
    if (block !== null) {
      this.sendPreamble();
      this._write(block);
    }
  }

  /**
   * Whether the result is a `wsgiFileWrapper` instance.
   *
   * @returns `true` for a file wrapper.
   */
  resultIsFile(): boolean {
    const wrapper = this.wsgiFileWrapper;
    return wrapper !== null && this.result instanceof wrapper;
  }

  /**
   * Whether the client understands a status line and headers: any
   * `SERVER_PROTOCOL` but `HTTP/0.9`.
   *
   * @returns `false` for an HTTP/0.9 client.
   */
  clientIsModern(): boolean {
    const protocol = this.environ!.SERVER_PROTOCOL;
    return typeof protocol !== "string" ||
      protocol.toUpperCase() !== "HTTP/0.9";
  }

  /**
   * Write an error's stack (limited by `tracebackLimit`) and causes to
   * `getStderr()`, then flush it. Override to log elsewhere.
   *
   * @param error The error.
   */
  logException(error: unknown): void {
    const stderr = this.getStderr();
    stderr.write(formatError(error, this.tracebackLimit));
    stderr.flush();
  }

  /**
   * Log an error, then answer with `errorOutput()` if no header has been
   * sent yet; after that, the response is left cut short.
   *
   * @param error The error.
   * @returns A promise that settles once the error page is sent.
   */
  async handleError(error: unknown): Promise<void> {
    this.logException(error);
    if (!this.headersSent) {
      this.result = this.errorOutput(
        this.environ as Environ,
        this.startResponse,
        error,
      );
      await this.finishResponse();
    }
  }

  /**
   * The application that makes the error page: `errorStatus`,
   * `errorHeaders` (a copy) and `errorBody`. Override it for a page of
   * your own; showing error details to any client is a bad idea.
   *
   * @param _environ The request environment.
   * @param startResponse The handler's `startResponse`.
   * @param error The error, passed on as `excInfo`.
   * @returns The error page's body.
   */
  errorOutput(
    _environ: Environ,
    startResponse: StartResponse,
    error: unknown,
  ): ResponseBody {
    startResponse(
      this.errorStatus,
      this.errorHeaders.map(([name, value]) => [name, value]),
      error,
    );
    return [this.errorBody];
  }

  // Override points: a subclass must provide these.

  /**
   * Send or buffer bytes to the client. It may send them at once; `_flush`
   * is there for streams that buffer.
   *
   * @param _data The bytes.
   */
  _write(_data: Uint8Array): void {
    throw new Error("BaseHandler._write() must be overridden by a subclass");
  }

  /** Push out what `_write` buffered; may do nothing. */
  _flush(): void {
    throw new Error("BaseHandler._flush() must be overridden by a subclass");
  }

  /**
   * The request body stream, for `environ["wsgi.input"]`.
   *
   * @returns The input stream.
   */
  getStdin(): InputStream {
    throw new Error("BaseHandler.getStdin() must be overridden by a subclass");
  }

  /**
   * The error log stream, for `environ["wsgi.errors"]` and
   * `logException`.
   *
   * @returns The error stream.
   */
  getStderr(): ErrorStream {
    throw new Error(
      "BaseHandler.getStderr() must be overridden by a subclass",
    );
  }

  /** Add the request's CGI variables to `this.environ`. */
  addCgiVars(): void {
    throw new Error(
      "BaseHandler.addCgiVars() must be overridden by a subclass",
    );
  }
}

/** The methods whose output `sendHeaders()` writes at once when no
 * subclass replaced them. */
const SEND_PREAMBLE = BaseHandler.prototype.sendPreamble;
const TO_BYTES = Headers.prototype.toBytes;

/**
 * A byte sink for `SimpleHandler`'s `stdout`: `writeSync(p)` returning the
 * count written (as `Deno.stdout`), or `write(p)` returning the count or
 * nothing (all written). Partial writes are completed; `flush()` is called
 * after each chunk when present.
 *
 * @example Usage
 * ```ts
 * import type { OutputStream } from "@wsgi/wsgiref/handlers";
 * import assert from "node:assert/strict";
 *
 * const chunks: Uint8Array[] = [];
 * const out: OutputStream = { write: (p) => void chunks.push(p.slice()) };
 * const stdout: OutputStream = Deno.stdout;
 * assert.ok(out && stdout);
 * ```
 */
export type OutputStream =
  | { writeSync(p: Uint8Array): number; flush?(): void }
  | { write(p: Uint8Array): number | void; flush?(): void };

/**
 * A handler over given streams and CGI variables, as
 * `wsgiref.handlers.SimpleHandler`; for synchronous origin servers (it
 * sends the whole response itself).
 *
 * `stdin` is an `InputStream` or a reader with `readSync` such as
 * `Deno.stdin`, read no further than `CONTENT_LENGTH` (none, empty, `null`
 * or `0`: no body); `stdout` an `OutputStream`; `stderr` an `ErrorStream` or a byte
 * writer such as `Deno.stderr`.
 *
 * @example Usage
 * ```ts
 * import { SimpleHandler } from "@wsgi/wsgiref/handlers";
 * import assert from "node:assert/strict";
 *
 * const out: Uint8Array[] = [];
 * const handler = new SimpleHandler(
 *   { readSync: () => null },
 *   { write: (p: Uint8Array) => void out.push(p.slice()) },
 *   Deno.stderr,
 *   { SERVER_PROTOCOL: "HTTP/0.9" },
 * );
 * handler.osEnviron = {};
 * await handler.run((_environ, startResponse) => {
 *   startResponse("200 OK", []);
 *   return [new TextEncoder().encode("body only")];
 * });
 * assert.equal(new TextDecoder().decode(out[0]), "body only");
 * ```
 */
export class SimpleHandler extends BaseHandler {
  /** The request body: an `InputStream` or a reader. */
  stdin: InputStream | SyncReader;
  /** Where the response goes. */
  stdout: OutputStream;
  /** The error stream. */
  stderr: ErrorStream;
  /** The request's CGI variables. */
  baseEnv: Environ;

  /**
   * Serve one request over the given streams.
   *
   * @param stdin The request body: an `InputStream` or a `readSync` reader.
   * @param stdout The response's destination.
   * @param stderr An `ErrorStream`, or a byte writer such as `Deno.stderr`.
   * @param environ The request's CGI variables.
   * @param multithread `environ["wsgi.multithread"]`.
   * @param multiprocess `environ["wsgi.multiprocess"]`.
   * @throws {TypeError} When a stream lacks the methods it needs, or
   * `environ` is not an object.
   */
  constructor(
    stdin: InputStream | SyncReader,
    stdout: OutputStream,
    stderr: ErrorStream | OutputStream,
    environ: Environ,
    multithread = true,
    multiprocess = false,
  ) {
    super();
    const input = stdin as Partial<InputStream & SyncReader> | null;
    if (
      typeof input !== "object" || input === null ||
      (typeof input.readline !== "function" &&
        typeof input.readSync !== "function")
    ) {
      throw handlerArgumentError(
        "stdin",
        "be an InputStream or have readSync()",
        stdin,
      );
    }
    const output = stdout as { writeSync?: unknown; write?: unknown } | null;
    if (
      typeof output !== "object" || output === null ||
      (typeof output.writeSync !== "function" &&
        typeof output.write !== "function")
    ) {
      throw handlerArgumentError(
        "stdout",
        "have writeSync() or write()",
        stdout,
      );
    }
    if (
      typeof environ !== "object" || environ === null || Array.isArray(environ)
    ) {
      throw handlerArgumentError("environ", "be an object", environ);
    }
    this.stdin = stdin;
    this.stdout = stdout;
    this.stderr = toErrorStream(stderr);
    this.baseEnv = environ;
    this.wsgiMultithread = multithread;
    this.wsgiMultiprocess = multiprocess;
  }

  /**
   * `stdin` itself when it is an `InputStream`; a reader is wrapped so that
   * it is read no further than `CONTENT_LENGTH`.
   *
   * @returns The input stream.
   * @throws {RangeError} When `CONTENT_LENGTH` is not a non-negative
   * integer.
   */
  override getStdin(): InputStream {
    const stdin = this.stdin;
    if (typeof (stdin as Partial<InputStream>).readline === "function") {
      return stdin as InputStream;
    }
    return new ReaderInput(stdin as SyncReader, contentLength(this.environ!));
  }

  /**
   * The error stream given to the constructor.
   *
   * @returns The error stream.
   */
  override getStderr(): ErrorStream {
    return this.stderr;
  }

  /** Copy the constructor's `environ` into `this.environ`. */
  override addCgiVars(): void {
    const environ = this.environ!;
    for (const _ in environ) {
      Object.assign(environ, this.baseEnv);
      return;
    }
    // Nothing from osEnviron (the CGI handlers, the FastCGI gateway): a
    // spread copy costs V8 a fraction of assigning key by key.
    this.environ = { ...this.baseEnv };
  }

  /**
   * Write all of `data` to `stdout`, completing partial writes.
   *
   * @param data The bytes.
   */
  override _write(data: Uint8Array): void {
    if (data.length > 0) writeAll(this.stdout, data);
  }

  /** Call `stdout.flush()` if it has one. */
  override _flush(): void {
    const stdout = this.stdout as { flush?: () => void };
    if (typeof stdout.flush === "function") stdout.flush();
  }
}

/**
 * A handler for CGI-like gateways (FastCGI, SCGI, ...) with streams and a
 * mapping of variables: as `SimpleHandler`, but the response starts with a
 * `Status:` line for the host to turn into a status line
 * (`originServer` is `false`).
 *
 * @example Usage
 * ```ts
 * import { BaseCGIHandler } from "@wsgi/wsgiref/handlers";
 * import assert from "node:assert/strict";
 *
 * let output = "";
 * const stdout = { write: (p: Uint8Array) => void (output += new TextDecoder().decode(p)) };
 * const handler = new BaseCGIHandler({ readSync: () => null }, stdout, Deno.stderr, {});
 * handler.osEnviron = {};
 * await handler.run((_environ, startResponse) => {
 *   startResponse("302 Found", [["Location", "/next"]]);
 *   return [];
 * });
 * assert.equal(output, "Status: 302 Found\r\nLocation: /next\r\nContent-Length: 0\r\n\r\n");
 * ```
 */
export class BaseCGIHandler extends SimpleHandler {
  /** A CGI program answers its host, not the client. */
  override originServer = false;
}

/**
 * The CGI variables of this process (`readEnviron()`), after removing
 * `HTTP_PROXY` from the process environment: a CGI host turns a request's
 * `Proxy:` header into `HTTP_PROXY`, which `fetch` and child processes
 * would take for a proxy setting ("httpoxy"). The application still finds
 * the header in its environ.
 */
function cgiEnviron(): Record<string, string> {
  const environ = readEnviron();
  Deno.env.delete("HTTP_PROXY");
  return environ;
}

/**
 * Run an application as a CGI program: the request from `Deno.env` (read
 * with `readEnviron()`) and `Deno.stdin`, the response to `Deno.stdout`,
 * the error log to `Deno.stderr`; run once, one process per request.
 * Needs `--allow-env`.
 *
 * httpoxy: the constructor removes `HTTP_PROXY` from the process
 * environment (it holds the client's `Proxy:` header), so that neither
 * `fetch` nor a child process can be sent through a proxy of the client's
 * choosing; `environ.HTTP_PROXY` still holds the header. Create the handler
 * before any `fetch`. Set a proxy for outgoing requests with `http_proxy`
 * (lower case) or `Deno.createHttpClient`.
 *
 * @example Usage
 * ```ts ignore
 * #!/usr/bin/env -S deno run --allow-env
 * import { CGIHandler } from "@wsgi/wsgiref/handlers";
 *
 * await new CGIHandler().run((environ, startResponse) => {
 *   startResponse("200 OK", [["Content-Type", "text/plain"]]);
 *   return [new TextEncoder().encode(`You asked for ${environ.PATH_INFO}\n`)];
 * });
 * ```
 */
export class CGIHandler extends BaseCGIHandler {
  /** One request per process. */
  override wsgiRunOnce = true;

  /** Serve the request this process was started for. */
  constructor() {
    super(Deno.stdin, Deno.stdout, Deno.stderr, cgiEnviron(), false, true);
    // Do not let the process environment leak into every request.
    this.osEnviron = {};
  }
}

/**
 * `CGIHandler` for Microsoft IIS without `allowPathInfo`: IIS repeats
 * `SCRIPT_NAME` at the start of `PATH_INFO`, and this handler removes it.
 *
 * @example Usage
 * ```ts ignore
 * import { IISCGIHandler } from "@wsgi/wsgiref/handlers";
 * import { demoApp } from "@wsgi/wsgiref/simple_server";
 *
 * await new IISCGIHandler().run(demoApp);
 * ```
 */
export class IISCGIHandler extends CGIHandler {
  /** Serve the request, with `PATH_INFO` fixed. */
  constructor() {
    super();
    const environ = this.baseEnv;
    const path = String(environ.PATH_INFO ?? "");
    const script = String(environ.SCRIPT_NAME ?? "");
    if ((path + "/").startsWith(script + "/")) {
      environ.PATH_INFO = path.slice(script.length);
    }
  }
}
