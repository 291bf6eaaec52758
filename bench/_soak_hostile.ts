/**
 * `deno task soak --hostile`: the attacks of issue 15 against each server
 * while ordinary traffic goes on, one after the other, in a bounded time
 * (about three minutes):
 *
 * ```sh
 * deno task soak --hostile [--only NAME]
 * ```
 *
 * Each server runs in a process of its own (`bench/_soak_server.ts
 * --hostile`, with `--fastcgi` for the gateway), with the default limits
 * but for the shorter times and disk budget of `HOSTILE_LIMITS`. For each
 * attack it prints what the attacker saw (connections the server closed,
 * requests it refused), the ordinary requests sent meanwhile (four
 * clients, one request at a time each; FastCGI ones on a new connection
 * each, as nginx without `keepalive`) with their latency against a
 * baseline taken before any attack, and the server's descriptors, memory
 * (`VmRSS`, after a garbage collection) and spool files (open descriptors
 * of its temporary directory: spooled bodies are unlinked at once) before,
 * at their peak during, and after the attack.
 *
 * An attack fails when an ordinary request fails or takes more than 5 s,
 * when descriptors, spool files or memory do not return to their level
 * before it (memory: within `RSS_SLACK_MIB`), when the server is down
 * after it, or when the server did not defend itself as it must (say,
 * kept an idle connection past its idle timeout). The run exits with 1
 * if any attack failed.
 *
 * Needs Linux (`/proc`).
 *
 * @module
 */

import { HOSTILE_LIMITS, spawnSoakServer } from "./_soak_server.ts";
import {
  beginRequest,
  encodePairs,
  FCGI,
  FcgiClient,
  getParams,
  join,
  parseCgi,
  record,
  requestRecords,
  stream,
} from "../tests/fixtures/fcgi_client.ts";
import { within } from "../tests/fixtures/process.ts";

const MIB = 1024 * 1024;
const ENCODER = new TextEncoder();
const DECODER = new TextDecoder();
/** An ordinary request slower than this has failed. */
const ORDINARY_TIMEOUT_MS = 5000;
/** How much higher `VmRSS` may stay after an attack than before it: the
 * allocator and V8 keep some of what they grew to. */
const RSS_SLACK_MIB = 48;
/** How long the server gets to return to its level after an attack. */
const SETTLE_MS = 15_000;

type Kind = "http" | "fastcgi";

/** A server under attack, in its own process. */
interface Target {
  kind: Kind;
  pid: number;
  port: number;
  tempDir: string;
  stderr: string[];
  stop(): Promise<void>;
}

async function startTarget(kind: Kind): Promise<Target> {
  const tempDir = await Deno.makeTempDir({
    prefix: `wsgiref-hostile-${kind}-`,
  });
  const server = await spawnSoakServer([
    "--temp-dir",
    tempDir,
    "--hostile",
    ...(kind === "fastcgi" ? ["--fastcgi"] : []),
  ]);
  return {
    ...server,
    kind,
    tempDir,
    stop: async () => {
      await server.stop();
      await Deno.remove(tempDir, { recursive: true }).catch(() => {});
    },
  };
}

/** Resolve after `ms`. */
function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// ---------------------------------------------------------------------------
// Requests.

/**
 * A GET of `path` through the target: status and body. Over HTTP, through
 * `client` (its kept connections are the caller's to close), else through
 * a client of its own, closed after.
 */
