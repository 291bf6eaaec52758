/**
 * A mutable list of response headers with case-insensitive lookup, as
 * `wsgiref.headers`. Every name and value is checked on the way in: a
 * non-string, a control character or a character above `\xFF` is refused,
 * so no header can be injected.
 *
 * @example Usage
 * ```ts
 * import { Headers } from "@wsgi/wsgiref/headers";
 * import assert from "node:assert/strict";
 *
 * const list: [string, string][] = [];
 * const headers = new Headers(list);
 * headers.set("Content-Type", "text/plain");
 * headers.addHeader("Content-Disposition", "attachment", { filename: "a.txt" });
 * assert.equal(
 *   headers.toString(),
 *   'Content-Type: text/plain\r\nContent-Disposition: attachment; filename="a.txt"\r\n\r\n',
 * );
 * assert.equal(list.length, 2);
 * ```
 *
 * @module
 */

import type { HeaderList } from "./types.ts";
import {
  encodeLatin1,
  headerNameProblem,
  headerValueProblem,
  quote,
  repr,
  typeName,
} from "./_internal.ts";

/** Throw a `TypeError` if `name` cannot be a header name. */
function checkName(action: string, name: unknown): void {
  const problem = headerNameProblem(name);
  if (problem) {
    throw new TypeError(`Cannot ${action} header ${quote(name)}: ${problem}`);
  }
}

/** Throw a `TypeError` if `name: value` cannot be a header line. */
function checkPair(action: string, name: unknown, value: unknown): void {
  const problem = headerNameProblem(name) ?? headerValueProblem(value);
  if (problem) {
    throw new TypeError(`Cannot ${action} header ${quote(name)}: ${problem}`);
  }
}

/** Check one entry of a list given to `new Headers()` (a `forEach`
 * callback, so holes are skipped). */
function checkEntry(entry: unknown, index: number): void {
  if (!Array.isArray(entry) || entry.length !== 2) {
    throw notAPair(`create Headers: entry ${index}`, entry);
  }
  checkPair("create Headers with", entry[0], entry[1]);
}

// Errors are built apart from the checks that throw them, to keep the
// functions every request runs small: see "Startup cost" in _internal.ts.

function notAHeaderList(headers: unknown): TypeError {
  return new TypeError(
    `Cannot create Headers: expected an array of [name, value] pairs, not ${
      typeName(headers)
    } ${repr(headers)}`,
  );
}

function notAPair(what: string, entry: unknown): TypeError {
  return new TypeError(
    `Cannot ${what} must be a [name, value] pair, not ${typeName(entry)} ${
      repr(entry)
    }`,
  );
}

/**
 * `name="value"` for a parameter, with `\` and `"` escaped; just `name`
 * for an empty value. wsgiref quotes every non-empty value, special
 * characters or not.
 */
function formatParam(name: string, value: string): string {
  if (value.length === 0) return name;
  return `${name}="${value.replaceAll("\\", "\\\\").replaceAll('"', '\\"')}"`;
}

/**
 * Response headers over a `[name, value][]` list, which it wraps (changes
 * go to the list given). Names are matched case-insensitively. Every name
 * and value is checked; a bad one throws a `TypeError` naming the action
 * and the header.
 *
 * @example Usage
 * ```ts
 * import { Headers } from "@wsgi/wsgiref/headers";
 * import assert from "node:assert/strict";
 *
 * const headers = new Headers([["Set-Cookie", "a=1"], ["set-cookie", "b=2"]]);
 * assert.equal(headers.get("SET-COOKIE"), "a=1");
 * assert.deepEqual(headers.getAll("Set-Cookie"), ["a=1", "b=2"]);
 * headers.set("Set-Cookie", "c=3");
 * assert.deepEqual(headers.items(), [["Set-Cookie", "c=3"]]);
 * assert.throws(() => headers.set("X-A", "x\r\nInjected: 1"), TypeError);
 * ```
 */
