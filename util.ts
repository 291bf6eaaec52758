/**
 * Small helpers for gateway-interface code, as `wsgiref.util`: rebuild URIs
 * from an environ, walk `PATH_INFO` one segment at a time, fill an environ
 * with test defaults, spot hop-by-hop headers and turn a file into an
 * iterable of blocks.
 *
 * @example Routing on the first path segment
 * ```ts
 * import { requestUri, setupTestingDefaults, shiftPathInfo } from "@wsgi/wsgiref/util";
 * import type { Environ } from "@wsgi/wsgiref/types";
 * import assert from "node:assert/strict";
 *
 * const environ: Environ = { PATH_INFO: "/blog/2024", QUERY_STRING: "q=1" };
 * setupTestingDefaults(environ);
 * assert.equal(requestUri(environ), "http://127.0.0.1/blog/2024?q=1");
 * assert.equal(shiftPathInfo(environ), "blog");
 * assert.equal(environ.SCRIPT_NAME, "/blog");
 * assert.equal(environ.PATH_INFO, "/2024");
 * ```
 *
 * @module
 */

import type { Environ, FileLike, SyncReader } from "./types.ts";
import { quote, repr, typeName } from "./_internal.ts";
import { BytesInput, StringErrorStream } from "./_io.ts";

/** HTTP/1.1 hop-by-hop headers (RFC 2616 §13.5.1), lower case. */
const HOP_BY_HOP: ReadonlySet<string> = new Set([
  "connection",
  "keep-alive",
  "proxy-authenticate",
  "proxy-authorization",
  "te",
  "trailers",
  "transfer-encoding",
  "upgrade",
]);

const HOP_BY_HOP_LENGTHS: ReadonlySet<number> = new Set(
  [...HOP_BY_HOP].map((name) => name.length),
);

/** Values of the `HTTPS` variable that mean the request came over TLS. */
const HTTPS_ON: ReadonlySet<unknown> = new Set(["yes", "on", "1"]);

/** Characters `urllib.parse.quote` never escapes. */
const ALWAYS_SAFE =
  "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~";

/** The two `safe` sets wsgiref passes to `quote` (plus `ALWAYS_SAFE`). */
const SCRIPT_NAME_SAFE = "/";
const PATH_INFO_SAFE = "/;=,";

/**
 * Per-byte output tables (the byte itself or `%XX`) for each `safe` set,
 * built on first use: a CGI request that never rebuilds a URI should not
 * pay for them at load time.
 */
const ESCAPE_TABLES = new Map<string, readonly string[]>();

function escapeTable(safe: string): readonly string[] {
  let table = ESCAPE_TABLES.get(safe);
  if (table === undefined) {
    const built: string[] = [];
    for (let byte = 0; byte < 256; byte++) {
      const ch = String.fromCharCode(byte);
      built.push(
        ALWAYS_SAFE.includes(ch) || safe.includes(ch)
          ? ch
          : "%" + (byte < 16 ? "0" : "") + byte.toString(16).toUpperCase(),
      );
    }
    ESCAPE_TABLES.set(safe, table = built);
  }
  return table;
}

function checkEnviron(environ: unknown, action: string): Environ {
  if (
    typeof environ !== "object" || environ === null || Array.isArray(environ)
  ) {
    throw wrongType(action, "environ", "an object", environ);
  }
  return environ as Environ;
}

// Errors are built apart from the checks that throw them, to keep the
// functions every request runs small: see "Startup cost" in _internal.ts.

/** The `TypeError` for an argument of the wrong type. */
function wrongType(
  action: string,
  what: string,
  type: string,
  value: unknown,
): TypeError {
  return new TypeError(
    `Cannot ${action}: ${what} must be ${type}, not ${typeName(value)} ${
      repr(value)
    }`,
  );
}

