/**
 * Start and stop the benchmark servers of `bench/apps.ts`, each in a
 * process of its own; shared by the server and memory benchmarks.
 *
 * @module
 */

const APPS = new URL("./apps.ts", import.meta.url).pathname;

/** A running `bench/apps.ts` server. */
export interface Child {
  process: Deno.ChildProcess;
  port: number;
}

/** Start `bench/apps.ts <name>` and wait for its "listening <port>". */
export async function startServer(name: string): Promise<Child> {
  const process = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", APPS, name, "0"],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = process.stdout.pipeThrough(new TextDecoderStream())
    .getReader();
  let out = "";
  for (let i = 0; i < 100 && !/listening (\d+)\n/.test(out); i++) {
    const { done, value } = await reader.read();
    if (done) break;
    out += value;
  }
  const match = /listening (\d+)\n/.exec(out);
  if (match === null) throw new Error(`${name} did not start: ${out}`);
  // Keep draining stdout so the child never blocks on it.
  (async () => {
    while (!(await reader.read()).done) { /* discard */ }
  })();
  return { process, port: Number(match[1]) };
}

/** Stop a server started by `startServer` and wait for it to exit. */
export async function stopServer(child: Child): Promise<void> {
  try {
    child.process.kill("SIGTERM");
  } catch {
    // Already gone.
  }
  await child.process.status;
}
