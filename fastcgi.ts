/**
 * A persistent FastCGI gateway (FastCGI 1.0, the Responder role), as
 * Python's flup: web servers that speak FastCGI (nginx `fastcgi_pass`,
 * lighttpd `mod_fastcgi`, Apache `mod_proxy_fcgi`, IIS) hand requests to one
 * long-running process instead of starting a CGI program for each.
 *
 * Each request runs through a `FastCGIHandler`, a `BaseCGIHandler`: the
 * `STDOUT` stream carries exactly what a CGI program would print
 * (`Status: 200 OK`, the headers, the body). Request bodies are read
 * before the application runs (in memory, or spooled to a temporary file),
 * responses stream as the host reads them, and errors go to the host's
 * error log as `STDERR` records.
 *
 * Run as a program, it serves an application module:
 *
 * ```sh
 * deno run -A fastcgi.ts app.ts                        # see below
 * deno run -A fastcgi.ts app.ts:myApp --port 9001
 * deno run -A fastcgi.ts app.ts --socket /run/app/fcgi.sock --socket-mode 0660
 * ```
 *
 * With no `--host`, `--port` or `--socket`, it serves the listening socket
 * it was started with, as hosts that start FastCGI programs themselves
 * hand one over (`mod_fcgid`, lighttpd's `bin-path`, `spawn-fcgi`: file
 * descriptor 0; systemd socket activation: file descriptor 3, with
 * `LISTEN_PID` and `LISTEN_FDS`), else 127.0.0.1 port 9000. SIGTERM (or
 * SIGINT) lets the requests in progress finish (for up to
 * `--graceful-timeout`, 30 s), then exits 0. Flags set the limits, in
 * seconds and bytes: `--idle-timeout 60`, `--read-timeout 60`,
 * `--max-connections 1024`, `--max-requests 1024`,
 * `--max-requests-per-connection 64`, `--max-body-size 1g`,
 * `--spool-threshold 1m`, `--max-params-size 256k`, `--memory-budget 64m`,
 * `--disk-budget 4g` (the defaults; `--help` lists them).
 *
 * @example Serving an application
 * ```ts ignore
 * import { makeFastCGIServer } from "@wsgi/wsgiref/fastcgi";
 *
 * const server = makeFastCGIServer(
 *   { hostname: "127.0.0.1", port: 9000 },
 *   (_environ, startResponse) => {
 *     startResponse("200 OK", [["Content-Type", "text/plain"]]);
 *     return [new TextEncoder().encode("Hello from FastCGI\n")];
 *   },
 * );
 * await server.serveForever(); // until server.shutdown()
 * ```
 *
 * @example What a request's `STDOUT` carries
 * ```ts
 * import { FastCGIHandler, type FastCGIOutput } from "@wsgi/wsgiref/fastcgi";
 * import assert from "node:assert/strict";
 *
 * let stdout = "";
 * const output: FastCGIOutput = {
 *   write: (data) => void (stdout += new TextDecoder().decode(data)),
 *   ready: true,
 *   drain: () => Promise.resolve(),
 * };
 * const handler = new FastCGIHandler({ readSync: () => null }, output, Deno.stderr, {
 *   REQUEST_METHOD: "GET",
 * });
 * await handler.run((_environ, startResponse) => {
 *   startResponse("200 OK", [["Content-Type", "text/plain"]]);
 *   return [new TextEncoder().encode("hi")];
 * });
 * assert.equal(
 *   stdout,
 *   "Status: 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi",
 * );
 * ```
 *
 * @module
 */

import type {
  Application,
  Environ,
  ErrorStream,
  InputStream,
  SyncReader,
} from "./types.ts";
import { BaseCGIHandler, type OutputStream } from "./handlers.ts";
import { processStderr } from "./_io.ts";
import {
  closeThenThrow,
  type Gate,
  ResultLoop,
  sendResult,
  takeBack,
  Unsent,
} from "./_result.ts";
import {
  BodyBudget,
  checkBodyOptions,
  checkCount,
  checkHandlerClass,
  checkSize,
} from "./_body.ts";
import {
  type FlagKind,
  loadApplication,
  parseFlags,
  removeOwnSocket,
  runProgram,
  serveUntilStopped,
} from "./_program.ts";
import { encodePairs } from "./_fastcgi_record.ts";
import {
  type AcceptedStream,
  clientFilter,
  inheritedSocket,
  listen,
  type StreamListener,
  webServerAddrs,
} from "./_fastcgi_listen.ts";
import {
  type ByteStream,
  Connection,
  describe,
  OPEN_STREAM,
  type Outcome,
  peerName,
  requestAborted,
  type ServerCore,
} from "./_fastcgi_connection.ts";
import {
  closeResult,
  logLine,
  NO_OS_ENVIRON,
  quote,
  RESOLVED,
  typeName,
} from "./_internal.ts";

const MIB = 1024 * 1024;
const DEFAULT_MAX_CONNECTIONS = 1024;
const DEFAULT_MAX_REQUESTS = 1024;
const DEFAULT_MAX_REQUESTS_PER_CONNECTION = 64;
const DEFAULT_MAX_PARAMS_SIZE = 256 * 1024;
const DEFAULT_MEMORY_BUDGET = 64 * MIB;
const DEFAULT_DISK_BUDGET = 4096 * MIB;
/** Defaults of the time limits, in ms. */
const DEFAULT_IDLE_TIMEOUT = 60_000;
const DEFAULT_READ_TIMEOUT = 60_000;
const DEFAULT_GRACEFUL_TIMEOUT = 30_000;
/** How long a connection must have had no request in progress before a
 * new connection past `maxConnections` may take its place: one opened or
 * used just now is likely to carry the host's next request, and a new
 * connection past the limit is otherwise closed at once. */