/** `environ.get(key, fallback)` for a key whose value must be a string. */
function getString(
  environ: Environ,
  key: string,
  fallback: string,
  action: string,
): string {
  if (!(key in environ)) return fallback;
  const value = environ[key];
  if (typeof value !== "string") {
    throw new TypeError(
      `Cannot ${action}: environ[${quote(key)}] must be a string, not ${
        typeName(value)
      } ${repr(value)}`,
    );
  }
  return value;
}

/**
 * `environ.get(key)` for a key wsgiref only tests for truth: missing,
 * `null` (Python's `None`) and `undefined` all give `""`.
 */
function getTruthyString(
  environ: Environ,
  key: string,
  action: string,
): string {
  const value = environ[key];
  return value === null || value === undefined
    ? ""
    : getString(environ, key, "", action);
}

/** `environ[key]` for a key that must be present and hold a string. */
function requireString(environ: Environ, key: string, action: string): string {
  if (!(key in environ)) {
    throw new TypeError(`Cannot ${action}: environ has no ${quote(key)}`);
  }
  return getString(environ, key, "", action);
}

/** Percent-encode a latin-1 string's bytes as `urllib.parse.quote` does. */
function percentEncode(
  s: string,
  safe: string,
  action: string,
  key: string,
): string {
  const table = escapeTable(safe);
  let out = "";
  for (let i = 0; i < s.length; i++) {
    const code = s.charCodeAt(i);
    if (code > 0xff) {
      throw new TypeError(
        `Cannot ${action}: ${key} contains character ${
          quote(s[i])
        } at index ${i}, which is not latin-1`,
      );
    }
    out += table[code];
  }
  return out;
}

/**
 * Guess the URL scheme from the environ: `"https"` when `HTTPS` is `"yes"`,
 * `"on"` or `"1"`, else `"http"`.
 *
 * @example Usage
 * ```ts
 * import { guessScheme } from "@wsgi/wsgiref/util";
 * import assert from "node:assert/strict";
 *
 * assert.equal(guessScheme({ HTTPS: "on" }), "https");
 * assert.equal(guessScheme({}), "http");
 * ```
 *
 * @param environ The request environment.
 * @returns `"http"` or `"https"`.
 */
export function guessScheme(environ: Environ): "http" | "https" {
  checkEnviron(environ, "guess the URL scheme");
  return "HTTPS" in environ && HTTPS_ON.has(environ.HTTPS) ? "https" : "http";
}

/**
 * The application's base URI: scheme, host (`HTTP_HOST` when set, else
 * `SERVER_NAME` plus `SERVER_PORT` unless it is the scheme's default) and
 * the percent-encoded `SCRIPT_NAME` (`/` when empty); no `PATH_INFO` or
 * query string. As in wsgiref, an `HTTP_HOST`, `SCRIPT_NAME` or
 * `QUERY_STRING` of `null` counts as empty.
 *
 * @example Usage
 * ```ts
 * import { applicationUri } from "@wsgi/wsgiref/util";
 * import assert from "node:assert/strict";
 *
 * const environ = {
 *   "wsgi.url_scheme": "https",
 *   SERVER_NAME: "example.com",
 *   SERVER_PORT: "8443",
 *   SCRIPT_NAME: "/my app",
 * };
 * assert.equal(applicationUri(environ), "https://example.com:8443/my%20app");
 * ```
 *
 * @param environ The request environment; needs `wsgi.url_scheme`, and
 * `SERVER_NAME` and `SERVER_PORT` when `HTTP_HOST` is empty, `null` or
 * missing.
 * @returns The URI.
 * @throws {TypeError} When a needed key is missing or not a string, or
 * `SCRIPT_NAME` is not a latin-1 string.
 */
export function applicationUri(environ: Environ): string {
  const action = "build the application URI";
  checkEnviron(environ, action);
  const scheme = requireString(environ, "wsgi.url_scheme", action);
  let url = scheme + "://";
  const host = getTruthyString(environ, "HTTP_HOST", action);
  if (host) {
    url += host;
  } else {
    url += requireString(environ, "SERVER_NAME", action);
    const port = requireString(environ, "SERVER_PORT", action);
    if (port !== (scheme === "https" ? "443" : "80")) url += ":" + port;
  }
  const scriptName = getTruthyString(environ, "SCRIPT_NAME", action) || "/";
  return url +
    percentEncode(scriptName, SCRIPT_NAME_SAFE, action, "SCRIPT_NAME");
}

