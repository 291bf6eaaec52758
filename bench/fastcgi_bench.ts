/**
 * What the FastCGI gateway saves over CGI, and what it costs against the
 * HTTP server: one hello application (`Hello world!`, `text/plain`) served
 * four ways, in one run:
 *
 * - `fastcgi`: lighttpd (`mod_fastcgi`) → the gateway, started as
 *   `deno run -A fastcgi.ts app.ts --port 0 --quiet`;
 * - `cgi`: the same lighttpd (`mod_cgi`) → the same application as a CGI
 *   program (`CGIHandler`), one Deno process per request;
 * - `http`: nginx `proxy_pass` (kept connections) → `makeServer`, in a
 *   process of its own;
 * - `nginx-fastcgi`: nginx `fastcgi_pass` (kept connections) → the gateway.
 *
 * Latency: requests one at a time over one kept-alive client connection
 * (`--requests` each, `--cgi-requests` for CGI), after a warm-up; the
 * sides alternate in rounds so that a burst of load elsewhere hits all of
 * them. Prints the median and p90 of each. Throughput: `wrk -t1 -c8` for
 * `--duration` seconds per side (needs wrk; Debian: `apt-get install wrk`).
 * Then the ratios; the target is a FastCGI median latency of at most 0.10×
 * the CGI one.
 *
 * ```sh
 * deno task bench:fastcgi      # = deno run -A bench/fastcgi_bench.ts
 * deno run -A bench/fastcgi_bench.ts --requests 500 --cgi-requests 50 --duration 3
 * ```
 *
 * Needs lighttpd and nginx. Every child process is stopped on success, on
 * error and on SIGINT/SIGTERM; every wait is bounded (start 30 s, wrk its
 * duration + 30 s, the whole run 300 s). Exits 1 if the target is not met.
 *
 * @module
 */

import { findLighttpd, startLighttpd } from "../tests/fixtures/lighttpd.ts";
import {
  FASTCGI_PARAMS,
  findNginx,
  startNginx,
} from "../tests/fixtures/nginx.ts";

const args = parseArgs(Deno.args);
const REQUESTS = args.requests ?? 1000;
const CGI_REQUESTS = args["cgi-requests"] ?? 100;
const DURATION = args.duration ?? 5;
const WARMUP = 20;
const ROUNDS = 10;
const START_TIMEOUT_MS = 30_000;
const RUN_CAP_MS = 300_000;
const TARGET = 0.10;

function parseArgs(list: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (let i = 0; i < list.length; i += 2) {
    const name = list[i].replace(/^--/, "");
    const value = Number(list[i + 1]);
    if (
      !["requests", "cgi-requests", "duration"].includes(name) ||
      !Number.isSafeInteger(value) || value < 1 || value > 100_000
    ) {
      console.error(
        "usage: deno run -A bench/fastcgi_bench.ts [--requests N] [--cgi-requests N] [--duration S]",
      );
      Deno.exit(2);
    }
    out[name] = value;
  }
  return out;
}

const lighttpdBin = findLighttpd();
const nginxBin = findNginx();
if (lighttpdBin === null || nginxBin === null) {
  console.error(
    "lighttpd and nginx are needed (Debian: apt-get install lighttpd nginx)",
  );
  Deno.exit(1);
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const root = new URL("..", import.meta.url);
const BODY = "Hello world!";

// --- Children --------------------------------------------------------------

const children = new Set<Deno.ChildProcess>();
const cleanups: (() => Promise<unknown>)[] = [];

function kill(child: Deno.ChildProcess, signal: Deno.Signal): void {
  try {
    child.kill(signal);
  } catch {
    // Gone already.
  }
}

/** Start a deno program; resolve with the port its first line names. */
async function startDeno(args: string[]): Promise<number> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-lock", ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  children.add(child);
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const timer = setTimeout(() => kill(child, "SIGKILL"), START_TIMEOUT_MS);
  let out = "";
  try {
    while (!/port (\d+)/.test(out)) {
      const { done, value } = await reader.read();
      if (done) break;
      out += value;
    }
  } finally {
    clearTimeout(timer);
  }
  const match = /port (\d+)/.exec(out);
  if (match === null) {
    throw new Error(`${args.join(" ")} did not start: ${out}`);
  }
  (async () => {
    while (!(await reader.read()).done) { /* discard */ }
  })().catch(() => {});
  return Number(match[1]);
}

