/**
 * The FastCGI gateway against its peers behind one nginx, server-bound;
 * where its microseconds go; and what it saves over CGI:
 *
 * ```sh
 * deno task bench:fastcgi     # = deno run -A bench/fastcgi_bench.ts, ~3 min
 * deno run -A bench/fastcgi_bench.ts [--scenario peers,costs,latency]
 *   [--rounds 3] [--duration 5] [--warmup 2] [--connections 50]
 *   [--mode pinned|shared] [--server-cpu 0] [--wrk-cpu 1] [--no-install]
 *   [--requests 1000] [--cgi-requests 100]
 * ```
 *
 * Scenarios (`--scenario`, default `peers,latency`):
 *
 * - `peers`: the hello application (`Hello world!\n`, `text/plain`) behind
 *   the same nginx, measured server-bound as `bench/_load.ts` describes:
 *   each backend in a process group of its own pinned to CPU 0, nginx
 *   (one process) and `wrk -t1 -c50` pinned to CPU 1, the backend's CPU
 *   time per request summed over its process group. Sides: the gateway
 *   (`makeFastCGIServer`, `quiet: true`; nginx `fastcgi_pass` to an
 *   upstream with `keepalive 64` and `fastcgi_keep_conn on`); PHP-FPM 8.2
 *   (`pm = static`, one child, `bench/hello.php`; the same nginx set-up);
 *   uWSGI 2.0 `--fastcgi-socket` (`bench/hello_wsgi.py`; nginx
 *   `fastcgi_pass` without `fastcgi_keep_conn`: uWSGI closes every
 *   connection, and a kept one races that close); uWSGI `--socket`, its
 *   own protocol (nginx `uwsgi_pass`). Missing peers are installed
 *   (`apt-get`, as root; `--no-install` not to), a peer that cannot start
 *   is skipped, with a line saying why. Target: gateway / uWSGI FastCGI
 *   CPU time per request ≤ 1.00; stretch (reported, never fails the run):
 *   gateway / uWSGI native ≤ 1.00.
 * - `costs` (not by default): where the gateway's microseconds go, the
 *   same way. A ladder of backends, each adding one piece
 *   (`bench/fcgi_raw.ts`, `bench/apps.ts`): a raw responder on
 *   `Deno.listen` that splits records and writes canned bytes (the floor);
 *   plus the parameters turned into an environ; plus `FastCGIHandler`
 *   running the application; plus the gateway's I/O structure (a write
 *   pump started from a microtask, reads going on meanwhile); then the
 *   gateway itself with a handler that writes canned bytes (its records,
 *   connections and framing, no application); then the gateway. uWSGI
 *   FastCGI runs beside them as the yardstick. Each ratio to the rung
 *   below prints; no targets.
 * - `latency`: lighttpd `mod_fastcgi` → the gateway, against the same
 *   application as a CGI program (`CGIHandler`, one Deno process per
 *   request) under the same lighttpd, `makeServer` behind nginx
 *   `proxy_pass`, and the gateway behind nginx `fastcgi_pass`: requests one
 *   at a time over one kept-alive connection (`--requests`, and
 *   `--cgi-requests` for CGI), after a warm-up, the sides alternating in
 *   rounds; the median and p90 of each, then requests/s with `wrk -t1 -c8`
 *   for `--duration` s (nothing pinned). Target: the gateway's median
 *   latency under lighttpd at most 0.10× the CGI one.
 *
 * Needs Linux (`/proc`), nginx, lighttpd (latency), wrk and, pinned,
 * taskset and 2 CPUs. Every child process and temp directory is removed on
 * success, on error and on SIGINT/SIGTERM; every wait is bounded (a start
 * 60 s, wrk its duration + 30 s, an install 10 min). Exits 1 if a target
 * is missed (a target whose peer did not run is reported as not judged).
 *
 * @module
 */

