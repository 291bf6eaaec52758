/**
 * Helpers shared by several modules of this package; not exported by
 * `deno.json`.
 *
 * Startup cost: a CGI program is a new process for every request, and V8
 * compiles each function, whole, on its first call. So the modules build
 * their tables and costly regular expressions on first use rather than at
 * load time, scan short strings with loops (see `SCAN_LIMIT`), and build
 * error messages in separate functions, out of the code every request runs.
 * `bench/cgi_bench.ts` measures the result.
 *
 * @module
 */

// Users import this class from validate.ts, which re-exports it (deno doc
// shows the comment below there). It is defined here so that handlers.ts
// does not load the whole validator just for it.
/**
 * The error thrown when a gateway-interface rule is broken: Python's
 * `AssertionError`, carrying wsgiref's own message text. The handlers and
 * the validator throw this one class.
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
export class AssertionError extends Error {
  /**
   * Create an assertion error.
   *
   * @param message The rule that was broken.
   * @param options Standard error options, such as a `cause`.
   */
  constructor(message?: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "AssertionError";
  }
}

/**
 * Encode a latin-1 string (each char code one byte) to bytes.
 * Throws `TypeError` when a character is above `\xFF`.
 */
export function encodeLatin1(s: string, what = "String"): Uint8Array {
  const length = s.length;
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) {
    const code = s.charCodeAt(i);
    if (code > 0xff) throw notLatin1(s, i, what);
    bytes[i] = code;
  }
  return bytes;
}

// Built apart from the code that throws it (see "Startup cost" above).

function notLatin1(s: string, i: number, what: string): TypeError {
  return new TypeError(
    `${what} is not latin-1: character ${
      quote(s[i])
    } at index ${i} is above \\xFF`,
  );
}

/** Decode bytes to a latin-1 string: each byte becomes one char code. */
export function decodeLatin1(bytes: Uint8Array): string {
  let out = "";
  const CHUNK = 8192;
  for (let i = 0; i < bytes.length; i += CHUNK) {
    out += String.fromCharCode.apply(
      null,
      bytes.subarray(i, i + CHUNK) as unknown as number[],
    );
  }
  return out;
}

/**
 * Strings up to this length are checked with a loop rather than a regular
 * expression. V8 compiles a regular expression on its first use, and again
 * to machine code on the second: for the few a CGI request would use, that
 * costs more (tenths of a millisecond) than scanning all its short strings
 * with a loop. Past this length, or in a server that compiled them long
 * ago, the regular expressions are the faster scan.
 */
const SCAN_LIMIT = 128;

// deno-lint-ignore no-control-regex
const NOT_ASCII = /[^\x00-\x7f]/;
// deno-lint-ignore no-control-regex
const NOT_LATIN1 = /[^\x00-\xff]/;

/** Whether every char code of `s` is at most `max`. */
function allBelow(s: string, max: number): boolean {
  const length = s.length;
  for (let i = 0; i < length; i++) {
    if (s.charCodeAt(i) > max) return false;
  }
  return true;
}

/** Whether every char code of `s` is at most 0xFF. */
export function isLatin1(s: string): boolean {
  return s.length > SCAN_LIMIT ? !NOT_LATIN1.test(s) : allBelow(s, 0xff);
}

// Created on first use: most processes (a CGI request, above all) only
// ever see ASCII and never need them.
let utf8Decoder: TextDecoder | undefined;
let utf8Encoder: TextEncoder | undefined;

/** Re-encode a Unicode string as UTF-8 bytes viewed as a latin-1 string. */
export function utf8ToLatin1(s: string): string {
  if (isAscii(s)) return s;
  utf8Encoder ??= new TextEncoder();
  return decodeLatin1(utf8Encoder.encode(s));
}

/** View a latin-1 string's bytes as UTF-8 text (invalid bytes become U+FFFD). */
export function latin1ToUtf8(s: string): string {
  if (isAscii(s)) return s;
  utf8Decoder ??= new TextDecoder();
  return utf8Decoder.decode(encodeLatin1(s));
}

/** Whether every char code of `s` is below 0x80. */
export function isAscii(s: string): boolean {
  return s.length > SCAN_LIMIT ? !NOT_ASCII.test(s) : allBelow(s, 0x7f);
}

/** Quote a value for an error message: strings JSON-quoted, others by repr. */
export function quote(value: unknown): string {
  return typeof value === "string" ? JSON.stringify(value) : repr(value);
}

/** A short description of a value's type for `TypeError` messages. */
export function typeName(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  if (value instanceof Uint8Array) return "Uint8Array";
  if (typeof value === "object") {
    const name = (value as object).constructor?.name;
    return name && name !== "Object" ? name : "object";
  }
  return typeof value;
}

// Python's str.isprintable(): everything but the C* and Z* categories,
// except the ASCII space. Built on first use: a Unicode-property class
// costs about half a millisecond to compile, which a process that never
// quotes a non-ASCII character (a CGI request, say) should not pay.
let nonPrintable: RegExp | undefined;

