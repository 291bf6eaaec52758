/**
 * The FastCGI gateway at the protocol level, driven by the tests' own
 * FastCGI client (`fixtures/fcgi_client.ts`): what a well-behaved host sends
 * and what it never would (malformed and truncated records, garbage,
 * `GET_VALUES`, `ABORT_REQUEST`, interleaved requests). The gateway runs on
 * 127.0.0.1, port 0, or a Unix socket in a temporary directory, and is shut
 * down in the same test; every test checks that no socket, spool file or
 * request is left behind.
 */

import assert from "node:assert/strict";
import { closeSync, openSync } from "node:fs";
import {
  FastCGIHandler,
  type FastCGIOutput,
  FastCGIServer,
  type FastCGIServerOptions,
  makeFastCGIServer,
} from "../fastcgi.ts";
import { BaseCGIHandler } from "../handlers.ts";
import { validator } from "../validate.ts";
import { decodeLatin1, encodeLatin1 } from "../_internal.ts";
import { StringErrorStream } from "../_io.ts";
import type { Application, Environ } from "../types.ts";
import {
  adler32,
  type AppStats,
  makeTestApp,
  PATTERN,
} from "./fixtures/fastcgi_app.ts";
import { OPEN_STREAM } from "../_fastcgi_connection.ts";
import {
  assemble,
  AUTHORIZER,
  beginRequest,
  decodePairs,
  encodePairs,
  FCGI,
  FcgiClient,
  type FcgiRecord,
  type FcgiResponse,
  FILTER,
  getParams,
  join,
  memoryPipe,
  OVERLOADED,
  parseCgi,
  record,
  REQUEST_COMPLETE,
  requestRecords,
  stream,
  UNKNOWN_ROLE,
} from "./fixtures/fcgi_client.ts";
import {
  fdsUnder,
  socketsAt,
  socketsOnPort,
  waitFor,
} from "./fixtures/process.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const MIB = 1024 * 1024;
const ERROR_BODY =
  "A server error occurred.  Please contact the administrator.";

/**
 * How the tests reach the gateway: over TCP or a Unix socket it listens
 * on, or over in-memory streams handed to it as its listener hands it
 * sockets (`OPEN_STREAM`), which exercises the connection without a
 * network.
 */
type Transport = "tcp" | "unix" | "memory";

/** A gateway under test, with what is needed to check it after. */
interface Gateway {
  server: FastCGIServer;
  stats: AppStats;
  transport: Transport;
  address: { hostname: string; port: number } | { path: string };
  /** How the log names the peer of a connection (a regular expression). */
  peer: string;
  tempDir: string;
  log: string[];
  connect(): Promise<FcgiClient>;
}

/** A server that keeps its log lines instead of printing them. */
class LoggedServer extends FastCGIServer {
  lines: string[] = [];
  override logMessage(message: string, address = "-"): void {
    this.lines.push(`${address} ${message}`);
  }
}

/** What `withGateway` takes beyond the server's options. */
interface GatewayOptions extends FastCGIServerOptions {
  /** The application; the test app (a new one each run) by default. */
  app?: Application;
  /** Wrap the test app (`validator`, say). */
  wrap?: (app: Application) => Application;
  /** The transports to run `fn` over, one step each. */
  transports?: Transport[];
}

/**
 * Run `fn` against a gateway serving `app` (the test app by default), over
 * each transport (TCP and in memory by default) in a step of its own; then
 * shut it down and check that nothing is left: no socket on its port, no
 * spool file, no request, no connection.
 */
async function withGateway(
  t: Deno.TestContext,
  fn: (gateway: Gateway, t: Deno.TestContext) => Promise<void>,
  options: GatewayOptions = {},
): Promise<void> {
  const { transports = ["tcp", "memory"], ...rest } = options;
  for (const transport of transports) {
    await t.step(
      transport,
      (t) => runGateway(transport, (gateway) => fn(gateway, t), rest),
    );
  }
}

async function runGateway(
  transport: Transport,
  fn: (gateway: Gateway) => Promise<void>,
  options: GatewayOptions,
): Promise<void> {
  const tempDir = await Deno.makeTempDir({ prefix: "wsgiref-fcgi-test-" });
  const made = makeTestApp();
  const { wrap, app = wrap?.(made.app) ?? made.app, ...serverOptions } =
    options;
  const address = transport === "unix"
    ? { path: `${tempDir}/gateway.sock` }
    : { hostname: "127.0.0.1", port: 0 };
  const server = new LoggedServer(address, app, {
    tempDir,
    ...serverOptions,
  });
  const bound = server.serverAddress as Gateway["address"];
  const serving = server.serveForever();
  let streams = 0;
  const gateway: Gateway = {
    server,
    stats: made.stats,
    transport,
    address: bound,
    peer: transport === "memory"
      ? "memory:\\d+"
      : transport === "unix"
      ? "unix:-"
      : "127\\.0\\.0\\.1:\\d+",
    tempDir,
    log: server.lines,
    connect: () => {
      if (transport !== "memory") return FcgiClient.connect(bound);
      const [host, gatewayEnd] = memoryPipe();
      OPEN_STREAM.get(server)!(gatewayEnd, `memory:${++streams}`);
      return Promise.resolve(new FcgiClient(host));
    },
  };
  try {
    await fn(gateway);
  } finally {
    await server.shutdown();
    await serving;
  }
  try {
    assert.equal(server.openConnections, 0, "connections left open");
    assert.equal(server.activeRequests, 0, "requests left in progress");
    if (transport === "unix") {
      assert.equal(socketsAt((bound as { path: string }).path), 0);
      assert.throws(() => Deno.statSync((bound as { path: string }).path));
    } else {
      assert.equal(
        socketsOnPort(server.serverPort),
        0,
        "sockets left on the gateway's port",
      );
    }
    assert.equal(fdsUnder(tempDir), 0, "spool files left open");
    assert.deepEqual([...Deno.readDirSync(tempDir)], [], "files left behind");
  } finally {
    await Deno.remove(tempDir, { recursive: true });
  }
}

/** A GET through a new connection; the response taken apart. */
async function get(
  gateway: Gateway,
  path: string,
  extra: Record<string, string> = {},
) {
  const client = await gateway.connect();
  try {
    const response = await client.request(getParams(path, extra));
    return { ...response, cgi: parseCgi(response.stdout) };
  } finally {
    client.close();
  }
}

// --- The response bytes ---------------------------------------------------

/** What `BaseCGIHandler` writes for `app` and `environ`. */
async function cgiBytes(app: Application, environ: Environ): Promise<string> {
  let out = "";
  const handler = new BaseCGIHandler(
    { readSync: () => null },
    { write: (p: Uint8Array) => void (out += decodeLatin1(p)) },
    new StringErrorStream(),
    environ,
  );
  handler.osEnviron = {};
  await handler.run(app);
  return out;
}

const BYTES_CASES: [string, Application][] = [
  ["an Array of one chunk", (_environ, startResponse) => {
    startResponse("200 OK", [["Content-Type", "text/plain"]]);
    return [encoder.encode("Hello")];
  }],
  ["a generator", function* (_environ, startResponse) {
    startResponse("200 OK", [["Content-Type", "text/plain"]]);
    yield encoder.encode("one ");
    yield new Uint8Array(0);
    yield encoder.encode("two");
  }],
  ["write() then a chunk", (_environ, startResponse) => {
    const write = startResponse("201 Created", [["X-A", "b"]]);
    write(encoder.encode("ab"));
    return [encoder.encode("cd")];
  }],
  ["a redirect without a body", (_environ, startResponse) => {
    startResponse("302 Found", [["Location", "/next"]]);
    return [];
  }],
  ["an async generator", async (_environ, startResponse) => {
    await Promise.resolve();
    startResponse("200 OK", [["Content-Type", "text/plain"]]);
    return (async function* () {
      yield encoder.encode("async ");
      yield encoder.encode("body");
    })();
  }],
  ["a throwing app", () => {
    throw new Error("boom");
  }],
  ["a bad status", (_environ, startResponse) => {
    startResponse("200 OK\r\nX-Injected: 1", []);
    return [];
  }],
];

Deno.test("makeFastCGIServer() sends on STDOUT exactly the bytes BaseCGIHandler writes", async (t) => {
  for (const [name, app] of BYTES_CASES) {
    await t.step(name, async (t) => {
      await withGateway(t, async (gateway) => {
        const params = getParams("/bytes");
        const response = await get(gateway, "/bytes");
        assert.equal(
          decodeLatin1(response.stdout),
          await cgiBytes(app, { ...params }),
        );
        assert.equal(response.protocolStatus, REQUEST_COMPLETE);
        assert.equal(response.appStatus, 0);
      }, { app, quiet: true });
    });
  }
});

Deno.test("makeFastCGIServer() ends STDOUT with an empty record, then END_REQUEST", async (t) => {
  await withGateway(t, async (gateway) => {
    const { records } = await get(gateway, "/hello");
    assert.deepEqual(
      records.map((r) => [r.type, r.content.length > 0]),
      [
        [FCGI.STDOUT, true],
        [FCGI.STDOUT, false],
        [FCGI.END_REQUEST, true],
      ],
    );
    for (const r of records) {
      assert.equal(r.version, 1);
      assert.equal(r.id, 1);
      assert.equal((r.content.length + r.padding) % 8, 0, "8-byte aligned");
    }
    assert.equal(
      decodeLatin1(records[0].content),
      "Status: 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello /hello\n",
    );
  }, { quiet: true });
});

Deno.test("makeFastCGIServer() sends STDOUT records of at most 65,535 bytes", async (t) => {
  const body = new Uint8Array(3 * 65536 + 5).map((_, i) => i % 251);
  const app: Application = (_environ, startResponse) => {
    startResponse("200 OK", [["Content-Type", "application/octet-stream"]]);
    return [body, body];
  };
  await withGateway(t, async (gateway) => {
    const response = await get(gateway, "/");
    const sizes = response.records
      .filter((r) => r.type === FCGI.STDOUT)
      .map((r) => r.content.length);
    assert.ok(sizes.every((size) => size <= 65535), `sizes ${sizes}`);
    assert.ok(sizes.filter((size) => size === 65535).length >= 6);
    assert.deepEqual(response.cgi.body, join(body, body));
  }, { app, quiet: true });
});

// --- Connections ----------------------------------------------------------

