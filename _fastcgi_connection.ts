/**
 * The gateway's side of one FastCGI connection: it reads records from the
 * host, keeps the state of each request on it, runs each request through a
 * handler once its body is in, and writes the records of every response
 * through one output queue, so records of interleaved requests never mix.
 * Built on the codec of `_fastcgi_record.ts`; `fastcgi.ts` makes one
 * `Connection` for each connection its listener accepts. A connection
 * reads and writes through a `ByteStream` (a `Deno.Conn` is one), so the
 * tests can drive it with in-memory bytes. Not exported by `deno.json`.
 *
 * @example How connections are named in the log
 * ```ts
 * import { peerName } from "./_fastcgi_connection.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(
 *   peerName({ transport: "tcp", hostname: "127.0.0.1", port: 4711 }),
 *   "127.0.0.1:4711",
 * );
 * assert.equal(peerName({ transport: "unix", path: "" }), "unix:-");
 * ```
 *
 * @module
 */

import type { Application, ErrorStream, InputStream } from "./types.ts";
import { BytesInput, processStderr } from "./_io.ts";
import {
  type BodyBudget,
  bodyErrorApp,
  type BodyLimits,
  BodySpool,
  BodyTooLarge,
  BUSY_APP,
  BUSY_MESSAGE,
  errorApp,
  normalizeContentLength,
  OverBudget,
} from "./_body.ts";
import {
  ABORT_REQUEST,
  BEGIN_REQUEST,
  decodePairs,
  encodePairs,
  endRequestRecord,
  frame,
  frameBuffer,
  GET_VALUES,
  GET_VALUES_RESULT,
  HEADER_SIZE,
  joinFrames,
  KEEP_CONN,
  latin1Text,
  OVERLOADED,
  PARAMS,
  paramsToEnviron,
  ProtocolError,
  putEndRequest,
  putHeader,
  record,
  RecordReader,
  releaseFrame,
  REQUEST_COMPLETE,
  RESPONDER,
  STDERR,
  STDIN,
  STDOUT,
  UNKNOWN_ROLE,
  UNKNOWN_TYPE,
} from "./_fastcgi_record.ts";
import { decodeLatin1, quote, repr, RESOLVED, typeName } from "./_internal.ts";

/** Queued output bytes per connection over which a response waits. */
const HIGH_WATER = 256 * 1024;
/** Queued records up to this many bytes together are joined into one
 * write (larger ones are written as they are). */
const COALESCE_LIMIT = 16 * 1024;
/** How long a connection closed after a refused `BEGIN_REQUEST` waits
 * for the host to close its side, so that no reset discards the answer. */
const LINGER_MS = 2000;

/**
 * The CGI response to a request refused at `BEGIN_REQUEST` (past
 * `maxRequests`, `maxRequestsPerConnection`, or at shutdown): the bytes
 * `BaseCGIHandler` writes for `BUSY_APP`.
 */
const OVERLOADED_RESPONSE: Uint8Array = new TextEncoder().encode(
  "Status: 503 Service Unavailable\r\n" +
    "Content-Type: text/plain; charset=utf-8\r\n" +
    `Content-Length: ${BUSY_MESSAGE.length + 1}\r\n\r\n${BUSY_MESSAGE}\n`,
);

/**
 * The records that refuse request `id` for want of room: the protocol's
 * answer, `END_REQUEST` with `FCGI_OVERLOADED`, after a 503 response on
 * `STDOUT`, as hosts pass on neither that status nor the lack of a
 * response: alone, nginx answers it 502, lighttpd 500, and Apache an empty
 * 200.
 */
function overloadedRecords(id: number): Uint8Array {
  const response = record(STDOUT, id, OVERLOADED_RESPONSE);
  const out = new Uint8Array(response.length + 2 * HEADER_SIZE + 8);
  out.set(response);
  putHeader(out, response.length, STDOUT, id, 0, 0);
  putEndRequest(out, response.length + HEADER_SIZE, id, 0, OVERLOADED);
  return out;
}

/** The error a response ends with when the host no longer wants it. */
export function requestAborted(): Error {
  return new Deno.errors.ConnectionAborted(
    "The FastCGI host ended the request",
  );
}

/** Whether an error means the host went away (not worth a log entry). */
export function isHostGone(error: unknown): boolean {
  return error instanceof Deno.errors.BrokenPipe ||
    error instanceof Deno.errors.ConnectionReset ||
    error instanceof Deno.errors.ConnectionAborted ||
    error instanceof Deno.errors.BadResource ||
    error instanceof Deno.errors.Interrupted;
}

/**
 * The bytes of one host connection, all a `Connection` does with them (as
 * Go's FastCGI child works over an `io.ReadWriteCloser`). A `Deno.Conn` is
 * one as it is; so is the adapter over a `node:net` socket for inherited
 * listeners, and an in-memory pipe in the tests.
 */
