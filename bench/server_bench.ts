/**
 * Load `makeServer` against raw `Deno.serve` and Hono with `wrk`,
 * server-bound, in one run:
 *
 * ```sh
 * deno task bench     # = deno run -A bench/server_bench.ts, ~3.5 min
 * deno run -A bench/server_bench.ts [--scenario get,post,costs,bare]
 *   [--rounds 5] [--duration 5] [--warmup 2] [--connections 50]
 *   [--mode pinned|shared] [--threads N] [--server-cpu 0] [--wrk-cpu 1]
 * ```
 *
 * Method (the default, `--mode pinned`): each server runs in a process of
 * its own (`bench/apps.ts`), pinned to one CPU (`taskset -c 0 deno run -A
 * bench/apps.ts <name> 0`, all its threads), and `wrk -t1 -c50` runs
 * pinned to the other (`taskset -c 1 wrk ...`, as is this script), so the
 * server, not the client, sets the pace; the script checks that each pid
 * it measures is the deno server itself and that all its threads may run
 * on that CPU only. A scenario starts all its sides, checks each answers
 * as expected, warms each up (`--warmup` s of load), then runs `--rounds`
 * rounds: every side loaded once per round for `--duration` s, the order
 * rotating from round to round. For each run it prints requests/s, wrk's
 * p99 latency, and the server's CPU time per request: utime + stime of
 * `/proc/<pid>/stat` (fields 14 and 15, in `getconf CLK_TCK` ticks), read
 * just before and just after the run, divided by the requests wrk
 * completed; also the share of a CPU the server used (near 100% when
 * server-bound) and what the idle sides used meanwhile. Then medians over
 * the rounds, and the ratios (medians of the per-round ratios) with their
 * targets. `--mode shared` is the former method: no pinning, wrk `-t2` on
 * the same CPUs as the server (client-bound when the server is fast).
 *
 * Scenarios (`--scenario`, default `get,post`):
 *
 * - `get`: `GET /`, "Hello world!". Sides: raw `Deno.serve` with a string
 *   body and with a bytes body; raw doing the same work as the adapter
 *   (reads `request.url`, `request.method`, every header, the peer address;
 *   sends `Server: WSGIServer/0.2 Deno/<version>` and `Content-Type:
 *   text/plain`); Hono 4 (`npm:hono@4`, imported by `bench/apps.ts` only);
 *   `makeServer` with the default handler (`Server` header) and `quiet:
 *   true`. Targets: makeServer/Hono req/s ≥ 1.0, makeServer/raw-same-work
 *   req/s ≥ 0.90; the CPU-µs ratios are printed alongside.
 * - `post`: `POST /` with a 65,536-byte body (a wrk Lua script in a temp
 *   file), read whole by the application; raw `Deno.serve` reads it with
 *   `await request.bytes()`, and raw doing the same work as the adapter
 *   besides. Target: makeServer/raw req/s ≥ 0.90.
 * - `costs` (not by default): where the microseconds of `get` go. Raw
 *   hello; raw that reads what an environ needs but answers on Deno's fast
 *   path (a lone `Content-Type`); raw that reads nothing but sends the two
 *   headers; raw same work; makeServer. No targets.
 * - `bare` (not by default): makeServer with a handler that sends no
 *   `Server` header, against raw hello and the default makeServer.
 *
 * Servers are stopped and the temp file removed on success, on error and on
 * SIGINT/SIGTERM; every wait is bounded (server start 60 s, stop 5 s, wrk
 * its duration + 30 s). Exits 1 if a target is not met. Needs Linux
 * (`/proc`), `wrk` (Debian: `apt-get install wrk`) and, pinned, `taskset`
 * (util-linux) and 2 CPUs. The access log is off (`quiet: true`), as the
 * others have none.
 *
 * @module
 */

import { type Child, hasTaskset, startServer, stopAll } from "./_child.ts";

const WRK_PATHS = ["/usr/bin/wrk", "/usr/local/bin/wrk"];
const SETTLE_MS = 200;
const WRK_GRACE_MS = 30_000;

/** A ratio printed: req/s of `of` over req/s of `to` (CPU µs likewise). */
interface Comparison {
  of: string;
  to: string;
  /** The least req/s ratio, or `null` when it only informs. */
  target: number | null;
}

