/**
 * Peak memory of `makeServer` with 1 GiB each way:
 *
 * ```sh
 * deno task bench:memory     # = deno run -A bench/memory_bench.ts
 * deno run -A bench/memory_bench.ts [--size 1073741824] [--runs 1]
 *   [--load-other-cpu] [--server-cpu 0]
 * ```
 *
 * - `stream`: the application returns a generator of 64 KiB chunks, 1 GiB
 *   in all; the client reads and discards it.
 * - `upload`: the client (curl if installed, else `fetch`) streams a 1 GiB
 *   body (chunked, 64 KiB at a time); the server spools it to a temporary
 *   file (through one reused buffer), then the application reads
 *   `wsgi.input` to the end into one buffer with `readinto()` (64 KiB,
 *   then another run 8 KiB): the server's own memory.
 * - `upload, read()`: the same, but the application reads with
 *   `read(size)` (64 KiB, then 8 KiB), as a PEP 3333 application does:
 *   each piece is a new `Uint8Array` the application owns, and V8 frees
 *   them at its own pace (`wsgi.input` paces its scavenger, see `_io.ts`),
 *   so these peaks sit some 40 MiB over those of `readinto()`.
 *
 * Each runs against a fresh server process (`bench/apps.ts`); its peak
 * resident memory (`VmHWM` in `/proc/<pid>/status`, Linux only) is printed
 * against the target: under 128 MiB. `--runs N` repeats the five cases N
 * times (each on a fresh server), the target holding in every one.
 * `--load-other-cpu` pins the server to `--server-cpu` (default 0) and
 * keeps the other CPU busy meanwhile with a process of its own (`taskset -c
 * 1 sh -c 'while :; do :; done'`), as another job on the machine would:
 * a server that gets less CPU falls behind its client, and what it holds
 * meanwhile shows. A summary prints every peak; the exit code is 1 when a
 * peak reached the target. Every server and the busy process are stopped on
 * success, on error and on SIGINT/SIGTERM.
 *
 * @module
 */

import { adopt, hasTaskset, startServer, stopServer } from "./_child.ts";
import { machine, runBenchmark } from "./_load.ts";

const MIB = 1024 * 1024;
const TARGET_MIB = 128;
const CHUNK = 64 * 1024;

/** `VmHWM` (peak resident set) and `VmRSS` of a process, in MiB. */
async function memory(pid: number): Promise<{ peak: number; now: number }> {
  const status = await Deno.readTextFile(`/proc/${pid}/status`);
  const kib = (key: string) =>
    Number(new RegExp(`^${key}:\\s+(\\d+) kB$`, "m").exec(status)?.[1]);
  return { peak: kib("VmHWM") / 1024, now: kib("VmRSS") / 1024 };
}

/** The cases, in the order they run: `readSize` 0 is the download. */
const CASES: { name: string; into: boolean; readSize: number }[] = [
  { name: "stream response", into: false, readSize: 0 },
  ...[64, 8].map((kib) => ({
    name: `upload body, readinto() ${kib} KiB`,
    into: true,
    readSize: kib * 1024,
  })),
  ...[64, 8].map((kib) => ({
    name: `upload body, read() in ${kib} KiB pieces`,
    into: false,
    readSize: kib * 1024,
  })),
];

async function measure(
  name: string,
  server: string,
  run: (port: number) => Promise<number>,
  size: number,
  cpu: number | undefined,
): Promise<number> {
  const child = await startServer(server, { cpu });
  try {
    const before = await memory(child.process.pid);
    const start = performance.now();
    const transferred = await run(child.port);
    const seconds = (performance.now() - start) / 1000;
    const after = await memory(child.process.pid);
    if (transferred !== size) {
      throw new Error(`${name}: ${transferred} bytes, expected ${size}`);
    }
    const met = after.peak < TARGET_MIB;
    console.log(
      `${name}: ${(size / MIB).toFixed(0)} MiB in ${seconds.toFixed(1)} s (${
        (size / MIB / seconds).toFixed(0)
      } MiB/s); server RSS at start ${before.now.toFixed(1)} MiB, peak ${
        after.peak.toFixed(1)
      } MiB (target < ${TARGET_MIB} MiB: ${met ? "met" : "NOT met"})`,
    );
    return after.peak;
  } finally {
    await stopServer(child);
  }
}

/** Download `size` bytes and count them. */
async function stream(port: number, size: number): Promise<number> {
  const response = await fetch(`http://127.0.0.1:${port}/?bytes=${size}`);
  let total = 0;
  for await (const chunk of response.body!) total += chunk.length;
  return total;
}

/**
 * Upload `size` bytes in 64 KiB chunks; the server answers the count. With
 * curl (`-T -`, a chunked upload of what it reads on stdin, fed from one
 * reused buffer), the client costs little; `fetch` with a `ReadableStream`
 * body takes about twice as long as the server for the same gigabyte, so it
 * is only the fallback.
 */