/**
 * The full request URI: `applicationUri(environ)`, the percent-encoded
 * `PATH_INFO` (`/;=,` left as they are) and, if `includeQuery`, `?` plus
 * `QUERY_STRING` when it is not empty.
 *
 * @example Usage
 * ```ts
 * import { requestUri } from "@wsgi/wsgiref/util";
 * import assert from "node:assert/strict";
 *
 * const environ = {
 *   "wsgi.url_scheme": "http",
 *   HTTP_HOST: "example.com:8080",
 *   SCRIPT_NAME: "/app",
 *   PATH_INFO: "/a b;c=d",
 *   QUERY_STRING: "x=1",
 * };
 * assert.equal(requestUri(environ), "http://example.com:8080/app/a%20b;c=d?x=1");
 * assert.equal(requestUri(environ, false), "http://example.com:8080/app/a%20b;c=d");
 * ```
 *
 * @param environ The request environment.
 * @param includeQuery Whether to append the query string.
 * @returns The URI.
 * @throws {TypeError} As `applicationUri`, and when `PATH_INFO` is not a
 * latin-1 string.
 */
export function requestUri(environ: Environ, includeQuery = true): string {
  const action = "build the request URI";
  let url = applicationUri(environ);
  const pathInfo = percentEncode(
    getString(environ, "PATH_INFO", "", action),
    PATH_INFO_SAFE,
    action,
    "PATH_INFO",
  );
  // applicationUri() already ended the URL with "/" when SCRIPT_NAME is
  // empty, so the path's first character is dropped (as wsgiref does).
  url += getTruthyString(environ, "SCRIPT_NAME", action)
    ? pathInfo
    : pathInfo.slice(1);
  const query = getTruthyString(environ, "QUERY_STRING", action);
  if (includeQuery && query) url += "?" + query;
  return url;
}

/** `posixpath.normpath`: collapse `//`, `.` and `..` in a POSIX path. */
function normpath(path: string): string {
  if (path === "") return ".";
  let initialSlashes = path.startsWith("/") ? 1 : 0;
  // POSIX leaves exactly two leading slashes alone.
  if (path.startsWith("//") && !path.startsWith("///")) initialSlashes = 2;
  const parts: string[] = [];
  for (const part of path.split("/")) {
    if (part === "" || part === ".") continue;
    if (
      part !== ".." || (!initialSlashes && parts.length === 0) ||
      (parts.length > 0 && parts[parts.length - 1] === "..")
    ) {
      parts.push(part);
    } else if (parts.length > 0) {
      parts.pop();
    }
  }
  const joined = "/".repeat(initialSlashes) + parts.join("/");
  return joined || ".";
}