async function get(
  target: Target,
  path: string,
  client?: Deno.HttpClient,
): Promise<{ status: number; body: string }> {
  if (target.kind === "http") {
    const own = client ?? Deno.createHttpClient({});
    try {
      const response = await fetch(`http://127.0.0.1:${target.port}${path}`, {
        signal: AbortSignal.timeout(ORDINARY_TIMEOUT_MS),
        client: own,
      });
      return { status: response.status, body: await response.text() };
    } finally {
      if (client === undefined) own.close();
    }
  }
  const host = await FcgiClient.connect({
    hostname: "127.0.0.1",
    port: target.port,
  });
  try {
    const response = await within(
      host.request(getParams(path)),
      ORDINARY_TIMEOUT_MS,
      `the answer to GET ${path}`,
    );
    const cgi = parseCgi(response.stdout);
    return {
      status: Number(cgi.status.split(" ")[0]),
      body: DECODER.decode(cgi.body),
    };
  } finally {
    host.close();
  }
}

/** The target's control route, as JSON. */
async function control(target: Target, path: string): Promise<unknown> {
  const { status, body } = await get(target, path);
  if (status !== 200) throw new Error(`${path}: ${status}`);
  return JSON.parse(body);
}

/** Ordinary requests, `workers` at a time, until `stop()`. */
class Traffic {
  readonly latencies: number[] = [];
  readonly failures: string[] = [];
  #running = true;
  #done: Promise<void>;

  constructor(target: Target, workers = 4) {
    // Its kept connections are closed with it, so that they are not
    // counted as the server's after an attack.
    const client = Deno.createHttpClient({});
    const worker = async () => {
      while (this.#running) {
        const start = performance.now();
        try {
          const { status, body } = await get(target, "/", client);
          const ms = performance.now() - start;
          if (status !== 200 || body !== "Hello world!") {
            this.failures.push(
              `${status} ${JSON.stringify(body.slice(0, 60))}`,
            );
          } else this.latencies.push(ms);
        } catch (error) {
          this.failures.push(
            error instanceof Error ? error.message : String(error),
          );
        }
        await pause(10);
      }
    };
    this.#done = Promise.all(Array.from({ length: workers }, worker))
      .then(() => client.close());
  }

  async stop(): Promise<this> {
    this.#running = false;
    await this.#done;
    return this;
  }

  summary(): string {
    const sorted = [...this.latencies].sort((a, b) => a - b);
    const at = (q: number) =>
      sorted.length === 0 ? "-" : String(Math.round(
        sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))],
      ));
    return `${at(0.5)}/${at(0.99)}/${
      sorted.length === 0 ? "-" : Math.round(sorted.at(-1)!)
    }`;
  }
}

// ---------------------------------------------------------------------------
// The server's resources.

interface Sample {
  fds: number;
  /** `VmRSS`, MiB. */
  rss: number;
  /** Open descriptors of files in its temporary directory, and their
   * bytes. */
  spools: number;
  spoolBytes: number;
}

async function sample(target: Target): Promise<Sample> {
  let fds = 0;
  let spools = 0;
  let spoolBytes = 0;
  for await (const entry of Deno.readDir(`/proc/${target.pid}/fd`)) {
    fds++;
    try {
      const path = `/proc/${target.pid}/fd/${entry.name}`;
      if ((await Deno.readLink(path)).startsWith(target.tempDir + "/")) {
        spools++;
        spoolBytes += (await Deno.stat(path)).size;
      }
    } catch {
      // Closed meanwhile.
    }
  }
  const status = await Deno.readTextFile(`/proc/${target.pid}/status`);
  const rss = Number(/^VmRSS:\s+(\d+) kB$/m.exec(status)![1]) / 1024;
  return { fds, rss, spools, spoolBytes };
}

/** After a garbage collection; again until descriptors and spool files
 * are down to `base` (or `waitMs` have passed). */
async function settle(
  target: Target,
  base: Sample | null,
  waitMs: number,
): Promise<Sample> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    // The control request opens a connection of its own: read after it.
    await control(target, "/__soak/gc");
    await pause(300);
    const now = await sample(target);
    if (
      base === null || Date.now() > deadline ||
      (now.fds <= base.fds && now.spools === 0 &&
        now.rss <= base.rss + RSS_SLACK_MIB)
    ) return now;
    await pause(700);
  }
}