async function upload(
  port: number,
  size: number,
  readSize: number,
  into: boolean,
): Promise<number> {
  const url = `http://127.0.0.1:${port}/?chunk=${readSize}${
    into ? "&into=1" : ""
  }`;
  if (curl !== null) {
    const child = new Deno.Command(curl, {
      args: ["-sS", "-T", "-", "-X", "POST", url],
      stdin: "piped",
      stdout: "piped",
    }).spawn();
    const writer = child.stdin.getWriter();
    const zeros = new Uint8Array(CHUNK);
    for (let sent = 0; sent < size; sent += CHUNK) {
      await writer.write(zeros.subarray(0, Math.min(CHUNK, size - sent)));
    }
    await writer.close();
    const { code, stdout } = await child.output();
    const text = new TextDecoder().decode(stdout);
    if (code !== 0) throw new Error(`upload: curl exited with ${code}`);
    return Number(text);
  }
  let sent = 0;
  const body = new ReadableStream<Uint8Array<ArrayBuffer>>({
    pull(controller) {
      const n = Math.min(CHUNK, size - sent);
      if (n === 0) return controller.close();
      controller.enqueue(new Uint8Array(n));
      sent += n;
    },
  });
  const response = await fetch(url, { method: "POST", body });
  const text = await response.text();
  if (!response.ok) throw new Error(`upload: ${response.status} ${text}`);
  return Number(text);
}

/** curl's path, or `null` when it is not installed. */
function findCurl(): string | null {
  for (const path of ["/usr/bin/curl", "/usr/local/bin/curl"]) {
    try {
      if (Deno.statSync(path).isFile) return path;
    } catch {
      // Not there.
    }
  }
  return null;
}

const curl = findCurl();

const USAGE =
  "Usage: deno run -A bench/memory_bench.ts [--size bytes] [--runs N] [--load-other-cpu] [--server-cpu 0]";

/** Keep `cpu` busy with a shell loop in a process group of its own,
 * stopped with the servers. */
function burnCpu(cpu: number): void {
  const process = new Deno.Command("taskset", {
    args: ["-c", String(cpu), "sh", "-c", "while :; do :; done"],
    stdin: "null",
    stdout: "null",
    stderr: "null",
    detached: true,
  }).spawn();
  adopt("busy", process);
}

async function main(): Promise<number> {
  if (Deno.build.os !== "linux") {
    console.error("memory_bench.ts reads /proc: Linux only");
    return 1;
  }
  let size = 1024 * MIB;
  let runs = 1;
  let loadOther = false;
  let serverCpu = 0;
  const args = Deno.args;
  for (let i = 0; i < args.length; i++) {
    const flag = args[i];
    if (flag === "--load-other-cpu") {
      loadOther = true;
      continue;
    }
    const value = Number(args[++i]);
    if (flag === "--size") size = value;
    else if (flag === "--runs") runs = value;
    else if (flag === "--server-cpu") serverCpu = value;
    else {
      console.error(`Unknown option ${JSON.stringify(flag)}\n${USAGE}`);
      return 2;
    }
    if (!Number.isSafeInteger(value) || value < 0) {
      console.error(`${flag} needs a whole number\n${USAGE}`);
      return 2;
    }
  }
  if (size <= 0 || runs < 1 || runs > 100) {
    console.error(USAGE);
    return 2;
  }
  let cpu: number | undefined;
  if (loadOther) {
    if (navigator.hardwareConcurrency < 2 || !(await hasTaskset())) {
      console.error("--load-other-cpu needs 2 CPUs and taskset (util-linux)");
      return 1;
    }
    cpu = serverCpu;
  }
  console.log(
    `${await machine()}; upload client: ${
      curl ?? "fetch (no curl)"
    }; ${runs} run${runs === 1 ? "" : "s"} of ${
      (size / MIB).toFixed(0)
    } MiB each way; target: peak RSS < ${TARGET_MIB} MiB`,
  );
  if (cpu !== undefined) {
    const other = cpu === 0 ? 1 : 0;
    burnCpu(other);
    console.log(
      `server pinned to CPU ${cpu}; CPU ${other} kept busy by a shell loop (taskset -c ${other} sh -c 'while :; do :; done')`,
    );
  }
  const peaks = new Map<string, number[]>();
  const record = (name: string, peak: number) =>
    peaks.set(name, [...(peaks.get(name) ?? []), peak]);
  for (let run = 1; run <= runs; run++) {
    if (runs > 1) console.log(`-- run ${run}/${runs}`);
    for (const { name, into, readSize } of CASES) {
      const server = readSize === 0 ? "wsgi-stream" : "wsgi-upload";
      const peak = await measure(
        name,
        server,
        (port) =>
          readSize === 0
            ? stream(port, size)
            : upload(port, size, readSize, into),
        size,
        cpu,
      );
      record(name, peak);
    }
  }
  let met = true;
  console.log(`-- peak RSS (MiB) per run; target < ${TARGET_MIB}`);
  for (const { name } of CASES) {
    const list = peaks.get(name)!;
    const worst = Math.max(...list);
    met &&= worst < TARGET_MIB;
    console.log(
      `${name.padEnd(42)} ${list.map((p) => p.toFixed(1)).join("  ")}  max ${
        worst.toFixed(1)
      }: ${worst < TARGET_MIB ? "met" : "NOT met"}`,
    );
  }
  console.log(
    `${new Date().toISOString()}: target ${
      met ? "met" : "NOT met"
    } in every run${loadOther ? ", the other CPU loaded" : ""}`,
  );
  return met ? 0 : 1;
}

if (import.meta.main) await runBenchmark(main);