interface Scenario {
  name: string;
  title: string;
  sides: string[];
  comparisons: Comparison[];
  /** What every side must answer, for the check before the load. */
  expect: string;
  lua?: string;
  byDefault: boolean;
}

const POST_SIZE = 65536;

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
    ],
    comparisons: [
      { of: "wsgi-hello", to: "hono-hello", target: 1.0 },
      { of: "wsgi-hello", to: "raw-hello-same-work", target: 0.9 },
      { of: "wsgi-hello", to: "raw-hello", target: null },
      { of: "wsgi-hello", to: "raw-hello-bytes", target: null },
    ],
    expect: "Hello world!",
    byDefault: true,
  },
  {
    name: "post",
    title: `POST / ${POST_SIZE / 1024} KiB, read whole`,
    sides: ["raw-post", "raw-post-same-work", "wsgi-post"],
    comparisons: [
      { of: "wsgi-post", to: "raw-post", target: 0.9 },
      { of: "wsgi-post", to: "raw-post-same-work", target: null },
    ],
    expect: String(POST_SIZE),
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
      "wsgi-hello",
    ],
    comparisons: [
      { of: "raw-hello-reads", to: "raw-hello", target: null },
      { of: "raw-hello-server-header", to: "raw-hello", target: null },
      { of: "raw-hello-same-work", to: "raw-hello", target: null },
      { of: "wsgi-hello", to: "raw-hello-same-work", target: null },
    ],
    expect: "Hello world!",
    byDefault: false,
  },
  {
    name: "bare",
    title: "GET / hello, makeServer without a Server header",
    sides: ["raw-hello", "wsgi-hello-bare", "wsgi-hello"],
    comparisons: [
      { of: "wsgi-hello-bare", to: "raw-hello", target: null },
      { of: "wsgi-hello-bare", to: "wsgi-hello", target: null },
    ],
    expect: "Hello world!",
    byDefault: false,
  },
];

const LABELS: Record<string, string> = {
  "raw-hello": "raw Deno.serve, string body",
  "raw-hello-bytes": "raw Deno.serve, bytes body",
  "raw-hello-same-work": "raw Deno.serve, same work",
  "raw-hello-reads": "raw, reads request, lone Content-Type",
  "raw-hello-server-header": "raw, Server + Content-Type",
  "hono-hello": "Hono 4 on Deno.serve",
  "wsgi-hello": "makeServer",
  "wsgi-hello-bare": "makeServer, no Server header",
  "raw-post": "raw Deno.serve, request.bytes()",
  "raw-post-same-work": "raw, same work, request.bytes()",
  "wsgi-post": "makeServer, wsgi.input.read()",
};

interface Options {
  mode: "pinned" | "shared";
  rounds: number;
  duration: number;
  warmup: number;
  connections: number;
  threads: number;
  serverCpu: number;
  wrkCpu: number;
  scenarios: string[];
}

const USAGE = `Usage: deno run -A bench/server_bench.ts [--scenario ${
  SCENARIOS.map((s) => s.name).join(",")
}]
  [--rounds 5] [--duration 5] [--warmup 2] [--connections 50]
  [--mode pinned|shared] [--threads 1 (pinned) | 2 (shared)]
  [--server-cpu 0] [--wrk-cpu 1]`;

