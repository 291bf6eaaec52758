// Tests of simple_server.ts over real sockets: servers on 127.0.0.1, port 0,
// raw `Deno.connect` requests where `fetch` would normalise the wire.

import assert from "node:assert/strict";
import {
  demoApp,
  makeServer,
  type MakeServerOptions,
  ServerHandler,
  toFetchHandler,
  WSGIRequestHandler,
  WSGIServer,
} from "../simple_server.ts";
import { StringErrorStream } from "../_io.ts";
import { FileWrapper } from "../util.ts";
import type {
  Application,
  Environ,
  HeaderList,
  InputStream,
  ResponseBody,
  StartResponse,
} from "../types.ts";
import {
  fdsUnder,
  openFds,
  socketsAt,
  socketsOnPort,
  waitFor,
  within,
} from "./fixtures/process.ts";
import { findNginx, startNginx } from "./fixtures/nginx.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const SERVER = `WSGIServer/0.2 Deno/${Deno.version.deno}`;
const ERROR_PAGE =
  "A server error occurred.  Please contact the administrator.";
const FIXTURES = new URL("./fixtures_server/", import.meta.url);
const SIMPLE_SERVER = new URL("../simple_server.ts", import.meta.url).pathname;
const HELLO_EXAMPLE = new URL("../examples/hello.ts", import.meta.url).pathname;

/** Bytes of a latin-1 string (each char one byte). */
function latin1(s: string): Uint8Array<ArrayBuffer> {
  return Uint8Array.from(s, (c) => c.charCodeAt(0));
}

/** A latin-1 string of bytes. */
function fromLatin1(bytes: Uint8Array): string {
  let out = "";
  for (const b of bytes) out += String.fromCharCode(b);
  return out;
}

function concat(chunks: Uint8Array[]): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.length;
  }
  return out;
}

function text(body: string, headers: HeaderList = []): Application {
  return (_environ, startResponse) => {
    startResponse("200 OK", [["Content-Type", "text/plain"], ...headers]);
    return [encoder.encode(body)];
  };
}

/** A promise and its resolver. */
function gate<T = void>(): { promise: Promise<T>; open: (value: T) => void } {
  let open!: (value: T) => void;
  const promise = new Promise<T>((resolve) => open = resolve);
  return { promise, open };
}

/** A server whose logs (access and errors) go to `log`. */
function logged(log: StringErrorStream, base = WSGIRequestHandler) {
  return class extends base {
    override getStderr() {
      return log;
    }
  };
}

interface Context {
  server: WSGIServer;
  port: number;
  log: StringErrorStream;
  url: string;
}

/** Serve `app` on 127.0.0.1, port 0, while `body` runs, then shut down. */
async function withServer(
  app: Application,
  body: (context: Context) => Promise<void>,
  options: MakeServerOptions = {},
): Promise<void> {
  const log = new StringErrorStream();
  const server = makeServer("127.0.0.1", 0, app, {
    ...options,
    handlerClass: logged(log, options.handlerClass),
  });
  const serving = server.serveForever();
  try {
    await body({
      server,
      port: server.serverPort,
      log,
      url: `http://127.0.0.1:${server.serverPort}`,
    });
  } finally {
    // Bounded: a server that never stops fails the test instead of hanging.
    await within(server.shutdown(), 10_000, "shutdown()");
    await serving;
  }
}

/**
 * Send raw bytes (a request with `Connection: close`) to 127.0.0.1:`port`
 * or a Unix socket and read the raw response until the server closes the
 * connection.
 */
async function rawRequest(
  port: number | { path: string },
  request: string | Uint8Array,
): Promise<Uint8Array> {
  const conn = typeof port === "number"
    ? await Deno.connect({ hostname: "127.0.0.1", port })
    : await Deno.connect({ transport: "unix", path: port.path });
  try {
    let data = typeof request === "string" ? latin1(request) : request;
    while (data.length > 0) data = data.subarray(await conn.write(data));
    const chunks: Uint8Array[] = [];
    const buffer = new Uint8Array(64 * 1024);
    for (let i = 0; i < 100_000; i++) {
      const n = await conn.read(buffer);
      if (n === null) break;
      chunks.push(buffer.slice(0, n));
    }
    return concat(chunks);
  } finally {
    conn.close();
  }
}

/**
 * Send raw bytes and read one response with a `content-length`, then close
 * the connection (for a server that would keep it open).
 */
async function rawResponse(port: number, request: string): Promise<Uint8Array> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    let data: Uint8Array = latin1(request);
    while (data.length > 0) data = data.subarray(await conn.write(data));
    let received = new Uint8Array(0);
    const buffer = new Uint8Array(64 * 1024);
    for (let i = 0; i < 100_000; i++) {
      const head = fromLatin1(received);
      const end = head.indexOf("\r\n\r\n");
      const length = /\r\ncontent-length: (\d+)\r\n/i.exec(head);
      if (end >= 0 && length && received.length >= end + 4 + +length[1]) {
        return received;
      }
      const n = await conn.read(buffer);
      if (n === null) break;
      received = concat([received, buffer.subarray(0, n)]);
    }
    throw new Error(`Incomplete response: ${fromLatin1(received)}`);
  } finally {
    conn.close();
  }
}

