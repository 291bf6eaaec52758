/**
 * Load `makeServer` against raw `Deno.serve`, Hono and the Python peers
 * with `wrk`, server-bound, in one run:
 *
 * ```sh
 * deno task bench     # = deno run -A bench/server_bench.ts, ~4 min
 * deno run -A bench/server_bench.ts [--scenario get,post,costs,bare]
 *   [--rounds 3] [--duration 5] [--warmup 2] [--connections 50]
 *   [--mode pinned|shared] [--threads N] [--server-cpu 0] [--wrk-cpu 1]
 *   [--no-install]
 * ```
 *
 * Method: see `bench/_load.ts`. Each backend runs in a process group of its
 * own pinned to CPU 0 (`taskset -c 0 deno run -A bench/apps.ts <side> 0`,
 * or the peer's own command line), `wrk -t1 -c50` on CPU 1; CPU time per
 * request is summed over the backend's process group (uWSGI's master and
 * worker, gunicorn's arbiter and worker).
 *
 * Scenarios (`--scenario`, default `get,post`):
 *
 * - `get`: `GET /`, "Hello world!\n" as `text/plain`. Sides: raw
 *   `Deno.serve` with a string body and with a bytes body; raw doing the
 *   same work as the adapter (reads `request.url`, `request.method`, every
 *   header, the peer address; sends `Server: WSGIServer/0.2
 *   Deno/<version>` and `Content-Type: text/plain`); Hono 4 (`npm:hono@4`,
 *   imported by `bench/apps.ts` only); `makeServer` with the default
 *   handler and `quiet: true`; and the peers serving `bench/hello_wsgi.py`
 *   (`bench/_peers.ts`): uWSGI 2.0 `--http-socket` (one worker under a
 *   master; it closes every connection, so wrk reconnects and counts a
 *   read error for each, and the client sets the pace), gunicorn (one sync
 *   worker; closes them too), waitress (its defaults: 4 threads, kept
 *   connections), CPython's `wsgiref` (HTTP/1.0). Missing peers
 *   are installed (`apt-get`, as root; `--no-install` not to), and a peer
 *   that cannot start is skipped, with a line saying why. Targets (CPU
 *   time per request): makeServer / raw same work ≤ 1.10, makeServer /
 *   uWSGI HTTP ≤ 1.00; the other ratios inform.
 * - `post`: `POST /` with a 65,536-byte body (a wrk Lua script in a temp
 *   file), read whole by the application; raw `Deno.serve` reads it with
 *   `await request.bytes()`, and raw doing the same work as the adapter
 *   besides. Target: makeServer/raw req/s ≥ 0.90.
 * - `costs` (not by default): where the microseconds of `get` go. Raw
 *   hello; raw that reads what an environ needs but answers on Deno's fast
 *   path (a lone `Content-Type`); raw that reads nothing but sends the two
 *   headers; raw same work; raw same work with the two headers appended
 *   to the made `Response` (as makeServer builds its own; Deno's
 *   constructor costs more with a headers `init` of two); raw same work
 *   answering a clone of one such `Response` (as makeServer answers the
 *   same response made again); makeServer. No targets.
 * - `bare` (not by default): makeServer with a handler that sends no
 *   `Server` header, against raw hello and the default makeServer.
 *
 * Servers are stopped and the temp files removed on success, on error and
 * on SIGINT/SIGTERM; every wait is bounded (server start 60 s, stop 5 s,
 * wrk its duration + 30 s, an install 10 min). Exits 1 if a target is not
 * met (a target whose peer did not run is reported as not judged). Needs
 * Linux (`/proc`), `wrk` (Debian: `apt-get install wrk`) and, pinned,
 * `taskset` (util-linux) and 2 CPUs. No side keeps an access log.
 *
 * @module
 */

import { type Child, startServer } from "./_child.ts";
import {
  type Comparison,
  conclude,
  type Expect,
  type LoadCommand,
  type LoadOptions,
  loadSides,
  machine,
  prepare,
  report,
  runBenchmark,
  type Side,
  tempFile,
  type Verdict,
} from "./_load.ts";
import { ensurePeers, PEERS, startPeer } from "./_peers.ts";
import { HELLO_TEXT } from "./apps.ts";

interface Scenario {
  name: string;
  title: string;
  sides: string[];
  comparisons: Comparison[];
  expect: Expect;
  lua?: string;
  byDefault: boolean;
}

const POST_SIZE = 65536;
const HELLO: Expect = { body: HELLO_TEXT };

