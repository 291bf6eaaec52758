/**
 * Load `makeServer` against raw `Deno.serve` with `wrk`, in one run:
 *
 * ```sh
 * deno run -A bench/server_bench.ts [--rounds 3] [--duration 5]
 *   [--connections 50] [--threads 2] [--scenario hello|post]
 * ```
 *
 * Each scenario starts its two servers (`bench/apps.ts`), each in a process
 * of its own on 127.0.0.1, warms both up, then loads them in turn, A then B,
 * for `--rounds` rounds, and prints each side's median requests/s and p99
 * latency and the ratio B/A against the target:
 *
 * - `hello`: `GET /`, "Hello world!"; raw `Deno.serve` against the same
 *   application through `makeServer`. Target: B/A ≥ 0.90.
 * - `post`: `POST /` with 64 KiB, read whole by both. Target: B/A ≥ 0.85.
 * - `hello-bare`: as `hello`, with a `ServerHandler` that sends no `Server`
 *   header (`serverSoftware = null`). No target: it shows what that one
 *   header costs, since it takes `Deno.serve` off its fast path for a
 *   response whose only header is `Content-Type`.
 * - `hello-same-work`: as `hello`, against a raw handler that also reads
 *   what every environ needs (target, headers, peer address) and sends the
 *   same headers (`Server`, `Content-Type`). No target: it shows what the
 *   adapter itself costs.
 *
 * Needs `wrk` (Debian: `apt-get install wrk`). The access log is off
 * (`quiet: true`), as a raw server has none.
 *
 * @module
 */

import { startServer, stopServer } from "./_child.ts";

const WRK_PATHS = ["/usr/bin/wrk", "/usr/local/bin/wrk"];

interface Scenario {
  name: string;
  a: string;
  b: string;
  /** The least B/A, or `null` for a scenario that only informs. */
  target: number | null;
  lua?: string;
}

const SCENARIOS: Scenario[] = [
  { name: "hello", a: "raw-hello", b: "wsgi-hello", target: 0.9 },
  {
    name: "post",
    a: "raw-post",
    b: "wsgi-post",
    target: 0.85,
    lua: [
      'wrk.method = "POST"',
      'wrk.body = string.rep("x", 65536)',
      'wrk.headers["Content-Type"] = "application/octet-stream"',
    ].join("\n"),
  },
  { name: "hello-bare", a: "raw-hello", b: "wsgi-hello-bare", target: null },
  {
    name: "hello-same-work",
    a: "raw-hello-same-work",
    b: "wsgi-hello",
    target: null,
  },
];

interface Options {
  rounds: number;
  duration: number;
  connections: number;
  threads: number;
  scenarios: string[];
}

function parseArgs(args: string[]): Options {
  const options: Options = {
    rounds: 3,
    duration: 5,
    connections: 50,
    threads: 2,
    scenarios: SCENARIOS.map((s) => s.name),
  };
  for (let i = 0; i < args.length; i += 2) {
    const [flag, value] = [args[i], args[i + 1]];
    const number = Number(value);
    switch (flag) {
      case "--rounds":
        options.rounds = number;
        break;
      case "--duration":
        options.duration = number;
        break;
      case "--connections":
        options.connections = number;
        break;
      case "--threads":
        options.threads = number;
        break;
      case "--scenario":
        options.scenarios = value.split(",");
        break;
      default:
        throw new Error(`Unknown option ${JSON.stringify(flag)}`);
    }
    if (flag !== "--scenario" && !(number > 0)) {
      throw new Error(`${flag} needs a positive number`);
    }
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

interface WrkResult {
  rps: number;
  p99ms: number;
}

function toMs(value: string, unit: string): number {
  const n = Number(value);
  return unit === "us" ? n / 1000 : unit === "s" ? n * 1000 : n;
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
  const { code, stdout, stderr } = await new Deno.Command(wrk, { args })
    .output();
  const text = new TextDecoder().decode(stdout);
  if (code !== 0) {
    throw new Error(`wrk failed: ${new TextDecoder().decode(stderr)}`);
  }
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(text);
  const p99 = /\s99%\s+([\d.]+)(us|ms|s)\b/.exec(text);
  const errors = /Non-2xx or 3xx responses: (\d+)/.exec(text);
  if (rps === null || p99 === null) throw new Error(`Cannot read: ${text}`);
  if (errors !== null) throw new Error(`wrk saw errors: ${errors[0]}`);
  return { rps: Number(rps[1]), p99ms: toMs(p99[1], p99[2]) };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

async function runScenario(
  wrk: string,
  scenario: Scenario,
  options: Options,
): Promise<boolean> {
  let script: string | null = null;
  if (scenario.lua !== undefined) {
    script = await Deno.makeTempFile({
      prefix: "wsgiref-bench-",
      suffix: ".lua",
    });
    await Deno.writeTextFile(script, scenario.lua + "\n");
  }
  const a = await startServer(scenario.a);
  const b = await startServer(scenario.b);
  try {
    // Warm up both (JIT, connection pools).
    await runWrk(wrk, a.port, options, 2, script);
    await runWrk(wrk, b.port, options, 2, script);
    const results: { a: WrkResult[]; b: WrkResult[] } = { a: [], b: [] };
    for (let round = 1; round <= options.rounds; round++) {
      const ra = await runWrk(wrk, a.port, options, options.duration, script);
      const rb = await runWrk(wrk, b.port, options, options.duration, script);
      results.a.push(ra);
      results.b.push(rb);
      console.log(
        `  round ${round}: ${scenario.a} ${ra.rps.toFixed(0)} req/s ` +
          `p99 ${ra.p99ms.toFixed(2)} ms | ${scenario.b} ${
            rb.rps.toFixed(0)
          } req/s p99 ${rb.p99ms.toFixed(2)} ms | ratio ${
            (rb.rps / ra.rps).toFixed(3)
          }`,
      );
    }
    const rpsA = median(results.a.map((r) => r.rps));
    const rpsB = median(results.b.map((r) => r.rps));
    const ratio = median(results.a.map((r, i) => results.b[i].rps / r.rps));
    const target = scenario.target;
    const met = target === null || ratio >= target;
    console.log(
      `${scenario.name}: ${scenario.a} ${rpsA.toFixed(0)} req/s p99 ${
        median(results.a.map((r) => r.p99ms)).toFixed(2)
      } ms; ${scenario.b} ${rpsB.toFixed(0)} req/s p99 ${
        median(results.b.map((r) => r.p99ms)).toFixed(2)
      } ms; ratio ${ratio.toFixed(3)} (${
        target === null
          ? "no target"
          : `target ${target}: ${met ? "met" : "NOT met"}`
      })`,
    );
    return met;
  } finally {
    await stopServer(a);
    await stopServer(b);
    if (script !== null) await Deno.remove(script);
  }
}

if (import.meta.main) {
  const wrk = await findWrk();
  if (wrk === null) {
    console.error("wrk is not installed: apt-get install wrk");
    Deno.exit(1);
  }
  const options = parseArgs(Deno.args);
  console.log(
    `wrk -t${options.threads} -c${options.connections}, ${options.rounds} rounds of ${options.duration} s per side, ` +
      `Deno ${Deno.version.deno}, ${navigator.hardwareConcurrency} CPUs`,
  );
  let allMet = true;
  for (const scenario of SCENARIOS) {
    if (!options.scenarios.includes(scenario.name)) continue;
    allMet = (await runScenario(wrk, scenario, options)) && allMet;
  }
  Deno.exitCode = allMet ? 0 : 1;
}