import { type Child, startServer, stopAll, stopServer } from "./_child.ts";
import {
  type Comparison,
  conclude,
  type LoadCommand,
  type LoadOptions,
  loadSides,
  machine,
  onExit,
  pin,
  prepare,
  report,
  runBenchmark,
  runWrk,
  type Side,
  type Verdict,
} from "./_load.ts";
import { ensurePeers, PEERS, PHP_SCRIPT, startPeer } from "./_peers.ts";
import { HELLO_TEXT } from "./apps.ts";
import { findLighttpd, startLighttpd } from "../tests/fixtures/lighttpd.ts";
import {
  FASTCGI_PARAMS,
  findNginx,
  type Nginx,
  startNginx,
} from "../tests/fixtures/nginx.ts";

interface Scenario {
  name: string;
  title: string;
  sides: string[];
  comparisons: Comparison[];
  byDefault: boolean;
}

/** The rungs of the cost ladder, each over the one before. */
const LADDER = [
  "fcgi-raw-canned",
  "fcgi-raw-environ",
  "fcgi-raw-handler",
  "fcgi-raw-hops",
  "fcgi-gateway-canned",
  "fcgi-gateway",
];

const SCENARIOS: Scenario[] = [
  {
    name: "peers",
    title: "hello behind nginx: the gateway, PHP-FPM, uWSGI",
    sides: ["fcgi-gateway", "php-fpm", "uwsgi-fastcgi", "uwsgi-native"],
    comparisons: [
      { of: "fcgi-gateway", to: "uwsgi-fastcgi", metric: "cpu", target: 1.0 },
      {
        of: "fcgi-gateway",
        to: "uwsgi-native",
        metric: "cpu",
        target: 1.0,
        stretch: true,
      },
      { of: "fcgi-gateway", to: "php-fpm", metric: "cpu", target: null },
    ],
    byDefault: true,
  },
  {
    name: "costs",
    title: "hello behind nginx, where the gateway's microseconds go",
    sides: [...LADDER, "uwsgi-fastcgi"],
    comparisons: [
      ...LADDER.slice(1).map((of, i): Comparison => ({
        of,
        to: LADDER[i],
        metric: "cpu",
        target: null,
      })),
      {
        of: "fcgi-gateway",
        to: "fcgi-raw-canned",
        metric: "cpu",
        target: null,
      },
      {
        of: "fcgi-raw-canned",
        to: "uwsgi-fastcgi",
        metric: "cpu",
        target: null,
      },
      { of: "fcgi-gateway", to: "uwsgi-fastcgi", metric: "cpu", target: null },
    ],
    byDefault: false,
  },
  {
    name: "profile",
    title: "the gateway behind nginx, V8's CPU profile",
    sides: ["fcgi-gateway"],
    comparisons: [],
    byDefault: false,
  },
  {
    name: "latency",
    title: "one request at a time: FastCGI against CGI",
    sides: [],
    comparisons: [],
    byDefault: true,
  },
];

const LABELS: Record<string, string> = {
  "fcgi-gateway": "the gateway (makeFastCGIServer)",
  "fcgi-gateway-canned": "the gateway, a handler that writes canned bytes",
  "fcgi-raw-canned": "raw responder, canned bytes (the floor)",
  "fcgi-raw-environ": "raw + params to an environ",
  "fcgi-raw-handler": "raw + environ + FastCGIHandler.run(app)",
  "fcgi-raw-hops": "raw + handler + the gateway's write pump",
};

const COMMAND: LoadCommand = {
  file: "fastcgi_bench.ts",
  scenarios: SCENARIOS,
  extra: {
    "requests": [1000, 1, 100_000],
    "cgi-requests": [100, 1, 100_000],
  },
};

/** What nginx passes to uWSGI's own protocol (Debian's `uwsgi_params`). */
const UWSGI_PARAMS = `
uwsgi_param QUERY_STRING $query_string;
uwsgi_param REQUEST_METHOD $request_method;
uwsgi_param CONTENT_TYPE $content_type;
uwsgi_param CONTENT_LENGTH $content_length;
uwsgi_param REQUEST_URI $request_uri;
uwsgi_param PATH_INFO $document_uri;
uwsgi_param DOCUMENT_ROOT $document_root;
uwsgi_param SERVER_PROTOCOL $server_protocol;
uwsgi_param REQUEST_SCHEME $scheme;
uwsgi_param HTTPS $https if_not_empty;
uwsgi_param REMOTE_ADDR $remote_addr;
uwsgi_param REMOTE_PORT $remote_port;
uwsgi_param SERVER_PORT $server_port;
uwsgi_param SERVER_NAME $server_name;
`;

