/**
 * Fetch handlers both ways (beyond wsgiref, as Python's a2wsgi): a handler
 * that takes a `Request` and returns a `Response` (Hono's `app.fetch`, a
 * plain `(request) => Response`) becomes a gateway-interface application
 * with `fromFetchHandler()`, so it runs under `makeServer`, as a CGI
 * program, behind the FastCGI gateway and inside `validator()`; and an
 * application becomes a fetch handler with `toFetchHandler()` (re-exported
 * from `simple_server.ts`) for `Deno.serve` and `deno serve`.
 *
 * @example A fetch handler as an application
 * ```ts
 * import { fromFetchHandler } from "@wsgi/wsgiref/fetch";
 * import { BaseCGIHandler } from "@wsgi/wsgiref/handlers";
 * import assert from "node:assert/strict";
 *
 * const app = fromFetchHandler((request) =>
 *   Response.json({ path: new URL(request.url).pathname })
 * );
 * let output = "";
 * const handler = new BaseCGIHandler(
 *   { readSync: () => null },
 *   { write: (data: Uint8Array) => void (output += new TextDecoder().decode(data)) },
 *   Deno.stderr,
 *   {
 *     REQUEST_METHOD: "GET",
 *     SERVER_NAME: "example.com",
 *     SERVER_PORT: "80",
 *     PATH_INFO: "/caf\u00c3\u00a9", // "/café" as UTF-8 bytes, one char each
 *   },
 * );
 * await handler.run(app);
 * assert.equal(
 *   output,
 *   "Status: 200 OK\r\ncontent-type: application/json\r\n" +
 *     'content-length: 21\r\n\r\n{"path":"/caf%C3%A9"}',
 * );
 * ```
 *
 * @example Both directions
 * ```ts
 * import { fromFetchHandler, toFetchHandler } from "@wsgi/wsgiref/fetch";
 * import assert from "node:assert/strict";
 *
 * const handler = (request: Request) => new Response(`${request.method} ok`);
 * const roundTrip = toFetchHandler(fromFetchHandler(handler), { quiet: true });
 * const response = await roundTrip(new Request("http://localhost/", { method: "PUT" }));
 * assert.equal(response.status, 200);
 * assert.equal(await response.text(), "PUT ok");
 * ```
 *
 * @module
 */

import type {
  Application,
  Environ,
  HeaderList,
  InputStream,
  ResponseBody,
  StartResponse,
} from "./types.ts";
import { isHopByHop, requestUri } from "./util.ts";
import { concat } from "./_io.ts";
import { errorApp } from "./_body.ts";
import {
  headerValueProblem,
  isAscii,
  latin1ToUtf8,
  quote,
  statusProblem,
  typeName,
} from "./_internal.ts";

export { type FetchHandlerOptions, toFetchHandler } from "./simple_server.ts";

/**
 * A fetch handler: what Hono's `app.fetch`, `Deno.serve` and `deno serve`
 * call. The environ of the request is its second argument (Hono hands it
 * to the app as `c.env`).
 *
 * @example Usage
 * ```ts
 * import type { FetchHandler } from "@wsgi/wsgiref/fetch";
 * import assert from "node:assert/strict";
 *
 * const handler: FetchHandler = (_request, environ) =>
 *   new Response(`Hello ${environ.REMOTE_ADDR}`);
 * const response = await handler(new Request("http://localhost/"), {
 *   REMOTE_ADDR: "127.0.0.1",
 * });
 * assert.equal(await response.text(), "Hello 127.0.0.1");
 * ```
 */
export type FetchHandler = (
  request: Request,
  environ: Environ,
) => Response | Promise<Response>;

/**
 * Options of `fromFetchHandler`.
 *
 * @example Usage
 * ```ts
 * import {
 *   fromFetchHandler,
 *   type FromFetchHandlerOptions,
 * } from "@wsgi/wsgiref/fetch";
 * import assert from "node:assert/strict";
 *
 * const options: FromFetchHandlerOptions = {
 *   maxBufferedBody: 64 * 1024,
 *   reasonPhrases: { 299: "Mostly OK" },
 *   defaultContentType: "text/plain",
 * };
 * const app = fromFetchHandler(() => new Response(null, { status: 299 }), options);
 * let status = "";
 * let headers: [string, string][] = [];
 * await app({ "wsgi.url_scheme": "http", SERVER_NAME: "localhost", SERVER_PORT: "80" }, (s, h) => {
 *   status = s;
 *   headers = h;
 *   return () => {};
 * });
 * assert.equal(status, "299 Mostly OK");
 * assert.deepEqual(headers, [["content-type", "text/plain"]]);
 * ```
 */