async function stopChildren(): Promise<void> {
  await Promise.all([...children].map(async (child) => {
    kill(child, "SIGTERM");
    const timer = setTimeout(() => kill(child, "SIGKILL"), 5000);
    await child.status;
    clearTimeout(timer);
    children.delete(child);
  }));
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
}

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  Deno.addSignalListener(signal, async () => {
    await stopChildren();
    Deno.exit(130);
  });
}
const cap = setTimeout(async () => {
  console.error(`Stopped after ${RUN_CAP_MS / 1000} s`);
  await stopChildren();
  Deno.exit(1);
}, RUN_CAP_MS);

// --- A kept-alive HTTP/1.1 client -------------------------------------------

class Client {
  #port: number;
  #conn: Deno.TcpConn | null = null;
  #buffer = new Uint8Array(64 * 1024);
  #have = 0;

  constructor(port: number) {
    this.#port = port;
  }

  /** GET `path`; the body, checked to be `Hello world!`. */
  async get(path: string): Promise<void> {
    for (let attempt = 0;; attempt++) {
      try {
        this.#conn ??= await Deno.connect({
          hostname: "127.0.0.1",
          port: this.#port,
        });
        await this.#conn.write(
          encoder.encode(`GET ${path} HTTP/1.1\r\nHost: bench\r\n\r\n`),
        );
        const body = await this.#response();
        if (body !== BODY) {
          throw new Error(`Unexpected body ${JSON.stringify(body)}`);
        }
        return;
      } catch (error) {
        this.close();
        // A kept-alive connection the server closed: once more, anew.
        if (
          attempt > 0 || !(error instanceof Deno.errors.ConnectionReset ||
            (error as Error).message === "closed")
        ) throw error;
      }
    }
  }

  async #response(): Promise<string> {
    for (;;) {
      const text = decoder.decode(this.#buffer.subarray(0, this.#have));
      const end = text.indexOf("\r\n\r\n");
      if (end >= 0) {
        const length = Number(/\r\ncontent-length: *(\d+)/i.exec(text)?.[1]);
        if (!Number.isInteger(length)) {
          throw new Error(`No Content-Length: ${text.slice(0, end)}`);
        }
        const total = end + 4 + length;
        if (this.#have >= total) {
          const body = text.slice(end + 4, total);
          this.#buffer.copyWithin(0, total, this.#have);
          this.#have -= total;
          if (!/^HTTP\/1\.1 200 /.test(text)) throw new Error(text);
          if (/\r\nconnection: *close/i.test(text.slice(0, end))) this.close();
          return body;
        }
      }
      const n = await this.#conn!.read(this.#buffer.subarray(this.#have));
      if (n === null) throw new Error("closed");
      this.#have += n;
    }
  }

  close(): void {
    try {
      this.#conn?.close();
    } catch {
      // Closed.
    }
    this.#conn = null;
    this.#have = 0;
  }
}

// --- Measures -----------------------------------------------------------------

interface Side {
  name: string;
  title: string;
  port: number;
  path: string;
  requests: number;
  times: number[];
  rps: number | null;
}

