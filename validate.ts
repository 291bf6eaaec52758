/**
 * Check an application and its server against PEP 3333, as wsgiref's
 * `validate` module does: wrap the application with `validator()` and
 * every call across the gateway interface is checked on both sides. A broken
 * rule throws an `AssertionError` whose message names the rule and quotes
 * the offending value; allowed-but-dubious use writes a `WSGIWarning` line
 * to `wsgi.errors`.
 *
 * Beyond wsgiref, the validator checks the response-level rules that
 * Rack::Lint and Werkzeug's lint check: the body length matches a declared
 * `Content-Length`, `HEAD` requests and 1xx/204/304 responses carry no body,
 * 1xx and 204 responses carry no `Content-Length` other than `0`, and
 * neither side closes `wsgi.input` or `wsgi.errors` while the response
 * runs.
 *
 * @example Validating an application
 * ```ts
 * import { validator } from "@wsgi/wsgiref/validate";
 * import { setupTestingDefaults } from "@wsgi/wsgiref/util";
 * import type { Environ } from "@wsgi/wsgiref/types";
 * import assert from "node:assert/strict";
 *
 * const app = validator((_environ, startResponse) => {
 *   startResponse("200 OK", [["Content-Type", "text/plain"]]);
 *   return [new TextEncoder().encode("Hello")];
 * });
 *
 * const environ: Environ = { QUERY_STRING: "" };
 * setupTestingDefaults(environ);
 * let status = "";
 * const result = app(environ, (s) => {
 *   status = s;
 *   return () => {};
 * }) as Iterable<Uint8Array> & { close(): void };
 * const body = [...result];
 * result.close();
 * assert.equal(status, "200 OK");
 * assert.equal(new TextDecoder().decode(body[0]), "Hello");
 * ```
 *
 * @module
 */

import type {
  Application,
  ErrorStream,
  InputStream,
  ResponseBody,
  StartResponse,
  Write,
} from "./types.ts";
import {
  AssertionError,
  headerValueProblem,
  isLatin1,
  repr,
  statusProblem,
  typeName,
} from "./_internal.ts";
import { isHopByHop } from "./util.ts";

/**
 * The error thrown when a gateway-interface rule is broken: Python's
 * `AssertionError`, carrying wsgiref's own message text. The handlers
 * throw the same class: it is defined in an internal module, so that a CGI
 * program need not load the validator just for it.
 *
 * @example Usage
 * ```ts
 * import { AssertionError } from "@wsgi/wsgiref/validate";
 * import assert from "node:assert/strict";
 *
 * const error = new AssertionError("Headers already set!");
 * assert.equal(error.name, "AssertionError");
 * assert.equal(error.message, "Headers already set!");
 * assert.ok(error instanceof Error);
 * ```
 */
export { AssertionError } from "./_internal.ts";

/**
 * A warning about allowed-but-dubious use of the gateway interface. The
 * validator does not throw it: it writes `WSGIWarning: message\n` to the
 * request's `wsgi.errors`.
 *
 * @example Usage
 * ```ts
 * import { WSGIWarning } from "@wsgi/wsgiref/validate";
 * import assert from "node:assert/strict";
 *
 * const warning = new WSGIWarning("Unknown REQUEST_METHOD: 'BREW'");
 * assert.equal(`${warning.name}: ${warning.message}`, "WSGIWarning: Unknown REQUEST_METHOD: 'BREW'");
 * ```
 */
export class WSGIWarning extends Error {
  /**
   * Create a warning.
   *
   * @param message What was dubious.
   * @param options Standard error options, such as a `cause`.
   */
  constructor(message?: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "WSGIWarning";
  }
}

/**
 * Options for `validator()`.
 *
 * @example Usage
 * ```ts
 * import { type ValidatorOptions, validator } from "@wsgi/wsgiref/validate";
 * import assert from "node:assert/strict";
 *
 * const options: ValidatorOptions = { strict: true };
 * const app = validator((_environ, startResponse) => {
 *   startResponse("200 OK", [["Content-Type", "text/plain"]]);
 *   return [new TextEncoder().encode("sync only")];
 * }, options);
 * assert.equal(typeof app, "function");
 * ```
 */
export interface ValidatorOptions {
  /**
   * Refuse what PEP 3333 allows but a portable application avoids: this
   * package's extensions (an application that returns a promise, a result
   * that is only an `AsyncIterable`, `wsgi.input.readinto()`) and, as
   * wsgiref's validator does, a `wsgi.input.read()` without a size.
   * Without `strict`, that `read()` only draws a `WSGIWarning`, and
   * `readinto()` is checked and passed through when the server's input
   * has it.
   *
   * @default {false}
   */
  strict?: boolean;
}

/** CGI variables every environ must hold (PEP 3333), plus the `wsgi.*` keys. */
const REQUIRED_KEYS: readonly string[] = [
  "REQUEST_METHOD",
  "SERVER_NAME",
  "SERVER_PORT",
  "SERVER_PROTOCOL",
  "wsgi.version",
  "wsgi.input",
  "wsgi.errors",
  "wsgi.multithread",
  "wsgi.multiprocess",
  "wsgi.run_once",
  "wsgi.url_scheme",
];

/** Request headers a server must turn into CONTENT_* variables. */
const FORBIDDEN_KEYS: readonly string[] = [
  "HTTP_CONTENT_TYPE",
  "HTTP_CONTENT_LENGTH",
];

/** The `wsgi.*` flags that must be booleans. */
const BOOLEAN_KEYS: readonly string[] = [
  "wsgi.multithread",
  "wsgi.multiprocess",
  "wsgi.run_once",
];