/** The raw response as a latin-1 string, its `date:` value replaced. */
function normalised(response: Uint8Array): string {
  return fromLatin1(response).replace(
    /\r\ndate: [A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT\r\n/,
    "\r\ndate: <date>\r\n",
  );
}

/** Undo chunked transfer coding; `complete` is false if cut short. */
function dechunk(body: string): { body: string; complete: boolean } {
  let out = "";
  let rest = body;
  for (let i = 0; i < 100_000; i++) {
    const eol = rest.indexOf("\r\n");
    if (eol < 0) return { body: out, complete: false };
    const size = parseInt(rest.slice(0, eol), 16);
    if (size === 0) return { body: out, complete: rest === "0\r\n\r\n" };
    out += rest.slice(eol + 2, eol + 2 + size);
    rest = rest.slice(eol + 4 + size);
  }
  throw new Error("Too many chunks");
}

/** An application that records the environ it was called with. */
function recorder(): { app: Application; environs: Environ[] } {
  const environs: Environ[] = [];
  const app: Application = (environ, startResponse) => {
    environs.push(environ);
    startResponse("200 OK", [["Content-Type", "text/plain"]]);
    return [encoder.encode("ok")];
  };
  return { app, environs };
}

const STRING_KEYS = [
  "REQUEST_METHOD",
  "SCRIPT_NAME",
  "PATH_INFO",
  "QUERY_STRING",
  "CONTENT_TYPE",
  "CONTENT_LENGTH",
  "SERVER_NAME",
  "SERVER_PORT",
  "SERVER_PROTOCOL",
  "SERVER_SOFTWARE",
  "GATEWAY_INTERFACE",
  "REMOTE_ADDR",
  "REMOTE_HOST",
];

function cgiVariables(environ: Environ): Record<string, string> {
  return Object.fromEntries(
    Object.entries(environ).filter(([key]) =>
      STRING_KEYS.includes(key) || key.startsWith("HTTP_")
    ),
  ) as Record<string, string>;
}

// ---------------------------------------------------------------- environ

Deno.test("WSGIRequestHandler.getEnviron() builds the CGI variables from the raw request", async () => {
  const { app, environs } = recorder();
  await withServer(app, async ({ port }) => {
    const request = concat([
      latin1("GET /a%2Fb/caf%C3%A9/"),
      latin1("\xc3\xa9"), // raw UTF-8 bytes of "é" in the target
      latin1("?q=%41&x="),
      latin1("\xc3\xa9"),
      latin1(
        " HTTP/1.1\r\nHost: example.test:8080\r\nX-CuStOm-Name: Value\r\n" +
          "X-Rep: 1\r\nx-rep: 2\r\nX-Latin: ",
      ),
      latin1("\xc3\xa9"),
      latin1(
        "\r\nServer-Name: evil\r\nPath-Info: /evil\r\nConnection: close\r\n\r\n",
      ),
    ]);
    const response = normalised(await rawRequest(port, request));
    assert.equal(
      response,
      `HTTP/1.1 200 OK\r\nServer: ${SERVER}\r\nContent-Type: text/plain\r\n` +
        "content-length: 2\r\ndate: <date>\r\n" +
        "connection: close\r\n\r\nok",
    );
    assert.deepEqual(cgiVariables(environs[0]), {
      CONTENT_LENGTH: "",
      CONTENT_TYPE: "text/plain",
      GATEWAY_INTERFACE: "CGI/1.1",
      HTTP_CONNECTION: "close",
      HTTP_HOST: "example.test:8080",
      HTTP_X_CUSTOM_NAME: "Value",
      HTTP_X_LATIN: "\xc3\xa9",
      HTTP_X_REP: "1, 2",
      PATH_INFO: "/a/b/caf\xc3\xa9/\xc3\xa9",
      QUERY_STRING: "q=%41&x=\xc3\xa9",
      REMOTE_ADDR: "127.0.0.1",
      REMOTE_HOST: "",
      REQUEST_METHOD: "GET",
      SCRIPT_NAME: "",
      SERVER_NAME: "localhost",
      SERVER_PORT: String(port),
      SERVER_PROTOCOL: "HTTP/1.1",
      SERVER_SOFTWARE: "WSGIServer/0.2",
    });
  });
});

Deno.test("WSGIRequestHandler.getEnviron() sets the wsgi.* keys and no process variable", async () => {
  const { app, environs } = recorder();
  Deno.env.set("WSGIREF_TEST_SECRET", "do not leak");
  try {
    await withServer(app, async ({ url }) => {
      const response = await fetch(`${url}/`);
      assert.equal(await response.text(), "ok");
    });
  } finally {
    Deno.env.delete("WSGIREF_TEST_SECRET");
  }
  const environ = environs[0];
  assert.deepEqual(environ["wsgi.version"], [1, 0]);
  assert.equal(environ["wsgi.url_scheme"], "http");
  assert.equal(environ["wsgi.multithread"], false);
  assert.equal(environ["wsgi.multiprocess"], false);
  assert.equal(environ["wsgi.run_once"], false);
  assert.equal(environ["wsgi.file_wrapper"], FileWrapper);
  assert.equal(typeof environ["wsgi.input"]?.read, "function");
  assert.equal(typeof environ["wsgi.errors"]?.writelines, "function");
  assert.equal("WSGIREF_TEST_SECRET" in environ, false);
  assert.equal("PATH" in environ, false);
  assert.equal("HOME" in environ, false);
});

Deno.test("WSGIRequestHandler.getEnviron() splits and decodes the request target", async (t) => {
  const { app, environs } = recorder();
  const rows: [string, string, string][] = [
    ["/", "/", ""],
    ["/a%20b", "/a b", ""],
    ["/%2F%2f", "///", ""],
    ["/%zz%4", "/%zz%4", ""],
    ["/%e9%C3%A9", "/\xe9\xc3\xa9", ""],
    ["/%00%0D%0A", "/\x00\r\n", ""],
    ["/x?", "/x", ""],
    ["/x?a=1&b", "/x", "a=1&b"],
    ["/x?a?b=%20", "/x", "a?b=%20"],
    // http.server reduces a leading "//" (gh-87389).
    ["//double//slash", "/double//slash", ""],
    ["///x?//y", "/x", "//y"],
    ["//", "/", ""],
    ["/a/../b", "/a/../b", ""],
    ["/x?q#frag", "/x", "q#frag"],
  ];
  await withServer(app, async ({ port }) => {
    for (const [target, path, query] of rows) {
      await t.step(target, async () => {
        const response = fromLatin1(
          await rawRequest(
            port,
            `GET ${target} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n`,
          ),
        );
        assert.match(response, /^HTTP\/1.1 200 OK\r\n/);
        const environ = environs.at(-1)!;
        assert.equal(environ.PATH_INFO, path);
        assert.equal(environ.QUERY_STRING, query);
      });
    }
  });
});

Deno.test("WSGIRequestHandler.getEnviron() keeps the method and Content-Type as sent", async () => {
  const { app, environs } = recorder();
  await withServer(app, async ({ port }) => {
    await rawRequest(
      port,
      "DELETE /x HTTP/1.1\r\nHost: h\r\nContent-Type: application/json; charset=utf-8\r\n" +
        "Connection: close\r\n\r\n",
    );
    await rawRequest(
      port,
      "PROPFIND /x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    );
  });
  assert.equal(environs[0].REQUEST_METHOD, "DELETE");
  assert.equal(environs[0].CONTENT_TYPE, "application/json; charset=utf-8");
  assert.equal("HTTP_CONTENT_TYPE" in environs[0], false);
  assert.equal(environs[1].REQUEST_METHOD, "PROPFIND");
  assert.equal(environs[1].CONTENT_TYPE, "text/plain");
});

Deno.test("toFetchHandler() takes SERVER_NAME, SERVER_PORT and the scheme from the URL", async (t) => {
  const { app, environs } = recorder();
  const handler = toFetchHandler(app, { quiet: true });
  const rows: [string, string, string, string][] = [
    ["http://example.com/", "example.com", "80", "http"],
    ["http://example.com:8080/x", "example.com", "8080", "http"],
    ["https://example.com/", "example.com", "443", "https"],
    ["https://example.com:8443/?q", "example.com", "8443", "https"],
    ["http://[::1]:9000/", "::1", "9000", "http"],
    ["http://[::1]/", "::1", "80", "http"],
  ];
  for (const [url, name, port, scheme] of rows) {
    await t.step(url, async () => {
      const response = await handler(new Request(url));
      assert.equal(await response.text(), "ok");
      const environ = environs.at(-1)!;
      assert.equal(environ.SERVER_NAME, name);
      assert.equal(environ.SERVER_PORT, port);
      assert.equal(environ["wsgi.url_scheme"], scheme);
      assert.equal(environ.HTTPS, scheme === "https" ? "on" : undefined);
      assert.equal("REMOTE_ADDR" in environ, false);
    });
  }
});

Deno.test("toFetchHandler() takes REMOTE_ADDR from the handler info", async () => {
  const { app, environs } = recorder();
  const handler = toFetchHandler(app, { quiet: true });
  const response = await handler(new Request("http://h/"), {
    remoteAddr: { transport: "tcp", hostname: "192.0.2.7", port: 4321 },
    completed: Promise.resolve(),
  });
  await response.body?.cancel();
  assert.equal(environs[0].REMOTE_ADDR, "192.0.2.7");
});

Deno.test("toFetchHandler() refuses an application that is not a function", () => {
  for (const app of [null, undefined, "app", {}, [demoApp]]) {
    assert.throws(
      () => toFetchHandler(app as unknown as Application),
      (error: Error) =>
        error instanceof TypeError &&
        error.message.startsWith(
          "Cannot make a fetch handler: the application must be a function, not",
        ),
    );
  }
});

// ------------------------------------------------------------------ bodies

/** Echo the body back, with CONTENT_LENGTH in a header. */
const echoApp: Application = (environ, startResponse) => {
  const body = (environ["wsgi.input"] as InputStream).read();
  startResponse("200 OK", [
    ["Content-Type", "application/octet-stream"],
    ["X-Content-Length", String(environ.CONTENT_LENGTH)],
  ]);
  return [body];
};

async function tempDirEntries(dir: string): Promise<string[]> {
  return (await Array.fromAsync(Deno.readDir(dir))).map((e) => e.name);
}

Deno.test("WSGIRequestHandler.handle() reads an empty and a small body into wsgi.input", async (t) => {
  await withServer(echoApp, async ({ url }) => {
    await t.step("no body (GET)", async () => {
      const response = await fetch(`${url}/`);
      assert.equal(response.headers.get("x-content-length"), "");
      assert.equal((await response.bytes()).length, 0);
    });
    await t.step("empty body, Content-Length: 0", async () => {
      const response = await fetch(`${url}/`, { method: "POST", body: "" });
      assert.equal(response.headers.get("x-content-length"), "0");
      assert.equal((await response.bytes()).length, 0);
    });
    await t.step("small body with every byte value", async () => {
      const body = Uint8Array.from({ length: 512 }, (_, i) => i % 256);
      const response = await fetch(`${url}/`, { method: "PUT", body });
      assert.equal(response.headers.get("x-content-length"), "512");
      assert.deepEqual(await response.bytes(), body);
    });
  });
});

Deno.test("WSGIRequestHandler.handle() spools a body above spoolThreshold and removes the file", async (t) => {
  const tempDir = await Deno.makeTempDir({ prefix: "wsgiref-test-" });
  let inputName = "";
  let entriesDuringApp: string[] = [];
  const app: Application = async (environ, startResponse) => {
    const input = environ["wsgi.input"] as InputStream;
    inputName = input.constructor.name;
    entriesDuringApp = await tempDirEntries(tempDir);
    const first = input.readline();
    const rest = input.read();
    startResponse("200 OK", [
      ["Content-Type", "application/octet-stream"],
      ["X-Content-Length", String(environ.CONTENT_LENGTH)],
    ]);
    return [first, rest];
  };
  const body = concat([
    encoder.encode("first line\n"),
    Uint8Array.from({ length: 5000 }, (_, i) => (i * 7) % 256),
  ]);
  try {
    await withServer(app, async ({ url }) => {
      await t.step("with Content-Length", async () => {
        const response = await fetch(`${url}/`, { method: "POST", body });
        assert.equal(response.status, 200);
        assert.equal(response.headers.get("x-content-length"), "5011");
        assert.deepEqual(await response.bytes(), body);
        assert.equal(inputName, "ReaderInput");
      });
      await t.step("chunked, no Content-Length", async () => {
        const stream = ReadableStream.from([
          body.subarray(0, 700),
          body.subarray(700, 3000),
          body.subarray(3000),
        ]);
        const response = await fetch(`${url}/`, {
          method: "POST",
          body: stream,
        });
        assert.equal(response.headers.get("x-content-length"), "5011");
        assert.deepEqual(await response.bytes(), body);
        assert.equal(inputName, "ReaderInput");
      });
    }, { spoolThreshold: 1000, tempDir });
    // Unlinked as soon as it was opened, where the system allows it.
    if (Deno.build.os !== "windows") assert.deepEqual(entriesDuringApp, []);
    assert.deepEqual(await tempDirEntries(tempDir), []);
  } finally {
    await Deno.remove(tempDir, { recursive: true });
  }
});

Deno.test("WSGIRequestHandler.handle() gives a wsgi.input with readinto(), in memory and spooled", async (t) => {
  const body = Uint8Array.from({ length: 5000 }, (_, i) => (i * 7) % 256);
  const app: Application = (environ, startResponse) => {
    const input = environ["wsgi.input"] as InputStream;
    const buffer = new Uint8Array(777);
    const pieces: Uint8Array[] = [];
    for (let n; (n = input.readinto!(buffer)) > 0;) {
      pieces.push(buffer.slice(0, n));
    }
    startResponse("200 OK", [
      ["Content-Type", "application/octet-stream"],
      ["X-Input", input.constructor.name],
    ]);
    return pieces;
  };
  for (
    const [where, spoolThreshold, kind] of [
      ["in memory", 10_000, "BytesInput"],
      ["spooled", 1000, "ReaderInput"],
    ] as const
  ) {
    await t.step(where, async () => {
      const fetchHandler = toFetchHandler(app, { quiet: true, spoolThreshold });
      const response = await fetchHandler(
        new Request("http://localhost/", { method: "POST", body }),
      );
      assert.equal(response.headers.get("x-input"), kind);
      assert.deepEqual(await response.bytes(), body);
    });
  }
});

Deno.test("WSGIRequestHandler.handle() removes a spooled body after an error", async () => {
  const tempDir = await Deno.makeTempDir({ prefix: "wsgiref-test-" });
  try {
    await withServer(() => {
      throw new Error("boom");
    }, async ({ url, log }) => {
      const response = await fetch(`${url}/`, {
        method: "POST",
        body: new Uint8Array(3000),
      });
      assert.equal(response.status, 500);
      assert.equal(await response.text(), ERROR_PAGE);
      assert.match(log.value, /Error: boom/);
    }, { spoolThreshold: 100, tempDir });
    assert.deepEqual(await tempDirEntries(tempDir), []);
  } finally {
    await Deno.remove(tempDir, { recursive: true });
  }
});

Deno.test("WSGIRequestHandler.handle() sets CONTENT_LENGTH for a chunked upload kept in memory", async () => {
  await withServer(echoApp, async ({ url }) => {
    const response = await fetch(`${url}/`, {
      method: "POST",
      body: ReadableStream.from([encoder.encode("ab"), encoder.encode("cde")]),
    });
    assert.equal(response.headers.get("x-content-length"), "5");
    assert.equal(await response.text(), "abcde");
  });
});

Deno.test("WSGIRequestHandler.handle() answers 413 to a body over maxBodySize without calling the application", async (t) => {
  let calls = 0;
  const app: Application = (environ, startResponse) => {
    calls++;
    return echoApp(environ, startResponse);
  };
  await withServer(app, async ({ url, port, log }) => {
    await t.step("Content-Length just at the maximum", async () => {
      const response = await fetch(`${url}/`, {
        method: "POST",
        body: new Uint8Array(100),
      });
      assert.equal(response.status, 200);
      assert.equal((await response.bytes()).length, 100);
      assert.equal(calls, 1);
    });
    await t.step("Content-Length over the maximum", async () => {
      const response = normalised(
        await rawRequest(
          port,
          "POST /big HTTP/1.1\r\nHost: h\r\nContent-Length: 101\r\nConnection: close\r\n\r\n" +
            "x".repeat(101),
        ),
      );
      assert.equal(
        response,
        `HTTP/1.1 413 Payload Too Large\r\nServer: ${SERVER}\r\n` +
          "Content-Type: text/plain; charset=utf-8\r\ncontent-length: 43\r\ndate: <date>\r\n" +
          "connection: close\r\n\r\nThe request body is larger than 100 bytes.\n",
      );
      assert.equal(calls, 1);
      assert.match(log.value, /"POST \/big HTTP\/1.1" 413 43\n/);
    });
    await t.step("chunked body growing over the maximum", async () => {
      const response = await fetch(`${url}/`, {
        method: "POST",
        body: ReadableStream.from([new Uint8Array(60), new Uint8Array(60)]),
      });
      assert.equal(response.status, 413);
      await response.body?.cancel();
      assert.equal(calls, 1);
    });
  }, { maxBodySize: 100, spoolThreshold: 10 });
});

Deno.test("WSGIRequestHandler.handle() takes repeated equal Content-Length lines as one length, and refuses the rest", async (t) => {
  let calls = 0;
  const app: Application = (environ, startResponse) => {
    calls++;
    return echoApp(environ, startResponse);
  };
  const send = (port: number, lines: string, body = "abc") =>
    rawRequest(
      port,
      `POST /len HTTP/1.1\r\nHost: h\r\nConnection: close\r\n${lines}\r\n${body}`,
    ).then(normalised);
  // RFC 9110 §8.6: the same decimal value repeated may be taken as one.
  const accepted: [string, string][] = [
    ["Content-Length: 3\r\nContent-Length: 3\r\n", "two equal lines"],
    ["Content-Length: 3\r\nContent-Length: 03\r\n", "3 and 03"],
    ["Content-Length: 003\r\n", "leading zeros"],
  ];
  // What Deno.serve itself answers 400, before any handler runs.
  const refusedByDeno: [string, string][] = [
    ["Content-Length: 3\r\nContent-Length: 4\r\n", "two differing lines"],
    ["Content-Length: 3, 3\r\n", "a list on one line"],
    ["Content-Length: +3\r\n", "a sign"],
  ];
  await withServer(app, async ({ port, log }) => {
    for (const [lines, what] of accepted) {
      await t.step(what, async () => {
        const response = await send(port, lines);
        assert.match(response, /^HTTP\/1.1 200 OK\r\n/);
        assert.match(response, /\r\nx-content-length: 3\r\n/i);
        assert.ok(response.endsWith("\r\n\r\nabc"), response);
      });
    }
    assert.equal(calls, accepted.length);
    for (const [lines, what] of refusedByDeno) {
      await t.step(`${what} (refused by Deno.serve)`, async () => {
        const response = await send(port, lines);
        assert.match(response, /^HTTP\/1.1 400 Bad Request\r\n/);
      });
    }
    await t.step("a length over Number.MAX_SAFE_INTEGER", async () => {
      // Deno.serve keeps the connection open for the rest of the body the
      // client announced: read the response by its own length.
      const response = normalised(
        await rawResponse(
          port,
          "POST /len HTTP/1.1\r\nHost: h\r\nConnection: close\r\n" +
            "Content-Length: 9007199254740992\r\n\r\nabc",
        ),
      );
      assert.equal(
        response,
        `HTTP/1.1 400 Bad Request\r\nServer: ${SERVER}\r\n` +
          "Content-Type: text/plain; charset=utf-8\r\ncontent-length: 52\r\n" +
          "date: <date>\r\nconnection: close\r\n\r\n" +
          "The request's Content-Length is not a valid length.\n",
      );
      assert.match(log.value, /"POST \/len HTTP\/1.1" 400 52\n/);
    });
    assert.equal(calls, accepted.length, "the application was not called");
  });
});

// --------------------------------------------------------------- responses

Deno.test("ServerHandler sends a one-chunk Array as a fixed-length body", async () => {
  await withServer(text("Hello world!"), async ({ port }) => {
    assert.equal(
      normalised(
        await rawRequest(
          port,
          "GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        ),
      ),
      `HTTP/1.1 200 OK\r\nServer: ${SERVER}\r\n` +
        "Content-Type: text/plain\r\ncontent-length: 12\r\ndate: <date>\r\n" +
        "connection: close\r\n\r\nHello world!",
    );
  });
});

Deno.test("ServerHandler sends fixed bodies byte for byte, ASCII or not, small or large", async (t) => {
  const bodies: Record<string, Uint8Array> = {
    "/ascii-1": latin1("x"),
    "/ascii-64": latin1("a".repeat(63) + "\n"),
    "/ascii-65": latin1("b".repeat(64) + "\x00"),
    "/ascii-1024": latin1("c".repeat(1023) + "\x7f"),
    "/ascii-1025": latin1("d".repeat(1025)),
    "/latin1": latin1("caf\xe9"),
    "/utf8": encoder.encode("café ☕"),
    "/bad-utf8": Uint8Array.of(0x61, 0xc3, 0x28, 0xff),
    "/bom": Uint8Array.of(0xef, 0xbb, 0xbf, 0x61),
    "/all-bytes": Uint8Array.from({ length: 256 }, (_, i) => i),
  };
  const app: Application = (environ, startResponse) => {
    const path = environ.PATH_INFO as string;
    const untyped = path.endsWith("/untyped");
    const body = bodies[untyped ? path.slice(0, -8) : path];
    startResponse("200 OK", untyped ? [] : [["Content-Type", "text/x-test"]]);
    return [body];
  };
  await withServer(app, async ({ port }) => {
    for (const [path, body] of Object.entries(bodies)) {
      for (const suffix of ["", "/untyped"]) {
        await t.step(`${path}${suffix}`, async () => {
          const raw = fromLatin1(
            await rawRequest(
              port,
              `GET ${path}${suffix} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n`,
            ),
          );
          const split = raw.indexOf("\r\n\r\n");
          const head = raw.slice(0, split).toLowerCase();
          assert.equal(raw.slice(split + 4), fromLatin1(body));
          assert.match(
            head,
            new RegExp(`\r\ncontent-length: ${body.length}\r\n`),
          );
          // Only the application's Content-Type, or none at all.
          assert.equal(
            head.match(/\r\ncontent-type: [^\r]*/g)?.join() ?? "",
            suffix ? "" : "\r\ncontent-type: text/x-test",
          );
        });
      }
    }
  });
});

Deno.test("ServerHandler without serverSoftware sends a lone Content-Type as the application gave it", async (t) => {
  class Bare extends ServerHandler {
    override serverSoftware = null;
  }
  class BareRequest extends WSGIRequestHandler {
    override serverHandlerClass = Bare;
  }
  const app: Application = (environ, startResponse) => {
    const [status, type] = environ.PATH_INFO === "/missing"
      ? ["404 Not Found", "text/plain"]
      : ["200 OK", "application/json; charset=latin-1"];
    startResponse(status, [["Content-Type", type]]);
    return [encoder.encode("{}")];
  };
  await withServer(app, async ({ port }) => {
    for (
      const [path, status, type] of [
        ["/", "200 OK", "application/json; charset=latin-1"],
        ["/missing", "404 Not Found", "text/plain"],
      ]
    ) {
      await t.step(path, async () => {
        const raw = normalised(
          await rawRequest(
            port,
            `GET ${path} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n`,
          ),
        );
        const head = raw.slice(0, raw.indexOf("\r\n\r\n")).toLowerCase();
        assert.ok(raw.startsWith(`HTTP/1.1 ${status}\r\n`), raw);
        assert.ok(!head.includes("\r\nserver:"), raw);
        assert.match(head, new RegExp(`\r\ncontent-type: ${type}\r\n`));
        assert.ok(raw.endsWith("\r\n\r\n{}"), raw);
      });
    }
  }, { handlerClass: BareRequest });
});

Deno.test("makeServer sends Server first, then the application's headers as listed, and its Content-Type alone", async () => {
  const app: Application = (environ, startResponse) => {
    const headers: [string, string][] = environ.PATH_INFO === "/html"
      ? [["X-First", "1"], ["Content-Type", "text/html; charset=utf-8"]]
      : [["Content-Type", "text/plain"]];
    startResponse(
      environ.PATH_INFO === "/made" ? "201 Created" : "200 OK",
      headers,
    );
    return [encoder.encode("Hello world!\n")];
  };
  const head = (type: string) =>
    `\r\nServer: ${SERVER}\r\n${type}content-length: 13\r\n` +
    "date: <date>\r\nconnection: close\r\n\r\nHello world!\n";
  await withServer(app, async ({ port }) => {
    const get = async (path: string) =>
      normalised(
        await rawRequest(
          port,
          `GET ${path} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n`,
        ),
      );
    assert.equal(
      await get("/"),
      "HTTP/1.1 200 OK" + head("Content-Type: text/plain\r\n"),
    );
    assert.equal(
      await get("/made"),
      "HTTP/1.1 201 Created" + head("Content-Type: text/plain\r\n"),
    );
    assert.equal(
      await get("/html"),
      "HTTP/1.1 200 OK" +
        head("X-First: 1\r\nContent-Type: text/html; charset=utf-8\r\n"),
    );
  });
});

Deno.test("makeServer sends the bytes an application's constant body holds now, changed or not", async () => {
  // One buffer, answered by every request, changed between two of them:
  // what makes the small ASCII body a string must not send stale text.
  const body = encoder.encode("first");
  const wide = new Uint8Array([0x66, 0xe9]); // "f" and a latin-1 é: not ASCII
  const app: Application = (environ, startResponse) => {
    startResponse("200 OK", [["Content-Type", "text/plain"]]);
    return [environ.PATH_INFO === "/wide" ? wide : body];
  };
  await withServer(app, async ({ port }) => {
    const get = async (path = "/") =>
      new Uint8Array(
        await (await fetch(`http://127.0.0.1:${port}${path}`)).arrayBuffer(),
      );
    assert.deepEqual(await get(), encoder.encode("first"));
    assert.deepEqual(await get(), encoder.encode("first"));
    body.set(encoder.encode("FIRST"));
    assert.deepEqual(await get(), encoder.encode("FIRST"));
    body[4] = 0xff; // no longer ASCII: sent as the bytes they are
    assert.deepEqual(
      await get(),
      new Uint8Array([0x46, 0x49, 0x52, 0x53, 0xff]),
    );
    assert.deepEqual(await get("/wide"), wide);
    body.set(encoder.encode("again"));
    assert.deepEqual(await get(), encoder.encode("again"));
  });
});

Deno.test("makeServer sends a response made again as it is now, never a stale copy", async () => {
  // The same response twice in a row is sent as a clone of the first:
  // every part of it changed after a few repeats must be sent as changed.
  // One header list, changed in place, as an application may keep one.
  const list: [string, string][] = [["Content-Type", "text/plain"]];
  let status = "200 OK";
  let body = encoder.encode("same");
  const app: Application = (_environ, startResponse) => {
    startResponse(status, list);
    return [body];
  };
  await withServer(app, async ({ port }) => {
    const get = async () => {
      const response = await fetch(`http://127.0.0.1:${port}/`);
      return {
        status: response.status,
        headers: [...response.headers].filter(([name]) => name !== "date"),
        body: await response.text(),
      };
    };
    const expect = (
      code: number,
      headers: [string, string][],
      text: string,
    ) => ({
      status: code,
      headers: [...headers, ["content-length", String(text.length)]].sort(),
      body: text,
    });
    const sorted = async () => {
      const got = await get();
      return { ...got, headers: got.headers.sort() };
    };
    const server: [string, string] = ["server", SERVER];
    const steps: [string, () => void, () => ReturnType<typeof expect>][] = [
      [
        "as made",
        () => {},
        () => expect(200, [server, ["content-type", "text/plain"]], "same"),
      ],
      [
        "a header's value",
        () => void (list[0][1] = "text/html"),
        () => expect(200, [server, ["content-type", "text/html"]], "same"),
      ],
      [
        "a header added",
        () => void list.push(["X-Extra", "1"]),
        () =>
          expect(200, [
            server,
            ["content-type", "text/html"],
            ["x-extra", "1"],
          ], "same"),
      ],
      [
        "a header's name",
        () => void (list[1][0] = "X-Other"),
        () =>
          expect(200, [
            server,
            ["content-type", "text/html"],
            ["x-other", "1"],
          ], "same"),
      ],
      [
        "the application's own Server",
        () => void (list[1] = ["Server", "mine"]),
        () =>
          expect(
            200,
            [["content-type", "text/html"], ["server", "mine"]],
            "same",
          ),
      ],
      [
        "a header removed",
        () => void list.pop(),
        () => expect(200, [server, ["content-type", "text/html"]], "same"),
      ],
      [
        "the status",
        () => void (status = "201 Created"),
        () => expect(201, [server, ["content-type", "text/html"]], "same"),
      ],
      [
        "the body",
        () => void (body = encoder.encode("other")),
        () => expect(201, [server, ["content-type", "text/html"]], "other"),
      ],
      [
        "the body's bytes, in place",
        () => void body.set(encoder.encode("OTHER")),
        () => expect(201, [server, ["content-type", "text/html"]], "OTHER"),
      ],
      [
        "a Content-Length of its own",
        () => void list.push(["Content-Length", "5"]),
        () => expect(201, [server, ["content-type", "text/html"]], "OTHER"),
      ],
    ];
    for (const [what, change, expected] of steps) {
      change();
      // Three in a row: made, then kept, then cloned.
      for (let i = 0; i < 3; i++) {
        assert.deepEqual(
          await sorted(),
          expected(),
          `${what}, request ${i + 1}`,
        );
      }
    }
    // Nine headers: past what is kept, sent as made every time.
    list.splice(0, list.length, ["Content-Type", "text/plain"]);
    for (let i = 0; i < 8; i++) list.push([`X-${i}`, String(i)]);
    for (let i = 0; i < 3; i++) {
      const got = await get();
      assert.equal(got.headers.length, 11);
      assert.equal(got.body, "OTHER");
    }
  });
});

Deno.test("ServerHandler's responses made again are each a Response of their own", async () => {
  const app = text("again");
  class OtherServer extends ServerHandler {
    override serverSoftware = "Other/1.0";
  }
  const respond = async (Handler: typeof ServerHandler) => {
    const handler = new Handler(
      { readSync: () => null },
      { write: () => {} },
      new StringErrorStream(),
      { REQUEST_METHOD: "GET", SERVER_PROTOCOL: "HTTP/1.1" },
    );
    await handler.run(app);
    return handler.response!;
  };
  for (const Handler of [ServerHandler, OtherServer, ServerHandler]) {
    for (let i = 0; i < 3; i++) {
      assert.equal(
        (await respond(Handler)).headers.get("server"),
        Handler === OtherServer ? "Other/1.0" : SERVER,
      );
    }
  }
  const responses: Response[] = [];
  for (let i = 0; i < 3; i++) responses.push(await respond(ServerHandler));
  // Changing one changes no other; each body reads whole, once.
  responses[1].headers.set("X-Changed", "1");
  for (const response of responses) {
    assert.equal(await response.text(), "again");
    assert.equal(response.headers.get("content-type"), "text/plain");
  }
  assert.equal(responses[0].headers.get("x-changed"), null);
  assert.equal(responses[2].headers.get("x-changed"), null);
});

Deno.test("ServerHandler keeps the application's headers, Server and repeats included", async () => {
  const app: Application = (_environ, startResponse) => {
    startResponse("201 Created", [
      ["Content-Type", "text/html"],
      ["Set-Cookie", "a=1"],
      ["Set-Cookie", "b=2"],
      ["server", "mine/1.0"],
      ["X-Empty", ""],
    ]);
    return [encoder.encode("<p>"), encoder.encode("made</p>")];
  };
  await withServer(app, async ({ port }) => {
    assert.equal(
      normalised(
        await rawRequest(
          port,
          "GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        ),
      ),
      "HTTP/1.1 201 Created\r\nContent-Type: text/html\r\nSet-Cookie: a=1\r\n" +
        "Set-Cookie: b=2\r\nserver: mine/1.0\r\nX-Empty: \r\n" +
        "content-length: 11\r\ndate: <date>\r\nconnection: close\r\n\r\n" +
        "<p>made</p>",
    );
  });
});

Deno.test("ServerHandler sends Content-Length: 0 for an empty result, and no body for 204 and HEAD", async (t) => {
  const app: Application = (environ, startResponse) => {
    if (environ.PATH_INFO === "/204") {
      startResponse("204 No Content", []);
      return [];
    }
    if (environ.PATH_INFO === "/empty") {
      startResponse("200 OK", [["Content-Type", "text/plain"]]);
      return (function* () {})();
    }
    startResponse("200 OK", [
      ["Content-Type", "text/plain"],
      ["Content-Length", "1234"],
    ]);
    return [];
  };
  await withServer(app, async ({ port }) => {
    const get = (method: string, path: string) =>
      rawRequest(
        port,
        `${method} ${path} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n`,
      ).then(normalised);
    await t.step("204", async () => {
      assert.equal(
        await get("GET", "/204"),
        `HTTP/1.1 204 No Content\r\nServer: ${SERVER}\r\ndate: <date>\r\n` +
          "connection: close\r\n\r\n",
      );
    });
    await t.step("empty generator", async () => {
      assert.equal(
        await get("GET", "/empty"),
        `HTTP/1.1 200 OK\r\nServer: ${SERVER}\r\n` +
          "Content-Type: text/plain\r\ncontent-length: 0\r\ndate: <date>\r\n" +
          "connection: close\r\n\r\n",
      );
    });
    await t.step("HEAD keeps the application's Content-Length", async () => {
      assert.equal(
        await get("HEAD", "/head"),
        `HTTP/1.1 200 OK\r\nServer: ${SERVER}\r\n` +
          "Content-Type: text/plain\r\ncontent-length: 1234\r\ndate: <date>\r\n" +
          "connection: close\r\n\r\n",
      );
    });
  });
});

Deno.test("ServerHandler pulls a generator only as the client reads", async () => {
  // 256 MiB if produced eagerly; the kernel's socket buffers (at most some
  // tens of MiB) and the client's hold far less.
  const total = 4096;
  let produced = 0;
  let closed = 0;
  const app: Application = (_environ, startResponse) => {
    startResponse("200 OK", [["Content-Type", "application/octet-stream"]]);
    const chunk = new Uint8Array(64 * 1024);
    const chunks = (function* () {
      for (let i = 0; i < total; i++) {
        produced++;
        yield chunk;
      }
    })();
    return Object.assign(chunks, { close: () => void closed++ });
  };
  await withServer(app, async ({ url }) => {
    const response = await fetch(url);
    const reader = response.body!.getReader();
    let received = 0;
    while (received < 64 * 1024) {
      received += (await reader.read()).value!.length;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.ok(produced < total / 4, `${produced} of ${total} chunks produced`);
    await reader.cancel();
    await waitFor(() => closed > 0, "close()");
    assert.equal(closed, 1);
    assert.ok(produced < total);
  });
});

Deno.test("ServerHandler streams every chunk of a generator, then closes it", async () => {
  let closed = 0;
  const app: Application = (_environ, startResponse) => {
    startResponse("200 OK", [["Content-Type", "application/octet-stream"]]);
    const chunks = (function* () {
      for (let i = 0; i < 100; i++) yield new Uint8Array(10_000).fill(i);
    })();
    return Object.assign(chunks, { close: () => void closed++ });
  };
  await withServer(app, async ({ url }) => {
    const response = await fetch(url);
    assert.equal(response.headers.get("content-length"), null);
    const body = await response.bytes();
    assert.equal(body.length, 1_000_000);
    for (let i = 0; i < 100; i++) {
      assert.ok(
        body.subarray(i * 10_000, (i + 1) * 10_000).every((b) => b === i),
      );
    }
    await waitFor(() => closed > 0, "close()");
    assert.equal(closed, 1);
  });
});

Deno.test("ServerHandler sends chunked transfer coding for a generator, its own length when set", async () => {
  const app: Application = (environ, startResponse) => {
    const headers: HeaderList = [["Content-Type", "text/plain"]];
    if (environ.PATH_INFO === "/length") headers.push(["Content-Length", "6"]);
    startResponse("200 OK", headers);
    return (function* () {
      yield encoder.encode("abc");
      yield new Uint8Array(0);
      yield encoder.encode("def");
    })();
  };
  await withServer(app, async ({ port }) => {
    const chunked = normalised(
      await rawRequest(
        port,
        "GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
      ),
    );
    const [head, body] = chunked.split("\r\n\r\n", 2) as [string, string];
    assert.equal(
      head,
      `HTTP/1.1 200 OK\r\nServer: ${SERVER}\r\n` +
        "Content-Type: text/plain\r\ntransfer-encoding: chunked\r\ndate: <date>\r\n" +
        "connection: close",
    );
    // Deno.serve may merge chunks on the wire.
    assert.deepEqual(dechunk(chunked.slice(head.length + 4)), {
      body: "abcdef",
      complete: true,
    });
    assert.ok(body.startsWith("3\r\nabc\r\n") || body.startsWith("6\r\n"));
    const fixed = normalised(
      await rawRequest(
        port,
        "GET /length HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
      ),
    );
    assert.equal(
      fixed,
      `HTTP/1.1 200 OK\r\nServer: ${SERVER}\r\n` +
        "Content-Type: text/plain\r\ncontent-length: 6\r\ndate: <date>\r\n" +
        "connection: close\r\n\r\nabcdef",
    );
  });
});

Deno.test("ServerHandler streams an AsyncIterable from an async application", async () => {
  let closed = 0;
  const app: Application = async (_environ, startResponse) => {
    await null;
    startResponse("200 OK", [["Content-Type", "text/plain"]]);
    const body = (async function* () {
      for (const part of ["one ", "two ", "three"]) {
        await new Promise((resolve) => setTimeout(resolve, 1));
        yield encoder.encode(part);
      }
    })();
    // An async close(), awaited by the server.
    const close = () => Promise.resolve().then(() => void closed++);
    return Object.assign(body, { close });
  };
  await withServer(app, async ({ url }) => {
    const response = await fetch(url);
    assert.equal(await response.text(), "one two three");
    await waitFor(() => closed > 0, "close()");
    assert.equal(closed, 1);
  });
});

Deno.test("ServerHandler sends write() output before the result", async (t) => {
  const app: Application = (environ, startResponse) => {
    const write = startResponse("200 OK", [["Content-Type", "text/plain"]]);
    write(encoder.encode("a"));
    write(new Uint8Array(0));
    write(encoder.encode("b"));
    if (environ.PATH_INFO === "/list") return [encoder.encode("c")];
    return (function* () {
      yield encoder.encode("c");
      write(encoder.encode("d"));
      yield encoder.encode("e");
    })();
  };
  await withServer(app, async ({ url, log }) => {
    await t.step("Array result", async () => {
      const response = await fetch(`${url}/list`);
      // Every byte is known before the response starts: a fixed length.
      assert.equal(response.headers.get("content-length"), "3");
      assert.equal(await response.text(), "abc");
    });
    await t.step("generator, writing in between", async () => {
      const response = await fetch(`${url}/gen`);
      assert.equal(response.headers.get("content-length"), null);
      assert.equal(await response.text(), "abcde");
    });
    assert.match(log.value, /"GET \/list HTTP\/1.1" 200 3\n/);
    assert.match(log.value, /"GET \/gen HTTP\/1.1" 200 5\n/);
  });
});

Deno.test("ServerHandler waits for the first non-empty chunk before sending the headers", async () => {
  // PEP 3333: until then, the application may still change its mind.
  const app: Application = (_environ, startResponse) => {
    startResponse("200 OK", [["Content-Type", "text/plain"]]);
    return (function* () {
      yield new Uint8Array(0);
      try {
        throw new Error("not found after all");
      } catch (error) {
        startResponse("404 Not Found", [["Content-Type", "text/html"]], error);
      }
      yield new Uint8Array(0);
      yield encoder.encode("<h1>Not Found</h1>");
    })();
  };
  await withServer(app, async ({ url }) => {
    const response = await fetch(url);
    assert.equal(response.status, 404);
    assert.equal(response.headers.get("content-type"), "text/html");
    assert.equal(await response.text(), "<h1>Not Found</h1>");
  });
});

Deno.test("ServerHandler calls the result's close() once for an Array result", async () => {
  let closed = 0;
  const app: Application = (_environ, startResponse) => {
    startResponse("200 OK", [["Content-Type", "text/plain"]]);
    return Object.assign([encoder.encode("x")], { close: () => void closed++ });
  };
  await withServer(app, async ({ url }) => {
    assert.equal(await (await fetch(url)).text(), "x");
    await waitFor(() => closed > 0, "close()");
    assert.equal(closed, 1);
  });
});

Deno.test("ServerHandler sends a FileWrapper result", async () => {
  const path = await Deno.makeTempFile({ prefix: "wsgiref-test-" });
  try {
    const content = Uint8Array.from({ length: 20_000 }, (_, i) => i % 251);
    await Deno.writeFile(path, content);
    const app: Application = (environ, startResponse) => {
      startResponse("200 OK", [["Content-Type", "application/octet-stream"]]);
      const Wrapper = environ["wsgi.file_wrapper"]!;
      return new Wrapper(Deno.openSync(path), 4096);
    };
    await withServer(app, async ({ url }) => {
      assert.deepEqual(await (await fetch(url)).bytes(), content);
    });
  } finally {
    await Deno.remove(path);
  }
});

// ------------------------------------------------------------------ errors

Deno.test("ServerHandler answers the error page for an error before the headers, and keeps serving", async (t) => {
  const cases: [string, Application, RegExp][] = [
    ["the application throws", () => {
      throw new Error("app failed");
    }, /^Error: app failed\n\s+at /m],
    ["an async application rejects", async () => {
      await null;
      throw new RangeError("async failed");
    }, /^RangeError: async failed\n/m],
    ["the application throws undefined", () => {
      throw undefined;
    }, /^Error: The application threw undefined\n/m],
    [
      "the result is not iterable",
      (_environ, startResponse) => {
        startResponse("200 OK", []);
        return 42 as unknown as Uint8Array[];
      },
      /^TypeError: Cannot send the response: the application returned number 42, which is not iterable\n/m,
    ],
    [
      "a chunk is a string",
      (_environ, startResponse) => {
        startResponse("200 OK", []);
        return ["text" as unknown as Uint8Array];
      },
      /^AssertionError: The application's result yielded a string \("text"\) at index 0; each chunk must be a Uint8Array, e\.g\. new TextEncoder\(\)\.encode\(text\)\n/m,
    ],
    ["a generator throws before its first chunk", (_environ, startResponse) => {
      startResponse("200 OK", []);
      return (function* () {
        yield new Uint8Array(0);
        throw new Error("generator failed");
      })();
    }, /^Error: generator failed\n/m],
    ["write() then an error", (_environ, startResponse) => {
      const write = startResponse("200 OK", []);
      write(encoder.encode("half a page"));
      throw new Error("after write");
    }, /^Error: after write\n/m],
    [
      "start_response() never called",
      () => [],
      /^AssertionError: The application returned without calling start_response\(\)\n/m,
    ],
    ["a status too short", (_environ, startResponse) => {
      startResponse("200", []);
      return [];
    }, /^AssertionError: Status must be at least 4 characters\n/m],
    [
      "a status Deno cannot send",
      (_environ, startResponse) => {
        startResponse("999 Custom", []);
        return [encoder.encode("x")];
      },
      /^RangeError: Cannot send status "999 Custom": a Response's status must be from 200 to 599\n/m,
    ],
    ["a 1xx status", (_environ, startResponse) => {
      startResponse("103 Early Hints", []);
      return [];
    }, /^RangeError: Cannot send status "103 Early Hints"/m],
    ["CR LF in a header value", (_environ, startResponse) => {
      startResponse("200 OK", [["X-A", "1\r\nX-Injected: yes"]]);
      return [];
    }, /^TypeError: .*control character "\\r"/m],
    [
      "a hop-by-hop header",
      (_environ, startResponse) => {
        startResponse("200 OK", [["Connection", "close"]]);
        return [];
      },
      /^AssertionError: Hop-by-hop header, 'Connection: close', not allowed\n/m,
    ],
    [
      "a header slipped into the list after startResponse",
      (_environ, startResponse) => {
        const headers: HeaderList = [["Content-Type", "text/plain"]];
        startResponse("200 OK", headers);
        headers.push(["X-Bad", "a\nb"]);
        return [encoder.encode("x")];
      },
      /^TypeError: /m,
    ],
  ];
  let mode = 0;
  const app: Application = (environ, startResponse) =>
    environ.PATH_INFO === "/ok"
      ? text("still here")(environ, startResponse)
      : cases[mode][1](environ, startResponse);
  await withServer(app, async ({ port, url, log }) => {
    for (const [name, , logged] of cases) {
      await t.step(name, async () => {
        log.value = "";
        assert.equal(
          normalised(
            await rawRequest(
              port,
              "GET /fail HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
            ),
          ),
          `HTTP/1.1 500 Internal Server Error\r\nServer: ${SERVER}\r\n` +
            "Content-Type: text/plain\r\ncontent-length: 59\r\ndate: <date>\r\n" +
            `connection: close\r\n\r\n${ERROR_PAGE}`,
        );
        assert.match(log.value, logged);
        assert.match(log.value, /"GET \/fail HTTP\/1.1" 500 59\n$/);
        const response = await fetch(`${url}/ok`);
        assert.equal(await response.text(), "still here");
        mode++;
      });
    }
  });
});

Deno.test("ServerHandler cuts the response short for an error after the headers, and keeps serving", async () => {
  let closed = 0;
  const app: Application = (environ, startResponse) => {
    if (environ.PATH_INFO === "/ok") {
      return text("still here")(environ, startResponse);
    }
    startResponse("200 OK", [["Content-Type", "text/plain"]]);
    const body = (function* () {
      yield encoder.encode("first part;");
      throw new Error("failed mid-way");
    })();
    return Object.assign(body, { close: () => void closed++ });
  };
  await withServer(app, async ({ port, url, log }) => {
    const response = fromLatin1(
      await rawRequest(
        port,
        "GET /fail HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
      ),
    );
    assert.match(response, /^HTTP\/1.1 200 OK\r\n/);
    assert.match(response, /\r\ntransfer-encoding: chunked\r\n/);
    const body = response.slice(response.indexOf("\r\n\r\n") + 4);
    // No terminating chunk: the client can tell it was cut short.
    assert.deepEqual(dechunk(body), { body: "first part;", complete: false });
    await waitFor(() => closed > 0, "close()");
    assert.equal(closed, 1);
    assert.match(log.value, /^Error: failed mid-way\n\s+at /m);
    const again = await fetch(`${url}/ok`);
    assert.equal(await again.text(), "still here");
  });
});

Deno.test("ServerHandler closes the result once when the client goes away mid-response", async () => {
  let produced = 0;
  let closed = 0;
  let finallyRan = 0;
  const app: Application = (_environ, startResponse) => {
    startResponse("200 OK", [["Content-Type", "application/octet-stream"]]);
    const body = (function* () {
      try {
        for (;;) {
          produced++;
          yield new Uint8Array(64 * 1024);
        }
      } finally {
        finallyRan++;
      }
    })();
    return Object.assign(body, { close: () => void closed++ });
  };
  await withServer(app, async ({ url, log }) => {
    const response = await fetch(url);
    const reader = response.body!.getReader();
    await reader.read();
    await reader.cancel();
    await waitFor(() => closed > 0, "close()");
    const producedAtClose = produced;
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(closed, 1);
    assert.equal(finallyRan, 1);
    assert.equal(produced, producedAtClose, "no chunk pulled after close()");
    assert.match(log.value, /"GET \/ HTTP\/1.1" 200 \d+\n/);
  });
});

Deno.test("ServerHandler closes a waiting async result once when the client goes away", async () => {
  let closed = 0;
  const stall = gate();
  const app: Application = (_environ, startResponse) => {
    startResponse("200 OK", [["Content-Type", "text/plain"]]);
    const body = (async function* () {
      yield encoder.encode("waiting...");
      await stall.promise;
      yield encoder.encode("too late");
    })();
    return Object.assign(body, { close: () => void closed++ });
  };
  await withServer(app, async ({ url }) => {
    const response = await fetch(url);
    const reader = response.body!.getReader();
    assert.equal(decoder.decode((await reader.read()).value), "waiting...");
    await reader.cancel();
    await waitFor(() => closed > 0, "close()");
    stall.open();
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(closed, 1);
  });
});

// ------------------------------------------------------------------ server

Deno.test("WSGIServer answers concurrent requests", async () => {
  const app: Application = async (environ, startResponse) => {
    // Answer in the reverse order of arrival.
    const n = Number(String(environ.PATH_INFO).slice(1));
    await new Promise((resolve) => setTimeout(resolve, (10 - n) * 5));
    startResponse("200 OK", [["Content-Type", "text/plain"]]);
    return [encoder.encode(`request ${n}`)];
  };
  await withServer(app, async ({ url }) => {
    const texts = await Promise.all(
      Array.from(
        { length: 10 },
        (_, n) => fetch(`${url}/${n}`).then((r) => r.text()),
      ),
    );
    assert.deepEqual(
      texts,
      Array.from({ length: 10 }, (_, n) => `request ${n}`),
    );
  });
});

Deno.test("WSGIServer.handleRequest() answers exactly one request", async () => {
  const log = new StringErrorStream();
  await using server = makeServer("127.0.0.1", 0, text("one"), {
    handlerClass: logged(log),
  });
  const url = `http://127.0.0.1:${server.serverPort}/`;
  let answered = 0;
  const first = fetch(url).then((r) => r.text()).finally(() => answered++);
  const second = fetch(url).then((r) => r.text()).finally(() => answered++);
  // Both wait: neither serveForever() nor handleRequest() runs.
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.equal(answered, 0);
  await server.handleRequest();
  await waitFor(() => answered === 1, "the first answer");
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.equal(answered, 1);
  // A handleRequest() with nobody waiting takes the next request.
  await server.handleRequest();
  await waitFor(() => answered === 2, "the second answer");
  assert.deepEqual(await Promise.all([first, second]), ["one", "one"]);
  const later = server.handleRequest();
  const third = await fetch(url);
  assert.equal(await third.text(), "one");
  await later;
  assert.equal(log.value.match(/ 200 3\n/g)?.length, 3);
});

Deno.test("WSGIServer.serveForever() answers the requests that waited", async () => {
  await using server = makeServer("127.0.0.1", 0, text("waited"), {
    quiet: true,
  });
  let answered = false;
  const pending = fetch(`http://127.0.0.1:${server.serverPort}/`).then((r) =>
    r.text()
  ).finally(() => answered = true);
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.equal(answered, false);
  const serving = server.serveForever();
  assert.equal(await pending, "waited");
  await server.shutdown();
  await serving;
});

Deno.test("WSGIServer.shutdown() lets a request in flight finish, then stops listening", async () => {
  const release = gate();
  const started = gate();
  const app: Application = async (_environ, startResponse) => {
    started.open();
    await release.promise;
    startResponse("200 OK", [["Content-Type", "text/plain"]]);
    return [encoder.encode("finished")];
  };
  const server = makeServer("127.0.0.1", 0, app, { quiet: true });
  const port = server.serverPort;
  let served = false;
  const serving = server.serveForever().then(() => served = true);
  const inFlight = fetch(`http://127.0.0.1:${port}/`);
  await started.promise;
  let stopped = false;
  const stopping = server.shutdown().then(() => stopped = true);
  assert.equal(server.shutdown(), server.shutdown(), "the same promise");
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.equal(stopped, false, "shutdown() waits for the request");
  assert.equal(served, true, "serveForever() returns at shutdown()");
  release.open();
  const response = await inFlight;
  assert.equal(await response.text(), "finished");
  await stopping;
  await serving;
  await assert.rejects(
    Deno.connect({ hostname: "127.0.0.1", port }),
    Deno.errors.ConnectionRefused,
  );
  await server.serverClose();
  await server.serverClose();
  await assert.rejects(
    server.handleRequest(),
    /Cannot handle a request: the server has been shut down/,
  );
  await server.serveForever(); // returns at once
});

Deno.test("WSGIServer releases everything with await using", async () => {
  let port = 0;
  {
    await using server = makeServer("127.0.0.1", 0, text("x"), { quiet: true });
    port = server.serverPort;
    server.serveForever();
    assert.equal(await (await fetch(`http://127.0.0.1:${port}/`)).text(), "x");
  }
  // Not a connection attempt: under --parallel, another test may take the
  // port as soon as it is free.
  assert.equal(socketsOnPort(port), 0);
});

Deno.test("WSGIServer reports its address and base environ", async () => {
  await using server = new WSGIServer(["127.0.0.1", 0]);
  assert.equal(server.serverAddress[0], "127.0.0.1");
  assert.ok(server.serverPort > 0);
  assert.equal(server.serverAddress[1], server.serverPort);
  assert.equal(server.serverName, "localhost");
  assert.deepEqual(server.baseEnviron, {
    SERVER_NAME: "localhost",
    GATEWAY_INTERFACE: "CGI/1.1",
    SERVER_PORT: String(server.serverPort),
    REMOTE_HOST: "",
    CONTENT_LENGTH: "",
    SCRIPT_NAME: "",
  });
  assert.equal(server.getApp(), null);
  server.setApp(demoApp);
  assert.equal(server.getApp(), demoApp);
  assert.equal(server.handlerClass, WSGIRequestHandler);
});

Deno.test("WSGIServer answers 500 when no application is set, and uses setApp() at once", async () => {
  const log = new StringErrorStream();
  await using server = new WSGIServer(["127.0.0.1", 0], logged(log));
  server.serveForever();
  const url = `http://127.0.0.1:${server.serverPort}/`;
  const response = await fetch(url);
  assert.equal(response.status, 500);
  assert.equal(await response.text(), ERROR_PAGE);
  assert.match(log.value, /^TypeError: /m);
  server.setApp(text("now set"));
  assert.equal(await (await fetch(url)).text(), "now set");
});

Deno.test("makeServer() refuses bad arguments", async (t) => {
  const rows: [string, () => unknown, ErrorConstructor, RegExp][] = [
    [
      "app null",
      () => makeServer("127.0.0.1", 0, null as unknown as Application),
      TypeError,
      /^Cannot make a server: the application must be a function, not null None$/,
    ],
    [
      "port -1",
      () => makeServer("127.0.0.1", -1, demoApp),
      RangeError,
      /^Cannot create the server: the port must be from 0 to 65535, not -1$/,
    ],
    [
      "port 65536",
      () => makeServer("127.0.0.1", 65536, demoApp),
      RangeError,
      /not 65536$/,
    ],
    [
      "port 1.5",
      () => makeServer("127.0.0.1", 1.5, demoApp),
      TypeError,
      /^Cannot create the server: the port must be an integer, not number 1.5$/,
    ],
    [
      "port string",
      () => makeServer("127.0.0.1", "80" as unknown as number, demoApp),
      TypeError,
      /not string "80"$/,
    ],
    [
      "host number",
      () => makeServer(1 as unknown as string, 0, demoApp),
      TypeError,
      /^Cannot create the server: the address must be \[host, port\], not \(1, 0\)$/,
    ],
    [
      "maxBodySize -1",
      () => makeServer("127.0.0.1", 0, demoApp, { maxBodySize: -1 }),
      RangeError,
      /^Cannot create the server: maxBodySize must be a non-negative integer or Infinity, not -1$/,
    ],
    [
      "spoolThreshold NaN",
      () => makeServer("127.0.0.1", 0, demoApp, { spoolThreshold: NaN }),
      RangeError,
      /spoolThreshold must be a non-negative integer or Infinity, not NaN$/,
    ],
    [
      "spoolThreshold string",
      () =>
        makeServer("127.0.0.1", 0, demoApp, {
          spoolThreshold: "1" as unknown as number,
        }),
      TypeError,
      /^Cannot create the server: spoolThreshold must be a number, not string "1"$/,
    ],
  ];
  for (const [name, make, type, message] of rows) {
    await t.step(name, () => {
      assert.throws(make, (error: Error) => {
        assert.ok(error instanceof type, `${error}`);
        assert.match(error.message, message);
        return true;
      });
    });
  }
});

// -------------------------------------------------------------- access log

Deno.test("WSGIRequestHandler logs each request in Common Log Format", async () => {
  await withServer(text("Hello world!"), async ({ url, port, log }) => {
    await (await fetch(`${url}/path?q=1`)).text();
    await rawRequest(
      port,
      "GET /caf%C3%A9/\xc3\xa9?\xc3\xa9 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    );
    const lines = log.value.split("\n");
    assert.match(
      lines[0],
      /^127\.0\.0\.1 - - \[\d\d\/[A-Z][a-z]{2}\/\d{4} \d\d:\d\d:\d\d\] "GET \/path\?q=1 HTTP\/1\.1" 200 12$/,
    );
    // The target as its bytes, each one char, as http.server logs it.
    assert.match(
      lines[1],
      /\] "GET \/caf%C3%A9\/\xc3\xa9\?\xc3\xa9 HTTP\/1\.1" 200 12$/,
    );
    assert.equal(lines[2], "");
  });
});

Deno.test("WSGIRequestHandler logs nothing with quiet: true", async () => {
  await withServer(text("x"), async ({ url, log }) => {
    await (await fetch(url)).text();
    assert.equal(log.value, "");
  }, { quiet: true });
});

Deno.test("WSGIRequestHandler.logMessage() escapes control characters as http.server does", () => {
  const log = new StringErrorStream();
  const Handler = logged(log);
  const server = new WSGIServer(["", 0], Handler, { bindAndActivate: false });
  const handler = new Handler(
    new Request("http://h/"),
    ["192.0.2.1", 1234],
    server,
  );
  handler.logMessage("a\x01b\\c\x7f\x85\xa0é\n");
  assert.match(
    log.value,
    /^192\.0\.2\.1 - - \[[^\]]+\] a\\x01b\\\\c\\x7f\\x85\xa0é\\x0a\n$/,
  );
});

// ----------------------------------------------------------------- demoApp

Deno.test("demoApp() lists the sorted environ as wsgiref's demo_app", () => {
  let status = "";
  let headers: HeaderList = [];
  const startResponse: StartResponse = (s, h) => {
    status = s;
    headers = h;
    return () => {};
  };
  const body = demoApp({
    PATH_INFO: "/caf\xc3\xa9",
    QUERY_STRING: "a=1&b=it's",
    REQUEST_METHOD: "GET",
    "wsgi.multithread": false,
    "wsgi.version": [1, 0],
    HTTP_X_A: "tab\there",
    Z: "\x7f\x85\xa0",
  }, startResponse);
  assert.equal(status, "200 OK");
  assert.deepEqual(headers, [["Content-Type", "text/plain; charset=utf-8"]]);
  // python3 -c 'from wsgiref.simple_server import demo_app; ...' (3.11)
  assert.equal(
    fromLatin1(concat(body)),
    "Hello world!\n\nHTTP_X_A = 'tab\\there'\n" +
      "PATH_INFO = '/caf\xc3\x83\xc2\xa9'\n" +
      "QUERY_STRING = \"a=1&b=it's\"\nREQUEST_METHOD = 'GET'\n" +
      "Z = '\\x7f\\x85\\xa0'\nwsgi.multithread = False\n" +
      "wsgi.version = (1, 0)\n",
  );
});

Deno.test("demoApp() served shows the request's environ", async () => {
  await withServer(demoApp, async ({ url, port }) => {
    const response = await fetch(`${url}/xyz?abc`);
    assert.equal(
      response.headers.get("content-type"),
      "text/plain; charset=utf-8",
    );
    const body = await response.text();
    assert.ok(body.startsWith("Hello world!\n\n"));
    assert.match(body, /^PATH_INFO = '\/xyz'$/m);
    assert.match(body, /^QUERY_STRING = 'abc'$/m);
    assert.match(body, new RegExp(`^SERVER_PORT = '${port}'$`, "m"));
    assert.match(body, /^wsgi\.input = <BytesInput object>$/m);
    const keys = body.trim().split("\n").slice(2).map((l) => l.split(" = ")[0]);
    assert.deepEqual(keys, [...keys].sort());
  });
});

// --------------------------------------------------------------------- TLS

Deno.test("makeServer() serves HTTPS with cert and key, wsgi.url_scheme https", async () => {
  const cert = await Deno.readTextFile(new URL("tls_cert.pem", FIXTURES));
  const key = await Deno.readTextFile(new URL("tls_key.pem", FIXTURES));
  const { app, environs } = recorder();
  using client = Deno.createHttpClient({ caCerts: [cert] });
  await withServer(app, async ({ port }) => {
    const response = await fetch(`https://localhost:${port}/secure`, {
      client,
    });
    assert.equal(await response.text(), "ok");
  }, { cert, key });
  assert.equal(environs[0]["wsgi.url_scheme"], "https");
  assert.equal(environs[0].HTTPS, "on");
  assert.equal(environs[0].PATH_INFO, "/secure");
});

// ------------------------------------------------------------------ limits

/** Send `GET target` on a new connection, wait `ms`, then go away. */
async function requestAndLeave(port: number, target: string, ms: number) {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await conn.write(latin1(`GET ${target} HTTP/1.1\r\nHost: h\r\n\r\n`));
    await new Promise((resolve) => setTimeout(resolve, ms));
  } finally {
    conn.close();
  }
}

/** `body`, counting its `close()` calls in `counts.closed`. */
function counted<T extends object>(
  body: T,
  counts: { closed: number; pulled: number },
): T & { close(): void } {
  return Object.assign(body, { close: () => void counts.closed++ });
}

Deno.test("makeServer() releases the connection of a client that leaves while the application never answers", async (t) => {
  const N = 20;
  const never = new Promise<never>(() => {});
  let late = gate();
  type Counts = { closed: number; pulled: number };
  type Body = (
    counts: Counts,
  ) => Iterable<Uint8Array> | AsyncIterable<Uint8Array>;
  // [what, the result (none: a promise that never settles), whether the
  // application waits until after the client left]
  const rows: [string, Body | null, boolean][] = [
    ["a promise that never settles", null, false],
    [
      "an async generator waiting forever for its first chunk",
      (counts) =>
        (async function* () {
          await never;
          counts.pulled++;
          yield encoder.encode("never");
        })(),
      false,
    ],
    [
      "an async generator waiting forever after its first chunk",
      (counts) =>
        (async function* () {
          counts.pulled++;
          yield encoder.encode("first");
          await never;
        })(),
      false,
    ],
    [
      "a sync generator between chunks, the client not reading",
      (counts) =>
        (function* () {
          for (let i = 0; i < 100_000; i++) {
            counts.pulled++;
            yield new Uint8Array(64 * 1024);
          }
        })(),
      false,
    ],
    [
      "an application that answers after the client left",
      (counts) =>
        (function* () {
          counts.pulled++;
          yield encoder.encode("too late");
        })(),
      true,
    ],
  ];
  const appOf = (
    body: Body | null,
    waits: boolean,
    counts: Counts,
  ): Application => {
    if (body === null) return () => never;
    const answer: Application = (_environ, startResponse) => {
      startResponse("200 OK", [["Content-Type", "application/octet-stream"]]);
      return counted(body(counts), counts);
    };
    return waits
      ? async (environ, startResponse) => {
        await late.promise;
        return answer(environ, startResponse);
      }
      : answer;
  };
  for (const [what, body, waits] of rows) {
    await t.step(what, async () => {
      late = gate();
      const counts = { closed: 0, pulled: 0 };
      const app = appOf(body, waits, counts);
      await withServer(app, async ({ port }) => {
        // Warm up: the first connection opens a few descriptors for good.
        await requestAndLeave(port, "/warm-up", 20);
        await waitFor(() => socketsOnPort(port) === 1, "the warm-up to go");
        const baseline = openFds();
        await Promise.all(
          Array.from(
            { length: N },
            (_, i) => requestAndLeave(port, `/${i}`, 50),
          ),
        );
        await waitFor(
          () => socketsOnPort(port) === 1 && openFds() <= baseline,
          `connections released (fds ${openFds()}, baseline ${baseline})`,
        );
        if (body !== null) {
          late.open();
          // Each result closed once, the warm-up's too.
          await waitFor(() => counts.closed >= N + 1, "close()");
          const pulled = counts.pulled;
          await new Promise((resolve) => setTimeout(resolve, 50));
          assert.equal(counts.closed, N + 1, "close() once each");
          if (waits) {
            assert.equal(pulled, 0, "no chunk pulled after the client left");
          }
        }
      }, { quiet: true, gracefulTimeout: 100 });
    });
  }
});

/** The status line and the (de-chunked) body of a raw response. */
function parsed(response: Uint8Array) {
  const text = fromLatin1(response);
  const split = text.indexOf("\r\n\r\n");
  const head = text.slice(0, split);
  const rest = text.slice(split + 4);
  const chunked = /\r\ntransfer-encoding: chunked\r\n/i.test(head + "\r\n");
  return {
    status: head.slice(0, head.indexOf("\r\n")),
    ...(chunked ? dechunk(rest) : { body: rest, complete: true }),
  };
}

/**
 * An application for the time-limit tests, by path: `/sleep?ms` answers
 * after ms, `/never` never, `/stall` sends a chunk then waits forever.
 * Each result's `close()` counts in `closes.count`.
 */
function limitsApp(closes: { count: number }): Application {
  const never = new Promise<never>(() => {});
  const closing = { close: () => void closes.count++ };
  return async (environ, startResponse) => {
    const path = environ.PATH_INFO;
    if (path === "/sleep") {
      const ms = Number(environ.QUERY_STRING);
      await new Promise((resolve) => setTimeout(resolve, ms));
      startResponse("200 OK", [["Content-Type", "text/plain"]]);
      return Object.assign([encoder.encode(`slept ${ms}`)], closing);
    }
    if (path === "/never") await never;
    startResponse("200 OK", [["Content-Type", "text/plain"]]);
    return Object.assign(
      (async function* () {
        yield encoder.encode("first;");
        await never;
      })(),
      closing,
    );
  };
}

Deno.test("WSGIServer releases the connection of a client that leaves while its request waits to be served", async () => {
  let calls = 0;
  await using server = makeServer("127.0.0.1", 0, () => {
    calls++;
    return [];
  }, { quiet: true });
  const port = server.serverPort;
  // Neither serveForever() nor handleRequest() runs: the requests wait.
  await Promise.all(
    Array.from({ length: 5 }, () => requestAndLeave(port, "/", 50)),
  );
  await waitFor(() => socketsOnPort(port) === 1, "connections released");
  const serving = server.serveForever();
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.equal(calls, 0, "nobody to answer: not run");
  await server.shutdown();
  await serving;
});

Deno.test("WSGIServer.shutdown() lets requests finish within gracefulTimeout, then cuts them and settles", async () => {
  const closes = { count: 0 };
  const log = new StringErrorStream();
  const server = makeServer("127.0.0.1", 0, limitsApp(closes), {
    gracefulTimeout: 400,
    handlerClass: logged(log),
    quiet: true,
  });
  const port = server.serverPort;
  const serving = server.serveForever();
  const get = (target: string) =>
    rawRequest(
      port,
      `GET ${target} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n`,
    ).then(parsed);
  const answers = Promise.all([
    get("/sleep?100"), // well within the limit
    get("/never"), // no response by then
    get("/stall"), // a response started, never ended
  ]);
  await waitFor(() => socketsOnPort(port) === 4, "three connections");
  await new Promise((resolve) => setTimeout(resolve, 50));
  const started = Date.now();
  await within(server.shutdown(), 10_000, "shutdown()");
  const took = Date.now() - started;
  await serving;
  const [slept, never, stall] = await within(answers, 5000, "the answers");
  assert.deepEqual(slept, {
    status: "HTTP/1.1 200 OK",
    body: "slept 100",
    complete: true,
  });
  assert.deepEqual(never, {
    status: "HTTP/1.1 500 Internal Server Error",
    body: ERROR_PAGE,
    complete: true,
  });
  assert.deepEqual(stall, {
    status: "HTTP/1.1 200 OK",
    body: "first;",
    complete: false,
  });
  // Timers fire no earlier than asked; the cut is not waited on for long.
  assert.ok(took >= 390 && took < 5000, `shutdown() took ${took} ms`);
  assert.equal(closes.count, 2, "close() once per result (none for /never)");
  assert.equal(socketsOnPort(port), 0);
  assert.equal(
    log.value.match(
      /Request cut short at shutdown: still running after 400 ms \(gracefulTimeout\)\n/g,
    )?.length,
    2,
  );
});

Deno.test("WSGIServer.shutdown() with gracefulTimeout 0 cuts at once, Infinity waits", async (t) => {
  for (const [limit, what] of [[0, "0"], [Infinity, "Infinity"]] as const) {
    await t.step(what, async () => {
      const release = gate();
      const started = gate();
      const server = makeServer(
        "127.0.0.1",
        0,
        async (_environ, startResponse) => {
          started.open();
          await release.promise;
          startResponse("200 OK", [["Content-Type", "text/plain"]]);
          return [encoder.encode("done")];
        },
        {
          gracefulTimeout: limit,
          quiet: true,
          handlerClass: logged(new StringErrorStream()),
        },
      );
      const serving = server.serveForever();
      const response = fetch(`http://127.0.0.1:${server.serverPort}/`);
      await started.promise;
      let stopped = false;
      const stopping = server.shutdown().then(() => stopped = true);
      await new Promise((resolve) => setTimeout(resolve, 100));
      assert.equal(stopped, limit === 0);
      release.open();
      const answer = await within(response, 5000, "the answer");
      assert.equal(answer.status, limit === 0 ? 500 : 200);
      await answer.body?.cancel();
      await within(stopping, 5000, "shutdown()");
      await serving;
    });
  }
});

Deno.test("makeServer() cuts a request still running after requestTimeout, not one that ends in time", async (t) => {
  const closes = { count: 0 };
  const app = limitsApp(closes);
  await withServer(app, async ({ port, log }) => {
    const get = (target: string) =>
      within(
        rawRequest(
          port,
          `GET ${target} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n`,
        ),
        5000,
        `GET ${target}`,
      ).then(parsed);
    await t.step("ending well under the limit", async () => {
      assert.deepEqual(await get("/sleep?100"), {
        status: "HTTP/1.1 200 OK",
        body: "slept 100",
        complete: true,
      });
    });
    await t.step("no response by the limit: the error page", async () => {
      const started = Date.now();
      assert.deepEqual(await get("/never"), {
        status: "HTTP/1.1 500 Internal Server Error",
        body: ERROR_PAGE,
        complete: true,
      });
      assert.ok(Date.now() - started >= 390);
      assert.match(
        log.value,
        /Request cut short: still running after 400 ms \(requestTimeout\)\n.*"GET \/never HTTP\/1.1" 500 59\n/,
      );
    });
    await t.step(
      "a response still streaming at the limit: cut short",
      async () => {
        const closesBefore = closes.count;
        assert.deepEqual(await get("/stall"), {
          status: "HTTP/1.1 200 OK",
          body: "first;",
          complete: false,
        });
        await waitFor(() => closes.count === closesBefore + 1, "close()");
      },
    );
    await t.step(
      "ending just over the limit: the error page, its result closed",
      async () => {
        const closesBefore = closes.count;
        const answer = await get("/sleep?600");
        assert.equal(answer.status, "HTTP/1.1 500 Internal Server Error");
        // The application's late result is closed, never sent.
        await waitFor(
          () => closes.count === closesBefore + 1,
          "close() of the late result",
        );
      },
    );
  }, { requestTimeout: 400 });
  await t.step(
    "a body still coming at the limit: the error page, the spool released",
    async () => {
      await withTempDir(async (tempDir) => {
        let called = false;
        await withServer(() => {
          called = true;
          return [];
        }, async ({ port }) => {
          // 5,000 of the 100,000 bytes announced, then nothing.
          const answer = normalised(
            await within(
              rawResponse(
                port,
                "POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: 100000\r\n\r\n" +
                  "x".repeat(5000),
              ),
              5000,
              "the answer",
            ),
          );
          assert.match(answer, /^HTTP\/1.1 500 Internal Server Error\r\n/);
          assert.ok(answer.endsWith(`\r\n\r\n${ERROR_PAGE}`), answer);
          await waitFor(() => fdsUnder(tempDir) === 0, "the spool file closed");
        }, { requestTimeout: 400, spoolThreshold: 1000, tempDir, quiet: true });
        assert.equal(called, false);
      });
    },
  );
  await t.step("requestTimeout 0: no limit", async () => {
    await withServer(app, async ({ port }) => {
      const answer = await rawRequest(
        port,
        "GET /sleep?300 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
      ).then(parsed);
      assert.equal(answer.body, "slept 300");
    }, { requestTimeout: 0, quiet: true });
  });
});

Deno.test("makeServer() refuses bad time limits", async (t) => {
  const rows: [
    MakeServerOptions,
    typeof TypeError | typeof RangeError,
    RegExp,
  ][] = [
    [
      { gracefulTimeout: -1 },
      RangeError,
      /gracefulTimeout must be a non-negative integer or Infinity, not -1/,
    ],
    [
      { gracefulTimeout: NaN },
      RangeError,
      /gracefulTimeout must be .*, not NaN/,
    ],
    [
      { gracefulTimeout: 1.5 },
      RangeError,
      /gracefulTimeout must be .*, not 1.5/,
    ],
    [
      { requestTimeout: -1 },
      RangeError,
      /requestTimeout must be a non-negative integer or Infinity, not -1/,
    ],
    [{ requestTimeout: NaN }, RangeError, /requestTimeout must be .*, not NaN/],
    [
      { requestTimeout: "5" as unknown as number },
      TypeError,
      /requestTimeout must be a number, not string "5"/,
    ],
  ];
  for (const [options, errorClass, message] of rows) {
    await t.step(
      JSON.stringify(options, (_k, v) => Number.isNaN(v) ? "NaN" : v),
      () => {
        assert.throws(
          () => makeServer("127.0.0.1", 0, demoApp, options),
          (error: Error) =>
            error instanceof errorClass && message.test(error.message),
        );
        assert.throws(
          () => toFetchHandler(demoApp, options),
          (error: Error) => error instanceof errorClass,
        );
      },
    );
  }
  await t.step("0 and Infinity are allowed", async () => {
    await using _a = makeServer("127.0.0.1", 0, demoApp, {
      gracefulTimeout: 0,
      requestTimeout: Infinity,
    });
    await using _b = makeServer("127.0.0.1", 0, demoApp, {
      gracefulTimeout: Infinity,
      requestTimeout: 0,
    });
  });
});

// ------------------------------------------------------------ Unix socket

/** Send a raw request over a Unix socket; the raw response (latin-1). */
async function unixRequest(path: string, request: string): Promise<string> {
  return fromLatin1(await rawRequest({ path }, request));
}

/** Run `body` with a fresh temporary directory, removed afterwards. */
async function withTempDir(body: (dir: string) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "wsgiref-test-" });
  try {
    await body(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("makeServer() listens on a Unix socket with path, the Host header for SERVER_NAME", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/http.sock`;
    const { app, environs } = recorder();
    const server = makeServer("", 0, app, { path, quiet: true });
    const serving = server.serveForever();
    try {
      assert.deepEqual(server.serverAddress, [path, 0]);
      assert.equal(server.serverPort, 0);
      assert.equal(server.socketPath, path);
      assert.equal(socketsAt(path), 1);
      const withHost = await unixRequest(
        path,
        "GET /x/%C3%A9?q=1 HTTP/1.1\r\nHost: example.com:8080\r\nConnection: close\r\n\r\n",
      );
      assert.match(withHost, /^HTTP\/1.1 200 OK\r\n/);
      const withoutHost = await unixRequest(path, "GET /y HTTP/1.0\r\n\r\n");
      assert.match(withoutHost, /^HTTP\/1.0 200 OK\r\n/);
    } finally {
      await server.shutdown();
      await serving;
    }
    const [first, second] = environs.map(cgiVariables);
    assert.equal(first.PATH_INFO, "/x/\u00c3\u00a9");
    assert.equal(first.QUERY_STRING, "q=1");
    assert.equal(first.SERVER_NAME, "example.com");
    assert.equal(first.SERVER_PORT, "8080");
    assert.equal(first.HTTP_HOST, "example.com:8080");
    assert.ok(!("REMOTE_ADDR" in first), "no client address on a Unix socket");
    assert.equal(second.PATH_INFO, "/y");
    assert.equal(second.SERVER_NAME, "localhost");
    assert.equal(second.SERVER_PORT, "80");
    assert.equal(environs[0]["wsgi.url_scheme"], "http");
    assert.equal(socketsAt(path), 0);
    assert.throws(() => Deno.lstatSync(path), Deno.errors.NotFound);
  });
});

const NGINX = findNginx();

Deno.test({
  name:
    "makeServer() on a Unix socket behind nginx proxy_pass takes SERVER_NAME and SERVER_PORT from the Host nginx sends",
  ignore: NGINX === null,
  async fn() {
    await withTempDir(async (dir) => {
      const path = `${dir}/http.sock`;
      const { app, environs } = recorder();
      const server = makeServer("", 0, app, { path, quiet: true });
      const serving = server.serveForever();
      // nginx's defaults: "Host: $proxy_host" ("localhost" for a Unix
      // socket upstream), HTTP/1.0; the usual setting passes the client's.
      const nginx = await startNginx(NGINX!, {
        server: `
    location /default/ {
      proxy_pass http://unix:${path}:;
    }
    location /forwarded/ {
      proxy_pass http://unix:${path}:;
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-For $remote_addr;
    }`,
      });
      try {
        for (const where of ["default", "forwarded"]) {
          const response = await fetch(`${nginx.base}/${where}/x?y=1`);
          assert.equal(response.status, 200);
          assert.equal(await response.text(), "ok");
        }
      } finally {
        await nginx.stop();
        await server.shutdown();
        await serving;
      }
      const [plain, forwarded] = environs.map(cgiVariables);
      assert.equal(plain.PATH_INFO, "/default/x");
      assert.equal(plain.QUERY_STRING, "y=1");
      assert.equal(plain.SERVER_NAME, "localhost");
      assert.equal(plain.SERVER_PORT, "80");
      assert.ok(!("REMOTE_ADDR" in plain));
      assert.equal(forwarded.PATH_INFO, "/forwarded/x");
      assert.equal(forwarded.SERVER_NAME, "127.0.0.1");
      assert.equal(forwarded.SERVER_PORT, String(nginx.port));
      assert.equal(forwarded.HTTP_X_FORWARDED_FOR, "127.0.0.1");
    });
  },
});

Deno.test("makeServer() replaces a stale socket file, refuses to replace anything else", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/http.sock`;
    // A socket file whose listener is gone: bound by a process killed since.
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "eval",
        `Deno.listen({ transport: "unix", path: ${
          JSON.stringify(path)
        } }); console.log("bound"); setInterval(() => {}, 1000);`,
      ],
      stdout: "piped",
    }).spawn();
    const reader = child.stdout.getReader();
    await reader.read();
    child.kill("SIGKILL");
    await child.status;
    reader.releaseLock();
    await child.stdout.cancel();
    assert.ok(Deno.lstatSync(path).isSocket);
    {
      await using server = makeServer("", 0, text("fresh"), {
        path,
        quiet: true,
      });
      server.serveForever();
      const response = await unixRequest(
        path,
        "GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
      );
      assert.ok(response.endsWith("\r\n\r\nfresh"), response);
    }
    const file = `${dir}/not-a-socket`;
    await Deno.writeTextFile(file, "keep me");
    assert.throws(
      () => makeServer("", 0, demoApp, { path: file }),
      (error: Error) =>
        error instanceof Deno.errors.AddrInUse &&
        error.message ===
          `Cannot listen on "${file}": it exists and is not a socket`,
    );
    assert.equal(await Deno.readTextFile(file), "keep me");
  });
});

