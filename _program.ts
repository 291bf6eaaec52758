/**
 * What the servers need to run as programs (`deno run -A simple_server.ts
 * app.ts:name`, `deno run -A fastcgi.ts app.ts`): finding the application
 * in a module named on the command line, stopping on a signal, and the
 * life of a Unix socket file (a stale one replaced at start, one's own
 * removed at stop). Not exported by `deno.json`.
 *
 * @example Usage
 * ```ts
 * import { splitModuleSpec } from "./_program.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(splitModuleSpec("app.ts:myApp"), ["app.ts", "myApp"]);
 * assert.deepEqual(splitModuleSpec("C:\\apps\\app.ts"), ["C:\\apps\\app.ts", null]);
 * ```
 *
 * @module
 */

import type { Application } from "./types.ts";
import { quote } from "./_internal.ts";

/** Find a module's application: `name`, or `app`, or the default export. */
function pickApp(
  module: Record<string, unknown>,
  name: string | null,
): Application {
  const found = name !== null ? module[name] : module.app ?? module.default;
  if (typeof found !== "function") {
    throw new TypeError(
      name !== null
        ? `The module has no application named ${quote(name)}`
        : "The module exports no application named app, nor a default one",
    );
  }
  return found as Application;
}

/** Turn a path or URL given on the command line into a module URL. */
function moduleUrl(spec: string): string {
  if (/^[a-z][a-z0-9+.-]+:/i.test(spec)) return spec;
  let path = spec;
  if (!path.startsWith("/") && !/^[a-z]:[\\/]/i.test(path)) {
    path = `${Deno.cwd()}/${path}`;
  }
  path = path.replaceAll("\\", "/");
  if (!path.startsWith("/")) path = "/" + path;
  return "file://" + path.split("/").map(encodeURIComponent).join("/");
}

/** Split `module.ts:exportName`, minding `C:\...` and `file:///...`. */
export function splitModuleSpec(spec: string): [string, string | null] {
  const match = /^(.+):([A-Za-z_$][\w$]*)$/.exec(spec);
  if (match === null || match[1].length === 1) return [spec, null];
  return [match[1], match[2]];
}

/**
 * Import the module of `spec` (`path/to/app.ts[:exportName]`) and return
 * its application: the export named, else `app`, else the default export.
 *
 * @throws {Error} With a message that names `spec` when the module cannot
 * be loaded or exports no application.
 */
export async function loadApplication(spec: string): Promise<Application> {
  const [path, name] = splitModuleSpec(spec);
  try {
    // A module named at run time: `deno publish` warns that it cannot
    // analyse this import, and rightly so; it resolves at run time.
    return pickApp(await import(moduleUrl(path)), name);
  } catch (error) {
    throw new Error(
      `Cannot load an application from ${quote(spec)}: ${
        error instanceof Error ? error.message : String(error)
      }`,
      { cause: error },
    );
  }
}

/**
 * Remove a Unix socket file left by a process that is gone, before
 * listening there; refuse to remove anything that is not a socket.
 *
 * @throws {Deno.errors.AddrInUse} When `path` exists and is not a socket.
 */
export function clearStaleSocket(path: string): void {
  let info: Deno.FileInfo;
  try {
    info = Deno.lstatSync(path);
  } catch {
    return;
  }
  if (!info.isSocket) {
    throw new Deno.errors.AddrInUse(
      `Cannot listen on ${quote(path)}: it exists and is not a socket`,
    );
  }
  Deno.removeSync(path);
}

/** The inode of the socket file just bound at `path`, which tells it from
 * one another process binds there later; `null` if it cannot be read. */
export function socketInode(path: string): number | null {
  try {
    return Deno.lstatSync(path).ino;
  } catch {
    return null;
  }
}

/** Remove the socket file at `path` if it is still the one bound here (of
 * inode `inode`): a new server may have taken the path meanwhile. */
export function removeOwnSocket(path: string, inode: number | null): void {
  try {
    if (inode !== null && Deno.lstatSync(path).ino === inode) {
      Deno.removeSync(path);
    }
  } catch {
    // Gone already (Deno removes it when the listener closes).
  }
}

/** A port given on the command line, or `-1` when it is not one. */
export function parsePort(value: string): number {
  const port = /^[0-9]{1,5}$/.test(value) ? Number(value) : -1;
  return port > 65535 ? -1 : port;
}

/** Seconds given on the command line (`0.5`) in ms, or `-1`. */
export function parseSeconds(value: string): number {
  if (!/^[0-9]+(\.[0-9]+)?$/.test(value)) return -1;
  const ms = Math.round(Number(value) * 1000);
  return Number.isSafeInteger(ms) ? ms : -1;
}

const BYTE_UNITS: Record<string, number> = {
  "": 1,
  k: 1024,
  m: 1024 ** 2,
  g: 1024 ** 3,
};

/** A size given on the command line (`1048576`, `512k`, `64m`, `4g`: KiB,
 * MiB, GiB, as nginx writes sizes), or `-1`. */
