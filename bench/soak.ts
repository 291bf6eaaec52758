/**
 * A bounded soak of `makeServer` under mixed load, checking every response
 * byte for byte:
 *
 * ```sh
 * deno task soak [--duration 30] [--requests 3000] [--concurrency 24]
 *   [--connections 16] [--wrk-threads 1] [--warmup 5] [--rounds 3]
 *   [--rss-limit 16] [--show 5] [--seed N] [--timeout-ms 0] [--in-process 0]
 * deno task soak --hostile [--only NAME]
 * ```
 *
 * With `--hostile`, it runs the attacks of `bench/_soak_hostile.ts`
 * instead (idle and slow connections, request slots, memory and disk
 * taken by unfinished requests, applications that never return) against
 * `makeServer` and the FastCGI gateway, while ordinary traffic goes on.
 *
 * The server (`bench/_soak_server.ts`) runs in a process of its own, with a
 * temporary directory of its own for spooled request bodies. While `wrk`
 * keeps `--connections` connections busy on the hello route, `--concurrency`
 * clients send requests of these kinds, each client one request at a time,
 * until `--requests` have been sent or `--duration` seconds have passed:
 *
 * - `hello`: `GET /` through `fetch`.
 * - `slow`: an async generator of ten short lines 50 ms apart, from a
 *   synchronous or an async application; through `fetch` (gzip or
 *   identity) or a raw socket (keep-alive, `Connection: close`, HTTP/1.0).
 * - `big`: an 8 MiB generator stream (sync or async generator), the same
 *   ways.
 * - `cut`: a raw socket that reads part of `big` or `slow`, then closes.
 * - `fetch-cut`: the same through `fetch`, by `reader.cancel()` or an abort.
 * - `reuse`: `slow`, `hello`, `slow` in turn on one keep-alive connection.
 * - `upload`: a body of up to 16 MiB (`fetch` with a fixed or a streamed
 *   body, a raw socket with a length or chunked), answered with its length
 *   and SHA-256.
 * - `oversized`: a body of 16 to 20 MiB, answered 413.
 * - `throw-before`: an application that throws before its headers (or
 *   whose result does), answered with the 500 page.
 * - `throw-after`: a result that throws after its first chunk: the
 *   response must be cut short, never end cleanly.
 * - `malformed`: raw requests that `Deno.serve` refuses with 400, and a
 *   chunked upload with a broken chunk (400 from the server, or closed by
 *   `Deno.serve` before any handler runs, as a bare `Deno.serve` does).
 *
 * Each response is checked whole: status, the headers that matter, every
 * body byte, and how it ended (to its end, or cut short where it must be).
 * Then the server's own records are fetched: each result's `close()` must
 * have run exactly once, each generator cut short must have been returned,
 * the exceptions logged must be the expected ones. The load runs after a
 * warm-up (`--warmup` seconds of it), in `--rounds` rounds; after the
 * warm-up and after each round the server collects its garbage and its
 * descriptors (`/proc/<pid>/fd`) and memory (`/proc/<pid>/status`,
 * `Deno.memoryUsage()`) are read; its temporary directory must be empty at
 * the end. A leak is: a descriptor more, V8's live heap and external memory
 * grown by more than 8 MiB, or native memory (`RssAnon` less V8's committed
 * heap, which V8 keeps once grown) grown by more than `--rss-limit` MiB
 * after the first round.
 *
 * It prints a summary and exits with 1 on any wrong response, wrong
 * `close()` count, leak, `wrk` error or server output on stderr. A wrong
 * response is shown with what the client saw (bytes, timings, the last
 * bytes on the wire, the error), the longest event-loop stall of client
 * and server during it, and what the server recorded for that request
 * (chunks produced and when, `close()` calls and when, the log, the
 * access-log line): enough to tell a server fault from a client one.
 *
 * Client timeouts are generous (10 to 60 s) and reported as errors.
 * `--timeout-ms` replaces those of the `GET` kinds, to see what a client
 * that gives up early looks like. `--in-process 1` runs the server in this
 * process, for diagnosis only (descriptors and memory are then shared).
 *
 * Needs `wrk` (Debian: `apt-get install wrk`) and Linux (`/proc`).
 *
 * @module
 */

import {
  BIG_SIZE,
  MAX_BODY_SIZE,
  pattern,
  sha256,
  SLOW_LINES,
  slowLine,
  type SoakRecord,
  spawnSoakServer,
} from "./_soak_server.ts";

const WRK_PATHS = ["/usr/bin/wrk", "/usr/local/bin/wrk"];
const MIB = 1024 * 1024;
/** The most V8 heap + external memory may grow over the whole run, after
 * garbage collection, in MiB. */
const HEAP_LIMIT_MIB = 8;
const ENCODER = new TextEncoder();
const DECODER = new TextDecoder();
const ERROR_PAGE =
  "A server error occurred.  Please contact the administrator.";
const SOFTWARE = /^WSGIServer\/0\.2 Deno\//;
const UPLOAD_SOURCE: Uint8Array<ArrayBuffer> = pattern(
  20 * MIB + 64 * 1024,
  0x1234567,
);
const BIG_BODY_TAIL = pattern(BIG_SIZE);

interface Options {
  duration: number;
  requests: number;
  concurrency: number;
  connections: number;
  rssLimit: number;
  show: number;
  seed: number;
  inProcess: number;
  wrkThreads: number;
  warmup: number;
  rounds: number;
  timeoutMs: number;
}

function parseOptions(args: string[]): Options {
  const options: Options = {
    duration: 30,
    requests: 3000,
    concurrency: 24,
    connections: 16,
    rssLimit: 16,
    show: 5,
    seed: Date.now() % 100000,
    inProcess: 0,
    wrkThreads: 1,
    warmup: 5,
    rounds: 3,
    timeoutMs: 0,
  };
  for (let i = 0; i < args.length; i += 2) {
    const key = args[i].replace(/^--/, "").replace(
      /-(\w)/g,
      (_, c: string) => c.toUpperCase(),
    );
    const value = Number(args[i + 1]);
    if (!(key in options) || !Number.isFinite(value)) {
      throw new TypeError(`Unknown option or bad value: ${args[i]}`);
    }
    (options as unknown as Record<string, number>)[key] = value;
  }
  return options;
}

/** A small seeded generator, so a run can be repeated (`--seed`). */
function random(seed: number): () => number {
  let x = (seed * 2654435761) >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 4294967296;
  };
}

function now(): number {
  return performance.timeOrigin + performance.now();
}

/** Stalls of this process's event loop, as the server records its own:
 * `[when, ms late]` for each tick of a 5 ms timer more than 20 ms late. */
const clientStalls: [number, number][] = [];

function watchStalls(): ReturnType<typeof setInterval> {
  let last = performance.now();
  return setInterval(() => {
    const t = performance.now();
    const late = t - last - 5;
    last = t;
    if (late > 20) {
      clientStalls.push([performance.timeOrigin + t, Math.round(late)]);
      if (clientStalls.length > 20_000) clientStalls.splice(0, 10_000);
    }
  }, 5);
}

/** The longest stall that overlaps `[from, to]`. */
function worstStall(
  stalls: [number, number][],
  from: number,
  to: number,
): number {
  let worst = 0;
  for (const [end, late] of stalls) {
    if (end >= from && end - late - 5 <= to && late > worst) worst = late;
  }
  return worst;
}

// ---------------------------------------------------------------------------
// What a client saw, and what it expected.

interface Outcome {
  via: string;
  status: number | null;
  headers: Record<string, string>;
  body: Uint8Array;
  /** The body's length, when `body` holds only its first bytes. */
  bodyLength?: number;
  /** The first difference from the expected body, found as the body came
   * (-1: none), when the body was compared as it came. */
  diff?: number;
  /** The body ended as its framing says (raw), or read to its end without
   * error (fetch). */
  complete: boolean;
  /** A client-side error: network, timeout, body read. */
  error: string | null;
  /** Raw bytes received on the wire (raw sockets), body bytes (fetch). */
  wire: number;
  tStart: number;
  tHead: number | null;
  tEnd: number;
  /** Arrival of the first body pieces, ms after `tStart`. */
  arrivals: number[];
  /** The last bytes received on the wire, escaped (raw sockets). */
  tail: string;
}