export class Headers implements Iterable<[string, string]> {
  #headers: HeaderList;

  /**
   * Wrap `headers` (not copied); each entry must be a `[name, value]` pair
   * of valid strings.
   *
   * @param headers The list to manage; a new empty one by default.
   * @throws {TypeError} When `headers` is not an array or an entry is not a
   * valid pair.
   */
  constructor(headers: HeaderList = []) {
    if (!Array.isArray(headers)) throw notAHeaderList(headers);
    headers.forEach(checkEntry);
    this.#headers = headers;
  }

  /**
   * The number of header lines, repeats included.
   *
   * @returns The count.
   */
  get length(): number {
    return this.#headers.length;
  }

  /**
   * The first value of the header `name`, or `defaultValue` when there is
   * none.
   *
   * @example Usage
   * ```ts
   * import { Headers } from "@wsgi/wsgiref/headers";
   * import assert from "node:assert/strict";
   *
   * const headers = new Headers([["Content-Type", "text/html"]]);
   * assert.equal(headers.get("content-type"), "text/html");
   * assert.equal(headers.get("Location"), undefined);
   * assert.equal(headers.get("Location", "/"), "/");
   * ```
   *
   * @param name The header name, in any case.
   * @param defaultValue What to return when the header is absent.
   * @returns The first value, or `defaultValue`.
   */
  get(name: string): string | undefined;
  /**
   * The first value of the header `name`, or `defaultValue` when there is
   * none.
   *
   * @example Usage
   * ```ts
   * import { Headers } from "@wsgi/wsgiref/headers";
   * import assert from "node:assert/strict";
   *
   * const headers = new Headers();
   * assert.equal(headers.get("Location", null), null);
   * ```
   *
   * @param name The header name, in any case.
   * @param defaultValue What to return when the header is absent.
   * @returns The first value, or `defaultValue`.
   */
  get<T>(name: string, defaultValue: T): string | T;
  get<T>(name: string, defaultValue?: T): string | T | undefined {
    checkName("get", name);
    const lower = name.toLowerCase();
    for (const [key, value] of this.#headers) {
      if (key.toLowerCase() === lower) return value;
    }
    return defaultValue;
  }

  /**
   * Replace every header `name` by one `name: value` line at the end.
   *
   * @example Usage
   * ```ts
   * import { Headers } from "@wsgi/wsgiref/headers";
   * import assert from "node:assert/strict";
   *
   * const headers = new Headers([["X-A", "1"], ["Vary", "*"], ["x-a", "2"]]);
   * headers.set("X-A", "3");
   * assert.deepEqual(headers.items(), [["Vary", "*"], ["X-A", "3"]]);
   * ```
   *
   * @param name The header name.
   * @param value The new value.
   * @throws {TypeError} When `name` or `value` is not a valid header string.
   */
  set(name: string, value: string): void {
    checkPair("set", name, value);
    this.#remove(name);
    this.#headers.push([name, value]);
  }

  /**
   * Remove every header `name`; nothing happens when there is none.
   *
   * @example Usage
   * ```ts
   * import { Headers } from "@wsgi/wsgiref/headers";
   * import assert from "node:assert/strict";
   *
   * const headers = new Headers([["X-A", "1"], ["x-a", "2"], ["Vary", "*"]]);
   * headers.delete("X-A");
   * assert.deepEqual(headers.keys(), ["Vary"]);
   * ```
   *
   * @param name The header name.
   * @throws {TypeError} When `name` is not a valid header name.
   */
  delete(name: string): void {
    checkName("delete", name);
    this.#remove(name);
  }