Deno.test("makeServer() refuses a socket path with a TCP address or TLS", async (t) => {
  const rows: [string, number, MakeServerOptions, RegExp][] = [
    [
      "",
      0,
      { path: "" },
      /the socket path must be a non-empty string, not string ""/,
    ],
    [
      "127.0.0.1",
      0,
      { path: "/tmp/x.sock" },
      /listen on socket "\/tmp\/x.sock" or on host "127.0.0.1" port 0, not both/,
    ],
    ["", 8000, { path: "/tmp/x.sock" }, /or on host "" port 8000, not both/],
    [
      "",
      0,
      { path: "/tmp/x.sock", cert: "c", key: "k" },
      /TLS \(cert, key\) is not available on Unix socket "\/tmp\/x.sock"/,
    ],
  ];
  for (const [host, port, options, message] of rows) {
    await t.step(
      `${JSON.stringify([host, port])} ${JSON.stringify(options)}`,
      () => {
        assert.throws(
          () => makeServer(host, port, demoApp, options),
          (error: Error) =>
            error instanceof TypeError && message.test(error.message),
        );
      },
    );
  }
});

Deno.test("toFetchHandler() behind Deno.serve on a Unix socket builds PATH_INFO from the target", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/fetch.sock`;
    const { app, environs } = recorder();
    const server = Deno.serve(
      { path, onListen: () => {} },
      toFetchHandler(app, { quiet: true }),
    );
    try {
      const response = await unixRequest(
        path,
        "GET /x?y HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n",
      );
      assert.match(response, /^HTTP\/1.1 200 OK\r\n/);
    } finally {
      await server.shutdown();
    }
    const environ = cgiVariables(environs[0]);
    assert.equal(environ.PATH_INFO, "/x");
    assert.equal(environ.QUERY_STRING, "y");
    assert.equal(environ.SERVER_NAME, "example.com");
    assert.equal(environ.SERVER_PORT, "80");
  });
});

Deno.test("toFetchHandler() cuts a request still running after requestTimeout", async () => {
  const fetchHandler = toFetchHandler(() => new Promise(() => {}), {
    requestTimeout: 100,
    handlerClass: logged(new StringErrorStream()),
  });
  const response = await within(
    fetchHandler(new Request("http://localhost/")),
    5000,
    "the answer",
  );
  assert.equal(response.status, 500);
  assert.equal(await response.text(), ERROR_PAGE);
});

// ------------------------------------------------------------ program mode

/** Run `args` with deno, wait for "port N", call `body`, then Ctrl-C it. */
async function withProgram(
  args: string[],
  body: (url: string) => Promise<void>,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", ...args],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stdout = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const stderr = child.stderr.pipeThrough(new TextDecoderStream());
  const stderrText = (async () => {
    let all = "";
    for await (const part of stderr) all += part;
    return all;
  })();
  let out = "";
  try {
    for (let i = 0; i < 1000 && !/port (\d+)|:(\d+)\//.test(out); i++) {
      const { done, value } = await stdout.read();
      if (done) break;
      out += value;
    }
    const match = /port (\d+)|:(\d+)\//.exec(out);
    assert.ok(match, `no port in ${JSON.stringify(out)}`);
    await body(`http://127.0.0.1:${match[1] ?? match[2]}`);
  } finally {
    child.kill("SIGINT");
  }
  for (;;) {
    const { done, value } = await stdout.read();
    if (done) break;
    out += value;
  }
  const status = await child.status;
  return { code: status.code, stdout: out, stderr: await stderrText };
}