interface Expectation {
  status: number;
  headers: Record<string, string | RegExp | null>;
  /** The whole body, or what must arrive before the body is cut short. */
  body: ByteParts;
  /** `false`: the response must be cut short right after `body`. */
  complete: boolean;
}

interface Request {
  id: string;
  kind: string;
  flavor: string;
  outcome: Outcome;
  problem: string | null;
  /** Whether the application must have produced a result (one close()). */
  result: boolean;
  /** Whether the result must have been returned early (cut by the client). */
  returned: boolean;
  /** How many exceptions the server must have logged. */
  logs: number;
}

function escapeBytes(bytes: Uint8Array): string {
  let out = "";
  for (const b of bytes) {
    out += b === 0x0d
      ? "\\r"
      : b === 0x0a
      ? "\\n"
      : b >= 0x20 && b < 0x7f
      ? String.fromCharCode(b)
      : `\\x${b.toString(16).padStart(2, "0")}`;
  }
  return out;
}

/** Expected bytes: one array, or several read as one (the 8 MiB of `/big`
 * are shared, not copied per request). */
type ByteParts = Uint8Array | Uint8Array[];

function lengthOf(b: ByteParts): number {
  return Array.isArray(b)
    ? b.reduce((n, part) => n + part.length, 0)
    : b.length;
}

/** The first index where `a` and `b` differ; -1 when they are equal. */
function firstDifference(a: Uint8Array, b: ByteParts): number {
  const parts = Array.isArray(b) ? b : [b];
  let offset = 0;
  for (const part of parts) {
    const length = Math.min(a.length - offset, part.length);
    for (let i = 0; i < length; i++) {
      if (a[offset + i] !== part[i]) return offset + i;
    }
    offset += length;
    if (length < part.length) return offset;
  }
  return a.length === offset ? -1 : offset;
}

function check(outcome: Outcome, expected: Expectation): string | null {
  if (outcome.status === null) {
    return `no response: ${outcome.error ?? "connection closed"}`;
  }
  if (outcome.status !== expected.status) {
    return `status ${outcome.status}, expected ${expected.status}`;
  }
  for (const [name, want] of Object.entries(expected.headers)) {
    const got = outcome.headers[name];
    if (want === null) {
      if (got !== undefined) return `unexpected header ${name}: ${got}`;
    } else if (got === undefined) {
      return `missing header ${name}`;
    } else if (typeof want === "string" ? got !== want : !want.test(got)) {
      return `header ${name}: ${got}, expected ${want}`;
    }
  }
  const length = outcome.bodyLength ?? outcome.body.length;
  const wanted = lengthOf(expected.body);
  const diff = outcome.diff ?? firstDifference(outcome.body, expected.body);
  const clientError = outcome.error !== null
    ? ` (client error: ${outcome.error})`
    : "";
  if (expected.complete) {
    if (diff >= 0) {
      return `body of ${length} bytes, expected ${wanted}; first ` +
        `difference at byte ${diff}${clientError}`;
    }
    if (!outcome.complete) {
      return `body complete but not ended: ${outcome.error ?? "?"}`;
    }
    // E.g. a Connection: close response whose connection stayed open.
    if (outcome.error !== null) return `whole, then ${outcome.error}`;
    return null;
  }
  // The response must be cut short right after the expected bytes.
  if (diff >= 0) {
    return length === diff && length < wanted
      ? `body of ${length} bytes, expected the ${wanted} bytes sent before ` +
        `the cut${clientError}`
      : `body of ${length} bytes differs from the ${wanted} expected at ` +
        `byte ${diff}`;
  }
  if (outcome.complete) {
    return "response ended cleanly, expected it to be cut short";
  }
  return null;
}

// ---------------------------------------------------------------------------
// Raw HTTP/1.1 over Deno.connect.

/** Bytes received, kept as the pieces that came (copied once), joined
 * once at the end. With the bytes expected given, they are compared as
 * they come instead, and only the first ones are kept: no megabytes held,
 * no long comparison at the end. */
class Bytes {
  #pieces: Uint8Array[] = [];
  #expected: Uint8Array[] | null;
  #part = 0;
  #at = 0;
  length = 0;
  /** The first byte that differs from the bytes expected (-1: none yet). */
  firstDifference = -1;

  constructor(expected?: ByteParts) {
    this.#expected = expected === undefined
      ? null
      : Array.isArray(expected)
      ? expected
      : [expected];
  }

  get comparing(): boolean {
    return this.#expected !== null;
  }

