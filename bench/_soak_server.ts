/**
 * The server of the soak test (`bench/soak.ts`), in a process of its own so
 * that its descriptors and memory are its own:
 *
 * ```sh
 * deno run -A --v8-flags=--expose-gc bench/_soak_server.ts --temp-dir DIR
 *   [--hostile [--fastcgi]]
 * ```
 *
 * One `makeServer` on 127.0.0.1, port 0, serves the routes below. Once
 * listening, it prints `listening <port>` on stdout; it stops on SIGTERM or
 * SIGINT. With `--hostile` (for `deno task soak --hostile`) it has the
 * time limits of `HOSTILE_LIMITS`; with `--fastcgi` too, the server is a
 * FastCGI gateway with those limits instead, serving the same routes. Every request that carries an `X-Soak-Id` header gets a record:
 * what the application did (chunks yielded, iteration finished or returned,
 * `close()` calls), what the server logged for it (`wsgi.errors`, the
 * exception log) and its access-log line, each with its time
 * (`performance.timeOrigin + performance.now()`, milliseconds).
 *
 * - `GET /`: "Hello world!" (the route wrk loads).
 * - `GET /slow[?async=1]`: ten short lines 50 ms apart, from an async
 *   generator (returned by an async application with `async=1`).
 * - `GET /big[?async=1]`: `big <id>\n`, then `BIG_SIZE` bytes of
 *   `pattern()` in 64 KiB chunks, from a generator (async with `async=1`).
 * - `POST /upload`: reads `wsgi.input` in 64 KiB pieces, answers
 *   `<length> <sha256>\n` (an `Array` result with a `close()`, from an
 *   async application).
 * - `GET /throw-before[?mode=iter]`: the application throws before
 *   `startResponse` (with `mode=iter`: its result throws on the first
 *   `next()`, before any header is sent).
 * - `GET /throw-after[?async=1]`: yields `partial <id>\n`, then throws.
 * - `GET /hang`: an application that never returns.
 * - `GET /hang-stream`: a first line, then a result that never yields
 *   again (its `close()` calls are counted).
 * - `GET /__soak/report`: every record and the counters, as JSON.
 * - `GET /__soak/gc`: runs the garbage collector (with `--expose-gc`),
 *   answers `Deno.memoryUsage()` as JSON.
 *
 * @module
 */

import {
  makeServer,
  WSGIRequestHandler,
  type WSGIServer,
} from "../simple_server.ts";
import { type FastCGIServer, makeFastCGIServer } from "../fastcgi.ts";
import type {
  Application,
  Environ,
  ErrorStream,
  InputStream,
  ResponseBody,
} from "../types.ts";

/** Bytes of `pattern()` each `/big` response carries after its first line. */
export const BIG_SIZE = 8 * 1024 * 1024;
/** The size of each chunk of `/big` and of upload reads. */
export const CHUNK = 64 * 1024;
/** The lines of `/slow`, and the pause between two of them. */
export const SLOW_LINES = 10;
export const SLOW_PAUSE_MS = 50;
/** Request bodies over this size are answered 413. */
export const MAX_BODY_SIZE = 16 * 1024 * 1024;

/**
 * The limits of the servers under `deno task soak --hostile`: the
 * defaults, but for shorter time limits (so that the run takes minutes)
 * and a smaller disk budget (so that the attack on it writes 256 MiB, not
 * 4 GiB).
 */
export const HOSTILE_LIMITS = {
  /** FastCGI `idleTimeout` and `readTimeout`, ms. */
  idleTimeout: 3000,
  readTimeout: 3000,
  /** FastCGI `diskBudget`. */
  diskBudget: 256 * 1024 * 1024,
  /** `makeServer`'s `requestTimeout`, ms. */
  requestTimeout: 5000,
} as const;

const ENCODER = new TextEncoder();
const HELLO = ENCODER.encode("Hello world!");

/** Deterministic pseudo-random bytes (xorshift32), the same in every
 * process. */