/** Whether the server's process is there and answers. */
async function isUp(target: Target): Promise<boolean> {
  try {
    await Deno.stat(`/proc/${target.pid}`);
    return (await get(target, "/")).status === 200;
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------
// Attacker tools.

/** A raw TCP connection to the target, and when the server closed it. */
class Raw {
  conn: Deno.TcpConn | null = null;
  /** When the server closed it (ms since the attack began), or null. */
  closedAt: number | null = null;
  /** Records or bytes read from it. */
  read = 0;
  #watch: Promise<void> | null = null;

  static async open(port: number): Promise<Raw> {
    const raw = new Raw();
    try {
      raw.conn = await Deno.connect({ hostname: "127.0.0.1", port });
    } catch {
      raw.closedAt = 0;
    }
    return raw;
  }

  /** Read (and discard) until the server closes it. */
  watch(t0: number, onBytes?: (bytes: Uint8Array) => void): void {
    const conn = this.conn;
    if (conn === null) return;
    this.#watch = (async () => {
      const buffer = new Uint8Array(64 * 1024);
      try {
        for (;;) {
          const n = await conn.read(buffer);
          if (n === null) break;
          this.read += n;
          onBytes?.(buffer.subarray(0, n));
        }
      } catch {
        // Reset, or closed here.
      }
      this.closedAt ??= performance.now() - t0;
    })();
  }

  async send(bytes: Uint8Array): Promise<boolean> {
    if (this.conn === null || this.closedAt !== null) return false;
    try {
      for (let at = 0; at < bytes.length;) {
        at += await this.conn.write(bytes.subarray(at));
      }
      return true;
    } catch {
      return false;
    }
  }

  /** Close it from this side, if the server has not. */
  async close(): Promise<void> {
    const closed = this.closedAt !== null;
    if (!closed) this.closedAt = Infinity;
    try {
      this.conn?.close();
    } catch {
      // Closed already.
    }
    await this.#watch;
  }
}

/** Open `count` connections, a few hundred at a time. */
async function openMany(port: number, count: number): Promise<Raw[]> {
  const all: Raw[] = [];
  for (let i = 0; i < count; i += 200) {
    all.push(
      ...await Promise.all(
        Array.from(
          { length: Math.min(200, count - i) },
          () => Raw.open(port),
        ),
      ),
    );
  }
  return all;
}

/** Wait until every connection is closed by the server, or `ms` passed. */
async function untilClosed(conns: Raw[], ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline && conns.some((c) => c.closedAt === null)) {
    await pause(100);
  }
}

/** How the server closed `conns`: how many, and when. */
function closings(conns: Raw[]): string {
  const times = conns.map((c) => c.closedAt).filter((t): t is number =>
    t !== null && t !== Infinity
  ).sort((a, b) => a - b);
  if (times.length === 0) return `none of ${conns.length} closed by the server`;
  const s = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
  return `${times.length} of ${conns.length} closed by the server (first at ${
    s(times[0])
  }, median ${s(times[Math.floor(times.length / 2)])}, last at ${
    s(times.at(-1)!)
  })`;
}

/** Counts FastCGI answers in the bytes of a connection. */
class AnswerCounter {
  ends = 0;
  busy = 0;
  #pending = new Uint8Array(0);

  feed(bytes: Uint8Array): void {
    let data = this.#pending.length === 0 ? bytes : join(this.#pending, bytes);
    let at = 0;
    while (data.length - at >= 8) {
      const length = data[at + 4] << 8 | data[at + 5];
      const total = 8 + length + data[at + 6];
      if (data.length - at < total) break;
      const type = data[at + 1];
      if (type === FCGI.END_REQUEST) this.ends++;
      if (
        type === FCGI.STDOUT && length > 12 &&
        DECODER.decode(data.subarray(at + 8, at + 20)) === "Status: 503 "
      ) this.busy++;
      at += total;
    }
    data = data.subarray(at);
    this.#pending = data.slice();
  }
}