export interface FromFetchHandlerOptions {
  /**
   * A response body that has ended by the time the event loop turns (as a
   * body made from a string, bytes, JSON, a `Blob`, `URLSearchParams` or
   * `FormData` has) and holds at most this many bytes is sent as one
   * chunk, with its `Content-Length`. Any other body is streamed
   * chunk by chunk as the server sends it, after the chunks read to find
   * that out (at most this many bytes and one chunk more). `0` streams
   * every body that is not empty; `Infinity` sends every body that has
   * ended in time as one chunk.
   *
   * @default {1048576}
   */
  maxBufferedBody?: number;
  /**
   * Reason phrases by status code, for responses whose `statusText` is
   * empty (`c.json(data, 404)`, `new Response(body, { status: 404 })`).
   * They take precedence over the built-in table, which has RFC 9110's
   * phrases and those of the other registered codes, as Python's
   * `http.HTTPStatus`; a code in neither gets `Unknown`.
   *
   * @default {{}}
   */
  reasonPhrases?: Readonly<Record<number, string>>;
  /**
   * The `Content-Type` sent with a response that has none, but for `204`
   * and `304` (which never carry one): a CGI program must send one with
   * its body (RFC 3875 §6.3.1), `validator()` requires it, and
   * `application/octet-stream` is what RFC 9110 §8.3 lets a client assume.
   * `null` sends none.
   *
   * @default {"application/octet-stream"}
   */
  defaultContentType?: string | null;
}

/** Bodies up to this many bytes are sent as one chunk by default. */
const DEFAULT_MAX_BUFFERED_BODY = 1024 * 1024;
/** The most bytes of `wsgi.input` read for one chunk of a request body. */
const REQUEST_CHUNK_SIZE = 64 * 1024;
/** The reason phrase of a code that has none in the tables. */
const UNKNOWN_REASON = "Unknown";

/**
 * Reason phrases of the codes a `Response` can have (200 to 599): those of
 * RFC 9110 and of the IANA registry, as Python's `http.HTTPStatus` names
 * them.
 */
const REASON_PHRASES: Readonly<Record<number, string>> = {
  200: "OK",
  201: "Created",
  202: "Accepted",
  203: "Non-Authoritative Information",
  204: "No Content",
  205: "Reset Content",
  206: "Partial Content",
  207: "Multi-Status",
  208: "Already Reported",
  226: "IM Used",
  300: "Multiple Choices",
  301: "Moved Permanently",
  302: "Found",
  303: "See Other",
  304: "Not Modified",
  305: "Use Proxy",
  307: "Temporary Redirect",
  308: "Permanent Redirect",
  400: "Bad Request",
  401: "Unauthorized",
  402: "Payment Required",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  406: "Not Acceptable",
  407: "Proxy Authentication Required",
  408: "Request Timeout",
  409: "Conflict",
  410: "Gone",
  411: "Length Required",
  412: "Precondition Failed",
  413: "Content Too Large",
  414: "URI Too Long",
  415: "Unsupported Media Type",
  416: "Range Not Satisfiable",
  417: "Expectation Failed",
  418: "I'm a Teapot",
  421: "Misdirected Request",
  422: "Unprocessable Content",
  423: "Locked",
  424: "Failed Dependency",
  425: "Too Early",
  426: "Upgrade Required",
  428: "Precondition Required",
  429: "Too Many Requests",
  431: "Request Header Fields Too Large",
  451: "Unavailable For Legal Reasons",
  500: "Internal Server Error",
  501: "Not Implemented",
  502: "Bad Gateway",
  503: "Service Unavailable",
  504: "Gateway Timeout",
  505: "HTTP Version Not Supported",
  506: "Variant Also Negotiates",
  507: "Insufficient Storage",
  508: "Loop Detected",
  510: "Not Extended",
  511: "Network Authentication Required",
};

/** RFC 9110 §5.6.2 token, as a method must be. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** Methods fetch refuses to carry (`new Request` throws for them). */
const FORBIDDEN_METHODS: ReadonlySet<string> = new Set([
  "CONNECT",
  "TRACE",
  "TRACK",
]);
const DIGITS = /^[0-9]{1,15}$/;

