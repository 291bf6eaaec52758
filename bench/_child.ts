/**
 * Start and stop the benchmark servers, each in a process group of its own;
 * shared by the server, FastCGI and memory benchmarks.
 *
 * Two kinds: the servers of `bench/apps.ts` (`startServer`), and any other
 * program, such as the Python and PHP peers (`startCommand`). Either may be
 * pinned to one CPU (`{ cpu: 0 }`): it then runs as `taskset -c 0 <program>
 * ...`. taskset sets the affinity and execs the program, so the process id
 * is the program's own, and its threads, and the processes it forks (uWSGI's
 * and gunicorn's workers, PHP-FPM's child), all stay on that CPU.
 *
 * Each server leads a new process group (`detached`: the child calls
 * `setsid`), so that the CPU time of a server that forks workers is summed
 * over the group (`groupTicks`), and `stopServer` signals the whole group.
 * The `apps.ts` children run with `--no-lock`, so that loading `npm:hono@4`
 * (the Hono side) writes no `deno.lock` into the package.
 *
 * @module
 */

const APPS = new URL("./apps.ts", import.meta.url).pathname;
const START_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 5_000;
/** How much of a peer's stderr is kept, to show why it did not start. */
const STDERR_TAIL = 4096;

/** A running server: a process group on this machine. */
export interface Child {
  name: string;
  process: Deno.ChildProcess;
  /** Its process group id (the pid of the process started). */
  group: number;
  port: number;
  /** The last few KiB of its stderr, for a peer started with
   * `startCommand`; empty otherwise. */
  stderr(): string;
}

/** How to start a server. */
export interface StartOptions {
  /** Pin the process (and all it forks) to this CPU with `taskset -c`. */
  cpu?: number;
  /** Extra `deno run` flags (`startServer`), e.g. `--cpu-prof`. */
  denoFlags?: string[];
}

/** How to start a program with `startCommand`. */
export interface CommandOptions extends StartOptions {
  /** The port it was told to listen on, on 127.0.0.1: it is ready once a
   * connection there succeeds. */
  port: number;
  /** Its working directory. */
  cwd?: string;
  /** Variables added to its environment. */
  env?: Record<string, string>;
}

/** The servers started and not yet stopped, for `stopAll`. */
const live = new Set<Child>();

/**
 * Take a process started with `detached: true` (so it leads a process
 * group) into the set `stopServer` and `stopAll` stop.
 */
export function adopt(
  name: string,
  process: Deno.ChildProcess,
  port = 0,
  stderr = () => "",
): Child {
  const child: Child = { name, process, group: process.pid, port, stderr };
  live.add(child);
  return child;
}

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

function pinned(command: string[], cpu: number | undefined): string[] {
  return cpu === undefined
    ? command
    : ["taskset", "-c", String(cpu), ...command];
}

/**
 * Start `bench/apps.ts <name>` and wait (at most 60 s) for its
 * "listening <port>".
 */
export async function startServer(
  name: string,
  options: StartOptions = {},
): Promise<Child> {
  const command = pinned([
    Deno.execPath(),
    "run",
    "--no-lock",
    "-A",
    ...(options.denoFlags ?? []),
    APPS,
    name,
    "0",
  ], options.cpu);
  const process = new Deno.Command(command[0], {
    args: command.slice(1),
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
    detached: true,
  }).spawn();
  const child = adopt(name, process);
  const reader = process.stdout.pipeThrough(new TextDecoderStream())
    .getReader();
  // A server that neither prints nor exits is killed, which ends the read.
  const timer = setTimeout(() => kill(child, "SIGKILL"), START_TIMEOUT_MS);
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

/**
 * Start any program that listens on `options.port` (127.0.0.1), and wait
 * (at most 60 s) until it accepts a connection. Its stdout is dropped, the
 * tail of its stderr kept (`child.stderr()`).
 */
export async function startCommand(
  name: string,
  command: string[],
  options: CommandOptions,
): Promise<Child> {
  const argv = pinned(command, options.cpu);
  const process = new Deno.Command(argv[0], {
    args: argv.slice(1),
    cwd: options.cwd,
    env: options.env,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
    detached: true,
  }).spawn();
  let tail = "";
  (async () => {
    try {
      for await (
        const text of process.stderr.pipeThrough(new TextDecoderStream())
      ) {
        tail = (tail + text).slice(-STDERR_TAIL);
      }
    } catch {
      // The stream broke: the child is gone.
    }
  })();
  const child = adopt(name, process, options.port, () => tail);
  let exited = false;
  process.status.then(() => exited = true);
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    try {
      const conn = await Deno.connect({
        hostname: "127.0.0.1",
        port: options.port,
      });
      conn.close();
      return child;
    } catch {
      // Not listening yet.
    }
    if (exited || Date.now() > deadline) {
      await stopServer(child);
      throw new Error(
        `${name} did not start (${argv.join(" ")}): ${tail.trim()}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Signal the child's whole process group (workers included). */
function kill(child: Child, signal: Deno.Signal): void {
  try {
    Deno.kill(-child.group, signal);
  } catch {
    // Already gone.
  }
}

/**
 * Stop a server and its process group, and wait for it to exit: SIGTERM,
 * then SIGKILL if it is still there after 5 s.
 */
export async function stopServer(child: Child): Promise<void> {
  kill(child, "SIGTERM");
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<"timeout">((resolve) => {
    timer = setTimeout(() => resolve("timeout"), STOP_TIMEOUT_MS);
  });
  try {
    if ((await Promise.race([child.process.status, timeout])) === "timeout") {
      kill(child, "SIGKILL");
      await child.process.status;
    }
    // Workers that outlived their leader.
    if ((await groupPids(child.group)).length > 0) kill(child, "SIGKILL");
  } finally {
    clearTimeout(timer);
    live.delete(child);
  }
}

/** Stop every server still running (on error or on a signal). */
export async function stopAll(): Promise<void> {
  await Promise.all([...live].map(stopServer));
}

/** Fields 3 onwards of `/proc/<pid>/stat` (after the command name). */
async function statFields(pid: string | number): Promise<string[] | null> {
  try {
    const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  } catch {
    return null; // Gone meanwhile.
  }
}

/** Each process's stat fields, keyed by pid, read from `/proc` once. */
async function allStats(): Promise<Map<number, string[]>> {
  const stats = new Map<number, string[]>();
  for await (const entry of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    const fields = await statFields(entry.name);
    if (fields !== null) stats.set(Number(entry.name), fields);
  }
  return stats;
}

/** The pids of the processes in process group `group`. */
export async function groupPids(group: number): Promise<number[]> {
  const pids: number[] = [];
  // Field 5 is the process group.
  for (const [pid, fields] of await allStats()) {
    if (Number(fields[5 - 3]) === group) pids.push(pid);
  }
  return pids;
}

/**
 * The CPU time of every process group, in clock ticks: utime + stime of
 * each process in it (all their threads), plus cutime + cstime, the time
 * of the children they reaped (a worker that exited and was replaced).
 * One pass over `/proc`, so that all groups are read at the same moment.
 */
export async function groupTicks(): Promise<Map<number, number>> {
  const ticks = new Map<number, number>();
  for (const fields of (await allStats()).values()) {
    const group = Number(fields[5 - 3]);
    let sum = ticks.get(group) ?? 0;
    for (const field of [14, 15, 16, 17]) sum += Number(fields[field - 3]);
    ticks.set(group, sum);
  }
  return ticks;
}