/**
 * Move one path segment from `PATH_INFO` to the end of `SCRIPT_NAME` and
 * return it; `null` when `PATH_INFO` is empty, missing or `null` (Python's
 * `None`), as wsgiref returns `None`: then the environ is left as it is,
 * `SCRIPT_NAME` included (not added, not normalised, not checked).
 * Otherwise it mutates `environ`.
 *
 * Empty and `.` segments inside the path are skipped and `SCRIPT_NAME` is
 * normalised (`..` removes the previous segment). When `PATH_INFO` is just
 * `/`, the result is `""` and `SCRIPT_NAME` gets a trailing `/`, so an
 * application can tell `/x` from `/x/`. A final `/.` returns `null` and
 * empties `PATH_INFO`.
 *
 * @example Usage
 * ```ts
 * import { shiftPathInfo } from "@wsgi/wsgiref/util";
 * import assert from "node:assert/strict";
 *
 * const environ = { SCRIPT_NAME: "/app", PATH_INFO: "/x/" };
 * assert.equal(shiftPathInfo(environ), "x");
 * assert.deepEqual(environ, { SCRIPT_NAME: "/app/x", PATH_INFO: "/" });
 * assert.equal(shiftPathInfo(environ), "");
 * assert.deepEqual(environ, { SCRIPT_NAME: "/app/x/", PATH_INFO: "" });
 * assert.equal(shiftPathInfo(environ), null);
 * assert.deepEqual(environ, { SCRIPT_NAME: "/app/x/", PATH_INFO: "" });
 *
 * const noPath = { SCRIPT_NAME: "/app/" }; // no PATH_INFO: left alone
 * assert.equal(shiftPathInfo(noPath), null);
 * assert.deepEqual(noPath, { SCRIPT_NAME: "/app/" });
 * ```
 *
 * @param environ The request environment.
 * @returns The segment moved, or `null` when none is left.
 * @throws {TypeError} When `PATH_INFO` is neither a string nor `null`, or
 * when a segment is to be moved and `SCRIPT_NAME` is present but not a
 * string (wsgiref fails there too, on `None + "/"`).
 */
export function shiftPathInfo(environ: Environ): string | null {
  const action = "shift PATH_INFO";
  checkEnviron(environ, action);
  // wsgiref: `environ.get("PATH_INFO", "")`, then None when it is false, so
  // missing, "" and None alike; nothing else is read or changed then.
  const pathInfo = getTruthyString(environ, "PATH_INFO", action);
  if (!pathInfo) return null;
  let scriptName = getString(environ, "SCRIPT_NAME", "", action);

  const parts = pathInfo.split("/");
  // Drop empty and "." segments, except the first (before the leading "/")
  // and the last one.
  const middle = parts.slice(1, -1).filter((p) => p !== "" && p !== ".");
  const rest = parts.length > 1
    ? [parts[0], ...middle, parts[parts.length - 1]]
    : parts;
  const name = rest.length > 1 ? rest[1] : undefined;
  if (name === undefined) {
    // A PATH_INFO without "/": wsgiref fails here on an index error.
    throw new TypeError(
      `Cannot ${action}: PATH_INFO ${quote(pathInfo)} does not contain "/"`,
    );
  }
  rest.splice(1, 1);

  scriptName = normpath(scriptName + "/" + name);
  if (scriptName.endsWith("/")) scriptName = scriptName.slice(0, -1);
  if (!name && !scriptName.endsWith("/")) scriptName += "/";

  environ.SCRIPT_NAME = scriptName;
  environ.PATH_INFO = rest.join("/");
  // A last segment of "." stays in the split above; it names nothing.
  return name === "." ? null : name;
}

/**
 * Fill `environ` with defaults for testing: the CGI variables
 * (`SERVER_NAME` `127.0.0.1`, `SERVER_PROTOCOL` `HTTP/1.0`, `HTTP_HOST`,
 * `REQUEST_METHOD` `GET`, `SCRIPT_NAME` `""` and `PATH_INFO` `/` when both
 * are missing, `SERVER_PORT` `80` or `443` by scheme) and every `wsgi.*`
 * key (`wsgi.version` `[1, 0]`, the flags `false`, an empty `wsgi.input`, an
 * in-memory `wsgi.errors`, `wsgi.url_scheme` from `guessScheme`). Only
 * missing keys (`!(key in environ)`) are set. Not for real servers: the
 * data is fake.
 *
 * @example Usage
 * ```ts
 * import { setupTestingDefaults } from "@wsgi/wsgiref/util";
 * import type { Environ } from "@wsgi/wsgiref/types";
 * import assert from "node:assert/strict";
 *
 * const environ: Environ = { HTTPS: "on", PATH_INFO: "/x" };
 * setupTestingDefaults(environ);
 * assert.equal(environ["wsgi.url_scheme"], "https");
 * assert.equal(environ.SERVER_PORT, "443");
 * assert.equal(environ.PATH_INFO, "/x");
 * assert.equal("SCRIPT_NAME" in environ, false);
 * ```
 *
 * @param environ The environment to complete in place.
 */