function parseArgs(args: string[]): Options {
  const options: Options = {
    mode: "pinned",
    rounds: 5,
    duration: 5,
    warmup: 2,
    connections: 50,
    threads: 0,
    serverCpu: 0,
    wrkCpu: 1,
    scenarios: SCENARIOS.filter((s) => s.byDefault).map((s) => s.name),
  };
  const limits: Record<string, [keyof Options, number, number]> = {
    "--rounds": ["rounds", 1, 100],
    "--duration": ["duration", 1, 600],
    "--warmup": ["warmup", 0, 600],
    "--connections": ["connections", 1, 10_000],
    "--threads": ["threads", 1, 64],
    "--server-cpu": ["serverCpu", 0, 4095],
    "--wrk-cpu": ["wrkCpu", 0, 4095],
  };
  for (let i = 0; i < args.length; i += 2) {
    const [flag, value] = [args[i], args[i + 1]];
    if (flag === "--help" || flag === "-h") {
      console.log(USAGE);
      Deno.exit(0);
    }
    if (value === undefined) throw new Error(`${flag} needs a value`);
    if (flag === "--scenario") {
      options.scenarios = value.split(",");
      for (const name of options.scenarios) {
        if (!SCENARIOS.some((s) => s.name === name)) {
          throw new Error(`Unknown scenario ${JSON.stringify(name)}`);
        }
      }
    } else if (flag === "--mode") {
      if (value !== "pinned" && value !== "shared") {
        throw new Error("--mode is pinned or shared");
      }
      options.mode = value;
    } else if (flag in limits) {
      const [key, min, max] = limits[flag];
      const number = Number(value);
      if (!Number.isInteger(number) || number < min || number > max) {
        throw new Error(`${flag} needs an integer from ${min} to ${max}`);
      }
      (options[key] as number) = number;
    } else {
      throw new Error(`Unknown option ${JSON.stringify(flag)}`);
    }
  }
  if (options.threads === 0) {
    options.threads = options.mode === "pinned" ? 1 : 2;
  }
  if (options.mode === "pinned" && options.serverCpu === options.wrkCpu) {
    throw new Error("--server-cpu and --wrk-cpu must differ");
  }
  return options;
}

async function findWrk(): Promise<string | null> {
  for (const path of WRK_PATHS) {
    try {
      if ((await Deno.stat(path)).isFile) return path;
    } catch {
      // Not there.
    }
  }
  return null;
}

async function clockTicks(): Promise<number> {
  const { success, stdout } = await new Deno.Command("getconf", {
    args: ["CLK_TCK"],
  }).output();
  const ticks = Number(new TextDecoder().decode(stdout).trim());
  if (!success || !(ticks > 0)) throw new Error("getconf CLK_TCK failed");
  return ticks;
}

/** utime + stime of a process (all its threads), in clock ticks. */
async function cpuTicks(pid: number): Promise<number> {
  const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
  // Fields 3 onwards follow the ")" that closes field 2, the command name.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return Number(fields[14 - 3]) + Number(fields[15 - 3]);
}

/** Busy and total jiffies of one CPU, from its line in `/proc/stat`. */
async function cpuLoad(cpu: number): Promise<{ busy: number; total: number }> {
  const stat = await Deno.readTextFile("/proc/stat");
  const line = new RegExp(`^cpu${cpu} (.*)$`, "m").exec(stat);
  if (line === null) throw new Error(`No CPU ${cpu} in /proc/stat`);
  // user nice system idle iowait irq softirq steal (guest is in user).
  const f = line[1].trim().split(/\s+/).slice(0, 8).map(Number);
  const total = f.reduce((a, b) => a + b, 0);
  return { busy: total - f[3] - f[4], total };
}

/**
 * Check that `child`'s pid is deno itself (not a wrapper) and, pinned, that
 * every one of its threads may run on `cpu` only; describe it.
 */
async function verify(child: Child, cpu: number | null): Promise<string> {
  const pid = child.process.pid;
  const exe = await Deno.realPath(`/proc/${pid}/exe`);
  const deno = await Deno.realPath(Deno.execPath());
  if (exe !== deno) {
    throw new Error(`${child.name}: pid ${pid} runs ${exe}, not ${deno}`);
  }
  const allowed = new Set<string>();
  let threads = 0;
  for await (const task of Deno.readDir(`/proc/${pid}/task`)) {
    try {
      const status = await Deno.readTextFile(
        `/proc/${pid}/task/${task.name}/status`,
      );
      allowed.add(/^Cpus_allowed_list:\s*(\S+)$/m.exec(status)?.[1] ?? "?");
      threads++;
    } catch {
      // The thread ended meanwhile.
    }
  }
  const list = [...allowed].join(" ");
  if (cpu !== null && list !== String(cpu)) {
    throw new Error(`${child.name}: threads allowed on CPUs ${list}`);
  }
  return `pid ${pid} = ${exe}, ${threads} threads, CPUs ${list}`;
}