function isNonPrintable(ch: string): boolean {
  nonPrintable ??= new RegExp("[\\p{C}\\p{Z}]", "u");
  return nonPrintable.test(ch);
}

function reprString(s: string): string {
  const useDouble = s.includes("'") && !s.includes('"');
  const q = useDouble ? '"' : "'";
  let out = q;
  for (const ch of s) {
    const code = ch.codePointAt(0)!;
    if (ch === q || ch === "\\") out += "\\" + ch;
    else if (ch === "\t") out += "\\t";
    else if (ch === "\n") out += "\\n";
    else if (ch === "\r") out += "\\r";
    else if (code < 0x20 || code === 0x7f) out += "\\x" + hex(code, 2);
    else if (code < 0x7f || ch === " ") out += ch;
    else if (isNonPrintable(ch)) {
      out += code <= 0xff
        ? "\\x" + hex(code, 2)
        : code <= 0xffff
        ? "\\u" + hex(code, 4)
        : "\\U" + hex(code, 8);
    } else out += ch;
  }
  return out + q;
}

function hex(n: number, width: number): string {
  return n.toString(16).padStart(width, "0");
}

/**
 * Python's `repr()` for the values an environ holds: strings quoted as
 * Python quotes them, `true`/`false` as `True`/`False`, `null` as `None`,
 * arrays as tuples, bytes as `b'...'`, other objects as `<Name object>`.
 */
export function repr(value: unknown): string {
  switch (typeof value) {
    case "string":
      return reprString(value);
    case "boolean":
      return value ? "True" : "False";
    case "number":
    case "bigint":
      return String(value);
    case "undefined":
      return "None";
    case "function":
      return `<function ${value.name || "<anonymous>"}>`;
    case "symbol":
      return value.toString();
  }
  if (value === null) return "None";
  if (value instanceof Uint8Array) {
    return "b" + reprString(decodeLatin1(value)).replace(
      /[\x80-\xff]/g,
      (c) => "\\x" + hex(c.charCodeAt(0), 2),
    );
  }
  if (Array.isArray(value)) {
    const items = value.map(repr);
    return items.length === 1 ? `(${items[0]},)` : `(${items.join(", ")})`;
  }
  const name = (value as object).constructor?.name ?? "object";
  return `<${name} object>`;
}

// RFC 9110 §5.5: field names and values exclude CTLs; values may hold HTAB.
// deno-lint-ignore no-control-regex
const NAME_DISALLOWED = /[\x00-\x1f\x7f]/;
// deno-lint-ignore no-control-regex
const VALUE_DISALLOWED = /[\x00-\x08\x0a-\x1f\x7f]/;

/**
 * What is wrong with `s` as a header name or status (`allowTab` false) or a
 * header value (`allowTab` true): the first control character, else the
 * first character above `\xFF`; `null` when nothing is.
 */
function charProblem(s: string, allowTab: boolean): string | null {
  // Applications send the same few names and values with every response.
  if (CLEAN.has(s)) return null;
  let control = -1;
  let wide = -1;
  if (s.length > SCAN_LIMIT) {
    control = s.search(allowTab ? VALUE_DISALLOWED : NAME_DISALLOWED);
    if (control < 0) wide = s.search(NOT_LATIN1);
  } else {
    for (let i = 0; i < s.length; i++) {
      const code = s.charCodeAt(i);
      if (code < 0x20 ? code !== 0x09 || !allowTab : code === 0x7f) {
        control = i;
        break;
      }
      if (code > 0xff && wide < 0) wide = i;
    }
  }
  if (control >= 0) return describeChar(s, control, "control character", "");
  if (wide >= 0) {
    return describeChar(s, wide, "character", ", which is not latin-1");
  }
  // Clean as a value is not clean as a name (a tab): remember names only.
  if (!s.includes("\t")) {
    if (CLEAN.size >= CLEAN_LIMIT) CLEAN.clear();
    CLEAN.add(s);
  }
  return null;
}

/** Strings that passed `charProblem` (with no tab: clean either way). */
const CLEAN = new Set<string>();
const CLEAN_LIMIT = 1024;

function describeChar(s: string, i: number, kind: string, why: string): string {
  return `contains ${kind} ${quote(s[i])} at index ${i}${why}`;
}

/**
 * Why `name` cannot be a header name (not a string, a control character, a
 * character above `\xFF`), or `null` when it can.
 */
export function headerNameProblem(name: unknown): string | null {
  if (typeof name !== "string") {
    return `name must be a string, not ${typeName(name)} ${repr(name)}`;
  }
  const problem = charProblem(name, false);
  return problem && `name ${problem}`;
}

/** As `headerNameProblem`, for a header value (horizontal tab allowed). */
export function headerValueProblem(value: unknown): string | null {
  if (typeof value !== "string") {
    return `value must be a string, not ${typeName(value)} ${repr(value)}`;
  }
  const problem = charProblem(value, true);
  return problem && `value ${problem}`;
}