/** Run `args` with deno to the end. */
async function runProgram(args: string[]) {
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", ...args],
  }).output();
  return {
    code,
    stdout: decoder.decode(stdout),
    stderr: decoder.decode(stderr),
  };
}

Deno.test("simple_server.ts as a program serves demoApp and stops on Ctrl-C", async () => {
  const result = await withProgram(
    [SIMPLE_SERVER, "--host", "127.0.0.1", "--port", "0"],
    async (url) => {
      const body = await (await fetch(`${url}/xyz?abc`)).text();
      assert.ok(body.startsWith("Hello world!\n\n"));
      assert.match(body, /^PATH_INFO = '\/xyz'$/m);
    },
  );
  assert.equal(result.code, 0);
  assert.match(
    result.stdout,
    /^Serving HTTP on 127\.0\.0\.1 port \d+ \.\.\.\n$/,
  );
  assert.match(result.stderr, /"GET \/xyz\?abc HTTP\/1.1" 200 \d+\n/);
});

Deno.test("simple_server.ts as a program serves a module's application", async (t) => {
  const rows: [string, string][] = [
    ["app.ts", "fixture app"],
    ["app.ts:named", "fixture named"],
    ["defaultonly.ts", "fixture default"],
  ];
  for (const [spec, expected] of rows) {
    await t.step(spec, async () => {
      const path = new URL(FIXTURES).pathname + spec;
      const result = await withProgram(
        [SIMPLE_SERVER, path, "--port", "0", "--host", "127.0.0.1"],
        async (url) => {
          assert.equal(await (await fetch(url)).text(), expected);
        },
      );
      assert.equal(result.code, 0);
    });
  }
});