export function pattern(
  size: number,
  seed = 0x9e3779b9,
): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(size);
  let x = seed | 0;
  for (let i = 0; i < size; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x;
    out[i + 1] = x >>> 8;
    out[i + 2] = x >>> 16;
    out[i + 3] = x >>> 24;
  }
  return out;
}

/** The `i`th line of `/slow` for request `id`. */
export function slowLine(id: string, i: number): string {
  return `line ${i} of ${id}\n`;
}

/** What the server saw of one request. */
export interface SoakRecord {
  id: string;
  /** Method and target. */
  target: string;
  /** When the request handler was made (ms). */
  t0: number;
  /** Calls of the application. */
  appCalls: number;
  /** Whether the application returned a result (which has a `close()`). */
  result: boolean;
  /** Whether that result is a generator (which runs `finally` when done). */
  generator: boolean;
  /** Calls of the result's `close()`, and when. */
  closes: number;
  closeAt: number[];
  /** Chunks and bytes the result produced. */
  yielded: number;
  bytes: number;
  /** When the iteration ended by itself, or by `return()` / a throw. */
  doneAt: number | null;
  finalizedAt: number | null;
  /** Times of the first chunks produced (up to 12). */
  yieldAt: number[];
  /** What was written to `wsgi.errors` / the exception log. */
  logs: string[];
  /** The access-log message and when. */
  access: string | null;
  accessAt: number | null;
}

const records = new Map<string, SoakRecord>();

/** Stalls of the event loop: `[when, ms late]` for each tick of a 5 ms
 * timer that came more than 20 ms late (the last 20,000). */
const stalls: [number, number][] = [];
let lastTick = 0;
function watchStalls(): ReturnType<typeof setInterval> {
  lastTick = performance.now();
  return setInterval(() => {
    const t = performance.now();
    const late = t - lastTick - 5;
    lastTick = t;
    if (late > 20) {
      stalls.push([performance.timeOrigin + t, Math.round(late)]);
      if (stalls.length > 20_000) stalls.splice(0, 10_000);
    }
  }, 5);
}
/** The gateway's log lines about its limits, by their text before the
 * first colon (numbers as `N`). */
const limitLogs: Record<string, number> = {};
const counters = {
  /** `/hang` and `/hang-stream` requests, and the `close()` calls of the
   * latter's results. */
  hangs: 0,
  hangStreams: 0,
  hangStreamCloses: 0,
  /** Requests without an id (wrk, control routes) logged by the access log. */
  anonymous: 0,
  /** Anonymous requests that logged something else than the access log. */
  anonymousLogs: 0,
};

function now(): number {
  return performance.timeOrigin + performance.now();
}

function record(id: string, target: string): SoakRecord {
  let found = records.get(id);
  if (found === undefined) {
    found = {
      id,
      target,
      t0: now(),
      appCalls: 0,
      result: false,
      generator: false,
      closes: 0,
      closeAt: [],
      yielded: 0,
      bytes: 0,
      doneAt: null,
      finalizedAt: null,
      yieldAt: [],
      logs: [],
      access: null,
      accessAt: null,
    };
    records.set(id, found);
  }
  return found;
}

function recordOf(environ: Environ): SoakRecord | null {
  const id = environ.HTTP_X_SOAK_ID;
  if (typeof id !== "string") return null;
  const found = record(
    id,
    `${environ.REQUEST_METHOD} ${environ.PATH_INFO}?${environ.QUERY_STRING}`,
  );
  found.appCalls++;
  return found;
}

function produced(rec: SoakRecord | null, chunk: Uint8Array): Uint8Array {
  if (rec !== null) {
    rec.yielded++;
    rec.bytes += chunk.length;
    if (rec.yieldAt.length < 12) rec.yieldAt.push(now());
  }
  return chunk;
}

/** Give a result a counting `close()`. */
function closable<T extends object>(rec: SoakRecord | null, result: T): T {
  if (rec !== null) rec.result = true;
  return Object.assign(result, {
    close() {
      if (rec !== null) {
        rec.closes++;
        rec.closeAt.push(now());
      }
    },
  });
}

