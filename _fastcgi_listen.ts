/**
 * Where a FastCGI gateway's connections come from: a TCP or Unix socket it
 * binds itself (`Deno.listen`, with the Unix socket's file mode), or a
 * listening socket it inherits from whoever started it (file descriptor 0,
 * `FCGI_LISTENSOCK_FILENO`, from `mod_fcgid`, lighttpd's `bin-path` and
 * `spawn-fcgi`; file descriptor 3 from systemd socket activation). Deno
 * cannot accept on an inherited descriptor, but its built-in `node:net`
 * can: such sockets are adapted to the `ByteStream` a `Connection` reads.
 * Also: which peers may connect (`FCGI_WEB_SERVER_ADDRS`). Not exported by
 * `deno.json`.
 *
 * @example Who may connect
 * ```ts
 * import { clientFilter } from "./_fastcgi_listen.ts";
 * import assert from "node:assert/strict";
 *
 * const allowed = clientFilter(["127.0.0.1", "::1"], "allowedClients")!;
 * assert.ok(allowed("127.0.0.1"));
 * assert.ok(allowed("::ffff:127.0.0.1"));
 * assert.ok(allowed("0:0:0:0:0:0:0:1"));
 * assert.ok(!allowed("10.0.0.5"));
 * ```
 *
 * @module
 */

import net from "node:net";
import type { ByteStream } from "./_fastcgi_connection.ts";
import { quote, repr, typeName } from "./_internal.ts";
import { clearStaleSocket, socketInode } from "./_program.ts";
import { checkPort } from "./_body.ts";

/** A connection a listener accepted. */
export interface AcceptedStream extends ByteStream {
  /** The peer's address. */
  readonly remoteAddr: Deno.Addr;
}

/** Where a server accepts connections: a `Deno.Listener` as it is, or the
 * adapter over an inherited socket. */
export interface StreamListener {
  accept(): Promise<AcceptedStream>;
  close(): void;
}

/** What `listen` bound. */
export interface Bound {
  listener: StreamListener;
  /** The TCP port; 0 for a Unix socket. */
  port: number;
  /** The TCP hostname bound, `null` for a Unix socket. */
  hostname: string | null;
  /** The Unix socket's path and inode (to remove it on shutdown), when
   * the server bound it itself. */
  socket: { path: string; inode: number | null } | null;
}

/** What `listen` takes: an address, checked here. */
export type ListenAddress =
  | { hostname: string; port: number }
  | { path: string }
  | { fd: number };

/**
 * Bind a listener for `address`, checking its shape and `socketMode`.
 *
 * @throws {TypeError} For an address or a mode of the wrong type.
 * @throws {RangeError} For a port, descriptor or mode out of range.
 * @throws {Deno.errors.AddrInUse} For a socket path taken by a file.
 * @throws {Deno.errors.BadResource} For a descriptor that is not a
 * listening socket.
 */
