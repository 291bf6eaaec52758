/**
 * Server-bound load with `wrk`, shared by `bench/server_bench.ts` and
 * `bench/fastcgi_bench.ts`: the options, the machine line, the rounds, the
 * CPU accounting, the report and its targets.
 *
 * Method (the default, `--mode pinned`): every backend runs in a process
 * group of its own (`bench/_child.ts`), pinned to one CPU (`taskset -c
 * 0`, all its threads and forked workers); `wrk -t1` runs pinned to the
 * other (`taskset -c 1`), as do this script and, for FastCGI, nginx; so the
 * backend, not the client, sets the pace. Before the load, each side is
 * checked: every thread of every process in its group may run on the
 * backend CPU only, and one request answers the expected body. Then each
 * side gets `--warmup` s of load, and `--rounds` rounds follow: every side
 * loaded once per round for `--duration` s, the order rotating from round
 * to round, so that a burst of load from elsewhere hits all of them. For
 * each run: requests/s, wrk's p99 latency, and the backend's CPU time per
 * request: utime + stime (+ cutime + cstime) of every process of its group
 * in `/proc/<pid>/stat`, read just before and just after the run, over the
 * requests wrk completed; also the share of a CPU the backend used (near
 * 100% when server-bound), what the idle sides and other jobs used on its
 * CPU meanwhile, and how busy the client's CPU was. Then the medians, and
 * each ratio as the median of its per-round ratios, against its target.
 * `--mode shared` pins nothing (wrk `-t2`; client-bound when the server is
 * fast).
 *
 * @module
 */

import {
  type Child,
  groupPids,
  groupTicks,
  hasTaskset,
  stopAll,
} from "./_child.ts";

const WRK_PATHS = ["/usr/bin/wrk", "/usr/local/bin/wrk"];
const SETTLE_MS = 200;
const WRK_GRACE_MS = 30_000;

/** The options every load benchmark takes. */
export interface LoadOptions {
  mode: "pinned" | "shared";
  rounds: number;
  duration: number;
  warmup: number;
  connections: number;
  threads: number;
  serverCpu: number;
  wrkCpu: number;
  scenarios: string[];
  /** Whether missing peers are installed (`apt-get`); `--no-install`. */
  install: boolean;
  /** Numeric options of one benchmark alone, by name without `--`. */
  extra: Record<string, number>;
}

/** What `parseLoadArgs` knows of one benchmark. */
export interface LoadCommand {
  /** `deno run -A bench/<file>`. */
  file: string;
  scenarios: { name: string; byDefault: boolean }[];
  /** Its own numeric options: name → [default, min, max]. */
  extra?: Record<string, [number, number, number]>;
}

/** The usage line of a benchmark. */
function usage(command: LoadCommand): string {
  const extra = Object.entries(command.extra ?? {}).map(([name, [value]]) =>
    `[--${name} ${value}]`
  ).join(" ");
  return `Usage: deno run -A bench/${command.file} [--scenario ${
    command.scenarios.map((s) => s.name).join(",")
  }]
  [--rounds 3] [--duration 5] [--warmup 2] [--connections 50]
  [--mode pinned|shared] [--threads 1 (pinned) | 2 (shared)]
  [--server-cpu 0] [--wrk-cpu 1] [--no-install]${extra ? `\n  ${extra}` : ""}`;
}

