/**
 * Start and stop the benchmark servers of `bench/apps.ts`, each in a
 * process of its own; shared by the server and memory benchmarks.
 *
 * A server may be pinned to one CPU (`startServer(name, { cpu: 0 })`): it
 * then runs as `taskset -c 0 deno run ... bench/apps.ts <name> 0`. taskset
 * sets the affinity and execs deno, so the process id is deno's own, and
 * the server's threads (V8's helpers included) all stay on that CPU. The
 * children run with `--no-lock`, so that loading `npm:hono@4` (the Hono
 * side) writes no `deno.lock` into the package.
 *
 * @module
 */

const APPS = new URL("./apps.ts", import.meta.url).pathname;
const START_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 5_000;

/** A running `bench/apps.ts` server. */
export interface Child {
  name: string;
  process: Deno.ChildProcess;
  port: number;
}

/** How to start a server. */
export interface StartOptions {
  /** Pin the process to this CPU with `taskset -c <cpu>`. */
  cpu?: number;
}

/** The servers started and not yet stopped, for `stopAll`. */
const live = new Set<Child>();

/** Whether `taskset` (util-linux) can be run. */
export async function hasTaskset(): Promise<boolean> {
  try {
    const { success } = await new Deno.Command("taskset", {
      args: ["--version"],
      stdout: "null",
      stderr: "null",
    }).output();
    return success;
  } catch {
    return false;
  }
}

/**
 * Start `bench/apps.ts <name>` and wait (at most 60 s) for its
 * "listening <port>".
 */
export async function startServer(
  name: string,
  options: StartOptions = {},
): Promise<Child> {
  const deno = [Deno.execPath(), "run", "--no-lock", "-A", APPS, name, "0"];
  const command = options.cpu === undefined
    ? [...deno]
    : ["taskset", "-c", String(options.cpu), ...deno];
  const process = new Deno.Command(command[0], {
    args: command.slice(1),
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const child: Child = { name, process, port: 0 };
  live.add(child);
  const reader = process.stdout.pipeThrough(new TextDecoderStream())
    .getReader();
  // A server that neither prints nor exits is killed, which ends the read.
  const timer = setTimeout(() => kill(process, "SIGKILL"), START_TIMEOUT_MS);
  let out = "";
  try {
    for (let i = 0; i < 100 && !/listening (\d+)\n/.test(out); i++) {
      const { done, value } = await reader.read();
      if (done) break;
      out += value;
    }
  } finally {
    clearTimeout(timer);
  }
  const match = /listening (\d+)\n/.exec(out);
  if (match === null) {
    await stopServer(child);
    throw new Error(`${name} did not start: ${out}`);
  }
  // Keep draining stdout so the child never blocks on it.
  (async () => {
    try {
      while (!(await reader.read()).done) { /* discard */ }
    } catch {
      // The stream broke: the child is gone.
    }
  })();
  child.port = Number(match[1]);
  return child;
}

function kill(process: Deno.ChildProcess, signal: Deno.Signal): void {
  try {
    process.kill(signal);
  } catch {
    // Already gone.
  }
}

/**
 * Stop a server started by `startServer` and wait for it to exit: SIGTERM,
 * then SIGKILL if it is still there after 5 s.
 */
export async function stopServer(child: Child): Promise<void> {
  kill(child.process, "SIGTERM");
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<"timeout">((resolve) => {
    timer = setTimeout(() => resolve("timeout"), STOP_TIMEOUT_MS);
  });
  try {
    if ((await Promise.race([child.process.status, timeout])) === "timeout") {
      kill(child.process, "SIGKILL");
      await child.process.status;
    }
  } finally {
    clearTimeout(timer);
    live.delete(child);
  }
}

/** Stop every server still running (on error or on a signal). */
export async function stopAll(): Promise<void> {
  await Promise.all([...live].map(stopServer));
}