/** The nginx directives that route `/<name>` to one backend. */
function route(name: string, port: number): { http: string; server: string } {
  const location = `/${name}`;
  const cgi = `${FASTCGI_PARAMS}
      fastcgi_param SCRIPT_NAME ${location};
      fastcgi_param PATH_INFO "";`;
  if (name === "uwsgi-native") {
    return {
      http: "",
      server: `
    location = ${location} {
      uwsgi_pass 127.0.0.1:${port};
${UWSGI_PARAMS}
    }`,
    };
  }
  if (name === "uwsgi-fastcgi") {
    // uWSGI closes the connection after each response, KEEP_CONN or not.
    return {
      http: "",
      server: `
    location = ${location} {
      fastcgi_pass 127.0.0.1:${port};
${cgi}
    }`,
    };
  }
  const upstream = `up_${name.replaceAll("-", "_")}`;
  return {
    // More idle connections kept than wrk's, so none is closed and reopened.
    http: `
  upstream ${upstream} {
    server 127.0.0.1:${port};
    keepalive 64;
  }`,
    server: `
    location = ${location} {
      fastcgi_pass ${upstream};
      fastcgi_keep_conn on;
${cgi}
${
      name === "php-fpm"
        ? `      fastcgi_param SCRIPT_FILENAME ${PHP_SCRIPT};`
        : ""
    }
    }`,
  };
}

/** Start nginx routing to `backends`, pinned (when pinned) to wrk's CPU. */
async function startFront(
  nginxBin: string,
  backends: Child[],
  options: LoadOptions,
): Promise<Nginx> {
  const routes = backends.map((child) => route(child.name, child.port));
  const nginx = await startNginx(nginxBin, {
    http: routes.map((r) => r.http).join("\n"),
    server: routes.map((r) => r.server).join("\n"),
  });
  const stop = onExit(() => nginx.stop());
  if (options.mode === "pinned") {
    const pid = Number(
      (await Deno.readTextFile(`${nginx.dir}/nginx.pid`)).trim(),
    );
    await pin(pid, options.wrkCpu);
  }
  return { ...nginx, stop: async () => (await stop(), "") };
}

async function runLoadScenario(
  wrk: string,
  nginxBin: string,
  scenario: Scenario,
  options: LoadOptions,
  ticksPerSecond: number,
): Promise<Verdict> {
  console.log(`\n== ${scenario.name}: ${scenario.title}`);
  const cpu = options.mode === "pinned" ? options.serverCpu : undefined;
  const backends: Child[] = [];
  for (const name of scenario.sides) {
    const child = name in PEERS
      ? await startPeer(name, cpu)
      : await startServer(name, { cpu });
    if (child !== null) backends.push(child);
  }
  const nginx = await startFront(nginxBin, backends, options);
  try {
    const sides: Side[] = backends.map((child) => ({
      name: child.name,
      label: child.name in PEERS ? PEERS[child.name].label : LABELS[child.name],
      child,
      url: `${nginx.base}/${child.name}`,
    }));
    console.log(
      `nginx ${nginx.base}${
        options.mode === "pinned" ? `, on CPU ${options.wrkCpu}` : ""
      }`,
    );
    const runs = await loadSides(
      wrk,
      sides,
      options,
      { body: HELLO_TEXT },
      null,
      ticksPerSecond,
    );
    const errors = (await nginx.errorLog()).split("\n").filter((line) =>
      /\[(error|crit|alert|emerg)\]/.test(line)
    );
    if (errors.length > 0) {
      console.log(
        `nginx logged ${errors.length} errors; the last: ${errors.at(-1)}`,
      );
    }
    return report(scenario.name, runs, scenario.comparisons, options.rounds);
  } finally {
    await nginx.stop();
    await stopAll();
  }
}