Deno.test("makeFastCGIServer() closes the connection after END_REQUEST unless KEEP_CONN", async (t) => {
  await withGateway(t, async (gateway, t) => {
    await t.step("without KEEP_CONN: closed", async () => {
      const client = await gateway.connect();
      try {
        const response = await client.request(getParams("/one"));
        assert.equal(parseCgi(response.stdout).status, "200 OK");
        assert.deepEqual(await client.untilClosed(), []);
      } finally {
        client.close();
      }
    });
    await t.step("with KEEP_CONN: three requests, then closed", async () => {
      const client = await gateway.connect();
      try {
        for (const [id, path] of [[1, "/a"], [2, "/b"], [1, "/c"]] as const) {
          const response = await client.request(getParams(path), {
            id,
            keepConn: true,
          });
          assert.equal(
            decoder.decode(parseCgi(response.stdout).body),
            `Hello ${path}\n`,
          );
        }
        await waitFor(
          () => gateway.server.openConnections === 1,
          "the first connection closed",
        );
        // The last one without KEEP_CONN: the gateway closes after it.
        await client.request(getParams("/d"), { id: 3 });
        assert.deepEqual(await client.untilClosed(), []);
      } finally {
        client.close();
      }
      assert.equal(gateway.server.acceptedConnections, 2);
    });
  }, { quiet: true });
});