// ---------------------------------------------------------------------------
// The attacks.

/** What an attack reports: lines for the log, and what went wrong. */
interface AttackResult {
  notes: string[];
  problems: string[];
}

interface Attack {
  name: string;
  kind: Kind;
  what: string;
  run(target: Target): Promise<AttackResult>;
}

const IDLE_WAIT_MS = HOSTILE_LIMITS.idleTimeout + 5000;

/** The parameters of a POST to `/upload` of `length` bytes. */
function postParams(length: number): Record<string, string> {
  return {
    ...getParams("/upload"),
    REQUEST_METHOD: "POST",
    CONTENT_LENGTH: String(length),
  };
}

/**
 * On `connections` connections, `perConnection` requests each whose
 * `part(id)` is sent and whose end never is; the answers counted. Held
 * until the server closes every connection, or `holdMs`.
 */
async function unfinished(
  target: Target,
  connections: number,
  perConnection: number,
  part: (id: number) => Uint8Array,
  holdMs: number,
): Promise<{ conns: Raw[]; answers: AnswerCounter; sent: number }> {
  const t0 = performance.now();
  const conns = await openMany(target.port, connections);
  const answers = new AnswerCounter();
  for (const conn of conns) conn.watch(t0, (bytes) => answers.feed(bytes));
  let sent = 0;
  await Promise.all(conns.map(async (conn) => {
    for (let id = 1; id <= perConnection; id++) {
      if (!(await conn.send(part(id)))) return;
      sent++;
    }
  }));
  await untilClosed(conns, holdMs);
  return { conns, answers, sent };
}

function closedAll(conns: Raw[], what: string, problems: string[]): void {
  const open = conns.filter((c) => c.closedAt === null).length;
  if (open > 0) problems.push(`${open} ${what} still open when given up`);
}

/** Requests whose bodies of `size` bytes are all sent but for their end,
 * `perConnection` on each of `connections` connections. */
async function bodiesAttack(
  target: Target,
  connections: number,
  perConnection: number,
  size: number,
): Promise<AttackResult> {
  const body = new Uint8Array(size).fill(0x61);
  const params = encodePairs(postParams(size + MIB));
  const { conns, answers, sent } = await unfinished(
    target,
    connections,
    perConnection,
    (id) =>
      join(
        beginRequest(id, { keepConn: true }),
        stream(FCGI.PARAMS, id, params),
        stream(FCGI.STDIN, id, body).subarray(0, -8),
      ),
    HOSTILE_LIMITS.readTimeout + 20_000,
  );
  const problems: string[] = [];
  closedAll(conns, "connections", problems);
  if (answers.busy === 0) problems.push("nothing refused past the budgets");
  await Promise.all(conns.map((c) => c.close()));
  return {
    notes: [
      `${sent} sent, ${answers.busy} refused with 503 (memoryBudget 64 MiB, diskBudget ${
        HOSTILE_LIMITS.diskBudget / MIB
      } MiB); ${closings(conns)}`,
    ],
    problems,
  };
}

/**
 * 50 connections that send `bytes` one a time, 100 ms apart, and 50 that
 * send its first 3 bytes, then nothing. Held until the server closes
 * them all (`mustClose`: each one it keeps is a problem), or for 6 s.
 */