/** As `headerNameProblem`, for a status line (no control character). */
export function statusProblem(status: string): string | null {
  return charProblem(status, false);
}

/**
 * Python's `urllib.parse.unquote(s, "iso-8859-1")` for a latin-1 string:
 * each `%XX` becomes the char with code `XX`, a `%` not followed by two hex
 * digits stays as it is.
 */
export function percentDecodeLatin1(s: string): string {
  let i = s.indexOf("%");
  if (i < 0) return s;
  let out = "";
  let from = 0;
  const length = s.length;
  for (; i >= 0 && i + 2 < length; i = s.indexOf("%", i + 1)) {
    const hi = hexDigit(s.charCodeAt(i + 1));
    const lo = hexDigit(s.charCodeAt(i + 2));
    if (hi < 0 || lo < 0) continue;
    out += s.slice(from, i) + String.fromCharCode(hi * 16 + lo);
    from = i + 3;
    i += 2;
  }
  return from === 0 ? s : out + s.slice(from);
}

function hexDigit(code: number): number {
  if (code >= 0x30 && code <= 0x39) return code - 0x30;
  code |= 0x20; // lower case
  return code >= 0x61 && code <= 0x66 ? code - 0x61 + 10 : -1;
}

/** The `osEnviron` of the servers: never the process environment, whose
 * variables are no business of a client's request. */
export const NO_OS_ENVIRON: Record<string, string> = Object.freeze(
  {},
) as Record<
  string,
  string
>;

/** English month abbreviations, for HTTP dates and the access log. */
export const MONTH_NAMES: readonly string[] = [
  "Jan",
  "Feb",
  "Mar",
  "Apr",
  "May",
  "Jun",
  "Jul",
  "Aug",
  "Sep",
  "Oct",
  "Nov",
  "Dec",
];

/** The promise of every step that finished synchronously: one settled
 * promise, not a new one per request; callers compare against it to skip a
 * hop. */
export const RESOLVED: Promise<void> = Promise.resolve();

/** Whether `value` has a `then` method, as `await` checks. */
export function isThenable<T>(value: unknown): value is PromiseLike<T> {
  return (typeof value === "object" || typeof value === "function") &&
    value !== null && typeof (value as { then?: unknown }).then === "function";
}

// Control characters that the access log escapes, as `http.server` does.
// deno-lint-ignore no-control-regex
const LOG_ESCAPED = /[\x00-\x1f\x7f-\x9f\\]/g;
let logDateSecond = -1;
let logDateText = "";

/** The local time as `http.server` logs it: `21/Nov/2026 10:00:00`. */
function logDate(): string {
  const second = Math.floor(Date.now() / 1000);
  if (second !== logDateSecond) {
    const d = new Date(second * 1000);
    const pad = (n: number) => String(n).padStart(2, "0");
    logDateText = `${pad(d.getDate())}/${MONTH_NAMES[d.getMonth()]}/${
      String(d.getFullYear()).padStart(4, "0")
    } ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
    logDateSecond = second;
  }
  return logDateText;
}

/**
 * A log line as `http.server` writes it: the client's address (`-` when
 * unknown), the local date and `message`, control characters escaped
 * (`\x1b`, `\\`): `127.0.0.1 - - [21/Nov/2026 10:00:00] message\n`. With
 * `multiline`, a newline starts an indented line instead (for stacks).
 */
export function logLine(
  address: string,
  message: string,
  multiline = false,
): string {
  const escaped = message.replace(
    LOG_ESCAPED,
    (c) =>
      c === "\n" && multiline
        ? "\n  "
        : c === "\\"
        ? "\\\\"
        : "\\x" + c.charCodeAt(0).toString(16).padStart(2, "0"),
  );
  return `${address || "-"} - - [${logDate()}] ${escaped}\n`;
}

/** Per handler, the result whose `close()` it has called for the current
 * request: so `close()` runs once per request, even when the error path and
 * `BaseHandler.close()` both reach it, and again for the next request. */
const CLOSED_RESULT = new WeakMap<object, object>();

/**
 * Call `result.close()` for `owner` (a handler) if it has one and `owner`
 * has not called it yet for this request (see `forgetClosedResult`).
 * Returns what an async `close()` returned, for the caller to `await`;
 * nothing (no promise to allocate) otherwise. A synchronous `close()` that
 * throws throws here, which an `await closeResult(...)` treats as a
 * rejection.
 */
export function closeResult(
  result: unknown,
  owner: object,
): PromiseLike<unknown> | undefined {
  if (typeof result !== "object" || result === null) return;
  const close = (result as { close?: unknown }).close;
  if (typeof close === "function" && CLOSED_RESULT.get(owner) !== result) {
    CLOSED_RESULT.set(owner, result);
    const closing = close.call(result);
    if (isThenable(closing)) return closing;
  }
}

/** End `owner`'s request: its next result may be closed again, even when it
 * is the same object. */
export function forgetClosedResult(owner: object): void {
  CLOSED_RESULT.delete(owner);
}