export function listen(
  address: ListenAddress,
  socketMode: number | undefined,
): Bound {
  const given = address as Partial<
    { hostname: unknown; port: unknown; path: unknown; fd: unknown }
  >;
  if (typeof given !== "object" || given === null) {
    throw new TypeError(
      `Cannot create the server: the address must be { hostname, port }, { path } or { fd }, not ${
        repr(address)
      }`,
    );
  }
  if (socketMode !== undefined) {
    if (typeof socketMode !== "number" || !Number.isInteger(socketMode)) {
      throw new TypeError(
        `Cannot create the server: socketMode must be an integer, not ${
          typeName(socketMode)
        } ${quote(socketMode)}`,
      );
    }
    if (socketMode < 0 || socketMode > 0o777) {
      throw new RangeError(
        `Cannot create the server: socketMode must be from 0o0 to 0o777, not 0o${
          socketMode.toString(8)
        }`,
      );
    }
    if (!("path" in given)) {
      throw new TypeError(
        "Cannot create the server: socketMode applies to a Unix socket ({ path }) only",
      );
    }
  }
  if ("fd" in given) return listenOnFd(given.fd);
  if ("path" in given) {
    if (typeof given.path !== "string" || given.path === "") {
      throw new TypeError(
        `Cannot create the server: the socket path must be a non-empty string, not ${
          typeName(given.path)
        } ${quote(given.path)}`,
      );
    }
    const path = given.path;
    clearStaleSocket(path);
    const listener = Deno.listen({ transport: "unix", path });
    try {
      // After the bind: php-fpm sets listen.mode the same way.
      if (socketMode !== undefined) Deno.chmodSync(path, socketMode);
      const inode = socketInode(path);
      return { listener, port: 0, hostname: null, socket: { path, inode } };
    } catch (error) {
      listener.close();
      throw error;
    }
  }
  const { hostname, port } = given;
  if (typeof hostname !== "string") {
    throw new TypeError(
      `Cannot create the server: the hostname must be a string, not ${
        typeName(hostname)
      } ${quote(hostname)}`,
    );
  }
  checkPort(port);
  const listener = Deno.listen({
    transport: "tcp",
    hostname: hostname === "" ? "0.0.0.0" : hostname,
    port,
  });
  const addr = listener.addr;
  return {
    listener,
    port: addr.port,
    hostname: addr.hostname,
    socket: null,
  };
}

// --- Inherited sockets -------------------------------------------------

/**
 * What kind of listening socket file descriptor `fd` is, as far as `/proc`
 * tells (Linux): `"tcp"`, `"unix"`, or `null` when it is none (closed, a
 * terminal, a file, `/dev/null`, a pipe, a connected socket); found from
 * the socket's inode in `/proc/net/tcp` or `tcp6` in state `LISTEN`, or in
 * `/proc/net/unix` with `__SO_ACCEPTCON`. The FastCGI specification's own
 * test (`getpeername()` fails with `ENOTCONN`) cannot be made from Deno.
 * `"unknown"` where `/proc` cannot be read: another system, or no
 * `--allow-all` (Deno asks for it to read `/proc/self`).
 *
 * @param fd The file descriptor.
 * @returns The kind, `null`, or `"unknown"`.
 */
export function listeningSocket(
  fd: number,
): "tcp" | "unix" | "unknown" | null {
  if (Deno.build.os !== "linux") return "unknown";
  // Queried first: a read there would prompt on a terminal.
  const path = `/proc/self/fd/${fd}`;
  try {
    if (
      Deno.permissions.querySync({ name: "read", path }).state !== "granted"
    ) {
      return "unknown";
    }
  } catch {
    return "unknown";
  }
  let link: string;
  try {
    link = Deno.readLinkSync(path);
  } catch (error) {
    return error instanceof Deno.errors.NotFound ? null : "unknown";
  }
  const match = /^socket:\[(\d+)\]$/.exec(link);
  if (match === null) return null;
  const inode = match[1];
  for (const table of ["tcp", "tcp6"]) {
    for (const fields of procTable(`/proc/self/net/${table}`)) {
      // sl local rem st ... uid timeout inode
      if (fields[9] === inode) return fields[3] === "0A" ? "tcp" : null;
    }
  }
  for (const fields of procTable("/proc/self/net/unix")) {
    // Num RefCount Protocol Flags Type St Inode Path
    if (fields[6] === inode) {
      return (parseInt(fields[3], 16) & 0x10000) !== 0 ? "unix" : null;
    }
  }
  return null;
}

/** The rows of a `/proc/net` table, split into fields. */
function procTable(path: string): string[][] {
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch {
    return [];
  }
  return text.split("\n").slice(1).map((line) => line.trim().split(/\s+/));
}

/**
 * The listening socket systemd passes (socket activation): file
 * descriptor 3 when `LISTEN_PID` is this process and `LISTEN_FDS` at
 * least 1, else `null`. The variables are removed, as `sd_listen_fds()`
 * does, so that processes the application starts do not take them for
 * their own. `null` too without `--allow-env` for them (the permission
 * is queried, never prompted for).
 *
 * @returns 3, or `null`.
 */