const EVICTABLE_AFTER_MS = 1000;
/** The time limits are checked this often at most, and at least four
 * times per the shortest of them (so a timeout is late by a quarter of it
 * at most). */
const SWEEP_MAX_MS = 1000;
const SWEEP_MIN_MS = 5;
/** The longest `setTimeout` delay. */
const MAX_TIMER_DELAY = 2 ** 31 - 1;

/**
 * Where a `FastCGIHandler` sends the response: the request's `STDOUT`
 * stream on the host connection. `write` frames the bytes into `STDOUT`
 * records (copying them) and queues them; while `ready` is `false` the
 * connection has a backlog, and the handler awaits `drain()` before it asks
 * the application for the next chunk. `drain()` rejects (with
 * `Deno.errors.ConnectionAborted` or the socket's error) once the request is
 * over: aborted by the host, or its connection gone.
 *
 * @example Usage
 * ```ts
 * import type { FastCGIOutput } from "@wsgi/wsgiref/fastcgi";
 * import assert from "node:assert/strict";
 *
 * const chunks: Uint8Array[] = [];
 * const output: FastCGIOutput = {
 *   write: (data) => void chunks.push(data.slice()),
 *   ready: true,
 *   drain: () => Promise.resolve(),
 * };
 * output.write(new TextEncoder().encode("Status: 204 No Content\r\n\r\n"));
 * assert.equal(chunks.length, 1);
 * ```
 */
export interface FastCGIOutput {
  /**
   * Send bytes of the response. They are copied before this returns: the
   * handler may reuse `data` then.
   *
   * @param data The bytes.
   */
  write(data: Uint8Array): void;
  /** Whether more may be written without waiting for `drain()`. */
  readonly ready: boolean;
  /**
   * Wait until `ready`.
   *
   * @returns A promise that settles once the backlog is written.
   */
  drain(): Promise<void>;
}

let handlerOutcome: (handler: FastCGIHandler) => Outcome;
/** Whether the connection takes more of a handler's output now: `false`
 * (pull the next chunk), or the promise of its `drain()`. */
let whenOutputReady: Gate<FastCGIHandler>;

/**
 * The `BaseCGIHandler` that answers one FastCGI request: its output is the
 * CGI response (`Status: ...`, headers, body) that `BaseCGIHandler`
 * produces, carried in `STDOUT` records; `wsgi.errors` and error stacks go
 * to the host as `STDERR` records (nginx and lighttpd write them to their
 * error logs).
 *
 * It changes how the bytes travel, not what they are:
 *
 * - Chunks go out as the host reads them: after each chunk, if the
 *   connection has a backlog, the handler waits before asking the
 *   application for the next one. A 1 GiB generator holds one chunk at a
 *   time.
 * - `abort()` (the host sent `ABORT_REQUEST` or went away) stops the
 *   iteration and calls the result's `close()` at once; it is called once
 *   on every path.
 * - An error before any byte has left gets the error page, even after
 *   `write()`; after that, the error is logged and the response cut short.
 *
 * `wsgi.run_once` is `false`, `wsgi.multiprocess` `true` (several gateway
 * processes may serve one application) and `wsgi.multithread` `false`: a
 * gateway runs every request on one JavaScript thread, though `async`
 * applications interleave at each `await`. No process environment variable
 * is copied into the environ (`osEnviron` is `{}`).
 *
 * @example Usage
 * ```ts
 * import { FastCGIHandler, type FastCGIOutput } from "@wsgi/wsgiref/fastcgi";
 * import assert from "node:assert/strict";
 *
 * const sent: string[] = [];
 * const output: FastCGIOutput = {
 *   write: (data) => void sent.push(new TextDecoder().decode(data)),
 *   ready: true,
 *   drain: () => Promise.resolve(),
 * };
 * const handler = new FastCGIHandler({ readSync: () => null }, output, Deno.stderr, {
 *   REQUEST_METHOD: "GET",
 * });
 * await handler.run(function* (environ, startResponse) {
 *   assert.equal(environ["wsgi.multiprocess"], true);
 *   startResponse("200 OK", [["Content-Type", "text/plain"]]);
 *   yield new TextEncoder().encode("one ");
 *   yield new TextEncoder().encode("two");
 * });
 * assert.deepEqual(sent, [
 *   "Status: 200 OK\r\nContent-Type: text/plain\r\n\r\none ",
 *   "two",
 * ]);
 * ```
 */
export class FastCGIHandler extends BaseCGIHandler {
  #output: FastCGIOutput;
  #unsent = new Unsent();
  #flushed = false;
  #loop: ResultLoop<FastCGIHandler> | null = null;
  #aborted = false;
  #cut = false;
  #finalStatus: string | null = null;
  #finalBytes = 0;

  static {
    handlerOutcome = (handler) => ({
      status: handler.status ?? handler.#finalStatus,
      bytes: handler.status !== null ? handler.bytesSent : handler.#finalBytes,
      cut: handler.#cut,
    });
    whenOutputReady = (handler) => {
      const output = handler.#output;
      return output.ready ? false : output.drain();
    };
  }

  /**
   * Answer one request.
   *
   * @param stdin The request body, read in full before the application
   * runs: an `InputStream`, or a reader read up to `CONTENT_LENGTH`.
   * @param stdout The request's `STDOUT` stream.
   * @param stderr `wsgi.errors` and the error log: an `ErrorStream` or a
   * byte writer.
   * @param environ The request's CGI variables (its `PARAMS`).
   */
  constructor(
    stdin: InputStream | SyncReader,
    stdout: FastCGIOutput,
    stderr: ErrorStream | OutputStream,
    environ: Environ,
  ) {
    super(stdin, stdout, stderr, environ, false, true);
    this.#output = stdout;
    // Never copy the process environment into a request.
    this.osEnviron = NO_OS_ENVIRON;
  }