const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** glibc's `malloc_trim(0)`, where there is one (Linux, with FFI allowed). */
const mallocTrim: (() => void) | null = (() => {
  try {
    const libc = Deno.dlopen("libc.so.6", {
      malloc_trim: { parameters: ["usize"], result: "i32" },
    });
    return () => {
      libc.symbols.malloc_trim(0n);
    };
  } catch {
    return null;
  }
})();
const BIG = pattern(BIG_SIZE);

function slow(rec: SoakRecord | null, id: string): ResponseBody {
  async function* lines() {
    try {
      for (let i = 0; i < SLOW_LINES; i++) {
        if (i > 0) await delay(SLOW_PAUSE_MS);
        yield produced(rec, ENCODER.encode(slowLine(id, i)));
      }
      if (rec !== null) rec.doneAt = now();
    } finally {
      if (rec !== null) rec.finalizedAt = now();
    }
  }
  if (rec !== null) rec.generator = true;
  return closable(rec, lines());
}

function big(rec: SoakRecord | null, id: string, async: boolean) {
  const first = ENCODER.encode(`big ${id}\n`);
  function* chunks() {
    try {
      yield produced(rec, first);
      for (let i = 0; i < BIG_SIZE; i += CHUNK) {
        yield produced(rec, BIG.subarray(i, i + CHUNK));
      }
      if (rec !== null) rec.doneAt = now();
    } finally {
      if (rec !== null) rec.finalizedAt = now();
    }
  }
  async function* asyncChunks() {
    try {
      yield produced(rec, first);
      for (let i = 0; i < BIG_SIZE; i += CHUNK) {
        // A real await between chunks, as an application reading a file.
        if (i % (16 * CHUNK) === 0) await Promise.resolve();
        yield produced(rec, BIG.subarray(i, i + CHUNK));
      }
      if (rec !== null) rec.doneAt = now();
    } finally {
      if (rec !== null) rec.finalizedAt = now();
    }
  }
  if (rec !== null) rec.generator = true;
  return closable(rec, async ? asyncChunks() : chunks());
}

function throwAfter(rec: SoakRecord | null, id: string, async: boolean) {
  const first = ENCODER.encode(`partial ${id}\n`);
  const error = () => new Error(`soak: thrown after the headers (${id})`);
  function* chunks(): Generator<Uint8Array> {
    try {
      yield produced(rec, first);
      throw error();
    } finally {
      if (rec !== null) rec.finalizedAt = now();
    }
  }
  async function* asyncChunks(): AsyncGenerator<Uint8Array> {
    try {
      yield produced(rec, first);
      await delay(5);
      throw error();
    } finally {
      if (rec !== null) rec.finalizedAt = now();
    }
  }
  if (rec !== null) rec.generator = true;
  return closable(rec, async ? asyncChunks() : chunks());
}

/** The hex SHA-256 of some bytes. */
export async function sha256(data: Uint8Array<ArrayBuffer>): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", data));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Read `wsgi.input` in pieces; the answer, `<length> <sha256>\n`, is
 * computed off the event loop. */
async function upload(
  environ: Environ,
  rec: SoakRecord | null,
): Promise<ResponseBody> {
  const input = environ["wsgi.input"] as InputStream;
  const pieces: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const piece = input.read(CHUNK);
    if (piece.length === 0) break;
    pieces.push(piece);
    total += piece.length;
  }
  const all = new Uint8Array(total);
  let offset = 0;
  for (const piece of pieces) {
    all.set(piece, offset);
    offset += piece.length;
  }
  const sum = await sha256(all);
  return closable(rec, [ENCODER.encode(`${total} ${sum}\n`)]);
}