// Answers for requests that cannot become a `Request`: the fetch handler
// is not called, as a server refuses a request it cannot parse.
const BAD_URL = errorApp(
  "400 Bad Request",
  "The request's URL is not valid.",
);
const BAD_LENGTH = errorApp(
  "400 Bad Request",
  "The request's Content-Length is not valid.",
);
const BAD_METHOD = errorApp(
  "501 Not Implemented",
  "The request method is not supported.",
);

/** What `Promise.race` gives when the event loop turned first. */
const TURN_OVER = Symbol("turn over");

/** What one request needs once its `Request` exists. */
interface Exchange {
  method: string;
  /** Ends the request body's stream: the response is over. */
  requestBody: RequestBodySource | null;
  /** Aborts the `Request`'s signal. */
  abort: AbortController;
}

/**
 * Make a gateway-interface application of a fetch handler: each request's
 * environ becomes a `Request`, the handler's `Response` becomes the status,
 * headers and body the server sends.
 *
 * The `Request`:
 * - URL: as `requestUri()` builds it (scheme, `HTTP_HOST` or `SERVER_NAME`
 *   and `SERVER_PORT`, `SCRIPT_NAME` + `PATH_INFO`, `QUERY_STRING`), the
 *   environ's bytes percent-encoded where a URL needs it: a UTF-8 path
 *   `/é` (`PATH_INFO` `"/\u00c3\u00a9"`) arrives as `/%C3%A9`, which
 *   routers decode back to `/é`.
 * - Method `REQUEST_METHOD`; headers from the `HTTP_*` variables (`_`
 *   becomes `-`), `CONTENT_TYPE` and `CONTENT_LENGTH`; a variable that is
 *   not a valid header is left out.
 * - Body, for a method other than `GET` and `HEAD` with a `CONTENT_LENGTH`
 *   above 0 (or none, but a `Transfer-Encoding`): a stream that reads
 *   `wsgi.input` in chunks of at most 64 KiB as the handler reads it, up to
 *   `CONTENT_LENGTH`. A handler that never reads it costs nothing.
 * - `signal`: aborted when the response ends early (the client went away,
 *   the body failed).
 *
 * A request that cannot become a `Request` is answered without calling the
 * handler: `400` for a URL fetch refuses (a bad `Host`) or a bad
 * `CONTENT_LENGTH`, `501` for a method fetch refuses (`CONNECT`, `TRACE`).
 *
 * The response:
 * - Status `code reason`: the `statusText`, or the standard phrase when it
 *   is empty (see `reasonPhrases`).
 * - Every header, each `Set-Cookie` on its own; hop-by-hop headers
 *   (`Connection`, `Transfer-Encoding`, ...) left out, the server does that
 *   part; `Content-Type` added when missing (see `defaultContentType`).
 * - Body: one chunk (so with `Content-Length`) when it has ended in time
 *   and is small (see `maxBufferedBody`); otherwise streamed, one chunk of
 *   the `Response` body per chunk the server asks for, so a slow client
 *   slows the producer down, and server-sent events go out as they are
 *   written. When the server closes the result early (client gone), the
 *   body stream is cancelled. No body for `HEAD` (its length as
 *   `Content-Length` when known), `204` and `304`.
 * - Errors: a handler that throws, or a body that errors, goes through the
 *   handler's error path: the 500 page before the first body byte, a
 *   response cut short after it.
 *
 * @example Usage
 * ```ts
 * import { fromFetchHandler } from "@wsgi/wsgiref/fetch";
 * import { validator } from "@wsgi/wsgiref/validate";
 * import { toFetchHandler } from "@wsgi/wsgiref/simple_server";
 * import assert from "node:assert/strict";
 *
 * const app = fromFetchHandler(async (request, environ) => {
 *   const { name } = await request.json();
 *   return Response.json({ hello: name, from: environ.REMOTE_ADDR ?? null }, {
 *     status: 201,
 *   });
 * });
 * const fetchHandler = toFetchHandler(validator(app), { quiet: true });
 * const response = await fetchHandler(
 *   new Request("http://localhost/", { method: "POST", body: '{"name":"Ada"}' }),
 * );
 * assert.equal(response.status, 201);
 * assert.deepEqual(await response.json(), { hello: "Ada", from: null });
 * ```
 *
 * @example Serving a Hono app
 * ```ts ignore
 * import { Hono } from "npm:hono@4";
 * import { fromFetchHandler } from "@wsgi/wsgiref/fetch";
 * import { makeServer } from "@wsgi/wsgiref/simple_server";
 *
 * const hono = new Hono();
 * hono.get("/hello/:name", (c) => c.text(`Hello, ${c.req.param("name")}!`));
 * await using server = makeServer("127.0.0.1", 8000, fromFetchHandler(hono.fetch));
 * await server.serveForever();
 * ```
 *
 * @param handler The fetch handler, called with the `Request` and the
 * environ.
 * @param options Buffering of small bodies, reason phrases, the default
 * `Content-Type`.
 * @returns The application.
 * @throws {TypeError} For a handler that is not a function or a bad option.
 * @throws {RangeError} For a negative or fractional `maxBufferedBody`.
 */