/** Methods wsgiref's validator knows; others draw a warning. */
const KNOWN_METHODS: ReadonlySet<string> = new Set([
  "GET",
  "HEAD",
  "POST",
  "OPTIONS",
  "PATCH",
  "PUT",
  "DELETE",
  "TRACE",
]);

/** RFC 9110 §5.6.2 token: a method or a header name. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const DIGITS = /^[0-9]+$/;

/** Methods `wsgi.input` must have, and those of `wsgi.errors`. */
const INPUT_METHODS: readonly (string | symbol)[] = [
  "read",
  "readline",
  "readlines",
  Symbol.iterator,
];
const ERRORS_METHODS: readonly string[] = ["flush", "write", "writelines"];
const STREAM_KEYS: readonly string[] = ["wsgi.input", "wsgi.errors"];

/**
 * How long after a result is exhausted the server has to call its
 * `close()` before the validator warns. Only microtasks separate the two in
 * this package's servers; the margin covers servers that flush to the
 * network first.
 */
const CLOSE_GRACE_MS = 100;

/** The longest quoted value in a message; longer ones are cut. */
const MAX_SHOWN = 200;

const NOT_STARTED =
  "The application returns and we started iterating over its body, but start_response has not yet been called";
const NOT_ITERABLE =
  "The application must return an iterator, if only an empty list";
const STRING_RESULT =
  "You should not return a string as your application iterator, instead return a single-item list containing a bytestring.";

/** Throw an `AssertionError` with `message`. */
function fail(message: string, options?: ErrorOptions): never {
  throw new AssertionError(message, options);
}

/** Python's `repr()` of a value for a message, cut when very long. */
function show(value: unknown): string {
  const text = repr(value);
  return text.length > MAX_SHOWN ? text.slice(0, MAX_SHOWN - 3) + "..." : text;
}

/** Python's `repr()` of a header list: a list of tuples. */
function showHeaders(headers: readonly unknown[]): string {
  const text = "[" + headers.map(repr).join(", ") + "]";
  return text.length > MAX_SHOWN ? text.slice(0, MAX_SHOWN - 3) + "..." : text;
}

/** Whether a status code forbids a response body (1xx, 204, 304). */
function forbidsBody(code: number): boolean {
  return code < 200 || code === 204 || code === 304;
}

function isObject(value: unknown): value is Record<string | symbol, unknown> {
  return (typeof value === "object" && value !== null) ||
    typeof value === "function";
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return isObject(value) && typeof value.then === "function";
}

function isBadResource(error: unknown): boolean {
  const errors =
    (globalThis as { Deno?: { errors?: { BadResource?: unknown } } })
      .Deno?.errors;
  const BadResource = errors?.BadResource;
  return typeof BadResource === "function" && error instanceof BadResource;
}

/**
 * Check an environ as a server hands it over; returns the warnings to
 * write once `wsgi.errors` is known to work.
 */
function checkEnviron(environ: unknown): string[] {
  const proto = isObject(environ) ? Object.getPrototypeOf(environ) : undefined;
  if (
    typeof environ !== "object" || environ === null ||
    (proto !== Object.prototype && proto !== null)
  ) {
    fail(
      `Environment is not of the right type: ${
        typeName(environ)
      } (environment: ${show(environ)})`,
    );
  }
  const env = environ as Record<string, unknown>;
  const warnings: string[] = [];
  for (const key of REQUIRED_KEYS) {
    if (!(key in env)) fail(`Environment missing required key: ${repr(key)}`);
  }
  for (const key of FORBIDDEN_KEYS) {
    if (key in env) {
      fail(
        `Environment should not have the key: ${key} (use ${
          key.slice(5)
        } instead); value: ${show(env[key])}`,
      );
    }
  }
  if (!("QUERY_STRING" in env)) {
    warnings.push(
      "QUERY_STRING is not in the WSGI environment; applications that parse it will find nothing to parse, so application errors are more likely",
    );
  }
  for (const key of Object.keys(env)) {
    // Keys with a dot are extensions: their types are their own business.
    if (key.includes(".")) continue;
    const value = env[key];
    if (typeof value !== "string") {
      fail(
        `Environmental variable ${key} is not a string: ${
          typeName(value)
        } (value: ${show(value)})`,
      );
    }
    if (!isLatin1(key)) {
      fail(`Environmental variable name is not latin-1: ${show(key)}`);
    }
    if (!isLatin1(value)) {
      fail(
        `Environmental variable ${key} is not a latin-1 string: ${show(value)}`,
      );
    }
  }
  const version = env["wsgi.version"];
  if (
    !Array.isArray(version) || version.length !== 2 ||
    !version.every((n) => Number.isInteger(n) && n >= 0) || version[0] !== 1
  ) {
    fail(`wsgi.version should be a tuple like [1, 0] (got ${show(version)})`);
  }
  const scheme = env["wsgi.url_scheme"];
  if (scheme !== "http" && scheme !== "https") {
    fail(`wsgi.url_scheme unknown: ${show(scheme)}`);
  }
  checkStreamShape("wsgi.input", env["wsgi.input"], INPUT_METHODS);
  checkStreamShape("wsgi.errors", env["wsgi.errors"], ERRORS_METHODS);
  for (const key of STREAM_KEYS) checkOpen(key, env[key]);
  for (const key of BOOLEAN_KEYS) {
    if (typeof env[key] !== "boolean") {
      fail(`${key} must be a boolean (got ${show(env[key])})`);
    }
  }
  if ("wsgi.file_wrapper" in env) {
    const wrapper = env["wsgi.file_wrapper"];
    if (typeof wrapper !== "function") {
      fail(`wsgi.file_wrapper must be a class (got ${show(wrapper)})`);
    }
  }
  const method = env.REQUEST_METHOD as string;
  if (!TOKEN.test(method)) fail(`Invalid REQUEST_METHOD: ${show(method)}`);
  if (!KNOWN_METHODS.has(method)) {
    warnings.push(`Unknown REQUEST_METHOD: ${show(method)}`);
  }
  if (env.SERVER_NAME === "") fail("SERVER_NAME must not be empty");
  if (!DIGITS.test(env.SERVER_PORT as string)) {
    fail(`SERVER_PORT must be a port number: ${show(env.SERVER_PORT)}`);
  }
  const scriptName = (env.SCRIPT_NAME ?? "") as string;
  const pathInfo = (env.PATH_INFO ?? "") as string;
  if (scriptName !== "" && !scriptName.startsWith("/")) {
    fail(`SCRIPT_NAME doesn't start with /: ${show(scriptName)}`);
  }
  if (pathInfo !== "" && !pathInfo.startsWith("/")) {
    fail(`PATH_INFO doesn't start with /: ${show(pathInfo)}`);
  }
  const contentLength = env.CONTENT_LENGTH;
  if (
    contentLength !== undefined && contentLength !== "" &&
    !DIGITS.test(contentLength as string)
  ) {
    fail(`Invalid CONTENT_LENGTH: ${show(contentLength)}`);
  }
  if (scriptName === "" && pathInfo === "") {
    fail(
      "One of SCRIPT_NAME or PATH_INFO are required (PATH_INFO should at least be '/' if SCRIPT_NAME is empty)",
    );
  }
  if (scriptName === "/") {
    fail(
      "SCRIPT_NAME cannot be '/'; it should instead be '', and PATH_INFO should be '/'",
    );
  }
  return warnings;
}