export interface ByteStream {
  /** Read into `p`: the bytes read, `null` at the end of the stream. */
  read(p: Uint8Array): Promise<number | null>;
  /** Write from `p`: the bytes written, maybe fewer than `p.length`. */
  write(p: Uint8Array): Promise<number>;
  /** Release the stream; a pending `read()` then rejects or ends. */
  close(): void;
  /** Shut down the sending side only; without it, `close()` is used. */
  closeWrite?(): Promise<void>;
}

/**
 * How a peer is named in the log: `host:port`, or `unix:path` (`unix:-`
 * for a client socket with no name).
 *
 * @param addr The remote address of a connection.
 */
export function peerName(addr: Deno.Addr): string {
  return addr.transport === "tcp" || addr.transport === "udp"
    ? `${addr.hostname}:${addr.port}`
    : `unix:${(addr as Deno.UnixAddr).path || "-"}`;
}

/**
 * For each server, how it serves a stream that no listener accepted, as
 * it serves those its listener accepts: the protocol tests hand servers
 * in-memory streams through it.
 */
export const OPEN_STREAM: WeakMap<
  object,
  (stream: ByteStream, peer: string) => void
> = new WeakMap();

/** An error's stack, or its string form. */
export function describe(error: unknown): string {
  return error instanceof Error ? error.stack ?? String(error) : quote(error);
}

/**
 * Whether `name` may be a CGI variable's name: not empty, printable ASCII
 * but for space and `=`. A control character (CR, LF, NUL) or a space
 * could split a header line or an environment entry made of it, and `=`
 * ends an environment variable's name.
 */
export function isVariableName(name: string): boolean {
  const length = name.length;
  if (length === 0) return false;
  for (let i = 0; i < length; i++) {
    const c = name.charCodeAt(i);
    if (c <= 0x20 || c >= 0x7f || c === 0x3d) return false;
  }
  return true;
}

/**
 * Where a handler sends a response (`FastCGIOutput` of `fastcgi.ts`): the
 * request's `STDOUT` stream.
 */
export interface ResponseOutput {
  write(data: Uint8Array): void;
  readonly ready: boolean;
  drain(): Promise<void>;
}

/** What a connection needs of the handler that answers a request. */
export interface RequestHandler {
  /** Run the application; settles once the response is over. */
  run(app: Application): Promise<void>;
  /** Stop the response: the host no longer wants it. */
  abort(): void;
}

/** What a connection reports about a finished handler, for the log. */
export interface Outcome {
  /** The status sent, or `null` when none was. */
  status: string | null;
  /** The body bytes sent. */
  bytes: number;
  /** Whether the response was cut short after bytes had left. */
  cut: boolean;
}

/** The `STDOUT` stream of one request on its connection. */
class RequestOutput implements ResponseOutput {
  readonly #connection: Connection;
  readonly #id: number;
  #ended = false;

  constructor(connection: Connection, id: number) {
    this.#connection = connection;
    this.#id = id;
  }

  get ready(): boolean {
    return this.#ended || this.#connection.backlog < HIGH_WATER;
  }

