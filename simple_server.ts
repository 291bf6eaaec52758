/**
 * A gateway-interface server over `Deno.serve`, as `wsgiref.simple_server`:
 * each request becomes an environ, the application runs through
 * `handlers.ts`, and its result becomes the `Response`, streamed as the
 * client reads it.
 *
 * Run as a program, it serves an application module, or `demoApp` when none
 * is given:
 *
 * ```sh
 * deno run -A simple_server.ts                       # demoApp on port 8000
 * deno run -A simple_server.ts app.ts:myApp --host 127.0.0.1 --port 8080
 * ```
 *
 * To use every core, export a fetch handler and run it with
 * `deno serve --parallel`:
 *
 * ```ts ignore
 * // server.ts: deno serve --parallel -A server.ts
 * import { toFetchHandler } from "@wsgi/wsgiref/simple_server";
 * import { app } from "./app.ts";
 *
 * export default { fetch: toFetchHandler(app) };
 * ```
 *
 * @example Calling an application with a `Request`
 * ```ts
 * import { toFetchHandler } from "@wsgi/wsgiref/simple_server";
 * import assert from "node:assert/strict";
 *
 * const fetchHandler = toFetchHandler((environ, startResponse) => {
 *   startResponse("200 OK", [["Content-Type", "text/plain"]]);
 *   return [new TextEncoder().encode(`You asked for ${environ.PATH_INFO}`)];
 * }, { quiet: true });
 * const response = await fetchHandler(new Request("http://localhost/hello"));
 * assert.equal(await response.text(), "You asked for /hello");
 * ```
 *
 * @example Serving an application
 * ```ts ignore
 * import { makeServer } from "@wsgi/wsgiref/simple_server";
 *
 * await using server = makeServer("127.0.0.1", 8000, (_environ, startResponse) => {
 *   startResponse("200 OK", [["Content-Type", "text/plain"]]);
 *   return [new TextEncoder().encode("Hello world!")];
 * });
 * await server.serveForever();
 * ```
 *
 * @module
 */

import type {
  Application,
  Environ,
  ErrorStream,
  HeaderList,
  InputStream,
  StartResponse,
  Write,
} from "./types.ts";
import { SimpleHandler } from "./handlers.ts";
import { Headers } from "./headers.ts";
import { BytesInput, concat, processStderr } from "./_io.ts";
import {
  loadApplication,
  parsePort,
  runProgram,
  serveUntilStopped,
} from "./_program.ts";
import {
  bodyErrorApp,
  BodySpool,
  BodyTooLarge,
  checkSize,
  DEFAULT_MAX_BODY_SIZE,
  DEFAULT_SPOOL_THRESHOLD,
  errorApp,
  normalizeContentLength,
} from "./_body.ts";
import {
  closeResult,
  isAscii,
  logLine,
  NO_OS_ENVIRON,
  percentDecodeLatin1,
  quote,
  repr,
  RESOLVED,
  returnIterator,
  typeName,
  utf8ToLatin1,
} from "./_internal.ts";

const VERSION = "0.2";
/** `SERVER_SOFTWARE` of every request, as wsgiref's `server_version`. */
const SERVER_VERSION = `WSGIServer/${VERSION}`;
/** The `Server` header, as wsgiref's `software_version`. */
const SOFTWARE_VERSION = `${SERVER_VERSION} Deno/${Deno.version.deno}`;

/** The buffer a request body of unknown or large size is read into. */
const BODY_READ_SIZE = 64 * 1024;

/** Statuses whose responses cannot carry a body (fetch's null body status). */
const NULL_BODY_STATUS: ReadonlySet<number> = new Set([101, 204, 205, 304]);
/** The most header names whose `HTTP_*` keys are remembered. */
const HEADER_KEY_CACHE_LIMIT = 512;
/** Header name → `[CGI name, HTTP_ key]`, e.g. `x-a` → `["X_A", "HTTP_X_A"]`. */
const HEADER_KEYS = new Map<string, [string, string]>();
const EMPTY = new Uint8Array(0);

/** The answer to a request whose Content-Length is not one length. */
const BAD_LENGTH_APP = errorApp(
  "400 Bad Request",
  "The request's Content-Length is not a valid length.",
);

/** Errors already logged by a handler, which `Deno.serve` need not log. */
const LOGGED = new WeakSet<object>();

/** `Deno.serve`'s `onError`: log what no handler logged, answer 500. */
function onServeError(error: unknown): Response {
  if (typeof error !== "object" || error === null || !LOGGED.has(error)) {
    console.error(error);
  }
  return new Response(null, { status: 500 });
}

/** `ServerHandler` sends a `Response`; nothing is ever written to stdout. */
const NO_OUTPUT = Object.freeze({
  write(): never {
    throw new Error("ServerHandler sends its output as a Response");
  },
});

function headerKeys(name: string): [string, string] {
  let keys = HEADER_KEYS.get(name);
  if (keys === undefined) {
    const cgiName = name.replaceAll("-", "_").toUpperCase();
    keys = [cgiName, "HTTP_" + cgiName];
    if (HEADER_KEYS.size < HEADER_KEY_CACHE_LIMIT) HEADER_KEYS.set(name, keys);
  }
  return keys;
}

/** Whether `name` is `canonical` in any case; the common spellings are
 * compared first, without a lower-case copy. */
function isNamed(name: string, canonical: string, lower: string): boolean {
  return name === canonical || name === lower || name.toLowerCase() === lower;
}

function isContentLength(name: string): boolean {
  return name.length === 14 &&
    isNamed(name, "Content-Length", "content-length");
}

/** Close `result` for `handler` after an error, then throw the error. */
async function closeThenThrow(
  result: unknown,
  handler: object,
  error: unknown,
): Promise<never> {
  await closeResult(result, handler);
  throw error;
}

/** Bodies up to this many bytes are sent as a string when they are ASCII. */
const TEXT_BODY_LIMIT = 1024;
const UTF8 = new TextDecoder();

/**
 * A small ASCII body as a string, which `Deno.serve` sends for much less
 * than the same bytes (their UTF-8 encoding is those bytes); `null` for
 * anything else.
 */
function asciiText(body: Uint8Array): string | null {
  const length = body.length;
  if (length > TEXT_BODY_LIMIT) return null;
  for (let i = 0; i < length; i++) {
    if (body[i] > 0x7f) return null;
  }
  // Both read ASCII the same; the decoder's call costs more up to ~24
  // bytes (measured with Deno.bench).
  return length <= 24
    ? String.fromCharCode.apply(null, body as unknown as number[])
    : UTF8.decode(body);
}