interface WrkResult {
  rps: number;
  p99ms: number;
  requests: number;
  seconds: number;
  socketErrors: string | null;
}

interface Run extends WrkResult {
  /** The server's CPU time per request, in µs. */
  cpuUs: number;
  /** The server's CPU time over the run's wall time. */
  cpuShare: number;
  /** The other (idle) servers' CPU time over the run's wall time. */
  othersShare: number;
  /**
   * Pinned: the share of the server's CPU that went to processes other than
   * this benchmark's servers (another job on the machine), or `null`.
   */
  foreignShare: number | null;
  /**
   * Pinned: how busy wrk's CPU was (wrk and anything else), or `null`. Near
   * 100% with the server below 90%: the client set the pace.
   */
  clientBusy: number | null;
}

function toMs(value: string, unit: string): number {
  const n = Number(value);
  return unit === "us" ? n / 1000 : unit === "s" ? n * 1000 : n;
}

function toSeconds(value: string, unit: string): number {
  const n = Number(value);
  return unit === "ms" ? n / 1000 : unit === "m" ? n * 60 : n;
}

/** The state to clean up on exit, whatever the cause. */
const running = {
  wrk: null as Deno.ChildProcess | null,
  tempFiles: new Set<string>(),
};

async function cleanup(): Promise<void> {
  try {
    running.wrk?.kill("SIGKILL");
  } catch {
    // Already gone.
  }
  await stopAll();
  for (const file of running.tempFiles) {
    await Deno.remove(file).catch(() => {});
  }
  running.tempFiles.clear();
}