const SCENARIOS: Scenario[] = [
  {
    name: "get",
    title: "GET / hello",
    sides: [
      "raw-hello",
      "raw-hello-bytes",
      "raw-hello-same-work",
      "hono-hello",
      "wsgi-hello",
      "uwsgi-http",
      "gunicorn",
      "waitress",
      "wsgiref-py",
    ],
    comparisons: [
      {
        of: "wsgi-hello",
        to: "raw-hello-same-work",
        metric: "cpu",
        target: 1.1,
      },
      { of: "wsgi-hello", to: "uwsgi-http", metric: "cpu", target: 1.0 },
      { of: "wsgi-hello", to: "hono-hello", metric: "cpu", target: null },
      { of: "wsgi-hello", to: "raw-hello", metric: "cpu", target: null },
      { of: "wsgi-hello", to: "raw-hello-bytes", metric: "cpu", target: null },
      { of: "wsgi-hello", to: "gunicorn", metric: "cpu", target: null },
      { of: "wsgi-hello", to: "waitress", metric: "cpu", target: null },
      { of: "wsgi-hello", to: "wsgiref-py", metric: "cpu", target: null },
    ],
    expect: HELLO,
    byDefault: true,
  },
  {
    name: "post",
    title: `POST / ${POST_SIZE / 1024} KiB, read whole`,
    sides: ["raw-post", "raw-post-same-work", "wsgi-post"],
    comparisons: [
      { of: "wsgi-post", to: "raw-post", metric: "rps", target: 0.9 },
      {
        of: "wsgi-post",
        to: "raw-post-same-work",
        metric: "rps",
        target: null,
      },
    ],
    expect: {
      body: String(POST_SIZE),
      init: { method: "POST", body: new Uint8Array(POST_SIZE) },
    },
    lua: [
      'wrk.method = "POST"',
      `wrk.body = string.rep("x", ${POST_SIZE})`,
      'wrk.headers["Content-Type"] = "application/octet-stream"',
    ].join("\n"),
    byDefault: true,
  },
  {
    name: "costs",
    title: "GET / hello, where the microseconds go",
    sides: [
      "raw-hello",
      "raw-hello-reads",
      "raw-hello-server-header",
      "raw-hello-same-work",
      "raw-hello-same-work-appended",
      "raw-hello-same-work-cloned",
      "wsgi-hello",
    ],
    comparisons: [
      { of: "raw-hello-reads", to: "raw-hello", metric: "cpu", target: null },
      {
        of: "raw-hello-server-header",
        to: "raw-hello",
        metric: "cpu",
        target: null,
      },
      {
        of: "raw-hello-same-work",
        to: "raw-hello",
        metric: "cpu",
        target: null,
      },
      {
        of: "raw-hello-same-work-appended",
        to: "raw-hello-same-work",
        metric: "cpu",
        target: null,
      },
      {
        of: "raw-hello-same-work-cloned",
        to: "raw-hello-same-work-appended",
        metric: "cpu",
        target: null,
      },
      {
        of: "wsgi-hello",
        to: "raw-hello-same-work",
        metric: "cpu",
        target: null,
      },
    ],
    expect: HELLO,
    byDefault: false,
  },
  {
    name: "bare",
    title: "GET / hello, makeServer without a Server header",
    sides: ["raw-hello", "wsgi-hello-bare", "wsgi-hello"],
    comparisons: [
      { of: "wsgi-hello-bare", to: "raw-hello", metric: "cpu", target: null },
      { of: "wsgi-hello-bare", to: "wsgi-hello", metric: "cpu", target: null },
    ],
    expect: HELLO,
    byDefault: false,
  },
];

const LABELS: Record<string, string> = {
  "raw-hello": "raw Deno.serve, string body",
  "raw-hello-bytes": "raw Deno.serve, bytes body",
  "raw-hello-same-work": "raw Deno.serve, same work",
  "raw-hello-same-work-appended": "raw, same work, headers appended",
  "raw-hello-reads": "raw, reads request, lone Content-Type",
  "raw-hello-server-header": "raw, Server + Content-Type",
  "hono-hello": "Hono 4 on Deno.serve",
  "wsgi-hello": "makeServer",
  "wsgi-hello-bare": "makeServer, no Server header",
  "raw-post": "raw Deno.serve, request.bytes()",
  "raw-post-same-work": "raw, same work, request.bytes()",
  "wsgi-post": "makeServer, wsgi.input.read()",
};

const COMMAND: LoadCommand = { file: "server_bench.ts", scenarios: SCENARIOS };

async function runScenario(
  wrk: string,
  scenario: Scenario,
  options: LoadOptions,
  ticksPerSecond: number,
): Promise<Verdict> {
  console.log(`\n== ${scenario.name}: ${scenario.title}`);
  const script = scenario.lua === undefined
    ? null
    : await tempFile(scenario.lua + "\n", ".lua");
  const cpu = options.mode === "pinned" ? options.serverCpu : undefined;
  const sides: Side[] = [];
  for (const name of scenario.sides) {
    let child: Child | null;
    let label: string;
    if (name in PEERS) {
      child = await startPeer(name, cpu);
      label = PEERS[name].label;
    } else {
      child = await startServer(name, { cpu });
      label = LABELS[name];
    }
    if (child !== null) {
      sides.push({
        name,
        label,
        child,
        url: `http://127.0.0.1:${child.port}/`,
      });
    }
  }
  const runs = await loadSides(
    wrk,
    sides,
    options,
    scenario.expect,
    script,
    ticksPerSecond,
  );
  return report(scenario.name, runs, scenario.comparisons, options.rounds);
}

async function main(): Promise<number> {
  const prepared = await prepare(COMMAND);
  if (typeof prepared === "number") return prepared;
  const { options, wrk, ticksPerSecond } = prepared;
  const scenarios = SCENARIOS.filter((s) => options.scenarios.includes(s.name));
  await ensurePeers(scenarios.flatMap((s) => s.sides), options.install);
  const runsPerRound = scenarios.reduce((n, s) => n + s.sides.length, 0);
  const estimate = runsPerRound *
    (options.rounds * options.duration + options.warmup);
  console.log(
    `${await machine()}; CLK_TCK ${ticksPerSecond}\nmode ${options.mode}: ${
      options.mode === "pinned"
        ? `backends on CPU ${options.serverCpu} (taskset -c ${options.serverCpu}), wrk on CPU ${options.wrkCpu} (taskset -c ${options.wrkCpu} wrk`
        : "nothing pinned (wrk"
    } -t${options.threads} -c${options.connections} -d${options.duration}s --latency); ` +
      `warm-up ${options.warmup} s per side, ${options.rounds} rounds, ` +
      `about ${Math.ceil(estimate / 60)} min of load`,
  );
  const verdicts: [string, Verdict][] = [];
  for (const scenario of scenarios) {
    verdicts.push([
      scenario.name,
      await runScenario(wrk, scenario, options, ticksPerSecond),
    ]);
  }
  return conclude(verdicts);
}

if (import.meta.main) await runBenchmark(main);