  /**
   * Send the result: each chunk through `write()`, waiting for the host
   * whenever the connection has a backlog; then `finishContent()` and
   * `close()`. On an error, the result's `close()` is called and the error
   * thrown, as `BaseHandler.finishResponse` does.
   *
   * @returns A promise that settles when the body is sent.
   */
  override finishResponse(): Promise<void> {
    if (this.#aborted) {
      return closeThenThrow(this.result, this, requestAborted());
    }
    const loop = this.#loop = new ResultLoop(this, this.result);
    return sendResult(this, loop, whenOutputReady);
  }

  /** `BaseHandler.finishContent`, then send what it wrote. */
  override finishContent(): void {
    super.finishContent();
    this._flush();
  }

  /**
   * Record the status and size for the access log, then
   * `BaseHandler.close()`.
   *
   * @returns A promise that settles once the result is closed.
   */
  override close(): Promise<void> {
    if (this.status !== null) {
      this.#finalStatus = this.status;
      this.#finalBytes = this.bytesSent;
    }
    return super.close();
  }

  /**
   * `BaseHandler.handleError`. An error before any byte has left (even
   * after `write()`) still gets the error page; once bytes have left, the
   * response is cut short and the gateway tells the host so (it closes the
   * connection, or ends the request with a non-zero application status
   * when other requests share the connection). After `abort()`, the error
   * is only logged.
   *
   * @param error The error.
   * @returns A promise that settles once the error page is sent.
   */
  override async handleError(error: unknown): Promise<void> {
    if (this.#aborted) {
      this.logException(error);
      return;
    }
    if (this.headersSent && !this.#flushed) {
      // Nothing has left: take it back, so the error page can go instead.
      takeBack(this, this.#unsent);
    }
    if (this.headersSent) this.#cut = true;
    await super.handleError(error);
  }

  /**
   * End the response early, because the host aborted the request or went
   * away: stop iterating the result (its `return()`, not awaited: an async
   * generator may be waiting inside `next()`) and call its `close()`.
   * Idempotent; the application may still be running, and its result is
   * closed as soon as it returns.
   */
  abort(): void {
    if (this.#aborted) return;
    this.#aborted = true;
    this.#unsent.clear();
    this.#loop?.stop((error) => this.logException(error));
    try {
      const closing = closeResult(this.result, this);
      closing?.then(undefined, (error) => this.logException(error));
    } catch (error) {
      this.logException(error);
    }
  }

  /**
   * Keep bytes for the next `_flush()`: the status line, the headers and
   * the first chunk leave together.
   *
   * @param data The bytes.
   */
  override _write(data: Uint8Array): void {
    if (this.#aborted) throw requestAborted();
    this.#unsent.push(data);
  }

  /** Frame the bytes kept by `_write()` into `STDOUT` records and send
   * them. */
  override _flush(): void {
    if (this.#unsent.bytes === 0) return;
    this.#flushed = true;
    // write() copies: the shared buffer is free again when it returns.
    this.#output.write(this.#unsent.takeShared());
  }
}

/**
 * The address a FastCGI server listens on: TCP (`port` 0 picks a free
 * one), a Unix socket, or a listening socket it inherits on a file
 * descriptor (`{ fd: 0 }`, `FCGI_LISTENSOCK_FILENO`, when `mod_fcgid`,
 * lighttpd's `bin-path` or `spawn-fcgi` started the process; `{ fd: 3 }`
 * under systemd socket activation).
 *
 * @example Usage
 * ```ts
 * import type { FastCGIAddress } from "@wsgi/wsgiref/fastcgi";
 * import assert from "node:assert/strict";
 *
 * const tcp: FastCGIAddress = { hostname: "127.0.0.1", port: 9000 };
 * const unix: FastCGIAddress = { path: "/run/app/fastcgi.sock" };
 * const inherited: FastCGIAddress = { fd: 0 };
 * assert.ok("port" in tcp && "path" in unix && "fd" in inherited);
 * ```
 */
export type FastCGIAddress =
  | { hostname: string; port: number }
  | { path: string }
  | { fd: number };

/**
 * Options of `makeFastCGIServer` and the `FastCGIServer` constructor.
 *
 * @example Usage
 * ```ts
 * import {
 *   type FastCGIServerOptions,
 *   makeFastCGIServer,
 * } from "@wsgi/wsgiref/fastcgi";
 * import assert from "node:assert/strict";
 *
 * const options: FastCGIServerOptions = { quiet: true, maxBodySize: 1024 };
 * await using server = makeFastCGIServer(
 *   { hostname: "127.0.0.1", port: 0 },
 *   (_environ, startResponse) => {
 *     startResponse("204 No Content", []);
 *     return [];
 *   },
 *   options,
 * );
 * assert.equal(server.maxBodySize, 1024);
 * ```
 */
export interface FastCGIServerOptions {
  /**
   * Turn off the access log (the host keeps one of its own).
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
   * The most host connections open at once (`FCGI_MAX_CONNS`). A
   * connection accepted beyond it is closed at once (a web server then
   * fails over at once instead of waiting in the listen queue), unless a
   * connection has had no request in progress for a second or more: then
   * the one idle the longest is closed, and the new one takes its place.
   *
   * @default {1024}
   */
  maxConnections?: number;
  /**
   * The most requests in progress at once over all connections
   * (`FCGI_MAX_REQS`); further ones are refused: a
   * `503 Service Unavailable` response, then `END_REQUEST` with
   * `FCGI_OVERLOADED` (the protocol's answer, which hosts do not pass on:
   * alone, nginx makes it a 502).
   *
   * @default {1024}
   */
  maxRequests?: number;
  /**
   * The most requests in progress at once on one connection (a host
   * multiplexing requests); further ones are refused as past
   * `maxRequests` (503, `FCGI_OVERLOADED`), so that no connection can take
   * every request slot.
   * 1 announces `FCGI_MPXS_CONNS=0`.
   *
   * @default {64}
   */
  maxRequestsPerConnection?: number;
  /**
   * Bytes of request bodies (and of requests' parameters) held in memory
   * at once, over all requests in progress. A body that would take more
   * goes to a temporary file, even under `spoolThreshold`; parameters
   * that would take more (they cannot go to a file) are answered
   * `503 Service Unavailable`. `Infinity` for no limit.
   *
   * @default {67108864} 64 MiB.
   */
  memoryBudget?: number;
  /**
   * Bytes of request bodies held in temporary files at once, over all
   * requests in progress. A request whose body would take more is
   * answered `503 Service Unavailable`, without calling the application,
   * and its file removed. `Infinity` for no limit.
   *
   * @default {4294967296} 4 GiB.
   */
  diskBudget?: number;
  /**
   * Milliseconds a connection without a request in progress stays open
   * (a web server's kept connection, or one that never sends a whole
   * record); then it is closed. 0 or `Infinity` for no limit.
   *
   * @default {60000}
   */
  idleTimeout?: number;
  /**
   * Milliseconds a request whose input is not complete waits for its next
   * `PARAMS` or `STDIN` record (a record dripped slower than that counts
   * as none); then the request is dropped, its body file removed, and the
   * connection closed (or, when other requests share it, the request
   * ended with `END_REQUEST`). 0 or `Infinity` for no limit.
   *
   * @default {60000}
   */
  readTimeout?: number;
  /**
   * Milliseconds `shutdown()` waits for the requests in progress; then
   * their connections are closed (their results closed, a line logged for
   * each) and it settles. `Infinity` to wait for as long as they take.
   *
   * @default {30000}
   */
  gracefulTimeout?: number;
  /**
   * The most bytes of `PARAMS` (the CGI variables, request headers
   * included) one request may carry; more is answered
   * `431 Request Header Fields Too Large`.
   *
   * @default {262144}
   */
  maxParamsSize?: number;
  /**
   * The IP addresses of the web servers that may connect over TCP (the
   * FastCGI specification's `FCGI_WEB_SERVER_ADDRS`, php-fpm's
   * `listen.allowed_clients`); a connection from any other address is
   * closed at once and logged. Unix sockets are not checked: their file
   * mode (`socketMode`) says who may connect.
   *
   * @default {undefined} The comma-separated list of the
   * `FCGI_WEB_SERVER_ADDRS` environment variable where it is set (and
   * readable: `--allow-env`), else anyone.
   */
  allowedClients?: string[];
  /**
   * The file mode of the Unix socket (`{ path }` addresses only), set
   * once it is bound: `0o660` lets the socket's group (the web server's,
   * say) connect.
   *
   * @default {undefined} As the process's umask makes it.
   */
  socketMode?: number;
  /**
   * The class whose instances answer each request.
   *
   * @default {FastCGIHandler}
   */
  handlerClass?: typeof FastCGIHandler;
}

/**
 * A FastCGI gateway for one application (the Responder role of FastCGI
 * 1.0), listening on TCP, a Unix socket, or a listening socket it inherits
 * (`{ fd }`). It is bound once constructed, and answers while
 * `serveForever()` runs; connections that come before wait in the listen
 * queue. TCP peers not in `allowedClients` (by default
 * `FCGI_WEB_SERVER_ADDRS`) are closed at once, with a line in the log.
 *
 * Each request's parameters become its environ: names and values as
 * latin-1 strings, one char per byte (a UTF-8 path `/é` arrives as
 * `"/\u00c3\u00a9"`), without `HTTP_CONTENT_TYPE` and `HTTP_CONTENT_LENGTH`
 * (nginx passes them along; their values are `CONTENT_TYPE` and
 * `CONTENT_LENGTH`). The body is read from `STDIN` before the application
 * runs, as `makeServer` reads it: in memory up to `spoolThreshold`, in a
 * temporary file above it (removed when the response is over).
 * Parameters never reach the process environment, so a `Proxy:` request
 * header (`HTTP_PROXY`) cannot redirect the application's `fetch`.
 *
 * Hosts may keep connections open for further requests (`KEEP_CONN`) and
 * may interleave requests on one connection: the server announces
 * `FCGI_MPXS_CONNS` (1 unless `maxRequestsPerConnection` is 1),
 * `FCGI_MAX_CONNS` and `FCGI_MAX_REQS` (the `maxConnections` and
 * `maxRequests` it enforces) to `GET_VALUES`. Records that break the
 * protocol (a wrong version, a malformed or truncated record, garbage)
 * close that connection, with a line in the log; a request the gateway
 * refuses (parameters over `maxParamsSize`, a body over `maxBodySize` or
 * longer or shorter than its `CONTENT_LENGTH`, a `CONTENT_LENGTH` that is
 * no length) is answered with a 4xx status without calling the
 * application. A `CONTENT_LENGTH` with spaces around its digits is passed
 * on without them, as `makeServer` does; a parameter whose name cannot be
 * a CGI variable's (a control character, a space or `=` in it) is dropped,
 * with a line in the log. The server goes on serving either way.
 *
 * Time, memory and trust limits keep one host, or one peer that is no
 * web server, from taking the gateway: connections idle for `idleTimeout`
 * are closed, requests whose input stops for `readTimeout` dropped, and a
 * connection past `maxConnections` is closed at once, unless one has had
 * no request in progress for a second: the idlest of those is closed in
 * its place;
 * each connection holds at most `maxRequestsPerConnection` requests; the
 * request bodies and parameters held in memory, and the bodies spooled to
 * disk, stay within `memoryBudget` and `diskBudget` (past them, a 503).
 * One timer per server applies the time limits.
 *
 * A host that closes a connection aborts its requests (as FastCGI has
 * it): results are closed, nothing more is sent. `shutdown()` stops
 * accepting, closes idle connections, and lets requests in progress finish
 * for up to `gracefulTimeout`. Each request is logged through `logRequest`
 * and `logMessage` (to stderr), unless `quiet`.
 *
 * @example Usage
 * ```ts ignore
 * import { FastCGIServer } from "@wsgi/wsgiref/fastcgi";
 * import { demoApp } from "@wsgi/wsgiref/simple_server";
 *
 * class JournalServer extends FastCGIServer {
 *   override logMessage(message: string): void {
 *     console.log(message); // to systemd's journal, with its timestamps
 *   }
 * }
 * await using server = new JournalServer({ path: "/run/app/fcgi.sock" }, demoApp);
 * await server.serveForever();
 * ```
 */
export class FastCGIServer {
  /** The address listened on; for TCP, with the real port. */
  readonly serverAddress: FastCGIAddress;
  /** The TCP port listened on (an inherited socket's too); 0 for a Unix
   * socket. */
  readonly serverPort: number;
  /** The addresses TCP peers may connect from; `null` for any. */
  readonly allowedClients: readonly string[] | null;
  /** Whether the access log is off. */
  readonly quiet: boolean;
  /** Request bodies up to this many bytes are held in memory. */
  readonly spoolThreshold: number;
  /** Request bodies over this many bytes are answered 413. */
  readonly maxBodySize: number;
  /** Where large request bodies are spooled; `undefined` for the system's
   * temporary directory. */
  readonly tempDir: string | undefined;
  /** The most host connections open at once. */
  readonly maxConnections: number;
  /** The most requests in progress at once. */
  readonly maxRequests: number;
  /** The most requests in progress at once on one connection. */
  readonly maxRequestsPerConnection: number;
  /** The most bytes of parameters a request may carry. */
  readonly maxParamsSize: number;
  /** Bytes of bodies and parameters held in memory over all requests, at
   * most. */
  readonly memoryBudget: number;
  /** Bytes of bodies held in temporary files over all requests, at most. */
  readonly diskBudget: number;
  /** Ms a connection without requests stays open; 0 for no limit. */
  readonly idleTimeout: number;
  /** Ms a request may wait for its next input record; 0 for no limit. */
  readonly readTimeout: number;
  /** Ms `shutdown()` waits for requests in progress. */
  readonly gracefulTimeout: number;

  #application: Application;
  #listener: StreamListener;
  #allowed: ((address: string) => boolean) | null;
  #allowedFrom: string;
  #core: ServerCore;
  #connections = new Set<Connection>();
  #serving: Promise<void> | null = null;
  #shutdown: Promise<void> | null = null;
  #stopServing!: () => void;
  #stopped: Promise<void>;
  #accepted = 0;
  #socket: { path: string; inode: number | null } | null;
  #budget: BodyBudget;
  /** The one timer that applies the time limits, while connections are
   * open; checks every `#sweepEvery` ms. */
  #sweeper: ReturnType<typeof setInterval> | undefined;
  #sweepEvery: number;

  /**
   * Bind to `address` and listen.
   *
   * @param address `{ hostname, port }` (port 0: any free one),
   * `{ path }` for a Unix socket (a stale socket file there is replaced),
   * or `{ fd }` for a listening socket the process inherited.
   * @param app The application.
   * @param options Body and connection limits, who may connect, the
   * socket's mode, the access log, the handler class.
   * @throws {TypeError} For an application that is not a function, an
   * address or option of the wrong type, or an `allowedClients` entry
   * that is not an IP address.
   * @throws {RangeError} For a port, descriptor or `socketMode` out of
   * range, or a bad limit.
   * @throws {Deno.errors.BadResource} For an `fd` that is not a listening
   * socket.
   */
  constructor(
    address: FastCGIAddress,
    app: Application,
    options: FastCGIServerOptions = {},
  ) {
    if (typeof app !== "function") {
      throw new TypeError(
        `Cannot create the server: the application must be a function, not ${
          typeName(app)
        } ${quote(app)}`,
      );
    }
    const { quiet = false, tempDir, handlerClass = FastCGIHandler } = options;
    checkHandlerClass(handlerClass);
    this.quiet = Boolean(quiet);
    this.tempDir = tempDir;
    ({
      spoolThreshold: this.spoolThreshold,
      maxBodySize: this.maxBodySize,
    } = checkBodyOptions(options));
    this.maxParamsSize = checkSize(
      options.maxParamsSize,
      "maxParamsSize",
      DEFAULT_MAX_PARAMS_SIZE,
    );
    this.maxConnections = checkCount(
      options.maxConnections,
      "maxConnections",
      DEFAULT_MAX_CONNECTIONS,
    );
    this.maxRequests = checkCount(
      options.maxRequests,
      "maxRequests",
      DEFAULT_MAX_REQUESTS,
    );
    this.maxRequestsPerConnection = checkCount(
      options.maxRequestsPerConnection,
      "maxRequestsPerConnection",
      DEFAULT_MAX_REQUESTS_PER_CONNECTION,
    );
    this.memoryBudget = checkSize(
      options.memoryBudget,
      "memoryBudget",
      DEFAULT_MEMORY_BUDGET,
    );
    this.diskBudget = checkSize(
      options.diskBudget,
      "diskBudget",
      DEFAULT_DISK_BUDGET,
    );
    // Infinity, as 0, is no limit: kept as 0, the one test on the way.
    const timeout = (value: number) => value === Infinity ? 0 : value;
    this.idleTimeout = timeout(checkSize(
      options.idleTimeout,
      "idleTimeout",
      DEFAULT_IDLE_TIMEOUT,
    ));
    this.readTimeout = timeout(checkSize(
      options.readTimeout,
      "readTimeout",
      DEFAULT_READ_TIMEOUT,
    ));
    this.gracefulTimeout = checkSize(
      options.gracefulTimeout,
      "gracefulTimeout",
      DEFAULT_GRACEFUL_TIMEOUT,
    );
    const shortest = Math.min(
      this.idleTimeout || Infinity,
      this.readTimeout || Infinity,
    );
    this.#sweepEvery = Math.max(
      SWEEP_MIN_MS,
      Math.min(SWEEP_MAX_MS, Math.floor(shortest / 4)),
    );
    this.#budget = new BodyBudget(this.memoryBudget, this.diskBudget);
    this.#application = app;
    const fromEnvironment = options.allowedClients === undefined;
    const clients = options.allowedClients ?? webServerAddrs();
    this.#allowed = clientFilter(
      clients,
      fromEnvironment ? "FCGI_WEB_SERVER_ADDRS" : "allowedClients",
    );
    this.allowedClients = this.#allowed === null ? null : [...clients!];
    this.#allowedFrom = fromEnvironment
      ? "FCGI_WEB_SERVER_ADDRS"
      : "allowedClients";
    const bound = listen(address, options.socketMode);
    this.#listener = bound.listener;
    this.#socket = bound.socket;
    this.serverPort = bound.port;
    this.serverAddress = "fd" in address
      ? { fd: address.fd }
      : bound.socket !== null
      ? { path: bound.socket.path }
      : { hostname: bound.hostname!, port: bound.port };
    this.#stopped = new Promise((resolve) => this.#stopServing = resolve);
    OPEN_STREAM.set(this, (stream, peer) => this.#open(stream, peer));
    this.#core = {
      limits: {
        spoolThreshold: this.spoolThreshold,
        maxBodySize: this.maxBodySize,
        tempDir,
        budget: this.#budget,
      },
      maxRequests: this.maxRequests,
      maxRequestsPerConnection: this.maxRequestsPerConnection,
      maxParamsSize: this.maxParamsSize,
      idleTimeout: this.idleTimeout,
      readTimeout: this.readTimeout,
      values: encodePairs([
        ["FCGI_MAX_CONNS", String(this.maxConnections)],
        ["FCGI_MAX_REQS", String(this.maxRequests)],
        ["FCGI_MPXS_CONNS", this.maxRequestsPerConnection > 1 ? "1" : "0"],
      ]),
      activeRequests: 0,
      closing: false,
      getApp: () => this.getApp(),
      newHandler: (input, output, errors, environ) =>
        new handlerClass(input, output, errors, environ),
      outcome: (handler) => handlerOutcome(handler as FastCGIHandler),
      logMessage: (message, address) => this.#log(message, address),
      logRequest: (environ, code, bytes) => {
        try {
          this.logRequest(environ, code, bytes);
        } catch (error) {
          console.error(error);
        }
      },
      onClosed: (connection) => {
        this.#connections.delete(connection);
        if (this.#connections.size === 0) this.#stopSweeping();
      },
    };
  }

  /** Log `message` through the overridable `logMessage`. */
  #log(message: string, address = "-"): void {
    try {
      this.logMessage(message, address);
    } catch (error) {
      console.error(error);
    }
  }

  /**
   * The application served.
   *
   * @returns The application.
   */
  getApp(): Application {
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

  /** Host connections open now. */
  get openConnections(): number {
    return this.#connections.size;
  }

  /** Host connections served since the server started (not those closed
   * at once past `maxConnections`). */
  get acceptedConnections(): number {
    return this.#accepted;
  }

  /** Requests in progress now. */
  get activeRequests(): number {
    return this.#core.activeRequests;
  }

  /** Bytes of request bodies and parameters held in memory now (counted
   * against `memoryBudget`). */
  get memoryUsed(): number {
    return this.#budget.memory;
  }

  /** Bytes of request bodies held in temporary files now (counted
   * against `diskBudget`). */
  get diskUsed(): number {
    return this.#budget.disk;
  }

  /**
   * Accept host connections and answer their requests until `shutdown()`.
   * Calling it again while it runs returns the same promise.
   *
   * @returns A promise that settles after `shutdown()`.
   */
  serveForever(): Promise<void> {
    if (this.#core.closing) return RESOLVED;
    return this.#serving ??= (async () => {
      const accepting = this.#acceptLoop();
      await this.#stopped;
      await accepting;
    })();
  }

  async #acceptLoop(): Promise<void> {
    const core = this.#core;
    while (!core.closing) {
      let conn: AcceptedStream;
      try {
        conn = await this.#listener.accept();
      } catch (error) {
        if (core.closing || error instanceof Deno.errors.BadResource) break;
        // Out of file descriptors, say: log, wait a moment, go on.
        this.#log(`Cannot accept a connection: ${describe(error)}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
        continue;
      }
      if (core.closing) {
        conn.close();
        break;
      }
      const addr = conn.remoteAddr;
      if (
        this.#allowed !== null && addr.transport === "tcp" &&
        !this.#allowed(addr.hostname)
      ) {
        conn.close();
        this.#log(
          `Refused the connection: ${
            quote(addr.hostname)
          } is not in ${this.#allowedFrom}`,
          peerName(addr),
        );
        continue;
      }
      if ("setNoDelay" in conn) (conn as Deno.TcpConn).setNoDelay(true);
      this.#open(conn, peerName(addr));
    }
  }