function checkStreamShape(
  key: string,
  stream: unknown,
  methods: readonly (string | symbol)[],
): void {
  for (const method of methods) {
    if (!isObject(stream) || typeof stream[method] !== "function") {
      const name = typeof method === "symbol" ? "[Symbol.iterator]" : method;
      fail(`${key} (${show(stream)}) doesn't have the attribute ${name}`);
    }
  }
}

/** Refuse a stream that says it is closed. */
function checkOpen(key: string, stream: unknown): void {
  if (isObject(stream) && stream.closed === true) {
    fail(
      `${key} is closed: neither the server nor the application may close it before the response is over`,
    );
  }
}

/**
 * Run a call on a server's stream; a closed stream (a `closed` flag, or
 * Deno's `BadResource`) breaks the rule that nobody closes it.
 */
function callStream<T>(key: string, stream: unknown, call: () => T): T {
  checkOpen(key, stream);
  try {
    return call();
  } catch (error) {
    if (isBadResource(error)) {
      fail(
        `${key} is closed: neither the server nor the application may close it before the response is over`,
        { cause: error },
      );
    }
    throw error;
  }
}

/** Check a status; returns its code. */
function checkStatus(status: unknown): number {
  if (typeof status !== "string") {
    fail(`Status must be of type str (got ${show(status)})`);
  }
  const problem = statusProblem(status);
  if (problem) fail(`Status ${problem}: ${show(status)}`);
  if (status.length < 4) {
    fail(`Status must be at least 4 characters: ${show(status)}`);
  }
  const first = /^\S*/.exec(status)![0];
  if (DIGITS.test(first) && first.length !== 3) {
    fail(`Status codes must be three characters: ${show(first)}`);
  }
  if (!/^[0-9]{3}/.test(status)) {
    fail(`Status message must begin w/3-digit code: ${show(status)}`);
  }
  const code = Number(status.slice(0, 3));
  if (code < 100) {
    fail(`Status code is invalid: ${code} (status: ${show(status)})`);
  }
  if (status[3] !== " ") {
    fail(`Status message must have a space after code: ${show(status)}`);
  }
  if (status.slice(4).trim() === "") {
    fail(
      `The status string (${
        show(status)
      }) should be a three-digit integer followed by a single space and a status explanation`,
    );
  }
  return code;
}

/** What the header checks learn about a header list. */
interface HeaderFacts {
  contentType: boolean;
  contentLength: string | null;
}

function checkHeaders(headers: unknown): HeaderFacts {
  if (!Array.isArray(headers)) {
    fail(
      `Headers (${show(headers)}) must be of type list: ${typeName(headers)}`,
    );
  }
  const facts: HeaderFacts = { contentType: false, contentLength: null };
  for (const item of headers as unknown[]) {
    if (!Array.isArray(item)) {
      fail(
        `Individual headers (${
          show(item)
        }) must be of type tuple (a [name, value] array): ${typeName(item)}`,
      );
    }
    if (item.length !== 2) {
      fail(
        `Individual headers (${
          show(item)
        }) must be [name, value] pairs, not ${item.length} items`,
      );
    }
    const [name, value] = item;
    if (typeof name !== "string") {
      fail(`Header name must be of type str (got ${show(name)})`);
    }
    if (typeof value !== "string") {
      fail(`Header value must be of type str (got ${show(value)})`);
    }
    const lower = name.toLowerCase();
    if (lower === "status") {
      fail(
        `The Status header cannot be used; it conflicts with CGI script, and HTTP status is not given through headers (value: ${
          show(value)
        }).`,
      );
    }
    if (name.includes("\n") || name.includes(":")) {
      fail(`Header names may not contain ':' or '\\n': ${show(name)}`);
    }
    if (!TOKEN.test(name)) fail(`Bad header name: ${show(name)}`);
    if (name.endsWith("-") || name.endsWith("_")) {
      fail(`Names may not end in '-' or '_': ${show(name)}`);
    }
    const problem = headerValueProblem(value);
    if (problem) fail(`Bad header value: ${show(value)} (${problem})`);
    if (isHopByHop(name)) {
      fail(`Hop-by-hop header, ${show(`${name}: ${value}`)}, not allowed`);
    }
    if (lower === "content-type") facts.contentType = true;
    if (lower === "content-length") {
      if (facts.contentLength !== null) {
        fail(
          `Content-Length header given more than once: ${
            show(facts.contentLength)
          } and ${show(value)}`,
        );
      }
      if (!DIGITS.test(value)) {
        fail(`Invalid Content-Length header: ${show(value)}`);
      }
      facts.contentLength = value;
    }
  }
  return facts;
}