// --- profile: where the gateway's time goes, by function -------------------

const PROFILE_INTERVAL_US = 200;
const PROFILE_TOP = 25;

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}

interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** Print the functions and source files with the most self time. */
function summarize(profile: Profile): void {
  const nodes = new Map(profile.nodes.map((node) => [node.id, node]));
  const byFunction = new Map<string, number>();
  const byFile = new Map<string, number>();
  let total = 0;
  let idle = 0;
  // A sample's time is the delta to the next one.
  for (let i = 0; i + 1 < profile.samples.length; i++) {
    const frame = nodes.get(profile.samples[i])!.callFrame;
    const us = profile.timeDeltas[i + 1];
    if (frame.functionName === "(idle)") {
      idle += us;
      continue;
    }
    total += us;
    const file = frame.url === ""
      ? frame.functionName
      : frame.url.replace(/^file:\/\/.*\/(?=[^/]+$)/, "");
    const name = `${frame.functionName || "(anonymous)"} ${file}${
      frame.url === "" ? "" : `:${frame.lineNumber + 1}`
    }`;
    byFunction.set(name, (byFunction.get(name) ?? 0) + us);
    byFile.set(file, (byFile.get(file) ?? 0) + us);
  }
  const share = (us: number) => `${(us / total * 100).toFixed(1).padStart(5)}%`;
  console.log(
    `${
      (total / 1e6).toFixed(2)
    } s of CPU sampled every ${PROFILE_INTERVAL_US} µs (idle ${
      (idle / 1e6).toFixed(2)
    } s left out); self time by source file:`,
  );
  for (
    const [file, us] of [...byFile].sort((a, b) => b[1] - a[1]).slice(0, 12)
  ) {
    console.log(`  ${share(us)}  ${file}`);
  }
  console.log(`the ${PROFILE_TOP} functions with the most self time:`);
  for (
    const [name, us] of [...byFunction].sort((a, b) => b[1] - a[1]).slice(
      0,
      PROFILE_TOP,
    )
  ) {
    console.log(`  ${share(us)}  ${name}`);
  }
}

/**
 * Load the gateway behind nginx (warm-up, then `--rounds` × `--duration`
 * s in one run) with V8's sampling profiler on (`deno run --cpu-prof`), stop
 * it, and summarise the profile. No target.
 */
async function runProfile(
  wrk: string,
  nginxBin: string,
  options: LoadOptions,
): Promise<Verdict> {
  console.log(`\n== profile: the gateway behind nginx, V8's CPU profile`);
  const dir = await Deno.makeTempDir({ prefix: "wsgiref-fastcgi-profile-" });
  onExit(() => Deno.remove(dir, { recursive: true }));
  const child = await startServer("fcgi-gateway", {
    cpu: options.mode === "pinned" ? options.serverCpu : undefined,
    denoFlags: [
      "--cpu-prof",
      "--cpu-prof-dir",
      dir,
      "--cpu-prof-interval",
      String(PROFILE_INTERVAL_US),
    ],
  });
  const nginx = await startFront(nginxBin, [child], options);
  const url = `${nginx.base}/${child.name}`;
  if (options.warmup > 0) {
    await runWrk(wrk, url, options, options.warmup, null);
  }
  const seconds = options.rounds * options.duration;
  const run = await runWrk(wrk, url, options, seconds, null);
  console.log(
    `fcgi-gateway: ${
      Math.round(run.rps)
    } req/s for ${seconds} s (wrk -t${options.threads} -c${options.connections}, through nginx)`,
  );
  await nginx.stop();
  await stopServer(child);
  const files = [];
  for await (const entry of Deno.readDir(dir)) {
    if (entry.name.endsWith(".cpuprofile")) files.push(entry.name);
  }
  if (files.length !== 1) {
    console.log(`no profile written (${files.join(", ") || "none"})`);
    return { met: true, clean: false, unjudged: [] };
  }
  summarize(JSON.parse(await Deno.readTextFile(`${dir}/${files[0]}`)));
  return { met: true, clean: true, unjudged: [] };
}