  /** Serve a host connection, if there is room for it. */
  #open(stream: ByteStream, peer: string): void {
    if (this.#connections.size >= this.maxConnections && !this.#evictIdle()) {
      try {
        stream.close();
      } catch {
        // Gone already.
      }
      this.#log(
        `Refused the connection: ${this.maxConnections} connections are open, none idle for ${EVICTABLE_AFTER_MS} ms (maxConnections)`,
        peer,
      );
      return;
    }
    this.#accepted++;
    const connection = new Connection(this.#core, stream, peer);
    this.#connections.add(connection);
    this.#startSweeping();
    connection.serve().catch((error) => {
      this.#log(`Cannot serve: ${describe(error)}`, connection.peer);
      connection.close();
    });
  }

  /** Close the connection idle the longest, to make room for a new one;
   * `false` when none has been idle for `EVICTABLE_AFTER_MS`. */
  #evictIdle(): boolean {
    let oldest: Connection | null = null;
    for (const connection of this.#connections) {
      if (
        connection.idle &&
        (oldest === null || connection.lastActivity < oldest.lastActivity)
      ) oldest = connection;
    }
    if (
      oldest === null || Date.now() - oldest.lastActivity < EVICTABLE_AFTER_MS
    ) return false;
    this.#log(
      `Closed the connection to make room for a new one: ${this.maxConnections} connections are open (maxConnections), this one idle the longest`,
      oldest.peer,
    );
    oldest.close();
    return true;
  }

  /** Start the timer of the time limits, if they apply and it is not
   * running. */
  #startSweeping(): void {
    if (this.#sweeper !== undefined) return;
    if (this.idleTimeout === 0 && this.readTimeout === 0) return;
    this.#sweeper = setInterval(() => {
      const now = Date.now();
      for (const connection of this.#connections) connection.sweep(now);
    }, this.#sweepEvery);
    // Open connections keep the process alive; the timer need not.
    Deno.unrefTimer(this.#sweeper);
  }

  #stopSweeping(): void {
    clearInterval(this.#sweeper);
    this.#sweeper = undefined;
  }

  /**
   * Stop accepting connections: idle ones are closed, requests in progress
   * finish (then their connections close), `serveForever()` returns, and
   * the promise settles once the last connection is closed, or
   * `gracefulTimeout` ms after the call: then the connections still open
   * are closed, cutting their requests short (their results closed, a
   * line logged for each). Calling it again returns the same promise.
   *
   * @returns A promise that settles when the server has stopped.
   */
  shutdown(): Promise<void> {
    if (this.#shutdown !== null) return this.#shutdown;
    const core = this.#core;
    core.closing = true;
    try {
      this.#listener.close();
    } catch {
      // Already closed.
    }
    const socket = this.#socket;
    if (socket !== null) removeOwnSocket(socket.path, socket.inode);
    this.#stopServing();
    for (const connection of this.#connections) connection.finish();
    const limit = this.gracefulTimeout;
    let deadline: ReturnType<typeof setTimeout> | undefined;
    if (limit <= MAX_TIMER_DELAY) {
      deadline = setTimeout(() => {
        const reason =
          `Request cut short at shutdown: still running after ${limit} ms (gracefulTimeout)`;
        for (const connection of [...this.#connections]) {
          connection.cut(reason);
        }
      }, limit);
    }
    return this.#shutdown = (async () => {
      try {
        await this.#serving;
        while (this.#connections.size > 0) {
          await Promise.all([...this.#connections].map((c) => c.done));
        }
      } finally {
        clearTimeout(deadline);
        this.#stopSweeping();
      }
    })();
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

  /**
   * Log a finished request in Common Log Format, from its parameters:
   * `127.0.0.1 - - [21/Nov/2026 10:00:00] "GET /app/x HTTP/1.1" 200 13`.
   * Nothing is formatted when the server is quiet.
   *
   * @param environ The request's CGI variables.
   * @param code The status code, or `"-"` when none was sent.
   * @param size The body bytes sent.
   */
  logRequest(
    environ: Record<string, string>,
    code: string,
    size: number,
  ): void {
    if (this.quiet) return;
    const target = environ.REQUEST_URI ??
      (environ.SCRIPT_NAME ?? "") + (environ.PATH_INFO ?? "") +
        (environ.QUERY_STRING ? "?" + environ.QUERY_STRING : "");
    this.logMessage(
      `"${environ.REQUEST_METHOD ?? "-"} ${target || "-"} ${
        environ.SERVER_PROTOCOL ?? "-"
      }" ${code} ${size}`,
      environ.REMOTE_ADDR || "-",
    );
  }

  /**
   * Write a line to the process's stderr as `http.server` does: the
   * address, the local date, then `message` with control characters
   * escaped (a line break indents the next line). The access log (with
   * the client's address) and the gateway's own errors (with the host's;
   * errors of requests go to the host) come through here. Override it to
   * log elsewhere.
   *
   * @param message The text.
   * @param address Whom the line is about.
   */
  logMessage(message: string, address = "-"): void {
    processStderr().write(logLine(address, message, true));
  }
}

/**
 * Create a FastCGI gateway for `app`, bound to `address` when this returns
 * (`serverPort` is the real port); it answers while `serveForever()` runs.
 *
 * @example Usage
 * ```ts
 * import { makeFastCGIServer } from "@wsgi/wsgiref/fastcgi";
 * import assert from "node:assert/strict";
 *
 * await using server = makeFastCGIServer(
 *   { hostname: "127.0.0.1", port: 0 },
 *   (_environ, startResponse) => {
 *     startResponse("200 OK", [["Content-Type", "text/plain"]]);
 *     return [new TextEncoder().encode("Hello from FastCGI\n")];
 *   },
 *   { quiet: true },
 * );
 * assert.ok(server.serverPort > 0);
 * const serving = server.serveForever();
 * await server.shutdown();
 * await serving;
 * ```
 *
 * @param address `{ hostname, port }`, `{ path }` (a Unix socket) or
 * `{ fd }` (an inherited listening socket).
 * @param app The application.
 * @param options Body and connection limits, the access log, the handler
 * class.
 * @returns The server.
 * @throws {TypeError} For an application that is not a function or a bad
 * address or option.
 * @throws {RangeError} For a port, descriptor or `socketMode` out of range,
 * or a bad limit.
 * @throws {Deno.errors.BadResource} For an `fd` that is not a listening
 * socket.
 */
export function makeFastCGIServer(
  address: FastCGIAddress,
  app: Application,
  options: FastCGIServerOptions = {},
): FastCGIServer {
  return new FastCGIServer(address, app, options);
}

const USAGE =
  "Usage: deno run -A fastcgi.ts module[:name] [--host H] [--port P | --socket PATH [--socket-mode 0660]] [--quiet]\n" +
  "  [--graceful-timeout S] [--idle-timeout S] [--read-timeout S]\n" +
  "  [--max-connections N] [--max-requests N] [--max-requests-per-connection N]\n" +
  "  [--max-body-size BYTES] [--spool-threshold BYTES] [--max-params-size BYTES]\n" +
  "  [--memory-budget BYTES] [--disk-budget BYTES]\n" +
  "(S: seconds, 0 for no limit on idle and read; BYTES: a number, or with k, m or g)";

/** The program's flags, and what each takes. */
const FLAGS: Readonly<Record<string, FlagKind>> = {
  "--host": "text",
  "--port": "port",
  "--socket": "socket",
  "--socket-mode": "mode",
  "--quiet": "switch",
  "--graceful-timeout": "seconds",
  "--idle-timeout": "seconds",
  "--read-timeout": "seconds",
  "--max-connections": "count",
  "--max-requests": "count",
  "--max-requests-per-connection": "count",
  "--max-body-size": "bytes",
  "--spool-threshold": "bytes",
  "--max-params-size": "bytes",
  "--memory-budget": "bytes",
  "--disk-budget": "bytes",
};

/** The option each limit flag sets. */
const LIMIT_FLAGS: Readonly<Record<string, keyof FastCGIServerOptions>> = {
  "--graceful-timeout": "gracefulTimeout",
  "--idle-timeout": "idleTimeout",
  "--read-timeout": "readTimeout",
  "--max-connections": "maxConnections",
  "--max-requests": "maxRequests",
  "--max-requests-per-connection": "maxRequestsPerConnection",
  "--max-body-size": "maxBodySize",
  "--spool-threshold": "spoolThreshold",
  "--max-params-size": "maxParamsSize",
  "--memory-budget": "memoryBudget",
  "--disk-budget": "diskBudget",
};

/**
 * Where the program listens without an address on its command line: the
 * listening socket on fd 0 that a host which starts FastCGI programs
 * hands over, else the one systemd passes on fd 3, else 127.0.0.1:9000.
 */
function inheritedAddress(): FastCGIAddress {
  const fd = inheritedSocket();
  return fd !== null ? { fd } : { hostname: "127.0.0.1", port: 9000 };
}

async function main(args: string[]): Promise<number> {
  if (args.includes("--help") || args.includes("-h")) {
    console.log(USAGE);
    return 0;
  }
  const parsed = parseFlags(args, FLAGS);
  if (typeof parsed === "string") {
    console.error(`${parsed}\n${USAGE}`);
    return 2;
  }
  const { spec, values } = parsed;
  if (spec === null) {
    console.error(`No application module given\n${USAGE}`);
    return 2;
  }
  const hostname = values.get("--host") as string | undefined;
  const port = values.get("--port") as number | undefined;
  const path = values.get("--socket") as string | undefined;
  const socketMode = values.get("--socket-mode") as number | undefined;
  if (socketMode !== undefined && path === undefined) {
    console.error(`--socket-mode goes with --socket\n${USAGE}`);
    return 2;
  }
  if (path !== undefined && (hostname !== undefined || port !== undefined)) {
    console.error(
      `Give --socket or ${
        port !== undefined ? "--port" : "--host"
      }, not both\n${USAGE}`,
    );
    return 2;
  }
  const options: FastCGIServerOptions = {
    quiet: values.has("--quiet"),
    socketMode,
  };
  for (const [flag, option] of Object.entries(LIMIT_FLAGS)) {
    const value = values.get(flag);
    if (value !== undefined) {
      (options as Record<string, unknown>)[option] = value;
    }
  }
  const address: FastCGIAddress = path !== undefined
    ? { path }
    : hostname !== undefined || port !== undefined
    ? { hostname: hostname ?? "127.0.0.1", port: port ?? 9000 }
    : inheritedAddress();
  let app: Application;
  try {
    app = await loadApplication(spec);
  } catch (error) {
    console.error((error as Error).message);
    return 1;
  }
  let server: FastCGIServer;
  try {
    server = makeFastCGIServer(address, app, options);
  } catch (error) {
    console.error((error as Error).message);
    return 1;
  }
  const bound = server.serverAddress;
  const where = "path" in bound
    ? `unix:${bound.path}`
    : "fd" in bound
    ? `fd ${bound.fd} (${
      server.serverPort > 0 ? `TCP port ${server.serverPort}` : "a Unix socket"
    })`
    : `${bound.hostname} port ${server.serverPort}`;
  await serveUntilStopped(server, `Serving FastCGI on ${where} ...`);
  return 0;
}

if (import.meta.main) runProgram(main);