export function setupTestingDefaults(environ: Environ): void {
  checkEnviron(environ, "set up testing defaults");
  const setDefault = (key: string, value: unknown): void => {
    if (!(key in environ)) environ[key] = value;
  };
  setDefault("SERVER_NAME", "127.0.0.1");
  setDefault("SERVER_PROTOCOL", "HTTP/1.0");
  setDefault("HTTP_HOST", environ.SERVER_NAME);
  setDefault("REQUEST_METHOD", "GET");
  if (!("SCRIPT_NAME" in environ) && !("PATH_INFO" in environ)) {
    environ.SCRIPT_NAME = "";
    environ.PATH_INFO = "/";
  }
  setDefault("wsgi.version", [1, 0]);
  setDefault("wsgi.run_once", false);
  setDefault("wsgi.multithread", false);
  setDefault("wsgi.multiprocess", false);
  if (!("wsgi.input" in environ)) environ["wsgi.input"] = new BytesInput();
  if (!("wsgi.errors" in environ)) {
    environ["wsgi.errors"] = new StringErrorStream();
  }
  setDefault("wsgi.url_scheme", guessScheme(environ));
  const scheme = environ["wsgi.url_scheme"];
  if (scheme === "http") setDefault("SERVER_PORT", "80");
  else if (scheme === "https") setDefault("SERVER_PORT", "443");
}

/**
 * Whether `name` is an HTTP/1.1 hop-by-hop header (RFC 2616 §13.5.1:
 * Connection, Keep-Alive, Proxy-Authenticate, Proxy-Authorization, TE,
 * Trailers, Transfer-Encoding, Upgrade), in any case.
 *
 * @example Usage
 * ```ts
 * import { isHopByHop } from "@wsgi/wsgiref/util";
 * import assert from "node:assert/strict";
 *
 * assert.equal(isHopByHop("Connection"), true);
 * assert.equal(isHopByHop("Content-Type"), false);
 * ```
 *
 * @param name A header name.
 * @returns `true` for a hop-by-hop header.
 * @throws {TypeError} When `name` is not a string.
 */
export function isHopByHop(name: string): boolean {
  if (typeof name !== "string") {
    throw wrongType("check for a hop-by-hop header", "name", "a string", name);
  }
  // Most names (Content-Type, ...) are ruled out by their length alone,
  // without a lower-case copy: every response pays for this check.
  return HOP_BY_HOP_LENGTHS.has(name.length) &&
    HOP_BY_HOP.has(name.toLowerCase());
}

/**
 * Turn a file-like object into an iterable of blocks of at most `blksize`
 * bytes, ending at the first empty read. It is its own iterator.
 *
 * `filelike` is either a `FileLike` (`read(size)` returns bytes) or a
 * synchronous reader (`readSync(p)`, e.g. `Deno.FsFile`, used in preference
 * when both exist since `Deno.FsFile.read` is asynchronous). From a reader,
 * every block but the last is exactly `blksize` bytes. `close()` closes the
 * file-like object once, if it can be closed.
 *
 * @example Usage
 * ```ts
 * import { FileWrapper } from "@wsgi/wsgiref/util";
 * import assert from "node:assert/strict";
 *
 * const data = new TextEncoder().encode("abcdefgh");
 * let offset = 0;
 * const file = {
 *   read(size: number): Uint8Array {
 *     const chunk = data.subarray(offset, offset + size);
 *     offset += chunk.length;
 *     return chunk;
 *   },
 * };
 * const blocks = [...new FileWrapper(file, 3)];
 * assert.deepEqual(blocks.map((b) => new TextDecoder().decode(b)), ["abc", "def", "gh"]);
 * ```
 *
 * @example Serving a file
 * ```ts
 * import { FileWrapper } from "@wsgi/wsgiref/util";
 * import assert from "node:assert/strict";
 *
 * const path = await Deno.makeTempFile();
 * await Deno.writeFile(path, new Uint8Array(10_000));
 * const wrapper = new FileWrapper(Deno.openSync(path));
 * const sizes = Array.from(wrapper, (block) => block.length);
 * wrapper.close();
 * await Deno.remove(path);
 * assert.deepEqual(sizes, [8192, 1808]);
 * ```
 */