  /** Remove matching entries in place, keeping the wrapped list. */
  #remove(name: string): void {
    const lower = name.toLowerCase();
    const list = this.#headers;
    let kept = 0;
    for (let i = 0; i < list.length; i++) {
      if (list[i][0].toLowerCase() !== lower) list[kept++] = list[i];
    }
    list.length = kept;
  }

  /**
   * Whether there is a header `name`.
   *
   * @example Usage
   * ```ts
   * import { Headers } from "@wsgi/wsgiref/headers";
   * import assert from "node:assert/strict";
   *
   * const headers = new Headers([["Content-Length", "0"]]);
   * assert.equal(headers.has("content-length"), true);
   * assert.equal(headers.has("Content-Type"), false);
   * ```
   *
   * @param name The header name.
   * @returns `true` when present.
   * @throws {TypeError} When `name` is not a valid header name.
   */
  has(name: string): boolean {
    checkName("look up", name);
    const lower = name.toLowerCase();
    return this.#headers.some(([key]) => key.toLowerCase() === lower);
  }

  /**
   * The first value of the header `name`; when there is none, add
   * `name: value` and return `value`.
   *
   * @example Usage
   * ```ts
   * import { Headers } from "@wsgi/wsgiref/headers";
   * import assert from "node:assert/strict";
   *
   * const headers = new Headers([["Content-Type", "text/html"]]);
   * assert.equal(headers.setdefault("Content-Type", "text/plain"), "text/html");
   * assert.equal(headers.setdefault("Vary", "*"), "*");
   * assert.equal(headers.length, 2);
   * ```
   *
   * @param name The header name.
   * @param value The value to add when absent.
   * @returns The existing first value, or `value`.
   * @throws {TypeError} When `name` or `value` is not a valid header string.
   */
  setdefault(name: string, value: string): string {
    checkPair("set default for", name, value);
    const existing = this.get(name);
    if (existing !== undefined) return existing;
    this.#headers.push([name, value]);
    return value;
  }

  /**
   * Every value of the header `name`, in order; empty when absent.
   *
   * @example Usage
   * ```ts
   * import { Headers } from "@wsgi/wsgiref/headers";
   * import assert from "node:assert/strict";
   *
   * const headers = new Headers([["Vary", "a"], ["X", "1"], ["vary", "b"]]);
   * assert.deepEqual(headers.getAll("VARY"), ["a", "b"]);
   * assert.deepEqual(headers.getAll("Link"), []);
   * ```
   *
   * @param name The header name.
   * @returns The values.
   * @throws {TypeError} When `name` is not a valid header name.
   */
  getAll(name: string): string[] {
    checkName("get all values of", name);
    const lower = name.toLowerCase();
    const values: string[] = [];
    for (const [key, value] of this.#headers) {
      if (key.toLowerCase() === lower) values.push(value);
    }
    return values;
  }

  /**
   * Append a header with MIME-style parameters: `value` (unless `null`),
   * then `; name="value"` for each parameter (`_` in its name becomes `-`;
   * `\` and `"` escaped), or `; name` for a `null` or empty value.
   *
   * @example Usage
   * ```ts
   * import { Headers } from "@wsgi/wsgiref/headers";
   * import assert from "node:assert/strict";
   *
   * const headers = new Headers();
   * headers.addHeader("Content-Disposition", "attachment", { file_name: 'a "b".txt', inline: null });
   * assert.equal(
   *   headers.get("Content-Disposition"),
   *   'attachment; file-name="a \\"b\\".txt"; inline',
   * );
   * ```
   *
   * @param name The header name.
   * @param value The main value, or `null` for parameters only.
   * @param params The parameters, in order.
   * @throws {TypeError} When the name, the value, a parameter name or a
   * parameter value is not a valid header string.
   */
  addHeader(
    name: string,
    value: string | null,
    params: Record<string, string | null> = {},
  ): void {
    checkName("add", name);
    const parts: string[] = [];
    if (value !== null) {
      checkPair("add", name, value);
      parts.push(value);
    }
    if (typeof params !== "object" || params === null) {
      throw new TypeError(
        `Cannot add header ${quote(name)}: params must be an object, not ${
          typeName(params)
        } ${repr(params)}`,
      );
    }
    for (const [key, paramValue] of Object.entries(params)) {
      const paramName = key.replaceAll("_", "-");
      const problem = headerNameProblem(key) ??
        (paramValue === null ? null : headerValueProblem(paramValue));
      if (problem) {
        throw new TypeError(
          `Cannot add header ${quote(name)}: parameter ${
            quote(key)
          } ${problem}`,
        );
      }
      parts.push(
        paramValue === null ? paramName : formatParam(paramName, paramValue),
      );
    }
    this.#headers.push([name, parts.join("; ")]);
  }

  /**
   * The header names, in order, repeats included (a copy).
   *
   * @example Usage
   * ```ts
   * import { Headers } from "@wsgi/wsgiref/headers";
   * import assert from "node:assert/strict";
   *
   * const headers = new Headers([["Vary", "a"], ["Age", "1"], ["vary", "b"]]);
   * assert.deepEqual(headers.keys(), ["Vary", "Age", "vary"]);
   * assert.deepEqual(headers.values(), ["a", "1", "b"]);
   * assert.deepEqual(headers.items(), [["Vary", "a"], ["Age", "1"], ["vary", "b"]]);
   * ```
   *
   * @returns The names.
   */
  keys(): string[] {
    return this.#headers.map(([key]) => key);
  }

  /**
   * The header values, in order (a copy).
   *
   * @returns The values.
   */
  values(): string[] {
    return this.#headers.map(([, value]) => value);
  }

  /**
   * The `[name, value]` pairs, in order (copies).
   *
   * @returns The pairs.
   */
  items(): HeaderList {
    return this.#headers.map(([key, value]) => [key, value]);
  }

  /**
   * Iterate over copies of the `[name, value]` pairs.
   *
   * @returns An iterator of pairs.
   */
  *[Symbol.iterator](): Iterator<[string, string]> {
    for (const [key, value] of this.#headers) yield [key, value];
  }

  /**
   * The header block as sent on the wire: a `Name: value\r\n` line per
   * header, then `\r\n`. The wrapped list is checked again, since it may
   * have been changed directly.
   *
   * @example Usage
   * ```ts
   * import { Headers } from "@wsgi/wsgiref/headers";
   * import assert from "node:assert/strict";
   *
   * const headers = new Headers([["Content-Type", "text/plain"], ["Content-Length", "5"]]);
   * assert.equal(headers.toString(), "Content-Type: text/plain\r\nContent-Length: 5\r\n\r\n");
   * assert.equal(new Headers().toString(), "\r\n");
   * ```
   *
   * @returns The header block.
   * @throws {TypeError} When the wrapped list now holds an invalid entry.
   */
  toString(): string {
    let out = "";
    for (const entry of this.#headers) {
      if (!Array.isArray(entry) || entry.length !== 2) {
        throw notAPair("format headers: entry", entry);
      }
      checkPair("format", entry[0], entry[1]);
      out += `${entry[0]}: ${entry[1]}\r\n`;
    }
    return out + "\r\n";
  }

  /**
   * The header block of `toString()`, latin-1 encoded.
   *
   * @example Usage
   * ```ts
   * import { Headers } from "@wsgi/wsgiref/headers";
   * import assert from "node:assert/strict";
   *
   * const bytes = new Headers([["X-Name", "caf\xe9"]]).toBytes();
   * assert.deepEqual(bytes.subarray(8, 12), new Uint8Array([0x63, 0x61, 0x66, 0xe9]));
   * assert.equal(bytes.length, 16);
   * ```
   *
   * @returns The header block's bytes.
   * @throws {TypeError} As `toString()`.
   */
  toBytes(): Uint8Array {
    return encodeLatin1(this.toString(), "Header block");
  }

  /**
   * Python's `repr()` of the headers, e.g. `Headers([('A', 'b')])`, for
   * `console.log` and `Deno.inspect`.
   *
   * @returns The representation.
   */
  [Symbol.for("Deno.customInspect")](): string {
    return `Headers([${this.#headers.map((pair) => repr(pair)).join(", ")}])`;
  }
}
