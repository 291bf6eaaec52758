/**
 * The FastCGI gateway behind real hosts: lighttpd (`mod_fastcgi`, to the
 * gateway's Unix socket) and nginx (`fastcgi_pass` to an upstream of kept
 * connections, over TCP), each started on 127.0.0.1 with a generated config
 * and stopped in the same test. The gateway runs in this process, serving
 * the test application wrapped in `validator()` (but for the routes that try
 * to inject headers, which the validator would refuse before the handler
 * does).
 *
 * Without lighttpd or nginx (Debian: `apt-get install lighttpd nginx`) the
 * host's test is ignored, unless `WSGIREF_REQUIRE_LIGHTTPD=1` or
 * `WSGIREF_REQUIRE_NGINX=1` (then it fails).
 */

import assert from "node:assert/strict";
import { FastCGIServer } from "../fastcgi.ts";
import { validator } from "../validate.ts";
import { decodeLatin1, encodeLatin1 } from "../_internal.ts";
import type { Application } from "../types.ts";
import {
  adler32,
  type AppStats,
  makeTestApp,
  PATTERN,
} from "./fixtures/fastcgi_app.ts";
import {} from "./fixtures/fcgi_client.ts";
import {
  fdsUnder,
  socketsAt,
  socketsOnPort,
  waitFor,
} from "./fixtures/process.ts";
import { findLighttpd, startLighttpd } from "./fixtures/lighttpd.ts";
import { FASTCGI_PARAMS, findNginx, startNginx } from "./fixtures/nginx.ts";

const MIB = 1024 * 1024;
const ERROR_BODY =
  "A server error occurred.  Please contact the administrator.";
const decoder = new TextDecoder();

const LIGHTTPD = findLighttpd();
const NGINX = findNginx();
const REQUIRE_LIGHTTPD = Deno.env.get("WSGIREF_REQUIRE_LIGHTTPD") === "1";
const REQUIRE_NGINX = Deno.env.get("WSGIREF_REQUIRE_NGINX") === "1";
for (
  const [name, found, required, variable] of [
    ["lighttpd", LIGHTTPD, REQUIRE_LIGHTTPD, "WSGIREF_REQUIRE_LIGHTTPD"],
    ["nginx", NGINX, REQUIRE_NGINX, "WSGIREF_REQUIRE_NGINX"],
  ] as const
) {
  if (found === null) {
    console.warn(
      required
        ? `${name} not found, and ${variable}=1: its FastCGI host test fails`
        : `${name} not found (apt-get install ${name}): its FastCGI host test is ignored`,
    );
  }
}

/** A gateway that keeps its log lines. */
class LoggedServer extends FastCGIServer {
  lines: string[] = [];
  override logMessage(message: string, address = "-"): void {
    this.lines.push(`${address} ${message}`);
  }
}

/** The test app, validated except where it breaks the rules on purpose. */
function hostApp(): { app: Application; stats: AppStats } {
  const { app, stats } = makeTestApp();
  const validated = validator(app);
  const unchecked = /^\/(inject-|not-latin1|hop-by-hop)/;
  return {
    app: (environ, startResponse) =>
      unchecked.test(String(environ.PATH_INFO ?? ""))
        ? app(environ, startResponse)
        : validated(environ, startResponse),
    stats,
  };
}

/** Send raw bytes, read until the host closes the connection. */
async function rawRequest(port: number, request: string): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    const bytes = encodeLatin1(request);
    for (let at = 0; at < bytes.length;) {
      at += await conn.write(bytes.subarray(at));
    }
    let out = "";
    const buffer = new Uint8Array(64 * 1024);
    for (;;) {
      const n = await conn.read(buffer);
      if (n === null) break;
      out += decodeLatin1(buffer.subarray(0, n));
    }
    return out;
  } finally {
    conn.close();
  }
}

/** The body of a raw response, as UTF-8 text. */
function rawBody(response: string): string {
  const body = response.slice(response.indexOf("\r\n\r\n") + 4);
  return decoder.decode(encodeLatin1(body));
}

interface Host {
  name: string;
  port: number;
  base: string;
  errorLog(): Promise<string>;
}

interface Expected {
  /** QUERY_STRING of a raw `?x=\xc3\xa9`: lighttpd percent-encodes it. */
  rawQuery: string;
  /** Whether the host keeps FastCGI connections for further requests. */
  keepsConnections: boolean;
}