export function fromFetchHandler(
  handler: FetchHandler,
  options: FromFetchHandlerOptions = {},
): Application {
  if (typeof handler !== "function") {
    throw optionError("the fetch handler must be a function", handler);
  }
  if (typeof options !== "object" || options === null) {
    throw optionError("options must be an object", options);
  }
  const {
    maxBufferedBody = DEFAULT_MAX_BUFFERED_BODY,
    reasonPhrases,
    defaultContentType = "application/octet-stream",
  } = options;
  if (typeof maxBufferedBody !== "number") {
    throw optionError("maxBufferedBody must be a number", maxBufferedBody);
  }
  if (
    !(maxBufferedBody >= 0) ||
    (maxBufferedBody !== Infinity && !Number.isSafeInteger(maxBufferedBody))
  ) {
    throw new RangeError(
      `Cannot make an application: maxBufferedBody must be a non-negative integer or Infinity, not ${maxBufferedBody}`,
    );
  }
  const reasons = reasonPhrases === undefined
    ? REASON_PHRASES
    : { ...REASON_PHRASES, ...checkReasons(reasonPhrases) };
  if (defaultContentType !== null) {
    const problem = typeof defaultContentType === "string"
      ? headerValueProblem(defaultContentType)
      : "must be a string or null";
    if (problem !== null) {
      throw optionError(`defaultContentType ${problem}`, defaultContentType);
    }
  }
  const settings: Settings = { maxBufferedBody, reasons, defaultContentType };
  return async (environ, startResponse) => {
    const prepared = prepareRequest(environ);
    if (typeof prepared === "function") return prepared(environ, startResponse);
    const [request, exchange] = prepared;
    try {
      const response = await handler(request, environ);
      if (!(response instanceof Response)) {
        throw new TypeError(
          `Cannot send the response: the fetch handler must return a Response, not ${
            typeName(response)
          } ${quote(response)}`,
        );
      }
      return await sendResponse(response, exchange, settings, startResponse);
    } catch (error) {
      endExchange(exchange, true);
      throw error;
    }
  };
}

/** The resolved options. */
interface Settings {
  maxBufferedBody: number;
  reasons: Readonly<Record<number, string>>;
  defaultContentType: string | null;
}

function optionError(rule: string, value: unknown): TypeError {
  return new TypeError(
    `Cannot make an application: ${rule}, not ${typeName(value)} ${
      quote(value)
    }`,
  );
}

function checkReasons(
  reasons: unknown,
): Readonly<Record<number, string>> {
  if (typeof reasons !== "object" || reasons === null) {
    throw optionError("reasonPhrases must be an object", reasons);
  }
  for (const [code, phrase] of Object.entries(reasons)) {
    const problem = typeof phrase !== "string"
      ? "must be a string"
      : phrase.trim() === ""
      ? "must not be empty"
      : statusProblem(phrase);
    if (problem !== null) {
      throw optionError(`reasonPhrases[${code}] ${problem}`, phrase);
    }
  }
  return reasons as Readonly<Record<number, string>>;
}

/**
 * The `Request` for an environ, with what the response needs of it; or the
 * application that refuses the request.
 */