async function slowDrip(
  target: Target,
  bytes: Uint8Array,
  mustClose: boolean,
): Promise<AttackResult> {
  const t0 = performance.now();
  const drips = await openMany(target.port, 50);
  const stalls = await openMany(target.port, 50);
  const all = [...drips, ...stalls];
  for (const conn of all) conn.watch(t0);
  for (const conn of stalls) await conn.send(bytes.subarray(0, 3));
  let stop = false;
  const dripping = Promise.all(drips.map(async (conn) => {
    for (let i = 0; i < bytes.length && !stop; i++) {
      if (!(await conn.send(bytes.subarray(i, i + 1)))) return;
      await pause(100);
    }
  }));
  if (mustClose) await untilClosed(all, IDLE_WAIT_MS);
  else await pause(6000);
  stop = true;
  const problems: string[] = [];
  if (mustClose) {
    closedAll(drips, "dripping connections", problems);
    closedAll(stalls, "stalled connections", problems);
  }
  await Promise.all(all.map((c) => c.close()));
  await dripping;
  return {
    notes: [
      `dripping (${bytes.length} bytes): ${closings(drips)}`,
      `3 bytes then nothing: ${closings(stalls)}`,
    ],
    problems,
  };
}

const ATTACKS: Attack[] = [
  {
    name: "idle-connections",
    kind: "fastcgi",
    what: "1,100 TCP connections that send nothing",
    async run(target) {
      const t0 = performance.now();
      const conns = await openMany(target.port, 1100);
      for (const conn of conns) conn.watch(t0);
      await untilClosed(conns, IDLE_WAIT_MS);
      const problems: string[] = [];
      closedAll(conns, "idle connections", problems);
      await Promise.all(conns.map((c) => c.close()));
      return { notes: [closings(conns)], problems };
    },
  },
  {
    name: "slow-drip",
    kind: "fastcgi",
    what:
      "50 connections dripping a request 1 byte per 100 ms, 50 sending 3 bytes of a header then nothing",
    run: (target) =>
      slowDrip(target, requestRecords(getParams("/slow-drip")), true),
  },
  {
    name: "request-slots",
    kind: "fastcgi",
    what: "1,024 BEGIN_REQUESTs on one connection, never finished",
    async run(target) {
      const params = encodePairs(getParams("/slot"));
      const { conns, answers, sent } = await unfinished(
        target,
        1,
        1024,
        (id) =>
          join(
            beginRequest(id, { keepConn: true }),
            record(FCGI.PARAMS, id, params),
          ),
        IDLE_WAIT_MS,
      );
      const problems: string[] = [];
      closedAll(conns, "connections", problems);
      if (answers.busy !== sent - 64) {
        problems.push(`${answers.busy} refused, not ${sent - 64}`);
      }
      await Promise.all(conns.map((c) => c.close()));
      return {
        notes: [
          `${sent} sent, ${answers.busy} refused with 503 + OVERLOADED; ${
            closings(conns)
          }`,
        ],
        problems,
      };
    },
  },
  {
    name: "bodies-in-memory",
    kind: "fastcgi",
    what:
      "16 connections x 64 unfinished requests with 1 MiB of STDIN each (1 GiB)",
    run: (target) => bodiesAttack(target, 16, 64, MIB),
  },
  {
    name: "params-in-memory",
    kind: "fastcgi",
    what:
      "16 connections x 64 unfinished requests with 250 KiB of PARAMS each (250 MiB)",
    async run(target) {
      const pad = "x".repeat(250 * 1024);
      const { conns, answers, sent } = await unfinished(
        target,
        16,
        64,
        (id) =>
          join(
            beginRequest(id, { keepConn: true }),
            stream(
              FCGI.PARAMS,
              id,
              encodePairs(getParams("/params", { HTTP_X_PAD: pad })),
            ).subarray(0, -8),
          ),
        HOSTILE_LIMITS.readTimeout + 20_000,
      );
      const problems: string[] = [];
      closedAll(conns, "connections", problems);
      await Promise.all(conns.map((c) => c.close()));
      return {
        notes: [
          `${sent} sent, ${answers.busy} refused with 503 (memoryBudget 64 MiB); ${
            closings(conns)
          }`,
        ],
        problems,
      };
    },
  },
  {
    name: "bodies-on-disk",
    kind: "fastcgi",
    what: "4 connections x 25 unfinished requests with 5 MiB of STDIN each",
    run: (target) => bodiesAttack(target, 4, 25, 5 * MIB),
  },
  {
    name: "idle-connections",
    kind: "http",
    what: "1,100 TCP connections that send nothing, held 6 s",
    async run(target) {
      const t0 = performance.now();
      const conns = await openMany(target.port, 1100);
      for (const conn of conns) conn.watch(t0);
      await pause(6000);
      await Promise.all(conns.map((c) => c.close()));
      return { notes: [closings(conns)], problems: [] };
    },
  },
  {
    name: "slow-drip",
    kind: "http",
    what:
      "50 connections dripping a request head 1 byte per 100 ms, 50 sending 3 bytes then nothing, held 6 s",
    run: (target) =>
      slowDrip(
        target,
        ENCODER.encode(
          `GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: ${
            "y".repeat(200)
          }\r\n\r\n`,
        ),
        false,
      ),
  },
  {
    name: "hung-apps",
    kind: "http",
    what:
      "300 requests to an app that never returns and 300 to a stream that never ends, clients leaving after 200 ms",
    async run(target) {
      const before = (await control(target, "/__soak/report") as {
        counters: Record<string, number>;
      }).counters;
      const client = Deno.createHttpClient({});
      const leave = async (path: string) => {
        try {
          const response = await fetch(
            `http://127.0.0.1:${target.port}${path}`,
            { signal: AbortSignal.timeout(200), client },
          );
          await response.body?.cancel();
        } catch {
          // Gone, as intended.
        }
      };
      for (let batch = 0; batch < 6; batch++) {
        await Promise.all(
          Array.from({ length: 50 }, () => leave("/hang")),
        );
        await Promise.all(
          Array.from({ length: 50 }, () => leave("/hang-stream")),
        );
      }
      client.close();
      await pause(1000);
      const after = (await control(target, "/__soak/report") as {
        counters: Record<string, number>;
      }).counters;
      const streams = after.hangStreams - before.hangStreams;
      const closes = after.hangStreamCloses - before.hangStreamCloses;
      const problems = closes === streams
        ? []
        : [`${closes} close() calls for ${streams} streams`];
      return {
        notes: [
          `${
            after.hangs - before.hangs
          } hung apps, ${streams} hung streams, ${closes} close() calls`,
        ],
        problems,
      };
    },
  },
];