function checkContentType(
  code: number,
  headers: readonly unknown[],
  facts: HeaderFacts,
): void {
  if (forbidsBody(code)) {
    if (facts.contentType) {
      fail(
        `Content-Type header found in a ${code} response, which must not return content.`,
      );
    }
    if (
      code !== 304 && facts.contentLength !== null &&
      Number(facts.contentLength) !== 0
    ) {
      fail(
        `Content-Length header found in a ${code} response, which must not return content: ${
          show(facts.contentLength)
        } (only '0' is allowed)`,
      );
    }
  } else if (!facts.contentType) {
    fail(`No Content-Type header found in headers (${showHeaders(headers)})`);
  }
}

/** Warn about results that were never closed when they are collected. */
const UNCLOSED = new FinalizationRegistry<Interaction>((interaction) =>
  interaction.reportUnclosed("Iterator garbage collected without being closed")
);

/** The state of one call of a validated application. */
class Interaction {
  /** The server's streams, unwrapped. */
  readonly input: InputStream;
  readonly errors: ErrorStream;
  readonly head: boolean;
  /**
   * CONTENT_LENGTH as a number; `null` when it is absent or empty: the
   * length is unknown (a chunked upload), not zero, so no "read past
   * CONTENT_LENGTH" warning applies.
   */
  readonly requestLength: number | null;
  readonly requestLengthText: string;
  readonly strict: boolean;
  #startResponse: StartResponse;
  started = false;
  code = 0;
  declaredLength: number | null = null;
  declaredLengthText = "";
  bodyBytes = 0;
  inputPosition = 0;
  closed = false;
  #warnedReadPast = false;
  #warnedInputOverrun = false;
  #warnedUnsizedRead = false;
  #unclosedReported = false;
  #closeTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    environ: Record<string, unknown>,
    startResponse: StartResponse,
    strict: boolean,
  ) {
    this.input = environ["wsgi.input"] as InputStream;
    this.errors = environ["wsgi.errors"] as ErrorStream;
    this.head = environ.REQUEST_METHOD === "HEAD";
    this.requestLengthText = (environ.CONTENT_LENGTH ?? "") as string;
    this.requestLength = this.requestLengthText === ""
      ? null
      : Number(this.requestLengthText);
    this.strict = strict;
    this.#startResponse = startResponse;
  }

  /** Write a `WSGIWarning` line to the server's `wsgi.errors`. */
  warn(message: string): void {
    const warning = new WSGIWarning(message);
    this.errors.write(`${warning.name}: ${warning.message}\n`);
  }

  /** The `startResponse` the application receives. */
  startResponse = (...args: unknown[]): Write => {
    if (args.length !== 2 && args.length !== 3) {
      fail(`Invalid number of arguments: ${show(args)}`);
    }
    const [status, headers, excInfo] = args;
    const code = checkStatus(status);
    const facts = checkHeaders(headers);
    checkContentType(code, headers as unknown[], facts);
    const given = excInfo !== undefined && excInfo !== null;
    if (this.closed) {
      fail(
        `start_response() called after the response was closed: ${
          show(status)
        }`,
      );
    }
    if (this.started && !given) {
      fail(
        `Headers already set! start_response() may be called again only with excInfo: ${
          show(status)
        }`,
      );
    }
    const bodyStarted = this.bodyBytes > 0;
    const write = (this.#startResponse as (...a: unknown[]) => unknown)(
      ...args,
    );
    if (bodyStarted && given) {
      fail(
        "start_response() called with excInfo after the body started must throw (rethrow excInfo), but the server returned",
      );
    }
    if (typeof write !== "function") {
      fail(
        `start_response() must return a write() callable (got ${show(write)})`,
      );
    }
    this.started = true;
    this.code = code;
    this.declaredLengthText = facts.contentLength ?? "";
    this.declaredLength = facts.contentLength === null
      ? null
      : Number(facts.contentLength);
    return (...data: unknown[]): void => {
      if (data.length !== 1) {
        fail(`write() takes exactly one argument (got ${data.length})`);
      }
      const chunk = data[0];
      if (!(chunk instanceof Uint8Array)) {
        fail(
          `write() argument must be a bytestring (Uint8Array): ${show(chunk)}`,
        );
      }
      if (this.closed) {
        fail("write() called after the response was closed");
      }
      this.countBody(chunk.length);
      (write as Write)(chunk);
    };
  };

  /** Apply the body rules to `n` more bytes. */
  countBody(n: number): void {
    if (n === 0) return;
    this.bodyBytes += n;
    if (this.head) {
      fail(
        `Response body given for a HEAD request, which must not return content: ${this.bodyBytes} bytes`,
      );
    }
    if (forbidsBody(this.code)) {
      fail(
        `Response body given in a ${this.code} response, which must not return content: ${this.bodyBytes} bytes`,
      );
    }
    if (this.declaredLength !== null && this.bodyBytes > this.declaredLength) {
      fail(
        `Response body is longer than its Content-Length header (${
          show(this.declaredLengthText)
        }): ${this.bodyBytes} bytes sent`,
      );
    }
  }

  /** Checks before each step of the result's iterator. */
  beforeNext(): void {
    if (this.closed) fail("Iterator read after closed");
    checkOpen("wsgi.input", this.input);
    checkOpen("wsgi.errors", this.errors);
  }

  /** Check one step of the result's iterator. */
  afterNext(step: unknown): IteratorResult<Uint8Array> {
    if (!isObject(step)) {
      fail(
        `The result's iterator must return an iterator result object, not ${
          show(step)
        }`,
      );
    }
    if (step.done) {
      if (!this.started) fail(NOT_STARTED);
      if (
        this.declaredLength !== null && !this.head && this.code !== 304 &&
        this.bodyBytes !== this.declaredLength
      ) {
        fail(
          `Response body is shorter than its Content-Length header (${
            show(this.declaredLengthText)
          }): ${this.bodyBytes} bytes sent`,
        );
      }
      return { done: true, value: undefined };
    }
    const chunk = step.value;
    if (!(chunk instanceof Uint8Array)) {
      fail(`Iterator yielded non-bytestring (${show(chunk)})`);
    }
    if (!this.started) fail(NOT_STARTED);
    this.countBody(chunk.length);
    return { done: false, value: chunk };
  }

  /**
   * The result ended (exhausted, or an error): the server must now call
   * `close()`. Give it a short grace period, then warn.
   */
  expectClose(): void {
    if (this.closed || this.#closeTimer !== undefined) return;
    this.#closeTimer = setTimeout(() => {
      this.#closeTimer = undefined;
      if (!this.closed) {
        this.reportUnclosed(
          "Iterator exhausted without being closed: the server must call the result's close()",
        );
      }
    }, CLOSE_GRACE_MS);
    const deno = (globalThis as {
      Deno?: { unrefTimer?: (id: number) => void };
    }).Deno;
    deno?.unrefTimer?.(this.#closeTimer as unknown as number);
  }

  /** Warn, once, that the result was never closed. */
  reportUnclosed(message: string): void {
    if (this.closed || this.#unclosedReported) return;
    this.#unclosedReported = true;
    try {
      this.warn(message);
    } catch {
      // Nobody is left to tell: the stream went away with the request.
    }
  }

  /** The server closes the result. */
  close(original: Record<string | symbol, unknown>): void | Promise<void> {
    this.closed = true;
    if (this.#closeTimer !== undefined) {
      clearTimeout(this.#closeTimer);
      this.#closeTimer = undefined;
    }
    UNCLOSED.unregister(this);
    const close = original.close;
    return typeof close === "function" ? close.call(original) : undefined;
  }

  /**
   * A `wsgi.input.read()` without a size argument (`read()` or
   * `read(undefined)`), shown
   * as `call`: PEP 3333 asks servers to allow it, so it draws a warning
   * (once per request); wsgiref's validator refuses it, and so does strict
   * mode.
   */
  unsizedRead(call: string): void {
    if (this.strict) {
      fail(
        `wsgi.input.read() needs a size: validator(app, { strict: true }) refuses ${call}, which reads all the rest of the input; read at most CONTENT_LENGTH bytes`,
      );
    }
    if (this.#warnedUnsizedRead) return;
    this.#warnedUnsizedRead = true;
    this.warn(
      `wsgi.input.read() needs a size to be portable: ${call} reads all the rest of the input, which wsgiref's validator refuses; read at most CONTENT_LENGTH bytes`,
    );
  }

  /** Checks before the application reads `wsgi.input`. */
  beforeInput(size: number): void {
    const length = this.requestLength;
    if (
      size !== 0 && length !== null && this.inputPosition >= length &&
      !this.#warnedReadPast
    ) {
      this.#warnedReadPast = true;
      this.warn(
        `wsgi.input read past CONTENT_LENGTH (${
          show(this.requestLengthText)
        }): the application should not read more than CONTENT_LENGTH bytes`,
      );
    }
  }

  /** Account for `n` bytes the server returned from `wsgi.input`. */
  afterInput(n: number): void {
    this.inputPosition += n;
    const length = this.requestLength;
    if (
      length !== null && this.inputPosition > length &&
      !this.#warnedInputOverrun
    ) {
      this.#warnedInputOverrun = true;
      this.warn(
        `wsgi.input returned ${
          this.inputPosition - length
        } bytes past CONTENT_LENGTH (${
          show(this.requestLengthText)
        }): the server should simulate the end of input there`,
      );
    }
  }
}

/** Check a size argument of a `wsgi.input` method; returns it as a number. */
function checkSizeArgument(
  method: string,
  args: readonly unknown[],
  what = "size",
): number {
  if (args.length > 1) {
    fail(
      `wsgi.input.${method}() takes at most one argument (got ${args.length})`,
    );
  }
  const size = args[0];
  if (size === undefined || size === null) return -1;
  if (typeof size !== "number" || !Number.isInteger(size)) {
    fail(
      `wsgi.input.${method}() ${what} must be an integer (got ${show(size)})`,
    );
  }
  return size;
}

/** Check a line the server returned from `wsgi.input`. */
function checkLine(method: string, line: unknown, limit: number): Uint8Array {
  if (!(line instanceof Uint8Array)) {
    fail(
      `wsgi.input.${method}() must return Uint8Array lines (got ${show(line)})`,
    );
  }
  if (limit >= 0 && line.length > limit) {
    fail(
      `wsgi.input.${method}(${limit}) returned ${line.length} bytes, more than asked for`,
    );
  }
  const newline = line.indexOf(0x0a);
  if (newline >= 0 && newline !== line.length - 1) {
    fail(
      `wsgi.input.${method}() returned a line with "\\n" before its end: ${
        show(line)
      }`,
    );
  }
  return line;
}

/** `wsgi.input` as the application sees it. */
class InputWrapper implements InputStream {
  #interaction: Interaction;
  /** Present when the server's input has it (an extension: see
   * `InputStream`), so that the application may test for it. */
  readinto?: (buffer: Uint8Array) => number;

  constructor(interaction: Interaction) {
    this.#interaction = interaction;
    const input = interaction.input as Partial<InputStream>;
    if (typeof input.readinto === "function") {
      this.readinto = (...args: unknown[]) => this.#readinto(args);
    }
  }

  /** `readinto()`, checked on both sides; refused in strict mode, as the
   * other extension is: PEP 3333 servers do not have it. */
  #readinto(args: unknown[]): number {
    const state = this.#interaction;
    if (state.strict) {
      fail(
        "wsgi.input.readinto() is an extension of @wsgi/wsgiref: validator(app, { strict: true }) refuses it; use read(size)",
      );
    }
    const buffer = args[0];
    if (args.length !== 1 || !(buffer instanceof Uint8Array)) {
      fail(
        `wsgi.input.readinto() takes one Uint8Array (got ${
          args.length === 1 ? show(buffer) : `${args.length} arguments`
        })`,
      );
    }
    state.beforeInput(buffer.length);
    const n = callStream(
      "wsgi.input",
      state.input,
      () => state.input.readinto!(buffer),
    );
    if (!Number.isInteger(n) || n < 0 || n > buffer.length) {
      fail(
        `wsgi.input.readinto() must return a byte count from 0 to ${buffer.length} (got ${
          show(n)
        })`,
      );
    }
    state.afterInput(n);
    return n;
  }

  read(...args: unknown[]): Uint8Array {
    const size = checkSizeArgument("read", args);
    const state = this.#interaction;
    // Only a call without a size argument is wsgiref's unsized read: any
    // number (negative too) or null is one, as CPython's validator only
    // counts the arguments.
    if (args[0] === undefined) {
      state.unsizedRead(args.length === 0 ? "read()" : "read(None)");
    }
    state.beforeInput(size);
    const data = callStream(
      "wsgi.input",
      state.input,
      () => (state.input.read as (...a: unknown[]) => unknown)(...args),
    );
    if (!(data instanceof Uint8Array)) {
      fail(`wsgi.input.read() must return a Uint8Array (got ${show(data)})`);
    }
    if (size >= 0 && data.length > size) {
      fail(
        `wsgi.input.read(${size}) returned ${data.length} bytes, more than asked for`,
      );
    }
    state.afterInput(data.length);
    return data;
  }

  readline(...args: unknown[]): Uint8Array {
    const size = checkSizeArgument("readline", args);
    const state = this.#interaction;
    state.beforeInput(size);
    const line = callStream(
      "wsgi.input",
      state.input,
      () => (state.input.readline as (...a: unknown[]) => unknown)(...args),
    );
    checkLine("readline", line, size);
    state.afterInput((line as Uint8Array).length);
    return line as Uint8Array;
  }

  readlines(...args: unknown[]): Uint8Array[] {
    checkSizeArgument("readlines", args, "hint");
    const state = this.#interaction;
    state.beforeInput(-1);
    const lines = callStream(
      "wsgi.input",
      state.input,
      () => (state.input.readlines as (...a: unknown[]) => unknown)(...args),
    );
    if (!Array.isArray(lines)) {
      fail(`wsgi.input.readlines() must return an array (got ${show(lines)})`);
    }
    let total = 0;
    for (const line of lines) {
      total += checkLine("readlines", line, -1).length;
      if ((line as Uint8Array).length === 0) {
        fail("wsgi.input.readlines() returned an empty line");
      }
    }
    state.afterInput(total);
    return lines;
  }

  *[Symbol.iterator](): Generator<Uint8Array, void, undefined> {
    const state = this.#interaction;
    const iterator = callStream(
      "wsgi.input",
      state.input,
      () => state.input[Symbol.iterator](),
    );
    for (;;) {
      state.beforeInput(-1);
      const step = callStream("wsgi.input", state.input, () => iterator.next());
      if (step.done) return;
      const line = checkLine("[Symbol.iterator]", step.value, -1);
      if (line.length === 0) {
        fail("wsgi.input iteration yielded an empty line");
      }
      state.afterInput(line.length);
      yield line;
    }
  }

  close(): never {
    fail("input.close() must not be called");
  }
}

/** `wsgi.errors` as the application sees it. */
class ErrorWrapper implements ErrorStream {
  #interaction: Interaction;

  constructor(interaction: Interaction) {
    this.#interaction = interaction;
  }

  write(...args: unknown[]): void {
    if (args.length !== 1) {
      fail(
        `wsgi.errors.write() takes exactly one argument (got ${args.length})`,
      );
    }
    const text = args[0];
    if (typeof text !== "string") {
      fail(`wsgi.errors.write() argument must be a string: ${show(text)}`);
    }
    const errors = this.#interaction.errors;
    callStream("wsgi.errors", errors, () => errors.write(text));
  }

  writelines(...args: unknown[]): void {
    if (args.length !== 1) {
      fail(
        `wsgi.errors.writelines() takes exactly one argument (got ${args.length})`,
      );
    }
    const seq = args[0];
    if (
      !isObject(seq) && typeof seq !== "string" ||
      typeof (seq as Iterable<unknown>)[Symbol.iterator] !== "function"
    ) {
      fail(`wsgi.errors.writelines() argument must be iterable: ${show(seq)}`);
    }
    const lines: string[] = [];
    for (const line of seq as Iterable<unknown>) {
      if (typeof line !== "string") {
        fail(`wsgi.errors.writelines() lines must be strings: ${show(line)}`);
      }
      lines.push(line);
    }
    const errors = this.#interaction.errors;
    callStream("wsgi.errors", errors, () => errors.writelines(lines));
  }

  flush(...args: unknown[]): void {
    if (args.length !== 0) {
      fail(`wsgi.errors.flush() takes no arguments (got ${args.length})`);
    }
    const errors = this.#interaction.errors;
    callStream("wsgi.errors", errors, () => errors.flush());
  }

  close(): never {
    fail("errors.close() must not be called");
  }
}

/** The result of a synchronous iterable, as the server sees it. */
class IteratorWrapper implements Iterable<Uint8Array>, Iterator<Uint8Array> {
  #interaction: Interaction;
  #original: Record<string | symbol, unknown>;
  #iterator: Iterator<unknown> | undefined;

  constructor(
    interaction: Interaction,
    original: Record<string | symbol, unknown>,
  ) {
    this.#interaction = interaction;
    this.#original = original;
    UNCLOSED.register(this, interaction, interaction);
  }

  [Symbol.iterator](): this {
    return this;
  }

  next(): IteratorResult<Uint8Array> {
    const state = this.#interaction;
    state.beforeNext();
    try {
      this.#iterator ??= startIterator(
        this.#original,
        Symbol.iterator,
      ) as Iterator<unknown>;
      const step = this.#iterator.next();
      const result = state.afterNext(step);
      if (result.done) state.expectClose();
      return result;
    } catch (error) {
      state.expectClose();
      throw error;
    }
  }

  return(value?: unknown): IteratorResult<Uint8Array> {
    const step = this.#iterator?.return?.(value);
    return (step ?? { done: true, value }) as IteratorResult<Uint8Array>;
  }

  close(): void | Promise<void> {
    return this.#interaction.close(this.#original);
  }
}