export function parseBytes(value: string): number {
  const match = /^([0-9]+)([kmg]?)$/i.exec(value);
  if (match === null) return -1;
  const bytes = Number(match[1]) * BYTE_UNITS[match[2].toLowerCase()];
  return Number.isSafeInteger(bytes) ? bytes : -1;
}

/**
 * What a command-line flag takes: nothing (`switch`), any text, a
 * non-empty socket path, a port, a file mode (`0660`), seconds (kept in
 * ms), a positive integer, or a size in bytes.
 */
export type FlagKind =
  | "switch"
  | "text"
  | "socket"
  | "port"
  | "mode"
  | "seconds"
  | "count"
  | "bytes";

/** A command line read by `parseFlags`: the module named, if any, and the
 * value of each flag given (`true` for a switch; ms for seconds). */
export interface ParsedFlags {
  spec: string | null;
  values: Map<string, string | number | true>;
}

/** Each kind's value, or `null` when the text is not one. */
const FLAG_VALUE: Record<
  Exclude<FlagKind, "switch">,
  [(value: string) => string | number | null, string]
> = {
  text: [(value) => value, ""],
  socket: [(value) => value === "" ? null : value, "Not a socket path"],
  port: [(value) => nonNegative(parsePort(value)), "Not a port"],
  mode: [
    (value) => /^0?[0-7]{3}$/.test(value) ? parseInt(value, 8) : null,
    "Not a file mode",
  ],
  seconds: [
    (value) => nonNegative(parseSeconds(value)),
    "Not a number of seconds",
  ],
  count: [
    (value) => /^[1-9][0-9]{0,14}$/.test(value) ? Number(value) : null,
    "Not a positive integer",
  ],
  bytes: [(value) => nonNegative(parseBytes(value)), "Not a number of bytes"],
};

function nonNegative(value: number): number | null {
  return value < 0 ? null : value;
}

/**
 * Read a server program's command line: at most one module (a word not
 * starting with `-`) and the `flags` given, each at most once counted
 * (the last wins).
 *
 * @param args The arguments.
 * @param flags Each flag (`--port`) and what it takes.
 * @returns What was given, or the complaint about it (a sentence).
 */
export function parseFlags(
  args: readonly string[],
  flags: Readonly<Record<string, FlagKind>>,
): ParsedFlags | string {
  const parsed: ParsedFlags = { spec: null, values: new Map() };
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    const kind = Object.hasOwn(flags, arg) ? flags[arg] : undefined;
    if (kind === undefined) {
      if (parsed.spec !== null || arg.startsWith("-")) {
        return `Unexpected argument ${quote(arg)}`;
      }
      parsed.spec = arg;
    } else if (kind === "switch") parsed.values.set(arg, true);
    else {
      if (i + 1 >= args.length) return `Missing a value after ${arg}`;
      const text = args[++i];
      const [read, complaint] = FLAG_VALUE[kind];
      const value = read(text);
      if (value === null) return `${complaint}: ${quote(text)}`;
      parsed.values.set(arg, value);
    }
  }
  return parsed;
}

/**
 * Call `stop` on the first SIGINT or SIGTERM (a graceful shutdown); a
 * second signal exits at once, without waiting for responses still
 * streaming. Returns the function that removes the listeners.
 */
export function stopOnSignals(stop: () => unknown): () => void {
  const signals: Deno.Signal[] = Deno.build.os === "windows"
    ? ["SIGINT"]
    : ["SIGINT", "SIGTERM"];
  let received = 0;
  const onSignal = () => {
    if (++received > 1) Deno.exit(130);
    stop();
  };
  for (const signal of signals) Deno.addSignalListener(signal, onSignal);
  return () => {
    for (const signal of signals) Deno.removeSignalListener(signal, onSignal);
  };
}

/** What `serveUntilStopped` runs: either server of this package. */
export interface ProgramServer {
  serveForever(): Promise<void>;
  shutdown(): Promise<void>;
  serverClose(): Promise<void>;
}

/**
 * Serve until the first SIGINT or SIGTERM, which shuts the server down
 * gracefully (`stopOnSignals`), then release it. `banner` is printed once
 * the signals are listened for: a supervisor may stop the program as soon
 * as it reads that line.
 */
export async function serveUntilStopped(
  server: ProgramServer,
  banner: string,
): Promise<void> {
  const removeListeners = stopOnSignals(() => server.shutdown());
  console.log(banner);
  try {
    await server.serveForever();
    await server.serverClose();
  } finally {
    removeListeners();
  }
}

/**
 * Run a program's `main` without a top-level `await`, then exit with its
 * code. Without a top-level await: an application module that imports
 * the very runner loading it (`simple_server.ts`, `fastcgi.ts`) would
 * otherwise wait on the runner's unfinished top-level await while the
 * runner waits on its `import()`, and Deno ends both with "Top-level await
 * promise never resolved". Exit at once: once the server has stopped, an
 * application's timers, or a response `Deno.serve` still sends to a client
 * that does not read, must not keep the process alive.
 */
export function runProgram(main: (args: string[]) => Promise<number>): void {
  main(Deno.args).then(
    (code) => Deno.exit(code),
    (error) => {
      console.error(error);
      Deno.exit(1);
    },
  );
}
