/**
 * What `CGIHandler` adds to a CGI request: hello programs against a bare
 * `deno run` script that prints the same bytes, all run by the same
 * lighttpd (mod_cgi) in the same run, requests rotating between them:
 * `examples/cgi.ts` as shipped (modules, its `/hi` route), a minimal
 * `CGIHandler` hello as modules, and the same as one file made by
 * `deno bundle --minify` (skipped if `deno bundle` cannot fetch esbuild from
 * npm). All live in the project (the generated ones in `.bench-tmp/`), so
 * all read its `deno.json`, run with the example's permissions and a warm
 * Deno cache (warm-up requests first). Rows marked `--no-lazy` have
 * `--v8-flags=--no-lazy` in their shebang: V8 then compiles every function
 * when the file is first loaded, and Deno's code cache keeps the result,
 * instead of compiling each function on its first call in every process.
 * Prints mean, median and p99 latency for each, the ratios to the bare
 * script, and the median of the per-round differences to it (each round
 * runs every script once, in rotating order, so a burst of load from
 * elsewhere hits all of them). The target: `examples/cgi.ts` within 1.05 of
 * the bare script.
 * The load average is printed before and after: on a busy machine every
 * process gets slower and the ratios grow.
 *
 * ```sh
 * deno run -A bench/cgi_bench.ts            # 200 requests each
 * deno run -A bench/cgi_bench.ts 50         # fewer
 * ```
 *
 * Needs lighttpd (Debian: `apt-get install lighttpd`). Stops after 120 s
 * whatever the count.
 *
 * @module
 */

import { findLighttpd, startLighttpd } from "../tests/fixtures/lighttpd.ts";

const REQUESTS = Number(Deno.args[0] ?? 200);
const WARMUP = 5;
const TIME_CAP_MS = 120_000;

if (!Number.isSafeInteger(REQUESTS) || REQUESTS < 1 || REQUESTS > 10_000) {
  console.error("usage: deno run -A bench/cgi_bench.ts [requests, 1-10000]");
  Deno.exit(2);
}
const lighttpd = findLighttpd();
if (lighttpd === null) {
  console.error("lighttpd not found (Debian: apt-get install lighttpd)");
  Deno.exit(1);
}

const BODY = "Hello world!\n";
// The flags of examples/cgi.ts's shebang, for every script.
const SHEBANG = "#!/usr/bin/env -S deno run --allow-env --allow-read\n";
const EXAMPLE = new URL("../examples/cgi.ts", import.meta.url).pathname;
const handlers = import.meta.resolve("../handlers.ts");

// The same response from both: the library computes Content-Length itself.
const LIBRARY = `${SHEBANG}import { CGIHandler } from ${
  JSON.stringify(handlers)
};

const body = new TextEncoder().encode(${JSON.stringify(BODY)});
await new CGIHandler().run((_environ, startResponse) => {
  startResponse("200 OK", [["Content-Type", "text/plain"]]);
  return [body];
});
`;
const BARE = `${SHEBANG}Deno.stdout.writeSync(new TextEncoder().encode(
  ${
  JSON.stringify(
    `Status: 200 OK\r\nContent-Type: text/plain\r\nContent-Length: ${BODY.length}\r\n\r\n${BODY}`,
  )
},
));
`;