export function systemdSocket(): number | null {
  if (!envReadable("LISTEN_PID") || !envReadable("LISTEN_FDS")) return null;
  const env = Deno.env;
  const pid = env.get("LISTEN_PID");
  const fds = env.get("LISTEN_FDS");
  if (pid === undefined || fds === undefined) return null;
  for (const name of ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"]) {
    if (envReadable(name)) env.delete(name);
  }
  if (pid !== String(Deno.pid) || !/^[1-9][0-9]*$/.test(fds)) return null;
  return 3;
}

/** Whether the environment variable may be read: the permission is
 * queried, never asked for (no prompt on a terminal). */
function envReadable(variable: string): boolean {
  try {
    return Deno.permissions.querySync({ name: "env", variable }).state ===
      "granted";
  } catch {
    return false;
  }
}

/** Listeners opened by `inheritedSocket()` to tell whether their
 * descriptor listens, kept for `listen({ fd })`: closing them would close
 * the descriptor. */
const PROBED = new Map<number, InheritedListener>();

/**
 * The inherited listening socket a program serves when its command line
 * names no address: fd 0 (`FCGI_LISTENSOCK_FILENO`) when it is one, else
 * systemd's fd 3; `null` for neither. Where `/proc` cannot tell, fd 0 is
 * tried with `node:net`: a terminal, a file, `/dev/null`, a pipe or a
 * connected TCP socket fails there (a connected Unix socket does not).
 *
 * @returns The descriptor, or `null`.
 */
export function inheritedSocket(): number | null {
  const kind = listeningSocket(0);
  if (kind === "tcp" || kind === "unix") return 0;
  if (kind === "unknown") {
    const listener = new InheritedListener(0);
    if (listener.server.listening) {
      PROBED.set(0, listener);
      return 0;
    }
    listener.close();
  }
  return systemdSocket();
}

/** Accept on an inherited listening socket. */
function listenOnFd(fd: unknown): Bound {
  if (typeof fd !== "number" || !Number.isInteger(fd)) {
    throw new TypeError(
      `Cannot create the server: fd must be an integer, not ${typeName(fd)} ${
        quote(fd)
      }`,
    );
  }
  if (fd < 0 || fd > 0x7fffffff) {
    throw new RangeError(
      `Cannot create the server: fd must be a file descriptor number, not ${fd}`,
    );
  }
  let listener = PROBED.get(fd);
  PROBED.delete(fd);
  if (listener === undefined) {
    if (listeningSocket(fd) === null) {
      throw new Deno.errors.BadResource(
        `Cannot listen on fd ${fd}: it is not a listening socket`,
      );
    }
    listener = new InheritedListener(fd);
    if (!listener.server.listening) {
      listener.close();
      throw new Deno.errors.BadResource(
        `Cannot listen on fd ${fd}: it is not a listening socket`,
      );
    }
  }
  const addr = listener.server.address();
  return typeof addr === "object" && addr !== null
    ? { listener, port: addr.port, hostname: addr.address, socket: null }
    : { listener, port: 0, hostname: null, socket: null };
}

/** A `node:net` error as the `Deno.errors` class a `Deno.Conn` throws, so
 * that a host going away is told apart from a real failure. */
function denoError(error: Error & { code?: string }): Error {
  const as = {
    EPIPE: Deno.errors.BrokenPipe,
    ECONNRESET: Deno.errors.ConnectionReset,
    ECONNABORTED: Deno.errors.ConnectionAborted,
    ERR_STREAM_DESTROYED: Deno.errors.BadResource,
    ERR_STREAM_WRITE_AFTER_END: Deno.errors.BadResource,
    EBADF: Deno.errors.BadResource,
  }[error.code ?? ""];
  return as === undefined ? error : new as(error.message, { cause: error });
}