Deno.test("simple_server.ts as a program serves every shipped example and an app that imports it", async (t) => {
  const examples = new URL("../examples/", import.meta.url).pathname;
  const rows: [string, RegExp][] = [
    [`${examples}hello.ts`, /^Hello from \/$/m],
    [`${examples}validated.ts`, /^Hello from \/$/m],
    [`${examples}cgi.ts`, /"pathInfo": "\/"/],
    [`${examples}hono.ts`, /^Hello from Hono!$/],
    [`${new URL(FIXTURES).pathname}imports_runner.ts`, /^runner: function$/],
  ];
  for (const [path, expected] of rows) {
    await t.step(path.slice(path.lastIndexOf("/") + 1), async () => {
      const result = await withProgram(
        [SIMPLE_SERVER, path, "--port", "0", "--host", "127.0.0.1"],
        async (url) => {
          const response = await fetch(`${url}/`);
          assert.equal(response.status, 200);
          assert.match(await response.text(), expected);
        },
      );
      assert.equal(result.code, 0, result.stderr);
    });
  }
});

Deno.test("simple_server.ts as a program refuses a bad module or option", async (t) => {
  const fixtures = new URL(FIXTURES).pathname;
  const rows: [string[], number, RegExp][] = [
    [
      [`${fixtures}app.ts:notAnApp`],
      1,
      /^Cannot load an application from ".*app.ts:notAnApp": The module has no application named "notAnApp"\n$/,
    ],
    [
      [`${fixtures}app.ts:missing`],
      1,
      /The module has no application named "missing"\n$/,
    ],
    [
      [`${fixtures}nowhere.ts`],
      1,
      /^Cannot load an application from ".*nowhere.ts": /,
    ],
    [["--port", "http"], 2, /^Not a port: "http"\nUsage: /],
    [["--port", "70000"], 2, /^Not a port: "70000"\n/],
    [["a.ts", "b.ts"], 2, /^Unexpected argument "b.ts"\nUsage: /],
  ];
  for (const [args, code, message] of rows) {
    await t.step(args.join(" ").replace(fixtures, ""), async () => {
      const result = await runProgram([
        SIMPLE_SERVER,
        ...args,
        "--host",
        "127.0.0.1",
      ]);
      assert.equal(result.code, code);
      assert.match(result.stderr, message);
    });
  }
});

