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
 * deno run -A simple_server.ts app.ts --socket /run/app/http.sock --quiet
 * deno run -A simple_server.ts app.ts --cert cert.pem --key key.pem
 * deno run -A simple_server.ts app.ts --graceful-timeout 10
 * ```
 *
 * SIGINT or SIGTERM stops it gracefully: requests in flight get
 * `--graceful-timeout` seconds (30 by default) to finish, then are cut
 * short, and the program exits 0; a second signal exits at once.
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
import { BytesInput, processStderr } from "./_io.ts";
import {
  closeThenThrow,
  type Gate,
  ResultLoop,
  takeBack,
  Unsent,
} from "./_result.ts";
import {
  clearStaleSocket,
  type FlagKind,
  loadApplication,
  parseFlags,
  removeOwnSocket,
  runProgram,
  serveUntilStopped,
  socketInode,
} from "./_program.ts";
import {
  bodyErrorApp,
  BodySpool,
  BodyTooLarge,
  checkBodyOptions,
  checkHandlerClass,
  checkPort,
  checkSize,
  errorApp,
  normalizeContentLength,
} from "./_body.ts";
import {
  isAscii,
  logLine,
  NO_OS_ENVIRON,
  percentDecodeLatin1,
  quote,
  repr,
  RESOLVED,
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

/** `ServerHandler`'s `#cutShort()`, for the request handler. */
let cutShort: (handler: ServerHandler, clientGone: boolean) => Promise<void>;
/** Whether a `ServerHandler` holds bytes the client has not read: its
 * result loop pauses then. */
let hasUnsent: Gate<ServerHandler>;

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
  // Applications answer with the same constant bytes again and again: the
  // string made for them last time serves while those bytes are unchanged
  // (a comparison costs less than making the string).
  if (body === lastBody && sameText(body, lastText)) return lastText;
  for (let i = 0; i < length; i++) {
    if (body[i] > 0x7f) return null;
  }
  // Both read ASCII the same; the decoder's call costs more up to ~24
  // bytes (measured with Deno.bench).
  const text = length <= 24
    ? String.fromCharCode.apply(null, body as unknown as number[])
    : UTF8.decode(body);
  // Never one that would keep a larger buffer alive.
  if (body.buffer.byteLength <= TEXT_BODY_LIMIT) {
    lastBody = body;
    lastText = text;
  }
  return text;
}

/** The body `asciiText()` made a string of last, and that string. */
let lastBody: Uint8Array | null = null;
let lastText = "";

/** Whether `bytes` are the char codes of `text`. */
function sameText(bytes: Uint8Array, text: string): boolean {
  const length = bytes.length;
  if (length !== text.length) return false;
  for (let i = 0; i < length; i++) {
    if (bytes[i] !== text.charCodeAt(i)) return false;
  }
  return true;
}

/** The most headers a response may have for `ResponseTemplate` to keep. */
const TEMPLATE_HEADER_LIMIT = 8;

/**
 * A response that `ServerHandler` made from a small ASCII body, kept so that
 * the same response made again is a clone of it. Applications answer with
 * the same status, headers and constant body again and again (a health
 * check, a fixed page); for `Deno.serve`, `template.clone()` costs less than
 * a new `Response` whose headers are appended (about 0.4 µs of 8 per
 * request end to end, `deno task bench --scenario costs`), and sends the
 * same bytes. The clone is made only once the same response has been made
 * twice in a row: an application whose responses differ pays for the
 * comparison and a copy of the header list, never for a clone.
 */
class ResponseTemplate {
  readonly code: number;
  readonly software: string | null;
  readonly text: string;
  /** The application's header list, copied. (Which `Content-Length` is
   * left to `Deno.serve` follows from it and the text.) */
  readonly names: string[];
  readonly values: string[];
  /** Made on the second use; never sent itself, only its clones. */
  response: Response | null = null;

  constructor(
    code: number,
    software: string | null,
    text: string,
    list: HeaderList,
  ) {
    this.code = code;
    this.software = software;
    this.text = text;
    this.names = list.map((header) => header[0]);
    this.values = list.map((header) => header[1]);
  }

  /** Whether a response of these parts would be this one. */
  matches(
    code: number,
    software: string | null,
    text: string,
    list: HeaderList,
  ): boolean {
    if (
      code !== this.code || software !== this.software ||
      list.length !== this.names.length || text !== this.text
    ) return false;
    const names = this.names;
    const values = this.values;
    for (let i = 0; i < list.length; i++) {
      const header = list[i];
      if (header[0] !== names[i] || header[1] !== values[i]) return false;
    }
    return true;
  }
}

/** The response `ServerHandler` made last from a small ASCII body. */
let lastTemplate: ResponseTemplate | null = null;

/**
 * A `Response` with `body`, status `code` and the headers `Server`
 * (`software`, unless `null`) then `list` but its `lengthAt` entry, in this
 * order, as wsgiref sends them.
 */