/** Parse the command line; throws an `Error` to print with the usage. */
function parseLoadArgs(
  args: string[],
  command: LoadCommand,
): LoadOptions {
  const options: LoadOptions = {
    mode: "pinned",
    rounds: 3,
    duration: 5,
    warmup: 2,
    connections: 50,
    threads: 0,
    serverCpu: 0,
    wrkCpu: 1,
    scenarios: command.scenarios.filter((s) => s.byDefault).map((s) => s.name),
    install: true,
    extra: {},
  };
  const limits: Record<string, [string, number, number]> = {
    "--rounds": ["rounds", 1, 100],
    "--duration": ["duration", 1, 600],
    "--warmup": ["warmup", 0, 600],
    "--connections": ["connections", 1, 10_000],
    "--threads": ["threads", 1, 64],
    "--server-cpu": ["serverCpu", 0, 4095],
    "--wrk-cpu": ["wrkCpu", 0, 4095],
  };
  for (const [name, [value, min, max]] of Object.entries(command.extra ?? {})) {
    options.extra[name] = value;
    limits[`--${name}`] = [name, min, max];
  }
  for (let i = 0; i < args.length; i += 2) {
    const [flag, value] = [args[i], args[i + 1]];
    if (flag === "--help" || flag === "-h") {
      console.log(usage(command));
      Deno.exit(0);
    }
    if (flag === "--no-install") {
      options.install = false;
      i--;
      continue;
    }
    if (value === undefined) throw new Error(`${flag} needs a value`);
    if (flag === "--scenario") {
      options.scenarios = value.split(",");
      for (const name of options.scenarios) {
        if (!command.scenarios.some((s) => s.name === name)) {
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
      if (key in options.extra) options.extra[key] = number;
      else (options[key as keyof LoadOptions] as number) = number;
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

/** The CPU model, from `/proc/cpuinfo`. */
async function cpuModel(): Promise<string> {
  try {
    const info = await Deno.readTextFile("/proc/cpuinfo");
    return /^model name\s*:\s*(.+)$/m.exec(info)?.[1].trim() ?? "unknown CPU";
  } catch {
    return "unknown CPU";
  }
}

/** The load average, three figures. */
export function loadAverage(): string {
  return Deno.loadavg().map((x) => x.toFixed(2)).join(" ");
}

/**
 * When and where the figures were taken: the date (UTC), the CPU model,
 * the CPU count (as `nproc`), the kernel, Deno, the load average.
 */
export async function machine(): Promise<string> {
  return `${
    new Date().toISOString()
  }; ${await cpuModel()}, nproc ${navigator.hardwareConcurrency}; ${Deno.build.os} ${Deno.osRelease()}; Deno ${Deno.version.deno}, V8 ${Deno.version.v8}; load average ${loadAverage()}`;
}

/** wrk's path, or `null` when it is not installed. */
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

/** `getconf CLK_TCK`: the unit of the CPU times in `/proc`. */
async function clockTicks(): Promise<number> {
  const { success, stdout } = await new Deno.Command("getconf", {
    args: ["CLK_TCK"],
  }).output();
  const ticks = Number(new TextDecoder().decode(stdout).trim());
  if (!success || !(ticks > 0)) throw new Error("getconf CLK_TCK failed");
  return ticks;
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

/** Pin every thread of process `pid` to `cpu` (`taskset -a -p`): one CPU,
 * or a list such as `0-1`. */
export async function pin(pid: number, cpu: number | string): Promise<void> {
  const result = await new Deno.Command("taskset", {
    args: ["-a", "-p", "-c", String(cpu), String(pid)],
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!result.success) {
    throw new Error(
      `taskset -p ${pid} failed: ${new TextDecoder().decode(result.stderr)}`,
    );
  }
}

/**
 * Check that every thread of every process of the child's group may run on
 * `cpu` only (when pinned); describe the group.
 */
async function verify(child: Child, cpu: number | null): Promise<string> {
  const pids = await groupPids(child.group);
  if (pids.length === 0) throw new Error(`${child.name}: no process left`);
  const allowed = new Set<string>();
  const programs = new Set<string>();
  let threads = 0;
  for (const pid of pids) {
    try {
      programs.add((await Deno.readLink(`/proc/${pid}/exe`)).split("/").pop()!);
      for await (const task of Deno.readDir(`/proc/${pid}/task`)) {
        const status = await Deno.readTextFile(
          `/proc/${pid}/task/${task.name}/status`,
        );
        allowed.add(/^Cpus_allowed_list:\s*(\S+)$/m.exec(status)?.[1] ?? "?");
        threads++;
      }
    } catch {
      // The process or thread ended meanwhile.
    }
  }
  const list = [...allowed].join(" ");
  if (cpu !== null && list !== String(cpu)) {
    throw new Error(`${child.name}: threads allowed on CPUs ${list}`);
  }
  return `group ${child.group}: ${pids.length} process${
    pids.length === 1 ? "" : "es"
  } (${[...programs].join(", ")}), ${threads} threads, CPUs ${list}`;
}

/** One side of a comparison: a backend and the URL wrk loads it through. */
export interface Side {
  name: string;
  /** What it is, in a few words. */
  label: string;
  /** The backend whose CPU time is measured. */
  child: Child;
  /** What wrk loads: the backend itself, or nginx in front of it. */
  url: string;
}

interface WrkResult {
  rps: number;
  p99ms: number;
  requests: number;
  seconds: number;
  socketErrors: string | null;
}

/** One wrk run against one side. */
export interface Run extends WrkResult {
  /** The backend's CPU time per request, in µs. */
  cpuUs: number;
  /** The backend's CPU time over the run's wall time. */
  cpuShare: number;
  /** The other (idle) backends' CPU time over the run's wall time. */
  othersShare: number;
  /**
   * Pinned: the share of the backend's CPU that went to processes other
   * than this benchmark's backends (another job on the machine), or `null`.
   */
  foreignShare: number | null;
  /**
   * Pinned: how busy wrk's CPU was (wrk, nginx and anything else), or
   * `null`. Near 100% with the backend below 90%: the client set the pace.
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
  cleanups: [] as (() => Promise<unknown>)[],
};

/**
 * Run `cleanup` when the benchmark ends, whatever the cause; or sooner,
 * through the function returned, which runs it now (once) instead.
 */
export function onExit(
  cleanup: () => Promise<unknown>,
): () => Promise<void> {
  running.cleanups.push(cleanup);
  return async () => {
    const at = running.cleanups.indexOf(cleanup);
    if (at < 0) return;
    running.cleanups.splice(at, 1);
    await cleanup();
  };
}

/** A temporary file with `text`, removed when the benchmark ends. */
export async function tempFile(text: string, suffix: string): Promise<string> {
  const path = await Deno.makeTempFile({ prefix: "wsgiref-bench-", suffix });
  running.tempFiles.add(path);
  await Deno.writeTextFile(path, text);
  return path;
}

async function cleanup(): Promise<void> {
  try {
    running.wrk?.kill("SIGKILL");
  } catch {
    // Already gone.
  }
  await stopAll();
  for (const done of running.cleanups.splice(0).reverse()) {
    await done().catch((error) => console.error(error));
  }
  for (const file of running.tempFiles) {
    await Deno.remove(file).catch(() => {});
  }
  running.tempFiles.clear();
}

/** Run wrk against `url` for `duration` s; throws on non-2xx answers. */
export async function runWrk(
  wrk: string,
  url: string,
  options: LoadOptions,
  duration: number,
  script: string | null,
): Promise<WrkResult> {
  const args = [
    `-t${options.threads}`,
    `-c${options.connections}`,
    `-d${duration}s`,
    "--latency",
    ...(script === null ? [] : ["-s", script]),
    url,
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

/** One wrk run against `target`, with the CPU time of every backend. */
async function measure(
  wrk: string,
  target: Side,
  all: Side[],
  options: LoadOptions,
  script: string | null,
  ticksPerSecond: number,
): Promise<Run> {
  const cpu = options.mode === "pinned" ? options.serverCpu : null;
  const loadBefore = cpu === null ? null : await cpuLoad(cpu);
  const clientBefore = cpu === null ? null : await cpuLoad(options.wrkCpu);
  const before = await groupTicks();
  const result = await runWrk(
    wrk,
    target.url,
    options,
    options.duration,
    script,
  );
  const after = await groupTicks();
  const loadAfter = cpu === null ? null : await cpuLoad(cpu);
  const clientAfter = cpu === null ? null : await cpuLoad(options.wrkCpu);
  let own = 0;
  let others = 0;
  // Sides may share a backend (two nginx locations, one gateway): count
  // each group once.
  for (const group of new Set(all.map((side) => side.child.group))) {
    const used = ((after.get(group) ?? 0) - (before.get(group) ?? 0)) /
      ticksPerSecond;
    if (group === target.child.group) own = used;
    else others += used;
  }
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

/** What a side must answer, checked once before the load. */
export interface Expect {
  body: string;
  init?: RequestInit;
}

/** Check one request's answer before loading a side; return its headers. */
async function probe(side: Side, expect: Expect): Promise<string> {
  const response = await fetch(side.url, expect.init);
  const text = await response.text();
  if (response.status !== 200 || text !== expect.body) {
    throw new Error(
      `${side.name}: ${response.status} ${JSON.stringify(text)}, expected ${
        JSON.stringify(expect.body)
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

/** The median of `values`. */
export function median(values: number[]): number {
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
  } ms  ${run.cpuUs.toFixed(1).padStart(5)} CPU-µs/req  backend ${
    pct(run.cpuShare).padStart(4)
  } of a CPU, idle sides ${pct(run.othersShare)}${
    run.foreignShare === null ? "" : `, other jobs ${pct(run.foreignShare)}`
  }${run.clientBusy === null ? "" : `; wrk's CPU ${pct(run.clientBusy)} busy`}${
    run.socketErrors === null ? "" : `  socket errors: ${run.socketErrors}`
  }`;
}

/**
 * Check every side (pinning, answer), warm each up, then load them in
 * rotating rounds; every run is printed as it ends.
 */
export async function loadSides(
  wrk: string,
  sides: Side[],
  options: LoadOptions,
  expect: Expect,
  script: string | null,
  ticksPerSecond: number,
): Promise<Map<string, Run[]>> {
  const cpu = options.mode === "pinned" ? options.serverCpu : null;
  const width = Math.max(...sides.map((s) => s.name.length));
  for (const side of sides) {
    console.log(
      `${side.name.padEnd(width)}  ${side.label}; ${await verify(
        side.child,
        cpu,
      )}; sends ${await probe(side, expect)}`,
    );
  }
  if (options.warmup > 0) {
    for (const side of sides) {
      await runWrk(wrk, side.url, options, options.warmup, script);
      await sleep(SETTLE_MS);
    }
  }
  const runs = new Map<string, Run[]>(sides.map((s) => [s.name, []]));
  for (let round = 0; round < options.rounds; round++) {
    for (let j = 0; j < sides.length; j++) {
      const side = sides[(round + j) % sides.length];
      const run = await measure(
        wrk,
        side,
        sides,
        options,
        script,
        ticksPerSecond,
      );
      runs.get(side.name)!.push(run);
      console.log(
        `round ${round + 1}/${options.rounds}  ${side.name.padEnd(width)}  ${
          describe(run)
        }`,
      );
      await sleep(SETTLE_MS);
    }
  }
  return runs;
}

/** A ratio printed: `of` over `to`, in CPU time per request and req/s. */
export interface Comparison {
  of: string;
  to: string;
  /**
   * What the target bounds: `"cpu"`, CPU-µs/req of `of` over `to`, at most
   * `target`; `"rps"`, req/s of `of` over `to`, at least `target`.
   */
  metric: "cpu" | "rps";
  /** The bound, or `null` when the ratio only informs. */
  target: number | null;
  /** A goal beyond the targets: reported, never fails the run. */
  stretch?: boolean;
}

/** What a report concluded. */
export interface Verdict {
  /** Every target met (stretch goals and unjudged ones aside). */
  met: boolean;
  /** Both sides of every target ratio server-bound, on a quiet CPU. */
  clean: boolean;
  /** Targets that could not be judged: a side was not running. */
  unjudged: string[];
}

/** Print the medians, the check, and the ratios against their targets. */
export function report(
  title: string,
  runs: Map<string, Run[]>,
  comparisons: Comparison[],
  rounds: number,
): Verdict {
  const width = Math.max(4, ...[...runs.keys()].map((s) => s.length));
  console.log(
    `-- ${title}: medians of ${rounds} rounds\n${
      "side".padEnd(width)
    }    req/s  p99 ms  CPU-µs/req  backend CPU  other jobs  wrk's CPU`,
  );
  for (const [name, list] of runs) {
    const m = (f: (r: Run) => number) => median(list.map(f));
    console.log(
      `${name.padEnd(width)}  ${int(m((r) => r.rps)).padStart(7)}  ${
        m((r) => r.p99ms).toFixed(2).padStart(6)
      }  ${m((r) => r.cpuUs).toFixed(1).padStart(10)}  ${
        pct(m((r) => r.cpuShare)).padStart(11)
      }  ${
        list[0].foreignShare === null
          ? "n/a".padStart(10)
          : pct(m((r) => r.foreignShare!)).padStart(10)
      }  ${
        list[0].clientBusy === null
          ? "n/a".padStart(9)
          : pct(m((r) => r.clientBusy!)).padStart(9)
      }`,
    );
  }
  // Pinned, a run is server-bound when the backend kept its CPU busy and
  // nothing else ran there.
  const all = [...runs.values()].flat();
  if (all.length > 0 && all[0].foreignShare !== null) {
    const minShare = Math.min(...all.map((r) => r.cpuShare));
    const maxForeign = Math.max(...all.map((r) => r.foreignShare ?? 0));
    console.log(
      `check: backend CPU ≥ ${pct(minShare)} of a CPU in every run${
        minShare < 0.9 ? " (WARNING: below 90%, not server-bound)" : ""
      }; other jobs on the backend's CPU ≤ ${pct(maxForeign)}${
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
  // A ratio is only as sound as its two sides: a peer that cannot keep a
  // CPU busy (it closes every connection, so the client sets the pace)
  // marks its own ratios, not every ratio of the run.
  const bound = (list: Run[]) =>
    list.every((r) =>
      r.foreignShare === null || (r.cpuShare >= 0.9 && r.foreignShare <= 0.05)
    );
  let met = true;
  let clean = true;
  const unjudged: string[] = [];
  for (const { of, to, metric, target, stretch } of comparisons) {
    const a = runs.get(of);
    const b = runs.get(to);
    const goal = target === null
      ? "no target"
      : `${stretch ? "stretch" : "target"} ${
        metric === "cpu" ? "CPU-µs/req ≤" : "req/s ≥"
      } ${target.toFixed(2)}`;
    if (a === undefined || b === undefined) {
      const missing = a === undefined ? of : to;
      console.log(`${of} / ${to}: ${goal}: not judged, ${missing} not run`);
      if (target !== null && !stretch) unjudged.push(`${of} / ${to}`);
      continue;
    }
    const rps = a.map((r, i) => r.rps / b[i].rps);
    const cpu = a.map((r, i) => r.cpuUs / b[i].cpuUs);
    const ratio = median(metric === "cpu" ? cpu : rps);
    const ok = target === null ||
      (metric === "cpu" ? ratio <= target : ratio >= target);
    const sound = bound(a) && bound(b);
    if (!stretch) met &&= ok;
    if (target !== null && !stretch) clean &&= sound;
    console.log(
      `${of} / ${to}: CPU-µs/req ${median(cpu).toFixed(3)} (rounds ${
        cpu.map((x) => x.toFixed(2)).join(" ")
      }), req/s ${median(rps).toFixed(3)} (rounds ${
        rps.map((x) => x.toFixed(2)).join(" ")
      }); ${goal}${
        target === null
          ? ""
          : `: ${ok ? "met" : "NOT met"}${
            sound
              ? ""
              : " (unreliable: a side below 90% or not alone, see check)"
          }`
      }`,
    );
  }
  return { met, clean, unjudged };
}

/** Print the closing line of a benchmark; its exit code. */
export function conclude(verdicts: [string, Verdict][]): number {
  const met = verdicts.every(([, v]) => v.met);
  const unclean = verdicts.filter(([, v]) => !v.clean).map(([name]) => name);
  const unjudged = verdicts.flatMap(([, v]) => v.unjudged);
  console.log(
    `\n${
      new Date().toISOString()
    }: load average after ${loadAverage()}; targets ${
      met ? "all met" : "NOT all met"
    }${unjudged.length === 0 ? "" : `; not judged: ${unjudged.join(", ")}`}${
      unclean.length === 0
        ? ""
        : ` (unreliable, not server-bound: ${unclean.join(", ")})`
    }`,
  );
  return met ? 0 : 1;
}

/** What `prepare` gives a benchmark's `main`. */
export interface Prepared {
  options: LoadOptions;
  wrk: string;
  ticksPerSecond: number;
}

/**
 * Parse the command line and check what the load needs (Linux, wrk and,
 * pinned, taskset and 2 CPUs; this script is then pinned to the client's
 * CPU); on a failure, print why and return the exit code.
 */
export async function prepare(
  command: LoadCommand,
): Promise<Prepared | number> {
  let options: LoadOptions;
  try {
    options = parseLoadArgs(Deno.args, command);
  } catch (error) {
    console.error(`${(error as Error).message}\n${usage(command)}`);
    return 2;
  }
  if (Deno.build.os !== "linux") {
    console.error(`${command.file} reads /proc: Linux only`);
    return 1;
  }
  const wrk = await findWrk();
  if (wrk === null) {
    console.error("wrk is not installed (Debian: apt-get install wrk)");
    return 1;
  }
  const refused = await preparePinned(options);
  if (refused !== null) {
    console.error(refused);
    return 1;
  }
  return { options, wrk, ticksPerSecond: await clockTicks() };
}

/**
 * Check what pinned mode needs (taskset, 2 CPUs) and pin this script to
 * the client's CPU; an error message, or `null`.
 */
async function preparePinned(options: LoadOptions): Promise<string | null> {
  if (options.mode !== "pinned") return null;
  if (!(await hasTaskset())) {
    return "taskset not found: --mode pinned needs it to pin the backend " +
      "and wrk to a CPU each. It is part of util-linux (Debian: apt-get " +
      "install util-linux); or run with --mode shared.";
  }
  if (navigator.hardwareConcurrency < 2) {
    return "--mode pinned needs 2 CPUs; use --mode shared";
  }
  // Keep this script's own threads off the backend's CPU too.
  await pin(Deno.pid, options.wrkCpu);
  return null;
}

/**
 * Run a benchmark's `main`: stop every server, wrk and temp file on
 * success, on error and on SIGINT/SIGTERM; set the exit code.
 */
export async function runBenchmark(main: () => Promise<number>): Promise<void> {
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