/** The result of an async iterable, as the server sees it. */
class AsyncIteratorWrapper
  implements AsyncIterable<Uint8Array>, AsyncIterator<Uint8Array> {
  #interaction: Interaction;
  #original: Record<string | symbol, unknown>;
  #iterator: AsyncIterator<unknown> | undefined;

  constructor(
    interaction: Interaction,
    original: Record<string | symbol, unknown>,
  ) {
    this.#interaction = interaction;
    this.#original = original;
    UNCLOSED.register(this, interaction, interaction);
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  async next(): Promise<IteratorResult<Uint8Array>> {
    const state = this.#interaction;
    state.beforeNext();
    try {
      this.#iterator ??= startIterator(
        this.#original,
        Symbol.asyncIterator,
      ) as AsyncIterator<unknown>;
      const step = await this.#iterator.next();
      const result = state.afterNext(step);
      if (result.done) state.expectClose();
      return result;
    } catch (error) {
      state.expectClose();
      throw error;
    }
  }

  async return(value?: unknown): Promise<IteratorResult<Uint8Array>> {
    const step = await this.#iterator?.return?.(value);
    return (step ?? { done: true, value }) as IteratorResult<Uint8Array>;
  }

  close(): void | Promise<void> {
    return this.#interaction.close(this.#original);
  }
}