// Beside examples/cgi.ts in the project (the git-ignored .bench-tmp/), so
// that every script reads the same deno.json, as a deployment reads its own.
const benchTmp = new URL("../.bench-tmp/", import.meta.url).pathname;
await Deno.mkdir(benchTmp, { recursive: true });
const dir = await Deno.makeTempDir({ dir: benchTmp, prefix: "cgi-" });
const scripts: Record<string, string> = {
  bare: `${dir}/bare.ts`,
  example: EXAMPLE,
  library: `${dir}/library.ts`,
};
/** What each script is asked for: the example answers hello at /hello. */
const PATHS: Record<string, string> = {
  example: "/hi",
  exampleNoLazy: "/hi",
};
await Deno.writeTextFile(scripts.bare, BARE, { mode: 0o755 });
await Deno.writeTextFile(scripts.library, LIBRARY, { mode: 0o755 });
// The same program as one minified file (the shebang is kept).
const bundled = await new Deno.Command(Deno.execPath(), {
  args: ["bundle", "--minify", "-o", `${dir}/bundled.js`, scripts.library],
  stdout: "null",
  stderr: "piped",
}).output();
if (bundled.success) {
  scripts.bundled = `${dir}/bundled.js`;
  await Deno.chmod(scripts.bundled, 0o755);
} else {
  console.warn(
    "deno bundle failed, so no bundled row:",
    new TextDecoder().decode(bundled.stderr).trim(),
  );
}
// The same two programs compiled eagerly. Separate files: Deno caches the
// compiled code per file, and V8 refuses code cached under other flags.
const NO_LAZY = "#!/usr/bin/env -S deno run --allow-env --v8-flags=--no-lazy\n";
const withNoLazy = async (name: string, path: string) => {
  const source = await Deno.readTextFile(scripts[name]);
  await Deno.writeTextFile(path, NO_LAZY + source.replace(/^#!.*\n/, ""), {
    mode: 0o755,
  });
  scripts[`${name}NoLazy`] = path;
};
await withNoLazy("bare", `${dir}/bare_no_lazy.ts`);
// In .bench-tmp/, the example still finds @wsgi/wsgiref/* through deno.json.
await withNoLazy("example", `${dir}/example_no_lazy.ts`);
if (scripts.bundled) await withNoLazy("bundled", `${dir}/bundled_no_lazy.js`);
const names = Object.keys(scripts);
const host = await startLighttpd(lighttpd, {
  aliases: Object.fromEntries(
    // lighttpd matches aliases by prefix: "/bare" would catch "/bareNoLazy".
    names.map((name) => [`/${name}.cgi`, scripts[name]]),
  ),
});

async function request(path: string): Promise<[number, string]> {
  const start = performance.now();
  const response = await fetch(host.base + path);
  const text = await response.text();
  const elapsed = performance.now() - start;
  if (response.status !== 200 || text !== BODY) {
    throw new Error(`${path}: unexpected ${response.status} ${text}`);
  }
  return [elapsed, response.headers.get("content-type") ?? ""];
}

function stats(samples: number[]) {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (q: number) =>
    sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)];
  const mean = sorted.reduce((sum, x) => sum + x, 0) / sorted.length;
  return { mean, median: at(0.5), p99: at(0.99) };
}

const samples: Record<string, number[]> = Object.fromEntries(
  names.map((name) => [name, []]),
);
const loadBefore = Deno.loadavg();
try {
  // Warm up: Deno's transpile and code caches, lighttpd, the connection.
  for (let i = 0; i < WARMUP; i++) {
    const types = new Set<string>();
    for (const name of names) {
      types.add((await request(`/${name}.cgi${PATHS[name] ?? ""}`))[1]);
    }
    if (types.size !== 1) throw new Error("different responses");
  }
  const deadline = performance.now() + TIME_CAP_MS;
  for (let i = 0; i < REQUESTS && performance.now() < deadline; i++) {
    // Rotate which goes first, so that none always follows another.
    for (let j = 0; j < names.length; j++) {
      const name = names[(i + j) % names.length];
      const [elapsed] = await request(`/${name}.cgi${PATHS[name] ?? ""}`);
      samples[name].push(elapsed);
    }
  }
} finally {
  await host.stop();
  await Deno.remove(dir, { recursive: true });
}
const loadAfter = Deno.loadavg();

const LABELS: Record<string, string> = {
  bare: "bare script",
  example: "examples/cgi.ts",
  exampleNoLazy: "example, --no-lazy",
  library: "CGIHandler, modules",
  bundled: "CGIHandler, bundled",
  bareNoLazy: "bare, --no-lazy",
  bundledNoLazy: "bundled, --no-lazy",
};
const bare = stats(samples.bare);
const ms = (x: number) => x.toFixed(2).padStart(8) + " ms";
const ratio = (x: number) => x.toFixed(3).padStart(11);
const load = (l: number[]) => l.map((x) => x.toFixed(2)).join(" ");
console.log(
  `CGI hello through lighttpd, ${samples.bare.length} requests each (Deno ${Deno.version.deno}, ${navigator.hardwareConcurrency} CPUs)`,
);
console.log(
  `load average before: ${load(loadBefore)}, after: ${load(loadAfter)}`,
);
console.log(
  "                         mean      median         p99   mean ratio median ratio  paired diff",
);
for (const name of names) {
  const s = stats(samples[name]);
  // Per round, this script's time minus the bare script's.
  const diff = stats(samples[name].map((x, i) => x - samples.bare[i]));
  console.log(
    `${LABELS[name].padEnd(20)} ${ms(s.mean)} ${ms(s.median)} ${ms(s.p99)} ${
      ratio(s.mean / bare.mean)
    } ${ratio(s.median / bare.median)} ${ms(diff.median)}`,
  );
}
console.log("target: examples/cgi.ts's ratio <= 1.05");