async function runWrk(
  wrk: string,
  port: number,
  options: Options,
  duration: number,
  script: string | null,
): Promise<WrkResult> {
  const args = [
    `-t${options.threads}`,
    `-c${options.connections}`,
    `-d${duration}s`,
    "--latency",
    ...(script === null ? [] : ["-s", script]),
    `http://127.0.0.1:${port}/`,
  ];
  const command = options.mode === "pinned"
    ? ["taskset", "-c", String(options.wrkCpu), wrk, ...args]
    : [wrk, ...args];
  const process = new Deno.Command(command[0], {
    args: command.slice(1),
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  running.wrk = process;
  const timer = setTimeout(() => {
    try {
      process.kill("SIGKILL");
    } catch {
      // Already gone.
    }
  }, duration * 1000 + WRK_GRACE_MS);
  let output: Deno.CommandOutput;
  try {
    output = await process.output();
  } finally {
    clearTimeout(timer);
    running.wrk = null;
  }
  const text = new TextDecoder().decode(output.stdout);
  if (output.code !== 0) {
    throw new Error(
      `wrk failed (${output.code}): ${
        new TextDecoder().decode(output.stderr)
      }${text}`,
    );
  }
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(text);
  const p99 = /\s99%\s+([\d.]+)(us|ms|s)\b/.exec(text);
  const total = /(\d+) requests in ([\d.]+)(ms|s|m)\b/.exec(text);
  const errors = /Non-2xx or 3xx responses: (\d+)/.exec(text);
  const socket = /Socket errors: (.*)/.exec(text);
  if (rps === null || p99 === null || total === null) {
    throw new Error(`Cannot read wrk's output: ${text}`);
  }
  if (errors !== null) throw new Error(`wrk saw errors: ${errors[0]}`);
  return {
    rps: Number(rps[1]),
    p99ms: toMs(p99[1], p99[2]),
    requests: Number(total[1]),
    seconds: toSeconds(total[2], total[3]),
    socketErrors: socket === null ? null : socket[1],
  };
}

/** One wrk run against `target`, with the CPU time of every server. */
async function measure(
  wrk: string,
  target: Child,
  all: Child[],
  options: Options,
  script: string | null,
  ticksPerSecond: number,
): Promise<Run> {
  const cpu = options.mode === "pinned" ? options.serverCpu : null;
  const loadBefore = cpu === null ? null : await cpuLoad(cpu);
  const clientBefore = cpu === null ? null : await cpuLoad(options.wrkCpu);
  const before = await Promise.all(all.map((c) => cpuTicks(c.process.pid)));
  const result = await runWrk(
    wrk,
    target.port,
    options,
    options.duration,
    script,
  );
  const after = await Promise.all(all.map((c) => cpuTicks(c.process.pid)));
  const loadAfter = cpu === null ? null : await cpuLoad(cpu);
  const clientAfter = cpu === null ? null : await cpuLoad(options.wrkCpu);
  let own = 0;
  let others = 0;
  all.forEach((child, i) => {
    const used = (after[i] - before[i]) / ticksPerSecond;
    if (child === target) own = used;
    else others += used;
  });
  if (result.requests === 0) throw new Error(`${target.name}: no requests`);
  let foreignShare: number | null = null;
  if (loadBefore !== null && loadAfter !== null) {
    // /proc/stat counts in the same USER_HZ ticks as /proc/<pid>/stat.
    const total = loadAfter.total - loadBefore.total;
    const busy = (loadAfter.busy - loadBefore.busy) / ticksPerSecond;
    foreignShare = total > 0
      ? Math.max(0, busy - own - others) / (total / ticksPerSecond)
      : 0;
  }
  let clientBusy: number | null = null;
  if (clientBefore !== null && clientAfter !== null) {
    const total = clientAfter.total - clientBefore.total;
    clientBusy = total > 0 ? (clientAfter.busy - clientBefore.busy) / total : 0;
  }
  return {
    foreignShare,
    clientBusy,
    ...result,
    cpuUs: own * 1e6 / result.requests,
    cpuShare: own / result.seconds,
    othersShare: others / result.seconds,
  };
}

/** Check one request's answer before loading a side; return its headers. */
async function probe(child: Child, scenario: Scenario): Promise<string> {
  const init: RequestInit = scenario.lua === undefined
    ? {}
    : { method: "POST", body: new Uint8Array(POST_SIZE) };
  const response = await fetch(`http://127.0.0.1:${child.port}/`, init);
  const text = await response.text();
  if (response.status !== 200 || text !== scenario.expect) {
    throw new Error(
      `${child.name}: ${response.status} ${JSON.stringify(text)}, expected ${
        JSON.stringify(scenario.expect)
      }`,
    );
  }
  const headers: string[] = [];
  response.headers.forEach((value, name) => {
    if (name !== "date" && name !== "content-length" && name !== "vary") {
      headers.push(`${name}: ${value}`);
    }
  });
  return headers.length === 0 ? "(no header)" : headers.join(", ");
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const int = (n: number) => Math.round(n).toLocaleString("en-US");
const pct = (n: number) => `${(n * 100).toFixed(0)}%`;

function describe(run: Run): string {
  return `${int(run.rps).padStart(7)} req/s  p99 ${
    run.p99ms.toFixed(2).padStart(5)
  } ms  ${run.cpuUs.toFixed(1).padStart(5)} CPU-µs/req  server ${
    pct(run.cpuShare).padStart(4)
  } of a CPU, idle sides ${pct(run.othersShare)}${
    run.foreignShare === null ? "" : `, other jobs ${pct(run.foreignShare)}`
  }${run.clientBusy === null ? "" : `; wrk's CPU ${pct(run.clientBusy)} busy`}${
    run.socketErrors === null ? "" : `  socket errors: ${run.socketErrors}`
  }`;
}

async function runScenario(
  wrk: string,
  scenario: Scenario,
  options: Options,
  ticksPerSecond: number,
): Promise<{ met: boolean; clean: boolean }> {
  console.log(`\n== ${scenario.name}: ${scenario.title}`);
  let script: string | null = null;
  if (scenario.lua !== undefined) {
    script = await Deno.makeTempFile({
      prefix: "wsgiref-bench-",
      suffix: ".lua",
    });
    running.tempFiles.add(script);
    await Deno.writeTextFile(script, scenario.lua + "\n");
  }
  const cpu = options.mode === "pinned" ? options.serverCpu : null;
  const children: Child[] = [];
  try {
    for (const name of scenario.sides) {
      children.push(await startServer(name, cpu === null ? {} : { cpu }));
    }
    const width = Math.max(...scenario.sides.map((s) => s.length));
    for (const child of children) {
      console.log(
        `${child.name.padEnd(width)}  ${LABELS[child.name]}; ${await verify(
          child,
          cpu,
        )}; sends ${await probe(child, scenario)}`,
      );
    }
    if (options.warmup > 0) {
      for (const child of children) {
        await runWrk(wrk, child.port, options, options.warmup, script);
        await sleep(SETTLE_MS);
      }
    }
    const runs = new Map<string, Run[]>(scenario.sides.map((s) => [s, []]));
    for (let round = 0; round < options.rounds; round++) {
      for (let j = 0; j < children.length; j++) {
        const child = children[(round + j) % children.length];
        const run = await measure(
          wrk,
          child,
          children,
          options,
          script,
          ticksPerSecond,
        );
        runs.get(child.name)!.push(run);
        console.log(
          `round ${round + 1}/${options.rounds}  ${child.name.padEnd(width)}  ${
            describe(run)
          }`,
        );
        await sleep(SETTLE_MS);
      }
    }
    return report(scenario, runs, options.rounds, width);
  } finally {
    await stopAll();
    if (script !== null) {
      await Deno.remove(script).catch(() => {});
      running.tempFiles.delete(script);
    }
  }
}

function report(
  scenario: Scenario,
  runs: Map<string, Run[]>,
  rounds: number,
  width: number,
): { met: boolean; clean: boolean } {
  console.log(
    `-- ${scenario.name}: medians of ${rounds} rounds\n${
      "side".padEnd(width)
    }    req/s  p99 ms  CPU-µs/req  server CPU  other jobs  wrk's CPU`,
  );
  for (const [name, list] of runs) {
    const m = (f: (r: Run) => number) => median(list.map(f));
    console.log(
      `${name.padEnd(width)}  ${int(m((r) => r.rps)).padStart(7)}  ${
        m((r) => r.p99ms).toFixed(2).padStart(6)
      }  ${m((r) => r.cpuUs).toFixed(1).padStart(10)}  ${
        pct(m((r) => r.cpuShare)).padStart(10)
      }  ${
        list[0].foreignShare === null
          ? "n/a"
          : pct(m((r) => r.foreignShare!)).padStart(10)
      }  ${
        list[0].clientBusy === null
          ? "n/a"
          : pct(m((r) => r.clientBusy!)).padStart(9)
      }`,
    );
  }
  // Pinned, a run is server-bound when the server kept its CPU busy and
  // nothing else ran there.
  const all = [...runs.values()].flat();
  let clean = true;
  if (all[0].foreignShare !== null) {
    const minShare = Math.min(...all.map((r) => r.cpuShare));
    const maxForeign = Math.max(...all.map((r) => r.foreignShare ?? 0));
    clean = minShare >= 0.9 && maxForeign <= 0.05;
    console.log(
      `check: server CPU ≥ ${pct(minShare)} of a CPU in every run${
        minShare < 0.9 ? " (WARNING: below 90%, not server-bound)" : ""
      }; other jobs on the server's CPU ≤ ${pct(maxForeign)}${
        maxForeign > 0.05 ? " (WARNING: the machine was not idle)" : ""
      }${
        minShare < 0.9
          ? `; wrk's CPU busy ${
            all.filter((r) => r.cpuShare < 0.9).map((r) =>
              pct(r.clientBusy ?? 0)
            ).join(" ")
          } in the runs below 90%`
          : ""
      }`,
    );
  }
  let met = true;
  for (const { of, to, target } of scenario.comparisons) {
    const a = runs.get(of)!;
    const b = runs.get(to)!;
    const rps = a.map((r, i) => r.rps / b[i].rps);
    const cpu = a.map((r, i) => r.cpuUs / b[i].cpuUs);
    const ratio = median(rps);
    const ok = target === null || ratio >= target;
    met &&= ok;
    console.log(
      `${of} / ${to}: req/s ${ratio.toFixed(3)} (rounds ${
        rps.map((x) => x.toFixed(2)).join(" ")
      }), CPU-µs/req ${median(cpu).toFixed(3)} (rounds ${
        cpu.map((x) => x.toFixed(2)).join(" ")
      }); ${
        target === null
          ? "no target"
          : `target req/s ≥ ${target.toFixed(2)}: ${ok ? "met" : "NOT met"}${
            clean ? "" : " (unreliable: see check)"
          }`
      }`,
    );
  }
  return { met, clean };
}