/** The soak's application: the routes above. */
export const app: Application = (environ, startResponse) => {
  const path = environ.PATH_INFO;
  const query = String(environ.QUERY_STRING);
  if (path === "/") {
    startResponse("200 OK", [["Content-Type", "text/plain"]]);
    return [HELLO];
  }
  const rec = recordOf(environ);
  const id = rec?.id ?? "-";
  const async = query.includes("async=1");
  switch (path) {
    case "/slow":
      if (async) {
        return (async () => {
          await delay(1);
          startResponse("200 OK", [["Content-Type", "text/plain"]]);
          return slow(rec, id);
        })();
      }
      startResponse("200 OK", [["Content-Type", "text/plain"]]);
      return slow(rec, id);
    case "/big":
      startResponse("200 OK", [["Content-Type", "application/octet-stream"]]);
      return big(rec, id, async);
    case "/upload":
      startResponse("200 OK", [["Content-Type", "text/plain"]]);
      return upload(environ, rec);
    case "/throw-before":
      if (query.includes("mode=iter")) {
        startResponse("200 OK", [["Content-Type", "text/plain"]]);
        return closable(rec, {
          [Symbol.iterator]() {
            return {
              next(): IteratorResult<Uint8Array> {
                throw new Error(`soak: thrown by next() (${id})`);
              },
            };
          },
        });
      }
      throw new Error(`soak: thrown before the headers (${id})`);
    case "/throw-after":
      startResponse("200 OK", [["Content-Type", "text/plain"]]);
      return throwAfter(rec, id, async);
    case "/hang":
      counters.hangs++;
      return new Promise<ResponseBody>(() => {});
    case "/hang-stream": {
      counters.hangStreams++;
      startResponse("200 OK", [["Content-Type", "text/plain"]]);
      let first = true;
      const never: AsyncIterableIterator<Uint8Array> = {
        [Symbol.asyncIterator]: () => never,
        next: () => {
          if (!first) return new Promise(() => {});
          first = false;
          return Promise.resolve({ done: false, value: HELLO });
        },
      };
      return Object.assign(never, {
        close: () => void counters.hangStreamCloses++,
      });
    }
    case "/__soak/report": {
      // With clear=1, records of requests that are over (logged, and their
      // generator finished) are dropped once reported: the server's memory
      // then measures the server, not the records.
      const clear = query.includes("clear=1");
      const reported = [...records.values()];
      if (clear) {
        for (const rec of reported) {
          if (
            rec.access !== null &&
            (!rec.generator || rec.finalizedAt !== null)
          ) records.delete(rec.id);
        }
      }
      startResponse("200 OK", [["Content-Type", "application/json"]]);
      return [
        ENCODER.encode(
          JSON.stringify({ counters, records: reported, stalls, limitLogs }),
        ),
      ];
    }
    case "/__soak/gc": {
      const gc = (globalThis as { gc?: () => void }).gc;
      gc?.();
      gc?.();
      // Give the pages glibc keeps free back to the system, so that RSS
      // counts what is in use.
      mallocTrim?.();
      startResponse("200 OK", [["Content-Type", "application/json"]]);
      return [
        ENCODER.encode(
          JSON.stringify({
            gc: gc !== undefined,
            trim: mallocTrim !== null,
            ...Deno.memoryUsage(),
          }),
        ),
      ];
    }
  }
  startResponse("404 Not Found", [["Content-Type", "text/plain"]]);
  return [ENCODER.encode("Not found\n")];
};

const STDERR = new TextEncoder();

/** Records each request's logs; requests without an id log to stderr. */
export class SoakRequestHandler extends WSGIRequestHandler {
  #record: SoakRecord | null | undefined;

  get soakRecord(): SoakRecord | null {
    if (this.#record === undefined) {
      const id = this.request.headers.get("x-soak-id");
      this.#record = id === null ? null : record(id, this.requestline);
    }
    return this.#record;
  }

  override getStderr(): ErrorStream {
    const rec = this.soakRecord;
    const write = (s: string) => {
      if (rec !== null) {
        rec.logs.push(`${now().toFixed(1)} ${s}`);
      } else {
        counters.anonymousLogs++;
        Deno.stderr.writeSync(STDERR.encode(s));
      }
    };
    return {
      write,
      writelines: (lines) => {
        for (const line of lines) write(line);
      },
      flush: () => {},
    };
  }

  override logMessage(message: string): void {
    const rec = this.soakRecord;
    if (rec === null) {
      counters.anonymous++;
      return;
    }
    rec.access = message;
    rec.accessAt = now();
  }
}