function buildResponse(
  body: BodyInit | null,
  code: number,
  software: string | null,
  list: HeaderList,
  lengthAt: number,
): Response {
  const response = new Response(
    body,
    code === 200 ? undefined : { status: code },
  );
  const headers = response.headers;
  // A string body came with Deno's Content-Type: the application's
  // replaces it, in the application's order.
  if (typeof body === "string") headers.delete("Content-Type");
  // As wsgiref's preamble, Server goes first, unless the application set
  // one (Deno.serve adds Date).
  if (software) headers.append("Server", software);
  for (let i = 0; i < list.length; i++) {
    if (i !== lengthAt) headers.append(list[i][0], list[i][1]);
  }
  return response;
}

/**
 * `buildResponse()` for a text body, through the last `ResponseTemplate`:
 * a clone when the response is the same as last time.
 */
function textResponse(
  text: string,
  code: number,
  software: string | null,
  list: HeaderList,
  lengthAt: number,
): Response {
  if (list.length > TEMPLATE_HEADER_LIMIT) {
    return buildResponse(text, code, software, list, lengthAt);
  }
  const template = lastTemplate;
  if (
    template === null || !template.matches(code, software, text, list)
  ) {
    // Checked before it is kept: a bad header throws here.
    const response = buildResponse(text, code, software, list, lengthAt);
    lastTemplate = new ResponseTemplate(code, software, text, list);
    return response;
  }
  template.response ??= buildResponse(text, code, software, list, lengthAt);
  return template.response.clone();
}

/**
 * Where the request target starts in Deno's URL: after `http://`,
 * `https://` or `http+unix://` and the authority; `-1` for none.
 */