/** A program started with deno, its output read as it comes. */
class Program {
  readonly child: Deno.ChildProcess;
  stdout = "";
  stderr = "";
  #done: Promise<void>;

  constructor(args: string[]) {
    this.child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", ...args],
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const collect = async (
      stream: ReadableStream<Uint8Array>,
      key: "stdout" | "stderr",
    ) => {
      for await (const part of stream.pipeThrough(new TextDecoderStream())) {
        this[key] += part;
      }
    };
    this.#done = Promise.all([
      collect(this.child.stdout, "stdout"),
      collect(this.child.stderr, "stderr"),
    ]).then(() => {});
  }

  /** Wait (bounded) until stdout or stderr matches `pattern`. */
  async waitFor(pattern: RegExp, on: "stdout" | "stderr" = "stdout") {
    await waitFor(
      () => pattern.test(this[on]),
      `${pattern} in ${JSON.stringify(this[on])}`,
      20_000,
    );
    return pattern.exec(this[on])!;
  }

  /** Send `signal`, wait (bounded: then SIGKILL) for the end. */
  async stop(signal: Deno.Signal, withinMs = 15_000) {
    try {
      this.child.kill(signal);
    } catch {
      // Gone already.
    }
    const started = Date.now();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const killed = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        this.child.kill("SIGKILL");
        resolve();
      }, withinMs);
    });
    const status = await Promise.race([
      this.child.status,
      killed.then(() => null),
    ]);
    clearTimeout(timer);
    await this.#done;
    await this.child.status;
    return { status, ms: Date.now() - started };
  }
}