function prepareRequest(
  environ: Environ,
): [Request, Exchange] | Application {
  const method = typeof environ.REQUEST_METHOD === "string"
    ? environ.REQUEST_METHOD
    : "GET";
  if (!TOKEN.test(method) || FORBIDDEN_METHODS.has(method.toUpperCase())) {
    return BAD_METHOD;
  }
  // requestUrl() throws for a broken environ (the server's fault); only
  // what the URL parser refuses (a bad Host, say) is the client's.
  const href = requestUrl(environ);
  let url: URL;
  try {
    url = new URL(href);
  } catch {
    return BAD_URL;
  }
  const headers = new globalThis.Headers();
  for (const key in environ) {
    if (
      key.length <= 5 || !key.startsWith("HTTP_") ||
      key === "HTTP_CONTENT_TYPE" || key === "HTTP_CONTENT_LENGTH"
    ) continue;
    addHeader(headers, key.slice(5).replaceAll("_", "-"), environ[key]);
  }
  addHeader(headers, "content-type", environ.CONTENT_TYPE);
  const lengthText = environ.CONTENT_LENGTH;
  let length: number | null = null;
  if (typeof lengthText === "string" && lengthText !== "") {
    if (!DIGITS.test(lengthText)) return BAD_LENGTH;
    length = Number(lengthText);
    headers.set("content-length", lengthText);
  }
  const abort = new AbortController();
  const exchange: Exchange = { method, requestBody: null, abort };
  const init: RequestInit = { method, headers, signal: abort.signal };
  const upper = method.toUpperCase();
  if (
    upper !== "GET" && upper !== "HEAD" &&
    (length === null ? "HTTP_TRANSFER_ENCODING" in environ : length > 0)
  ) {
    const input = environ["wsgi.input"];
    if (typeof input?.read !== "function") {
      throw new TypeError(
        `Cannot read the request body: environ["wsgi.input"] must be an input stream, not ${
          typeName(input)
        } ${quote(input)}`,
      );
    }
    const source = exchange.requestBody = new RequestBodySource(input, length);
    init.body = new ReadableStream(source, { highWaterMark: 0 });
  }
  return [new Request(url, init), exchange];
}

/** Add one header from the environ; one fetch refuses is left out. */
function addHeader(
  headers: globalThis.Headers,
  name: string,
  value: unknown,
): void {
  if (typeof value !== "string" || value === "") return;
  try {
    headers.append(name, value);
  } catch {
    // Not a token, or a NUL/CR/LF in the value: a Request cannot carry it.
  }
}

/** `requestUri()`, with the query string and host made fit for a URL. */
function requestUrl(environ: Environ): string {
  let url = requestUri(environ, false);
  // Only the host can be other than ASCII here: requestUri() encoded the
  // path. Its bytes are UTF-8 (an IDN), as the URL parser expects text.
  if (!isAscii(url)) url = latin1ToUtf8(url);
  const query = environ.QUERY_STRING;
  return typeof query === "string" && query !== ""
    ? url + "?" + encodeQuery(query)
    : url;
}

/**
 * Percent-encode the bytes of a query string that a URL cannot hold as they
 * are: `#` (it would start a fragment), and what the URL parser encodes
 * itself, but as a character rather than a byte (controls, space, `"`,
 * `'`, `<`, `>` and everything above `~`).
 */
function encodeQuery(query: string): string {
  let out = "";
  let from = 0;
  for (let i = 0; i < query.length; i++) {
    const code = query.charCodeAt(i);
    if (
      code > 0x20 && code < 0x7f && code !== 0x22 && code !== 0x23 &&
      code !== 0x27 && code !== 0x3c && code !== 0x3e
    ) continue;
    if (code > 0xff) {
      throw new TypeError(
        `Cannot build the request URL: QUERY_STRING contains character ${
          quote(query[i])
        } at index ${i}, which is not latin-1`,
      );
    }
    out += query.slice(from, i) + "%" + (code < 16 ? "0" : "") +
      code.toString(16).toUpperCase();
    from = i + 1;
  }
  return from === 0 ? query : out + query.slice(from);
}

/**
 * The underlying source of a request body: `wsgi.input`, read in bounded
 * chunks only when the handler asks for one (`highWaterMark: 0`), never
 * past `CONTENT_LENGTH`.
 */
class RequestBodySource implements UnderlyingDefaultSource<Uint8Array> {
  #input: InputStream;
  #length: number | null;
  #received = 0;
  #controller: ReadableStreamDefaultController<Uint8Array> | null = null;
  #over = false;

  constructor(input: InputStream, length: number | null) {
    this.#input = input;
    this.#length = length;
  }

  start(controller: ReadableStreamDefaultController<Uint8Array>): void {
    this.#controller = controller;
  }