export class FileWrapper implements Iterable<Uint8Array> {
  /** The wrapped file-like object. */
  readonly filelike: FileLike | SyncReader;
  /** The largest block returned, in bytes. */
  readonly blksize: number;
  #pending: Uint8Array | null = null;
  #closed = false;

  /**
   * Wrap `filelike`.
   *
   * @param filelike A `FileLike` or a `SyncReader` such as `Deno.FsFile`.
   * @param blksize The block size in bytes, a positive integer.
   * @throws {TypeError} When `filelike` has neither `read` nor `readSync`,
   * or `blksize` is not a number.
   * @throws {RangeError} When `blksize` is not a positive integer.
   */
  constructor(filelike: FileLike | SyncReader, blksize = 8192) {
    if (
      typeof filelike !== "object" || filelike === null ||
      (typeof (filelike as Partial<SyncReader>).readSync !== "function" &&
        typeof (filelike as Partial<FileLike>).read !== "function")
    ) {
      throw new TypeError(
        `Cannot create FileWrapper: filelike must have a read or readSync method, not ${
          typeName(filelike)
        } ${repr(filelike)}`,
      );
    }
    if (typeof blksize !== "number") {
      throw new TypeError(
        `Cannot create FileWrapper: blksize must be a number, not ${
          typeName(blksize)
        } ${quote(blksize)}`,
      );
    }
    if (!Number.isSafeInteger(blksize) || blksize <= 0) {
      throw new RangeError(
        `Cannot create FileWrapper: blksize must be a positive integer, not ${blksize}`,
      );
    }
    this.filelike = filelike;
    this.blksize = blksize;
  }

  /**
   * Return this wrapper: it is its own iterator.
   *
   * @returns This wrapper.
   */
  [Symbol.iterator](): this {
    return this;
  }

  /**
   * Read the next block.
   *
   * @returns The next block, or `done` after an empty read.
   * @throws {TypeError} When `read()` returns something other than bytes.
   */
  next(): IteratorResult<Uint8Array, undefined> {
    const block = this.#read();
    return block.length > 0
      ? { done: false, value: block }
      : { done: true, value: undefined };
  }

  #read(): Uint8Array {
    const size = this.blksize;
    const pending = this.#pending;
    if (pending !== null) {
      // A read() that returned more than asked for: hand out the excess.
      this.#pending = pending.length > size ? pending.subarray(size) : null;
      return pending.subarray(0, size);
    }
    const file = this.filelike;
    if (typeof (file as Partial<SyncReader>).readSync === "function") {
      const reader = file as SyncReader;
      const block = new Uint8Array(size);
      let filled = 0;
      while (filled < size) {
        const n = reader.readSync(block.subarray(filled));
        if (n === null || n === 0) break;
        if (!Number.isInteger(n) || n < 0 || n > size - filled) {
          throw new RangeError(
            `Cannot read a block: readSync() returned ${
              repr(n)
            } for a buffer of ${size - filled} bytes`,
          );
        }
        filled += n;
      }
      return filled === size ? block : block.subarray(0, filled);
    }
    const data: unknown = (file as FileLike).read(size);
    if (data === null || data === undefined) return new Uint8Array(0);
    if (!(data instanceof Uint8Array)) {
      throw new TypeError(
        `Cannot read a block: read() returned ${typeName(data)} ${
          repr(data)
        }, not a Uint8Array`,
      );
    }
    if (data.length > size) {
      this.#pending = data.subarray(size);
      return data.subarray(0, size);
    }
    return data;
  }

  /** Close the file-like object (once), if it has a `close` method. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    const file = this.filelike as { close?: unknown };
    if (typeof file.close === "function") file.close();
  }
}
