/**
 * Peak memory of `makeServer` with 1 GiB each way:
 *
 * ```sh
 * deno run -A bench/memory_bench.ts [--size 1073741824]
 * ```
 *
 * - `stream`: the application returns a generator of 64 KiB chunks, 1 GiB
 *   in all; the client reads and discards it.
 * - `upload`: the client (curl if installed, else `fetch`) streams a 1 GiB
 *   body (chunked, 64 KiB at a time);
 *   the server spools it to a temporary file, then the application reads
 *   `wsgi.input` to the end, in 64 KiB pieces, then (another run) in 8 KiB
 *   pieces. The read size matters: each piece is a new `Uint8Array`, and
 *   V8 frees them at its own pace.
 *
 * Each runs against a fresh server process (`bench/apps.ts`); its peak
 * resident memory (`VmHWM` in `/proc/<pid>/status`, Linux only) is printed
 * against the 150 MiB target.
 *
 * @module
 */

import { startServer, stopServer } from "./_child.ts";

const MIB = 1024 * 1024;
const TARGET_MIB = 150;
const CHUNK = 64 * 1024;

/** `VmHWM` (peak resident set) and `VmRSS` of a process, in MiB. */
async function memory(pid: number): Promise<{ peak: number; now: number }> {
  const status = await Deno.readTextFile(`/proc/${pid}/status`);
  const kib = (key: string) =>
    Number(new RegExp(`^${key}:\\s+(\\d+) kB$`, "m").exec(status)?.[1]);
  return { peak: kib("VmHWM") / 1024, now: kib("VmRSS") / 1024 };
}

async function measure(
  name: string,
  server: string,
  run: (port: number) => Promise<number>,
  size: number,
): Promise<boolean> {
  const child = await startServer(server);
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
    return met;
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
): Promise<number> {
  const url = `http://127.0.0.1:${port}/?chunk=${readSize}`;
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

if (import.meta.main) {
  if (Deno.build.os !== "linux") {
    console.error("memory_bench.ts reads /proc: Linux only");
    Deno.exit(1);
  }
  let size = 1024 * MIB;
  if (Deno.args[0] === "--size") size = Number(Deno.args[1]);
  if (!Number.isSafeInteger(size) || size <= 0) {
    console.error("Usage: deno run -A bench/memory_bench.ts [--size bytes]");
    Deno.exit(2);
  }
  console.log(
    `Deno ${Deno.version.deno}; upload client: ${curl ?? "fetch (no curl)"}`,
  );
  const streamed = await measure(
    "stream response",
    "wsgi-stream",
    (port) => stream(port, size),
    size,
  );
  let uploaded = true;
  for (const readSize of [64 * 1024, 8 * 1024]) {
    uploaded = await measure(
      `upload body, read in ${readSize / 1024} KiB pieces`,
      "wsgi-upload",
      (port) => upload(port, size, readSize),
      size,
    ) && uploaded;
  }
  Deno.exitCode = streamed && uploaded ? 0 : 1;
}