  pull(controller: ReadableStreamDefaultController<Uint8Array>): void {
    const length = this.#length;
    const want = length === null
      ? REQUEST_CHUNK_SIZE
      : Math.min(REQUEST_CHUNK_SIZE, length - this.#received);
    const data = this.#input.read(want);
    if (!(data instanceof Uint8Array)) {
      throw new TypeError(
        `Cannot read the request body: wsgi.input.read() must return a Uint8Array, not ${
          typeName(data)
        } ${quote(data)}`,
      );
    }
    if (data.length === 0) {
      this.#over = true;
      if (length === null) controller.close();
      else {
        // A CGI host's pipe closed early: the client went away mid-upload.
        throw new Deno.errors.UnexpectedEof(
          `Cannot read the request body: it ended after ${this.#received} of ${length} bytes`,
        );
      }
      return;
    }
    this.#received += data.length;
    controller.enqueue(data);
    if (this.#received === length) {
      this.#over = true;
      controller.close();
    }
  }

  cancel(): void {
    this.#over = true;
  }

  /** The response is over: `wsgi.input` may be gone, so no further read. */
  end(): void {
    if (this.#over) return;
    this.#over = true;
    this.#controller?.error(
      new TypeError(
        "Cannot read the request body: the response is over",
      ),
    );
  }
}

/** End what the request holds: its body, and its signal when cut short. */
function endExchange(exchange: Exchange, early: boolean): void {
  exchange.requestBody?.end();
  if (early) exchange.abort.abort();
}

/** Call `startResponse` for `response`, and return its body as a result. */
async function sendResponse(
  response: Response,
  exchange: Exchange,
  settings: Settings,
  startResponse: StartResponse,
): Promise<ResponseBody> {
  const code = response.status;
  if (!(code >= 200 && code <= 599)) {
    // Response.error() (status 0) and 101 from Deno.upgradeWebSocket().
    response.body?.cancel().catch(() => {});
    throw new RangeError(
      `Cannot send the response: status ${code} is not from 200 to 599`,
    );
  }
  const status = `${code} ${
    response.statusText.trim() === ""
      ? settings.reasons[code] ?? UNKNOWN_REASON
      : response.statusText
  }`;
  // 204 and 304 never carry content, nor (validator(), RFC 9110 §15.3.5) a
  // Content-Type; 204 no Content-Length either.
  const bodiless = code === 204 || code === 304;
  const headers: HeaderList = [];
  let typed = false;
  let length: string | null = null;
  for (const [name, value] of response.headers) {
    // Lower case, as Headers gives them; each Set-Cookie is added below.
    if (name === "set-cookie" || isHopByHop(name)) continue;
    if (name === "content-type") {
      if (bodiless) continue;
      typed = true;
    } else if (name === "content-length") {
      if (code === 204) continue;
      length = value;
    }
    headers.push([name, value]);
  }
  for (const cookie of response.headers.getSetCookie()) {
    headers.push(["set-cookie", cookie]);
  }
  if (!typed && !bodiless && settings.defaultContentType !== null) {
    headers.push(["content-type", settings.defaultContentType]);
  }
  const body = response.body;
  const head = exchange.method.toUpperCase() === "HEAD";
  if (body === null || bodiless || head) {
    if (body !== null) {
      if (head && length === null) {
        // What GET would send, when it is known: not the 0 an empty result
        // would get.
        const gathered = await gather(body.getReader(), settings);
        if (gathered.ended) {
          headers.push(["content-length", String(gathered.size)]);
        } else {
          gathered.reader.cancel().catch(() => {});
        }
      } else {
        body.cancel().catch(() => {});
      }
    }
    startResponse(status, headers);
    return fixedResult([], exchange);
  }
  const gathered = await gather(body.getReader(), settings);
  // Declared here rather than left to the server, which computes it only
  // for a result that is still an Array when it gets it: not through
  // validator() or any other wrapper.
  if (gathered.ended && length === null) {
    headers.push(["content-length", String(gathered.size)]);
  }
  try {
    startResponse(status, headers);
  } catch (error) {
    gathered.reader.cancel().catch(() => {});
    throw error;
  }
  if (gathered.ended) {
    return fixedResult(
      gathered.size === 0 ? [] : [concat(gathered.chunks, gathered.size)],
      exchange,
    );
  }
  return new StreamedBody(gathered, exchange);
}

/** An `Array` result that ends the exchange when the server closes it. */
function fixedResult(chunks: Uint8Array[], exchange: Exchange): ResponseBody {
  return Object.assign(chunks, {
    close: () => endExchange(exchange, false),
  });
}

/** What `gather` read of a body. */
interface Gathered {
  reader: ReadableStreamDefaultReader<Uint8Array>;
  chunks: Uint8Array[];
  size: number;
  /** Whether the body ended within `maxBufferedBody` bytes. */
  ended: boolean;
  /** A read still in progress when the event loop turned, or `null`. */
  pending: Promise<ReadableStreamReadResult<Uint8Array>> | null;
}

/**
 * Read what a body has ready: chunks until it ends, until more than
 * `maxBufferedBody` bytes came, or until the event loop turns (a timer of
 * 0 ms), whichever is first. A body made from a string or bytes ends within
 * a few microtasks; a stream still being produced does not, and is left to
 * stream from where this stopped.
 */
async function gather(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  settings: Settings,
): Promise<Gathered> {
  const gathered: Gathered = {
    reader,
    chunks: [],
    size: 0,
    ended: false,
    pending: null,
  };
  let timer: ReturnType<typeof setTimeout> | undefined;
  const turn = new Promise<typeof TURN_OVER>((resolve) => {
    timer = setTimeout(resolve, 0, TURN_OVER);
  });
  try {
    for (;;) {
      const read = reader.read();
      const step = await Promise.race([read, turn]);
      if (step === TURN_OVER) {
        gathered.pending = read;
        return gathered;
      }
      if (step.done) {
        gathered.ended = true;
        return gathered;
      }
      const chunk = checkChunk(step.value);
      gathered.chunks.push(chunk);
      gathered.size += chunk.length;
      if (gathered.size > settings.maxBufferedBody) return gathered;
    }
  } catch (error) {
    reader.cancel().catch(() => {});
    throw error;
  } finally {
    clearTimeout(timer);
  }
}

function checkChunk(chunk: unknown): Uint8Array {
  if (!(chunk instanceof Uint8Array)) {
    throw new TypeError(
      `Cannot send the response body: a chunk must be a Uint8Array, not ${
        typeName(chunk)
      } ${quote(chunk)}`,
    );
  }
  return chunk;
}

/**
 * A streamed response body as an async-iterable result: each `next()`
 * reads one chunk of the `Response` body, so nothing is read before the
 * server asks; `return()` and `close()` cancel the body when it has not
 * ended (the server stops early when its client goes away).
 */
class StreamedBody implements AsyncIterableIterator<Uint8Array> {
  #reader: ReadableStreamDefaultReader<Uint8Array>;
  #chunks: Uint8Array[];
  #next = 0;
  #pending: Promise<ReadableStreamReadResult<Uint8Array>> | null;
  #exchange: Exchange;
  #over = false;