/** The soak's server on 127.0.0.1, port 0, serving; with the hostile
 * mode's time limit when `hostile`. */
export function startSoakServer(tempDir?: string, hostile = false): WSGIServer {
  const server = makeServer("127.0.0.1", 0, app, {
    handlerClass: SoakRequestHandler,
    tempDir,
    maxBodySize: MAX_BODY_SIZE,
    requestTimeout: hostile ? HOSTILE_LIMITS.requestTimeout : 0,
  });
  server.serveForever();
  Deno.unrefTimer(watchStalls());
  return server;
}

/** The hostile soak's FastCGI gateway on 127.0.0.1, port 0, serving the
 * same application with `HOSTILE_LIMITS`; its log goes to stderr but for
 * the lines its limits write, which are counted. */
export function startSoakGateway(tempDir?: string): FastCGIServer {
  const server = makeFastCGIServer({ hostname: "127.0.0.1", port: 0 }, app, {
    tempDir,
    quiet: true,
    maxBodySize: MAX_BODY_SIZE,
    idleTimeout: HOSTILE_LIMITS.idleTimeout,
    readTimeout: HOSTILE_LIMITS.readTimeout,
    diskBudget: HOSTILE_LIMITS.diskBudget,
  });
  server.logMessage = (message) => {
    if (!/^(Refused|Dropped|Closed) /.test(message)) {
      Deno.stderr.writeSync(STDERR.encode(`${message}\n`));
      return;
    }
    const kind = message.split(":")[0].replace(/\d+/g, "N");
    limitLogs[kind] = (limitLogs[kind] ?? 0) + 1;
  };
  server.serveForever();
  Deno.unrefTimer(watchStalls());
  return server;
}

/** The soak server in a process of its own, as `bench/soak.ts` runs it. */
export interface SpawnedServer {
  pid: number;
  port: number;
  /** What it wrote to stderr so far. */
  stderr: string[];
  /** SIGTERM it, and wait for its end. */
  stop(): Promise<void>;
}

/**
 * Start this module as a program (with `--expose-gc`) with `args`, and
 * wait for its `listening <port>` line.
 *
 * @param args Its command line (`--temp-dir DIR`, `--hostile`, ...).
 * @returns The running server.
 */
export async function spawnSoakServer(args: string[]): Promise<SpawnedServer> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--v8-flags=--expose-gc",
      new URL(import.meta.url).pathname,
      ...args,
    ],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr: string[] = [];
  (async () => {
    for await (
      const text of child.stderr.pipeThrough(new TextDecoderStream())
    ) {
      stderr.push(text);
    }
  })();
  const reader = child.stdout.pipeThrough(new TextDecoderStream())
    .getReader();
  let out = "";
  for (let i = 0; i < 100 && !/listening (\d+)\n/.test(out); i++) {
    const { done, value } = await reader.read();
    if (done) break;
    out += value;
  }
  const match = /listening (\d+)\n/.exec(out);
  if (match === null) {
    throw new Error(`The soak server did not start: ${out}${stderr.join("")}`);
  }
  (async () => {
    while (!(await reader.read()).done) { /* discard */ }
  })();
  return {
    pid: child.pid,
    port: Number(match[1]),
    stderr,
    stop: async () => {
      try {
        child.kill("SIGTERM");
      } catch {
        // Gone.
      }
      await child.status;
    },
  };
}

if (import.meta.main) {
  const args = Deno.args;
  const at = args.indexOf("--temp-dir");
  const tempDir = at >= 0 ? args[at + 1] : undefined;
  const hostile = args.includes("--hostile");
  const server = hostile && args.includes("--fastcgi")
    ? startSoakGateway(tempDir)
    : startSoakServer(tempDir, hostile);
  const stopped = Promise.withResolvers<void>();
  const stop = () => stopped.resolve();
  Deno.addSignalListener("SIGTERM", stop);
  Deno.addSignalListener("SIGINT", stop);
  console.log(`listening ${server.serverPort}`);
  await stopped.promise;
  await server.serverClose();
  Deno.exit(0);
}
