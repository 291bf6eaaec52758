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
 * SIGINT) lets the requests in progress finish, then exits 0.
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
  checkCount,
  checkSize,
  DEFAULT_MAX_BODY_SIZE,
  DEFAULT_SPOOL_THRESHOLD,
} from "./_body.ts";
import {
  loadApplication,
  parsePort,
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
  repr,
  RESOLVED,
  typeName,
} from "./_internal.ts";

const DEFAULT_MAX_CONNECTIONS = 1024;
const DEFAULT_MAX_REQUESTS = 1024;
const DEFAULT_MAX_PARAMS_SIZE = 256 * 1024;

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
   * The most host connections open at once (`FCGI_MAX_CONNS`); further
   * connections wait in the listen queue.
   *
   * @default {1024}
   */
  maxConnections?: number;
  /**
   * The most requests in progress at once over all connections
   * (`FCGI_MAX_REQS`); further ones are answered `END_REQUEST` with
   * `FCGI_OVERLOADED`.
   *
   * @default {1024}
   */
  maxRequests?: number;
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
 * `FCGI_MPXS_CONNS=1`, `FCGI_MAX_CONNS` and `FCGI_MAX_REQS` (the
 * `maxConnections` and `maxRequests` it enforces) to `GET_VALUES`. Records
 * that break the protocol (a wrong version, a malformed or truncated
 * record, garbage) close that connection, with a line in the log; a
 * request the gateway refuses (parameters over `maxParamsSize`, a body over
 * `maxBodySize` or longer or shorter than its `CONTENT_LENGTH`) is answered
 * with a 4xx status without calling the application. The server goes on
 * serving either way.
 *
 * A host that closes a connection aborts its requests (as FastCGI has
 * it): results are closed, nothing more is sent. `shutdown()` stops
 * accepting, closes idle connections, and lets requests in progress finish.
 * Each request is logged through `logRequest` and `logMessage` (to
 * stderr), unless `quiet`.
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
  /** The most bytes of parameters a request may carry. */
  readonly maxParamsSize: number;

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
  #slotFreed: (() => void) | null = null;
  #accepted = 0;
  #socket: { path: string; inode: number | null } | null;

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
    if (typeof handlerClass !== "function") {
      throw new TypeError(
        `Cannot create the server: handlerClass must be a class, not ${
          typeName(handlerClass)
        } ${repr(handlerClass)}`,
      );
    }
    this.quiet = Boolean(quiet);
    this.tempDir = tempDir;
    this.spoolThreshold = checkSize(
      options.spoolThreshold,
      "spoolThreshold",
      DEFAULT_SPOOL_THRESHOLD,
    );
    this.maxBodySize = checkSize(
      options.maxBodySize,
      "maxBodySize",
      DEFAULT_MAX_BODY_SIZE,
    );
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
      },
      maxRequests: this.maxRequests,
      maxParamsSize: this.maxParamsSize,
      values: encodePairs([
        ["FCGI_MAX_CONNS", String(this.maxConnections)],
        ["FCGI_MAX_REQS", String(this.maxRequests)],
        ["FCGI_MPXS_CONNS", "1"],
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
        const freed = this.#slotFreed;
        this.#slotFreed = null;
        freed?.();
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

  /** Host connections accepted since the server started. */
  get acceptedConnections(): number {
    return this.#accepted;
  }

  /** Requests in progress now. */
  get activeRequests(): number {
    return this.#core.activeRequests;
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
      if (this.#connections.size >= this.maxConnections) {
        await new Promise<void>((resolve) => {
          this.#slotFreed = resolve;
          this.#stopped.then(resolve);
        });
        continue;
      }
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

  /** Serve a host connection. */
  #open(stream: ByteStream, peer: string): void {
    this.#accepted++;
    const connection = new Connection(this.#core, stream, peer);
    this.#connections.add(connection);
    connection.serve().catch((error) => {
      this.#log(`Cannot serve: ${describe(error)}`, connection.peer);
      connection.close();
    });
  }

  /**
   * Stop accepting connections: idle ones are closed, requests in progress
   * finish (then their connections close), `serveForever()` returns, and
   * the promise settles once the last connection is closed. Calling it
   * again returns the same promise.
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
    this.#removeSocket();
    this.#stopServing();
    for (const connection of this.#connections) connection.finish();
    return this.#shutdown = (async () => {
      await this.#serving;
      while (this.#connections.size > 0) {
        await Promise.all([...this.#connections].map((c) => c.done));
      }
    })();
  }

  /** Remove the Unix socket file, if it is still the one bound here (a
   * new gateway may have taken the path meanwhile). */
  #removeSocket(): void {
    const socket = this.#socket;
    if (socket === null) return;
    try {
      if (Deno.lstatSync(socket.path).ino === socket.inode) {
        Deno.removeSync(socket.path);
      }
    } catch {
      // Gone already (Deno removes it when the listener closes).
    }
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
  "Usage: deno run -A fastcgi.ts module[:name] [--host H] [--port P | --socket PATH [--socket-mode 0660]] [--quiet]";

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
  let hostname: string | null = null;
  let port: number | null = null;
  let path: string | null = null;
  let socketMode: number | undefined;
  let quiet = false;
  let spec: string | null = null;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--host" && i + 1 < args.length) hostname = args[++i];
    else if (arg === "--port" && i + 1 < args.length) {
      const value = args[++i];
      port = parsePort(value);
      if (port < 0) {
        console.error(`Not a port: ${quote(value)}\n${USAGE}`);
        return 2;
      }
    } else if (arg === "--socket" && i + 1 < args.length) path = args[++i];
    else if (arg === "--socket-mode" && i + 1 < args.length) {
      const value = args[++i];
      if (!/^0?[0-7]{3}$/.test(value)) {
        console.error(`Not a file mode: ${quote(value)}\n${USAGE}`);
        return 2;
      }
      socketMode = parseInt(value, 8);
    } else if (arg === "--quiet") quiet = true;
    else if (arg === "--help" || arg === "-h") {
      console.log(USAGE);
      return 0;
    } else if (spec === null && !arg.startsWith("--")) spec = arg;
    else {
      console.error(`Unexpected argument ${quote(arg)}\n${USAGE}`);
      return 2;
    }
  }
  if (spec === null) {
    console.error(`No application module given\n${USAGE}`);
    return 2;
  }
  if (socketMode !== undefined && path === null) {
    console.error(`--socket-mode goes with --socket\n${USAGE}`);
    return 2;
  }
  const address: FastCGIAddress = path !== null
    ? { path }
    : hostname !== null || port !== null
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
    server = makeFastCGIServer(address, app, { quiet, socketMode });
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