  write(data: Uint8Array): void {
    if (this.#ended) throw requestAborted();
    if (data.length > 0) {
      this.#connection.send(frame(STDOUT, this.#id, data));
    }
  }

  drain(): Promise<void> {
    if (this.#ended) return Promise.reject(requestAborted());
    return this.#connection.drained();
  }

  /** No more output: later writes throw, `drain()` rejects. */
  end(): void {
    this.#ended = true;
  }
}

/** The `STDERR` stream of one request, as `wsgi.errors`. Once the request
 * is over, lines go to the gateway's own log instead. */
class RequestErrors implements ErrorStream {
  readonly #connection: Connection;
  readonly #id: number;
  #ended = false;
  /** Whether any record was sent, so the stream needs its end record. */
  used = false;
  #encoder: TextEncoder | null = null;

  constructor(connection: Connection, id: number) {
    this.#connection = connection;
    this.#id = id;
  }

  write(s: string): void {
    if (typeof s !== "string") {
      throw new TypeError(
        `Cannot write to wsgi.errors: expected a string, not ${typeName(s)} ${
          repr(s)
        }`,
      );
    }
    if (s.length === 0) return;
    if (this.#ended) {
      processStderr().write(s);
      return;
    }
    this.#encoder ??= new TextEncoder();
    this.used = true;
    this.#connection.send(
      frame(STDERR, this.#id, this.#encoder.encode(s)),
    );
  }

  writelines(seq: Iterable<string>): void {
    for (const s of seq) this.write(s);
  }

  flush(): void {}

  end(): void {
    this.#ended = true;
  }
}

/**
 * Where a request is, from `BEGIN_REQUEST` to its end:
 *
 * - `params`: its `PARAMS` records are gathered.
 * - `body`: its parameters are in (the environ is made); its `STDIN`
 *   records are spooled.
 * - `running`: its input is complete, and its handler answers.
 * - `refusing`: the gateway answers it itself (4xx), while the rest of its
 *   input is read and thrown away.
 * - `draining`: its response is over; the rest of its input is thrown
 *   away.
 * - `ended`: its response is over and its input too; it has left the
 *   connection's table (a handler still running learns so).
 *
 * The transitions are listed on `Connection`.
 */
type RequestState =
  | "params"
  | "body"
  | "running"
  | "refusing"
  | "draining"
  | "ended";

/**
 * How a request's response ends, one word each:
 *
 * - `complete`: all of it sent, then the end of `STDOUT` (and `STDERR`)
 *   and `END_REQUEST` with application status 0.
 * - `cut`: it stopped after bytes had left (the application failed): an
 *   `END_REQUEST` with status 1 where other requests share the connection,
 *   else the connection closes without one, as a CGI program that died.
 * - `aborted`: the host sent `ABORT_REQUEST`: the response stops, and
 *   `END_REQUEST` with status 1 answers.
 * - `dropped`: the connection is gone: the response stops, nothing is
 *   sent.
 */
type RequestEnd = "complete" | "cut" | "aborted" | "dropped";

/** One request on a connection. Which fields hold what depends on its
 * `state`. */
class Request {
  readonly id: number;
  readonly output: RequestOutput;
  readonly errors: RequestErrors;
  state: RequestState = "params";
  /** `params`: the `PARAMS` content so far, as latin-1 text (no bytes
   * kept: the read buffer is reused). */
  params: string[] = [];
  paramsLength = 0;
  /** From `body` on: the CGI variables (`null` if they never came). */
  environ: Record<string, string> | null = null;
  /** `body`: `CONTENT_LENGTH`, or -1 when unknown. */
  expected = -1;
  /** `body`: the body so far (`null` until its first byte). */
  spool: BodySpool | null = null;
  /** `running`, `refusing`: the handler that answers. */
  handler: RequestHandler | null = null;
  /** When its last input record came (`Date.now()`), for a timeout on
   * hosts that stop sending in the middle of a request. */
  lastInput: number;
  /** Bytes of memory its parameters hold, charged to the server's budget
   * until the request ends (its environ holds as much). */
  charged = 0;
  /** Whether it counts against `maxRequests`: until its response is over
   * (a request `draining` has no more work than reading). */
  holdsSlot = true;

  constructor(connection: Connection, id: number, now: number) {
    this.id = id;
    this.output = new RequestOutput(connection, id);
    this.errors = new RequestErrors(connection, id);
    this.lastInput = now;
  }
}

/** What the connections of a server share: its application, limits,
 * handlers and log, and the counts it keeps over all of them. */
export interface ServerCore {
  /** The body limits, with the server's budget. */
  readonly limits: BodyLimits & { readonly budget: BodyBudget };
  readonly maxRequests: number;
  readonly maxRequestsPerConnection: number;
  readonly maxParamsSize: number;
  /** Ms a connection without requests stays open; 0: no limit. */
  readonly idleTimeout: number;
  /** Ms a request may wait for its next input record; 0: no limit. */
  readonly readTimeout: number;
  /** The `GET_VALUES` answers, as encoded pairs. */
  readonly values: Uint8Array;
  /** Requests in progress over all connections (not those `draining`). */
  activeRequests: number;
  /** Whether the server is shutting down: no new requests. */
  closing: boolean;
  /** The application to run for the next request. */
  getApp(): Application;
  /** Make the handler of one request. */
  newHandler(
    input: InputStream,
    output: ResponseOutput,
    errors: ErrorStream,
    environ: Record<string, string>,
  ): RequestHandler;
  /** What a finished handler sent. */
  outcome(handler: RequestHandler): Outcome;
  /** A line in the server's log (never throws). */
  logMessage(message: string, address?: string): void;
  /** A finished request in the access log (never throws). */
  logRequest(
    environ: Record<string, string>,
    code: string,
    bytes: number,
  ): void;
  /** A connection is closed. */
  onClosed(connection: Connection): void;
}

/**
 * One host connection: reads records as they come (split anywhere), runs
 * each request, and writes the records of every response through one
 * queue, so records of interleaved requests never mix.
 *
 * Each request goes through these states (`RequestState`):
 *
 * ```text
 * BEGIN_REQUEST  → params
 * params   — empty PARAMS                                → body
 *          — PARAMS over maxParamsSize or the memory
 *            budget, malformed pairs, a CONTENT_LENGTH
 *            that cannot be                              → refusing
 * body     — empty STDIN                                 → running (the app)
 *          — empty STDIN short of CONTENT_LENGTH         → running (a 400)
 *          — STDIN past CONTENT_LENGTH, maxBodySize or
 *            the disk budget, a spool that fails         → refusing
 * refusing — empty STDIN                                 → running
 *          — the handler done                            → draining
 * running  — the handler done                            → ended (complete | cut)
 * draining — empty STDIN, BEGIN_REQUEST of its id        → ended
 * any      — ABORT_REQUEST                               → ended (aborted)
 * any      — the connection closes                       → ended (dropped)
 * waiting  — no input record for readTimeout             → ended (dropped)
 * ```
 *
 * (`waiting`: any state but `running`, whose input is complete.) A
 * connection without requests is closed once it has been so for
 * `idleTimeout`: `sweep()`, which the server calls now and then, checks
 * both times.
 *
 * A request's response ends in `#end` alone (its spool released, the
 * records of the ending sent, the access log written); it leaves the
 * table in `#forget`. Records that do not fit a request's state (`STDIN`
 * in `params`, `PARAMS` in `body` or `running`, a second `BEGIN_REQUEST`)
 * break the protocol and close the connection; those of a request in
 * `refusing` or `draining` are thrown away.
 */
export class Connection {
  readonly #core: ServerCore;
  readonly #conn: ByteStream;
  /** The host's address, for the log. */
  readonly peer: string;
  /** When the last whole record came from the host, or the connection
   * last became idle (`Date.now()`), for the idle timeout: a record
   * dripped a byte at a time does not keep a connection alive. */
  lastActivity: number = Date.now();
  readonly #requests = new Map<number, Request>();
  readonly #reader = new RecordReader();
  // The output queue.
  #queue: Uint8Array[] = [];
  #queued = 0;
  #writing = false;
  #waiters: { resolve: () => void; reject: (error: unknown) => void }[] = [];
  #error: unknown = null;
  // Closing.
  #closed = false;
  #readEnded = false;
  #closeWhenIdle = false;
  #finishing = false;
  #linger = false;
  #lingerTimer: ReturnType<typeof setTimeout> | undefined;
  /** Whether the log has a line about this connection's requests over
   * `maxRequestsPerConnection` (one is enough). */
  #notedCap = false;
  readonly done: Promise<void>;
  #markDone!: () => void;

  /**
   * @param core What the connections of the server share.
   * @param conn The connection's bytes.
   * @param peer The host's address, for the log (see `peerName`).
   */
  constructor(core: ServerCore, conn: ByteStream, peer: string) {
    this.#core = core;
    this.#conn = conn;
    this.peer = peer;
    this.done = new Promise((resolve) => this.#markDone = resolve);
  }

  /** Bytes queued and not yet handed to the socket. */
  get backlog(): number {
    return this.#queued;
  }

  /** Log a line about this connection. */
  #note(message: string): void {
    this.#core.logMessage(message, this.peer);
  }

  // --- Output -------------------------------------------------------------

  /** Queue whole records; they are written in order, after a microtask so
   * that the records one step produces leave in one write. */
  send(bytes: Uint8Array): void {
    if (this.#closed || this.#error !== null || bytes.length === 0) return;
    this.#queue.push(bytes);
    this.#queued += bytes.length;
    if (!this.#writing) {
      this.#writing = true;
      queueMicrotask(() => void this.#pump());
    }
  }

  /** Settles once the backlog is below the high-water mark. */
  drained(): Promise<void> {
    if (this.#error !== null || this.#closed) {
      return Promise.reject(this.#error ?? requestAborted());
    }
    if (this.#queued < HIGH_WATER) return RESOLVED;
    return new Promise((resolve, reject) => {
      this.#waiters.push({ resolve, reject });
    });
  }

  async #pump(): Promise<void> {
    try {
      while (this.#queue.length > 0 && !this.#closed) {
        const data = this.#take();
        for (let offset = 0; offset < data.length;) {
          offset += await this.#conn.write(
            offset === 0 ? data : data.subarray(offset),
          );
        }
        this.#queued -= data.length;
        releaseFrame(data);
        if (this.#queued < HIGH_WATER) this.#wake();
      }
    } catch (error) {
      this.#writing = false;
      this.#fail(error);
      return;
    }
    this.#writing = false;
    if (this.#finishing) this.#afterLastWrite();
  }

  /** The next bytes to write: queued records joined up to a limit. */
  #take(): Uint8Array {
    const queue = this.#queue;
    let count = 1;
    let total = queue[0].length;
    while (
      count < queue.length && total + queue[count].length <= COALESCE_LIMIT
    ) {
      total += queue[count].length;
      count++;
    }
    if (count === 1) return queue.shift()!;
    return joinFrames(queue.splice(0, count), total);
  }

  #wake(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const waiter of waiters) waiter.resolve();
  }

  /** The socket failed: every request on it is over. */
  #fail(error: unknown): void {
    if (this.#closed) return;
    this.#error = error;
    if (!isHostGone(error)) {
      this.#note(`Cannot write to the FastCGI host: ${describe(error)}`);
    }
    this.close();
  }

  // --- Input --------------------------------------------------------------

  /** Read and answer records until the connection ends. */
  async serve(): Promise<void> {
    const reader = this.#reader;
    try {
      for (;;) {
        const n = await this.#conn.read(reader.room());
        if (n === null) break;
        if (this.#finishing) {
          // Half-closed: nothing more can be answered.
          reader.clear();
          continue;
        }
        reader.filled(n);
        const now = Date.now();
        // Nothing after the last request of a connection that is closing.
        while (!this.#closed && !this.#finishing && reader.next()) {
          this.lastActivity = now;
          this.#record(reader.type, reader.id, reader.content);
        }
        if (this.#closed) return;
      }
    } catch (error) {
      if (this.#closed) return;
      if (error instanceof ProtocolError) {
        this.#note(error.message);
      } else if (!isHostGone(error)) {
        this.#note(`Cannot read from the FastCGI host: ${describe(error)}`);
      }
      this.close();
      return;
    }
    this.#readEnded = true;
    if (this.#closed) return;
    if (reader.pending > 0 && !this.#finishing) {
      this.#note(
        `Cannot read a FastCGI record: the connection ended inside one, after ${reader.pending} bytes`,
      );
    }
    // The host closed the connection: FastCGI's way to abort every request
    // on it (a host that only shut down its sending side would have
    // nothing to read the responses with either).
    this.close();
  }

  /** One record; its content is a view into the read buffer: whatever is
   * kept is copied. */
  #record(type: number, id: number, content: Uint8Array): void {
    if (id === 0) {
      this.#management(type, content);
      return;
    }
    switch (type) {
      case BEGIN_REQUEST:
        this.#begin(id, content);
        return;
      case ABORT_REQUEST: {
        const request = this.#requests.get(id);
        if (request === undefined) return;
        if (request.state === "draining") this.#forget(request);
        else this.#end(request, "aborted");
        return;
      }
      case PARAMS:
        this.#params(id, content);
        return;
      case STDIN:
        this.#stdin(id, content);
        return;
      default:
        throw new ProtocolError(
          `type ${type} is not one a host sends for a request (request ${id})`,
        );
    }
  }

  /** `GET_VALUES` is answered; any other management record is not known. */
  #management(type: number, content: Uint8Array): void {
    if (type !== GET_VALUES) {
      const body = new Uint8Array(8);
      body[0] = type;
      this.send(record(UNKNOWN_TYPE, 0, body));
      return;
    }
    const names: string[] = [];
    if (!decodePairs(content, (name) => void names.push(decodeLatin1(name)))) {
      throw new ProtocolError("the GET_VALUES names are malformed");
    }
    const values = this.#core.values;
    const known = new Map<string, string>();
    decodePairs(values, (name, value) => {
      known.set(decodeLatin1(name), decodeLatin1(value));
    });
    const answer: [string, string][] = [];
    for (const name of names) {
      const value = known.get(name);
      if (value !== undefined) answer.push([name, value]);
    }
    this.send(record(GET_VALUES_RESULT, 0, encodePairs(answer)));
  }

  #begin(id: number, content: Uint8Array): void {
    if (content.length !== 8) {
      throw new ProtocolError(
        `BEGIN_REQUEST carries ${content.length} bytes, not 8 (request ${id})`,
      );
    }
    const existing = this.#requests.get(id);
    if (existing !== undefined) {
      if (existing.state !== "draining") {
        throw new ProtocolError(`request ${id} began twice`);
      }
      // Answered while its input was still coming; the host has moved on.
      this.#forget(existing);
    }
    const role = content[0] << 8 | content[1];
    // Without KEEP_CONN, the connection closes after this request.
    if ((content[2] & KEEP_CONN) === 0) this.#closeWhenIdle = true;
    const core = this.#core;
    if (role !== RESPONDER) {
      this.#linger = true;
      this.send(endRequestRecord(id, 0, UNKNOWN_ROLE));
      this.#maybeFinish();
      return;
    }
    const full = this.#requests.size >= core.maxRequestsPerConnection;
    if (core.closing || core.activeRequests >= core.maxRequests || full) {
      if (full && !this.#notedCap) {
        this.#notedCap = true;
        this.#note(
          `Refused request ${id} with OVERLOADED: the connection has ${this.#requests.size} requests in progress (maxRequestsPerConnection); further ones are refused without a log line`,
        );
      }
      this.#linger = true;
      this.send(overloadedRecords(id));
      this.#maybeFinish();
      return;
    }
    core.activeRequests++;
    this.#requests.set(id, new Request(this, id, this.lastActivity));
  }

  #params(id: number, content: Uint8Array): void {
    const request = this.#requests.get(id);
    // Records of requests not (or no longer) active are ignored.
    if (request === undefined) return;
    switch (request.state) {
      case "params":
        break;
      case "refusing":
      case "draining":
        // Thrown away, but the host is still sending.
        request.lastInput = this.lastActivity;
        return;
      default:
        throw new ProtocolError(
          `PARAMS after the end of the parameters (request ${id})`,
        );
    }
    request.lastInput = this.lastActivity;
    if (content.length === 0) {
      this.#paramsDone(request);
      return;
    }
    const length = request.paramsLength + content.length;
    const budget = this.#core.limits.budget;
    if (!budget.takeMemory(content.length)) {
      this.#note(
        `Refused request ${id} with 503: its parameters would take the memory held for requests past ${budget.memoryBudget} bytes (memoryBudget)`,
      );
      this.#refundParams(request);
      this.#refuse(request, BUSY_APP, {});
      return;
    }
    request.charged += content.length;
    if (length > this.#core.maxParamsSize) {
      this.#note(
        `Cannot take request ${id}: its parameters are over ${this.#core.maxParamsSize} bytes`,
      );
      this.#refundParams(request);
      this.#refuse(
        request,
        errorApp(
          "431 Request Header Fields Too Large",
          "The request's header fields are too large.",
        ),
        {},
      );
      return;
    }
    request.params.push(latin1Text(content));
    request.paramsLength = length;
  }

  /** `params` → `body`, or `refusing`. */
  #paramsDone(request: Request): void {
    const params = request.params;
    request.params = [];
    const environ = paramsToEnviron(
      params.length === 1 ? params[0] : params.join(""),
    );
    if (environ === null) {
      this.#note(
        `Cannot take request ${request.id}: its name-value pairs are malformed`,
      );
      this.#refuse(
        request,
        errorApp("400 Bad Request", "The request is malformed."),
        {},
      );
      return;
    }
    this.#dropBadNames(request.id, environ);
    request.state = "body";
    request.environ = environ;
    const declared = environ.CONTENT_LENGTH;
    if (declared !== undefined && declared !== "") {
      // The rule makeServer applies to Content-Length: " 10 " is 10.
      const digits = normalizeContentLength(declared);
      if (digits === null) {
        this.#note(
          `Refused request ${request.id} with 400: CONTENT_LENGTH ${
            quote(declared)
          } is not a length`,
        );
        this.#refuse(request, this.#badBody());
        return;
      }
      if (digits !== declared) environ.CONTENT_LENGTH = digits;
      request.expected = Number(digits);
      if (request.expected > this.#core.limits.maxBodySize) {
        this.#refuse(request, this.#tooLarge());
        return;
      }
    }
  }

  /**
   * Drop the parameters whose names cannot be CGI variable names
   * (`isVariableName`), with one line in the log: no header line or
   * environment entry can be forged through them.
   */
  #dropBadNames(id: number, environ: Record<string, string>): void {
    let dropped: string[] | null = null;
    for (const name in environ) {
      if (isVariableName(name)) continue;
      (dropped ??= []).push(name);
      delete environ[name];
    }
    if (dropped === null) return;
    this.#note(
      `Dropped ${dropped.length} parameter${
        dropped.length === 1 ? "" : "s"
      } of request ${id} whose names cannot be CGI variable names: ${
        dropped.map((name) => quote(name)).join(", ")
      }`,
    );
  }

  /** Give back the memory the request's parameters were charged. */
  #refundParams(request: Request): void {
    request.params = [];
    this.#core.limits.budget.refundMemory(request.charged);
    request.charged = 0;
  }

  /** The 413 answer of `_body.ts`. */
  #tooLarge(): Application {
    const max = this.#core.limits.maxBodySize;
    return bodyErrorApp(new BodyTooLarge(max), max);
  }

  /** The 400 answer of `_body.ts`, for a body that cannot be right. */
  #badBody(error: unknown = null): Application {
    return bodyErrorApp(error, this.#core.limits.maxBodySize);
  }

  #stdin(id: number, content: Uint8Array): void {
    const request = this.#requests.get(id);
    if (request === undefined) return;
    switch (request.state) {
      case "body":
        break;
      case "refusing":
        request.lastInput = this.lastActivity;
        // The end of the input thrown away; the answer may still run.
        if (content.length === 0) request.state = "running";
        return;
      case "draining":
        request.lastInput = this.lastActivity;
        if (content.length === 0) this.#forget(request);
        return;
      case "params":
        throw new ProtocolError(
          `STDIN before the end of the parameters (request ${id})`,
        );
      default:
        throw new ProtocolError(
          `STDIN after the end of the body (request ${id})`,
        );
    }
    request.lastInput = this.lastActivity;
    const received = request.spool?.length ?? 0;
    const expected = request.expected;
    if (content.length === 0) {
      if (expected >= 0 && received !== expected) {
        this.#refuse(request, this.#badBody(), request.environ!, true);
        return;
      }
      const environ = request.environ!;
      if (expected < 0) environ.CONTENT_LENGTH = String(received);
      let input: InputStream;
      try {
        input = request.spool === null
          ? new BytesInput()
          : request.spool.input();
      } catch (error) {
        this.#note(`Cannot read the body of request ${id}: ${describe(error)}`);
        this.#refuse(request, this.#badBody(error), environ, true);
        return;
      }
      this.#run(request, "running", this.#core.getApp(), input, environ);
      return;
    }
    if (expected >= 0 && received + content.length > expected) {
      this.#refuse(request, this.#badBody());
      return;
    }
    try {
      request.spool ??= new BodySpool(this.#core.limits);
      request.spool.append(content, true);
    } catch (error) {
      if (error instanceof OverBudget) {
        this.#note(
          `Refused request ${id} with 503: its body would take the bytes spooled for requests past ${error.diskBudget} (diskBudget)`,
        );
      } else if (!(error instanceof BodyTooLarge)) {
        this.#note(`Cannot keep the body of request ${id}: ${describe(error)}`);
      }
      this.#refuse(request, this.#badBody(error));
    }
  }

  /** Answer with `app` instead of the application (→ `refusing`, or
   * `running` when the input is complete). */
  #refuse(
    request: Request,
    app: Application,
    environ: Record<string, string> = request.environ ?? {},
    inputDone = false,
  ): void {
    // The body is of no use any more: let go of it now, not at the end.
    this.#releaseBody(request);
    const state = inputDone ? "running" : "refusing";
    this.#run(request, state, app, new BytesInput(), environ);
  }

  #releaseBody(request: Request): void {
    const spool = request.spool;
    if (spool === null) return;
    request.spool = null;
    try {
      spool.release();
    } catch (error) {
      this.#note(
        `Cannot remove the body of request ${request.id}: ${describe(error)}`,
      );
    }
  }

  /** Run `app` for the request through a handler. */
  #run(
    request: Request,
    state: "running" | "refusing",
    app: Application,
    input: InputStream,
    environ: Record<string, string>,
  ): void {
    request.state = state;
    request.environ = environ;
    let running: Promise<void>;
    try {
      const handler = this.#core.newHandler(
        input,
        request.output,
        request.errors,
        environ,
      );
      request.handler = handler;
      running = handler.run(app);
    } catch (error) {
      running = Promise.reject(error);
    }
    if (running === RESOLVED) this.#respond(request, null);
    else {
      running.then(
        () => this.#respond(request, null),
        (error) => this.#respond(request, error ?? new Error(String(error))),
      );
    }
  }

  /** The handler is done: the response ends `complete` or `cut`. */
  #respond(request: Request, error: unknown): void {
    // Aborted or dropped while the handler ran: ended already.
    if (request.state !== "running" && request.state !== "refusing") return;
    const outcome = this.#outcome(request);
    if (error !== null) {
      this.#note(
        `Cannot finish the response to request ${request.id}: ${
          describe(error)
        }`,
      );
    }
    this.#end(
      request,
      error !== null || outcome.cut ? "cut" : "complete",
      outcome,
    );
  }

  /** What the request's handler sent. */
  #outcome(request: Request): Outcome {
    return request.handler === null
      ? { status: null, bytes: 0, cut: true }
      : this.#core.outcome(request.handler);
  }

  /**
   * End the request's response, the one place where that happens: its
   * body spool is released, its streams closed, its handler stopped (when
   * `aborted` or `dropped`), the records the ending calls for are sent and
   * the access log written. Then the request leaves the table, unless the
   * rest of its input is still to be thrown away (`draining`).
   */
  #end(
    request: Request,
    how: RequestEnd,
    outcome: Outcome | null = null,
  ): void {
    const refusing = request.state === "refusing";
    this.#releaseBody(request);
    if (request.charged > 0) this.#refundParams(request);
    request.output.end();
    request.errors.end();
    const id = request.id;
    if (how === "aborted" || how === "dropped") {
      outcome = request.handler === null ? null : this.#outcome(request);
      request.handler?.abort();
    }
    switch (how) {
      case "complete": {
        // The end of STDOUT (and of STDERR if used), then END_REQUEST.
        const tail = request.errors.used ? 2 * HEADER_SIZE : HEADER_SIZE;
        const out = frameBuffer(tail + HEADER_SIZE + 8);
        putHeader(out, 0, STDOUT, id, 0, 0);
        if (request.errors.used) putHeader(out, HEADER_SIZE, STDERR, id, 0, 0);
        putEndRequest(out, tail, id, 0, REQUEST_COMPLETE);
        this.send(out);
        break;
      }
      case "cut":
        // Alone on the connection: the host sees the response end early.
        if (this.#requests.size > 1) {
          this.send(endRequestRecord(id, 1, REQUEST_COMPLETE));
        } else this.#closeWhenIdle = true;
        break;
      case "aborted":
        this.send(endRequestRecord(id, 1, REQUEST_COMPLETE));
        break;
    }
    this.#log(request, outcome?.status ?? null, outcome?.bytes ?? 0);
    if (refusing && (how === "complete" || how === "cut")) {
      request.state = "draining";
      this.#releaseSlot(request);
    } else this.#forget(request);
  }

  #log(request: Request, status: string | null, bytes: number): void {
    // A request dropped before its parameters were complete is no request.
    if (request.environ === null) return;
    // startResponse() has checked that a status begins with 3 digits and
    // a space: no split (and no array) per request.
    const code = status === null ? "-" : status.slice(0, 3);
    this.#core.logRequest(request.environ, code, bytes);
  }

  /** The request leaves the table: its response and its input are over. */
  #forget(request: Request): void {
    request.state = "ended";
    if (this.#requests.get(request.id) !== request) return;
    this.#requests.delete(request.id);
    this.#releaseSlot(request);
    // Idle from now on, not since its last record.
    if (this.#requests.size === 0) this.lastActivity = Date.now();
    this.#maybeFinish();
  }

  // --- Time limits --------------------------------------------------------

  /** Whether the connection has no request in progress (it may be closed
   * to make room for another). */
  get idle(): boolean {
    return this.#requests.size === 0 && !this.#closed && !this.#finishing;
  }

  /**
   * Apply the time limits at `now` (`Date.now()`): close the connection if
   * it has had no request for `idleTimeout`; drop each request that has
   * waited `readTimeout` for its next input record (`#expire`).
   */
  sweep(now: number): void {
    if (this.#closed || this.#finishing) return;
    const core = this.#core;
    if (this.#requests.size === 0) {
      if (core.idleTimeout > 0 && now - this.lastActivity >= core.idleTimeout) {
        const pending = this.#reader.pending;
        if (pending > 0) {
          this.#note(
            `Closed the connection: ${pending} bytes of a record, then nothing for ${core.idleTimeout} ms (idleTimeout)`,
          );
        }
        this.close();
      }
      return;
    }
    if (core.readTimeout <= 0) return;
    for (const request of this.#requests.values()) {
      if (
        request.state !== "running" &&
        now - request.lastInput >= core.readTimeout
      ) this.#expire(request);
      if (this.#closed) return;
    }
  }

  /**
   * A request whose input stopped coming: its response (if any) stops, its
   * body is removed, and the host learns of it: the connection closes
   * when no other request is on it, else the request ends with
   * `END_REQUEST` (application status 1).
   */
  #expire(request: Request): void {
    if (request.state === "draining") {
      // Answered already: only the rest of its input is given up.
      this.#forget(request);
      return;
    }
    const id = request.id;
    this.#note(
      `Dropped request ${id}: no PARAMS or STDIN record for ${this.#core.readTimeout} ms (readTimeout)`,
    );
    this.#end(request, "dropped");
    if (this.#requests.size === 0) this.close();
    else this.send(endRequestRecord(id, 1, REQUEST_COMPLETE));
  }

  /** Close the connection at once, with a line in the log for each
   * request cut short (`reason`). */
  cut(reason: string): void {
    for (const request of this.#requests.values()) {
      if (request.state !== "draining") {
        this.#note(`${reason} (request ${request.id})`);
      }
    }
    this.close();
  }

  /** The request no longer counts against `maxRequests`. */
  #releaseSlot(request: Request): void {
    if (!request.holdsSlot) return;
    request.holdsSlot = false;
    this.#core.activeRequests--;
  }

  // --- Closing ------------------------------------------------------------

  /** Close the connection once it is idle, if it is to be closed. */
  #maybeFinish(): void {
    if (this.#closed || this.#finishing || this.#requests.size > 0) return;
    if (!this.#closeWhenIdle && !this.#core.closing) return;
    this.finish();
  }

  /** Stop taking requests; close once the queue is written. */
  finish(): void {
    if (this.#closed || this.#finishing) return;
    if (this.#requests.size > 0) {
      this.#closeWhenIdle = true;
      return;
    }
    this.#finishing = true;
    if (!this.#writing) this.#afterLastWrite();
  }

  /**
   * Close once everything is written. When the host may still be sending
   * (a request refused at `BEGIN_REQUEST`: its parameters follow), shut
   * down the sending side first and give the host `LINGER_MS` to close its
   * own: a close with unread input resets the connection, and a reset may
   * discard the answer before the host has read it.
   */
  #afterLastWrite(): void {
    if (this.#closed) return;
    if (!this.#linger || this.#readEnded) {
      this.close();
      return;
    }
    const conn = this.#conn;
    if (conn.closeWrite === undefined) {
      this.close();
      return;
    }
    try {
      conn.closeWrite().catch(() => this.close());
    } catch {
      this.close();
      return;
    }
    this.#lingerTimer = setTimeout(() => this.close(), LINGER_MS);
  }

  /** Close the socket now; every request still on it is over. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#lingerTimer);
    try {
      this.#conn.close();
    } catch {
      // Already closed.
    }
    const waiters = this.#waiters;
    this.#waiters = [];
    if (waiters.length > 0) {
      const error = this.#error ?? requestAborted();
      for (const waiter of waiters) waiter.reject(error);
    }
    this.#queue = [];
    this.#queued = 0;
    for (const request of [...this.#requests.values()]) {
      if (request.state === "draining") this.#forget(request);
      else this.#end(request, "dropped");
    }
    this.#core.onClosed(this);
    this.#markDone();
  }
}