/** The program serving `hang.ts`, with one request hung in it. */
async function hungProgram(gracefulTimeout: string) {
  const program = new Program([
    SIMPLE_SERVER,
    new URL("hang.ts", FIXTURES).pathname,
    "--host",
    "127.0.0.1",
    "--port",
    "0",
    "--graceful-timeout",
    gracefulTimeout,
  ]);
  const [, port] = await program.waitFor(/port (\d+) \.\.\.\n/);
  const answer = fetch(`http://127.0.0.1:${port}/`);
  await program.waitFor(/^called$/m, "stderr");
  return { program, answer };
}

Deno.test("simple_server.ts as a program exits 0 within --graceful-timeout on SIGTERM, a request hung", async () => {
  const { program, answer } = await hungProgram("0.3");
  const { status, ms } = await program.stop("SIGTERM");
  assert.ok(status, `still running after 15 s: ${program.stderr}`);
  assert.equal(status.code, 0, program.stderr);
  assert.ok(ms >= 290, `stopped after ${ms} ms`);
  const response = await answer;
  assert.equal(response.status, 500);
  assert.equal(await response.text(), ERROR_PAGE);
  assert.match(
    program.stderr,
    /Request cut short at shutdown: still running after 300 ms \(gracefulTimeout\)\n/,
  );
});