function startIterator(
  original: Record<string | symbol, unknown>,
  method: symbol,
): unknown {
  const iterator = (original[method] as () => unknown).call(original);
  if (!isObject(iterator) || typeof iterator.next !== "function") {
    fail(
      `The application's result must give an iterator with next() (got ${
        show(iterator)
      })`,
    );
  }
  return iterator;
}

/** Check what the application returned and wrap it for the server. */
function wrapResult(
  interaction: Interaction,
  result: unknown,
  strict: boolean,
): ResponseBody {
  if (typeof result === "string" || result instanceof Uint8Array) {
    fail(`${STRING_RESULT} (got ${show(result)})`);
  }
  if (!isObject(result)) fail(`${NOT_ITERABLE} (got ${show(result)})`);
  if (result.close !== undefined && typeof result.close !== "function") {
    fail(
      `The application's result has a close property that is not a function: ${
        show(result.close)
      }`,
    );
  }
  if (typeof result[Symbol.iterator] === "function") {
    return new IteratorWrapper(interaction, result);
  }
  if (typeof result[Symbol.asyncIterator] === "function") {
    if (strict) {
      fail(
        `validator(app, { strict: true }) refuses an AsyncIterable result: ${
          show(result)
        }`,
      );
    }
    return new AsyncIteratorWrapper(interaction, result);
  }
  fail(`${NOT_ITERABLE} (got ${show(result)})`);
}