Deno.test("makeFastCGIServer() serves on a Unix socket, replacing a stale one", async () => {
  const dir = await Deno.makeTempDir({ prefix: "wsgiref-fcgi-stale-" });
  try {
    // A socket file left by a gateway that died.
    const stale = Deno.listen({ transport: "unix", path: `${dir}/g.sock` });
    stale.close();
    await using server = makeFastCGIServer(
      { path: `${dir}/g.sock` },
      makeTestApp().app,
      { quiet: true },
    );
    const serving = server.serveForever();
    const client = await FcgiClient.connect({ path: `${dir}/g.sock` });
    const response = await client.request(getParams("/unix"));
    client.close();
    assert.equal(
      decoder.decode(parseCgi(response.stdout).body),
      "Hello /unix\n",
    );
    await server.shutdown();
    await serving;
    assert.deepEqual([...Deno.readDirSync(dir)], []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  // A path that is not a socket is left alone.
  const file = await Deno.makeTempFile();
  try {
    assert.throws(
      () => makeFastCGIServer({ path: file }, makeTestApp().app),
      (error) =>
        error instanceof Deno.errors.AddrInUse &&
        error.message ===
          `Cannot listen on ${
            JSON.stringify(file)
          }: it exists and is not a socket`,
    );
  } finally {
    await Deno.remove(file);
  }
});

Deno.test("makeFastCGIServer() serves requests through a Unix socket with the test app", async (t) => {
  await withGateway(t, async (gateway) => {
    const response = await get(gateway, "/env");
    assert.equal(
      JSON.parse(decoder.decode(response.cgi.body)).PATH_INFO,
      "/env",
    );
    const path = (gateway.address as { path: string }).path;
    // The listener, once the gateway has seen the client go.
    await waitFor(() => socketsAt(path) === 1, "one socket");
  }, { transports: ["unix"], quiet: true });
});

// --- Params ---------------------------------------------------------------

Deno.test("makeFastCGIServer() reads records split anywhere, with 1- and 4-byte lengths", async (t) => {
  const longName = "HTTP_X_" + "N".repeat(200);
  const params: Record<string, string> = {
    ...getParams("/env?q=" + "v".repeat(300)),
    REQUEST_METHOD: "POST",
    CONTENT_LENGTH: "1000",
    HTTP_X_TEST: "x".repeat(70000),
    [longName]: "short",
  };
  const body = PATTERN.slice(0, 1000);
  const app: Application = (environ, startResponse) => {
    const input = environ["wsgi.input"]!.read(1000);
    startResponse("200 OK", [["Content-Type", "application/json"]]);
    return [encoder.encode(JSON.stringify({
      query: environ.QUERY_STRING,
      test: (environ.HTTP_X_TEST as string).length,
      long: environ[longName],
      adler: adler32(input),
    }))];
  };
  const expected = {
    query: "q=" + "v".repeat(300),
    test: 70000,
    long: "short",
    adler: adler32(body),
  };
  await withGateway(t, async (gateway, t) => {
    for (
      const [name, sizes, longLengths] of [
        ["one byte at a time", [1], false],
        ["in uneven pieces", [3, 7, 8, 1, 13, 4096, 9, 65536], true],
        ["all at once", [1 << 24], false],
      ] as const
    ) {
      await t.step(name, async () => {
        const client = await gateway.connect();
        try {
          // Small records, so that one byte at a time stays quick.
          const bytes = requestRecords(params, {
            stdin: body,
            longLengths,
            paramsChunk: name === "one byte at a time" ? 1000 : 65535,
            stdinChunk: 333,
          });
          const short = name === "one byte at a time"
            ? requestRecords({ ...params, HTTP_X_TEST: "x".repeat(200) }, {
              stdin: body,
              stdinChunk: 333,
            })
            : bytes;
          await client.sendInPieces(short, [...sizes]);
          const response = await client.response();
          assert.deepEqual(
            JSON.parse(decoder.decode(parseCgi(response.stdout).body)),
            {
              ...expected,
              test: name === "one byte at a time" ? 200 : 70000,
            },
          );
        } finally {
          client.close();
        }
      });
    }
  }, { app, quiet: true });
});

/** Answers with the environ's string and boolean values, as JSON. */
const environApp: Application = (environ, startResponse) => {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(environ)) {
    if (typeof value === "string" || typeof value === "boolean") {
      out[key] = value;
    }
  }
  startResponse("200 OK", [["Content-Type", "application/json"]]);
  return [encoder.encode(JSON.stringify(out))];
};

Deno.test("makeFastCGIServer() skips record padding of any length, up to 255 bytes", async (t) => {
  const app: Application = (environ, startResponse) => {
    const body = environ["wsgi.input"]!.read(Number(environ.CONTENT_LENGTH));
    startResponse("200 OK", [["Content-Type", "text/plain"]]);
    return [
      encoder.encode(`${String(environ.HTTP_X_TEST).length} ${adler32(body)}`),
    ];
  };
  const body = new Uint8Array(65535 * 2 + 10).map((_, i) => i % 253);
  const pairs = encodePairs({
    ...post("/", String(body.length)),
    HTTP_X_TEST: "t".repeat(65000),
  });
  // The largest records there are: 65,535 bytes of content, 255 of padding.
  const records: Uint8Array[] = [beginRequest(1)];
  let padding = 0;
  for (
    const [type, data] of [[FCGI.PARAMS, pairs], [FCGI.STDIN, body]] as const
  ) {
    for (let at = 0; at < data.length; at += 65535) {
      records.push(
        record(type, 1, data.subarray(at, at + 65535), {
          padding: 255 - padding,
        }),
      );
      padding = (padding + 37) % 256;
    }
    records.push(record(type, 1, new Uint8Array(0), { padding: padding }));
  }
  await withGateway(t, async (gateway) => {
    const client = await gateway.connect();
    try {
      await client.sendInPieces(join(...records), [70000, 3, 65800]);
      const response = await client.response();
      assert.equal(
        decoder.decode(parseCgi(response.stdout).body),
        `65000 ${adler32(body)}`,
      );
    } finally {
      client.close();
    }
  }, { app, quiet: true });
});

Deno.test("makeFastCGIServer() makes latin-1 environ strings of the params, one char per byte", async (t) => {
  const params = {
    ...getParams("/"),
    PATH_INFO: "/caf\xc3\xa9/\xe9",
    QUERY_STRING: "x=\xc3\xa9",
    HTTP_X_TEST: "\xff\x00\x01",
    REQUEST_URI: "/caf%C3%A9/\xe6\x97\xa5",
    DOCUMENT_ROOT: "/srv/caf\xc3\xa9",
    HOME: "/home/\xe9",
    HTTPS: "on",
  };
  // Headers nginx passes along: their values are CONTENT_TYPE and
  // CONTENT_LENGTH.
  const sent = {
    ...params,
    HTTP_CONTENT_LENGTH: "0",
    HTTP_CONTENT_TYPE: "text/plain",
  };
  await withGateway(t, async (gateway) => {
    const client = await gateway.connect();
    let response;
    try {
      response = await client.request(sent);
    } finally {
      client.close();
    }
    const environ = JSON.parse(decoder.decode(parseCgi(response.stdout).body));
    assert.equal(environ.PATH_INFO, "/caf\xc3\xa9/\xe9");
    assert.equal(environ.QUERY_STRING, "x=\xc3\xa9");
    assert.equal(environ.HTTP_X_TEST, "\xff\x00\x01");
    assert.equal(environ.REQUEST_URI, "/caf%C3%A9/\xe6\x97\xa5");
    assert.equal(environ.DOCUMENT_ROOT, "/srv/caf\xc3\xa9");
    assert.equal(environ.HOME, "/home/\xe9");
    assert.equal(environ["wsgi.url_scheme"], "https");
    assert.equal(environ["wsgi.multithread"], false);
    assert.equal(environ["wsgi.multiprocess"], true);
    assert.equal(environ["wsgi.run_once"], false);
    // No body and no CONTENT_LENGTH: the length read, 0.
    assert.equal(environ.CONTENT_LENGTH, "0");
    assert.equal(environ.CONTENT_TYPE, "text/plain");
    // The params and the wsgi.* keys, nothing of the process environment.
    assert.deepEqual(
      Object.keys(environ).filter((key) => !key.startsWith("wsgi.")).sort(),
      [...Object.keys(params), "CONTENT_TYPE"].sort(),
    );
  }, { app: environApp, quiet: true });
});

Deno.test("makeFastCGIServer() passes the environ, streams and result checks of validator()", async (t) => {
  await withGateway(t, async (gateway, t) => {
    for (const path of ["/env", "/stream?bytes=200000", "/async?n=3", "/x"]) {
      await t.step(path, async () => {
        const response = await get(gateway, path);
        assert.equal(response.cgi.status, "200 OK");
        assert.equal(response.stderr, "");
      });
    }
    await t.step("/echo", async () => {
      const client = await gateway.connect();
      try {
        const response = await client.request(
          {
            ...getParams("/echo"),
            REQUEST_METHOD: "POST",
            CONTENT_LENGTH: "5",
          },
          { stdin: encoder.encode("hello") },
        );
        assert.equal(response.stderr, "");
        assert.deepEqual(
          JSON.parse(decoder.decode(parseCgi(response.stdout).body)),
          {
            length: 5,
            adler32: adler32(encoder.encode("hello")),
          },
        );
      } finally {
        client.close();
      }
    });
    await t.step(
      "a rule broken: 500 and the validator's message on STDERR",
      async () => {
        const response = await get(gateway, "/hop-by-hop");
        assert.equal(response.cgi.status, "500 Internal Server Error");
        assert.match(response.stderr, /^AssertionError: .*Transfer-Encoding/);
      },
    );
    await t.step("results closed once each", () => {
      assert.deepEqual(gateway.stats.closes, { "/stream": 1, "/async": 1 });
    });
  }, { wrap: validator, quiet: true });
});

// --- Bodies ---------------------------------------------------------------

function post(path: string, length: string): Record<string, string> {
  return { ...getParams(path), REQUEST_METHOD: "POST", CONTENT_LENGTH: length };
}

Deno.test("makeFastCGIServer() gives the body as wsgi.input: in memory, or spooled and removed", async (t) => {
  let spoolFds = -1;
  let tempDir = "";
  const app: Application = (environ, startResponse) => {
    spoolFds = fdsUnder(tempDir);
    const input = environ["wsgi.input"]!;
    const state = [1, 0];
    let length = 0;
    let sum = adler32(new Uint8Array(0), state);
    for (let piece; (piece = input.read(100_000)).length > 0;) {
      length += piece.length;
      sum = adler32(piece, state);
    }
    startResponse("200 OK", [["Content-Type", "application/json"]]);
    return [encoder.encode(JSON.stringify({ length, sum }))];
  };
  await withGateway(t, async (gateway, t) => {
    tempDir = gateway.tempDir;
    for (
      const [name, size, spooled] of [
        ["small, in memory", 1000, 0],
        ["over spoolThreshold, in a temporary file", 3 * MIB + 7, 1],
      ] as const
    ) {
      await t.step(name, async () => {
        const body = new Uint8Array(size).map((_, i) => i * 7 + (i >> 10));
        const client = await gateway.connect();
        try {
          const response = await client.request(post("/", String(size)), {
            stdin: body,
          });
          assert.deepEqual(
            JSON.parse(decoder.decode(parseCgi(response.stdout).body)),
            {
              length: size,
              sum: adler32(body),
            },
          );
        } finally {
          client.close();
        }
        assert.equal(spoolFds, spooled);
        await waitFor(() => fdsUnder(tempDir) === 0, "the spool file closed");
      });
    }
    await t.step("no CONTENT_LENGTH: read to the end of STDIN", async () => {
      const client = await gateway.connect();
      try {
        const response = await client.request(
          { ...getParams("/"), REQUEST_METHOD: "POST" },
          { stdin: encoder.encode("chunked upload") },
        );
        assert.deepEqual(
          JSON.parse(decoder.decode(parseCgi(response.stdout).body)).length,
          14,
        );
      } finally {
        client.close();
      }
    });
  }, { app, quiet: true, spoolThreshold: MIB });
});

Deno.test("makeFastCGIServer() refuses bodies it cannot take, without calling the app", async (t) => {
  let calls = 0;
  const app: Application = (_environ, startResponse) => {
    calls++;
    startResponse("200 OK", [["Content-Type", "text/plain"]]);
    return [encoder.encode("called")];
  };
  const cases: [string, Record<string, string>, Uint8Array, string][] = [
    [
      "CONTENT_LENGTH over maxBodySize",
      post("/", "2000"),
      new Uint8Array(2000),
      "413 Request Entity Too Large",
    ],
    [
      "STDIN over maxBodySize, no CONTENT_LENGTH",
      { ...getParams("/"), REQUEST_METHOD: "POST" },
      new Uint8Array(1500),
      "413 Request Entity Too Large",
    ],
    [
      "STDIN longer than CONTENT_LENGTH",
      post("/", "10"),
      new Uint8Array(11),
      "400 Bad Request",
    ],
    [
      "STDIN shorter than CONTENT_LENGTH",
      post("/", "10"),
      new Uint8Array(9),
      "400 Bad Request",
    ],
    [
      "CONTENT_LENGTH not a number",
      post("/", "ten"),
      new Uint8Array(10),
      "400 Bad Request",
    ],
    [
      "CONTENT_LENGTH negative",
      post("/", "-1"),
      new Uint8Array(0),
      "400 Bad Request",
    ],
  ];
  await withGateway(t, async (gateway, t) => {
    calls = 0;
    for (const [name, params, body, status] of cases) {
      await t.step(name, async () => {
        const client = await gateway.connect();
        try {
          // KEEP_CONN: the connection serves on after the refusal.
          const refused = await client.request(params, {
            stdin: body,
            keepConn: true,
            stdinChunk: 100,
          });
          assert.equal(parseCgi(refused.stdout).status, status);
          const next = await client.request(getParams("/after"), {
            id: 2,
            keepConn: true,
          });
          assert.equal(decoder.decode(parseCgi(next.stdout).body), "called");
        } finally {
          client.close();
        }
      });
    }
    assert.equal(calls, cases.length);
  }, { app, quiet: true, maxBodySize: 1000, spoolThreshold: 100 });
});

// --- Management records and roles ---------------------------------------

Deno.test("makeFastCGIServer() answers GET_VALUES, unknown management types and other roles", async (t) => {
  await withGateway(t, async (gateway, t) => {
    const client = await gateway.connect();
    try {
      await t.step(
        "GET_VALUES: the limits it enforces, unknown names left out",
        async () => {
          await client.send(record(
            FCGI.GET_VALUES,
            0,
            encodePairs({
              FCGI_MAX_CONNS: "",
              FCGI_MAX_REQS: "",
              FCGI_MPXS_CONNS: "",
              FCGI_UNKNOWN: "",
            }),
          ));
          const answer = (await client.next())!;
          assert.equal(answer.type, FCGI.GET_VALUES_RESULT);
          assert.equal(answer.id, 0);
          assert.deepEqual(decodePairs(answer.content), [
            ["FCGI_MAX_CONNS", "7"],
            ["FCGI_MAX_REQS", "9"],
            ["FCGI_MPXS_CONNS", "1"],
          ]);
        },
      );
      await t.step(
        "a management type it does not know: UNKNOWN_TYPE",
        async () => {
          await client.send(record(42, 0, encoder.encode("whatever")));
          const answer = (await client.next())!;
          assert.equal(answer.type, FCGI.UNKNOWN_TYPE);
          assert.deepEqual([...answer.content], [42, 0, 0, 0, 0, 0, 0, 0]);
          // BEGIN_REQUEST is no management record either.
          await client.send(beginRequest(0));
          assert.equal((await client.next())!.content[0], FCGI.BEGIN_REQUEST);
        },
      );
      for (
        const [role, name] of [[AUTHORIZER, "AUTHORIZER"], [FILTER, "FILTER"], [
          99,
          "role 99",
        ]] as const
      ) {
        await t.step(`${name}: END_REQUEST with UNKNOWN_ROLE`, async () => {
          await client.send(beginRequest(5, { role, keepConn: true }));
          const answer = await client.response(5);
          assert.equal(answer.protocolStatus, UNKNOWN_ROLE);
          assert.equal(answer.records.length, 1);
        });
      }
      await t.step("and the connection still serves", async () => {
        const response = await client.request(getParams("/still"), {
          keepConn: true,
        });
        assert.equal(
          decoder.decode(parseCgi(response.stdout).body),
          "Hello /still\n",
        );
      });
    } finally {
      client.close();
    }
  }, { quiet: true, maxConnections: 7, maxRequests: 9 });
});

/**
 * Check a request refused at `BEGIN_REQUEST`: `END_REQUEST` with
 * `FCGI_OVERLOADED` (FastCGI 1.0 §5.5), after a 503 response that hosts
 * pass on (they do not pass that status on).
 */
function assertOverloaded(answer: FcgiResponse): void {
  assert.deepEqual(answer.records.map((r) => r.type), [
    FCGI.STDOUT,
    FCGI.STDOUT,
    FCGI.END_REQUEST,
  ]);
  assert.equal(answer.protocolStatus, OVERLOADED);
  assert.equal(answer.appStatus, 0);
  assert.equal(
    decoder.decode(answer.stdout),
    "Status: 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n" +
      "Content-Length: 66\r\n\r\n" +
      "The server is too busy to take this request now; try again later.\n",
  );
}

Deno.test("makeFastCGIServer() answers a 503 and OVERLOADED over maxRequests", async (t) => {
  await withGateway(t, async (gateway) => {
    const client = await gateway.connect();
    try {
      await client.send(
        requestRecords(getParams("/hang"), { id: 1, keepConn: true }),
      );
      await client.send(
        requestRecords(getParams("/two"), { id: 2, keepConn: true }),
      );
      assertOverloaded(await client.response(2));
      await client.send(record(FCGI.ABORT_REQUEST, 1));
      await client.response(1);
      const third = await client.request(getParams("/three"), {
        id: 3,
        keepConn: true,
      });
      assert.equal(third.protocolStatus, REQUEST_COMPLETE);
    } finally {
      client.close();
    }
    assert.equal(gateway.stats.closes["/hang"], 1);
  }, { quiet: true, maxRequests: 1 });
});

Deno.test("makeFastCGIServer() past maxConnections closes the new connection at once, unless one has been idle a second: that one goes", async (t) => {
  const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));
  await withGateway(t, async (gateway, t) => {
    const server = gateway.server;
    const open: FcgiClient[] = [];
    const connect = async (count: number) => {
      const client = await gateway.connect();
      open.push(client);
      await waitFor(() => server.acceptedConnections === count, "accepted");
      return client;
    };
    const refusedAtOnce = async (path: string) => {
      const client = await gateway.connect();
      open.push(client);
      await client.send(requestRecords(getParams(path))).catch(() => {});
      assert.deepEqual(await client.untilClosed(1000), []);
      assert.equal(gateway.stats.started[path], undefined);
    };
    const hello = async (client: FcgiClient, path: string) => {
      const response = await client.request(getParams(path), {
        keepConn: true,
      });
      assert.equal(
        decoder.decode(parseCgi(response.stdout).body),
        `Hello ${path}\n`,
      );
    };
    try {
      const first = await connect(1);
      await pause(50); // which one has been idle the longest is clear
      const second = await connect(2);
      await t.step("at maxConnections: both open", () => {
        assert.equal(server.openConnections, 2);
      });
      await t.step(
        "one over, both idle for less than a second: the new one closed at once, the others go on",
        async () => {
          await refusedAtOnce("/early");
          assert.ok(
            gateway.log.some((line) =>
              /Refused the connection: 2 connections are open, none idle for 1000 ms \(maxConnections\)/
                .test(line)
            ),
            gateway.log.join("\n"),
          );
          await hello(second, "/second");
          assert.equal(server.openConnections, 2);
        },
      );
      await t.step(
        "one over, the first idle for over a second: it is closed, the new one served",
        async () => {
          await pause(1100);
          const third = await connect(3);
          await hello(third, "/third");
          assert.deepEqual(await first.untilClosed(1000), []);
          assert.equal(server.openConnections, 2);
          assert.ok(
            gateway.log.some((line) =>
              /Closed the connection to make room for a new one: 2 connections are open \(maxConnections\)/
                .test(line)
            ),
            gateway.log.join("\n"),
          );
          await hello(second, "/second");
          third.close();
          await waitFor(() => server.openConnections === 1, "third closed");
        },
      );
      await t.step(
        "one over, none idle: the new one closed at once",
        async () => {
          await second.send(
            requestRecords(getParams("/hang"), { id: 1, keepConn: true }),
          );
          assert.equal((await second.nextView())!.type, FCGI.STDOUT);
          const busy = await connect(4);
          await busy.send(
            requestRecords(getParams("/hang"), { id: 1, keepConn: true }),
          );
          assert.equal((await busy.nextView())!.type, FCGI.STDOUT);
          await pause(1100);
          await refusedAtOnce("/refused");
          assert.equal(server.openConnections, 2);
        },
      );
    } finally {
      for (const client of open) client.close();
    }
    await waitFor(() => gateway.stats.closes["/hang"] === 2, "close()");
  }, { quiet: true, maxConnections: 2 });
});