// ---------------------------------------------------------------------------
// The run.

/** One line of resource figures: before -> peak during -> after. */
function resources(before: Sample, peak: Sample, after: Sample): string {
  const mib = (n: number) => n.toFixed(0);
  return `fds ${before.fds} -> ${peak.fds} -> ${after.fds}; VmRSS MiB ${
    mib(before.rss)
  } -> ${mib(peak.rss)} -> ${
    mib(after.rss)
  }; spool files ${before.spools} -> ${peak.spools} (${
    mib(peak.spoolBytes / MIB)
  } MiB) -> ${after.spools}`;
}

async function runAttack(
  attack: Attack,
  target: Target,
  baseline: Traffic,
): Promise<boolean> {
  console.log(`${attack.kind} ${attack.name}: ${attack.what}`);
  const before = await settle(target, null, 0);
  const peak = { ...before };
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      const now = await sample(target).catch(() => null);
      if (now !== null) {
        peak.fds = Math.max(peak.fds, now.fds);
        peak.rss = Math.max(peak.rss, now.rss);
        if (now.spoolBytes >= peak.spoolBytes) {
          peak.spools = now.spools;
          peak.spoolBytes = now.spoolBytes;
        }
      }
      await pause(250);
    }
  })();
  const traffic = new Traffic(target);
  let result: AttackResult;
  try {
    result = await attack.run(target);
  } catch (error) {
    result = { notes: [], problems: [`the attack failed: ${error}`] };
  }
  await traffic.stop();
  sampling = false;
  await sampler;
  const after = await settle(target, before, SETTLE_MS);
  const up = await isUp(target);
  const problems = [...result.problems];
  if (traffic.failures.length > 0) {
    problems.push(
      `${traffic.failures.length} ordinary requests failed (first: ${
        traffic.failures[0]
      })`,
    );
  }
  if (after.fds > before.fds) problems.push("descriptors not back");
  if (after.spools > 0) problems.push("spool files not back");
  if (after.rss > before.rss + RSS_SLACK_MIB) problems.push("memory not back");
  if (!up) problems.push("the server is down");
  for (const note of result.notes) console.log(`  attacker: ${note}`);
  console.log(
    `  ordinary: ${traffic.latencies.length} of ${
      traffic.latencies.length + traffic.failures.length
    } served, latency ms p50/p99/max ${traffic.summary()} (baseline ${baseline.summary()})`,
  );
  console.log(
    `  ${resources(before, peak, after)}; server up: ${up ? "yes" : "NO"}`,
  );
  console.log(
    problems.length === 0 ? "  ok" : `  FAILED: ${problems.join("; ")}`,
  );
  return problems.length === 0;
}