// --- latency: FastCGI against CGI, one request at a time -------------------

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const WARMUP_REQUESTS = 20;
const LATENCY_ROUNDS = 10;
const LATENCY_TARGET = 0.10;

/** A kept-alive HTTP/1.1 client that checks each body. */
class Client {
  #port: number;
  #conn: Deno.TcpConn | null = null;
  #buffer = new Uint8Array(64 * 1024);
  #have = 0;

  constructor(port: number) {
    this.#port = port;
  }

  /** GET `path`; the body, checked to be the hello. */
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
        if (body !== HELLO_TEXT) {
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

interface LatencySide {
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

function ms(value: number): string {
  return value < 1
    ? `${(value * 1000).toFixed(0)} µs`
    : `${value.toFixed(2)} ms`;
}

async function runLatency(
  wrk: string,
  nginxBin: string,
  options: LoadOptions,
): Promise<Verdict> {
  console.log(`\n== latency: one request at a time, FastCGI against CGI`);
  const lighttpdBin = findLighttpd();
  if (lighttpdBin === null) {
    console.log(
      "skipped: lighttpd not found (Debian: apt-get install lighttpd)",
    );
    return { met: true, clean: true, unjudged: ["latency (no lighttpd)"] };
  }
  // Nothing pinned: what this script starts would inherit its CPU.
  if (options.mode === "pinned") {
    await pin(Deno.pid, `0-${navigator.hardwareConcurrency - 1}`);
  }
  const requests = options.extra.requests;
  const cgiRequests = options.extra["cgi-requests"];
  const dir = await Deno.makeTempDir({ prefix: "wsgiref-fastcgi-bench-" });
  onExit(() => Deno.remove(dir, { recursive: true }));
  const handlers = JSON.stringify(import.meta.resolve("../handlers.ts"));
  // The CGI program holds the application itself: importing bench/apps.ts
  // would load the servers too, and slow every CGI process down.
  await Deno.writeTextFile(
    `${dir}/hello.ts`,
    `#!/usr/bin/env -S deno run --allow-env --allow-read
import { CGIHandler } from ${handlers};

const body = new TextEncoder().encode(${JSON.stringify(HELLO_TEXT)});
await new CGIHandler().run((_environ, startResponse) => {
  startResponse("200 OK", [["Content-Type", "text/plain"]]);
  return [body];
});
`,
    { mode: 0o755 },
  );
  const gateway = await startServer("fcgi-gateway");
  const server = await startServer("wsgi-hello");
  const lighttpd = await startLighttpd(lighttpdBin, {
    aliases: { "/cgi": `${dir}/hello.ts` },
    fastcgi: { "/fcgi": { host: "127.0.0.1", port: gateway.port } },
  });
  const stopLighttpd = onExit(() => lighttpd.stop());
  const nginx = await startNginx(nginxBin, {
    http: `
  upstream gateway {
    server 127.0.0.1:${gateway.port};
    keepalive 16;
  }
  upstream server {
    server 127.0.0.1:${server.port};
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
  const stopNginx = onExit(() => nginx.stop());
  const side = (
    name: string,
    title: string,
    port: number,
    path: string,
    count: number,
  ): LatencySide => ({
    name,
    title,
    port,
    path,
    requests: count,
    times: [],
    rps: null,
  });
  const sides = [
    side(
      "fastcgi",
      "lighttpd mod_fastcgi → gateway",
      lighttpd.port,
      "/fcgi",
      requests,
    ),
    side(
      "cgi",
      "lighttpd mod_cgi → CGIHandler",
      lighttpd.port,
      "/cgi",
      cgiRequests,
    ),
    side("http", "nginx proxy_pass → makeServer", nginx.port, "/", requests),
    side(
      "nginx-fastcgi",
      "nginx fastcgi_pass → gateway",
      nginx.port,
      "/fcgi",
      requests,
    ),
  ];
  const clients = new Map(sides.map((s) => [s, new Client(s.port)]));
  for (const s of sides) {
    for (let i = 0; i < WARMUP_REQUESTS; i++) {
      await clients.get(s)!.get(s.path);
    }
  }
  for (let round = 0; round < LATENCY_ROUNDS; round++) {
    const order = [
      ...sides.slice(round % sides.length),
      ...sides.slice(0, round % sides.length),
    ];
    for (const s of order) {
      const client = clients.get(s)!;
      const count = Math.ceil(s.requests / LATENCY_ROUNDS);
      for (let i = 0; i < count; i++) {
        const start = performance.now();
        await client.get(s.path);
        s.times.push(performance.now() - start);
      }
    }
  }
  for (const client of clients.values()) client.close();
  const wrkOptions: LoadOptions = {
    ...options,
    mode: "shared",
    threads: 1,
    connections: 8,
  };
  for (const s of sides) {
    s.rps = (await runWrk(
      wrk,
      `http://127.0.0.1:${s.port}${s.path}`,
      wrkOptions,
      options.duration,
      null,
    )).rps;
  }
  console.log(
    `${requests} requests one at a time (${cgiRequests} for CGI) over a kept-alive connection; wrk -t1 -c8 -d${options.duration}s, nothing pinned\n`,
  );
  const rows = sides.map((s) => [
    s.title,
    ms(quantile(s.times, 0.5)),
    ms(quantile(s.times, 0.9)),
    s.rps === null ? "-" : s.rps.toFixed(0),
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
  const get = (name: string) => sides.find((s) => s.name === name)!;
  const median = (name: string) => quantile(get(name).times, 0.5);
  const ratio = median("fastcgi") / median("cgi");
  console.log(
    `\nfastcgi / cgi median latency: ${ratio.toFixed(3)} (target ≤ ${
      LATENCY_TARGET.toFixed(2)
    }: ${ratio <= LATENCY_TARGET ? "met" : "NOT met"})`,
  );
  for (const [of, to] of [["fastcgi", "http"], ["nginx-fastcgi", "http"]]) {
    console.log(
      `${of} / ${to} median latency: ${
        (median(of) / median(to)).toFixed(2)
      }, requests/s ${(get(of).rps! / get(to).rps!).toFixed(2)}`,
    );
  }
  console.log(
    `fastcgi / cgi requests/s: ${
      (get("fastcgi").rps! / get("cgi").rps!).toFixed(1)
    }`,
  );
  await stopNginx();
  await stopLighttpd();
  await stopAll();
  if (options.mode === "pinned") await pin(Deno.pid, options.wrkCpu);
  return { met: ratio <= LATENCY_TARGET, clean: true, unjudged: [] };
}

async function main(): Promise<number> {
  const prepared = await prepare(COMMAND);
  if (typeof prepared === "number") return prepared;
  const { options, wrk, ticksPerSecond } = prepared;
  const nginxBin = findNginx();
  if (nginxBin === null) {
    console.error("nginx is needed (Debian: apt-get install nginx)");
    return 1;
  }
  const scenarios = SCENARIOS.filter((s) => options.scenarios.includes(s.name));
  await ensurePeers(scenarios.flatMap((s) => s.sides), options.install);
  console.log(
    `${await machine()}; CLK_TCK ${ticksPerSecond}\nmode ${options.mode}: ${
      options.mode === "pinned"
        ? `backends on CPU ${options.serverCpu}, nginx and wrk on CPU ${options.wrkCpu}`
        : "nothing pinned"
    }; wrk -t${options.threads} -c${options.connections} -d${options.duration}s; warm-up ${options.warmup} s per side, ${options.rounds} rounds`,
  );
  const verdicts: [string, Verdict][] = [];
  for (const scenario of scenarios) {
    verdicts.push([
      scenario.name,
      scenario.name === "latency"
        ? await runLatency(wrk, nginxBin, options)
        : scenario.name === "profile"
        ? await runProfile(wrk, nginxBin, options)
        : await runLoadScenario(
          wrk,
          nginxBin,
          scenario,
          options,
          ticksPerSecond,
        ),
    ]);
  }
  return conclude(verdicts);
}

if (import.meta.main) await runBenchmark(main);