/** Split `host[:port]` (`[v6]:port` too); no port gives `fallbackPort`. */
function splitAuthority(
  authority: string,
  fallbackPort: string,
): [string, string] {
  const colon = authority.lastIndexOf(":");
  if (colon < 0 || authority.indexOf("]", colon) >= 0) {
    return [unbracket(authority), fallbackPort];
  }
  const port = authority.slice(colon + 1) || fallbackPort;
  return [unbracket(authority.slice(0, colon)), port];
}

/** `[::1]` → `::1`; anything else as it is. */
function unbracket(host: string): string {
  return host.charCodeAt(0) === 0x5b && host.endsWith("]")
    ? host.slice(1, -1)
    : host;
}

/**
 * The environ's sorted `key = repr(value)` lines after `Hello world!`, as
 * wsgiref's `demo_app`; a handy first application.
 *
 * @example Usage
 * ```ts
 * import { demoApp } from "@wsgi/wsgiref/simple_server";
 * import assert from "node:assert/strict";
 *
 * let status = "";
 * const body = demoApp({ PATH_INFO: "/x", "wsgi.run_once": false }, (s) => {
 *   status = s;
 *   return () => {};
 * });
 * assert.equal(status, "200 OK");
 * assert.equal(
 *   new TextDecoder().decode(body[0]),
 *   "Hello world!\n\nPATH_INFO = '/x'\nwsgi.run_once = False\n",
 * );
 * ```
 *
 * @param environ The request environment.
 * @param startResponse The server's `startResponse`.
 * @returns One UTF-8 chunk.
 */
export function demoApp(
  environ: Environ,
  startResponse: StartResponse,
): Uint8Array[] {
  let text = "Hello world!\n\n";
  for (const key of Object.keys(environ).sort()) {
    text += `${key} = ${repr(environ[key])}\n`;
  }
  startResponse("200 OK", [["Content-Type", "text/plain; charset=utf-8"]]);
  return [new TextEncoder().encode(text)];
}

/**
 * The `SimpleHandler` that runs the application for a `WSGIRequestHandler`
 * and turns its response into a web `Response`, as wsgiref's
 * `simple_server.ServerHandler` (which writes to a socket instead).
 *
 * Status, headers, `Content-Length`, the error page and `close()` are
 * `handlers.ts`'s; this class only decides how the bytes travel:
 *
 * - An `Array` result becomes one fixed-length body, without a stream.
 * - Any other result streams: the handler pulls the first non-empty chunk
 *   (PEP 3333: the headers go out with it), then one chunk each time the
 *   client is ready for more. Output of `write()` comes first.
 * - An error before the `Response` exists gets the 500 page; after that,
 *   the error is logged and the response is cut short.
 * - The result's `close()` runs once: at the end, after an error, or when
 *   the client goes away.
 *
 * The environ holds no process environment variables (`osEnviron` is `{}`,
 * not the process environment as in `BaseHandler`): they are no business of
 * a client's request. A `Server` header (`serverSoftware`) goes first
 * unless the application set one; `Deno.serve` adds `Date`. A subclass with
 * `serverSoftware = null`, given as `WSGIRequestHandler.serverHandlerClass`,
 * sends none, which `Deno.serve` answers faster.
 *
 * @example Usage
 * ```ts
 * import { ServerHandler } from "@wsgi/wsgiref/simple_server";
 * import assert from "node:assert/strict";
 *
 * const handler = new ServerHandler(
 *   { readSync: () => null },
 *   { write: () => {} },
 *   Deno.stderr,
 *   { REQUEST_METHOD: "GET", SERVER_PROTOCOL: "HTTP/1.1" },
 * );
 * await handler.run((_environ, startResponse) => {
 *   startResponse("201 Created", [["Content-Type", "text/plain"]]);
 *   return [new TextEncoder().encode("made")];
 * });
 * const response = handler.response!;
 * assert.equal(response.status, 201);
 * assert.equal(response.headers.get("content-type"), "text/plain");
 * assert.match(response.headers.get("server")!, /^WSGIServer\/0\.2 Deno\//);
 * assert.equal(await response.text(), "made");
 * ```
 */
export class ServerHandler extends SimpleHandler {
  /** The `Server` header added to every response that has none. */
  override serverSoftware: string | null = SOFTWARE_VERSION;
  /** The request handler this handler answers for, which logs the request
   * and releases its body when the response is over; `null` for none. */
  requestHandler: WSGIRequestHandler | null = null;

  #list: HeaderList | null = null;
  #code = 0;
  #pending: Uint8Array[] = [];
  #pendingBytes = 0;
  #response: Response | null = null;
  #iterator: Iterator<unknown> | AsyncIterator<unknown> | null = null;
  #async = false;
  #over = false;
  #logged = false;

  /**
   * Run one request with the given body and CGI variables; `stdout` is
   * never written to (pass anything with `write`), the response is
   * `response`.
   *
   * @param stdin The request body: an `InputStream` or a `readSync` reader.
   * @param stdout Unused; required by `SimpleHandler`.
   * @param stderr `wsgi.errors` and the error log.
   * @param environ The request's CGI variables.
   * @param multithread `environ["wsgi.multithread"]`.
   * @param multiprocess `environ["wsgi.multiprocess"]`.
   */
  constructor(
    stdin: ConstructorParameters<typeof SimpleHandler>[0],
    stdout: ConstructorParameters<typeof SimpleHandler>[1],
    stderr: ConstructorParameters<typeof SimpleHandler>[2],
    environ: Environ,
    multithread = true,
    multiprocess = false,
  ) {
    super(stdin, stdout, stderr, environ, multithread, multiprocess);
    // Never copy the process environment into a client's request.
    this.osEnviron = NO_OS_ENVIRON;
  }

  /**
   * The response, once `run()` has settled; `null` before.
   *
   * @returns The response.
   */
  get response(): Response | null {
    return this.#response;
  }

  /**
   * `BaseHandler.startResponse`, keeping the header list to hand it to
   * `new Response` as it is.
   *
   * @param status E.g. `"200 OK"`.
   * @param headers The `[name, value]` list.
   * @param excInfo The caught error, when called from an error handler.
   * @returns The `write` callable.
   */
  override startResponse(
    status: string,
    headers: HeaderList,
    excInfo?: unknown,
  ): Write {
    const write = super.startResponse(status, headers, excInfo);
    this.#list = headers;
    return write;
  }

  /**
   * Produce the `Response`: a fixed body for an `Array` result or a result
   * that ends before its first non-empty chunk, a stream otherwise.
   *
   * @returns A promise that settles once `response` is set.
   */
  override finishResponse(): Promise<void> {
    const result = this.result;
    if (!Array.isArray(result)) return this.#finishStream();
    // The common case, kept synchronous: the Response exists when this
    // returns.
    try {
      for (const chunk of result as unknown[]) {
        this.write(chunk as Uint8Array);
      }
      this.finishContent();
      this.#respond(this.#fixedBody());
    } catch (error) {
      this.#unsend();
      return closeThenThrow(result, this, error);
    }
    return this.close();
  }