/**
 * Wrap `app` so that every call across the gateway interface is checked,
 * on both sides: the environ the server passes (required keys, types,
 * latin-1 strings, `SCRIPT_NAME`/`PATH_INFO`, `CONTENT_LENGTH`), the use of
 * `wsgi.input` and `wsgi.errors`, the arguments of `startResponse` (status,
 * headers, `Content-Type`, hop-by-hop headers, `excInfo`), the arguments of
 * `write`, and the result: its chunks, that `startResponse` came first,
 * that the body matches the status, the method and a declared
 * `Content-Length`, and that the server calls `close()` and reads nothing
 * after it.
 *
 * A broken rule throws an `AssertionError` naming the rule and quoting the
 * offending value. Dubious but allowed use (no `QUERY_STRING`, an unknown
 * method, a `wsgi.input.read()` without a size, reading `wsgi.input` past a
 * numeric `CONTENT_LENGTH`, a result the server did not close within 100 ms
 * of its end or before it was garbage collected) writes a
 * `WSGIWarning: ...` line to `wsgi.errors`, each kind once per request. An
 * absent or empty `CONTENT_LENGTH` means the length is unknown (a chunked
 * upload), not zero: reading such an input to its end draws no warning.
 *
 * With `{ strict: true }`, the async extension (a promise from the
 * application, an `AsyncIterable` result) and a `wsgi.input.read()` without
 * a size argument (`read()` or `read(undefined)`) are refused with an
 * `AssertionError`, as wsgiref's own validator refuses that `read()`. Any
 * number, negative included, or `null` is a size argument and passes
 * silently, as `read(-1)` passes CPython's validator.
 *
 * As wsgiref's validator, it replaces `wsgi.input` and `wsgi.errors` in the
 * environ with checking wrappers, and the result it returns is a wrapper
 * (iterable for an iterable result, async iterable for an async one) whose
 * `close()` closes the original. The validated application is synchronous
 * for a synchronous application and returns a promise for an async one.
 *
 * @example Usage
 * ```ts
 * import { AssertionError, validator } from "@wsgi/wsgiref/validate";
 * import { setupTestingDefaults } from "@wsgi/wsgiref/util";
 * import type { Environ } from "@wsgi/wsgiref/types";
 * import assert from "node:assert/strict";
 *
 * // Forgets the Content-Type header.
 * const app = validator((_environ, startResponse) => {
 *   startResponse("200 OK", []);
 *   return [];
 * });
 * const environ: Environ = { QUERY_STRING: "" };
 * setupTestingDefaults(environ);
 * assert.throws(
 *   () => app(environ, () => () => {}),
 *   new AssertionError("No Content-Type header found in headers ([])"),
 * );
 * ```
 *
 * @example A read() without a size
 * ```ts
 * import { AssertionError, validator } from "@wsgi/wsgiref/validate";
 * import { setupTestingDefaults } from "@wsgi/wsgiref/util";
 * import type { Application, Environ } from "@wsgi/wsgiref/types";
 * import assert from "node:assert/strict";
 *
 * const app: Application = (environ, startResponse) => {
 *   const body = environ["wsgi.input"]!.read(); // no size: all the rest
 *   startResponse("200 OK", [["Content-Type", "text/plain"]]);
 *   return [body];
 * };
 * const errors: string[] = [];
 * const environ: Environ = {
 *   QUERY_STRING: "",
 *   "wsgi.errors": { write: (s) => void errors.push(s), writelines() {}, flush() {} },
 * };
 * setupTestingDefaults(environ);
 * // By default: allowed (PEP 3333), with one warning.
 * validator(app)({ ...environ }, () => () => {});
 * assert.equal(errors.length, 1);
 * assert.match(errors[0], /^WSGIWarning: wsgi\.input\.read\(\) needs a size/);
 * // Strict mode refuses it, as wsgiref's validator does.
 * assert.throws(
 *   () => validator(app, { strict: true })({ ...environ }, () => () => {}),
 *   AssertionError,
 * );
 * ```
 *
 * @param app The application to check.
 * @param options `strict: true` refuses the async extension and a
 * `wsgi.input.read()` without a size.
 * @returns An application that checks `app` and the server calling it.
 * @throws {TypeError} When `app` is not a function or `options` is not an
 * options object.
 */