/**
 * Run every attack (or those named `only`) against each server.
 *
 * @param args The command line after `--hostile`.
 * @returns The exit code: 0, or 1 when an attack failed.
 */
export async function hostileMain(args: string[]): Promise<number> {
  const at = args.indexOf("--only");
  const only = at >= 0 ? args[at + 1] : null;
  // Every wait is bounded; this bounds the whole run too, whatever hangs.
  const limit = 10 * 60_000;
  Deno.unrefTimer(setTimeout(() => {
    console.error(
      `soak --hostile: FAILED: still running after ${limit / 1000} s`,
    );
    Deno.exit(3);
  }, limit));
  const started = Date.now();
  let failed = 0;
  let ran = 0;
  for (const kind of ["fastcgi", "http"] as const) {
    const attacks = ATTACKS.filter((a) =>
      a.kind === kind && (only === null || a.name === only)
    );
    if (attacks.length === 0) continue;
    const target = await startTarget(kind);
    try {
      console.log(
        `${kind}: server pid ${target.pid} on port ${target.port}; limits: ${
          kind === "fastcgi"
            ? `idleTimeout ${HOSTILE_LIMITS.idleTimeout} ms, readTimeout ${HOSTILE_LIMITS.readTimeout} ms, diskBudget ${
              HOSTILE_LIMITS.diskBudget / MIB
            } MiB, the other defaults`
            : `requestTimeout ${HOSTILE_LIMITS.requestTimeout} ms, maxBodySize 16 MiB, the other defaults`
        }`,
      );
      await settle(target, null, 0);
      const baseline = new Traffic(target);
      await pause(3000);
      await baseline.stop();
      console.log(
        `  baseline: ${baseline.latencies.length} ordinary requests in 3 s, ${baseline.failures.length} failed, latency ms p50/p99/max ${baseline.summary()}`,
      );
      for (const attack of attacks) {
        ran++;
        if (!(await runAttack(attack, target, baseline))) failed++;
      }
      const stderr = target.stderr.join("");
      if (stderr !== "") {
        console.log(
          `  server stderr (first 1000 chars): ${stderr.slice(0, 1000)}`,
        );
      }
      if (kind === "fastcgi") {
        const report = await control(target, "/__soak/report") as {
          limitLogs: Record<string, number>;
        };
        console.log(
          `  the gateway's log lines about its limits: ${
            Object.entries(report.limitLogs).map(([k, n]) => `${n} x "${k}"`)
              .join(", ")
          }`,
        );
      }
    } finally {
      await target.stop();
    }
  }
  console.log(
    `soak --hostile: ${ran - failed} of ${ran} attacks ok in ${
      Math.round((Date.now() - started) / 1000)
    } s${failed > 0 ? ": FAILED" : ""}`,
  );
  return failed > 0 || ran === 0 ? 1 : 0;
}