/** Bytes a `SocketStream` reads ahead of its `read()` calls. */
const READ_AHEAD = 64 * 1024;

/** A `node:net` socket read and written as a `ByteStream`. It reads ahead
 * at most `READ_AHEAD` bytes, so a connection that stops reading stops
 * the host, as with a `Deno.Conn`. */
class SocketStream implements AcceptedStream {
  readonly remoteAddr: Deno.Addr;
  readonly #socket: net.Socket;
  #chunks: Uint8Array[] = [];
  #buffered = 0;
  #ended = false;
  #error: Error | null = null;
  #wake: (() => void) | null = null;

  constructor(socket: net.Socket, tcp: boolean) {
    this.#socket = socket;
    // A TCP peer gone before it was accepted has no address: "" is in no
    // list of allowed clients.
    this.remoteAddr = tcp
      ? {
        transport: "tcp",
        hostname: socket.remoteAddress ?? "",
        port: socket.remotePort ?? 0,
      }
      : { transport: "unix", path: "" };
    // Paused (pauseOnConnect) until the first read().
    socket.pause();
    socket.on("data", (chunk: Uint8Array) => {
      this.#chunks.push(chunk);
      this.#buffered += chunk.length;
      if (this.#buffered >= READ_AHEAD) socket.pause();
      this.#notify();
    });
    socket.on("end", () => {
      this.#ended = true;
      this.#notify();
    });
    socket.on("close", () => {
      this.#ended = true;
      this.#notify();
    });
    socket.on("error", (error: Error) => {
      this.#error ??= denoError(error);
      this.#notify();
    });
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = null;
    wake?.();
  }

  async read(p: Uint8Array): Promise<number | null> {
    const socket = this.#socket;
    while (this.#chunks.length === 0) {
      if (this.#error !== null) throw this.#error;
      if (this.#ended) return null;
      const waiting = new Promise<void>((resolve) => this.#wake = resolve);
      if (socket.isPaused()) socket.resume();
      await waiting;
    }
    const chunk = this.#chunks[0];
    const n = Math.min(chunk.length, p.length);
    p.set(n === chunk.length ? chunk : chunk.subarray(0, n));
    if (n === chunk.length) this.#chunks.shift();
    else this.#chunks[0] = chunk.subarray(n);
    this.#buffered -= n;
    if (this.#buffered < READ_AHEAD && socket.isPaused() && !this.#ended) {
      socket.resume();
    }
    return n;
  }

  write(p: Uint8Array): Promise<number> {
    return new Promise((resolve, reject) => {
      if (this.#error !== null) {
        reject(this.#error);
        return;
      }
      // The callback comes once the bytes are handed to the system: `p`
      // (a pooled buffer, maybe) is not used after.
      this.#socket.write(p, (error) => {
        if (error) reject(denoError(error));
        else resolve(p.length);
      });
    });
  }

  closeWrite(): Promise<void> {
    return new Promise((resolve) => this.#socket.end(resolve));
  }

  close(): void {
    this.#error ??= new Deno.errors.BadResource("The connection is closed");
    this.#socket.destroy();
    this.#notify();
  }

  setNoDelay(): void {
    this.#socket.setNoDelay(true);
  }
}

/** A listening socket inherited on a file descriptor, accepted on by
 * `node:net`. */
class InheritedListener implements StreamListener {
  readonly server: net.Server;
  /** Whether it is a TCP socket (else a Unix one). */
  readonly tcp: boolean;
  #sockets: net.Socket[] = [];
  #waiter: {
    resolve: (socket: net.Socket) => void;
    reject: (error: Error) => void;
  } | null = null;
  #error: Error | null = null;

  constructor(fd: number) {
    // pauseOnConnect: nothing is read before a Connection asks.
    this.server = net.createServer({
      allowHalfOpen: true,
      pauseOnConnect: true,
    });
    this.server.on("connection", (socket: net.Socket) => {
      const waiter = this.#waiter;
      this.#waiter = null;
      if (waiter !== null) waiter.resolve(socket);
      else this.#sockets.push(socket);
    });
    this.server.on("error", (error: Error) => {
      this.#fail(denoError(error));
    });
    this.server.listen({ fd });
    const addr = this.server.address();
    this.tcp = typeof addr === "object" && addr !== null;
  }

  #fail(error: Error): void {
    this.#error ??= error;
    const waiter = this.#waiter;
    this.#waiter = null;
    waiter?.reject(this.#error);
  }

  async accept(): Promise<AcceptedStream> {
    let socket = this.#sockets.shift();
    if (socket === undefined) {
      if (this.#error !== null) throw this.#error;
      socket = await new Promise<net.Socket>((resolve, reject) => {
        this.#waiter = { resolve, reject };
      });
    }
    return new SocketStream(socket, this.tcp);
  }

  close(): void {
    this.server.close();
    for (const socket of this.#sockets) socket.destroy();
    this.#sockets = [];
    this.#fail(new Deno.errors.BadResource("The listener is closed"));
  }
}

// --- Who may connect ---------------------------------------------------

/** An IP address in one spelling: IPv4 dotted quads as they are (an
 * IPv4-mapped IPv6 address as its IPv4 one), IPv6 as the URL standard
 * writes it; `null` when it is no IP address. */
function canonicalAddress(address: string): string | null {
  let text = address.trim();
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(text);
  if (mapped !== null) text = mapped[1];
  if (/^\d{1,3}(\.\d{1,3}){3}$/.test(text)) {
    return text.split(".").every((part) => Number(part) <= 255) ? text : null;
  }
  if (!text.includes(":")) return null;
  try {
    const host = new URL(`http://[${text}]/`).hostname;
    const inner = host.slice(1, -1);
    const again = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(inner);
    return again !== null ? again[1] : inner;
  } catch {
    return null;
  }
}

/**
 * A check of TCP peers against a list of IP addresses (the FastCGI
 * specification's `FCGI_WEB_SERVER_ADDRS`, or the `allowedClients`
 * option): `null` for no list (anyone may connect).
 *
 * @param list The addresses, or `undefined`.
 * @param what What the list is called in an error message.
 * @returns Whether a peer's address is in the list; `null` for anyone.
 * @throws {TypeError} For a list that is not an array of IP addresses.
 */
export function clientFilter(
  list: readonly string[] | undefined,
  what: string,
): ((address: string) => boolean) | null {
  if (list === undefined) return null;
  if (!Array.isArray(list)) {
    throw new TypeError(
      `Cannot create the server: ${what} must be an array of IP addresses, not ${
        typeName(list)
      } ${quote(list)}`,
    );
  }
  const allowed = new Set<string>();
  for (const entry of list) {
    const address = typeof entry === "string" ? canonicalAddress(entry) : null;
    if (address === null) {
      throw new TypeError(
        `Cannot create the server: ${what} holds ${
          quote(entry)
        }, which is not an IP address`,
      );
    }
    allowed.add(address);
  }
  return (address) => {
    if (allowed.has(address)) return true;
    const canonical = canonicalAddress(address);
    return canonical !== null && allowed.has(canonical);
  };
}

/**
 * The addresses of `FCGI_WEB_SERVER_ADDRS` (comma-separated), or
 * `undefined` when it is unset, empty, or cannot be read (no
 * `--allow-env`: the permission is queried, never prompted for).
 *
 * @returns The list, or `undefined`.
 */
export function webServerAddrs(): string[] | undefined {
  const name = "FCGI_WEB_SERVER_ADDRS";
  if (!envReadable(name)) return undefined;
  const value = Deno.env.get(name);
  if (value === undefined || value.trim() === "") return undefined;
  return value.split(",").map((part) => part.trim()).filter((part) =>
    part !== ""
  );
}