/** Every check through one host. */
async function throughHost(
  t: Deno.TestContext,
  host: Host,
  gateway: LoggedServer,
  stats: AppStats,
  expected: Expected,
): Promise<void> {
  const get = async (path: string, init?: RequestInit) => {
    const response = await fetch(host.base + path, init);
    return { response, text: await response.text() };
  };
  const env = async (path: string) => JSON.parse((await get(path)).text);

  await t.step(
    "a query string; SCRIPT_NAME and PATH_INFO as the host splits them",
    async () => {
      const { response, text } = await get(
        "/app/env/hello/world?a=1&b=%C3%A9&c",
      );
      assert.equal(response.status, 200);
      assert.equal(response.headers.get("content-type"), "application/json");
      const environ = JSON.parse(text);
      assert.deepEqual(
        [
          environ.REQUEST_METHOD,
          environ.SCRIPT_NAME,
          environ.PATH_INFO,
          environ.QUERY_STRING,
          environ.REQUEST_URI,
          environ.SERVER_PROTOCOL,
        ],
        [
          "GET",
          "/app",
          "/env/hello/world",
          "a=1&b=%C3%A9&c",
          "/app/env/hello/world?a=1&b=%C3%A9&c",
          "HTTP/1.1",
        ],
      );
      assert.equal(environ["wsgi.url_scheme"], "http");
      assert.equal(environ["wsgi.run_once"], false);
      assert.equal(environ["wsgi.multiprocess"], true);
      assert.equal((await get("/app")).text, "Hello \n");
      assert.equal((await get("/app/")).text, "Hello /\n");
    },
  );

  await t.step(
    "non-ASCII paths arrive as latin-1 strings of their bytes",
    async () => {
      assert.equal(
        (await env("/app/env/caf%C3%A9")).PATH_INFO,
        "/env/caf\xc3\xa9",
      );
      assert.equal((await env("/app/env/caf%E9")).PATH_INFO, "/env/caf\xe9");
      // Raw UTF-8 bytes in the request target, which fetch would encode.
      const raw = await rawRequest(
        host.port,
        "GET /app/env/\xe6\x97\xa5?x=\xc3\xa9 HTTP/1.0\r\nHost: test\r\n\r\n",
      );
      assert.match(raw, /^HTTP\/1\.[01] 200 OK\r\n/);
      const environ = JSON.parse(rawBody(raw));
      assert.equal(environ.PATH_INFO, "/env/\xe6\x97\xa5");
      assert.equal(environ.QUERY_STRING, expected.rawQuery);
      assert.equal(environ.REQUEST_URI, "/app/env/\xe6\x97\xa5?x=\xc3\xa9");
      assert.equal(environ.SERVER_PROTOCOL, "HTTP/1.0");
    },
  );

  await t.step("POST 8 MiB, spooled, read through wsgi.input", async () => {
    const body = new Uint8Array(8 * MIB).map((_, i) => i * 31 + (i >> 12));
    const { response, text } = await get("/app/echo", {
      method: "POST",
      body,
    });
    assert.equal(response.status, 200);
    assert.deepEqual(JSON.parse(text), {
      length: 8 * MIB,
      adler32: adler32(body),
    });
    await waitFor(
      () => fdsUnder(gateway.tempDir!) === 0,
      "the spool file closed",
    );
  });

  await t.step("a streamed 20 MiB response", async () => {
    const size = 20 * MIB;
    const response = await fetch(`${host.base}/app/stream?bytes=${size}`);
    assert.equal(response.status, 200);
    assert.equal(response.headers.get("content-length"), String(size));
    let offset = 0;
    let mismatch = -1;
    for await (const chunk of response.body!) {
      for (let i = 0; i < chunk.length && mismatch < 0; i++) {
        if (chunk[i] !== PATTERN[(offset + i) % 251]) mismatch = offset + i;
      }
      offset += chunk.length;
    }
    assert.equal(mismatch, -1);
    assert.equal(offset, size);
  });

  await t.step("an async generator", async () => {
    const { response, text } = await get("/app/async?n=5");
    assert.equal(response.status, 200);
    assert.equal(text, "line 1\nline 2\nline 3\nline 4\nline 5\n");
  });

  await t.step(
    "an app that throws: the 500 page, the stack in the host's error log",
    async () => {
      const { response, text } = await get("/app/error");
      assert.equal(response.status, 500);
      assert.equal(response.headers.get("content-type"), "text/plain");
      assert.equal(text, ERROR_BODY);
      assert.match(
        await host.errorLog(),
        /Error: The \/error route always fails\n.*\s+at app \(file:\/\/\/.*fastcgi_app\.ts:\d+:\d+\)/,
      );
    },
  );

  await t.step(
    "an app that throws after a chunk: the client sees a cut response",
    async () => {
      const response = await fetch(`${host.base}/app/error-late`);
      assert.equal(response.status, 200);
      await assert.rejects(response.text());
      assert.match(
        await host.errorLog(),
        /Error: The \/error-late route fails after a chunk/,
      );
    },
  );

  await t.step("wsgi.errors lines go to the host's error log", async () => {
    assert.equal((await get("/app/stderr")).text, "ok");
    const log = await host.errorLog();
    assert.match(log, /first line from the app/);
    assert.match(log, /second line from the app/);
  });

  for (
    const [route, refused] of [
      ["inject-status", "a status with CR LF"],
      ["inject-value", "a header value with CR LF"],
      ["inject-name", "a header name with CR LF"],
      ["inject-later", "a line added to the list after startResponse"],
      ["not-latin1", "a header value above latin-1"],
      ["hop-by-hop", "a hop-by-hop header"],
    ]
  ) {
    await t.step(`the app cannot inject headers: ${refused}`, async () => {
      const raw = await rawRequest(
        host.port,
        `GET /app/${route} HTTP/1.0\r\nHost: test\r\n\r\n`,
      );
      const end = raw.indexOf("\r\n\r\n");
      const head = raw.slice(0, end);
      assert.match(head, /^HTTP\/1\.[01] 500 Internal Server Error\r\n/);
      assert.doesNotMatch(raw, /X-Injected|chunked|should not be sent/i);
      assert.match(head, /\r\nContent-Type: text\/plain\r\n/i);
      assert.equal(raw.slice(end + 4), ERROR_BODY);
    });
  }

  await t.step("200 requests on a kept-alive client connection", async () => {
    const before = gateway.acceptedConnections;
    for (let i = 0; i < 200; i++) {
      const { response, text } = await get(`/app/n/${i}`);
      assert.equal(response.status, 200);
      assert.equal(text, `Hello /n/${i}\n`);
    }
    const opened = gateway.acceptedConnections - before;
    if (expected.keepsConnections) {
      // One FastCGI connection, kept by the host's upstream pool.
      assert.ok(opened <= 2, `${opened} connections for 200 requests`);
    } else {
      // A connection per request, each closed after its END_REQUEST.
      await waitFor(
        () => gateway.openConnections === 0,
        "the gateway's connections to close",
      );
    }
  });

  await t.step("60 concurrent requests", async () => {
    const body = new Uint8Array(100_000).map((_, i) => i % 7);
    const results = await Promise.all(
      Array.from({ length: 60 }, async (_, i) => {
        switch (i % 4) {
          case 0:
            return (await get("/app/async?n=3")).text ===
              "line 1\nline 2\nline 3\n";
          case 1: {
            const { text } = await get(`/app/stream?bytes=300000`);
            return text.length === 300000;
          }
          case 2:
            return (await get("/app/echo", { method: "POST", body })).text ===
              JSON.stringify({ length: 100_000, adler32: adler32(body) });
          default:
            return (await get(`/app/c/${i}`)).text === `Hello /c/${i}\n`;
        }
      }),
    );
    assert.deepEqual(
      results.map((ok, i) => ok ? null : i).filter((i) => i !== null),
      [],
    );
  });

  await t.step(
    "a client that disconnects mid-download: the result closed once",
    async () => {
      const closes = stats.closes["/forever"] ?? 0;
      const conn = await Deno.connect({
        hostname: "127.0.0.1",
        port: host.port,
      });
      await conn.write(
        encodeLatin1("GET /app/forever HTTP/1.1\r\nHost: test\r\n\r\n"),
      );
      const buffer = new Uint8Array(64 * 1024);
      for (let received = 0; received < 2 * MIB;) {
        const n = await conn.read(buffer);
        assert.notEqual(n, null);
        received += n!;
      }
      conn.close();
      await waitFor(
        () => stats.closes["/forever"] === closes + 1,
        "close() of /forever",
        10_000,
      );
      const produced = stats.produced;
      await new Promise((resolve) => setTimeout(resolve, 100));
      assert.equal(stats.produced, produced, "still producing");
      assert.equal(stats.closes["/forever"], closes + 1);
    },
  );

  await t.step("nothing left in progress, the validator content", async () => {
    await waitFor(() => gateway.activeRequests === 0, "requests to end");
    const log = await host.errorLog();
    assert.doesNotMatch(log, /WSGIWarning/);
    // Every request went through the handler: none broke the gateway.
    assert.deepEqual(
      gateway.lines.filter((line) => line.includes("Cannot")),
      [],
    );
  });
}