function quantile(times: number[], q: number): number {
  const sorted = [...times].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

async function hasWrk(): Promise<boolean> {
  try {
    return (await new Deno.Command("wrk", {
      args: ["--version"],
      stdout: "null",
      stderr: "null",
    }).output()).code <= 1;
  } catch {
    return false;
  }
}

async function wrk(side: Side): Promise<number> {
  const child = new Deno.Command("wrk", {
    args: [
      "-t1",
      "-c8",
      `-d${DURATION}s`,
      "--timeout",
      "10s",
      `http://127.0.0.1:${side.port}${side.path}`,
    ],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const timer = setTimeout(
    () => kill(child, "SIGKILL"),
    (DURATION + 30) * 1000,
  );
  const output = await child.output();
  clearTimeout(timer);
  const text = decoder.decode(output.stdout);
  const match = /Requests\/sec:\s+([\d.]+)/.exec(text);
  if (match === null) {
    throw new Error(`wrk failed: ${text}${decoder.decode(output.stderr)}`);
  }
  if (/Non-2xx or 3xx responses/.test(text) || /Socket errors/.test(text)) {
    console.error(`wrk on ${side.name} reported errors:\n${text}`);
  }
  return Number(match[1]);
}

function ms(value: number): string {
  return value < 1
    ? `${(value * 1000).toFixed(0)} µs`
    : `${value.toFixed(2)} ms`;
}

async function loadAverage(): Promise<string> {
  try {
    return (await Deno.readTextFile("/proc/loadavg")).split(" ").slice(0, 3)
      .join(" ");
  } catch {
    return "?";
  }
}

// --- Run ------------------------------------------------------------------------

let failed = false;
try {
  const dir = await Deno.makeTempDir({ prefix: "wsgiref-fastcgi-bench-" });
  cleanups.push(() => Deno.remove(dir, { recursive: true }));
  const url = (path: string) => JSON.stringify(new URL(path, root).href);
  await Deno.writeTextFile(
    `${dir}/app.ts`,
    `// The hello application every side serves.
import type { Application } from ${url("types.ts")};

const body = new TextEncoder().encode(${JSON.stringify(BODY)});
export const app: Application = (_environ, startResponse) => {
  startResponse("200 OK", [["Content-Type", "text/plain"]]);
  return [body];
};
`,
  );
  await Deno.writeTextFile(
    `${dir}/hello.ts`,
    `#!/usr/bin/env -S deno run --allow-env --allow-read
import { CGIHandler } from ${url("handlers.ts")};
import { app } from "./app.ts";

await new CGIHandler().run(app);
`,
    { mode: 0o755 },
  );
  await Deno.writeTextFile(
    `${dir}/server.ts`,
    `import { makeServer } from ${url("simple_server.ts")};
import { app } from "./app.ts";

const server = makeServer("127.0.0.1", 0, app, { quiet: true });
console.log(\`listening port \${server.serverPort}\`);
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  Deno.addSignalListener(signal, () => server.shutdown());
}
await server.serveForever();
`,
  );

  const gatewayPort = await startDeno([
    "-A",
    new URL("fastcgi.ts", root).pathname,
    `${dir}/app.ts`,
    "--port",
    "0",
    "--quiet",
  ]);
  const serverPort = await startDeno(["-A", `${dir}/server.ts`]);
  const lighttpd = await startLighttpd(lighttpdBin, {
    aliases: { "/cgi": `${dir}/hello.ts` },
    fastcgi: { "/fcgi": { host: "127.0.0.1", port: gatewayPort } },
  });
  cleanups.push(() => lighttpd.stop());
  const nginx = await startNginx(nginxBin, {
    http: `
  upstream gateway {
    server 127.0.0.1:${gatewayPort};
    keepalive 16;
  }
  upstream server {
    server 127.0.0.1:${serverPort};
    keepalive 16;
  }`,
    server: `
    location /fcgi {
      fastcgi_pass gateway;
      fastcgi_keep_conn on;
${FASTCGI_PARAMS}
      fastcgi_param SCRIPT_NAME /fcgi;
      fastcgi_param PATH_INFO "";
    }
    location / {
      proxy_pass http://server;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }`,
  });
  cleanups.push(() => nginx.stop());

  const sides: Side[] = [
    {
      name: "fastcgi",
      title: "lighttpd mod_fastcgi → fastcgi.ts",
      port: lighttpd.port,
      path: "/fcgi",
      requests: REQUESTS,
      times: [],
      rps: null,
    },
    {
      name: "cgi",
      title: "lighttpd mod_cgi → CGIHandler",
      port: lighttpd.port,
      path: "/cgi",
      requests: CGI_REQUESTS,
      times: [],
      rps: null,
    },
    {
      name: "http",
      title: "nginx proxy_pass → makeServer",
      port: nginx.port,
      path: "/",
      requests: REQUESTS,
      times: [],
      rps: null,
    },
    {
      name: "nginx-fastcgi",
      title: "nginx fastcgi_pass → fastcgi.ts",
      port: nginx.port,
      path: "/fcgi",
      requests: REQUESTS,
      times: [],
      rps: null,
    },
  ];

  console.log(`load average before: ${await loadAverage()}`);
  const clients = new Map(sides.map((side) => [side, new Client(side.port)]));
  for (const side of sides) {
    for (let i = 0; i < WARMUP; i++) await clients.get(side)!.get(side.path);
  }
  for (let round = 0; round < ROUNDS; round++) {
    const order = [
      ...sides.slice(round % sides.length),
      ...sides.slice(0, round % sides.length),
    ];
    for (const side of order) {
      const client = clients.get(side)!;
      const count = Math.ceil(side.requests / ROUNDS);
      for (let i = 0; i < count; i++) {
        const start = performance.now();
        await client.get(side.path);
        side.times.push(performance.now() - start);
      }
    }
  }
  for (const client of clients.values()) client.close();

  if (await hasWrk()) {
    for (const side of sides) side.rps = await wrk(side);
  } else {
    console.log("wrk not found (apt-get install wrk): no requests/s");
  }
  console.log(`load average after: ${await loadAverage()}`);

  console.log(
    `\nhello, ${REQUESTS} requests one at a time (${CGI_REQUESTS} for CGI) over a kept-alive connection; wrk -t1 -c8 -d${DURATION}s\n`,
  );
  const rows = sides.map((side) => [
    side.title,
    ms(quantile(side.times, 0.5)),
    ms(quantile(side.times, 0.9)),
    side.rps === null ? "-" : side.rps.toFixed(0),
  ]);
  const header = ["side", "median", "p90", "requests/s"];
  const widths = header.map((h, i) =>
    Math.max(h.length, ...rows.map((r) => r[i].length))
  );
  const line = (cells: string[]) =>
    "| " +
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i])))
      .join(" | ") +
    " |";
  console.log(line(header));
  console.log("| " + widths.map((w) => "-".repeat(w)).join(" | ") + " |");
  for (const row of rows) console.log(line(row));

  const median = (name: string) =>
    quantile(sides.find((s) => s.name === name)!.times, 0.5);
  const rps = (name: string) => sides.find((s) => s.name === name)!.rps;
  const latencyRatio = median("fastcgi") / median("cgi");
  console.log("");
  console.log(
    `fastcgi / cgi median latency: ${latencyRatio.toFixed(3)} (target ≤ ${
      TARGET.toFixed(2)
    }: ${latencyRatio <= TARGET ? "met" : "NOT MET"})`,
  );
  console.log(
    `fastcgi / http median latency: ${
      (median("fastcgi") / median("http")).toFixed(2)
    }`,
  );
  console.log(
    `nginx-fastcgi / http median latency: ${
      (median("nginx-fastcgi") / median("http")).toFixed(2)
    }`,
  );
  if (rps("fastcgi") !== null) {
    console.log(
      `fastcgi / cgi requests/s: ${(rps("fastcgi")! / rps("cgi")!).toFixed(1)}`,
    );
    console.log(
      `fastcgi / http requests/s: ${
        (rps("fastcgi")! / rps("http")!).toFixed(2)
      }`,
    );
    console.log(
      `nginx-fastcgi / http requests/s: ${
        (rps("nginx-fastcgi")! / rps("http")!).toFixed(2)
      }`,
    );
  }
  failed = latencyRatio > TARGET;
} catch (error) {
  console.error(error);
  failed = true;
} finally {
  clearTimeout(cap);
  await stopChildren();
}
Deno.exit(failed ? 1 : 0);