  /** `finishResponse()` for a result that is not an `Array`. */
  async #finishStream(): Promise<void> {
    const result = this.result;
    const iterable = result as Partial<
      Iterable<unknown> & AsyncIterable<unknown>
    >;
    let iterator: Iterator<unknown> | AsyncIterator<unknown>;
    if (typeof iterable?.[Symbol.iterator] === "function") {
      iterator = iterable[Symbol.iterator]!();
    } else if (typeof iterable?.[Symbol.asyncIterator] === "function") {
      iterator = iterable[Symbol.asyncIterator]!();
      this.#async = true;
    } else {
      // Not iterable: handlers.ts refuses it with its own message.
      return super.finishResponse();
    }
    this.#iterator = iterator;
    try {
      // PEP 3333: no headers before the first non-empty chunk (or the end).
      while (this.#pending.length === 0) {
        let step = iterator.next();
        if (this.#async) step = await step;
        if ((step as IteratorResult<unknown>).done) {
          this.finishContent();
          this.#respond(this.#fixedBody());
          this.#over = true;
          break;
        }
        const chunk = (step as IteratorResult<unknown>).value;
        if (chunk instanceof Uint8Array && chunk.length === 0) continue;
        try {
          this.write(chunk as Uint8Array);
        } catch (error) {
          await returnIterator(iterator);
          throw error;
        }
      }
      if (!this.#over) {
        if (NULL_BODY_STATUS.has(this.#code)) {
          this.#respond(null);
          this.#over = true;
          await returnIterator(iterator);
        } else {
          this.#respond(
            new ReadableStream<Uint8Array<ArrayBuffer>>({
              pull: (controller) => this.#pull(controller),
              cancel: () => this.#cancel(),
            }, { highWaterMark: 0 }),
          );
        }
      }
    } catch (error) {
      this.#unsend();
      await closeResult(result, this);
      throw error;
    }
    if (this.#over) await this.close();
  }

  /**
   * Nothing to add: `Deno.serve` sets the `Content-Length` of every fixed
   * body from the body itself, and a streamed body has none.
   */
  override cleanupHeaders(): void {}

  /**
   * Use the environ the request handler made for this request alone as it
   * is, rather than copy it (`osEnviron` is empty); otherwise, as
   * `SimpleHandler` does, copy the constructor's `environ`.
   */
  override addCgiVars(): void {
    if (this.requestHandler !== null && this.osEnviron === NO_OS_ENVIRON) {
      this.environ = this.baseEnv;
    } else {
      super.addCgiVars();
    }
  }

  /**
   * Mark the headers as sent after `cleanupHeaders()`; no bytes are
   * written, `new Response` carries the status and headers.
   *
   * @throws {RangeError} For a status code `Deno.serve` cannot send
   * (below 200 or above 599).
   */
  override sendHeaders(): void {
    this.cleanupHeaders();
    const status = this.status!;
    // startResponse() checked the three digits.
    const code = status.charCodeAt(0) * 100 + status.charCodeAt(1) * 10 +
      status.charCodeAt(2) - 0x30 * 111;
    if (!(code >= 200 && code <= 599)) {
      throw new RangeError(
        `Cannot send status ${
          quote(status)
        }: a Response's status must be from 200 to 599`,
      );
    }
    this.#code = code;
    this.headersSent = true;
  }

  /**
   * Queue body bytes for the response.
   *
   * @param data The bytes.
   */
  override _write(data: Uint8Array): void {
    if (data.length > 0) {
      this.#pending.push(data);
      this.#pendingBytes += data.length;
    }
  }

  /** Nothing to flush: queued bytes go out as the client reads. */
  override _flush(): void {}

  /**
   * `BaseHandler.handleError`; an error before the `Response` exists, even
   * after `write()`, still gets the error page, since no byte has left.
   * After the error page, the response is over.
   *
   * @param error The error.
   * @returns A promise that settles once the error page is ready.
   */
  override async handleError(error: unknown): Promise<void> {
    if (this.#response === null) this.#unsend();
    await super.handleError(error);
  }

  /**
   * Log the request through the request handler (as wsgiref's
   * `ServerHandler.close`), then `BaseHandler.close()`, then let the request
   * handler release the request body.
   *
   * @returns A promise that settles once the result is closed.
   */
  override close(): Promise<void> {
    const requestHandler = this.requestHandler;
    let logError: unknown = null;
    let logFailed = false;
    if (!this.#logged && requestHandler !== null && this.status !== null) {
      this.#logged = true;
      const status = this.status;
      const space = status.indexOf(" ");
      try {
        requestHandler.logRequest(
          space < 0 ? status : status.slice(0, space),
          this.bytesSent,
        );
      } catch (error) {
        logFailed = true;
        logError = error;
      }
    }
    const closing = super.close();
    if (closing === RESOLVED && !logFailed) {
      // Closed at once: release the body without a promise hop.
      try {
        requestHandler?.finish();
      } catch (error) {
        return Promise.reject(error);
      }
      return closing;
    }
    return closing.finally(() => requestHandler?.finish()).then(() => {
      if (logFailed) throw logError;
    });
  }

  /** Forget what was "sent": nothing has left while no Response exists. */
  #unsend(): void {
    this.headersSent = false;
    this.#pending = [];
    this.#pendingBytes = 0;
  }

  #fixedBody(): Uint8Array<ArrayBuffer> | null {
    const pending = this.#pending;
    const body = pending.length === 0
      ? EMPTY
      : concat(pending, this.#pendingBytes);
    this.#pending = [];
    this.#pendingBytes = 0;
    return NULL_BODY_STATUS.has(this.#code)
      ? null
      : body as Uint8Array<ArrayBuffer>;
  }

  /**
   * Build the `Response`. Status and headers go to it as values (nothing is
   * serialised and parsed back), in the shapes `Deno.serve` sends fastest:
   * a lone `Content-Type` as a plain object, a small ASCII body as a
   * string. A `Content-Length` equal to a fixed body's length is left to
   * `Deno.serve`, which sets it anyway.
   */
  #respond(body: Uint8Array<ArrayBuffer> | ReadableStream | null): void {
    const list = this.headersClass === Headers && this.#list !== null
      ? this.#list
      : this.headers!.items();
    const fixedLength = body instanceof Uint8Array ? body.length : -1;
    let software = this.serverSoftware;
    let typed = false;
    let dropLength = false;
    const lengthText = fixedLength >= 0 ? String(fixedLength) : "";
    for (let i = 0; i < list.length; i++) {
      const [name, value] = list[i];
      switch (name.length) {
        case 6:
          if (isNamed(name, "Server", "server")) software = null;
          break;
        case 12:
          if (isNamed(name, "Content-Type", "content-type")) typed = true;
          break;
        case 14:
          // Deno.serve sets a fixed body's Content-Length itself.
          if (
            fixedLength >= 0 &&
            value === lengthText && isContentLength(name)
          ) dropLength = true;
      }
    }
    // As wsgiref's preamble, Server goes first, unless the application set
    // one (Deno.serve adds Date). A plain object costs Deno.serve less to
    // read than an array of pairs (each pair goes through a sequence
    // conversion), when it can hold the headers in order.
    const sent: [string, string][] = software ? [["Server", software]] : [];
    let record: Record<string, string> | null = software
      ? { Server: software }
      : {};
    for (let i = 0; i < list.length; i++) {
      const pair = list[i];
      const name = pair[0];
      if (dropLength && isContentLength(name) && pair[1] === lengthText) {
        continue;
      }
      sent.push(pair);
      if (record !== null) {
        // Repeated, inherited or integer names need the pairs.
        const first = name.charCodeAt(0);
        if ((first >= 0x30 && first <= 0x39) || name in record) record = null;
        else record[name] = pair[1];
      }
    }
    const code = this.#code;
    // Deno.serve sends a small ASCII body for less as a string than as
    // bytes (it copies bytes first), and fastest of all with status 200 and
    // a lone Content-Type. Only with the application's Content-Type: a
    // string body would otherwise get Deno's text/plain one.
    const text = typed && fixedLength > 0
      ? asciiText(body as Uint8Array)
      : null;
    const headers = record ?? sent;
    try {
      this.#response = new Response(
        text ?? body,
        code === 200 ? { headers } : { status: code, headers },
      );
    } catch (error) {
      // A header the application slipped into its list after
      // startResponse() checked it: nothing has left, the error page can.
      this.#unsend();
      throw error;
    }
  }