/** Start the gateway, run `body`, shut everything down and check for
 * leaks. */
async function withGateway(
  address: "tcp" | "unix",
  body: (gateway: LoggedServer, stats: AppStats) => Promise<void>,
): Promise<void> {
  const tempDir = await Deno.makeTempDir({ prefix: "wsgiref-fcgi-host-" });
  const { app, stats } = hostApp();
  const path = `${tempDir}/gateway.sock`;
  const gateway = new LoggedServer(
    address === "unix" ? { path } : { hostname: "127.0.0.1", port: 0 },
    app,
    { tempDir, spoolThreshold: MIB },
  );
  const serving = gateway.serveForever();
  try {
    await body(gateway, stats);
  } finally {
    await gateway.shutdown();
    await serving;
  }
  try {
    assert.equal(gateway.openConnections, 0);
    assert.equal(gateway.activeRequests, 0);
    assert.equal(
      address === "unix" ? socketsAt(path) : socketsOnPort(gateway.serverPort),
      0,
    );
    assert.equal(fdsUnder(tempDir), 0);
    assert.deepEqual([...Deno.readDirSync(tempDir)], []);
    // Each request logged once, in Common Log Format.
    assert.ok(
      gateway.lines.some((line) =>
        /^127\.0\.0\.1 "GET \/app\/n\/199 HTTP\/1\.1" 200 13$/.test(line)
      ),
    );
  } finally {
    await Deno.remove(tempDir, { recursive: true });
  }
}