function targetStart(url: string): number {
  const scheme = url.charCodeAt(4);
  const authority = scheme === 0x3a
    ? 7
    : scheme === 0x73
    ? 8
    : url.indexOf("://") + 3;
  return url.indexOf("/", authority);
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
  #unsent = new Unsent();
  #response: Response | null = null;
  #loop: ResultLoop<ServerHandler> | null = null;
  #over = false;
  #logged = false;
  /** Cut short by the request handler (timeout, shutdown, client gone). */
  #cut = false;
  #controller: ReadableStreamDefaultController<Uint8Array> | null = null;

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
    // The request was cut short while the application ran: close the
    // result it returned at last, send nothing.
    if (this.#cut) return this.close();
    const result = this.result;
    // An Array is sent whole, as one fixed body: the common case, kept
    // synchronous (the Response exists when this returns). Any other
    // result is pulled up to its first non-empty chunk (PEP 3333: the
    // headers go out with it), or its end.
    const loop = this.#loop = new ResultLoop(this, result, true);
    const pumping = loop.pump(Array.isArray(result) ? undefined : hasUnsent);
    if (pumping === undefined) return this.#respondFirst(loop);
    return pumping.then(() => this.#respondFirst(loop), (error) => {
      this.#unsend();
      throw error;
    });
  }

  /** Respond once the first chunk (or the end) is in. */
  #respondFirst(loop: ResultLoop<ServerHandler>): Promise<void> {
    if (loop.stopped) return RESOLVED; // cut short meanwhile: closed
    if (!loop.done) return this.#respondOpen(loop);
    try {
      this.finishContent();
      this.#respond(this.#fixedBody());
    } catch (error) {
      this.#unsend();
      return closeThenThrow(loop.result, this, error);
    }
    this.#over = true;
    return this.close();
  }

  /** The result has more chunks: stream them as the client reads, or
   * leave them unread when the status allows no body. */
  async #respondOpen(loop: ResultLoop<ServerHandler>): Promise<void> {
    try {
      if (!NULL_BODY_STATUS.has(this.#code)) {
        this.#respond(
          new ReadableStream<Uint8Array<ArrayBuffer>>({
            start: (controller) => void (this.#controller = controller),
            pull: (controller) => this.#pull(controller),
            cancel: () => this.#cancel(),
          }, { highWaterMark: 0 }),
        );
        return;
      }
      this.#respond(null);
      this.#over = true;
      await loop.leave();
    } catch (error) {
      this.#unsend();
      return await closeThenThrow(loop.result, this, error);
    }
    await this.close();
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
    this.#unsent.push(data);
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
    if (this.#cut) {
      // Answered already: log the error, close what there is.
      this.logException(error);
      return await this.close();
    }
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
    takeBack(this, this.#unsent);
  }

  #fixedBody(): Uint8Array<ArrayBuffer> | null {
    const body = this.#unsent.take();
    return NULL_BODY_STATUS.has(this.#code)
      ? null
      : body as Uint8Array<ArrayBuffer>;
  }

  /**
   * Build the `Response`. Status and headers go to it as values (nothing is
   * serialised and parsed back), the way `Deno.serve` costs least: a lone
   * `Content-Type` in the constructor's `init` (its fast path), any other
   * list appended to the made `Response`'s `headers` (a headers `init` of
   * two costs the constructor more than two appends), a small ASCII body as
   * a string, and the same response made again in a row as a clone of the
   * last (`ResponseTemplate`). A `Content-Length` equal to a fixed body's
   * length is left to `Deno.serve`, which sets it anyway.
   */
  #respond(body: Uint8Array<ArrayBuffer> | ReadableStream | null): void {
    const list = this.headersClass === Headers && this.#list !== null
      ? this.#list
      : this.headers!.items();
    const fixedLength = body instanceof Uint8Array ? body.length : -1;
    let software = this.serverSoftware;
    let typeAt = -1;
    let lengthAt = -1;
    for (let i = 0; i < list.length; i++) {
      const name = list[i][0];
      switch (name.length) {
        case 6:
          if (isNamed(name, "Server", "server")) software = null;
          break;
        case 12:
          if (typeAt < 0 && isNamed(name, "Content-Type", "content-type")) {
            typeAt = i;
          }
          break;
        case 14:
          // Deno.serve sets a fixed body's Content-Length itself.
          if (
            lengthAt < 0 && fixedLength >= 0 && isContentLength(name) &&
            list[i][1] === String(fixedLength)
          ) lengthAt = i;
      }
    }
    const code = this.#code;
    // Deno.serve sends a small ASCII body for less as a string than as
    // bytes (it copies bytes first). Only with the application's
    // Content-Type: a string body comes with Deno's text/plain one.
    const text = typeAt >= 0 && fixedLength > 0
      ? asciiText(body as Uint8Array)
      : null;
    let response: Response;
    try {
      if (
        software === null && typeAt >= 0 &&
        list.length - (lengthAt < 0 ? 0 : 1) === 1
      ) {
        response = new Response(text ?? body, {
          status: code,
          headers: { "Content-Type": list[typeAt][1] },
        });
      } else if (text !== null) {
        response = textResponse(text, code, software, list, lengthAt);
      } else {
        response = buildResponse(body, code, software, list, lengthAt);
      }
    } catch (error) {
      // A header the application slipped into its list after
      // startResponse() checked it: nothing has left, the error page can.
      this.#unsend();
      throw error;
    }
    this.#response = response;
  }

  async #pull(
    controller: ReadableStreamDefaultController<Uint8Array<ArrayBuffer>>,
  ) {
    const loop = this.#loop!;
    try {
      // One chunk per pull: the iterator advances as the client reads.
      await loop.pump(hasUnsent);
      if (loop.stopped) return; // cancelled or cut short while waiting
      if (loop.done) {
        this.#over = true;
        this.finishContent();
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
    const unsent = this.#unsent;
    for (const chunk of unsent.chunks) {
      controller.enqueue(chunk as Uint8Array<ArrayBuffer>);
    }
    unsent.clear();
    if (this.#over) {
      try {
        await this.close();
      } catch (error) {
        // Every byte is out: the error is the server's to log.
        this.logException(error);
      } finally {
        controller.close();
      }
    }
  }

  static {
    cutShort = (handler, clientGone) => handler.#cutShort(clientGone);
    hasUnsent = (handler) => handler.#unsent.bytes > 0;
  }

  /**
   * The request handler gave up on this request (client gone, timeout,
   * shutdown): stop the iteration, cut the stream if one was sent (not
   * when the client is gone: it was cancelled), close the result;
   * whatever the application returns later is closed and dropped. Before
   * a response, nothing is logged here: the request handler logs what it
   * answers instead.
   */
  #cutShort(clientGone: boolean): Promise<void> {
    if (this.#cut) return RESOLVED;
    this.#cut = true;
    if (this.#response === null) this.#logged = true;
    if (this.#over) return RESOLVED; // the response is over already
    this.#over = true;
    this.#loop?.stop((error) => this.logException(error));
    const controller = this.#controller;
    if (controller !== null && !clientGone) {
      const error = new Error("The response was cut short");
      // The request handler logged why; Deno.serve need not log it again.
      LOGGED.add(error);
      try {
        controller.error(error);
      } catch {
        // Closed already.
      }
    }
    return this.close();
  }

  /** The client went away: stop the iteration and close the result. */
  async #cancel(): Promise<void> {
    if (this.#over) return;
    this.#over = true;
    // close() does not wait for the iterator's return(): an async
    // generator waiting inside next() only returns once that settles.
    this.#loop!.stop((error) => this.logException(error));
    try {
      await this.close();
    } catch (error) {
      this.logException(error);
    }
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
  /**
   * Milliseconds a request may run, from its arrival to the end of its
   * response (reading the body, the application, sending a streamed
   * body). A request still running then is cut short: answered with the
   * error page (500) if no response has started, its stream cut if one
   * has; its result is closed, and whatever the application returns later
   * is closed unread. `0` (or `Infinity`) for no limit. A fixed-length
   * body already handed to `Deno.serve` is not cut.
   *
   * @default {0}
   */
  requestTimeout?: number;
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
  /**
   * Milliseconds `shutdown()` lets the requests in flight finish; then it
   * cuts them short, as `requestTimeout` does, and settles. `Infinity`
   * waits for them however long they take.
   *
   * @default {30000}
   */
  gracefulTimeout?: number;
  /**
   * Listen on this Unix socket instead of `host` and `port` (which must be
   * `""` and `0`). A stale socket file there is replaced; the socket file
   * is removed at `shutdown()`. Each request's `SERVER_NAME` and
   * `SERVER_PORT` come from its `Host` header (`localhost` and `80`
   * without one), and it has no `REMOTE_ADDR`.
   *
   * @default {undefined}
   */
  path?: string;
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
export interface MakeServerOptions
  extends
    FetchHandlerOptions,
    Pick<WSGIServerOptions, "gracefulTimeout" | "path"> {
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

/** The answer to a request whose client is gone: nobody reads it. */
function goneResponse(): Response {
  return new Response(null, { status: 500 });
}

/** What watches one request that did not finish at once. */
interface Watch {
  /** Resolves the request's answer early; `null` once it has one. */
  settle: ((response: Response) => void) | null;
  /** The `requestTimeout` timer. */
  timer: ReturnType<typeof setTimeout> | undefined;
  /** The listener on `request.signal`, to remove at the end. */
  onAbort: (() => void) | null;
  /** Whether it was cut short. */
  cut: boolean;
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
/** `WSGIRequestHandler`'s `#cutShort()`, for `WSGIServer.shutdown()`. */
let cutRequest: (handler: WSGIRequestHandler, reason: string) => void;
/** Add a request in progress to its server's set, or remove it. */
let trackRequest: (
  server: WSGIServer,
  handler: WSGIRequestHandler,
  running: boolean,
) => void;

/** The longest delay `setTimeout` takes (about 24.8 days); longer limits
 * are no limit. */
const MAX_TIMER_DELAY = 2 ** 31 - 1;
/** How long `shutdown()` waits for `Deno.serve` to finish after cutting
 * the requests in flight (a fixed-length body it is still sending to a
 * client that does not read cannot be cut). */
const CUT_GRACE_MS = 1000;
/** Defaults of the time limits, in ms. */
const DEFAULT_GRACEFUL_TIMEOUT = 30_000;
const DEFAULT_REQUEST_TIMEOUT = 0;

/**
 * How long a request waits for its application before its client is
 * watched for leaving (`request.signal`), in ms. Not at once: reading
 * `request.signal` doubles `Deno.serve`'s cost per request, and makes Deno
 * print a deprecation notice about its legacy abort; a client that left
 * is noticed 1 to 2 intervals later.
 */
const CLIENT_WATCH_INTERVAL = 1000;
/** Requests waiting for their application, by age: those that came in
 * since the last tick, and those to watch at the next one. */
let clientsFresh = new Set<WSGIRequestHandler>();
let clientsDue = new Set<WSGIRequestHandler>();
let clientTicks: ReturnType<typeof setInterval> | undefined;
/** `WSGIRequestHandler`'s `#watchClient()`. */
let watchClient: (handler: WSGIRequestHandler) => void;

/** Watch the client of `handler` if it still waits a while from now. */
function watchClientLater(handler: WSGIRequestHandler): void {
  clientsFresh.add(handler);
  if (clientTicks === undefined) {
    clientTicks = setInterval(watchWaitingClients, CLIENT_WATCH_INTERVAL);
    // Never what keeps a process alive.
    Deno.unrefTimer(clientTicks);
  }
}

/** Forget `handler`: it has its response. */
function unwatchClientLater(handler: WSGIRequestHandler): void {
  clientsFresh.delete(handler);
  clientsDue.delete(handler);
}

/** A tick: watch the requests that have waited a whole interval. */
function watchWaitingClients(): void {
  const due = clientsDue;
  clientsDue = clientsFresh;
  clientsFresh = due;
  for (const handler of due) watchClient(handler);
  due.clear();
  if (clientsDue.size === 0) {
    clearInterval(clientTicks);
    clientTicks = undefined;
  }
}

/** Whether `promise` settles within `ms` milliseconds (`Infinity`: wait). */
async function settlesWithin(
  promise: Promise<unknown>,
  ms: number,
): Promise<boolean> {
  if (ms > MAX_TIMER_DELAY) {
    await promise;
    return true;
  }
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<boolean>((resolve) => {
    timer = setTimeout(resolve, ms, false);
  });
  try {
    return await Promise.race([promise.then(() => true), late]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * A gateway-interface HTTP server over `Deno.serve`, as wsgiref's
 * `WSGIServer`. It listens as soon as it is created, but answers requests
 * only while `serveForever()` or `handleRequest()` runs; requests that come
 * in between wait for one of them.
 *
 * `shutdown()` stops listening and lets the requests in progress finish,
 * for up to `gracefulTimeout` ms; a server cannot listen again afterwards.
 * `serverClose()` or `await using` release everything. A request whose
 * client leaves before the application answers is dropped (within about
 * two seconds), its result closed when the application returns one; with
 * `requestTimeout`, a request still running after that long is cut short.
 * (Watching a client reads `request.signal`: Deno 2.9 then prints, once,
 * a notice about the signal's legacy abort on success; running with
 * `--unstable-no-legacy-abort`, or `"unstable": ["no-legacy-abort"]` in
 * `deno.json`, opts in to the behaviour that notice announces, and
 * silences it. Either way, clients that leave are noticed.)
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
   * when 0 was asked for; `[path, 0]` on a Unix socket. */
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
  /** Milliseconds `shutdown()` lets requests in flight finish. */
  readonly gracefulTimeout: number;
  /** Milliseconds a request may run; `0` for no limit. */
  readonly requestTimeout: number;
  /** The Unix socket listened on; `null` for TCP. */
  readonly socketPath: string | null;

  #application: Application | null = null;
  #httpServer: Deno.HttpServer | null = null;
  #socketInode: number | null = null;
  /** Requests whose response is not over yet (only those answered
   * asynchronously or streamed): what `shutdown()` may have to cut. */
  #running = new Set<WSGIRequestHandler>();
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
   * @param options Body limits, access log, TLS, time limits, a Unix
   * socket `path`.
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
    checkPort(port);
    checkHandlerClass(handlerClass);
    const {
      quiet = false,
      bindAndActivate = true,
      cert,
      key,
      tempDir,
      path,
    } = options;
    if (path !== undefined) checkSocketPath(path, host, port, cert, key);
    this.handlerClass = handlerClass;
    this.quiet = Boolean(quiet);
    ({
      spoolThreshold: this.spoolThreshold,
      maxBodySize: this.maxBodySize,
    } = checkBodyOptions(options));
    this.gracefulTimeout = checkSize(
      options.gracefulTimeout,
      "gracefulTimeout",
      DEFAULT_GRACEFUL_TIMEOUT,
    );
    this.requestTimeout = checkSize(
      options.requestTimeout,
      "requestTimeout",
      DEFAULT_REQUEST_TIMEOUT,
    );
    this.tempDir = tempDir;
    this.secure = cert !== undefined || key !== undefined;
    this.socketPath = path ?? null;
    this.#stopped = new Promise((resolve) => this.#stopServing = resolve);
    this.serverAddress = [path ?? host, port];
    this.serverName = path === undefined ? host : "localhost";
    this.serverPort = port;
    if (bindAndActivate) {
      const handler = (request: Request, info: Deno.ServeHandlerInfo) =>
        this.#accept(request, info);
      if (path !== undefined) {
        clearStaleSocket(path);
        this.#httpServer = Deno.serve(
          { path, onListen: () => {}, onError: onServeError },
          handler,
        );
        this.#socketInode = socketInode(path);
      } else {
        const hostname = host === "" ? "0.0.0.0" : host;
        const listen = {
          hostname,
          port,
          onListen: () => {},
          onError: onServeError,
        };
        const server = this.secure
          ? Deno.serve({ ...listen, cert: cert!, key: key! }, handler)
          : Deno.serve(listen, handler);
        this.#httpServer = server;
        this.serverAddress = [server.addr.hostname, server.addr.port];
        this.serverPort = server.addr.port;
        this.serverName = serverNameOf(hostname);
      }
    }
    this.setupEnviron();
  }

  /**
   * Fill `baseEnviron`, as wsgiref's `setup_environ`: `SERVER_NAME`,
   * `GATEWAY_INTERFACE`, `SERVER_PORT`, `REMOTE_HOST`, `CONTENT_LENGTH`,
   * `SCRIPT_NAME` (and `HTTPS` when serving TLS). A server that does not
   * listen, or listens on a Unix socket, leaves `SERVER_NAME` and
   * `SERVER_PORT` to each request.
   */
  setupEnviron(): void {
    const environ: Record<string, string> = this.baseEnviron = {};
    const own = this.#httpServer !== null && this.socketPath === null;
    if (own) environ.SERVER_NAME = this.serverName;
    environ.GATEWAY_INTERFACE = "CGI/1.1";
    if (own) environ.SERVER_PORT = String(this.serverPort);
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
   * the last response is over, or `gracefulTimeout` ms after the call:
   * then the requests still running are cut short (the error page before
   * a response, a cut stream after; their results closed). A Unix socket's
   * file is removed. Calling it again returns the same promise.
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
    if (server === null) return this.#shutdown = RESOLVED;
    const stopped = server.shutdown().then(() => server.finished);
    if (this.socketPath !== null) {
      removeOwnSocket(this.socketPath, this.#socketInode);
    }
    return this.#shutdown = this.#stopWithin(server, stopped);
  }

  /** Wait `gracefulTimeout` for `stopped`, then cut what still runs. */
  async #stopWithin(
    server: Deno.HttpServer,
    stopped: Promise<void>,
  ): Promise<void> {
    const limit = this.gracefulTimeout;
    if (await settlesWithin(stopped, limit)) return;
    const reason =
      `Request cut short at shutdown: still running after ${limit} ms (gracefulTimeout)`;
    for (const handler of [...this.#running]) cutRequest(handler, reason);
    if (!(await settlesWithin(stopped, CUT_GRACE_MS))) {
      // Deno.serve still sends a fixed-length body that cannot be cut: let
      // it finish in the background, without keeping the process alive.
      server.unref();
    }
  }

  static {
    trackRequest = (server, handler, running) => {
      if (server.#httpServer === null) return; // nothing to shut down
      if (running) server.#running.add(handler);
      else server.#running.delete(handler);
    };
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
      const parked = { request, info, resolve };
      this.#parked.push(parked);
      // A client that leaves while its request waits: let Deno.serve
      // release the connection (nobody reads this answer).
      request.signal.addEventListener("abort", () => {
        const index = this.#parked.indexOf(parked);
        if (index < 0) return;
        this.#parked.splice(index, 1);
        resolve(goneResponse());
      }, { once: true });
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

/** Refuse a socket path that is not one, or that comes with a TCP address
 * or TLS (`Deno.serve` serves a Unix socket without TLS). */
function checkSocketPath(
  path: unknown,
  host: string,
  port: number,
  cert: unknown,
  key: unknown,
): void {
  if (typeof path !== "string" || path === "") {
    throw new TypeError(
      `Cannot create the server: the socket path must be a non-empty string, not ${
        typeName(path)
      } ${quote(path)}`,
    );
  }
  if (host !== "" || port !== 0) {
    throw new TypeError(
      `Cannot create the server: listen on socket ${quote(path)} or on host ${
        quote(host)
      } port ${port}, not both (give "" and 0)`,
    );
  }
  if (cert !== undefined || key !== undefined) {
    throw new TypeError(
      `Cannot create the server: TLS (cert, key) is not available on Unix socket ${
        quote(path)
      }`,
    );
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
  /** The reader of a body being spooled, to cancel if the request is cut. */
  #reader:
    | ReadableStreamBYOBReader
    | ReadableStreamDefaultReader<Uint8Array>
    | null = null;
  /** The handler running the application, once there is one. */
  #handler: ServerHandler | null = null;
  /** Whether `finish()` ran: the response is over (or was cut short). */
  #over = false;
  /** What watches a request that did not finish at once. */
  #watch: Watch | null = null;

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
    const start = targetStart(url);
    const target = start < 0 ? "*" : utf8ToLatin1(url.slice(start));
    return `${this.request.method} ${target} HTTP/1.1`;
  }

  /**
   * The request's CGI variables, as wsgiref's `get_environ`: the server's
   * `baseEnviron`, then `SERVER_PROTOCOL`, `SERVER_SOFTWARE`,
   * `REQUEST_METHOD`, `PATH_INFO` (percent-decoded, a latin-1 string; a
   * leading `//` reduced to `/` as `http.server` does), `QUERY_STRING`
   * (raw), `REMOTE_ADDR` (none behind a Unix socket),
   * `CONTENT_TYPE` (`text/plain` when absent, as wsgiref),
   * `CONTENT_LENGTH` (one decimal number: repeated equal `Content-Length`
   * lines give one) and an `HTTP_*` key per other header (none that would
   * replace a CGI variable; repeats joined as `Deno.serve` joins them,
   * with `", "`). Without them in `baseEnviron`, `SERVER_NAME` and
   * `SERVER_PORT` come from the URL, or behind a Unix socket from the
   * `Host` header (`localhost` and `80` without one), as a proxy such as
   * nginx sends it.
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
    const start = targetStart(url);
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
      const scheme = url.charCodeAt(4);
      const secure = scheme === 0x73; // "https:"
      // Behind a Unix socket ("http+unix:"), the Host header, as nginx
      // sends it (without one, Deno's authority is the socket path).
      const authority = scheme === 0x2b
        ? request.headers.get("host") ?? "localhost"
        : url.slice(url.indexOf("//") + 2, start < 0 ? url.length : start);
      const [name, port] = splitAuthority(authority, secure ? "443" : "80");
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
    cutRequest = (handler, reason) => handler.#cutShort(reason);
    watchClient = (handler) => handler.#watchClient();
  }

  /** `handle()`, but a response that is ready at once is returned as is. */
  #answer(): Response | Promise<Response> {
    const answer = this.#start();
    // Over at once (a fixed body, made synchronously): nothing to watch.
    return this.#over ? answer : this.#supervise(answer);
  }

  /** Read the body if need be and run the application. */
  #start(): Response | Promise<Response> {
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
      (stdin) => {
        if (!this.#over) return this.#run(application, stdin, environ);
        this.#releaseBody(); // cut short while the body came
        return goneResponse();
      },
      (error) => {
        this.#releaseBody();
        if (this.#over) return goneResponse();
        return this.#run(
          bodyErrorApp(error, this.server.maxBodySize),
          new BytesInput(),
          environ,
        );
      },
    );
  }

  /**
   * Watch a request that is not over: its time limit, and while no
   * response exists, its client (a streamed response sees the client go
   * through its stream's `cancel()`).
   */
  #supervise(
    answer: Response | Promise<Response>,
  ): Response | Promise<Response> {
    const server = this.server;
    const watch: Watch = {
      settle: null,
      timer: undefined,
      onAbort: null,
      cut: false,
    };
    this.#watch = watch;
    trackRequest(server, this, true);
    const limit = server.requestTimeout;
    if (limit > 0 && limit <= MAX_TIMER_DELAY) {
      watch.timer = setTimeout(
        () =>
          this.#cutShort(
            `Request cut short: still running after ${limit} ms (requestTimeout)`,
          ),
        limit,
      );
    }
    if (answer instanceof Response) return answer;
    return new Promise((resolve, reject) => {
      watch.settle = resolve;
      answer.then(
        (response) => {
          watch.settle = null;
          resolve(response);
        },
        (error) => {
          if (watch.settle === null) {
            // Answered already (cut short): nobody else will see it.
            if (typeof error !== "object" || !LOGGED.has(error!)) {
              console.error(error);
            }
          }
          watch.settle = null;
          reject(error);
        },
      );
      if (watch.settle !== null) watchClientLater(this);
    });
  }

  /**
   * Cut the request short when its client goes, if it still has no
   * response: `Deno.serve` aborts `request.signal` then, and nothing else
   * would release the connection while the application does not answer.
   * (A streamed response sees the client go through its `cancel()`.)
   */
  #watchClient(): void {
    const watch = this.#watch;
    if (watch === null || watch.settle === null || watch.onAbort !== null) {
      return;
    }
    const signal = this.request.signal;
    const onAbort = () => this.#cutShort(null);
    watch.onAbort = onAbort;
    signal.addEventListener("abort", onAbort, { once: true });
    if (signal.aborted) onAbort();
  }

  /**
   * Give up on the request: answer the error page now if no response has
   * started (nothing for a client that is gone), cut its stream if one
   * has, close its result. `reason` is logged; `null` means the client
   * went away.
   */
  #cutShort(reason: string | null): void {
    const watch = this.#watch;
    if (this.#over || watch === null || watch.cut) return;
    watch.cut = true;
    const settle = watch.settle;
    watch.settle = null;
    const handler = this.#handler;
    if (reason !== null) this.logMessage(reason);
    if (settle !== null) {
      if (reason === null) settle(goneResponse());
      else settle(this.#errorPage(handler));
    }
    if (handler !== null) {
      cutShort(handler, reason === null).catch((error) =>
        handler.logException(error)
      );
    } else {
      // Still reading the body: stop; the reading's end releases it.
      this.#end();
      this.#reader?.cancel().catch(() => {});
    }
  }

  /** The error page (`errorStatus`, `errorHeaders`, `errorBody` of the
   * request's `ServerHandler`), logged as sent. */
  #errorPage(handler: ServerHandler | null): Response {
    const source = handler ??
      new this.serverHandlerClass(
        new BytesInput(),
        NO_OUTPUT,
        this.getStderr(),
        {},
        false,
        false,
      );
    const code = Number(source.errorStatus.slice(0, 3));
    const headers: [string, string][] = source.serverSoftware
      ? [["Server", source.serverSoftware]]
      : [];
    for (const [name, value] of source.errorHeaders) {
      headers.push([name, value]);
    }
    const body = source.errorBody;
    this.logRequest(code, body.length);
    return new Response(body as Uint8Array<ArrayBuffer>, {
      status: code,
      headers,
    });
  }

  /** Stop watching the request: it is over. */
  #end(): void {
    this.#over = true;
    const watch = this.#watch;
    if (watch === null) return;
    this.#watch = null;
    clearTimeout(watch.timer);
    if (watch.onAbort !== null) {
      this.request.signal.removeEventListener("abort", watch.onAbort);
    }
    unwatchClientLater(this);
    trackRequest(this.server, this, false);
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
    this.#handler = handler;
    const running = handler.run(application);
    const response = handler.response;
    if (response !== null) {
      // Ready at once (a synchronous application and an Array result): the
      // rest of run(), close() and the access log, follows on its own (or
      // is over already: then nothing is left to catch).
      if (running !== RESOLVED) {
        running.catch((error) => handler.logException(error));
      }
      return response;
    }
    return running.then(() => handler.response!);
  }

  /**
   * Release what `handle()` holds for the request (a spooled body, its
   * timer); called when the response is over. Idempotent. A subclass that
   * overrides it must call `super.finish()`.
   */
  finish(): void {
    this.#end();
    this.#releaseBody();
  }

  #releaseBody(): void {
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
    this.#reader = byob ?? reader;
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
 * @example Behind a proxy, on a Unix socket, with time limits
 * ```ts ignore
 * import { demoApp, makeServer } from "@wsgi/wsgiref/simple_server";
 *
 * // nginx: proxy_pass http://unix:/run/app/http.sock:;
 * await using server = makeServer("", 0, demoApp, {
 *   path: "/run/app/http.sock",
 *   requestTimeout: 60_000, // cut a request still running after a minute
 *   gracefulTimeout: 10_000, // at shutdown(), wait 10 s for requests
 * });
 * Deno.addSignalListener("SIGTERM", () => server.shutdown());
 * await server.serveForever();
 * ```
 *
 * @param host The interface: `""` for all of them.
 * @param port The port: `0` for any free one.
 * @param app The application.
 * @param options Server and handler classes, access log, body limits,
 * TLS, time limits (`gracefulTimeout`, `requestTimeout`), a Unix socket
 * `path` (with `host` `""` and `port` `0`).
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
 * @param options Request handler class, access log, body limits,
 * `requestTimeout`.
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

const USAGE = "Usage: deno run -A simple_server.ts [module[:name]] " +
  "[--host H] [--port P | --socket PATH] [--cert FILE --key FILE] " +
  "[--quiet] [--graceful-timeout S]";

/** The program's flags, and what each takes. */
const FLAGS: Readonly<Record<string, FlagKind>> = {
  "--host": "text",
  "--port": "port",
  "--socket": "socket",
  "--cert": "text",
  "--key": "text",
  "--quiet": "switch",
  "--graceful-timeout": "seconds",
};

/** The command line, parsed. */
interface ProgramOptions {
  spec: string | null;
  host: string | null;
  port: number | null;
  path: string | null;
  certFile: string | null;
  keyFile: string | null;
  quiet: boolean;
  gracefulTimeout: number | undefined;
}

/** Parse the command line; a string is the complaint about it. */
function parseArgs(args: string[]): ProgramOptions | string {
  const parsed = parseFlags(args, FLAGS);
  if (typeof parsed === "string") return parsed;
  const { spec, values } = parsed;
  const options: ProgramOptions = {
    spec,
    host: (values.get("--host") as string | undefined) ?? null,
    port: (values.get("--port") as number | undefined) ?? null,
    path: (values.get("--socket") as string | undefined) ?? null,
    certFile: (values.get("--cert") as string | undefined) ?? null,
    keyFile: (values.get("--key") as string | undefined) ?? null,
    quiet: values.has("--quiet"),
    gracefulTimeout: values.get("--graceful-timeout") as number | undefined,
  };
  if (options.path !== null) {
    if (options.port !== null) return "Give --socket or --port, not both";
    if (options.host !== null) return "Give --socket or --host, not both";
    if (options.certFile !== null || options.keyFile !== null) {
      return "TLS (--cert, --key) is not available on a Unix socket";
    }
  }
  if ((options.certFile === null) !== (options.keyFile === null)) {
    return options.certFile === null
      ? "--key needs --cert"
      : "--cert needs --key";
  }
  return options;
}

/** Read a PEM file named on the command line; a string is the complaint. */
function readPem(file: string, what: string): { pem: string } | string {
  try {
    return { pem: Deno.readTextFileSync(file) };
  } catch (error) {
    return `Cannot read the ${what} ${quote(file)}: ${
      error instanceof Error ? error.message : String(error)
    }`;
  }
}

async function main(args: string[]): Promise<number> {
  if (args.includes("--help") || args.includes("-h")) {
    console.log(USAGE);
    return 0;
  }
  const parsed = parseArgs(args);
  if (typeof parsed === "string") {
    console.error(`${parsed}\n${USAGE}`);
    return 2;
  }
  const { spec, path, certFile, keyFile, quiet, gracefulTimeout } = parsed;
  let cert: string | undefined;
  let key: string | undefined;
  if (certFile !== null && keyFile !== null) {
    const certRead = readPem(certFile, "certificate");
    const keyRead = readPem(keyFile, "key");
    const problem = typeof certRead === "string"
      ? certRead
      : typeof keyRead === "string"
      ? keyRead
      : null;
    if (problem !== null) {
      console.error(`${problem}\n${USAGE}`);
      return 2;
    }
    cert = (certRead as { pem: string }).pem;
    key = (keyRead as { pem: string }).pem;
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
  let server: WSGIServer;
  try {
    server = path !== null
      ? makeServer("", 0, app, { path, quiet, gracefulTimeout })
      : makeServer(parsed.host ?? "", parsed.port ?? 8000, app, {
        cert,
        key,
        quiet,
        gracefulTimeout,
      });
  } catch (error) {
    console.error(error instanceof Error ? error.message : String(error));
    return 1;
  }
  const [address, bound] = server.serverAddress;
  await serveUntilStopped(
    server,
    path !== null
      ? `Serving HTTP on unix:${path} ...`
      : `Serving ${
        server.secure ? "HTTPS" : "HTTP"
      } on ${address} port ${bound} ...`,
  );
  return 0;
}

if (import.meta.main) runProgram(main);