  async #pull(
    controller: ReadableStreamDefaultController<Uint8Array<ArrayBuffer>>,
  ) {
    const iterator = this.#iterator!;
    try {
      while (this.#pending.length === 0 && !this.#over) {
        let step = iterator.next();
        if (this.#async) step = await step;
        if (this.#over) return; // cancelled while waiting
        if ((step as IteratorResult<unknown>).done) {
          this.#over = true;
          this.finishContent();
          break;
        }
        try {
          this.write((step as IteratorResult<unknown>).value as Uint8Array);
        } catch (error) {
          await returnIterator(iterator);
          throw error;
        }
      }
    } catch (error) {
      // The status and some bytes have left: log, close, cut it short.
      this.#over = true;
      if (typeof error === "object" && error !== null) LOGGED.add(error);
      try {
        this.logException(error);
        await this.close();
      } finally {
        controller.error(error);
      }
      return;
    }
    for (const chunk of this.#pending) {
      controller.enqueue(chunk as Uint8Array<ArrayBuffer>);
    }
    this.#pending = [];
    this.#pendingBytes = 0;
    if (this.#over) {
      try {
        await this.close();
      } finally {
        controller.close();
      }
    }
  }

  /** The client went away: stop the iteration and close the result. */
  async #cancel(): Promise<void> {
    if (this.#over) return;
    this.#over = true;
    // Not awaited: an async generator waiting inside next() only returns
    // once that settles, and close() must not wait for it.
    returnIterator(this.#iterator!).catch((error) => this.logException(error));
    await this.close();
  }
}

/**
 * The shape of a request handler class, for `handlerClass` options.
 *
 * @example Usage
 * ```ts
 * import {
 *   WSGIRequestHandler,
 *   type WSGIRequestHandlerClass,
 * } from "@wsgi/wsgiref/simple_server";
 * import assert from "node:assert/strict";
 *
 * class SilentHandler extends WSGIRequestHandler {
 *   override logMessage(_message: string): void {}
 * }
 * const handlerClass: WSGIRequestHandlerClass = SilentHandler;
 * assert.equal(handlerClass.name, "SilentHandler");
 * ```
 */
export type WSGIRequestHandlerClass = new (
  request: Request,
  clientAddress: [string, number],
  server: WSGIServer,
) => WSGIRequestHandler;

/**
 * Options of a `WSGIServer` and of `toFetchHandler`.
 *
 * @example Usage
 * ```ts
 * import {
 *   type FetchHandlerOptions,
 *   toFetchHandler,
 * } from "@wsgi/wsgiref/simple_server";
 * import assert from "node:assert/strict";
 *
 * const options: FetchHandlerOptions = { quiet: true, maxBodySize: 4 };
 * const fetchHandler = toFetchHandler((_environ, startResponse) => {
 *   startResponse("200 OK", [["Content-Type", "text/plain"]]);
 *   return [];
 * }, options);
 * const response = await fetchHandler(
 *   new Request("http://localhost/", { method: "POST", body: "too long" }),
 * );
 * assert.equal(response.status, 413);
 * await response.body?.cancel();
 * ```
 */
export interface FetchHandlerOptions {
  /**
   * The class whose instances answer each request.
   *
   * @default {WSGIRequestHandler}
   */
  handlerClass?: WSGIRequestHandlerClass;
  /**
   * Turn off the access log.
   *
   * @default {false}
   */
  quiet?: boolean;
  /**
   * Request bodies up to this many bytes are held in memory; larger ones
   * are written to a temporary file, removed when the response is over.
   *
   * @default {1048576}
   */
  spoolThreshold?: number;
  /**
   * Request bodies over this many bytes are answered
   * `413 Request Entity Too Large` without calling the application.
   * `Infinity` for no limit.
   *
   * @default {1073741824}
   */
  maxBodySize?: number;
  /**
   * The directory of the temporary files that hold large request bodies.
   *
   * @default {undefined} The system's temporary directory.
   */
  tempDir?: string;
}

/**
 * Options of the `WSGIServer` constructor.
 *
 * @example Usage
 * ```ts
 * import {
 *   WSGIServer,
 *   type WSGIServerOptions,
 * } from "@wsgi/wsgiref/simple_server";
 * import assert from "node:assert/strict";
 *
 * const options: WSGIServerOptions = { bindAndActivate: false, quiet: true };
 * await using server = new WSGIServer(["127.0.0.1", 0], undefined, options);
 * assert.equal(server.quiet, true);
 * ```
 */
export interface WSGIServerOptions
  extends Omit<FetchHandlerOptions, "handlerClass"> {
  /**
   * Listen on `serverAddress` at once, as Python's `bind_and_activate`.
   * A server that does not listen (as the one `toFetchHandler` makes) has
   * no address of its own: each request's `SERVER_NAME` and `SERVER_PORT`
   * come from its URL, and `serveForever()`/`handleRequest()` have nothing
   * to answer.
   *
   * @default {true}
   */
  bindAndActivate?: boolean;
  /**
   * A PEM certificate chain: serve HTTPS (with `key`).
   *
   * @default {undefined}
   */
  cert?: string;
  /**
   * The PEM private key of `cert`.
   *
   * @default {undefined}
   */
  key?: string;
}

/**
 * Options of `makeServer`.
 *
 * @example Usage
 * ```ts
 * import {
 *   demoApp,
 *   makeServer,
 *   type MakeServerOptions,
 * } from "@wsgi/wsgiref/simple_server";
 * import assert from "node:assert/strict";
 *
 * const options: MakeServerOptions = { quiet: true, spoolThreshold: 64 * 1024 };
 * await using server = makeServer("127.0.0.1", 0, demoApp, options);
 * assert.equal(server.spoolThreshold, 64 * 1024);
 * ```
 */
export interface MakeServerOptions extends FetchHandlerOptions {
  /**
   * The server class.
   *
   * @default {WSGIServer}
   */
  serverClass?: typeof WSGIServer;
  /**
   * A PEM certificate chain: serve HTTPS (with `key`);
   * `wsgi.url_scheme` is then `https`.
   *
   * @default {undefined}
   */
  cert?: string;
  /**
   * The PEM private key of `cert`.
   *
   * @default {undefined}
   */
  key?: string;
}

interface Parked {
  request: Request;
  info: Deno.ServeHandlerInfo | undefined;
  resolve: (response: Response | Promise<Response>) => void;
}

/** Answer one request: a new request handler for it, then `handle()`. */
function dispatch(
  server: WSGIServer,
  request: Request,
  info: Deno.ServeHandlerInfo | undefined,
): Response | Promise<Response> {
  const address = info?.remoteAddr as Partial<Deno.NetAddr> | undefined;
  const handler = new server.handlerClass(
    request,
    [address?.hostname ?? "", address?.port ?? 0],
    server,
  );
  // handle() as WSGIRequestHandler has it: skip its promise when the
  // response is ready at once.
  return handler.handle === DEFAULT_HANDLE ? answer(handler) : handler.handle();
}

let answer: (handler: WSGIRequestHandler) => Response | Promise<Response>;

/**
 * A gateway-interface HTTP server over `Deno.serve`, as wsgiref's
 * `WSGIServer`. It listens as soon as it is created, but answers requests
 * only while `serveForever()` or `handleRequest()` runs; requests that come
 * in between wait for one of them.
 *
 * `shutdown()` stops listening and lets the requests in progress finish;
 * a server cannot listen again afterwards. `serverClose()` or
 * `await using` release everything.
 *
 * @example Usage
 * ```ts ignore
 * import { demoApp, WSGIServer } from "@wsgi/wsgiref/simple_server";
 *
 * await using server = new WSGIServer(["127.0.0.1", 8000]);
 * server.setApp(demoApp);
 * await server.serveForever();
 * ```
 */
export class WSGIServer {
  /** The address listened on, `[host, port]`: the port is the real one
   * when 0 was asked for. */
  serverAddress: [string, number];
  /** The server's host name, for `SERVER_NAME`. */
  serverName: string;
  /** The port listened on, for `SERVER_PORT`. */
  serverPort: number;
  /** The CGI variables every request's environ starts from. */
  baseEnviron: Record<string, string> = {};
  /** The class whose instances answer each request. */
  handlerClass: WSGIRequestHandlerClass;
  /** Whether the access log is off. */
  readonly quiet: boolean;
  /** Request bodies up to this many bytes are held in memory. */
  readonly spoolThreshold: number;
  /** Request bodies over this many bytes are answered 413. */
  readonly maxBodySize: number;
  /** Where large request bodies are spooled; `undefined` for the system's
   * temporary directory. */
  readonly tempDir: string | undefined;
  /** Whether the server listens with TLS. */
  readonly secure: boolean;

  #application: Application | null = null;
  #httpServer: Deno.HttpServer<Deno.NetAddr> | null = null;
  #parked: Parked[] = [];
  #takers: (() => void)[] = [];
  #serving = 0;
  #closing = false;
  #stopServing!: () => void;
  #stopped: Promise<void>;
  #shutdown: Promise<void> | null = null;

  /**
   * Bind to `serverAddress` and listen (unless `bindAndActivate` is
   * `false`), as wsgiref's `WSGIServer((host, port), handlerClass)`.
   *
   * @param serverAddress `[host, port]`: `""` for every interface, port `0`
   * for any free one.
   * @param handlerClass The class whose instances answer each request.
   * @param options Body limits, access log, TLS.
   * @throws {TypeError} For a host that is not a string or options of the
   * wrong type.
   * @throws {RangeError} For a port outside 0–65535 or a negative size.
   */
  constructor(
    serverAddress: [string, number],
    handlerClass: WSGIRequestHandlerClass = WSGIRequestHandler,
    options: WSGIServerOptions = {},
  ) {
    if (!Array.isArray(serverAddress) || typeof serverAddress[0] !== "string") {
      throw new TypeError(
        `Cannot create the server: the address must be [host, port], not ${
          repr(serverAddress)
        }`,
      );
    }
    const [host, port] = serverAddress;
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
    if (typeof handlerClass !== "function") {
      throw new TypeError(
        `Cannot create the server: handlerClass must be a class, not ${
          typeName(handlerClass)
        } ${repr(handlerClass)}`,
      );
    }
    const {
      quiet = false,
      bindAndActivate = true,
      cert,
      key,
      tempDir,
    } = options;
    this.handlerClass = handlerClass;
    this.quiet = Boolean(quiet);
    this.spoolThreshold = checkSize(
      options.spoolThreshold,
      "spoolThreshold",
      DEFAULT_SPOOL_THRESHOLD,
    );
    this.maxBodySize = checkSize(
      options.maxBodySize,
      "maxBodySize",
      DEFAULT_MAX_BODY_SIZE,
    );
    this.tempDir = tempDir;
    this.secure = cert !== undefined || key !== undefined;
    this.#stopped = new Promise((resolve) => this.#stopServing = resolve);
    this.serverAddress = [host, port];
    this.serverName = host;
    this.serverPort = port;
    if (bindAndActivate) {
      const hostname = host === "" ? "0.0.0.0" : host;
      const listen = {
        hostname,
        port,
        onListen: () => {},
        onError: onServeError,
      };
      const handler = (request: Request, info: Deno.ServeHandlerInfo) =>
        this.#accept(request, info);
      const server = this.secure
        ? Deno.serve({ ...listen, cert: cert!, key: key! }, handler)
        : Deno.serve(listen, handler);
      this.#httpServer = server;
      this.serverAddress = [server.addr.hostname, server.addr.port];
      this.serverPort = server.addr.port;
      this.serverName = serverNameOf(hostname);
    }
    this.setupEnviron();
  }

  /**
   * Fill `baseEnviron`, as wsgiref's `setup_environ`: `SERVER_NAME`,
   * `GATEWAY_INTERFACE`, `SERVER_PORT`, `REMOTE_HOST`, `CONTENT_LENGTH`,
   * `SCRIPT_NAME` (and `HTTPS` when serving TLS). A server that does not
   * listen leaves `SERVER_NAME` and `SERVER_PORT` to each request.
   */
  setupEnviron(): void {
    const environ: Record<string, string> = this.baseEnviron = {};
    if (this.#httpServer !== null) environ.SERVER_NAME = this.serverName;
    environ.GATEWAY_INTERFACE = "CGI/1.1";
    if (this.#httpServer !== null) {
      environ.SERVER_PORT = String(this.serverPort);
    }
    environ.REMOTE_HOST = "";
    environ.CONTENT_LENGTH = "";
    environ.SCRIPT_NAME = "";
    if (this.secure) environ.HTTPS = "on";
  }

  /**
   * The application served.
   *
   * @returns The application, or `null` before `setApp`.
   */
  getApp(): Application | null {
    return this.#application;
  }

  /**
   * Set the application to serve (for the next requests).
   *
   * @param application The application.
   */
  setApp(application: Application): void {
    this.#application = application;
  }

  /**
   * Answer requests until `shutdown()`, including those that waited.
   *
   * @returns A promise that settles after `shutdown()`.
   */
  async serveForever(): Promise<void> {
    if (this.#closing) return;
    this.#serving++;
    try {
      for (const parked of this.#parked.splice(0)) this.#release(parked);
      await this.#stopped;
    } finally {
      this.#serving--;
    }
  }

  /**
   * Answer exactly one request: the first that waits, or else the next to
   * come in. It settles when that response has been sent (or the client
   * went away), or at `shutdown()`.
   *
   * @returns A promise that settles once the request has been answered.
   * @throws {Error} When the server has been shut down.
   */
  handleRequest(): Promise<void> {
    if (this.#closing) {
      return Promise.reject(
        new Error("Cannot handle a request: the server has been shut down"),
      );
    }
    return new Promise((resolve) => {
      const parked = this.#parked.shift();
      if (parked === undefined) {
        this.#takers.push(resolve);
        return;
      }
      this.#release(parked, resolve);
    });
  }

  /**
   * Stop listening and answering: requests that wait and those in progress
   * are answered, `serveForever()` returns, and the promise settles once
   * the last response is over. Calling it again returns the same promise.
   *
   * @returns A promise that settles when the server has stopped.
   */
  shutdown(): Promise<void> {
    if (this.#shutdown !== null) return this.#shutdown;
    this.#closing = true;
    this.#stopServing();
    for (const parked of this.#parked.splice(0)) this.#release(parked);
    for (const taker of this.#takers.splice(0)) taker();
    const server = this.#httpServer;
    return this.#shutdown = server === null ? Promise.resolve() : server
      .shutdown()
      .then(() => server.finished);
  }

  /**
   * Release the listening socket: `shutdown()` if it has not been called,
   * waiting for it. Idempotent.
   *
   * @returns A promise that settles once everything is released.
   */
  serverClose(): Promise<void> {
    return this.shutdown();
  }

  /**
   * `shutdown()` and `serverClose()`, for `await using`.
   *
   * @returns A promise that settles once everything is released.
   */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.shutdown();
    await this.serverClose();
  }

  /** `Deno.serve`'s handler: answer now, or park until someone serves. */
  #accept(
    request: Request,
    info: Deno.ServeHandlerInfo,
  ): Response | Promise<Response> {
    if (this.#serving > 0 || this.#closing) {
      return dispatch(this, request, info);
    }
    const taker = this.#takers.shift();
    if (taker !== undefined) {
      return this.#answerOne(request, info, taker);
    }
    return new Promise((resolve) => {
      this.#parked.push({ request, info, resolve });
    });
  }

  #release(parked: Parked, taker?: () => void): void {
    const { request, info, resolve } = parked;
    resolve(
      taker === undefined
        ? dispatch(this, request, info)
        : this.#answerOne(request, info, taker),
    );
  }

  /** Answer a request for `handleRequest()`, which settles when it is sent. */
  #answerOne(
    request: Request,
    info: Deno.ServeHandlerInfo | undefined,
    taker: () => void,
  ): Promise<Response> {
    const response = Promise.resolve(dispatch(this, request, info));
    const completed: Promise<unknown> = info?.completed ?? response;
    response.then(() => completed, () => {}).then(taker, taker);
    return response;
  }
}

/** wsgiref takes `socket.getfqdn(host)`; without reverse DNS, a guess. */
function serverNameOf(hostname: string): string {
  if (hostname === "0.0.0.0" || hostname === "::") {
    try {
      return Deno.hostname();
    } catch {
      return hostname;
    }
  }
  if (hostname === "127.0.0.1" || hostname === "::1") return "localhost";
  return hostname;
}

/**
 * Answers one request, as wsgiref's `WSGIRequestHandler`: builds the
 * environ, reads the body, runs the application through a `ServerHandler`
 * and logs the request in Common Log Format.
 *
 * Override `getStderr()` to send the error log and the access log
 * elsewhere, `logMessage()` to change or silence the access log.
 *
 * @example Logging to a string
 * ```ts
 * import {
 *   demoApp,
 *   toFetchHandler,
 *   WSGIRequestHandler,
 * } from "@wsgi/wsgiref/simple_server";
 * import assert from "node:assert/strict";
 *
 * const log: string[] = [];
 * class MyHandler extends WSGIRequestHandler {
 *   override logMessage(message: string): void {
 *     log.push(message);
 *   }
 * }
 * const fetchHandler = toFetchHandler(demoApp, { handlerClass: MyHandler });
 * const response = await fetchHandler(new Request("http://localhost/?q"));
 * await response.body?.cancel();
 * assert.match(log[0], /^"GET \/\?q HTTP\/1.1" 200 \d+$/);
 * ```
 */
export class WSGIRequestHandler {
  /** `SERVER_SOFTWARE` of the environ. */
  serverVersion: string = SERVER_VERSION;
  /** The class that runs the application and makes the `Response`. */
  serverHandlerClass: typeof ServerHandler = ServerHandler;
  /** The request. */
  readonly request: Request;
  /** The client's `[host, port]`; `["", 0]` when unknown. */
  readonly clientAddress: [string, number];
  /** The server this request came to. */
  readonly server: WSGIServer;

  #body: BodySpool | null = null;

  /**
   * Take one request.
   *
   * @param request The request.
   * @param clientAddress The client's `[host, port]`.
   * @param server The server.
   */
  constructor(
    request: Request,
    clientAddress: [string, number],
    server: WSGIServer,
  ) {
    this.request = request;
    this.clientAddress = clientAddress;
    this.server = server;
  }

  /**
   * The request line for the log, as it came as far as `Deno.serve` shows
   * it: method, target, `HTTP/1.1`.
   *
   * @returns E.g. `GET /path?query HTTP/1.1`.
   */
  get requestline(): string {
    const url = this.request.url;
    const start = url.indexOf("/", 8);
    const target = start < 0 ? "*" : utf8ToLatin1(url.slice(start));
    return `${this.request.method} ${target} HTTP/1.1`;
  }

  /**
   * The request's CGI variables, as wsgiref's `get_environ`: the server's
   * `baseEnviron`, then `SERVER_PROTOCOL`, `SERVER_SOFTWARE`,
   * `REQUEST_METHOD`, `PATH_INFO` (percent-decoded, a latin-1 string; a
   * leading `//` reduced to `/` as `http.server` does), `QUERY_STRING`
   * (raw), `REMOTE_ADDR`, `CONTENT_TYPE` (`text/plain` when absent, as
   * wsgiref), `CONTENT_LENGTH` (one decimal number: repeated equal
   * `Content-Length` lines give one) and an `HTTP_*` key per other header
   * (none that would replace a CGI variable; repeats joined as `Deno.serve`
   * joins them, with `", "`).
   *
   * @returns A new object.
   */
  getEnviron(): Record<string, string> {
    const request = this.request;
    const url = request.url;
    const environ: Record<string, string> = { ...this.server.baseEnviron };
    environ.SERVER_PROTOCOL = "HTTP/1.1";
    environ.SERVER_SOFTWARE = this.serverVersion;
    environ.REQUEST_METHOD = request.method;
    // Deno's URL is scheme "://" authority target, the target as sent, but
    // UTF-8 bytes decoded: cut it by index, back to bytes if need be.
    const start = url.indexOf("/", 8);
    let target = start < 0 ? "" : url.slice(start);
    // As http.server (gh-87389): "//path" would read as a host to clients
    // that are redirected to it.
    if (target.charCodeAt(1) === 0x2f) {
      target = "/" + target.replace(/^\/+/, "");
    }
    const mark = target.indexOf("?");
    let path = mark < 0 ? target : target.slice(0, mark);
    let query = mark < 0 ? "" : target.slice(mark + 1);
    if (!isAscii(target)) {
      path = utf8ToLatin1(path);
      query = utf8ToLatin1(query);
    }
    environ.PATH_INFO = percentDecodeLatin1(path);
    environ.QUERY_STRING = query;
    if (!("SERVER_NAME" in environ)) {
      const secure = url.charCodeAt(4) === 0x73; // "https:"
      const [name, port] = splitAuthority(
        url.slice(url.indexOf("//") + 2, start < 0 ? url.length : start),
        secure ? "443" : "80",
      );
      environ.SERVER_NAME = name;
      environ.SERVER_PORT = port;
      if (secure) environ.HTTPS = "on";
    }
    const address = this.clientAddress[0];
    if (address !== "") environ.REMOTE_ADDR = address;
    environ.CONTENT_TYPE = "text/plain";
    // forEach, not for...of: Deno's Headers iterator costs several times
    // more per request.
    request.headers.forEach((value, name) => {
      if (name === "content-type") environ.CONTENT_TYPE = value;
      else if (name === "content-length") {
        // Left as sent when invalid: handle() refuses the request.
        environ.CONTENT_LENGTH = normalizeContentLength(value) ?? value;
      } else {
        const [cgiName, key] = headerKeys(name);
        // Never override a CGI variable; join repeated headers with ",".
        if (!(cgiName in environ)) {
          environ[key] = key in environ ? environ[key] + "," + value : value;
        }
      }
    });
    return environ;
  }

  /**
   * The stream for `wsgi.errors`, application errors and the access log:
   * the process's stderr.
   *
   * @returns The error stream.
   */
  getStderr(): ErrorStream {
    return processStderr();
  }

  /**
   * Answer the request: read its body (in memory, or spooled to a
   * temporary file above `spoolThreshold`; over `maxBodySize` it is
   * answered 413 without calling the application, and a `Content-Length`
   * that is not one length 400), then run the application through a
   * `ServerHandler`.
   *
   * @returns The response.
   */
  handle(): Promise<Response> {
    try {
      return Promise.resolve(this.#answer());
    } catch (error) {
      return Promise.reject(error);
    }
  }

  static {
    answer = (handler) => handler.#answer();
  }

  /** `handle()`, but a response that is ready at once is returned as is. */
  #answer(): Response | Promise<Response> {
    const environ = this.getEnviron();
    const application = this.server.getApp() as Application;
    const method = environ.REQUEST_METHOD;
    const declared = environ.CONTENT_LENGTH;
    if (declared !== "" && normalizeContentLength(declared) === null) {
      // Deno.serve refuses most bad lengths itself, not one beyond
      // Number.MAX_SAFE_INTEGER; a subclass's getEnviron() may set any.
      this.request.body?.cancel().catch(() => {});
      return this.#run(BAD_LENGTH_APP, new BytesInput(), environ);
    }
    // Deno.serve gives GET, HEAD and CONNECT requests no body; and reading
    // request.body before request.bytes() would cost bytes() its fast path.
    if (
      method === "GET" || method === "HEAD" || method === "CONNECT" ||
      declared === "0"
    ) {
      return this.#run(application, new BytesInput(), environ);
    }
    return this.#readBody(environ).then(
      (stdin) => this.#run(application, stdin, environ),
      (error) => {
        this.finish();
        return this.#run(
          bodyErrorApp(error, this.server.maxBodySize),
          new BytesInput(),
          environ,
        );
      },
    );
  }

  /** Run the application through a `ServerHandler`. */
  #run(
    application: Application,
    stdin: InputStream,
    environ: Record<string, string>,
  ): Response | Promise<Response> {
    const handler = new this.serverHandlerClass(
      stdin,
      NO_OUTPUT,
      this.getStderr(),
      environ,
      false,
      false,
    );
    handler.requestHandler = this;
    const running = handler.run(application);
    const response = handler.response;
    if (response !== null) {
      // Ready at once (a synchronous application and an Array result): the
      // rest of run(), close() and the access log, follows on its own.
      running.catch((error) => handler.logException(error));
      return response;
    }
    return running.then(() => handler.response!);
  }

  /**
   * Release what `handle()` holds for the request (a spooled body); called
   * when the response is over. Idempotent.
   */
  finish(): void {
    const body = this.#body;
    this.#body = null;
    body?.release();
  }

  /**
   * Log a finished request, as `http.server`'s `log_request`:
   * `"GET / HTTP/1.1" 200 13`. Nothing is formatted when the server is
   * quiet.
   *
   * @param code The status code.
   * @param size The body bytes sent.
   */
  logRequest(code: number | string = "-", size: number | string = "-"): void {
    if (this.server.quiet) return;
    this.logMessage(`"${this.requestline}" ${code} ${size}`);
  }

  /**
   * Write a line to `getStderr()`: the client's address, the local date
   * and `message`, control characters escaped, as `http.server` does:
   * `127.0.0.1 - - [21/Nov/2026 10:00:00] message`.
   *
   * @param message The text.
   */
  logMessage(message: string): void {
    this.getStderr().write(logLine(this.clientAddress[0], message));
  }

  /** Read the body: in memory, or spooled to a temporary file. */
  async #readBody(environ: Record<string, string>): Promise<InputStream> {
    const server = this.server;
    const request = this.request;
    const declared = environ.CONTENT_LENGTH;
    if (declared !== "") {
      const length = Number(declared);
      if (length > server.maxBodySize) {
        await request.body?.cancel().catch(() => {});
        throw new BodyTooLarge(server.maxBodySize);
      }
      if (length <= server.spoolThreshold) {
        return new BytesInput(await request.bytes());
      }
    }
    const body = request.body;
    if (body === null) {
      if (declared === "") environ.CONTENT_LENGTH = "0";
      return new BytesInput();
    }
    const spool = this.#body = new BodySpool(server);
    // A BYOB reader refills one buffer: the default reader's fresh chunk per
    // read leaves V8 ~100 MiB of garbage behind in a 1 GiB upload.
    let byob: ReadableStreamBYOBReader | null = null;
    let reader: ReadableStreamDefaultReader<Uint8Array> | null = null;
    try {
      byob = body.getReader({ mode: "byob" });
    } catch {
      reader = body.getReader(); // not a byte stream
    }
    let buffer = new Uint8Array(BODY_READ_SIZE);
    try {
      for (;;) {
        if (byob !== null) {
          const { done, value } = await byob.read(buffer);
          if (done || value === undefined) break;
          buffer = new Uint8Array(value.buffer);
          spool.append(value, true);
        } else {
          const { done, value } = await reader!.read();
          if (done) break;
          spool.append(value);
        }
      }
    } catch (error) {
      await (byob ?? reader)!.cancel().catch(() => {});
      throw error;
    }
    if (declared === "") environ.CONTENT_LENGTH = String(spool.length);
    return spool.input();
  }
}