Deno.test({
  name: "makeFastCGIServer() serves requests behind lighttpd (mod_fastcgi)",
  ignore: LIGHTTPD === null && !REQUIRE_LIGHTTPD,
  async fn(t) {
    assert.ok(LIGHTTPD, "lighttpd is required (WSGIREF_REQUIRE_LIGHTTPD=1)");
    await withGateway("unix", async (gateway, stats) => {
      const host = await startLighttpd(LIGHTTPD, {
        fastcgi: {
          "/app": { socket: (gateway.serverAddress as { path: string }).path },
        },
      });
      try {
        await throughHost(
          t,
          { name: "lighttpd", ...host },
          gateway,
          stats,
          { rawQuery: "x=%C3%A9", keepsConnections: false },
        );
      } finally {
        const log = await host.stop();
        assert.match(log, /server stopped/);
      }
    });
  },
});

Deno.test({
  name: "makeFastCGIServer() serves requests behind nginx (fastcgi_pass)",
  ignore: NGINX === null && !REQUIRE_NGINX,
  async fn(t) {
    assert.ok(NGINX, "nginx is required (WSGIREF_REQUIRE_NGINX=1)");
    await withGateway("tcp", async (gateway, stats) => {
      const host = await startNginx(NGINX, {
        http: `
  upstream gateway {
    server 127.0.0.1:${gateway.serverPort};
    keepalive 4;
  }`,
        server: `
    location ~ ^/app(/|$) {
      fastcgi_pass gateway;
      fastcgi_keep_conn on;
      fastcgi_max_temp_file_size 8m;
      fastcgi_split_path_info ^(/app)(/.*)?$;
${FASTCGI_PARAMS}
      fastcgi_param SCRIPT_NAME $fastcgi_script_name;
      fastcgi_param PATH_INFO $fastcgi_path_info;
    }`,
      });
      try {
        await throughHost(
          t,
          { name: "nginx", ...host },
          gateway,
          stats,
          { rawQuery: "x=\xc3\xa9", keepsConnections: true },
        );
      } finally {
        const log = await host.stop();
        assert.doesNotMatch(log, /\[(alert|emerg)\]/);
      }
    });
  },
});