// --- Streaming, aborts, disconnects ---------------------------------------

Deno.test("makeFastCGIServer() streams with backpressure: a host that stops reading stops the app", async (t) => {
  await withGateway(t, async (gateway) => {
    const client = await gateway.connect();
    try {
      await client.send(requestRecords(getParams("/forever")));
      // Read a little, then nothing.
      let received = 0;
      while (received < MIB) {
        received += (await client.nextView())!.content.length;
      }
      // Once the socket buffers are full, the app is not asked for more.
      let last = -1;
      await waitFor(
        () => {
          const now = gateway.stats.produced;
          const stable = now === last;
          last = now;
          return stable;
        },
        "the app to stop producing",
        10_000,
        100,
      );
      await new Promise((resolve) => setTimeout(resolve, 200));
      assert.equal(gateway.stats.produced, last, "the app went on producing");
      // Kernel socket buffers and the gateway's queue, no more.
      assert.ok(last < 32 * MIB, `produced ${last} bytes`);
    } finally {
      client.close();
    }
    await waitFor(() => gateway.stats.closes["/forever"] === 1, "close()");
  }, { quiet: true });
});

Deno.test("makeFastCGIServer() ends a response when the host drops the connection", async (t) => {
  await withGateway(t, async (gateway, t) => {
    for (
      const [path, route] of [["/forever", "/forever"], ["/hang", "/hang"], [
        "/async?n=1000",
        "/async",
      ]]
    ) {
      await t.step(path, async () => {
        const client = await gateway.connect();
        await client.send(requestRecords(getParams(path), { keepConn: true }));
        assert.equal((await client.nextView())!.type, FCGI.STDOUT);
        client.close();
        await waitFor(
          () => gateway.stats.closes[route] === 1,
          `close() of ${route}`,
        );
        await waitFor(
          () => gateway.server.openConnections === 0,
          "the connection closed",
        );
        // Not twice, even later.
        await new Promise((resolve) => setTimeout(resolve, 50));
        assert.equal(gateway.stats.closes[route], 1);
      });
    }
    await t.step("and the gateway goes on serving", async () => {
      const response = await get(gateway, "/after");
      assert.equal(decoder.decode(response.cgi.body), "Hello /after\n");
    });
  }, { quiet: true });
});

Deno.test("makeFastCGIServer() honours ABORT_REQUEST", async (t) => {
  await withGateway(t, async (gateway, t) => {
    const client = await gateway.connect();
    try {
      for (
        const [path, route] of [["/forever", "/forever"], ["/hang", "/hang"]]
      ) {
        await t.step(`during ${path}: END_REQUEST, close() once`, async () => {
          await client.send(
            requestRecords(getParams(path), { id: 7, keepConn: true }),
          );
          assert.equal((await client.nextView())!.type, FCGI.STDOUT);
          await client.send(record(FCGI.ABORT_REQUEST, 7));
          const rest = await client.response(7);
          assert.equal(rest.records.at(-1)!.type, FCGI.END_REQUEST);
          assert.equal(rest.appStatus, 1);
          assert.equal(gateway.stats.closes[route], 1);
        });
      }
      await t.step(
        "before the body is complete: END_REQUEST, no app",
        async () => {
          const started = { ...gateway.stats.started };
          await client.send(join(
            beginRequest(8, { keepConn: true }),
            stream(FCGI.PARAMS, 8, encodePairs(post("/echo", "100"))),
            record(FCGI.STDIN, 8, new Uint8Array(50)),
            record(FCGI.ABORT_REQUEST, 8),
          ));
          const answer = await client.response(8);
          assert.deepEqual(answer.records.map((r) => r.type), [
            FCGI.END_REQUEST,
          ]);
          assert.deepEqual(gateway.stats.started, started);
        },
      );
      await t.step("for a request it does not know: ignored", async () => {
        await client.send(record(FCGI.ABORT_REQUEST, 99));
        const response = await client.request(getParams("/next"), {
          id: 9,
          keepConn: true,
        });
        assert.equal(
          decoder.decode(parseCgi(response.stdout).body),
          "Hello /next\n",
        );
      });
    } finally {
      client.close();
    }
  }, { quiet: true });
});

Deno.test("makeFastCGIServer() answers requests interleaved on one connection", async (t) => {
  await withGateway(t, async (gateway) => {
    const client = await gateway.connect();
    try {
      const p1 = encodePairs(getParams("/stream?bytes=300000&chunk=10000"));
      const p2 = encodePairs(post("/echo", "7"));
      const p3 = encodePairs(getParams("/async?n=5"));
      // Every record of the three requests, interleaved.
      await client.send(join(
        beginRequest(1, { keepConn: true }),
        beginRequest(2, { keepConn: true }),
        record(FCGI.PARAMS, 2, p2.subarray(0, 10)),
        record(FCGI.PARAMS, 1, p1.subarray(0, 5)),
        beginRequest(3, { keepConn: true }),
        record(FCGI.PARAMS, 3, p3),
        record(FCGI.PARAMS, 2, p2.subarray(10)),
        record(FCGI.PARAMS, 1, p1.subarray(5)),
        record(FCGI.PARAMS, 3),
        record(FCGI.PARAMS, 1),
        record(FCGI.STDIN, 3),
        record(FCGI.PARAMS, 2),
        record(FCGI.STDIN, 2, encoder.encode("abc")),
        record(FCGI.STDIN, 1),
        record(FCGI.STDIN, 2, encoder.encode("defg")),
        record(FCGI.STDIN, 2),
      ));
      // Collect every record until all three have ended.
      const records: FcgiRecord[] = [];
      for (let ended = 0; ended < 3;) {
        const next = (await client.next())!;
        records.push(next);
        if (next.type === FCGI.END_REQUEST) ended++;
      }
      const ids = records.map((r) => r.id);
      // The responses really were interleaved.
      const firstEnd = records.findIndex((r) => r.type === FCGI.END_REQUEST);
      assert.ok(new Set(ids.slice(0, firstEnd + 1)).size > 1);
      const byId = (id: number) => assemble(records.filter((r) => r.id === id));
      const one = parseCgi(byId(1).stdout);
      assert.equal(one.body.length, 300000);
      assert.deepEqual(one.body.subarray(0, 502), PATTERN.subarray(0, 502));
      assert.deepEqual(
        JSON.parse(decoder.decode(parseCgi(byId(2).stdout).body)),
        {
          length: 7,
          adler32: adler32(encoder.encode("abcdefg")),
        },
      );
      assert.equal(
        decoder.decode(parseCgi(byId(3).stdout).body),
        "line 1\nline 2\nline 3\nline 4\nline 5\n",
      );
    } finally {
      client.close();
    }
  }, { quiet: true });
});

// --- Errors ---------------------------------------------------------------

Deno.test("makeFastCGIServer() sends the 500 page and the stack on STDERR when the app throws", async (t) => {
  await withGateway(t, async (gateway) => {
    const response = await get(gateway, "/error");
    assert.equal(
      decodeLatin1(response.stdout),
      `Status: 500 Internal Server Error\r\nContent-Type: text/plain\r\nContent-Length: ${ERROR_BODY.length}\r\n\r\n${ERROR_BODY}`,
    );
    assert.match(
      response.stderr,
      /^Error: The \/error route always fails\n {4}at app \(file:\/\/\/.*fastcgi_app\.ts:\d+:\d+\)\n/,
    );
    assert.equal(response.appStatus, 0);
    // The gateway's own log has the request, not the stack.
    assert.equal(gateway.log.length, 1);
    assert.match(
      gateway.log[0],
      /^127\.0\.0\.1 "GET \/error HTTP\/1\.1" 500 59$/,
    );
  });
});

Deno.test("makeFastCGIServer() cuts a response short when the app throws after sending", async (t) => {
  await withGateway(t, async (gateway, t) => {
    await t.step(
      "alone on its connection: closed without END_REQUEST",
      async () => {
        const client = await gateway.connect();
        try {
          await client.send(
            requestRecords(getParams("/error-late"), { keepConn: true }),
          );
          const records = await client.untilClosed();
          const response = assemble(records);
          assert.equal(response.protocolStatus, -1, "no END_REQUEST");
          assert.equal(
            decoder.decode(parseCgi(response.stdout).body),
            "partial ",
          );
          assert.match(
            response.stderr,
            /Error: The \/error-late route fails after a chunk/,
          );
        } finally {
          client.close();
        }
      },
    );
    await t.step(
      "sharing its connection: END_REQUEST with status 1",
      async () => {
        const client = await gateway.connect();
        try {
          await client.send(
            requestRecords(getParams("/async?n=20"), { id: 1, keepConn: true }),
          );
          await client.send(
            requestRecords(getParams("/error-late"), { id: 2, keepConn: true }),
          );
          const failed = await client.response(2);
          assert.equal(failed.appStatus, 1);
          const other = await client.response(1);
          assert.equal(other.appStatus, 0);
          assert.equal(
            decoder.decode(parseCgi(other.stdout).body).split("\n").length,
            21,
          );
        } finally {
          client.close();
        }
      },
    );
    assert.equal(gateway.stats.closes["/error-late"], 2);
  }, { quiet: true });
});