const DEFAULT_HANDLE = WSGIRequestHandler.prototype.handle;

/**
 * Create a server for `app` listening on `host` and `port`, as wsgiref's
 * `make_server`. It is bound when this returns (`serverPort` is the real
 * port); it answers while `serveForever()` or `handleRequest()` runs.
 *
 * @example Usage
 * ```ts ignore
 * import { demoApp, makeServer } from "@wsgi/wsgiref/simple_server";
 *
 * await using server = makeServer("127.0.0.1", 0, demoApp, { quiet: true });
 * console.log(`Serving on http://127.0.0.1:${server.serverPort}/`);
 * await server.serveForever();
 * ```
 *
 * @param host The interface: `""` for all of them.
 * @param port The port: `0` for any free one.
 * @param app The application.
 * @param options Server and handler classes, access log, body limits, TLS.
 * @returns The server.
 * @throws {TypeError} For an application that is not a function, or a bad
 * host or option.
 * @throws {RangeError} For a port outside 0–65535 or a negative size.
 */
export function makeServer(
  host: string,
  port: number,
  app: Application,
  options: MakeServerOptions = {},
): WSGIServer {
  if (typeof app !== "function") {
    throw new TypeError(
      `Cannot make a server: the application must be a function, not ${
        typeName(app)
      } ${repr(app)}`,
    );
  }
  const {
    serverClass = WSGIServer,
    handlerClass = WSGIRequestHandler,
    ...serverOptions
  } = options;
  const server = new serverClass([host, port], handlerClass, serverOptions);
  server.setApp(app);
  return server;
}