  constructor(gathered: Gathered, exchange: Exchange) {
    this.#reader = gathered.reader;
    this.#chunks = gathered.chunks;
    this.#pending = gathered.pending;
    this.#exchange = exchange;
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  async next(): Promise<IteratorResult<Uint8Array, undefined>> {
    if (this.#next < this.#chunks.length) {
      const value = this.#chunks[this.#next];
      this.#chunks[this.#next++] = EMPTY; // not held until the end
      return { done: false, value };
    }
    if (this.#over) return { done: true, value: undefined };
    const read = this.#pending ?? this.#reader.read();
    this.#pending = null;
    let step: ReadableStreamReadResult<Uint8Array>;
    try {
      step = await read;
      if (!step.done) checkChunk(step.value);
    } catch (error) {
      this.#end(true);
      throw error;
    }
    if (step.done) {
      this.#end(false);
      return { done: true, value: undefined };
    }
    return { done: false, value: step.value };
  }

  /**
   * Stop early, as a `for await` loop left by `break` does.
   *
   * @returns The end of the iteration.
   */
  return(): Promise<IteratorResult<Uint8Array, undefined>> {
    this.close();
    return Promise.resolve({ done: true, value: undefined });
  }

  /** The server is done with the result: cancel the body if it has not
   * ended. Not awaited: a source slow to cancel must not hold the server. */
  close(): void {
    if (this.#over) return;
    this.#end(true);
    this.#reader.cancel().catch(() => {});
  }

  #end(early: boolean): void {
    this.#over = true;
    this.#chunks = [];
    endExchange(this.#exchange, early);
  }
}

const EMPTY = new Uint8Array(0);
