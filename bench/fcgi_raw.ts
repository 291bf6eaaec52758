/**
 * A minimal FastCGI responder written directly on `Deno.listen`: the rungs
 * of the FastCGI cost ladder (`deno task bench:fastcgi --scenario costs`),
 * each adding one piece of what the gateway (`fastcgi.ts`) does per request,
 * so that the CPU time per request of each rung, less the one below, is
 * what that piece costs:
 *
 * - `canned`: reads records, splits them by their headers, ignores the
 *   parameters, and answers each request (at its empty `STDIN` record) with
 *   canned bytes: the `STDOUT` record of the gateway's hello response, the
 *   empty `STDOUT` and `END_REQUEST`, in one write per read. The floor: a
 *   Deno program can hardly answer FastCGI for less.
 * - `environ`: also copies the `PARAMS` content and turns it into an
 *   environ object (latin-1 names and values, as the gateway does, though
 *   through the test client's decoder, which makes a pair array first).
 * - `handler`: also runs the application through the gateway's public
 *   `FastCGIHandler` (a `BaseCGIHandler`: the WSGI environ, `start_response`,
 *   the CGI status and headers), its output framed into `STDOUT` records.
 * - `hops`: the same, with the gateway's I/O structure: records are queued
 *   and written by a separate async pump started from a microtask, while
 *   the read loop goes on reading; an asynchronous `run()` is followed with
 *   `.then` as the gateway does.
 *
 * Only what nginx sends is supported (one request at a time per
 * connection, no body): this is a measuring stick, not a server.
 *
 * @module
 */

import { FastCGIHandler, type FastCGIOutput } from "../fastcgi.ts";
import type { Application, ErrorStream } from "../types.ts";
import { BytesInput, concat } from "../_io.ts";
import { RESOLVED } from "../_internal.ts";
import {
  decodePairs,
  FCGI,
  join,
  record,
} from "../tests/fixtures/fcgi_client.ts";

/** A rung of the ladder. */
export type RawLevel = "canned" | "environ" | "handler" | "hops";

const HEADER = 8;
const KEEP_CONN = 1;
const END_REQUEST_BODY = new Uint8Array(8); // status 0, REQUEST_COMPLETE

/** What the gateway writes to `STDOUT` for the hello application. */
const CANNED_STDOUT = new TextEncoder().encode(
  "Status: 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello world!\n",
);

/** The empty `STDOUT` record and `END_REQUEST` (complete, status 0). */
function endRecords(id: number): Uint8Array {
  return join(
    record(FCGI.STDOUT, id),
    record(FCGI.END_REQUEST, id, END_REQUEST_BODY),
  );
}

/** The whole canned answer, built once per request id. */
const canned = new Map<number, Uint8Array>();
function cannedAnswer(id: number): Uint8Array {
  let answer = canned.get(id);
  if (answer === undefined) {
    answer = join(record(FCGI.STDOUT, id, CANNED_STDOUT), endRecords(id));
    canned.set(id, answer);
  }
  return answer;
}

/** The parameters as an environ of latin-1 strings (nginx sends them well
 * formed: no checks). */
function toEnviron(bytes: Uint8Array): Record<string, string> {
  const environ: Record<string, string> = {};
  for (const [name, value] of decodePairs(bytes)) environ[name] = value;
  return environ;
}

/** `wsgi.errors` that drops what it is given. */
const NO_ERRORS: ErrorStream = {
  write() {},
  writelines() {},
  flush() {},
};

/** The environ of the last request, kept so none is optimised away. */
export let lastEnviron: Record<string, string> | null = null;

/** Writes queued bytes from an async pump, as the gateway's connection. */
class Pump {
  #conn: Deno.Conn;
  #queue: Uint8Array[] = [];
  #queued = 0;
  #writing = false;
  closed = false;

  constructor(conn: Deno.Conn) {
    this.#conn = conn;
  }