/**
 * Make a fetch handler of an application: the adapter `WSGIServer` itself
 * uses, for `Deno.serve`, `deno serve` (`export default { fetch:
 * toFetchHandler(app) }`, with `--parallel` to use every core) and any
 * fetch-style host. `SERVER_NAME` and `SERVER_PORT` come from each
 * request's URL; `REMOTE_ADDR` from `info` when given.
 *
 * @example Usage
 * ```ts
 * import { demoApp, toFetchHandler } from "@wsgi/wsgiref/simple_server";
 * import assert from "node:assert/strict";
 *
 * const fetchHandler = toFetchHandler(demoApp, { quiet: true });
 * const response = await fetchHandler(new Request("http://example.com:8080/a%20b?x=1"));
 * const text = await response.text();
 * assert.match(text, /^PATH_INFO = '\/a b'$/m);
 * assert.match(text, /^QUERY_STRING = 'x=1'$/m);
 * assert.match(text, /^SERVER_PORT = '8080'$/m);
 * ```
 *
 * @param app The application.
 * @param options Request handler class, access log, body limits.
 * @returns The fetch handler.
 * @throws {TypeError} For an application that is not a function or a bad
 * option.
 */
export function toFetchHandler(
  app: Application,
  options: FetchHandlerOptions = {},
): (request: Request, info?: Deno.ServeHandlerInfo) => Promise<Response> {
  if (typeof app !== "function") {
    throw new TypeError(
      `Cannot make a fetch handler: the application must be a function, not ${
        typeName(app)
      } ${repr(app)}`,
    );
  }
  const { handlerClass = WSGIRequestHandler, ...serverOptions } = options;
  const server = new WSGIServer(["", 0], handlerClass, {
    ...serverOptions,
    bindAndActivate: false,
  });
  server.setApp(app);
  return async (request, info) => await dispatch(server, request, info);
}

const USAGE =
  "Usage: deno run -A simple_server.ts [module[:name]] [--host H] [--port P]";

async function main(args: string[]): Promise<number> {
  let host = "";
  let port = 8000;
  let spec: string | null = null;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--host" && i + 1 < args.length) host = args[++i];
    else if (arg === "--port" && i + 1 < args.length) {
      const value = args[++i];
      port = parsePort(value);
      if (port < 0) {
        console.error(`Not a port: ${quote(value)}\n${USAGE}`);
        return 2;
      }
    } else if (arg === "--help" || arg === "-h") {
      console.log(USAGE);
      return 0;
    } else if (spec === null && !arg.startsWith("--")) spec = arg;
    else {
      console.error(`Unexpected argument ${quote(arg)}\n${USAGE}`);
      return 2;
    }
  }
  let app: Application = demoApp;
  if (spec !== null) {
    try {
      app = await loadApplication(spec);
    } catch (error) {
      console.error((error as Error).message);
      return 1;
    }
  }
  const server = makeServer(host, port, app);
  const [address, bound] = server.serverAddress;
  await serveUntilStopped(
    server,
    `Serving HTTP on ${address} port ${bound} ...`,
  );
  return 0;
}

if (import.meta.main) runProgram(main);