Deno.test("makeFastCGIServer() refuses bad input and goes on serving", async (t) => {
  const begin = beginRequest(1, { keepConn: true });
  const params = stream(FCGI.PARAMS, 1, encodePairs(getParams("/")));
  const hangParams = stream(FCGI.PARAMS, 1, encodePairs(getParams("/hang")));
  /** name, bytes, the end of the line logged. */
  const cases: [string, Uint8Array, string][] = [
    [
      "a wrong version",
      record(FCGI.BEGIN_REQUEST, 1, new Uint8Array(8), { version: 2 }),
      "version 2 is not 1",
    ],
    [
      "garbage: an HTTP request",
      encodeLatin1("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
      "version 71 is not 1",
    ],
    [
      "BEGIN_REQUEST of 5 bytes",
      record(FCGI.BEGIN_REQUEST, 1, new Uint8Array(5)),
      "BEGIN_REQUEST carries 5 bytes, not 8 (request 1)",
    ],
    ["a request begun twice", join(begin, begin), "request 1 began twice"],
    [
      "STDIN before the end of the params",
      join(begin, record(FCGI.STDIN, 1, encoder.encode("x"))),
      "STDIN before the end of the parameters (request 1)",
    ],
    [
      "PARAMS after their end",
      join(begin, params, record(FCGI.PARAMS, 1, encoder.encode("x"))),
      "PARAMS after the end of the parameters (request 1)",
    ],
    [
      "STDIN after its end",
      join(
        begin,
        hangParams,
        record(FCGI.STDIN, 1),
        record(FCGI.STDIN, 1, encoder.encode("late")),
      ),
      "STDIN after the end of the body (request 1)",
    ],
    [
      "a DATA record",
      join(begin, params, record(FCGI.DATA, 1, encoder.encode("x"))),
      "type 8 is not one a host sends for a request (request 1)",
    ],
    [
      "a record of an unknown type",
      join(begin, record(200, 1)),
      "type 200 is not one a host sends for a request (request 1)",
    ],
    [
      "malformed GET_VALUES",
      record(FCGI.GET_VALUES, 0, Uint8Array.of(5, 1, 65)),
      "the GET_VALUES names are malformed",
    ],
  ];
  await withGateway(t, async (gateway, t) => {
    for (const [name, bytes, message] of cases) {
      await t.step(`${name}: connection closed, logged`, async () => {
        const client = await gateway.connect();
        try {
          await client.send(bytes);
          await client.untilClosed();
        } finally {
          client.close();
        }
        await waitFor(() => gateway.server.openConnections === 0, "the close");
        const lines = gateway.log.filter((line) => line.includes("Cannot"));
        assert.equal(lines.length, 1, lines.join("\n"));
        assert.match(
          lines[0],
          new RegExp(`^${gateway.peer} Cannot read a FastCGI record: `),
        );
        assert.ok(lines[0].includes(message), lines[0]);
        gateway.log.length = 0;
        const response = await get(gateway, "/ok");
        assert.equal(decoder.decode(response.cgi.body), "Hello /ok\n");
      });
    }
    for (
      const [name, bytes, logged] of [
        [
          "the stream ends inside a header",
          join(begin, params).subarray(0, 20),
          "after 4 bytes",
        ],
        [
          "the stream ends inside a record",
          join(begin, params).subarray(0, params.length),
          "after ",
        ],
        [
          "the stream ends inside the body",
          join(begin, params, record(FCGI.STDIN, 1, new Uint8Array(10))),
          null,
        ],
      ] as const
    ) {
      await t.step(`${name}: nothing answered, request dropped`, async () => {
        const started = gateway.stats.started["/"] ?? 0;
        const client = await gateway.connect();
        await client.send(bytes);
        await client.closeWrite();
        assert.deepEqual(await client.untilClosed(), []);
        client.close();
        await waitFor(() => gateway.server.openConnections === 0, "the close");
        assert.equal(gateway.stats.started["/"] ?? 0, started);
        const lines = gateway.log.filter((line) => line.includes("Cannot"));
        if (logged === null) assert.deepEqual(lines, []);
        else {
          assert.equal(lines.length, 1);
          assert.match(
            lines[0],
            /Cannot read a FastCGI record: the connection ended inside one/,
          );
          assert.ok(lines[0].includes(logged));
        }
        gateway.log.length = 0;
      });
    }
    await t.step(
      "params over maxParamsSize: 431, connection kept",
      async () => {
        const client = await gateway.connect();
        try {
          const response = await client.request(
            { ...getParams("/"), HTTP_COOKIE: "c".repeat(5000) },
            { keepConn: true, paramsChunk: 1000 },
          );
          assert.equal(
            parseCgi(response.stdout).status,
            "431 Request Header Fields Too Large",
          );
          assert.ok(
            gateway.log.some((line) =>
              line.endsWith("its parameters are over 4096 bytes")
            ),
          );
          const next = await client.request(getParams("/next"), {
            id: 2,
            keepConn: true,
          });
          assert.equal(
            decoder.decode(parseCgi(next.stdout).body),
            "Hello /next\n",
          );
        } finally {
          client.close();
        }
        gateway.log.length = 0;
      },
    );
    await t.step("malformed name-value pairs: 400", async () => {
      const client = await gateway.connect();
      try {
        // A name of 10 bytes that has only 3.
        await client.send(
          join(
            begin,
            record(FCGI.PARAMS, 1, Uint8Array.of(10, 0, 65, 66, 67)),
            record(FCGI.PARAMS, 1),
            record(FCGI.STDIN, 1),
          ),
        );
        const response = await client.response(1);
        assert.equal(parseCgi(response.stdout).status, "400 Bad Request");
        assert.ok(
          gateway.log.some((line) =>
            line.endsWith("its name-value pairs are malformed")
          ),
        );
      } finally {
        client.close();
      }
      gateway.log.length = 0;
    });
    await t.step("records of requests never begun: ignored", async () => {
      const client = await gateway.connect();
      try {
        await client.send(join(
          record(FCGI.PARAMS, 4, encoder.encode("junk")),
          record(FCGI.STDIN, 4, encoder.encode("junk")),
        ));
        const response = await client.request(getParams("/fine"));
        assert.equal(
          decoder.decode(parseCgi(response.stdout).body),
          "Hello /fine\n",
        );
      } finally {
        client.close();
      }
    });
  }, { maxParamsSize: 4096 });
});

// --- Shutdown, logging, arguments -----------------------------------------

Deno.test("FastCGIServer.shutdown() lets requests in progress finish", async (t) => {
  await withGateway(t, async (gateway) => {
    const busy = await gateway.connect();
    const idle = await gateway.connect();
    try {
      await idle.request(getParams("/idle"), { keepConn: true });
      await busy.send(requestRecords(getParams("/async?n=30")));
      assert.equal((await busy.nextView())!.type, FCGI.STDOUT);
      const stopping = gateway.server.shutdown();
      // The idle connection is closed at once; the busy one finishes.
      assert.deepEqual(await idle.untilClosed(), []);
      const response = await busy.response();
      assert.equal(response.protocolStatus, REQUEST_COMPLETE);
      assert.deepEqual(await busy.untilClosed(), []);
      busy.close();
      idle.close();
      await stopping;
      if (gateway.transport === "tcp") {
        await assert.rejects(gateway.connect(), Deno.errors.ConnectionRefused);
      }
    } finally {
      busy.close();
      idle.close();
    }
  }, { quiet: true });
});

Deno.test("FastCGIServer.logRequest() logs each request in Common Log Format, unless quiet", async () => {
  const lines: [string, string][] = [];
  class Recording extends FastCGIServer {
    override logMessage(message: string, address?: string): void {
      lines.push([address ?? "", message]);
    }
  }
  for (const quiet of [false, true]) {
    await using server = new Recording(
      { hostname: "127.0.0.1", port: 0 },
      makeTestApp().app,
      { quiet },
    );
    const serving = server.serveForever();
    const client = await FcgiClient.connect({
      hostname: "127.0.0.1",
      port: server.serverPort,
    });
    await client.request(getParams("/a b?q=\x01", { REMOTE_ADDR: "10.0.0.5" }));
    client.close();
    await server.shutdown();
    await serving;
  }
  assert.deepEqual(lines, [["10.0.0.5", '"GET /a b?q=\x01 HTTP/1.1" 200 11']]);
  // logMessage escapes control characters, as http.server does.
  const written: string[] = [];
  const server = new FastCGIServer(
    { hostname: "127.0.0.1", port: 0 },
    makeTestApp().app,
  );
  const original = console.error;
  try {
    const stderrWrite = Deno.stderr.writeSync;
    Deno.stderr.writeSync = (p: Uint8Array) => {
      written.push(decoder.decode(p));
      return p.length;
    };
    try {
      server.logMessage("a\x01b\nc", "host");
    } finally {
      Deno.stderr.writeSync = stderrWrite;
    }
  } finally {
    console.error = original;
    await server.serverClose();
  }
  assert.match(
    written.join(""),
    /^host - - \[\d\d\/\w{3}\/\d{4} \d\d:\d\d:\d\d\] a\\x01b\n {2}c\n$/,
  );
});

Deno.test("makeFastCGIServer() refuses bad arguments", () => {
  const app = makeTestApp().app;
  const cases: [
    unknown[],
    ErrorConstructor | RangeErrorConstructor | TypeErrorConstructor,
    string,
  ][] = [
    [
      [{ hostname: "127.0.0.1", port: 0 }, "app"],
      TypeError,
      'Cannot create the server: the application must be a function, not string "app"',
    ],
    [
      [{ hostname: "127.0.0.1", port: 70000 }, app],
      RangeError,
      "Cannot create the server: the port must be from 0 to 65535, not 70000",
    ],
    [
      [{ hostname: "127.0.0.1", port: "80" }, app],
      TypeError,
      'Cannot create the server: the port must be an integer, not string "80"',
    ],
    [
      [{ hostname: 1, port: 0 }, app],
      TypeError,
      "Cannot create the server: the hostname must be a string, not number 1",
    ],
    [
      [{ path: "" }, app],
      TypeError,
      'Cannot create the server: the socket path must be a non-empty string, not string ""',
    ],
    [
      [null, app],
      TypeError,
      "Cannot create the server: the address must be { hostname, port }, { path } or { fd }, not None",
    ],
    [
      [{ fd: -1 }, app],
      RangeError,
      "Cannot create the server: fd must be a file descriptor number, not -1",
    ],
    [
      [{ fd: "0" }, app],
      TypeError,
      'Cannot create the server: fd must be an integer, not string "0"',
    ],
    [
      [{ hostname: "127.0.0.1", port: 0 }, app, { socketMode: 0o660 }],
      TypeError,
      "Cannot create the server: socketMode applies to a Unix socket ({ path }) only",
    ],
    [
      [{ path: "/nonexistent/x.sock" }, app, { socketMode: 0o1000 }],
      RangeError,
      "Cannot create the server: socketMode must be from 0o0 to 0o777, not 0o1000",
    ],
    [
      [{ path: "/nonexistent/x.sock" }, app, { socketMode: "660" }],
      TypeError,
      'Cannot create the server: socketMode must be an integer, not string "660"',
    ],
    [
      [{ hostname: "127.0.0.1", port: 0 }, app, {
        allowedClients: "127.0.0.1",
      }],
      TypeError,
      'Cannot create the server: allowedClients must be an array of IP addresses, not string "127.0.0.1"',
    ],
    [
      [{ hostname: "127.0.0.1", port: 0 }, app, {
        allowedClients: ["127.0.0.1", "localhost"],
      }],
      TypeError,
      'Cannot create the server: allowedClients holds "localhost", which is not an IP address',
    ],
    [
      [{ hostname: "127.0.0.1", port: 0 }, app, {
        allowedClients: ["256.0.0.1"],
      }],
      TypeError,
      'Cannot create the server: allowedClients holds "256.0.0.1", which is not an IP address',
    ],
    [
      [{ hostname: "127.0.0.1", port: 0 }, app, { maxRequests: 0 }],
      RangeError,
      "Cannot create the server: maxRequests must be a positive integer, not 0",
    ],
    [
      [{ hostname: "127.0.0.1", port: 0 }, app, { maxConnections: "many" }],
      TypeError,
      'Cannot create the server: maxConnections must be a number, not string "many"',
    ],
    [
      [{ hostname: "127.0.0.1", port: 0 }, app, { maxBodySize: -1 }],
      RangeError,
      "Cannot create the server: maxBodySize must be a non-negative integer or Infinity, not -1",
    ],
    [
      [{ hostname: "127.0.0.1", port: 0 }, app, { idleTimeout: -1 }],
      RangeError,
      "Cannot create the server: idleTimeout must be a non-negative integer or Infinity, not -1",
    ],
    [
      [{ hostname: "127.0.0.1", port: 0 }, app, { readTimeout: "60" }],
      TypeError,
      'Cannot create the server: readTimeout must be a number, not string "60"',
    ],
    [
      [{ hostname: "127.0.0.1", port: 0 }, app, { gracefulTimeout: 1.5 }],
      RangeError,
      "Cannot create the server: gracefulTimeout must be a non-negative integer or Infinity, not 1.5",
    ],
    [
      [{ hostname: "127.0.0.1", port: 0 }, app, {
        maxRequestsPerConnection: 0,
      }],
      RangeError,
      "Cannot create the server: maxRequestsPerConnection must be a positive integer, not 0",
    ],
    [
      [{ hostname: "127.0.0.1", port: 0 }, app, { memoryBudget: NaN }],
      RangeError,
      "Cannot create the server: memoryBudget must be a non-negative integer or Infinity, not NaN",
    ],
    [
      [{ hostname: "127.0.0.1", port: 0 }, app, { diskBudget: -1 }],
      RangeError,
      "Cannot create the server: diskBudget must be a non-negative integer or Infinity, not -1",
    ],
  ];
  for (const [args, type, message] of cases) {
    assert.throws(
      () => (makeFastCGIServer as (...a: unknown[]) => unknown)(...args),
      (error) => error instanceof type && (error as Error).message === message,
      message,
    );
  }
});

Deno.test("makeFastCGIServer() refuses an fd that is not a listening socket", async () => {
  const file = await Deno.makeTempFile();
  const fd = openSync(file, "r");
  try {
    for (const bad of [fd, 1_000_000]) {
      assert.throws(
        () => makeFastCGIServer({ fd: bad }, makeTestApp().app),
        (error) =>
          error instanceof Deno.errors.BadResource &&
          error.message ===
            `Cannot listen on fd ${bad}: it is not a listening socket`,
      );
    }
  } finally {
    closeSync(fd);
    await Deno.remove(file);
  }
});

// --- Who may connect --------------------------------------------------------

/** Whether the gateway answers a request on a new connection, or closes it
 * without a record. */
async function answers(gateway: FastCGIServer, hostname = "127.0.0.1") {
  const client = await FcgiClient.connect({
    hostname,
    port: gateway.serverPort,
  });
  try {
    await client.send(requestRecords(getParams("/who")));
    const records = await client.untilClosed();
    return records.length > 0;
  } catch (error) {
    // A refused connection may be reset under the request.
    if (error instanceof Deno.errors.ConnectionReset) return false;
    throw error;
  } finally {
    client.close();
  }
}

Deno.test("makeFastCGIServer() closes TCP connections from peers not in allowedClients, and logs them", async (t) => {
  for (
    const [name, allowedClients, served] of [
      ["not listed", ["10.1.2.3", "::1"], false],
      ["listed", ["10.1.2.3", "127.0.0.1"], true],
      ["listed as an IPv4-mapped IPv6 address", ["::ffff:127.0.0.1"], true],
      ["an empty list: nobody", [], false],
      ["no list: anyone", undefined, true],
    ] as const
  ) {
    await t.step(name, async () => {
      const server = new LoggedServer(
        { hostname: "127.0.0.1", port: 0 },
        makeTestApp().app,
        {
          quiet: true,
          allowedClients: allowedClients && [...allowedClients],
        },
      );
      const serving = server.serveForever();
      try {
        assert.equal(await answers(server), served);
        assert.equal(server.lines.length, served ? 0 : 1);
        if (!served) {
          assert.match(
            server.lines[0],
            /^127\.0\.0\.1:\d+ Refused the connection: "127\.0\.0\.1" is not in allowedClients$/,
          );
          assert.equal(server.acceptedConnections, 0);
        }
        assert.deepEqual(
          server.allowedClients,
          allowedClients === undefined ? null : allowedClients,
        );
      } finally {
        await server.shutdown();
        await serving;
      }
      assert.equal(socketsOnPort(server.serverPort), 0);
    });
  }
});

Deno.test("makeFastCGIServer() takes allowedClients from FCGI_WEB_SERVER_ADDRS", async (t) => {
  const saved = Deno.env.get("FCGI_WEB_SERVER_ADDRS");
  try {
    for (
      const [value, served, list] of [
        ["10.0.0.1, 10.0.0.2", false, ["10.0.0.1", "10.0.0.2"]],
        ["10.0.0.1,127.0.0.1", true, ["10.0.0.1", "127.0.0.1"]],
        ["", true, null],
      ] as const
    ) {
      await t.step(JSON.stringify(value), async () => {
        Deno.env.set("FCGI_WEB_SERVER_ADDRS", value);
        const server = new LoggedServer(
          { hostname: "127.0.0.1", port: 0 },
          makeTestApp().app,
          { quiet: true },
        );
        const serving = server.serveForever();
        try {
          assert.deepEqual(server.allowedClients, list);
          assert.equal(await answers(server), served);
          if (!served) {
            assert.match(
              server.lines[0],
              / Refused the connection: "127\.0\.0\.1" is not in FCGI_WEB_SERVER_ADDRS$/,
            );
          }
        } finally {
          await server.shutdown();
          await serving;
        }
      });
    }
    await t.step("the option wins over the variable", async () => {
      Deno.env.set("FCGI_WEB_SERVER_ADDRS", "10.0.0.1");
      await using server = makeFastCGIServer(
        { hostname: "127.0.0.1", port: 0 },
        makeTestApp().app,
        { quiet: true, allowedClients: ["127.0.0.1"] },
      );
      const serving = server.serveForever();
      assert.equal(await answers(server), true);
      await server.shutdown();
      await serving;
    });
    await t.step("a bad address in it: refused at start", () => {
      Deno.env.set("FCGI_WEB_SERVER_ADDRS", "127.0.0.1,web1");
      assert.throws(
        () =>
          makeFastCGIServer(
            { hostname: "127.0.0.1", port: 0 },
            makeTestApp().app,
          ),
        (error) =>
          error instanceof TypeError &&
          error.message ===
            'Cannot create the server: FCGI_WEB_SERVER_ADDRS holds "web1", which is not an IP address',
      );
    });
  } finally {
    if (saved === undefined) Deno.env.delete("FCGI_WEB_SERVER_ADDRS");
    else Deno.env.set("FCGI_WEB_SERVER_ADDRS", saved);
  }
});

Deno.test("makeFastCGIServer() gives a Unix socket the file mode of socketMode; allowedClients does not apply to it", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "wsgiref-fcgi-mode-" });
  try {
    for (const mode of [0o660, 0o600, 0o777, undefined]) {
      await t.step(
        mode === undefined ? "no mode" : mode.toString(8),
        async () => {
          const path = `${dir}/g.sock`;
          await using server = makeFastCGIServer(
            { path },
            makeTestApp().app,
            { quiet: true, socketMode: mode, allowedClients: ["10.0.0.1"] },
          );
          const expected = mode ?? (0o777 & ~Deno.umask());
          assert.equal(Deno.statSync(path).mode! & 0o777, expected);
          const serving = server.serveForever();
          const client = await FcgiClient.connect({ path });
          const response = await client.request(getParams("/mode"));
          client.close();
          assert.equal(
            decoder.decode(parseCgi(response.stdout).body),
            "Hello /mode\n",
          );
          await server.shutdown();
          await serving;
        },
      );
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("FastCGIHandler.run() writes BaseCGIHandler's bytes to any FastCGIOutput, waiting on drain()", async () => {
  const sent: string[] = [];
  let ready = false;
  let drains = 0;
  const output: FastCGIOutput = {
    write: (data) => void sent.push(decoder.decode(data)),
    get ready() {
      return ready;
    },
    drain: () => {
      drains++;
      ready = true;
      return Promise.resolve();
    },
  };
  const errors = new StringErrorStream();
  const handler = new FastCGIHandler({ readSync: () => null }, output, errors, {
    REQUEST_METHOD: "GET",
  });
  let closed = 0;
  await handler.run((_environ, startResponse) => {
    startResponse("200 OK", [["Content-Type", "text/plain"]]);
    return {
      *[Symbol.iterator]() {
        yield encoder.encode("a");
        yield encoder.encode("b");
      },
      close: () => void closed++,
    };
  });
  assert.deepEqual(sent, [
    "Status: 200 OK\r\nContent-Type: text/plain\r\n\r\na",
    "b",
  ]);
  assert.equal(drains, 1);
  assert.equal(closed, 1);
  assert.equal(errors.value, "");
});

Deno.test("FastCGIHandler.abort() stops the iteration and closes the result once", async () => {
  let closed = 0;
  let returned = 0;
  let release!: () => void;
  const output: FastCGIOutput = {
    write: () => {},
    ready: true,
    drain: () => Promise.resolve(),
  };
  const handler = new FastCGIHandler(
    { readSync: () => null },
    output,
    new StringErrorStream(),
    {},
  );
  const running = handler.run((_environ, startResponse) => {
    startResponse("200 OK", [["Content-Type", "text/plain"]]);
    let step = 0;
    return {
      [Symbol.asyncIterator]: () => ({
        next: () =>
          step++ === 0
            ? Promise.resolve({ done: false, value: encoder.encode("x") })
            : new Promise<IteratorResult<Uint8Array>>((resolve) => {
              release = () =>
                resolve({ done: false, value: encoder.encode("y") });
            }),
        return: () => {
          returned++;
          return Promise.resolve({ done: true, value: undefined });
        },
      }),
      close: () => void closed++,
    };
  });
  await waitFor(() => release !== undefined, "the second next()");
  handler.abort();
  handler.abort();
  assert.equal(closed, 1);
  assert.equal(returned, 1);
  release();
  await running;
  assert.equal(closed, 1);
});

// --- Time, memory and trust limits ----------------------------------------

/** The body of a response's CGI output, as text. */
function bodyOf(response: { stdout: Uint8Array }): string {
  return decoder.decode(parseCgi(response.stdout).body);
}

/** Resolve after `ms`. */
function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Whether the gateway has closed `client`'s connection within `ms`. */
async function closedWithin(client: FcgiClient, ms: number): Promise<boolean> {
  try {
    await client.untilClosed(ms);
    return true;
  } catch {
    return false;
  }
}

Deno.test("makeFastCGIServer() closes a connection without a request after idleTimeout", async (t) => {
  await withGateway(t, async (gateway, t) => {
    const silent = await gateway.connect();
    const partial = await gateway.connect();
    const served = await gateway.connect();
    try {
      // Three bytes of a record header, then nothing.
      await partial.send(beginRequest(1).subarray(0, 3));
      const response = await served.request(getParams("/kept"), {
        keepConn: true,
      });
      assert.equal(response.protocolStatus, REQUEST_COMPLETE);
      await t.step("under idleTimeout: open", async () => {
        await pause(150);
        assert.equal(gateway.server.openConnections, 3);
      });
      await t.step("past it: closed, the partial record logged", async () => {
        for (const client of [silent, partial, served]) {
          assert.ok(await closedWithin(client, 3000), "still open");
        }
        assert.equal(gateway.server.openConnections, 0);
        assert.equal(
          gateway.log.filter((line) =>
            /Closed the connection: 3 bytes of a record, then nothing for 400 ms \(idleTimeout\)$/
              .test(line)
          ).length,
          1,
          gateway.log.join("\n"),
        );
      });
    } finally {
      silent.close();
      partial.close();
      served.close();
    }
    await t.step("a record dripped byte by byte does not keep it", async () => {
      const client = await gateway.connect();
      try {
        const bytes = beginRequest(1, { keepConn: true });
        let closed = false;
        for (let i = 0; i < bytes.length && !closed; i++) {
          await client.send(bytes.subarray(i, i + 1)).catch(() => {
            closed = true;
          });
          await pause(60);
        }
        assert.ok(await closedWithin(client, 3000), "still open");
      } finally {
        client.close();
      }
    });
    await t.step(
      "a request in progress longer than idleTimeout: kept",
      async () => {
        const client = await gateway.connect();
        try {
          const response = await client.request(getParams("/pid?ms=900"), {
            keepConn: true,
          });
          assert.equal(parseCgi(response.stdout).status, "200 OK");
        } finally {
          client.close();
        }
      },
    );
  }, { quiet: true, idleTimeout: 400, readTimeout: 0 });
});

Deno.test("makeFastCGIServer() drops a request whose PARAMS or STDIN stop coming for readTimeout", async (t) => {
  await withGateway(t, async (gateway, t) => {
    const dropped = () =>
      gateway.log.filter((line) =>
        /Dropped request \d+: no PARAMS or STDIN record for 300 ms \(readTimeout\)$/
          .test(line)
      ).length;
    await t.step("PARAMS stop: the connection closed", async () => {
      const client = await gateway.connect();
      try {
        const params = stream(FCGI.PARAMS, 1, encodePairs(getParams("/p")));
        await client.send(join(beginRequest(1, { keepConn: true }), params));
        const partial = requestRecords(getParams("/p"), { id: 2 });
        await client.send(partial.subarray(0, 40));
        assert.ok(await closedWithin(client, 3000), "still open");
        assert.equal(dropped(), 2);
        assert.equal(gateway.server.activeRequests, 0);
      } finally {
        client.close();
      }
    });
    await t.step("STDIN stops: its spool file removed, no app", async () => {
      const client = await gateway.connect();
      try {
        await client.send(join(
          beginRequest(1),
          stream(FCGI.PARAMS, 1, encodePairs(post("/echo", "5000"))),
          record(FCGI.STDIN, 1, new Uint8Array(3000)),
        ));
        await waitFor(() => fdsUnder(gateway.tempDir) === 1, "a spool file");
        assert.ok(await closedWithin(client, 3000), "still open");
        assert.equal(fdsUnder(gateway.tempDir), 0);
        assert.equal(gateway.server.diskUsed, 0);
        assert.equal(gateway.stats.started["/echo"], undefined);
      } finally {
        client.close();
      }
    });
    await t.step("a request dripped a byte at a time: dropped", async () => {
      const client = await gateway.connect();
      try {
        const bytes = requestRecords(getParams("/drip"));
        let closed = false;
        for (let i = 0; i < bytes.length && !closed; i++) {
          await client.send(bytes.subarray(i, i + 1)).catch(() => {
            closed = true;
          });
          await pause(20);
          if (i > 60) closed ||= gateway.server.activeRequests === 0;
        }
        assert.ok(await closedWithin(client, 3000), "still open");
        assert.equal(gateway.stats.started["/drip"], undefined);
      } finally {
        client.close();
      }
    });
    await t.step("records closer than readTimeout: served", async () => {
      const client = await gateway.connect();
      try {
        const body = new Uint8Array(400).fill(7);
        await client.send(join(
          beginRequest(1),
          stream(FCGI.PARAMS, 1, encodePairs(post("/echo", "400"))),
        ));
        for (let at = 0; at < body.length; at += 100) {
          await pause(150);
          await client.send(record(FCGI.STDIN, 1, body.subarray(at, at + 100)));
        }
        await pause(150);
        await client.send(record(FCGI.STDIN, 1));
        const response = await client.response(1);
        assert.deepEqual(
          JSON.parse(bodyOf(response)),
          { length: 400, adler32: adler32(body) },
        );
      } finally {
        client.close();
      }
    });
    await t.step(
      "beside a request in progress: END_REQUEST for it alone",
      async () => {
        const client = await gateway.connect();
        try {
          await client.send(join(
            requestRecords(getParams("/pid?ms=800"), { id: 1, keepConn: true }),
            beginRequest(2, { keepConn: true }),
          ));
          const stalled = await client.response(2);
          assert.deepEqual(stalled.records.map((r) => r.type), [
            FCGI.END_REQUEST,
          ]);
          assert.equal(stalled.appStatus, 1);
          const running = await client.response(1);
          assert.equal(parseCgi(running.stdout).status, "200 OK");
          assert.equal(running.appStatus, 0);
        } finally {
          client.close();
        }
      },
    );
  }, { quiet: true, readTimeout: 300, idleTimeout: 0, spoolThreshold: 1000 });
});

Deno.test("makeFastCGIServer() frees a maxRequests slot once a refused request is answered, its input still coming", async (t) => {
  await withGateway(t, async (gateway) => {
    const refused = await gateway.connect();
    const other = await gateway.connect();
    try {
      await refused.send(join(
        beginRequest(1, { keepConn: true }),
        stream(FCGI.PARAMS, 1, encodePairs(post("/echo", "5000"))),
        record(FCGI.STDIN, 1, new Uint8Array(100)),
      ));
      const answer = await refused.response(1);
      assert.equal(
        parseCgi(answer.stdout).status,
        "413 Request Entity Too Large",
      );
      assert.equal(gateway.server.activeRequests, 0);
      const served = await other.request(getParams("/other"));
      assert.equal(bodyOf(served), "Hello /other\n");
      // The rest of its input is still read and thrown away.
      await refused.send(join(
        record(FCGI.STDIN, 1, new Uint8Array(4900)),
        record(FCGI.STDIN, 1),
      ));
      const next = await refused.request(getParams("/next"), {
        id: 2,
        keepConn: true,
      });
      assert.equal(bodyOf(next), "Hello /next\n");
    } finally {
      refused.close();
      other.close();
    }
  }, { quiet: true, maxRequests: 1, maxBodySize: 1000 });
});

Deno.test("makeFastCGIServer() refuses requests past maxRequestsPerConnection with OVERLOADED", async (t) => {
  await withGateway(t, async (gateway, t) => {
    const greedy = await gateway.connect();
    const other = await gateway.connect();
    try {
      // Three requests whose parameters never end.
      for (const id of [1, 2, 3]) {
        await greedy.send(join(
          beginRequest(id, { keepConn: true }),
          record(FCGI.PARAMS, id, encodePairs(getParams(`/r${id}`))),
        ));
      }
      await waitFor(() => gateway.server.activeRequests === 3, "3 requests");
      await t.step("one over: OVERLOADED, logged once", async () => {
        for (const id of [4, 5]) {
          await greedy.send(beginRequest(id, { keepConn: true }));
          assertOverloaded(await greedy.response(id));
        }
        assert.equal(
          gateway.log.filter((line) =>
            /Refused request 4 with OVERLOADED: the connection has 3 requests in progress \(maxRequestsPerConnection\)/
              .test(line)
          ).length,
          1,
        );
        assert.equal(gateway.log.length, 1, gateway.log.join("\n"));
      });
      await t.step("another connection: served", async () => {
        const response = await other.request(getParams("/other"), {
          keepConn: true,
        });
        assert.equal(bodyOf(response), "Hello /other\n");
      });
      await t.step("one finished: room for the next", async () => {
        await greedy.send(join(
          record(FCGI.PARAMS, 1),
          record(FCGI.STDIN, 1),
        ));
        assert.equal((await greedy.response(1)).protocolStatus, 0);
        const next = await greedy.request(getParams("/next"), {
          id: 6,
          keepConn: true,
        });
        assert.equal(bodyOf(next), "Hello /next\n");
      });
    } finally {
      greedy.close();
      other.close();
    }
  }, { quiet: true, maxRequestsPerConnection: 3, maxRequests: 10 });
});

Deno.test("makeFastCGIServer() announces FCGI_MPXS_CONNS=0 for maxRequestsPerConnection 1", async (t) => {
  await withGateway(t, async (gateway) => {
    const client = await gateway.connect();
    try {
      await client.send(record(
        FCGI.GET_VALUES,
        0,
        encodePairs({ FCGI_MPXS_CONNS: "", FCGI_MAX_REQS: "" }),
      ));
      assert.deepEqual(decodePairs((await client.next())!.content), [
        ["FCGI_MPXS_CONNS", "0"],
        ["FCGI_MAX_REQS", "1024"],
      ]);
    } finally {
      client.close();
    }
  }, { quiet: true, maxRequestsPerConnection: 1 });
});

Deno.test("makeFastCGIServer() holds bodies within memoryBudget, spools past it, refuses past diskBudget", async (t) => {
  const KIB = 1024;
  await withGateway(t, async (gateway, t) => {
    const server = gateway.server;
    const client = await gateway.connect();
    const body = new Uint8Array(40 * KIB).map((_, i) => i % 251);
    /** A request whose body is all sent, but for its end. */
    const unfinished = (id: number) =>
      client.send(join(
        beginRequest(id, { keepConn: true }),
        stream(
          FCGI.PARAMS,
          id,
          encodePairs(post("/echo", String(body.length))),
        ),
        record(FCGI.STDIN, id, body.subarray(0, 32 * KIB)),
        record(FCGI.STDIN, id, body.subarray(32 * KIB)),
      ));
    try {
      await t.step("under memoryBudget: in memory", async () => {
        await unfinished(1);
        await waitFor(() => server.memoryUsed >= 40 * KIB, "40 KiB held");
        assert.ok(server.memoryUsed <= 64 * KIB, `${server.memoryUsed}`);
        assert.equal(server.diskUsed, 0);
        assert.equal(fdsUnder(gateway.tempDir), 0);
      });
      await t.step("past it: spooled, under spoolThreshold", async () => {
        await unfinished(2);
        await unfinished(3);
        await unfinished(4);
        await waitFor(() => server.diskUsed === 120 * KIB, "120 KiB spooled");
        assert.equal(fdsUnder(gateway.tempDir), 3);
        assert.ok(server.memoryUsed <= 64 * KIB, `${server.memoryUsed}`);
      });
      await t.step(
        "past diskBudget: 503, the file removed, no app",
        async () => {
          await unfinished(5);
          const refused = await client.response(5);
          assert.equal(
            decoder.decode(refused.stdout),
            "Status: 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n" +
              "Content-Length: 66\r\n\r\n" +
              "The server is too busy to take this request now; try again later.\n",
          );
          assert.equal(refused.protocolStatus, REQUEST_COMPLETE);
          assert.equal(server.diskUsed, 120 * KIB);
          assert.equal(fdsUnder(gateway.tempDir), 3);
          assert.equal(gateway.stats.started["/echo"], undefined);
          assert.ok(
            gateway.log.some((line) =>
              / Refused request 5 with 503: its body would take the bytes spooled for requests past 131072 \(diskBudget\)$/
                .test(line)
            ),
            gateway.log.join("\n"),
          );
        },
      );
      await t.step("finished: each body whole", async () => {
        for (const id of [1, 4]) {
          await client.send(record(FCGI.STDIN, id));
          const response = await client.response(id);
          assert.deepEqual(
            JSON.parse(bodyOf(response)),
            { length: body.length, adler32: adler32(body) },
          );
        }
        assert.equal(server.diskUsed, 80 * KIB);
        assert.equal(fdsUnder(gateway.tempDir), 2);
      });
      await t.step("the connection gone: nothing held", async () => {
        client.close();
        await waitFor(() => server.openConnections === 0, "closed");
        assert.deepEqual([server.memoryUsed, server.diskUsed], [0, 0]);
        assert.equal(fdsUnder(gateway.tempDir), 0);
      });
    } finally {
      client.close();
    }
  }, {
    quiet: true,
    spoolThreshold: 1024 * KIB,
    memoryBudget: 64 * KIB,
    diskBudget: 128 * KIB,
  });
});

Deno.test("makeFastCGIServer() counts PARAMS against memoryBudget: 503 past it", async (t) => {
  await withGateway(t, async (gateway, t) => {
    const server = gateway.server;
    const client = await gateway.connect();
    const pad = "x".repeat(6000);
    try {
      for (const id of [1, 2]) {
        await client.send(join(
          beginRequest(id, { keepConn: true }),
          record(
            FCGI.PARAMS,
            id,
            encodePairs(getParams("/", { HTTP_X_PAD: pad })),
          ),
        ));
      }
      await waitFor(() => server.memoryUsed > 12000, "12 kB held");
      await t.step("past it: 503 before the parameters end", async () => {
        await client.send(join(
          beginRequest(3, { keepConn: true }),
          record(
            FCGI.PARAMS,
            3,
            encodePairs(getParams("/", { HTTP_X_PAD: pad })),
          ),
        ));
        const refused = await client.response(3);
        assert.equal(
          parseCgi(refused.stdout).status,
          "503 Service Unavailable",
        );
        assert.ok(server.memoryUsed <= 16 * 1024, `${server.memoryUsed}`);
      });
      await t.step("the requests gone: nothing held", async () => {
        for (const id of [1, 2]) {
          await client.send(record(FCGI.ABORT_REQUEST, id));
          await client.response(id);
        }
        assert.equal(server.memoryUsed, 0);
        const response = await client.request(getParams("/after"), {
          id: 4,
          keepConn: true,
        });
        assert.equal(bodyOf(response), "Hello /after\n");
        assert.equal(server.memoryUsed, 0);
      });
    } finally {
      client.close();
    }
  }, { quiet: true, memoryBudget: 16 * 1024 });
});

/** Answers the CGI variables' names, `CONTENT_LENGTH` and `HTTP_X_TEST`. */
const namesApp: Application = (environ, startResponse) => {
  const input = environ["wsgi.input"]!;
  input.read();
  startResponse("200 OK", [["Content-Type", "application/json"]]);
  return [encoder.encode(JSON.stringify({
    names: Object.keys(environ).filter((name) => !name.startsWith("wsgi."))
      .sort(),
    CONTENT_LENGTH: environ.CONTENT_LENGTH,
    HTTP_X_TEST: environ.HTTP_X_TEST,
  }))];
};

Deno.test("makeFastCGIServer() normalises CONTENT_LENGTH as makeServer does and drops bad parameter names", async (t) => {
  await withGateway(t, async (gateway, t) => {
    const envOf = async (
      params: Record<string, string>,
      stdin?: Uint8Array,
    ) => {
      const client = await gateway.connect();
      try {
        const response = await client.request(params, { stdin });
        return parseCgi(response.stdout);
      } finally {
        client.close();
      }
    };
    // RFC 9110 §8.6, as makeServer applies it: one decimal value, spaces
    // around it dropped; anything else refused (null: 400).
    for (
      const [declared, expected] of [
        [" 10 ", "10"],
        ["\t10", "10"],
        ["010", "10"],
        ["10, 10", "10"],
        ["1 0", null],
        ["10, 11", null],
        ["+10", null],
        ["0x0a", null],
      ] as const
    ) {
      await t.step(
        `CONTENT_LENGTH ${JSON.stringify(declared)}: ${expected ?? 400}`,
        async () => {
          const cgi = await envOf(
            {
              ...getParams("/env"),
              REQUEST_METHOD: "POST",
              CONTENT_LENGTH: declared,
            },
            new Uint8Array(10),
          );
          if (expected === null) {
            assert.equal(cgi.status, "400 Bad Request");
            return;
          }
          assert.equal(cgi.status, "200 OK");
          assert.equal(
            JSON.parse(decoder.decode(cgi.body)).CONTENT_LENGTH,
            expected,
          );
        },
      );
    }
    await t.step(
      "names with CR, LF, NUL, space, = or none: dropped, logged once",
      async () => {
        const before = gateway.log.length;
        const cgi = await envOf({
          ...getParams("/env"),
          "HTTP_X_TEST\r\nX_INJECTED": "a",
          "HTTP_X\nB": "b",
          "HTTP_X\0C": "c",
          "HTTP X": "d",
          "HTTP_X=E": "e",
          "": "f",
          HTTP_X_TEST: "kept",
        });
        assert.equal(cgi.status, "200 OK");
        const seen = JSON.parse(decoder.decode(cgi.body));
        assert.equal(seen.HTTP_X_TEST, "kept");
        const names = Object.keys(seen.environ ?? {});
        for (const name of names) assert.match(name, /^[!-<>-~]+$/);
        const lines = gateway.log.slice(before).filter((line) =>
          / Dropped 6 parameters of request 1 whose names cannot be CGI variable names: /
            .test(line)
        );
        assert.equal(lines.length, 1, gateway.log.join("\n"));
        for (
          const name of [
            "HTTP_X_TEST\\r\\nX_INJECTED",
            "HTTP X",
            "HTTP_X=E",
            '""',
          ]
        ) {
          assert.ok(lines[0].includes(name), lines[0]);
        }
      },
    );
  }, { quiet: true, app: namesApp });
});

Deno.test("FastCGIServer.shutdown() cuts requests still running after gracefulTimeout", async (t) => {
  await withGateway(t, async (gateway, t) => {
    const client = await gateway.connect();
    const quick = await gateway.connect();
    try {
      await client.send(requestRecords(getParams("/hang"), { keepConn: true }));
      assert.equal((await client.nextView())!.type, FCGI.STDOUT);
      await quick.send(requestRecords(getParams("/pid?ms=100")));
      await waitFor(() => gateway.stats.started["/pid"] === 1, "/pid");
      const stopping = gateway.server.shutdown();
      await t.step("a request done under it: answered whole", async () => {
        const response = await quick.response();
        assert.equal(parseCgi(response.stdout).status, "200 OK");
      });
      await t.step(
        "one still running past it: cut, its result closed",
        async () => {
          assert.ok(await closedWithin(client, 5000), "still open");
          await stopping;
          assert.equal(gateway.stats.closes["/hang"], 1);
          assert.ok(
            gateway.log.some((line) =>
              / Request cut short at shutdown: still running after 400 ms \(gracefulTimeout\) \(request 1\)$/
                .test(line)
            ),
            gateway.log.join("\n"),
          );
        },
      );
    } finally {
      client.close();
      quick.close();
    }
  }, { quiet: true, gracefulTimeout: 400 });
});