  send(bytes: Uint8Array): void {
    this.#queue.push(bytes);
    this.#queued += bytes.length;
    if (!this.#writing) {
      this.#writing = true;
      queueMicrotask(() => void this.#pump());
    }
  }

  async #pump(): Promise<void> {
    try {
      while (this.#queue.length > 0 && !this.closed) {
        const data = concat(this.#queue.splice(0), this.#queued);
        this.#queued = 0;
        for (let offset = 0; offset < data.length;) {
          offset += await this.#conn.write(data.subarray(offset));
        }
      }
    } catch {
      this.closed = true;
    }
    this.#writing = false;
  }
}

async function serveConnection(
  conn: Deno.Conn,
  level: RawLevel,
  app: Application,
): Promise<void> {
  let buffer = new Uint8Array(16 * 1024);
  let start = 0;
  let end = 0;
  let params: Uint8Array[] = [];
  let paramsLength = 0;
  let environ: Record<string, string> = {};
  let keep = true;
  const out: Uint8Array[] = [];
  let outLength = 0;
  const pump = level === "hops" ? new Pump(conn) : null;
  const send = (bytes: Uint8Array) => {
    if (pump !== null) pump.send(bytes);
    else {
      out.push(bytes);
      outLength += bytes.length;
    }
  };
  try {
    for (;;) {
      if (start === end) start = end = 0;
      if (buffer.length - end < 4096) {
        const bigger = new Uint8Array(
          Math.max(buffer.length, 2 * (end - start) + 4096),
        );
        bigger.set(buffer.subarray(start, end));
        buffer = bigger;
        end -= start;
        start = 0;
      }
      const n = await conn.read(buffer.subarray(end));
      if (n === null || pump?.closed) break;
      end += n;
      while (end - start >= HEADER) {
        const type = buffer[start + 1];
        const id = buffer[start + 2] << 8 | buffer[start + 3];
        const length = buffer[start + 4] << 8 | buffer[start + 5];
        const total = HEADER + length + buffer[start + 6];
        if (end - start < total) break;
        const content = buffer.subarray(
          start + HEADER,
          start + HEADER + length,
        );
        start += total;
        if (type === FCGI.BEGIN_REQUEST) {
          keep = (content[2] & KEEP_CONN) !== 0;
        } else if (type === FCGI.PARAMS && level !== "canned") {
          if (length > 0) {
            params.push(content.slice());
            paramsLength += length;
          } else {
            environ = toEnviron(concat(params, paramsLength));
            lastEnviron = environ;
            params = [];
            paramsLength = 0;
          }
        } else if (type === FCGI.STDIN && length === 0) {
          if (level === "canned" || level === "environ") {
            send(cannedAnswer(id));
            continue;
          }
          const output: FastCGIOutput = {
            write: (data) => send(record(FCGI.STDOUT, id, data)),
            ready: true,
            drain: () => RESOLVED,
          };
          const handler = new FastCGIHandler(
            new BytesInput(),
            output,
            NO_ERRORS,
            environ,
          );
          const running = handler.run(app);
          if (running !== RESOLVED) {
            if (pump === null) await running;
            else {
              running.then(() => send(endRecords(id)));
              continue;
            }
          }
          send(endRecords(id));
        }
      }
      if (outLength > 0) {
        const data = concat(out.splice(0), outLength);
        outLength = 0;
        for (let offset = 0; offset < data.length;) {
          offset += await conn.write(data.subarray(offset));
        }
      }
      if (!keep) break;
    }
  } catch {
    // The host went away.
  } finally {
    if (pump !== null) pump.closed = true;
    try {
      conn.close();
    } catch {
      // Closed already.
    }
  }
}

/** A running raw responder. */
export interface RawServer {
  port: number;
  stop(): Promise<void>;
}

/**
 * Serve `app` at rung `level` on 127.0.0.1:`port` (0: any free one).
 *
 * @param level The rung.
 * @param app The application (used from `handler` up).
 * @param port The port.
 * @returns The server.
 */
export function serveRaw(
  level: RawLevel,
  app: Application,
  port: number,
): RawServer {
  const listener = Deno.listen({ hostname: "127.0.0.1", port });
  const connections = new Set<Deno.Conn>();
  const accepting = (async () => {
    try {
      for await (const conn of listener) {
        connections.add(conn);
        serveConnection(conn, level, app).finally(() =>
          connections.delete(conn)
        );
      }
    } catch {
      // The listener was closed.
    }
  })();
  return {
    port: (listener.addr as Deno.NetAddr).port,
    async stop() {
      listener.close();
      for (const conn of connections) {
        try {
          conn.close();
        } catch {
          // Closed already.
        }
      }
      await accepting;
    },
  };
}