export function validator(
  app: Application,
  options: ValidatorOptions = {},
): Application {
  if (typeof app !== "function") {
    throw new TypeError(
      `Cannot validate: app must be a function, not ${typeName(app)} ${
        show(app)
      }`,
    );
  }
  if (typeof options !== "object" || options === null) {
    throw new TypeError(
      `Cannot validate: options must be an object, not ${typeName(options)} ${
        show(options)
      }`,
    );
  }
  const { strict = false } = options;
  if (typeof strict !== "boolean") {
    throw new TypeError(
      `Cannot validate: strict must be a boolean, not ${typeName(strict)} ${
        show(strict)
      }`,
    );
  }
  const validated = (
    ...args: unknown[]
  ): ResponseBody | Promise<ResponseBody> => {
    if (args.length !== 2) {
      fail(`Two arguments required (got ${args.length})`);
    }
    const [environ, startResponse] = args;
    const warnings = checkEnviron(environ);
    if (typeof startResponse !== "function") {
      fail(`start_response must be a function (got ${show(startResponse)})`);
    }
    const env = environ as Record<string, unknown>;
    const interaction = new Interaction(
      env,
      startResponse as StartResponse,
      strict,
    );
    for (const warning of warnings) interaction.warn(warning);
    env["wsgi.input"] = new InputWrapper(interaction);
    env["wsgi.errors"] = new ErrorWrapper(interaction);
    const result = app(env, interaction.startResponse);
    if (isThenable(result)) {
      if (strict) {
        // The refused promise may still reject; nobody will await it.
        Promise.resolve(result).catch(() => {});
        fail(
          "validator(app, { strict: true }) refuses an application that returns a Promise",
        );
      }
      return Promise.resolve(result).then((value) =>
        wrapResult(interaction, value, strict)
      );
    }
    return wrapResult(interaction, result, strict);
  };
  return validated as Application;
}