async function main(): Promise<number> {
  let options: Options;
  try {
    options = parseArgs(Deno.args);
  } catch (error) {
    console.error(`${(error as Error).message}\n${USAGE}`);
    return 2;
  }
  if (Deno.build.os !== "linux") {
    console.error("server_bench.ts reads /proc: Linux only");
    return 1;
  }
  const wrk = await findWrk();
  if (wrk === null) {
    console.error("wrk is not installed (Debian: apt-get install wrk)");
    return 1;
  }
  if (options.mode === "pinned") {
    if (!(await hasTaskset())) {
      console.error(
        "taskset not found: --mode pinned needs it to pin the server and " +
          "wrk to a CPU each. It is part of util-linux (Debian: apt-get " +
          "install util-linux); or run with --mode shared.",
      );
      return 1;
    }
    if (navigator.hardwareConcurrency < 2) {
      console.error("--mode pinned needs 2 CPUs; use --mode shared");
      return 1;
    }
    // Keep this script's own threads off the server's CPU too.
    const pin = await new Deno.Command("taskset", {
      args: ["-a", "-p", "-c", String(options.wrkCpu), String(Deno.pid)],
      stdout: "null",
      stderr: "piped",
    }).output();
    if (!pin.success) {
      throw new Error(
        `taskset -p failed: ${new TextDecoder().decode(pin.stderr)}`,
      );
    }
  }
  const ticksPerSecond = await clockTicks();
  const scenarios = SCENARIOS.filter((s) => options.scenarios.includes(s.name));
  const runsPerRound = scenarios.reduce((n, s) => n + s.sides.length, 0);
  const estimate = runsPerRound *
    (options.rounds * options.duration + options.warmup);
  console.log(
    `Deno ${Deno.version.deno}, ${navigator.hardwareConcurrency} CPUs, ` +
      `CLK_TCK ${ticksPerSecond}; mode ${options.mode}: ${
        options.mode === "pinned"
          ? `servers on CPU ${options.serverCpu} (taskset -c ${options.serverCpu} deno run -A bench/apps.ts <side> 0), wrk on CPU ${options.wrkCpu} (taskset -c ${options.wrkCpu} wrk`
          : "nothing pinned (wrk"
      } -t${options.threads} -c${options.connections} -d${options.duration}s --latency); ` +
      `warm-up ${options.warmup} s per side, ${options.rounds} rounds, ` +
      `about ${Math.ceil(estimate / 60)} min of load; load average ${
        Deno.loadavg().map((x) => x.toFixed(2)).join(" ")
      }`,
  );
  let allMet = true;
  const unclean: string[] = [];
  for (const scenario of scenarios) {
    const { met, clean } = await runScenario(
      wrk,
      scenario,
      options,
      ticksPerSecond,
    );
    allMet &&= met;
    if (!clean) unclean.push(scenario.name);
  }
  console.log(
    `\nload average after: ${
      Deno.loadavg().map((x) => x.toFixed(2)).join(" ")
    }; targets ${allMet ? "all met" : "NOT all met"}${
      unclean.length === 0
        ? ""
        : ` (unreliable, not server-bound: ${unclean.join(", ")})`
    }`,
  );
  return allMet ? 0 : 1;
}

if (import.meta.main) {
  let stopping = false;
  const onSignal = (signal: Deno.Signal, code: number) => () => {
    if (stopping) return;
    stopping = true;
    console.error(`\n${signal}: stopping the servers`);
    cleanup().finally(() => Deno.exit(code));
  };
  const onInt = onSignal("SIGINT", 130);
  const onTerm = onSignal("SIGTERM", 143);
  Deno.addSignalListener("SIGINT", onInt);
  Deno.addSignalListener("SIGTERM", onTerm);
  try {
    Deno.exitCode = await main();
  } catch (error) {
    // Stopping on a signal kills wrk mid-run: that error is no news.
    if (!stopping) console.error(error);
    Deno.exitCode = 1;
  } finally {
    await cleanup();
    Deno.removeSignalListener("SIGINT", onInt);
    Deno.removeSignalListener("SIGTERM", onTerm);
  }
}