  /** Keep a copy of `piece` (whose buffer may be reused), or compare it. */
  push(piece: Uint8Array): void {
    if (piece.length === 0) return;
    const expected = this.#expected;
    if (expected === null) {
      this.#pieces.push(piece.slice());
      this.length += piece.length;
      return;
    }
    if (this.length < 64) {
      this.#pieces.push(piece.slice(0, 64 - this.length));
    }
    for (let i = 0; i < piece.length && this.firstDifference < 0;) {
      const part = expected[this.#part];
      if (part === undefined) {
        this.firstDifference = this.length + i;
        break;
      }
      const take = Math.min(piece.length - i, part.length - this.#at);
      for (let j = 0; j < take; j++) {
        if (piece[i + j] !== part[this.#at + j]) {
          this.firstDifference = this.length + i + j;
          break;
        }
      }
      i += take;
      this.#at += take;
      if (this.#at === part.length) {
        this.#part++;
        this.#at = 0;
      }
    }
    this.length += piece.length;
  }

  /** The bytes (only the first 64 when comparing). */
  view(): Uint8Array {
    if (this.#pieces.length !== 1) {
      const out = new Uint8Array(
        this.#pieces.reduce((n, piece) => n + piece.length, 0),
      );
      let offset = 0;
      for (const piece of this.#pieces) {
        out.set(piece, offset);
        offset += piece.length;
      }
      this.#pieces = [out];
    }
    return this.#pieces[0];
  }

  /** The first difference from the bytes expected, with the length: -1
   * when they are the same. */
  difference(): number {
    if (this.firstDifference >= 0) return this.firstDifference;
    const expected = lengthOf(this.#expected ?? []);
    return this.length === expected ? -1 : Math.min(this.length, expected);
  }
}

/** The last bytes seen on a connection, for the report. */
class Tail {
  #bytes = new Uint8Array(0);
  push(piece: Uint8Array): void {
    const joined = new Uint8Array(
      this.#bytes.length + Math.min(48, piece.length),
    );
    joined.set(this.#bytes);
    joined.set(
      piece.subarray(Math.max(0, piece.length - 48)),
      this.#bytes.length,
    );
    this.#bytes = joined.slice(Math.max(0, joined.length - 48));
  }
  toString(): string {
    return escapeBytes(this.#bytes);
  }
}

const CRLF_CRLF = [0x0d, 0x0a, 0x0d, 0x0a];

/** An incremental parser of one response, fed the bytes as they come. */
class ResponseParser {
  status: number | null = null;
  headers: Record<string, string> = {};
  body: Bytes;
  complete = false;
  #state:
    | "head"
    | "length"
    | "close"
    | "size"
    | "data"
    | "data-end"
    | "last-end" = "head";
  #head: number[] = [];
  #line = "";
  /** Bytes left: of the body (length), of a chunk (data), of a CRLF. */
  #left = 0;
  #broken: string | null = null;

  /** @param expected The body expected, to compare as it comes. */
  constructor(expected?: ByteParts) {
    this.body = new Bytes(expected);
  }

  get broken(): string | null {
    return this.#broken;
  }

  /** Parse the next bytes of the connection. */
  feed(piece: Uint8Array): void {
    let i = 0;
    const n = piece.length;
    while (i < n && this.#broken === null) {
      if (this.complete) {
        this.#broken = `${n - i} bytes after the end of the response`;
        return;
      }
      switch (this.#state) {
        case "head": {
          const head = this.#head;
          head.push(piece[i++]);
          const k = head.length;
          if (k >= 4 && CRLF_CRLF.every((b, j) => head[k - 4 + j] === b)) {
            this.#parseHead(DECODER.decode(new Uint8Array(head.slice(0, -4))));
          }
          break;
        }
        case "length": {
          const take = Math.min(this.#left, n - i);
          this.body.push(piece.subarray(i, i + take));
          i += take;
          this.#left -= take;
          if (this.#left === 0) this.complete = true;
          break;
        }
        case "close":
          this.body.push(piece.subarray(i));
          i = n;
          break;
        case "size": {
          const c = piece[i++];
          if (c !== 0x0a) {
            this.#line += String.fromCharCode(c);
            if (this.#line.length > 64) {
              this.#broken = "chunk size line too long";
            }
            break;
          }
          const text = this.#line.replace(/\r$/, "");
          this.#line = "";
          if (!/^[0-9a-fA-F]+(;.*)?$/.test(text)) {
            this.#broken = `bad chunk size ${JSON.stringify(text)}`;
            break;
          }
          this.#left = parseInt(text, 16);
          // The last chunk, no trailers: "0\r\n\r\n".
          this.#state = this.#left === 0 ? "last-end" : "data";
          if (this.#left === 0) this.#left = 2;
          break;
        }
        case "data": {
          const take = Math.min(this.#left, n - i);
          this.body.push(piece.subarray(i, i + take));
          i += take;
          this.#left -= take;
          if (this.#left === 0) {
            this.#state = "data-end";
            this.#left = 2;
          }
          break;
        }
        case "data-end":
        case "last-end": {
          const c = piece[i++];
          if (c !== (this.#left === 2 ? 0x0d : 0x0a)) {
            this.#broken = "no CRLF after a chunk";
            break;
          }
          if (--this.#left === 0) {
            if (this.#state === "last-end") this.complete = true;
            else this.#state = "size";
          }
          break;
        }
      }
    }
  }

  #parseHead(text: string): void {
    const head = text.split("\r\n");
    const match = /^HTTP\/1\.[01] (\d{3})/.exec(head[0]);
    if (match === null) {
      this.#broken = `bad status line ${JSON.stringify(head[0])}`;
      return;
    }
    this.status = Number(match[1]);
    for (const line of head.slice(1)) {
      const colon = line.indexOf(":");
      const name = line.slice(0, colon).toLowerCase();
      const value = line.slice(colon + 1).trim();
      this.headers[name] = name in this.headers
        ? `${this.headers[name]}, ${value}`
        : value;
    }
    if (/chunked/i.test(this.headers["transfer-encoding"] ?? "")) {
      this.#state = "size";
    } else if ("content-length" in this.headers) {
      this.#left = Number(this.headers["content-length"]);
      this.#state = "length";
      if (this.#left === 0) this.complete = true;
    } else {
      this.#state = "close";
    }
  }

  /** At the end of the stream: a close-delimited body ends here. */
  eof(): void {
    if (this.status !== null && this.#state === "close") this.complete = true;
  }
}

interface RawOptions {
  timeoutMs: number;
  /** The body expected: compared as it comes, not kept. */
  expect?: ByteParts;
  /** Close once this many body bytes have arrived. */
  cutAfter?: number;
  /** Keep reading to the end of the connection, not only of the response. */
  toEof?: boolean;
}

async function rawExchange(
  port: number,
  via: string,
  send: (conn: Deno.TcpConn) => Promise<void>,
  options: RawOptions,
): Promise<Outcome & { cut: boolean }> {
  const tStart = now();
  const tail = new Tail();
  let wire = 0;
  const parser = new ResponseParser(options.expect);
  const arrivals: number[] = [];
  let tHead: number | null = null;
  let error: string | null = null;
  let cut = false;
  let conn: Deno.TcpConn | null = null;
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      conn?.close();
    } catch { /* closed */ }
  }, options.timeoutMs);
  let sendError: unknown = null;
  try {
    conn = await Deno.connect({ hostname: "127.0.0.1", port });
    const sending = send(conn).catch((e) => sendError = e);
    const buffer = new Uint8Array(256 * 1024);
    for (;;) {
      const n = await conn.read(buffer);
      if (n === null) {
        parser.eof();
        break;
      }
      const piece = buffer.subarray(0, n);
      wire += n;
      tail.push(piece);
      const before = parser.body.length;
      parser.feed(piece);
      if (tHead === null && parser.status !== null) tHead = now();
      if (parser.body.length > before && arrivals.length < 16) {
        arrivals.push(Math.round(now() - tStart));
      }
      if (parser.broken !== null) {
        error = parser.broken;
        break;
      }
      if (
        options.cutAfter !== undefined &&
        parser.body.length >= options.cutAfter
      ) {
        cut = true;
        break;
      }
      if (parser.complete && !options.toEof) break;
    }
    void sending;
  } catch (e) {
    error = timedOut ? `timeout after ${options.timeoutMs} ms` : String(e);
  } finally {
    clearTimeout(timer);
    try {
      conn?.close();
    } catch { /* closed */ }
  }
  if (error === null && timedOut) {
    error = `timeout after ${options.timeoutMs} ms`;
  }
  if (
    error === null && sendError !== null && parser.status === null
  ) error = `send: ${sendError}`;
  return {
    via,
    status: parser.status,
    headers: parser.headers,
    body: parser.body.view(),
    ...(parser.body.comparing
      ? { bodyLength: parser.body.length, diff: parser.body.difference() }
      : {}),
    complete: parser.complete,
    error,
    wire,
    tStart,
    tHead,
    tEnd: now(),
    arrivals,
    tail: String(tail),
    cut,
  };
}

/** One request and its response on an open keep-alive connection. */
async function exchangeOn(
  conn: Deno.TcpConn,
  via: string,
  request: Uint8Array,
  timeoutMs: number,
): Promise<Outcome> {
  const tStart = now();
  const tail = new Tail();
  let wire = 0;
  const parser = new ResponseParser();
  const arrivals: number[] = [];
  let tHead: number | null = null;
  let error: string | null = null;
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      conn.close();
    } catch { /* closed */ }
  }, timeoutMs);
  try {
    await writeAll(conn, request);
    const buffer = new Uint8Array(64 * 1024);
    while (!parser.complete) {
      const n = await conn.read(buffer);
      if (n === null) {
        parser.eof();
        error ??= "connection closed";
        break;
      }
      const piece = buffer.subarray(0, n);
      wire += n;
      tail.push(piece);
      const before = parser.body.length;
      parser.feed(piece);
      if (tHead === null && parser.status !== null) tHead = now();
      if (parser.body.length > before && arrivals.length < 16) {
        arrivals.push(Math.round(now() - tStart));
      }
      if (parser.broken !== null) {
        error = parser.broken;
        break;
      }
    }
  } catch (e) {
    error = timedOut ? `timeout after ${timeoutMs} ms` : String(e);
  } finally {
    clearTimeout(timer);
  }
  return {
    via,
    status: parser.status,
    headers: parser.headers,
    body: parser.body.view(),
    ...(parser.body.comparing
      ? { bodyLength: parser.body.length, diff: parser.body.difference() }
      : {}),
    complete: parser.complete,
    error,
    wire,
    tStart,
    tHead,
    tEnd: now(),
    arrivals,
    tail: String(tail),
  };
}

function failed(error: string): Outcome {
  const t = now();
  return {
    via: "-",
    status: null,
    headers: {},
    body: new Uint8Array(0),
    complete: false,
    error,
    wire: 0,
    tStart: t,
    tHead: null,
    tEnd: t,
    arrivals: [],
    tail: "",
  };
}

async function writeAll(conn: Deno.TcpConn, data: Uint8Array): Promise<void> {
  for (let offset = 0; offset < data.length;) {
    offset += await conn.write(data.subarray(offset));
  }
}

function requestHead(
  method: string,
  target: string,
  id: string,
  extra: string[] = [],
  version = "1.1",
): Uint8Array {
  return ENCODER.encode(
    [
      `${method} ${target} HTTP/${version}`,
      "Host: 127.0.0.1",
      `X-Soak-Id: ${id}`,
      ...extra,
      "",
      "",
    ].join("\r\n"),
  );
}

// ---------------------------------------------------------------------------
// fetch.

async function fetchExchange(
  client: Deno.HttpClient,
  via: string,
  url: string,
  init: RequestInit,
  timeoutMs: number,
  expect?: ByteParts,
): Promise<Outcome> {
  const tStart = now();
  let tHead: number | null = null;
  const body = new Bytes(expect);
  const arrivals: number[] = [];
  let status: number | null = null;
  const headers: Record<string, string> = {};
  let error: string | null = null;
  let complete = false;
  try {
    const response = await fetch(url, {
      ...init,
      client,
      signal: AbortSignal.timeout(timeoutMs),
    });
    tHead = now();
    status = response.status;
    response.headers.forEach((value, name) => headers[name] = value);
    if (response.body !== null) {
      const reader = response.body.getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        body.push(value);
        if (arrivals.length < 16) arrivals.push(Math.round(now() - tStart));
      }
    }
    complete = true;
  } catch (e) {
    error = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
  }
  return {
    via,
    status,
    headers,
    body: body.view(),
    ...(body.comparing
      ? { bodyLength: body.length, diff: body.difference() }
      : {}),
    complete,
    error,
    wire: body.length,
    tStart,
    tHead,
    tEnd: now(),
    arrivals,
    tail: "",
  };
}

// ---------------------------------------------------------------------------
// The kinds of request.

interface Context {
  port: number;
  base: string;
  client: Deno.HttpClient;
  rand: () => number;
}

/** Runs one request (or a few on one connection: `more`, with ids of
 * their own). */
type Runner = (
  ctx: Context,
  id: string,
) => Promise<Omit<Request, "id"> & { more?: Request[] }>;

const TEXT_HEADERS = {
  "content-type": "text/plain",
  server: SOFTWARE,
};

function pick<T>(rand: () => number, items: T[]): T {
  return items[Math.floor(rand() * items.length)];
}

function slowBody(id: string, lines = SLOW_LINES): Uint8Array {
  let text = "";
  for (let i = 0; i < lines; i++) text += slowLine(id, i);
  return ENCODER.encode(text);
}

function bigBody(id: string): Uint8Array[] {
  return [ENCODER.encode(`big ${id}\n`), BIG_BODY_TAIL];
}

/** A client timeout that replaces the usual ones of `get()` (the
 * `--timeout-ms` option), to see what a client that gives up looks like. */
let timeoutOverride: number | null = null;

/** A GET through fetch or a raw socket, keep-alive or not. */
async function get(
  ctx: Context,
  id: string,
  target: string,
  timeoutMs: number,
  mode: typeof GET_MODES[number],
  expect?: ByteParts,
): Promise<Outcome> {
  timeoutMs = timeoutOverride ?? timeoutMs;
  if (mode === "fetch" || mode === "fetch-identity") {
    return await fetchExchange(
      ctx.client,
      mode,
      ctx.base + target,
      {
        headers: {
          "X-Soak-Id": id,
          ...(mode === "fetch-identity"
            ? { "Accept-Encoding": "identity" }
            : {}),
        },
      },
      timeoutMs,
      expect,
    );
  }
  const close = mode === "raw-close";
  const http10 = mode === "raw-http10";
  return await rawExchange(
    ctx.port,
    mode,
    (conn) =>
      writeAll(
        conn,
        requestHead(
          "GET",
          target,
          id,
          close ? ["Connection: close"] : [],
          http10 ? "1.0" : "1.1",
        ),
      ),
    { timeoutMs, toEof: close || http10, expect },
  );
}

/** Upload bodies: `UPLOAD_VARIANTS` sizes up to `MAX_BODY_SIZE` (most of
 * them small), then `OVERSIZED_VARIANTS` over it, up to 20 MiB. Each is
 * made once, with its `Blob` for fetch and its digest, so that the client
 * spends its time sending, not hashing. */
const UPLOAD_VARIANTS = 48;
const OVERSIZED_VARIANTS = 8;

interface UploadBody {
  size: number;
  data: Uint8Array<ArrayBuffer>;
  blob: Blob;
  digest: string;
}

const uploadBodies = new Map<number, Promise<UploadBody>>();

function uploadBody(variant: number): Promise<UploadBody> {
  let found = uploadBodies.get(variant);
  if (found === undefined) {
    const pick = random(variant + 1);
    const size = variant < UPLOAD_VARIANTS
      ? Math.floor(MAX_BODY_SIZE * pick() ** 3)
      : MAX_BODY_SIZE + 1 + Math.floor(pick() * (20 * MIB - MAX_BODY_SIZE));
    const offset = Math.floor(pick() * 64 * 1024);
    const data = UPLOAD_SOURCE.subarray(offset, offset + size);
    found = sha256(data.slice()).then((digest) => ({
      size,
      data,
      blob: new Blob([data]),
      digest,
    }));
    uploadBodies.set(variant, found);
  }
  return found;
}

const GET_MODES = [
  "fetch",
  "fetch-identity",
  "raw",
  "raw-close",
  "raw-http10",
] as const;

const RUNNERS: Record<string, [number, Runner]> = {
  hello: [8, async (ctx) => {
    const outcome = await fetchExchange(
      ctx.client,
      "fetch",
      ctx.base + "/",
      {},
      10_000,
    );
    return {
      kind: "hello",
      flavor: "fetch",
      outcome,
      problem: check(outcome, {
        status: 200,
        headers: { ...TEXT_HEADERS, "content-length": "12" },
        body: ENCODER.encode("Hello world!"),
        complete: true,
      }),
      result: false,
      returned: false,
      logs: 0,
    };
  }],
  slow: [30, async (ctx, id) => {
    const mode = pick(ctx.rand, [...GET_MODES]);
    const async = ctx.rand() < 0.5;
    const outcome = await get(
      ctx,
      id,
      `/slow${async ? "?async=1" : ""}`,
      15_000,
      mode,
    );
    const headers: Expectation["headers"] = { ...TEXT_HEADERS };
    if (mode !== "fetch") headers["content-encoding"] = null;
    if (mode === "raw" || mode === "raw-close") {
      headers["transfer-encoding"] = "chunked";
    }
    return {
      kind: "slow",
      flavor: `${mode}${async ? " async-app" : ""}`,
      outcome,
      problem: check(outcome, {
        status: 200,
        headers,
        body: slowBody(id),
        complete: true,
      }),
      result: true,
      returned: false,
      logs: 0,
    };
  }],
  big: [10, async (ctx, id) => {
    const mode = pick(ctx.rand, [...GET_MODES]);
    const async = ctx.rand() < 0.5;
    const expected = bigBody(id);
    const outcome = await get(
      ctx,
      id,
      `/big${async ? "?async=1" : ""}`,
      60_000,
      mode,
      expected,
    );
    return {
      kind: "big",
      flavor: `${mode}${async ? " async-generator" : ""}`,
      outcome,
      problem: check(outcome, {
        status: 200,
        headers: {
          "content-type": "application/octet-stream",
          server: SOFTWARE,
          "content-length": null,
        },
        body: expected,
        complete: true,
      }),
      result: true,
      returned: false,
      logs: 0,
    };
  }],
  cut: [10, async (ctx, id) => {
    const slow = ctx.rand() < 0.5;
    const async = ctx.rand() < 0.5;
    const expected = slow ? slowBody(id) : bigBody(id);
    // Cut after a few lines, or somewhere in the first 2 MiB.
    const cutAfter = slow
      ? slowBody(id, 1 + Math.floor(ctx.rand() * 4)).length
      : 1 + Math.floor(ctx.rand() * 2 * MIB);
    const target = `/${slow ? "slow" : "big"}${async ? "?async=1" : ""}`;
    const outcome = await rawExchange(
      ctx.port,
      "raw",
      (conn) => writeAll(conn, requestHead("GET", target, id)),
      { timeoutMs: 15_000, cutAfter, expect: expected },
    );
    let problem: string | null = null;
    if (outcome.status !== 200) {
      problem = `status ${outcome.status}: ${outcome.error}`;
    } else if (!outcome.cut) {
      problem = `not cut: ${outcome.error ?? "response ended first"}`;
    } else {
      const diff = outcome.diff ?? firstDifference(outcome.body, expected);
      if (diff >= 0 && diff < (outcome.bodyLength ?? outcome.body.length)) {
        problem = `body differs from the expected prefix at byte ${diff}`;
      }
    }
    return {
      kind: "cut",
      flavor: `raw ${slow ? "slow" : "big"} after ${cutAfter} bytes${
        async ? " async" : ""
      }`,
      outcome,
      problem,
      result: true,
      returned: true,
      logs: 0,
    };
  }],
  upload: [14, async (ctx, id) => {
    const { size, data, blob, digest } = await uploadBody(
      Math.floor(ctx.rand() * UPLOAD_VARIANTS),
    );
    const expected = ENCODER.encode(`${size} ${digest}\n`);
    const mode = pick(ctx.rand, [
      "fetch",
      "fetch-stream",
      "raw",
      "raw-chunked",
    ]);
    let outcome: Outcome;
    if (mode === "fetch" || mode === "fetch-stream") {
      let body: BodyInit = blob;
      if (mode === "fetch-stream") {
        let at = 0;
        body = new ReadableStream<Uint8Array>({
          pull(controller) {
            if (at >= data.length) return controller.close();
            const piece = 1 + Math.floor(ctx.rand() * 200 * 1024);
            controller.enqueue(data.slice(at, at + piece));
            at += piece;
          },
        });
      }
      outcome = await fetchExchange(ctx.client, mode, ctx.base + "/upload", {
        method: "POST",
        headers: {
          "X-Soak-Id": id,
          "Content-Type": "application/octet-stream",
        },
        body,
      }, 60_000);
    } else {
      outcome = await rawExchange(ctx.port, mode, async (conn) => {
        if (mode === "raw") {
          await writeAll(
            conn,
            requestHead("POST", "/upload", id, [`Content-Length: ${size}`]),
          );
          await writeAll(conn, data);
          return;
        }
        await writeAll(
          conn,
          requestHead("POST", "/upload", id, ["Transfer-Encoding: chunked"]),
        );
        for (let at = 0; at < data.length; at += 300 * 1024) {
          const piece = data.subarray(at, at + 300 * 1024);
          await writeAll(
            conn,
            ENCODER.encode(`${piece.length.toString(16)}\r\n`),
          );
          await writeAll(conn, piece);
          await writeAll(conn, ENCODER.encode("\r\n"));
        }
        await writeAll(conn, ENCODER.encode("0\r\n\r\n"));
      }, { timeoutMs: 60_000 });
    }
    return {
      kind: "upload",
      flavor: `${mode} ${size} bytes`,
      outcome,
      problem: check(outcome, {
        status: 200,
        headers: { ...TEXT_HEADERS },
        body: expected,
        complete: true,
      }),
      result: true,
      returned: false,
      logs: 0,
    };
  }],
  oversized: [6, async (ctx, id) => {
    const { size, data, blob } = await uploadBody(
      UPLOAD_VARIANTS + Math.floor(ctx.rand() * OVERSIZED_VARIANTS),
    );
    const mode = pick(ctx.rand, [
      "raw",
      "raw-chunked",
      "fetch",
      "fetch-stream",
    ]);
    let outcome: Outcome;
    if (mode === "fetch" || mode === "fetch-stream") {
      outcome = await fetchExchange(ctx.client, mode, ctx.base + "/upload", {
        method: "POST",
        headers: { "X-Soak-Id": id },
        body: mode === "fetch" ? blob : ReadableStream.from(
          (function* () {
            for (let at = 0; at < data.length; at += 256 * 1024) {
              yield data.slice(at, at + 256 * 1024);
            }
          })(),
        ),
      }, 60_000);
    } else {
      const chunked = mode === "raw-chunked";
      outcome = await rawExchange(ctx.port, mode, async (conn) => {
        await writeAll(
          conn,
          requestHead("POST", "/upload", id, [
            chunked ? "Transfer-Encoding: chunked" : `Content-Length: ${size}`,
          ]),
        );
        if (!chunked) return await writeAll(conn, data);
        for (let at = 0; at < data.length; at += 256 * 1024) {
          const piece = data.subarray(at, at + 256 * 1024);
          await writeAll(
            conn,
            ENCODER.encode(`${piece.length.toString(16)}\r\n`),
          );
          await writeAll(conn, piece);
          await writeAll(conn, ENCODER.encode("\r\n"));
        }
        await writeAll(conn, ENCODER.encode("0\r\n\r\n"));
      }, { timeoutMs: 60_000 });
    }
    return {
      kind: "oversized",
      flavor: `${mode} ${size} bytes`,
      outcome,
      problem: check(outcome, {
        status: 413,
        headers: {
          "content-type": "text/plain; charset=utf-8",
          server: SOFTWARE,
        },
        body: ENCODER.encode(
          `The request body is larger than ${MAX_BODY_SIZE} bytes.\n`,
        ),
        complete: true,
      }),
      result: false,
      returned: false,
      logs: 0,
    };
  }],
  reuse: [6, async (ctx, id) => {
    // Three requests in turn on one keep-alive connection: a slow stream, a
    // hello, a slow stream again; each response must be whole.
    const ids = [id, `${id}.2`, `${id}.3`];
    const targets = ["/slow", "/", "/slow?async=1"];
    const requests: Request[] = [];
    const port = ctx.port;
    let conn: Deno.TcpConn | null = null;
    try {
      conn = await Deno.connect({ hostname: "127.0.0.1", port });
      for (let i = 0; i < 3; i++) {
        const outcome = await exchangeOn(
          conn,
          `raw-reuse ${i + 1}/3`,
          requestHead("GET", targets[i], ids[i]),
          15_000,
        );
        const hello = targets[i] === "/";
        requests.push({
          id: ids[i],
          kind: "reuse",
          flavor: `raw-reuse ${i + 1}/3 ${targets[i]}`,
          outcome,
          problem: check(outcome, {
            status: 200,
            headers: { ...TEXT_HEADERS },
            body: hello ? ENCODER.encode("Hello world!") : slowBody(ids[i]),
            complete: true,
          }),
          result: !hello,
          returned: false,
          logs: 0,
        });
        if (requests.at(-1)!.problem !== null) break;
      }
    } catch (error) {
      requests.push({
        id: ids[requests.length],
        kind: "reuse",
        flavor: "raw-reuse connect",
        outcome: failed(String(error)),
        problem: `connection: ${error}`,
        result: false,
        returned: false,
        logs: 0,
      });
    } finally {
      try {
        conn?.close();
      } catch { /* closed */ }
    }
    const [first, ...more] = requests;
    return { ...first, more };
  }],
  "fetch-cut": [5, async (ctx, id) => {
    // fetch, then the client stops reading part-way: reader.cancel() or
    // an abort.
    const slow = ctx.rand() < 0.5;
    const abort = ctx.rand() < 0.5;
    const expected = slow ? slowBody(id) : bigBody(id);
    const cutAfter = slow
      ? slowBody(id, 1 + Math.floor(ctx.rand() * 4)).length
      : 1 + Math.floor(ctx.rand() * 2 * MIB);
    const controller = new AbortController();
    const tStart = now();
    const body = new Bytes(expected);
    const arrivals: number[] = [];
    let status: number | null = null;
    let error: string | null = null;
    let cut = false;
    const timer = setTimeout(
      () => controller.abort(new Error("timeout")),
      15_000,
    );
    try {
      const response = await fetch(
        `${ctx.base}/${slow ? "slow" : "big"}`,
        {
          client: ctx.client,
          headers: { "X-Soak-Id": id, "Accept-Encoding": "identity" },
          signal: controller.signal,
        },
      );
      status = response.status;
      const reader = response.body!.getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        body.push(value);
        if (arrivals.length < 16) arrivals.push(Math.round(now() - tStart));
        if (body.length >= cutAfter) {
          cut = true;
          if (abort) controller.abort();
          else await reader.cancel();
          break;
        }
      }
    } catch (e) {
      error = String(e);
    } finally {
      clearTimeout(timer);
    }
    const outcome: Outcome = {
      via: abort ? "fetch-abort" : "fetch-cancel",
      status,
      headers: {},
      body: body.view(),
      bodyLength: body.length,
      diff: body.difference(),
      complete: false,
      error,
      wire: body.length,
      tStart,
      tHead: null,
      tEnd: now(),
      arrivals,
      tail: "",
    };
    let problem: string | null = null;
    if (status !== 200) problem = `status ${status}: ${error}`;
    else if (!cut) problem = `not cut: ${error ?? "response ended first"}`;
    else {
      const diff = outcome.diff ?? firstDifference(outcome.body, expected);
      if (diff >= 0 && diff < (outcome.bodyLength ?? outcome.body.length)) {
        problem = `body differs from the expected prefix at byte ${diff}`;
      }
    }
    return {
      kind: "fetch-cut",
      flavor: `${outcome.via} ${slow ? "slow" : "big"} after ${cutAfter} bytes`,
      outcome,
      problem,
      result: true,
      returned: true,
      logs: 0,
    };
  }],
  "throw-before": [8, async (ctx, id) => {
    const iter = ctx.rand() < 0.5;
    const mode = pick(ctx.rand, [...GET_MODES]);
    const outcome = await get(
      ctx,
      id,
      `/throw-before${iter ? "?mode=iter" : ""}`,
      10_000,
      mode,
    );
    return {
      kind: "throw-before",
      flavor: `${mode}${iter ? " in next()" : " in the app"}`,
      outcome,
      problem: check(outcome, {
        status: 500,
        headers: { ...TEXT_HEADERS },
        body: ENCODER.encode(ERROR_PAGE),
        complete: true,
      }),
      result: iter,
      returned: false,
      logs: 1,
    };
  }],
  "throw-after": [8, async (ctx, id) => {
    const async = ctx.rand() < 0.5;
    const mode = pick(ctx.rand, ["fetch-identity", "raw"] as const);
    const outcome = await get(
      ctx,
      id,
      `/throw-after${async ? "?async=1" : ""}`,
      10_000,
      mode,
    );
    return {
      kind: "throw-after",
      flavor: `${mode}${async ? " async" : ""}`,
      outcome,
      problem: check(outcome, {
        status: 200,
        headers: { ...TEXT_HEADERS },
        body: ENCODER.encode(`partial ${id}\n`),
        complete: false,
      }),
      result: true,
      returned: false,
      logs: 1,
    };
  }],
  malformed: [8, async (ctx, id) => {
    const cases: [string, string, boolean][] = [
      ["no colon", `GET / HTTP/1.1\r\nHost: a\r\nBad Header\r\n\r\n`, false],
      ["bad request line", "FOO\r\n\r\n", false],
      [
        "two lengths",
        "POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n" +
        "Content-Length: 6\r\n\r\nhello!",
        false,
      ],
      [
        "bad chunk size",
        `POST /upload HTTP/1.1\r\nHost: a\r\nX-Soak-Id: ${id}\r\n` +
        "Transfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\nZZ\r\n",
        true,
      ],
    ];
    const [name, text, reachesServer] = pick(ctx.rand, cases);
    const outcome = await rawExchange(ctx.port, "raw", async (conn) => {
      if (!reachesServer) return await writeAll(conn, ENCODER.encode(text));
      // The broken chunk comes a little later: when it comes with the head,
      // Deno.serve refuses the request before any handler runs.
      const at = text.indexOf("ZZ");
      await writeAll(conn, ENCODER.encode(text.slice(0, at)));
      await new Promise((r) => setTimeout(r, 20));
      await writeAll(conn, ENCODER.encode(text.slice(at)));
    }, { timeoutMs: 10_000 });
    let problem: string | null;
    if (reachesServer) {
      // Under load the broken chunk may still be read before the handler
      // runs: then Deno.serve closes the connection without a response and
      // without calling the handler (as a bare Deno.serve does), which the
      // server records confirm (see refusedBeforeHandler).
      problem = outcome.status === null && outcome.wire === 0 &&
          outcome.error === null
        ? null
        : check(outcome, {
          status: 400,
          headers: { "content-type": "text/plain; charset=utf-8" },
          body: ENCODER.encode("The request body could not be read.\n"),
          complete: true,
        });
    } else {
      problem = outcome.status === 400 ? null : `status ${outcome.status}, ` +
        `expected 400 (${outcome.error ?? "no error"})`;
    }
    return {
      kind: "malformed",
      flavor: name,
      outcome,
      problem,
      result: false,
      returned: false,
      logs: 0,
    };
  }],
};

// ---------------------------------------------------------------------------
// The server process.

interface Server {
  pid: number;
  port: number;
  stderr: string[];
  stop(): Promise<void>;
}

/** The server in this process (`--in-process 1`): for diagnosis only, its
 * descriptors and memory are mixed with the clients'. */
async function startInProcess(tempDir: string): Promise<Server> {
  const { startSoakServer } = await import("./_soak_server.ts");
  const server = startSoakServer(tempDir);
  return {
    pid: Deno.pid,
    port: server.serverPort,
    stderr: [],
    stop: () => server.shutdown(),
  };
}

function startServer(tempDir: string): Promise<Server> {
  return spawnSoakServer(["--temp-dir", tempDir]);
}

async function fdCount(pid: number): Promise<number> {
  let count = 0;
  for await (const _ of Deno.readDir(`/proc/${pid}/fd`)) count++;
  return count;
}

/** `VmRSS` and `RssAnon` (the part not backed by files: the binary's code
 * pages come in as code paths first run, and are no leak) in MiB. */
async function rssMiB(pid: number): Promise<{ rss: number; anon: number }> {
  const status = await Deno.readTextFile(`/proc/${pid}/status`);
  const kib = (key: string) =>
    Number(new RegExp(`^${key}:\\s+(\\d+) kB$`, "m").exec(status)?.[1]);
  return { rss: kib("VmRSS") / 1024, anon: kib("RssAnon") / 1024 };
}

interface Settled {
  fds: number;
  /** `VmRSS`, MiB. */
  rss: number;
  /** `RssAnon`, MiB. */
  anon: number;
  /** V8's live heap and the memory its ArrayBuffers hold, MiB. */
  heap: number;
  /** The memory V8 has committed for its heap (it keeps it after a
   * collection), MiB. */
  heapTotal: number;
  /** `RssAnon` without V8's committed heap: the native memory, MiB. */
  native: number;
}

/** A control route, on a connection of its own that is closed after. */
async function control(port: number, path: string): Promise<unknown> {
  const outcome = await rawExchange(
    port,
    "raw",
    (conn) =>
      writeAll(
        conn,
        ENCODER.encode(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`),
      ),
    { timeoutMs: 30_000 },
  );
  if (outcome.status !== 200) {
    throw new Error(`${path}: ${outcome.status} ${outcome.error}`);
  }
  return JSON.parse(DECODER.decode(outcome.body));
}

/** Garbage-collect the server, then read its descriptors and memory once
 * they have settled (up to `waitMs`, for connections still closing). */
async function settle(
  server: Server,
  target: number | null,
  waitMs: number,
): Promise<Settled> {
  const deadline = now() + waitMs;
  let fds = 0;
  let heap = 0;
  let heapTotal = 0;
  for (;;) {
    const usage = await control(server.port, "/__soak/gc") as {
      heapUsed: number;
      heapTotal: number;
      external: number;
    };
    heap = (usage.heapUsed + usage.external) / MIB;
    heapTotal = usage.heapTotal / MIB;
    await new Promise((r) => setTimeout(r, 200));
    fds = await fdCount(server.pid);
    if (target === null || fds <= target || now() > deadline) break;
  }
  const { rss, anon } = await rssMiB(server.pid);
  return { fds, rss, anon, heap, heapTotal, native: anon - heapTotal };
}

// ---------------------------------------------------------------------------
// wrk.

async function findWrk(): Promise<string | null> {
  for (const path of WRK_PATHS) {
    try {
      if ((await Deno.stat(path)).isFile) return path;
    } catch {
      // Not there.
    }
  }
  return null;
}

interface WrkSummary {
  requests: number;
  errors: string | null;
  non2xx: number;
  text: string;
}

function startWrk(
  wrk: string,
  port: number,
  connections: number,
  threads: number,
  seconds: number,
): Promise<WrkSummary> {
  const command = new Deno.Command(wrk, {
    args: [
      `-t${threads}`,
      `-c${connections}`,
      `-d${seconds}s`,
      "--timeout",
      "10s",
      `http://127.0.0.1:${port}/`,
    ],
    stdout: "piped",
    stderr: "piped",
  });
  return command.output().then(({ stdout, stderr }) => {
    const text = DECODER.decode(stdout) + DECODER.decode(stderr);
    return {
      requests: Number(/(\d+) requests in/.exec(text)?.[1] ?? 0),
      errors: /Socket errors:.*/.exec(text)?.[0] ?? null,
      non2xx: Number(/Non-2xx or 3xx responses: (\d+)/.exec(text)?.[1] ?? 0),
      text,
    };
  });
}

// ---------------------------------------------------------------------------
// The run.

function describe(
  request: Request,
  record: SoakRecord | undefined,
  serverStalls: [number, number][],
): string {
  const o = request.outcome;
  const rel = (t: number | null) =>
    t === null ? "-" : `${Math.round(t - o.tStart)} ms`;
  const lines = [
    `${request.kind} [${request.flavor}] id ${request.id}: ${request.problem}`,
    `  client: status ${o.status}, ${
      o.bodyLength ?? o.body.length
    } body bytes (${o.wire} on ` +
    `the wire), ${o.complete ? "ended" : "not ended"}, error ${o.error}; ` +
    `head at ${rel(o.tHead)}, end at ${rel(o.tEnd)}; body arrivals (ms) ` +
    `[${o.arrivals.join(", ")}]`,
  ];
  if (o.tail !== "") lines.push(`  last bytes on the wire: "${o.tail}"`);
  lines.push(
    `  event-loop stalls during the request: client ${
      worstStall(clientStalls, o.tStart, o.tEnd)
    } ms, server ${worstStall(serverStalls, o.tStart, o.tEnd)} ms (longest)`,
  );
  if (o.headers["content-encoding"]) {
    lines.push(`  content-encoding: ${o.headers["content-encoding"]}`);
  }
  if (record === undefined) {
    lines.push("  server: no record of this request");
  } else {
    lines.push(
      `  server: app called ${record.appCalls}x, result ${record.result}, ` +
        `${record.yielded} chunks / ${record.bytes} bytes produced at ` +
        `[${record.yieldAt.map(rel).join(", ")}], iteration ended ` +
        `${rel(record.doneAt)}, finalized ${rel(record.finalizedAt)}, ` +
        `close() ${record.closes}x at [${record.closeAt.map(rel).join(", ")}]`,
      `  server log: ${
        record.logs.length === 0
          ? "nothing"
          : record.logs.map((l) => l.split("\n")[0]).join(" | ")
      }; access log at ${rel(record.accessAt)}: ${record.access}`,
    );
  }
  return lines.join("\n");
}

async function main(): Promise<number> {
  const options = parseOptions(Deno.args);
  Deno.unrefTimer(watchStalls());
  // Every loop is bounded; this bounds the whole run too, whatever hangs.
  const limit = (options.warmup + options.duration + 180) * 1000;
  Deno.unrefTimer(setTimeout(() => {
    console.error(`soak: FAILED: still running after ${limit / 1000} s`);
    Deno.exit(3);
  }, limit));
  if (options.timeoutMs > 0) timeoutOverride = options.timeoutMs;
  const wrk = await findWrk();
  if (wrk === null) {
    console.error("wrk is not installed: apt-get install wrk");
    return 2;
  }
  const tempDir = await Deno.makeTempDir({ prefix: "wsgiref-soak-" });
  const inProcess = options.inProcess !== 0;
  const server = inProcess
    ? await startInProcess(tempDir)
    : await startServer(tempDir);
  const pid = server.pid;
  console.log(
    `soak: server pid ${pid} on port ${server.port}, temp dir ${tempDir}; ` +
      `${options.duration} s, up to ${options.requests} requests, ` +
      `${options.concurrency} clients, wrk -c${options.connections}, ` +
      `seed ${options.seed}`,
  );
  const rand = random(options.seed);
  let failed = false;
  const results: Request[] = [];
  let sequence = 0;
  const run = async (ctx: Context, kind: string) => {
    const id = `${kind}-${++sequence}`;
    const { more, ...outcome } = await RUNNERS[kind][1](ctx, id);
    const done = [{ id, ...outcome }, ...(more ?? [])];
    // Checked: keep the length and the first bytes, not megabytes of body.
    for (const request of done) {
      const body = request.outcome.body;
      request.outcome.bodyLength ??= body.length;
      request.outcome.body = body.slice(0, 64);
    }
    results.push(...done);
  };
  const kinds = Object.keys(RUNNERS);
  const weights = kinds.map((k) => RUNNERS[k][0]);
  const totalWeight = weights.reduce((a, b) => a + b, 0);
  const pickKind = () => {
    let r = rand() * totalWeight;
    for (let i = 0; i < kinds.length; i++) {
      r -= weights[i];
      if (r < 0) return kinds[i];
    }
    return kinds[kinds.length - 1];
  };

  try {
    // The server's records, gathered as the rounds go.
    const recordOf = new Map<string, SoakRecord>();
    const serverStalls: [number, number][] = [];
    const collect = async (clear: boolean) => {
      const report = await control(
        server.port,
        `/__soak/report${clear ? "?clear=1" : ""}`,
      ) as {
        counters: Record<string, number>;
        records: SoakRecord[];
        stalls: [number, number][];
      };
      for (const record of report.records) recordOf.set(record.id, record);
      const last = serverStalls.at(-1)?.[0] ?? 0;
      serverStalls.push(...report.stalls.filter(([t]) => t > last));
      return report;
    };

    // Warm up: each kind once, in turn, then a short load of the same mix
    // (so that the allocator reaches its working size), then settle.
    const client = Deno.createHttpClient({});
    const ctx: Context = {
      port: server.port,
      base: `http://127.0.0.1:${server.port}`,
      client,
      rand,
    };
    // The upload bodies and their digests, made before any load.
    for (let i = 0; i < UPLOAD_VARIANTS + OVERSIZED_VARIANTS; i++) {
      await uploadBody(i);
    }
    for (const kind of kinds) await run(ctx, kind);
    const load = async (seconds: number, requests: number) => {
      const wrkDone = startWrk(
        wrk,
        server.port,
        options.connections,
        options.wrkThreads,
        Math.ceil(seconds) + 1,
      );
      await new Promise((r) => setTimeout(r, 500));
      const start = now();
      const deadline = start + seconds * 1000;
      let issued = 0;
      const worker = async () => {
        while (issued < requests && now() < deadline) {
          issued++;
          await run(ctx, pickKind());
        }
      };
      await Promise.all(Array.from({ length: options.concurrency }, worker));
      const elapsed = (now() - start) / 1000;
      return { wrk: await wrkDone, seconds: elapsed, issued };
    };
    let wrkWarm: WrkSummary | null = null;
    if (options.warmup > 0) {
      wrkWarm = (await load(options.warmup, options.requests)).wrk;
    }
    client.close();
    const warmCount = results.length;
    const warmWrong = results.filter((r) => r.problem !== null).length;
    await new Promise((r) => setTimeout(r, 1000));
    await collect(true);
    const before = await settle(server, null, 0);
    console.log(
      `before: ${before.fds} fds, RSS ${before.rss.toFixed(1)} MiB, ` +
        `V8 heap + external ${
          before.heap.toFixed(1)
        } MiB (after ${warmCount} ` +
        "warm-up " +
        `requests in ${options.warmup} s, ${warmWrong} wrong)`,
    );

    // The load, in rounds; between two, the server settles and its
    // descriptors and memory are read: a leak keeps growing from round to
    // round, a working set does not.
    const rounds: Settled[] = [];
    const wrkResult: WrkSummary = {
      requests: 0,
      errors: null,
      non2xx: 0,
      text: "",
    };
    let seconds = 0;
    let issued = 0;
    for (let round = 0; round < options.rounds; round++) {
      const roundClient = Deno.createHttpClient({});
      ctx.client = roundClient;
      const done = await load(
        options.duration / options.rounds,
        Math.ceil(options.requests / options.rounds),
      );
      roundClient.close();
      seconds += done.seconds;
      issued += done.issued;
      wrkResult.requests += done.wrk.requests;
      wrkResult.non2xx += done.wrk.non2xx;
      if (done.wrk.errors !== null) {
        wrkResult.errors = [wrkResult.errors, done.wrk.errors]
          .filter((e) => e !== null).join("; ");
      }
      if (round < options.rounds - 1) {
        await new Promise((r) => setTimeout(r, 1000));
        await collect(true);
        rounds.push(await settle(server, before.fds, 10_000));
      }
    }
    if (wrkWarm !== null) {
      wrkResult.requests += wrkWarm.requests;
      wrkResult.non2xx += wrkWarm.non2xx;
      if (wrkWarm.errors !== null) {
        wrkResult.errors = `${wrkWarm.errors} (warm-up); ${wrkResult.errors}`;
      }
    }

    // Let cut connections finish closing, then fetch the server's records.
    await new Promise((r) => setTimeout(r, 1000));
    const report = await collect(false);
    const after = await settle(server, before.fds, 10_000);
    const leftovers: string[] = [];
    for await (const entry of Deno.readDir(tempDir)) {
      leftovers.push(entry.name);
    }
    const fdList: string[] = [];
    for await (const entry of Deno.readDir(`/proc/${pid}/fd`)) {
      try {
        fdList.push(
          `${entry.name} -> ${await Deno.readLink(
            `/proc/${pid}/fd/${entry.name}`,
          )}`,
        );
      } catch {
        // Closed meanwhile.
      }
    }

    // Check each request against the server's records.
    let closeProblems = 0;
    let logProblems = 0;
    let returnProblems = 0;
    let closeCalls = 0;
    let refusedBeforeHandler = 0;
    let resultsExpected = 0;
    const closeDetails: string[] = [];
    for (const request of results) {
      const record = recordOf.get(request.id);
      const closes = record?.closes ?? 0;
      closeCalls += closes;
      if (request.result) resultsExpected++;
      const problems: string[] = [];
      if (request.kind === "malformed" && request.outcome.status === null) {
        if (record === undefined) refusedBeforeHandler++;
        else problems.push("no response, although the handler ran");
      }
      // A result exists when the application got to return one; a request
      // answered 400/413 before the application never has one.
      const hadResult = record?.result ?? false;
      if (request.result && !hadResult && request.problem === null) {
        problems.push("the application returned no result");
      }
      if (closes !== (hadResult ? 1 : 0)) {
        closeProblems++;
        problems.push(`close() called ${closes} times`);
      }
      const exceptions = record?.logs.filter((l) => /Error/.test(l)).length ??
        0;
      if (exceptions !== request.logs) {
        logProblems++;
        problems.push(
          `${exceptions} exceptions logged, expected ${request.logs}`,
        );
      }
      if (
        request.returned && record !== undefined &&
        (record.finalizedAt === null && record.doneAt === null)
      ) {
        returnProblems++;
        problems.push("the generator was never returned");
      }
      if (problems.length > 0) {
        closeDetails.push(`${request.id}: ${problems.join("; ")}`);
        if (request.problem === null) request.problem = problems.join("; ");
      }
    }

    const wrong = results.filter((r) => r.problem !== null);
    const perKind = new Map<string, [number, number]>();
    for (const r of results) {
      const entry = perKind.get(r.kind) ?? [0, 0];
      entry[0]++;
      if (r.problem !== null) entry[1]++;
      perKind.set(r.kind, entry);
    }
    const stderrText = server.stderr.join("");
    console.log(
      `load: ${issued} requests in ${seconds.toFixed(1)} s after ` +
        `${warmCount} in the warm-up; wrk ${wrkResult.requests} hello ` +
        "requests in all" +
        `${wrkResult.errors ? `, ${wrkResult.errors}` : ""}` +
        `${wrkResult.non2xx ? `, ${wrkResult.non2xx} non-2xx` : ""}`,
    );
    console.log(
      "requests per kind, warm-up included (wrong): " +
        [...perKind].map(([k, [n, w]]) => `${k} ${n} (${w})`).join(", "),
    );
    const latency = (kind: string) => {
      const times = results.filter((r) => r.kind === kind)
        .map((r) => r.outcome.tEnd - r.outcome.tStart).sort((a, b) => a - b);
      const at = (q: number) =>
        Math.round(
          times[Math.min(times.length - 1, Math.floor(q * times.length))],
        );
      return `${kind} ${at(0.5)}/${at(0.99)}/${Math.round(times.at(-1)!)}`;
    };
    console.log(
      "latency ms p50/p99/max: " + [...perKind.keys()].map(latency).join(", "),
    );
    const stallSummary = (stalls: [number, number][]) => {
      const worst = stalls.reduce((m, [, late]) => Math.max(m, late), 0);
      const long = stalls.filter(([, late]) => late >= 100).length;
      return `longest ${worst} ms, ${long} of 100 ms or more`;
    };
    console.log(
      `event-loop stalls: client ${stallSummary(clientStalls)}; server ${
        stallSummary(serverStalls)
      }`,
    );
    if (refusedBeforeHandler > 0) {
      console.log(
        `  (${refusedBeforeHandler} broken chunked uploads closed by ` +
          "Deno.serve before any handler ran, as a bare Deno.serve does)",
      );
    }
    console.log(
      `wrong responses: ${wrong.length}` +
        (wrong.length > 0
          ? `; the first ${Math.min(options.show, wrong.length)}:`
          : ""),
    );
    for (const request of wrong.slice(0, options.show)) {
      console.log(describe(request, recordOf.get(request.id), serverStalls));
    }
    console.log(
      `close(): ${closeCalls} calls for ${
        [...recordOf.values()].filter((r) => r.result).length
      } results (${resultsExpected} requests expected one); ` +
        `${closeProblems} wrong counts, ${returnProblems} generators not ` +
        `returned, ${logProblems} wrong exception logs`,
    );
    for (const line of closeDetails.slice(0, options.show)) {
      console.log(`  ${line}`);
    }
    rounds.push(after);
    // The growth over the rounds after the first: what a leak adds.
    const nativeGrowth = after.native - rounds[0].native;
    const heapGrowth = after.heap - before.heap;
    const mib = (n: number) => n.toFixed(1);
    console.log(
      `server: fds ${before.fds} -> ${
        rounds.map((r) => r.fds).join(" -> ")
      }; temp files left: ${leftovers.length}`,
    );
    const series = (key: keyof Settled) =>
      [before, ...rounds].map((r) => mib(r[key])).join(" -> ");
    const signed = (n: number) => `${n >= 0 ? "+" : ""}${mib(n)}`;
    console.log(
      `server memory (MiB, after a garbage collection): VmRSS ${
        series("rss")
      }; RssAnon ${series("anon")}; V8 committed heap ${
        series("heapTotal")
      }; native (RssAnon - V8 committed) ${series("native")}, ${
        signed(nativeGrowth)
      } after round 1 (limit +${options.rssLimit}); V8 live heap + external ${
        series("heap")
      }, ${signed(heapGrowth)} (limit +${HEAP_LIMIT_MIB})`,
    );
    console.log(
      `anonymous requests ` +
        `${report.counters.anonymous}, anonymous logs ` +
        `${report.counters.anonymousLogs}; server stderr ${stderrText.length} ` +
        "bytes",
    );
    if (stderrText.length > 0) {
      console.log(`  server stderr: ${stderrText.slice(0, 2000)}`);
    }
    if (after.fds > before.fds) {
      console.log(`  fds now:\n    ${fdList.join("\n    ")}`);
    }
    failed = wrong.length > 0 || closeProblems > 0 || logProblems > 0 ||
      returnProblems > 0 || rounds.some((r) => r.fds > before.fds) ||
      leftovers.length > 0 ||
      nativeGrowth > options.rssLimit || heapGrowth > HEAP_LIMIT_MIB ||
      wrkResult.non2xx > 0 ||
      (wrkResult.errors !== null &&
        /(connect|read|write) [1-9]/.test(wrkResult.errors)) ||
      wrkResult.requests === 0 || stderrText.length > 0;
  } finally {
    await server.stop();
    await Deno.remove(tempDir, { recursive: true }).catch(() => {});
  }
  console.log(failed ? "soak: FAILED" : "soak: ok");
  return failed ? 1 : 0;
}

if (import.meta.main) {
  const hostile = Deno.args.indexOf("--hostile");
  if (hostile >= 0) {
    const { hostileMain } = await import("./_soak_hostile.ts");
    Deno.exit(await hostileMain(Deno.args.toSpliced(hostile, 1)));
  }
  Deno.exit(await main());
}