Deno.test("simple_server.ts as a program exits at once on a second signal", async () => {
  const { program, answer } = await hungProgram("60");
  // The connection goes with the process.
  const answered = answer.then((response) => response.body?.cancel(), () => {});
  program.child.kill("SIGTERM");
  await new Promise((resolve) => setTimeout(resolve, 200));
  const { status, ms } = await program.stop("SIGTERM", 10_000);
  assert.equal(status?.code, 130, program.stderr);
  assert.ok(ms < 10_000);
  await answered;
});

Deno.test("simple_server.ts as a program serves HTTPS with --cert and --key", async () => {
  const certFile = new URL("tls_cert.pem", FIXTURES).pathname;
  const keyFile = new URL("tls_key.pem", FIXTURES).pathname;
  const program = new Program([
    SIMPLE_SERVER,
    "--host",
    "127.0.0.1",
    "--port",
    "0",
    "--cert",
    certFile,
    "--key",
    keyFile,
  ]);
  try {
    const [, port] = await program.waitFor(
      /^Serving HTTPS on 127\.0\.0\.1 port (\d+) \.\.\.\n$/,
    );
    using client = Deno.createHttpClient({
      caCerts: [await Deno.readTextFile(certFile)],
    });
    const response = await fetch(`https://127.0.0.1:${port}/tls`, { client });
    assert.match(await response.text(), /^wsgi\.url_scheme = 'https'$/m);
  } finally {
    const { status } = await program.stop("SIGINT");
    assert.equal(status?.code, 0);
  }
  assert.match(program.stderr, /"GET \/tls HTTP\/1.1" 200 \d+\n/);
});

Deno.test("simple_server.ts as a program logs nothing with --quiet", async () => {
  const program = new Program([
    SIMPLE_SERVER,
    "--quiet",
    "--host",
    "127.0.0.1",
    "--port",
    "0",
  ]);
  try {
    const [, port] = await program.waitFor(/port (\d+) \.\.\.\n/);
    const response = await fetch(`http://127.0.0.1:${port}/`);
    assert.equal(response.status, 200);
    await response.body?.cancel();
  } finally {
    const { status } = await program.stop("SIGINT");
    assert.equal(status?.code, 0);
  }
  assert.doesNotMatch(program.stderr, /"GET \/ HTTP\/1.1"/);
});

Deno.test("simple_server.ts as a program listens on --socket, replacing a stale socket and removing its own", async () => {
  const dir = await Deno.makeTempDir({ prefix: "wsgiref-test-" });
  const path = `${dir}/http.sock`;
  const args = [
    SIMPLE_SERVER,
    new URL("app.ts", FIXTURES).pathname,
    "--socket",
    path,
  ];
  try {
    // A program that dies leaves its socket file behind.
    const crashed = new Program(args);
    await crashed.waitFor(/^Serving HTTP on unix:.* \.\.\.\n$/);
    await crashed.stop("SIGKILL");
    assert.ok(Deno.lstatSync(path).isSocket, "a stale socket file");
    const program = new Program(args);
    try {
      await program.waitFor(
        new RegExp(`^Serving HTTP on unix:${path} \\.\\.\\.\\n$`),
      );
      const response = await unixRequest(
        path,
        "GET /x HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n",
      );
      assert.match(response, /^HTTP\/1.1 200 OK\r\n/);
      assert.ok(response.endsWith("\r\n\r\nfixture app"), response);
    } finally {
      const { status } = await program.stop("SIGINT");
      assert.equal(status?.code, 0, program.stderr);
    }
    assert.throws(() => Deno.lstatSync(path), Deno.errors.NotFound);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("simple_server.ts as a program refuses bad flag combinations with exit code 2", async (t) => {
  const certFile = new URL("tls_cert.pem", FIXTURES).pathname;
  const keyFile = new URL("tls_key.pem", FIXTURES).pathname;
  const rows: [string[], string][] = [
    [["--cert", certFile], "--cert needs --key"],
    [["--key", keyFile], "--key needs --cert"],
    [
      ["--socket", "/tmp/x.sock", "--port", "8000"],
      "Give --socket or --port, not both",
    ],
    [
      ["--socket", "/tmp/x.sock", "--host", "127.0.0.1"],
      "Give --socket or --host, not both",
    ],
    [
      ["--socket", "/tmp/x.sock", "--cert", certFile, "--key", keyFile],
      "TLS (--cert, --key) is not available on a Unix socket",
    ],
    [["--socket", ""], 'Not a socket path: ""'],
    [
      ["--cert", "/nonexistent/cert.pem", "--key", keyFile],
      'Cannot read the certificate "/nonexistent/cert.pem": ',
    ],
    [
      ["--cert", certFile, "--key", "/nonexistent/key.pem"],
      'Cannot read the key "/nonexistent/key.pem": ',
    ],
    [["--graceful-timeout", "-1"], 'Not a number of seconds: "-1"'],
    [["--graceful-timeout", "soon"], 'Not a number of seconds: "soon"'],
    [["--port"], "Missing a value after --port"],
    [["--bogus"], 'Unexpected argument "--bogus"'],
  ];
  for (const [args, message] of rows) {
    await t.step(
      args.join(" ").replaceAll(new URL(FIXTURES).pathname, ""),
      async () => {
        const result = await runProgram([SIMPLE_SERVER, ...args]);
        assert.equal(result.code, 2, result.stderr);
        const lines = result.stderr.split("\n");
        assert.ok(lines[0].startsWith(message), lines[0]);
        assert.match(lines[1], /^Usage: deno run -A simple_server\.ts /);
        assert.deepEqual(lines.slice(2), [""], "one line, then the usage");
      },
    );
  }
});

Deno.test("examples/hello.ts serves its application and stops on Ctrl-C", async () => {
  const result = await withProgram([HELLO_EXAMPLE, "0"], async (url) => {
    const response = await fetch(`${url}/caf%C3%A9`);
    assert.equal(await response.text(), "Hello from /café\n");
  });
  assert.equal(result.code, 0);
  assert.match(result.stdout, /^Serving on http:\/\/127\.0\.0\.1:\d+\/ /);
});

// ----------------------------------------------------------- ServerHandler

Deno.test("ServerHandler.run() leaves a Response in response", async () => {
  const handler = new ServerHandler(
    { readSync: () => null },
    { write: () => {} },
    new StringErrorStream(),
    { REQUEST_METHOD: "GET", SERVER_PROTOCOL: "HTTP/1.1" },
  );
  assert.equal(handler.response, null);
  assert.deepEqual(handler.osEnviron, {});
  await handler.run(text("done", [["X-A", "1"]]));
  const response = handler.response!;
  assert.equal(response.status, 200);
  assert.deepEqual([...response.headers], [
    ["content-type", "text/plain"],
    ["server", SERVER],
    ["x-a", "1"],
  ]);
  assert.equal(await response.text(), "done");
  // close() has reset the state for the next request.
  assert.equal(handler.status, null);
  assert.equal(handler.headersSent, false);
});

Deno.test("ServerHandler closes a refused result once, whatever its close() does", async (t) => {
  const CLOSES: [string, () => unknown, RegExp][] = [
    ["returns", () => {}, /result yielded a string \("not bytes"\) at index 0/],
    ["resolves", async () => await null, /result yielded a string/],
    ["throws", () => {
      throw new Error("close failed");
    }, /Error: close failed/],
    [
      "rejects",
      () => Promise.reject(new Error("close rejected")),
      /Error: close rejected/,
    ],
  ];
  for (const [behaviour, close, logged] of CLOSES) {
    for (const shape of ["an Array", "a generator"]) {
      await t.step(`${shape} whose close() ${behaviour}`, async () => {
        let closes = 0;
        const errors = new StringErrorStream();
        const handler = new ServerHandler(
          { readSync: () => null },
          { write: () => {} },
          errors,
          { REQUEST_METHOD: "GET", SERVER_PROTOCOL: "HTTP/1.1" },
        );
        await handler.run((_environ, startResponse) => {
          startResponse("200 OK", [["Content-Type", "text/plain"]]);
          const result = shape === "an Array" ? ["not bytes"] : (function* () {
            yield "not bytes";
          })();
          return Object.assign(result, {
            close: () => {
              closes++;
              return close();
            },
          }) as unknown as ResponseBody;
        });
        const response = handler.response!;
        assert.equal(response.status, 500);
        assert.equal(
          await response.text(),
          "A server error occurred.  Please contact the administrator.",
        );
        assert.equal(closes, 1);
        assert.match(errors.value, logged);
      });
    }
  }
});

Deno.test("toFetchHandler() closes a result reused across requests once per request", async () => {
  let closed = 0;
  const shared = {
    *[Symbol.iterator]() {
      yield latin1("a");
      yield latin1("b");
    },
    close() {
      closed++;
    },
  };
  const fetchHandler = toFetchHandler((_environ, startResponse) => {
    startResponse("200 OK", [["Content-Type", "text/plain"]]);
    return shared;
  }, { quiet: true });
  for (let i = 0; i < 3; i++) {
    const response = await fetchHandler(new Request("http://localhost/"));
    assert.equal(await response.text(), "ab");
  }
  assert.equal(closed, 3);
});

Deno.test("makeServer() sends concurrent slow async streams whole beside other traffic, closing each result once", async () => {
  // A guard for a report of slow streams answered 200 with only their first
  // bytes under mixed load; bench/soak.ts is the long form of this.
  const closes = new Map<string, number>();
  const big = new Uint8Array(1024 * 1024);
  for (let i = 0; i < big.length; i++) big[i] = i * 7;
  const app: Application = (environ, startResponse) => {
    const id = String(environ.QUERY_STRING);
    const closable = <T extends object>(result: T): T =>
      Object.assign(result, {
        close: () => closes.set(id, (closes.get(id) ?? 0) + 1),
      });
    switch (environ.PATH_INFO) {
      case "/slow":
        startResponse("200 OK", [["Content-Type", "text/plain"]]);
        return closable((async function* () {
          for (let i = 0; i < 10; i++) {
            if (i > 0) await new Promise((r) => setTimeout(r, 20));
            yield encoder.encode(`line ${i} of ${id}\n`);
          }
        })());
      case "/big":
        startResponse("200 OK", [["Content-Type", "application/octet-stream"]]);
        return closable((function* () {
          for (let i = 0; i < big.length; i += 64 * 1024) {
            yield big.subarray(i, i + 64 * 1024);
          }
        })());
      case "/throw":
        startResponse("200 OK", [["Content-Type", "text/plain"]]);
        return closable((function* () {
          yield encoder.encode("partial\n");
          throw new Error("thrown after the headers");
        })());
    }
    startResponse("200 OK", [["Content-Type", "text/plain"]]);
    return [encoder.encode("Hello world!")];
  };
  const get = (port: number, target: string) =>
    rawRequest(
      port,
      `GET ${target} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n`,
    );
  /** Read `bytes` of the response, then go away. */
  const cut = async (port: number, target: string, bytes: number) => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    try {
      await conn.write(latin1(`GET ${target} HTTP/1.1\r\nHost: a\r\n\r\n`));
      const buffer = new Uint8Array(64 * 1024);
      for (let got = 0; got < bytes;) {
        const n = await conn.read(buffer);
        if (n === null) break;
        got += n;
      }
    } finally {
      conn.close();
    }
  };
  const bodyOf = (response: Uint8Array) => {
    const text = fromLatin1(response);
    const split = text.indexOf("\r\n\r\n");
    return { head: text.slice(0, split), ...dechunk(text.slice(split + 4)) };
  };
  await withServer(app, async ({ port, url }) => {
    const slow = Array.from({ length: 60 }, (_, i) => `s${i}`);
    const [slowResponses, bigResponses, throwResponses] = await Promise.all([
      Promise.all(slow.map((id) => get(port, `/slow?${id}`))),
      Promise.all(
        ["b0", "b1"].map((id) => get(port, `/big?${id}`)),
      ),
      Promise.all(["t0", "t1"].map((id) => get(port, `/throw?${id}`))),
      Promise.all(
        Array.from({ length: 8 }, (_, i) => cut(port, `/big?c${i}`, 100_000)),
      ),
      Promise.all(Array.from({ length: 40 }, async () => {
        const response = await fetch(`${url}/`);
        assert.equal(await response.text(), "Hello world!");
      })),
    ]);
    slowResponses.forEach((response, i) => {
      const { head, body, complete } = bodyOf(response);
      assert.match(head, /^HTTP\/1\.1 200 OK\r\n/);
      assert.equal(
        body,
        Array.from({ length: 10 }, (_, k) => `line ${k} of s${i}\n`).join(""),
      );
      assert.ok(complete, `s${i} ended cleanly`);
    });
    for (const response of bigResponses) {
      const { body, complete } = bodyOf(response);
      assert.ok(complete);
      assert.deepEqual(latin1(body), big);
    }
    for (const response of throwResponses) {
      const { body, complete } = bodyOf(response);
      assert.equal(body, "partial\n");
      assert.ok(!complete, "a response cut short by an error never ends");
    }
    const ids = [
      ...slow,
      "b0",
      "b1",
      "t0",
      "t1",
      ...Array.from({ length: 8 }, (_, i) => `c${i}`),
    ];
    await waitFor(() => ids.every((id) => closes.has(id)), "every close()");
    for (const id of ids) assert.equal(closes.get(id), 1, `close() of ${id}`);
  }, { quiet: true });
});
