/**
 * `fetch.ts`: `fromFetchHandler()` alone (Request and response mapping,
 * limits, errors), then a plain fetch handler and a real Hono app
 * (`tests/fixtures/fetch_app.ts`) through every way in: `makeServer`, the
 * CGI handler behind a real lighttpd, the FastCGI gateway behind a real
 * nginx, each time inside `validator()`; the round trip through
 * `toFetchHandler()`; and `examples/hono.ts`.
 *
 * Then `docs/fetch.md` as a reader follows it, with the recipes of
 * `docs/deploy/` (only ports and paths substituted): `examples/hono.ts`
 * and the Hono fixture bundled by the page's commands, each deployed alone
 * with an empty Deno cache under lighttpd, nginx + fcgiwrap and Apache
 * mod_cgid; the page's gateway command behind nginx, lighttpd and Apache
 * mod_proxy_fcgi; the page's CGI command and the output it shows.
 *
 * Expected status lines, error pages and header blocks come from CPython:
 * `http.HTTPStatus` for reason phrases, wsgiref's `BaseCGIHandler` for the
 * CGI output and its error page. Without a host its tests are ignored,
 * unless `WSGIREF_REQUIRE_LIGHTTPD=1`, `WSGIREF_REQUIRE_NGINX=1` or
 * `WSGIREF_REQUIRE_APACHE=1`.
 */

import assert from "node:assert/strict";
import {
  type FetchHandler,
  fromFetchHandler,
  type FromFetchHandlerOptions,
  toFetchHandler,
} from "../fetch.ts";
import * as simpleServer from "../simple_server.ts";
import { makeServer, WSGIRequestHandler } from "../simple_server.ts";
import { BaseCGIHandler } from "../handlers.ts";
import { makeFastCGIServer } from "../fastcgi.ts";
import { validator } from "../validate.ts";
import { setupTestingDefaults } from "../util.ts";
import { BytesInput, StringErrorStream } from "../_io.ts";
import { decodeLatin1 } from "../_internal.ts";
import type {
  Application,
  Environ,
  HeaderList,
  ResponseBody,
} from "../types.ts";
import {
  type FetchAppStats,
  makeHonoApp,
  makePlainHandler,
} from "./fixtures/fetch_app.ts";
import { adler32, PATTERN } from "./fixtures/fastcgi_app.ts";
import {
  downloadThenLeave,
  freePort,
  waitFor,
  within,
} from "./fixtures/process.ts";
import { findLighttpd, startLighttpd } from "./fixtures/lighttpd.ts";
import { FASTCGI_PARAMS, findNginx, startNginx } from "./fixtures/nginx.ts";
import { findApache, hasApacheModule, startApache } from "./fixtures/apache.ts";
import { findFcgiwrap, startFcgiwrap } from "./fixtures/fcgiwrap.ts";
import {
  startApacheCgi,
  startLighttpdCgi,
  startNginxFcgiwrap,
} from "./fixtures/cgi_recipes.ts";
import {
  deployCgiBundle,
  deployConfig,
  type DeployedCgi,
  ignoreWithout,
  shell,
} from "./fixtures/deploy.ts";
import { fencedBlocks, ROOT, shellCommands } from "./fixtures/markdown.ts";

const MIB = 1024 * 1024;
const encoder = new TextEncoder();
const decoder = new TextDecoder();
const ERROR_BODY =
  "A server error occurred.  Please contact the administrator.";
/** wsgiref's error page as `BaseCGIHandler` writes it (CPython 3.11). */
const CGI_ERROR_PAGE = "Status: 500 Internal Server Error\r\n" +
  "Content-Type: text/plain\r\nContent-Length: 59\r\n\r\n" + ERROR_BODY;
const FIXTURE = new URL("./fixtures/fetch_app.ts", import.meta.url).pathname;
const EXAMPLE = new URL("../examples/hono.ts", import.meta.url).pathname;

const LIGHTTPD = findLighttpd();
const NGINX = findNginx();
const APACHE = findApache();
const IGNORE_LIGHTTPD = ignoreWithout(
  LIGHTTPD,
  "lighttpd",
  "WSGIREF_REQUIRE_LIGHTTPD",
  "lighttpd",
);
const FCGIWRAP = findFcgiwrap();
const IGNORE_FCGIWRAP = ignoreWithout(
  NGINX && FCGIWRAP,
  "nginx or fcgiwrap",
  "WSGIREF_REQUIRE_NGINX",
  "nginx fcgiwrap",
);
const IGNORE_NGINX = ignoreWithout(
  NGINX,
  "nginx",
  "WSGIREF_REQUIRE_NGINX",
  "nginx",
);
const APACHE_FOUND =
  APACHE !== null && ["cgid", "proxy", "proxy_fcgi"].every(hasApacheModule)
    ? APACHE
    : null;
const IGNORE_APACHE = ignoreWithout(
  APACHE_FOUND,
  "Apache 2.4 with mod_proxy_fcgi and mod_cgid",
  "WSGIREF_REQUIRE_APACHE",
  "apache2",
);

// ------------------------------------------------------------- helpers

/** A test environ: `setupTestingDefaults` plus `extra`. */
function environFor(extra: Record<string, unknown> = {}): Environ {
  const environ: Environ = {
    ...extra,
    "wsgi.errors": new StringErrorStream(),
  };
  setupTestingDefaults(environ);
  return environ;
}

/** Call `app` directly; the status, headers and result it gave. */
async function call(
  app: Application,
  environ: Environ,
): Promise<{ status: string; headers: HeaderList; result: ResponseBody }> {
  let status = "";
  let headers: HeaderList = [];
  const result = await app(environ, (s, h) => {
    status = s;
    headers = h;
    return () => {};
  });
  return { status, headers, result };
}

/** The `Request` a handler receives for `environ`. */
async function requestFor(environ: Environ): Promise<Request> {
  let seen: Request | null = null;
  const app = fromFetchHandler((request) => {
    seen = request;
    return new Response("ok");
  });
  await call(app, environFor(environ));
  assert.ok(seen, "the handler was not called");
  return seen;
}

/** `wsgi.input` over bytes that records the size of each `read()`. */
class SpyInput extends BytesInput {
  reads: (number | null | undefined)[] = [];
  override read(size?: number | null): Uint8Array {
    this.reads.push(size);
    return super.read(size);
  }
}

/** Run `app` through `BaseCGIHandler`: its whole output as a latin-1
 * string, and what it logged. */
async function cgi(
  app: Application,
  extra: Record<string, string> = {},
  body: Uint8Array = new Uint8Array(0),
): Promise<{ output: string; log: string }> {
  let output = "";
  const errors = new StringErrorStream();
  const handler = new BaseCGIHandler(
    new BytesInput(body),
    { write: (data: Uint8Array) => void (output += decodeLatin1(data)) },
    errors,
    {
      REQUEST_METHOD: "GET",
      SERVER_NAME: "example.com",
      SERVER_PORT: "80",
      SERVER_PROTOCOL: "HTTP/1.1",
      SCRIPT_NAME: "",
      PATH_INFO: "/",
      QUERY_STRING: "",
      ...extra,
    },
  );
  await handler.run(app);
  return { output, log: errors.value };
}

/** A body stream that counts its pulls and cancels; `chunk` bytes per
 * pull, `limit` pulls (`Infinity`: until cancelled). */
function countingStream(chunk: Uint8Array, limit = Infinity) {
  const counts = { pulls: 0, cancels: 0 };
  const stream = new ReadableStream<Uint8Array>({
    pull(controller) {
      counts.pulls++;
      controller.enqueue(chunk);
      if (counts.pulls >= limit) controller.close();
    },
    cancel() {
      counts.cancels++;
    },
  }, { highWaterMark: 0 });
  return { counts, stream };
}

// ------------------------------------------------- the Request a handler gets

Deno.test("fromFetchHandler() builds the request URL by requestUri()'s rules", async (t) => {
  const rows: [string, Record<string, string>, string][] = [
    [
      "HTTP_HOST, SCRIPT_NAME + PATH_INFO, QUERY_STRING",
      {
        HTTP_HOST: "example.com:8080",
        SCRIPT_NAME: "/app",
        PATH_INFO: "/a b",
        QUERY_STRING: "x=1",
      },
      "http://example.com:8080/app/a%20b?x=1",
    ],
    [
      "SERVER_NAME and the default port of https",
      {
        HTTPS: "on",
        "wsgi.url_scheme": "https",
        SERVER_NAME: "example.com",
        SERVER_PORT: "443",
        PATH_INFO: "/",
      },
      "https://example.com/",
    ],
    [
      "SERVER_NAME and another port",
      { SERVER_NAME: "example.com", SERVER_PORT: "8000", PATH_INFO: "/x" },
      "http://example.com:8000/x",
    ],
    [
      "a UTF-8 path, one char per byte",
      { HTTP_HOST: "h", PATH_INFO: "/caf\xc3\xa9/\xe6\x97\xa5" },
      "http://h/caf%C3%A9/%E6%97%A5",
    ],
    [
      "raw UTF-8 bytes and escapes in the query",
      { HTTP_HOST: "h", PATH_INFO: "/", QUERY_STRING: "q=\xc3\xa9&r=%C3%A9" },
      "http://h/?q=%C3%A9&r=%C3%A9",
    ],
    [
      "a # and a space in the query",
      { HTTP_HOST: "h", PATH_INFO: "/", QUERY_STRING: "a=#1 2&b='<>\"" },
      "http://h/?a=%231%202&b=%27%3C%3E%22",
    ],
    [
      "? and # in the path",
      { HTTP_HOST: "h", PATH_INFO: "/what?#" },
      "http://h/what%3F%23",
    ],
    [
      "an IDN host as UTF-8 bytes",
      { HTTP_HOST: "b\xc3\xbccher.example", PATH_INFO: "/" },
      "http://xn--bcher-kva.example/",
    ],
  ];
  for (const [name, environ, url] of rows) {
    await t.step(name, async () => {
      const request = await requestFor({
        HTTP_HOST: "",
        SCRIPT_NAME: "",
        QUERY_STRING: "",
        ...environ,
      });
      assert.equal(request.url, url);
    });
  }
  await t.step("the UTF-8 path arrives as the same UTF-8 path", async () => {
    const request = await requestFor({ PATH_INFO: "/caf\xc3\xa9" });
    assert.equal(decodeURIComponent(new URL(request.url).pathname), "/café");
  });
});

Deno.test("fromFetchHandler() passes the method, the headers and the environ", async () => {
  const environ = environFor({
    REQUEST_METHOD: "PROPFIND",
    HTTP_ACCEPT_LANGUAGE: "fr, en;q=0.5",
    HTTP_X_FORWARDED_FOR: "10.0.0.1",
    HTTP_X_UTF8: "caf\xc3\xa9",
    HTTP_CONTENT_TYPE: "text/ignored",
    HTTP_CONTENT_LENGTH: "99",
    "HTTP_X(BAD": "not a token",
    HTTP_X_NEWLINE: "a\nb",
    CONTENT_TYPE: "application/json",
    CONTENT_LENGTH: "",
    REMOTE_ADDR: "192.0.2.1",
  });
  let seen: [Request, Environ] | null = null;
  await call(
    fromFetchHandler((request, env) => {
      seen = [request, env];
      return new Response(null, { status: 204 });
    }),
    environ,
  );
  assert.ok(seen);
  const [request, env] = seen as [Request, Environ];
  assert.equal(request.method, "PROPFIND");
  assert.deepEqual([...request.headers], [
    ["accept-language", "fr, en;q=0.5"],
    ["content-type", "application/json"],
    ["host", "127.0.0.1"],
    ["x-forwarded-for", "10.0.0.1"],
    ["x-utf8", "caf\xc3\xa9"],
  ]);
  assert.equal(request.body, null);
  assert.equal(env, environ);
  assert.equal(env.REMOTE_ADDR, "192.0.2.1");
});

Deno.test("fromFetchHandler() streams the request body from wsgi.input as the handler reads it", async (t) => {
  const body = Uint8Array.from({ length: 150 * 1024 }, (_, i) => i % 251);
  await t.step("nothing read before the handler reads", async () => {
    const input = new SpyInput(body);
    const readsSeen: number[] = [];
    await call(
      fromFetchHandler(async (request) => {
        readsSeen.push(input.reads.length);
        const reader = request.body!.getReader();
        await reader.read();
        readsSeen.push(input.reads.length);
        await reader.cancel();
        return new Response("ok");
      }),
      environFor({
        REQUEST_METHOD: "POST",
        CONTENT_LENGTH: String(body.length),
        "wsgi.input": input,
      }),
    );
    assert.deepEqual(readsSeen, [0, 1]);
  });
  await t.step("a handler that never reads it: no read at all", async () => {
    const input = new SpyInput(body);
    const { result } = await call(
      fromFetchHandler(() => new Response("ok")),
      environFor({
        REQUEST_METHOD: "POST",
        CONTENT_LENGTH: String(body.length),
        "wsgi.input": input,
      }),
    );
    (result as { close(): void }).close();
    assert.deepEqual(input.reads, []);
  });
  const rows: [string, number, number[]][] = [
    ["64 KiB - 1", 65535, [65535]],
    ["64 KiB", 65536, [65536]],
    ["64 KiB + 1", 65537, [65536, 1]],
    ["150 KiB", 150 * 1024, [65536, 65536, 22528]],
  ];
  for (const [name, length, reads] of rows) {
    await t.step(`CONTENT_LENGTH ${name}: 64 KiB reads at most`, async () => {
      const input = new SpyInput(body);
      let received: Uint8Array | null = null;
      await call(
        fromFetchHandler(async (request) => {
          received = await request.bytes();
          return new Response("ok");
        }),
        environFor({
          REQUEST_METHOD: "POST",
          CONTENT_LENGTH: String(length),
          "wsgi.input": input,
        }),
      );
      assert.deepEqual(input.reads, reads);
      assert.deepEqual(received, body.subarray(0, length));
    });
  }
  await t.step(
    "no CONTENT_LENGTH, a Transfer-Encoding: to the end",
    async () => {
      const input = new SpyInput(body.subarray(0, 70000));
      let received: Uint8Array | null = null;
      await call(
        fromFetchHandler(async (request) => {
          received = await request.bytes();
          return new Response("ok");
        }),
        environFor({
          REQUEST_METHOD: "PUT",
          HTTP_TRANSFER_ENCODING: "chunked",
          "wsgi.input": input,
        }),
      );
      assert.deepEqual(input.reads, [65536, 65536, 65536]);
      assert.equal(received!.length, 70000);
    },
  );
  const bodiless: [string, Record<string, string>][] = [
    ["GET with a CONTENT_LENGTH", {
      REQUEST_METHOD: "GET",
      CONTENT_LENGTH: "5",
    }],
    ["HEAD", { REQUEST_METHOD: "HEAD", CONTENT_LENGTH: "5" }],
    ["POST with CONTENT_LENGTH 0", {
      REQUEST_METHOD: "POST",
      CONTENT_LENGTH: "0",
    }],
    ["POST with no CONTENT_LENGTH", { REQUEST_METHOD: "POST" }],
  ];
  for (const [name, environ] of bodiless) {
    await t.step(`${name}: no body`, async () => {
      const input = new SpyInput(body);
      const request = await requestFor({ ...environ, "wsgi.input": input });
      assert.equal(request.body, null);
      assert.deepEqual(input.reads, []);
    });
  }
  await t.step("a body shorter than CONTENT_LENGTH: an error", async () => {
    let error: unknown = null;
    await call(
      fromFetchHandler(async (request) => {
        error = await request.text().then(() => null, (e) => e);
        return new Response("ok");
      }),
      environFor({
        REQUEST_METHOD: "POST",
        CONTENT_LENGTH: "5",
        "wsgi.input": new BytesInput(encoder.encode("abc")),
      }),
    );
    assert.ok(error instanceof Deno.errors.UnexpectedEof);
    assert.equal(
      (error as Error).message,
      "Cannot read the request body: it ended after 3 of 5 bytes",
    );
  });
  await t.step("after the response: no further read", async () => {
    const input = new SpyInput(body);
    let request: Request | null = null;
    const { result } = await call(
      fromFetchHandler((r) => {
        request = r;
        return new Response("ok");
      }),
      environFor({
        REQUEST_METHOD: "POST",
        CONTENT_LENGTH: "10",
        "wsgi.input": input,
      }),
    );
    (result as { close(): void }).close();
    await assert.rejects(
      request!.text(),
      new TypeError("Cannot read the request body: the response is over"),
    );
    assert.deepEqual(input.reads, []);
  });
});

Deno.test("fromFetchHandler() answers a request fetch cannot carry without calling the handler", async (t) => {
  const rows: [string, Record<string, string>, string, string][] = [
    [
      "a Host the URL parser refuses",
      { HTTP_HOST: "exa mple.com" },
      "400 Bad Request",
      "The request's URL is not valid.\n",
    ],
    [
      "CONTENT_LENGTH abc",
      { REQUEST_METHOD: "POST", CONTENT_LENGTH: "abc" },
      "400 Bad Request",
      "The request's Content-Length is not valid.\n",
    ],
    [
      "CONTENT_LENGTH -1",
      { REQUEST_METHOD: "POST", CONTENT_LENGTH: "-1" },
      "400 Bad Request",
      "The request's Content-Length is not valid.\n",
    ],
    [
      "TRACE",
      { REQUEST_METHOD: "TRACE" },
      "501 Not Implemented",
      "The request method is not supported.\n",
    ],
    [
      "CONNECT",
      { REQUEST_METHOD: "connect" },
      "501 Not Implemented",
      "The request method is not supported.\n",
    ],
    [
      "a method that is not a token",
      { REQUEST_METHOD: "GET /" },
      "501 Not Implemented",
      "The request method is not supported.\n",
    ],
  ];
  for (const [name, environ, status, text] of rows) {
    await t.step(name, async () => {
      let called = false;
      const answer = await call(
        fromFetchHandler(() => {
          called = true;
          return new Response("no");
        }),
        environFor(environ),
      );
      assert.equal(called, false);
      assert.equal(answer.status, status);
      assert.deepEqual(answer.headers, [[
        "Content-Type",
        "text/plain; charset=utf-8",
      ]]);
      assert.equal(
        decoder.decode((answer.result as Uint8Array[])[0]),
        text,
      );
    });
  }
});

// ------------------------------------------------------------ the response

Deno.test("fromFetchHandler() sends the status with a reason phrase", async (t) => {
  // Expected phrases: CPython's http.HTTPStatus (RFC 9110 names).
  const rows: [string, ResponseInit, FromFetchHandlerOptions, string][] = [
    ["the statusText", { status: 200, statusText: "Fine" }, {}, "200 Fine"],
    ["404", { status: 404 }, {}, "404 Not Found"],
    ["201", { status: 201 }, {}, "201 Created"],
    ["413", { status: 413 }, {}, "413 Content Too Large"],
    ["418", { status: 418 }, {}, "418 I'm a Teapot"],
    ["422", { status: 422 }, {}, "422 Unprocessable Content"],
    ["511", { status: 511 }, {}, "511 Network Authentication Required"],
    ["an unknown code", { status: 299 }, {}, "299 Unknown"],
    [
      "a blank statusText",
      { status: 503, statusText: "  " },
      {},
      "503 Service Unavailable",
    ],
    [
      "reasonPhrases for an unknown code",
      { status: 299 },
      { reasonPhrases: { 299: "Mostly OK" } },
      "299 Mostly OK",
    ],
    [
      "reasonPhrases over the table",
      { status: 404 },
      { reasonPhrases: { 404: "Nowhere" } },
      "404 Nowhere",
    ],
    [
      "the statusText over reasonPhrases",
      { status: 404, statusText: "Gone Fishing" },
      { reasonPhrases: { 404: "Nowhere" } },
      "404 Gone Fishing",
    ],
  ];
  for (const [name, init, options, status] of rows) {
    await t.step(name, async () => {
      const answer = await call(
        fromFetchHandler(() => new Response("x", init), options),
        environFor(),
      );
      assert.equal(answer.status, status);
    });
  }
});

Deno.test("fromFetchHandler() sends every header but hop-by-hop ones, each Set-Cookie apart", async (t) => {
  await t.step("Set-Cookie and hop-by-hop headers", async () => {
    const headers = new Headers({
      "content-type": "text/plain",
      "x-a": "1",
      connection: "keep-alive",
      "keep-alive": "timeout=5",
      "transfer-encoding": "chunked",
      upgrade: "h2c",
      te: "trailers",
      trailers: "x-t",
      "proxy-authenticate": "Basic",
    });
    headers.append("x-a", "2");
    headers.append("set-cookie", "a=1; Path=/");
    headers.append("set-cookie", "b=2, c; HttpOnly");
    const answer = await call(
      fromFetchHandler(() => new Response("x", { headers })),
      environFor(),
    );
    assert.deepEqual(answer.headers, [
      ["content-type", "text/plain"],
      ["x-a", "1, 2"],
      ["set-cookie", "a=1; Path=/"],
      ["set-cookie", "b=2, c; HttpOnly"],
      ["content-length", "1"],
    ]);
  });
  await t.step("a Content-Type added where none is given", async () => {
    const answer = await call(
      fromFetchHandler(() =>
        new Response(null, { status: 302, headers: { location: "/x" } })
      ),
      environFor(),
    );
    assert.deepEqual(answer.headers, [
      ["location", "/x"],
      ["content-type", "application/octet-stream"],
    ]);
  });
  await t.step("defaultContentType", async () => {
    for (
      const [value, expected] of [
        ["text/html", [["content-type", "text/html"], ["content-length", "1"]]],
        [null, [["content-length", "1"]]],
      ] as const
    ) {
      const answer = await call(
        fromFetchHandler(() => new Response(new Uint8Array([1])), {
          defaultContentType: value,
        }),
        environFor(),
      );
      assert.deepEqual(answer.headers, expected);
    }
  });
  await t.step(
    "204 and 304: no Content-Type, 204 no Content-Length",
    async () => {
      const headers = { "content-type": "text/plain", "content-length": "0" };
      const noContent = await call(
        fromFetchHandler(() =>
          new Response(null, {
            status: 204,
            headers: { ...headers, etag: "1" },
          })
        ),
        environFor(),
      );
      assert.equal(noContent.status, "204 No Content");
      assert.deepEqual(noContent.headers, [["etag", "1"]]);
      const notModified = await call(
        fromFetchHandler(() =>
          new Response(null, {
            status: 304,
            headers: { ...headers, etag: "1" },
          })
        ),
        environFor(),
      );
      assert.equal(notModified.status, "304 Not Modified");
      assert.deepEqual(notModified.headers, [
        ["content-length", "0"],
        ["etag", "1"],
      ]);
    },
  );
});

Deno.test("fromFetchHandler() sends a small finished body as one chunk, any other streamed", async (t) => {
  const text = (n: number) => "0123456789abcdef".slice(0, n);
  const options = { maxBufferedBody: 10 };
  for (const n of [9, 10]) {
    await t.step(`${n} bytes, maxBufferedBody 10: Content-Length`, async () => {
      const { output } = await cgi(
        fromFetchHandler(() => new Response(text(n)), options),
      );
      assert.equal(
        output,
        "Status: 200 OK\r\ncontent-type: text/plain;charset=UTF-8\r\n" +
          `content-length: ${n}\r\n\r\n${text(n)}`,
      );
    });
  }
  await t.step("11 bytes, maxBufferedBody 10: streamed", async () => {
    const { output } = await cgi(
      fromFetchHandler(() => new Response(text(11)), options),
    );
    assert.equal(
      output,
      "Status: 200 OK\r\ncontent-type: text/plain;charset=UTF-8\r\n\r\n" +
        text(11),
    );
  });
  await t.step("an empty body: Content-Length 0", async () => {
    const { output } = await cgi(fromFetchHandler(() => new Response("")));
    assert.equal(
      output,
      "Status: 200 OK\r\ncontent-type: text/plain;charset=UTF-8\r\n" +
        "content-length: 0\r\n\r\n",
    );
  });
  await t.step("maxBufferedBody 0: any byte streams", async () => {
    const { output } = await cgi(
      fromFetchHandler(() => new Response("a"), { maxBufferedBody: 0 }),
    );
    assert.doesNotMatch(output, /Content-Length/i);
  });
  await t.step("the default, 1 MiB: at, over", async () => {
    for (const [size, fixed] of [[MIB, true], [MIB + 1, false]] as const) {
      const { result } = await call(
        fromFetchHandler(() => new Response(new Uint8Array(size))),
        environFor(),
      );
      assert.equal(Array.isArray(result), fixed, `${size} bytes`);
      if (!fixed) (result as { close(): void }).close();
    }
  });
  await t.step("a small body still being produced: streamed", async () => {
    let push: (() => void) | undefined;
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(encoder.encode("first "));
        push = () => {
          controller.enqueue(encoder.encode("second"));
          controller.close();
        };
      },
    });
    const { result } = await call(
      fromFetchHandler(() => new Response(body)),
      environFor(),
    );
    assert.ok(!Array.isArray(result));
    const iterator = (result as AsyncIterable<Uint8Array>)
      [Symbol.asyncIterator]();
    assert.equal(decoder.decode((await iterator.next()).value), "first ");
    push!();
    assert.equal(decoder.decode((await iterator.next()).value), "second");
    assert.equal((await iterator.next()).done, true);
  });
});

Deno.test("fromFetchHandler() reads a streamed body only as the server asks", async () => {
  const { counts, stream } = countingStream(new Uint8Array(1000));
  const { result } = await call(
    fromFetchHandler(() => new Response(stream), { maxBufferedBody: 0 }),
    environFor(),
  );
  const iterator = (result as AsyncIterable<Uint8Array>)
    [Symbol.asyncIterator]();
  // One chunk read to see the body is not small; then one per next().
  assert.equal(counts.pulls, 1);
  for (let i = 1; i <= 5; i++) {
    assert.equal((await iterator.next()).value!.length, 1000);
    assert.equal(counts.pulls, i);
  }
  (result as { close(): void }).close();
  assert.equal(counts.cancels, 1);
});

Deno.test("fromFetchHandler() cancels the body and aborts the request signal when the result is closed early", async (t) => {
  for (const how of ["close()", "return()"]) {
    await t.step(how, async () => {
      const { counts, stream } = countingStream(new Uint8Array(10));
      let signal: AbortSignal | null = null;
      const { result } = await call(
        fromFetchHandler((request) => {
          signal = request.signal;
          return new Response(stream);
        }, { maxBufferedBody: 0 }),
        environFor(),
      );
      const iterator = (result as AsyncIterable<Uint8Array>)
        [Symbol.asyncIterator]();
      await iterator.next();
      assert.equal(signal!.aborted, false);
      if (how === "close()") (result as { close(): void }).close();
      else await iterator.return!();
      assert.equal(counts.cancels, 1);
      assert.equal(signal!.aborted, true);
      assert.equal((await iterator.next()).done, true);
      // Closed again by the server: nothing more.
      (result as { close(): void }).close();
      assert.equal(counts.cancels, 1);
    });
  }
  await t.step("a body that ended: nothing cancelled or aborted", async () => {
    const { counts, stream } = countingStream(new Uint8Array(10), 3);
    let signal: AbortSignal | null = null;
    const { result } = await call(
      fromFetchHandler((request) => {
        signal = request.signal;
        return new Response(stream);
      }, { maxBufferedBody: 0 }),
      environFor(),
    );
    const chunks = [];
    for await (const chunk of result as AsyncIterable<Uint8Array>) {
      chunks.push(chunk);
    }
    (result as { close(): void }).close();
    assert.equal(chunks.length, 3);
    assert.equal(counts.cancels, 0);
    assert.equal(signal!.aborted, false);
  });
});

Deno.test("fromFetchHandler() sends no body for HEAD, 204 and 304", async (t) => {
  await t.step("HEAD: the length of a body that is known", async () => {
    const { output } = await cgi(
      fromFetchHandler(() => new Response("hello")),
      { REQUEST_METHOD: "HEAD" },
    );
    assert.equal(
      output,
      "Status: 200 OK\r\ncontent-type: text/plain;charset=UTF-8\r\n" +
        "content-length: 5\r\n\r\n",
    );
  });
  await t.step("HEAD: a streamed body is cancelled", async () => {
    const { counts, stream } = countingStream(new Uint8Array(10));
    const { output } = await cgi(
      fromFetchHandler(() => new Response(stream), { maxBufferedBody: 5 }),
      { REQUEST_METHOD: "HEAD" },
    );
    assert.equal(counts.cancels, 1);
    assert.match(output, /^Status: 200 OK\r\n[^]*\r\n\r\n$/);
  });
  await t.step("HEAD: the handler's own Content-Length", async () => {
    const { output } = await cgi(
      fromFetchHandler(() =>
        new Response(null, {
          headers: { "content-type": "text/plain", "content-length": "42" },
        })
      ),
      { REQUEST_METHOD: "HEAD" },
    );
    assert.equal(
      output,
      "Status: 200 OK\r\ncontent-length: 42\r\ncontent-type: text/plain\r\n\r\n",
    );
  });
  for (const status of [204, 304]) {
    await t.step(String(status), async () => {
      const { output } = await cgi(
        fromFetchHandler(() => new Response(null, { status })),
      );
      assert.match(output, new RegExp(`^Status: ${status} `));
      assert.ok(output.endsWith("\r\n\r\n"));
    });
  }
});

Deno.test("fromFetchHandler() takes the handler's errors through the error path", async (t) => {
  await t.step("a handler that throws: the 500 page", async () => {
    let signal: AbortSignal | null = null;
    const { output, log } = await cgi(fromFetchHandler((request) => {
      signal = request.signal;
      throw new Error("boom");
    }));
    assert.equal(output, CGI_ERROR_PAGE);
    assert.match(log, /^Error: boom\n\s+at /);
    assert.equal(signal!.aborted, true);
  });
  await t.step("an async handler that rejects: the 500 page", async () => {
    const { output, log } = await cgi(fromFetchHandler(async () => {
      await null;
      throw new RangeError("later");
    }));
    assert.equal(output, CGI_ERROR_PAGE);
    assert.match(log, /^RangeError: later\n/);
  });
  await t.step(
    "a body that errors before its first chunk: the 500 page",
    async () => {
      const body = new ReadableStream({
        pull(controller) {
          controller.error(new Error("body failed"));
        },
      });
      const { output, log } = await cgi(
        fromFetchHandler(() => new Response(body)),
      );
      assert.equal(output, CGI_ERROR_PAGE);
      assert.match(log, /^Error: body failed\n/);
    },
  );
  await t.step("a body that errors after a chunk: cut short", async () => {
    let step = 0;
    let signal: AbortSignal | null = null;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (step++ === 0) controller.enqueue(encoder.encode("partial"));
        else controller.error(new Error("body failed late"));
      },
    }, { highWaterMark: 0 });
    const { output, log } = await cgi(
      fromFetchHandler((request) => {
        signal = request.signal;
        return new Response(body, {
          headers: { "content-type": "text/plain" },
        });
      }, { maxBufferedBody: 0 }),
    );
    assert.equal(
      output,
      "Status: 200 OK\r\ncontent-type: text/plain\r\n\r\npartial",
    );
    assert.match(log, /^Error: body failed late\n/);
    assert.equal(signal!.aborted, true);
  });
  await t.step("a handler that returns no Response: the 500 page", async () => {
    const { output, log } = await cgi(
      fromFetchHandler((() => "nope") as unknown as FetchHandler),
    );
    assert.equal(output, CGI_ERROR_PAGE);
    assert.match(
      log,
      /^TypeError: Cannot send the response: the fetch handler must return a Response, not string "nope"\n/,
    );
  });
  await t.step("Response.error(): the 500 page", async () => {
    const { output, log } = await cgi(fromFetchHandler(() => Response.error()));
    assert.equal(output, CGI_ERROR_PAGE);
    assert.match(
      log,
      /^RangeError: Cannot send the response: status 0 is not from 200 to 599\n/,
    );
  });
  await t.step("a body chunk that is not bytes: the 500 page", async () => {
    const body = new ReadableStream({
      start(controller) {
        controller.enqueue("text");
        controller.close();
      },
    });
    const { output, log } = await cgi(
      fromFetchHandler(() => new Response(body)),
    );
    assert.equal(output, CGI_ERROR_PAGE);
    assert.match(
      log,
      /^TypeError: Cannot send the response body: a chunk must be a Uint8Array, not string "text"\n/,
    );
  });
});

Deno.test("fromFetchHandler() refuses a bad handler or option", async (t) => {
  const handler = () => new Response();
  const rows: [string, () => unknown, ErrorConstructor, RegExp][] = [
    [
      "a handler that is not a function",
      () => fromFetchHandler("x" as unknown as FetchHandler),
      TypeError,
      /^Cannot make an application: the fetch handler must be a function, not string "x"$/,
    ],
    [
      "options that are not an object",
      () => fromFetchHandler(handler, 5 as unknown as FromFetchHandlerOptions),
      TypeError,
      /^Cannot make an application: options must be an object, not number 5$/,
    ],
    [
      "maxBufferedBody -1",
      () => fromFetchHandler(handler, { maxBufferedBody: -1 }),
      RangeError,
      /^Cannot make an application: maxBufferedBody must be a non-negative integer or Infinity, not -1$/,
    ],
    [
      "maxBufferedBody 1.5",
      () => fromFetchHandler(handler, { maxBufferedBody: 1.5 }),
      RangeError,
      /not 1\.5$/,
    ],
    [
      "maxBufferedBody a string",
      () =>
        fromFetchHandler(handler, {
          maxBufferedBody: "10" as unknown as number,
        }),
      TypeError,
      /^Cannot make an application: maxBufferedBody must be a number, not string "10"$/,
    ],
    [
      "a reason phrase with CR LF",
      () => fromFetchHandler(handler, { reasonPhrases: { 200: "OK\r\nX: y" } }),
      TypeError,
      /^Cannot make an application: reasonPhrases\[200\] /,
    ],
    [
      "an empty reason phrase",
      () => fromFetchHandler(handler, { reasonPhrases: { 200: " " } }),
      TypeError,
      /^Cannot make an application: reasonPhrases\[200\] must not be empty, not string " "$/,
    ],
    [
      "defaultContentType a number",
      () =>
        fromFetchHandler(handler, {
          defaultContentType: 5 as unknown as string,
        }),
      TypeError,
      /^Cannot make an application: defaultContentType must be a string or null, not number 5$/,
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
  await t.step("maxBufferedBody Infinity and 0 are accepted", () => {
    fromFetchHandler(handler, { maxBufferedBody: Infinity });
    fromFetchHandler(handler, { maxBufferedBody: 0 });
  });
});

Deno.test("fetch.ts re-exports toFetchHandler from simple_server.ts", () => {
  assert.equal(toFetchHandler, simpleServer.toFetchHandler);
});

// ----------------------------------------------------- through every way in

/** Where the app under test is reachable, and what that way in does. */
interface Way {
  /** The app's URL: host and mount point (`SCRIPT_NAME`). */
  url: string;
  /** Its `SCRIPT_NAME`. */
  mount: string;
  /** Where the app's errors are logged, so far. */
  log(): Promise<string>;
  /** The app's counters, when it runs in this process. */
  stats: FetchAppStats | null;
  /** Whether a body that fails after its first chunk reaches the client as
   * a cut response (a CGI program can only stop: the host ends the
   * response as if complete). */
  cutsResponses: boolean;
  /** Whether the host passes a response on while it is produced (fcgiwrap
   * holds a program's small writes). */
  streams: boolean;
  /** Whether the host passes a small body's Content-Length on (Apache
   * sends it chunked). */
  contentLength: boolean;
  /** Whether the app's URL keeps the host's port (Debian's
   * `fastcgi_params` passes `HTTP_HOST` as `$host`, without it). */
  hostPort: boolean;
}

/** How most ways in pass a response on. */
const PASSES_ALL = { streams: true, contentLength: true, hostPort: true };

/** Read a body to its end; a rejection as the error. */
async function readAll(response: Response): Promise<Uint8Array | Error> {
  try {
    return await response.bytes();
  } catch (error) {
    return error as Error;
  }
}

/** Wait (at most 10 s) until the way's log matches `pattern`: a host may
 * write it a moment after the response. */
async function logShows(way: Way, pattern: RegExp): Promise<void> {
  let log = "";
  for (let i = 0; i < 200 && !pattern.test(log); i++) {
    if (i > 0) await new Promise((resolve) => setTimeout(resolve, 50));
    log = await way.log();
  }
  assert.match(log, pattern);
}

/** Every route of the fixture app, through one way in. */
async function exercise(t: Deno.TestContext, way: Way): Promise<void> {
  const get = async (path: string, init?: RequestInit) => {
    const response = await fetch(way.url + path, init);
    return { response, text: await response.text() };
  };

  await t.step("a path parameter and a query string", async () => {
    const { response, text } = await get("/users/42?fields=name,email");
    assert.equal(response.status, 200);
    assert.equal(response.headers.get("content-type"), "application/json");
    assert.equal(
      response.headers.get("content-length"),
      way.contentLength ? String(text.length) : null,
    );
    assert.deepEqual(JSON.parse(text), {
      id: "42",
      fields: ["name", "email"],
    });
  });

  await t.step("JSON in and out", async () => {
    const { response, text } = await get("/echo", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ a: [1, "é"], b: null }),
    });
    assert.equal(response.status, 201);
    assert.equal(response.statusText, "Created");
    assert.deepEqual(JSON.parse(text), { received: { a: [1, "é"], b: null } });
  });

  await t.step("two Set-Cookie headers", async () => {
    const { response, text } = await get("/cookies");
    assert.equal(text, "two cookies");
    assert.deepEqual(response.headers.getSetCookie(), [
      "a=1; Path=/",
      "b=2; Path=/; HttpOnly",
    ]);
  });

  await t.step("a form upload parsed by request.formData()", async () => {
    const file = Uint8Array.from({ length: 300 * 1024 }, (_, i) => i * 7);
    const form = new FormData();
    form.append("title", "Zoë's file");
    form.append("file", new Blob([file]), "data.bin");
    const { response, text } = await get("/upload", {
      method: "POST",
      body: form,
    });
    assert.equal(response.status, 200);
    assert.deepEqual(JSON.parse(text), {
      title: "Zoë's file",
      name: "data.bin",
      size: file.length,
      adler32: adler32(file),
    });
  });

  await t.step("a multi-MiB download, streamed", async () => {
    const size = 4 * MIB + 123;
    const response = await fetch(`${way.url}/download?bytes=${size}`);
    assert.equal(response.status, 200);
    assert.equal(response.headers.get("content-length"), null);
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

  await t.step("server-sent events", async () => {
    const { response, text } = await get("/events?count=3&gap=5");
    assert.equal(response.status, 200);
    assert.equal(response.headers.get("content-type"), "text/event-stream");
    assert.equal(
      text,
      [1, 2, 3].map((i) => `event: tick\ndata: ${i}\nid: ${i}\n\n`).join(""),
    );
  });

  if (!way.streams) {
    await t.step(
      "events arrive at the end: the host holds small writes",
      async () => {
        const gap = 300;
        const started = Date.now();
        const response = await fetch(`${way.url}/events?count=2&gap=${gap}`);
        const reader = response.body!.pipeThrough(new TextDecoderStream())
          .getReader();
        const first = await within(reader.read(), 20_000, "the events");
        const firstArrival = Date.now();
        let received = first.done ? "" : first.value;
        for (let i = 0; i < 10; i++) {
          const { done, value } = await within(
            reader.read(),
            20_000,
            "the end",
          );
          if (done) break;
          received += value;
        }
        assert.equal(
          received,
          [1, 2].map((i) => `event: tick\ndata: ${i}\nid: ${i}\n\n`).join(""),
        );
        // The first event was made at once, but came only with the second.
        assert.ok(
          firstArrival - started >= gap,
          `the first event arrived after ${firstArrival - started} ms`,
        );
      },
    );
  }

  if (way.streams) {
    await t.step("an event arrives while the next is produced", async () => {
      const cancelled = way.stats?.cancelled["/events"] ?? 0;
      // A CGI program outlives a client that leaves (Apache lets it run
      // until it next writes): a wait short enough for it to end by
      // itself soon after, long enough to tell a held response.
      const gap = way.stats === null ? 1500 : 60_000;
      const response = await fetch(`${way.url}/events?count=2&gap=${gap}`);
      const reader = response.body!.pipeThrough(new TextDecoderStream())
        .getReader();
      let received = "";
      // Bounded: a response held back would arrive whole, after the gap.
      for (let i = 0; i < 10 && !received.endsWith("\n\n"); i++) {
        const { done, value } = await within(reader.read(), 20_000, "event 1");
        if (done) break;
        received += value;
      }
      assert.equal(received, "event: tick\ndata: 1\nid: 1\n\n");
      await reader.cancel();
      if (way.stats !== null) {
        await waitFor(
          () => way.stats!.cancelled["/events"] === cancelled + 1,
          "the event stream cancelled",
          10_000,
        );
      }
    });
  }

  await t.step(
    "a thrown error: the 500 page, the stack in the log",
    async () => {
      const { response, text } = await get("/error");
      assert.equal(response.status, 500);
      assert.equal(response.headers.get("content-type"), "text/plain");
      assert.equal(text, ERROR_BODY);
      await logShows(way, /Error: fixture error\n\s+at /);
    },
  );

  await t.step("a body that fails after a chunk", async () => {
    const response = await fetch(`${way.url}/stream-error`);
    assert.equal(response.status, 200);
    const body = await readAll(response);
    if (way.cutsResponses) assert.ok(body instanceof Error, `${body}`);
    else assert.equal(decoder.decode(body as Uint8Array), "partial");
    await logShows(way, /Error: fixture stream error\n/);
  });

  await t.step("a non-ASCII path", async () => {
    const { response, text } = await get("/café/Zoë");
    assert.equal(response.status, 200);
    assert.deepEqual(JSON.parse(text), { place: "café", name: "Zoë" });
  });

  await t.step("the environ as the handler's second argument", async () => {
    const { text } = await get("/env?x=1");
    const url = way.hostPort ? way.url : way.url.replace(/:\d+(?=\/)/, "");
    assert.deepEqual(JSON.parse(text), {
      url: `${url}/env?x=1`,
      remoteAddr: "127.0.0.1",
      scriptName: way.mount,
    });
  });

  await t.step("HEAD, 204, 302, 404", async () => {
    const head = await get("/users/7", { method: "HEAD" });
    assert.equal(head.response.status, 200);
    assert.equal(head.response.headers.get("content-type"), "application/json");
    assert.equal(head.text, "");
    const empty = await get("/empty");
    assert.equal(empty.response.status, 204);
    assert.equal(empty.response.headers.get("content-type"), null);
    assert.equal(empty.text, "");
    const redirect = await get("/redirect", { redirect: "manual" });
    assert.equal(redirect.response.status, 302);
    assert.equal(
      new URL(redirect.response.headers.get("location")!, way.url).pathname,
      `${way.mount}/users/1`,
    );
    const missing = await get("/nowhere");
    assert.equal(missing.response.status, 404);
  });
}

/** `makeServer` serving `app`, its error log kept. */
async function withServer(
  app: Application,
  body: (url: string, log: () => Promise<string>) => Promise<void>,
): Promise<void> {
  const errors = new StringErrorStream();
  class Handler extends WSGIRequestHandler {
    override getStderr() {
      return errors;
    }
  }
  await using server = makeServer("127.0.0.1", 0, app, {
    quiet: true,
    handlerClass: Handler,
  });
  const serving = server.serveForever();
  try {
    await body(
      `http://127.0.0.1:${server.serverPort}`,
      () => Promise.resolve(errors.value),
    );
  } finally {
    await server.shutdown();
    await serving;
  }
  assert.doesNotMatch(errors.value, /AssertionError|WSGIWarning/);
}

for (const kind of ["plain", "Hono"] as const) {
  Deno.test(`fromFetchHandler() serves a ${kind} fetch handler under makeServer, validated`, async (t) => {
    const { handler, stats } = kind === "plain"
      ? makePlainHandler()
      : (({ hono, stats }) => ({ handler: hono.fetch, stats }))(makeHonoApp());
    await withServer(
      validator(fromFetchHandler(handler)),
      async (url, log) => {
        await exercise(t, {
          url,
          mount: "",
          log,
          stats,
          cutsResponses: true,
          ...PASSES_ALL,
        });
      },
    );
  });
}

Deno.test("fromFetchHandler() under makeServer: a client that goes away cancels the body", async () => {
  const { hono, stats } = makeHonoApp();
  await withServer(fromFetchHandler(hono.fetch), async (url) => {
    await downloadThenLeave(
      Number(new URL(url).port),
      "GET /forever HTTP/1.1\r\nHost: test\r\n\r\n",
      2 * MIB,
    );
    await waitFor(
      () => stats.cancelled["/forever"] === 1,
      "the /forever body cancelled",
      10_000,
    );
    const produced = stats.produced;
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(stats.produced, produced, "still producing");
  });
});

Deno.test("toFetchHandler(fromFetchHandler(h)) answers as h does", async (t) => {
  const paths: [string, RequestInit?][] = [
    ["/users/42?fields=a,b"],
    ["/echo", { method: "POST", body: '{"x":[1,2]}' }],
    ["/cookies"],
    ["/download?bytes=300000"],
    ["/events?count=2&gap=1"],
    ["/caf%C3%A9/Zo%C3%AB"],
    ["/redirect"],
    ["/empty"],
    ["/nowhere"],
    ["/users/7", { method: "HEAD" }],
  ];
  for (const kind of ["plain", "Hono"] as const) {
    const handler: FetchHandler = kind === "plain"
      ? makePlainHandler().handler
      : makeHonoApp().hono.fetch;
    const roundTrip = toFetchHandler(fromFetchHandler(handler), {
      quiet: true,
    });
    for (const [path, init] of paths) {
      await t.step(`${kind}: ${init?.method ?? "GET"} ${path}`, async () => {
        const request = () => new Request(`http://localhost${path}`, init);
        const direct = await handler(request(), environFor());
        const through = await roundTrip(request());
        assert.equal(through.status, direct.status);
        // What the bridge changes on purpose: hop-by-hop headers dropped
        // (Hono's SSE sets two), a Content-Type where none was; and what
        // the server adds: Server, a Content-Length (Deno.serve sends one
        // for h's fixed bodies too, but not as a header of its Response).
        const expected = [...direct.headers].filter(([name]) =>
          name !== "connection" && name !== "transfer-encoding"
        );
        if (
          !direct.headers.has("content-type") &&
          direct.status !== 204 && direct.status !== 304
        ) {
          expected.push(["content-type", "application/octet-stream"]);
          expected.sort(([a], [b]) => a < b ? -1 : 1);
        }
        assert.deepEqual(
          [...through.headers].filter(([name]) =>
            name !== "server" && name !== "content-length"
          ),
          expected,
        );
        const body = await direct.bytes();
        if (init?.method === "HEAD") {
          // No body for HEAD; the length GET would send, when h gave one.
          assert.deepEqual(await through.bytes(), new Uint8Array(0));
          if (body.length > 0) {
            assert.equal(
              through.headers.get("content-length"),
              String(body.length),
            );
          }
        } else {
          assert.deepEqual(await through.bytes(), body);
        }
      });
    }
  }
});

// ------------------------------------------------------------ real hosts

Deno.test({
  name:
    "fromFetchHandler() serves the fetch handlers as CGI programs under lighttpd",
  ignore: IGNORE_LIGHTTPD,
  async fn(t) {
    assert.ok(LIGHTTPD, "lighttpd is required (WSGIREF_REQUIRE_LIGHTTPD=1)");
    for (const script of [FIXTURE, EXAMPLE]) {
      assert.ok(
        (Deno.statSync(script).mode ?? 0) & 0o100,
        `${script} must be executable (chmod +x): lighttpd runs its shebang`,
      );
    }
    const host = await startLighttpd(LIGHTTPD, {
      aliases: {
        "/cgi-bin/plain": FIXTURE,
        "/cgi-bin/hono": FIXTURE,
        "/cgi-bin/example": EXAMPLE,
      },
    });
    try {
      for (const mount of ["/cgi-bin/plain", "/cgi-bin/hono"]) {
        await t.step(mount, async (t) => {
          await exercise(t, {
            url: host.base + mount,
            mount,
            log: () => host.errorLog(),
            stats: null,
            cutsResponses: false,
            ...PASSES_ALL,
          });
        });
      }
      await t.step("examples/hono.ts as a CGI program", async () => {
        const response = await fetch(
          `${host.base}/cgi-bin/example/hello/Zo%C3%AB`,
        );
        assert.equal(response.status, 200);
        assert.deepEqual(await response.json(), { hello: "Zoë" });
        const root = await fetch(`${host.base}/cgi-bin/example/`);
        assert.equal(await root.text(), "Hello from Hono!");
      });
    } finally {
      const log = await host.stop();
      assert.doesNotMatch(log, /AssertionError|WSGIWarning/);
    }
  },
});

Deno.test({
  name: "fromFetchHandler() serves the fetch handlers behind nginx (FastCGI)",
  ignore: IGNORE_NGINX,
  async fn(t) {
    assert.ok(NGINX, "nginx is required (WSGIREF_REQUIRE_NGINX=1)");
    const plain = makePlainHandler();
    const hono = makeHonoApp("/hono");
    const plainApp = validator(fromFetchHandler(plain.handler));
    const honoApp = validator(fromFetchHandler(hono.hono.fetch));
    const gateway = makeFastCGIServer(
      { hostname: "127.0.0.1", port: 0 },
      (environ, startResponse) =>
        environ.SCRIPT_NAME === "/plain"
          ? plainApp(environ, startResponse)
          : honoApp(environ, startResponse),
      { quiet: true },
    );
    const serving = gateway.serveForever();
    try {
      const host = await startNginx(NGINX, {
        http: `
  upstream gateway {
    server 127.0.0.1:${gateway.serverPort};
    keepalive 4;
  }`,
        server: `
    location ~ ^/(plain|hono)(/|$) {
      fastcgi_pass gateway;
      fastcgi_keep_conn on;
      fastcgi_split_path_info ^(/plain|/hono)(/.*)?$;
${FASTCGI_PARAMS}
      fastcgi_param SCRIPT_NAME $fastcgi_script_name;
      fastcgi_param PATH_INFO $fastcgi_path_info;
    }`,
      });
      try {
        for (
          const [mount, stats] of [
            ["/plain", plain.stats],
            ["/hono", hono.stats],
          ] as const
        ) {
          await t.step(mount, async (t) => {
            await exercise(t, {
              url: host.base + mount,
              mount,
              log: () => host.errorLog(),
              stats,
              cutsResponses: true,
              ...PASSES_ALL,
            });
          });
        }
      } finally {
        const log = await host.stop();
        assert.doesNotMatch(
          log,
          /\[(alert|emerg)\]|AssertionError|WSGIWarning/,
        );
      }
    } finally {
      await gateway.shutdown();
      await serving;
      await gateway.serverClose();
    }
  },
});

Deno.test("examples/hono.ts serves its app with makeServer and stops on Ctrl-C", async () => {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", EXAMPLE, "0"],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  const stdout = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let out = "";
  try {
    for (let i = 0; i < 100 && !out.includes("\n"); i++) {
      const { done, value } = await within(stdout.read(), 30_000, "banner");
      if (done) break;
      out += value;
    }
    const match = /^Serving on (http:\/\/127\.0\.0\.1:\d+\/) /.exec(out);
    assert.ok(match, out);
    const response = await fetch(`${match[1]}hello/caf%C3%A9`);
    assert.deepEqual(await response.json(), { hello: "café" });
    const root = await fetch(match[1]);
    assert.equal(await root.text(), "Hello from Hono!");
  } finally {
    child.kill("SIGINT");
    await stdout.cancel();
  }
  assert.equal((await child.status).code, 0);
  // The access log: one line per request.
  assert.match(await stderr, /"GET \/hello\/caf%C3%A9 HTTP\/1\.1" 200 /);
});

// ------------------------------------------ docs/fetch.md, with docs/deploy/

/** The checks of `examples/hono.ts` mounted at `/app` of a host. */
async function exampleSteps(t: Deno.TestContext, base: string): Promise<void> {
  const get = async (path: string, init?: RequestInit) => {
    const response = await fetch(base + path, init);
    return { status: response.status, text: await response.text() };
  };
  await t.step("examples/hono.ts at /app: its routes", async () => {
    assert.deepEqual(await get("/app"), {
      status: 200,
      text: "Hello from Hono!",
    });
    assert.deepEqual(await get("/app/"), {
      status: 200,
      text: "Hello from Hono!",
    });
    assert.deepEqual(await get("/app/hello/Zo%C3%AB"), {
      status: 200,
      text: '{"hello":"Zoë"}',
    });
    assert.deepEqual(await get("/app/hello"), {
      status: 200,
      text: '{"hello":"world"}',
    });
    assert.deepEqual(
      await get("/app/echo", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: '{"a":[1,"é"]}',
      }),
      { status: 201, text: '{"a":[1,"é"]}' },
    );
    assert.equal((await get("/app/nowhere")).status, 404);
    assert.equal((await get("/apple")).status, 404);
  });
  await t.step("examples/hono.ts at /app: the environ as c.env", async () => {
    assert.deepEqual(await get("/app/whoami"), {
      status: 200,
      text: '{"address":"127.0.0.1"}',
    });
  });
}

/** A web server started from a CGI recipe of `docs/deploy/`, running one
 * deployed program at `/app`. */
interface CgiRecipeHost {
  /** `http://127.0.0.1:<port>`. */
  base: string;
  /** Where the program's stderr went, one line per line it wrote. */
  errorLog(): Promise<string>;
  /** Stop it (and fcgiwrap); the final logs. */
  stop(): Promise<string>;
}

/** What differs between the CGI recipes, and how to start each. */
const CGI_RECIPES: {
  host: string;
  file: string;
  ignore: boolean;
  passes: Pick<Way, "streams" | "contentLength" | "hostPort">;
  start(deployed: DeployedCgi): Promise<CgiRecipeHost>;
}[] = [
  {
    host: "lighttpd",
    file: "lighttpd-cgi.conf",
    ignore: IGNORE_LIGHTTPD,
    passes: PASSES_ALL,
    start: (deployed) => startLighttpdCgi(LIGHTTPD!, deployed),
  },
  {
    host: "nginx + fcgiwrap",
    file: "nginx-fcgiwrap.conf",
    ignore: IGNORE_FCGIWRAP,
    // fcgiwrap holds small writes; Debian's fastcgi_params drops the port.
    passes: { streams: false, contentLength: true, hostPort: false },
    async start(deployed) {
      const fcgiwrap = await startFcgiwrap(FCGIWRAP!, deployed.root);
      try {
        const host = await startNginxFcgiwrap(
          NGINX!,
          deployed,
          fcgiwrap.socket,
        );
        return {
          ...host,
          // nginx logs the lines of the program's stderr as fcgiwrap
          // passes them, ending in CRLF.
          errorLog: async () =>
            (await host.errorLog()).replaceAll("\r\n", "\n"),
          stop: async () => (await host.stop()) + await fcgiwrap.stop(),
        };
      } catch (error) {
        await fcgiwrap.stop();
        throw error;
      }
    },
  },
  {
    host: "Apache mod_cgid",
    file: "apache-cgi.conf",
    ignore: IGNORE_APACHE,
    passes: { streams: true, contentLength: false, hostPort: true },
    async start(deployed) {
      const host = await startApacheCgi(APACHE_FOUND!, deployed);
      return {
        ...host,
        // Each line of a program's stderr, without Apache's prefix
        // ("[time] [cgid:error] [pid] [client] AH01215: ") and suffix
        // (": /path/of/the/program").
        errorLog: async () =>
          (await host.errorLog()).replace(
            /^\[[^\n]*?AH01215: ([^\n]*?)(?:: \/\S+)?$/gm,
            "$1",
          ),
      };
    },
  },
];

for (const recipe of CGI_RECIPES) {
  Deno.test({
    name:
      `docs/fetch.md: examples/hono.ts and a Hono app, bundled by its commands, serve alone under ${recipe.host} (docs/deploy/${recipe.file})`,
    ignore: recipe.ignore,
    async fn(t) {
      const user = Deno.uid() === 0 ? "www-data" : null;
      // Each alone in a fresh directory, with an empty Deno cache: the
      // bundle needs no npm package at run time.
      for (
        const source of [undefined, "tests/fixtures/fetch_app.ts"] as const
      ) {
        const deployed = await deployCgiBundle(user, "docs/fetch.md", source);
        try {
          const host = await recipe.start(deployed);
          try {
            if (source === undefined) await exampleSteps(t, host.base);
            else {
              await t.step("a Hono app, every route", async (t) => {
                await exercise(t, {
                  url: `${host.base}/app`,
                  mount: "/app",
                  log: () => host.errorLog(),
                  stats: null,
                  cutsResponses: false,
                  ...recipe.passes,
                });
              });
            }
          } finally {
            const log = await host.stop();
            assert.doesNotMatch(
              log,
              /\[(alert|emerg|crit)\]|AssertionError|WSGIWarning/,
            );
          }
        } finally {
          await deployed.remove();
        }
      }
    },
  });
}

/**
 * Run `docs/fetch.md`'s gateway command (`deno run -A fastcgi.ts
 * examples/hono.ts`, from the repository root) on a free port, run `body`,
 * then stop it as systemd would (SIGTERM): it must exit 0, having written
 * nothing on stderr.
 */
async function withHonoGateway(
  body: (port: number) => Promise<void>,
): Promise<void> {
  const [command] = fencedBlocks(
    await Deno.readTextFile(`${ROOT}docs/fetch.md`),
    "docs/fetch.md",
  ).filter((block) => block.lang === "sh" && block.attrs[0] === "checkout")
    .flatMap((block) => shellCommands(block.content))
    .filter((command) => command.includes("fastcgi.ts examples/hono.ts"));
  assert.equal(command, "deno run -A fastcgi.ts examples/hono.ts");
  const port = freePort();
  const child = shell(`exec ${command} --port ${port} --quiet`, ROOT)
    .spawn();
  const stderr = new Response(child.stderr).text();
  const stdout = child.stdout.pipeThrough(new TextDecoderStream())
    .getReader();
  try {
    let banner = "";
    for (let i = 0; i < 100 && !banner.includes("\n"); i++) {
      const { done, value } = await within(stdout.read(), 30_000, "banner");
      if (done) break;
      banner += value;
    }
    assert.equal(banner, `Serving FastCGI on 127.0.0.1 port ${port} ...\n`);
    await body(port);
  } finally {
    try {
      child.kill("SIGTERM");
    } catch {
      // It has exited: its status and stderr say why.
    }
    await stdout.cancel();
  }
  assert.equal((await child.status).code, 0);
  assert.equal(await stderr, "");
}

/** The FastCGI recipes, each started in front of a gateway on `port`. */
const FASTCGI_RECIPES: {
  host: string;
  file: string;
  ignore: boolean;
  start(port: number): Promise<{ base: string; stop(): Promise<string> }>;
}[] = [
  {
    host: "nginx",
    file: "nginx-fastcgi.conf",
    ignore: IGNORE_NGINX,
    start: (port) =>
      startNginx(NGINX!, {
        clientMaxBodySize: null,
        site: (listen) =>
          deployConfig("nginx-fastcgi.conf", [
            ["listen 80;", `listen 127.0.0.1:${listen};`],
            ["server 127.0.0.1:9000;", `server 127.0.0.1:${port};`],
          ]),
      }),
  },
  {
    host: "lighttpd",
    file: "lighttpd-fastcgi.conf",
    ignore: IGNORE_LIGHTTPD,
    start: (port) =>
      startLighttpd(LIGHTTPD!, {
        config: () =>
          deployConfig("lighttpd-fastcgi.conf", [
            [`"port" => 9000,`, `"port" => ${port},`],
          ]),
      }),
  },
  {
    host: "Apache mod_proxy_fcgi",
    file: "apache-fastcgi.conf",
    ignore: IGNORE_APACHE,
    start: (port) =>
      startApache(APACHE_FOUND!, {
        modules: ["proxy", "proxy_fcgi"],
        config: () =>
          deployConfig("apache-fastcgi.conf", [
            ["fcgi://127.0.0.1:9000", `fcgi://127.0.0.1:${port}`],
          ]),
      }),
  },
];

for (const recipe of FASTCGI_RECIPES) {
  Deno.test({
    name:
      `docs/fetch.md: examples/hono.ts under \`deno run -A fastcgi.ts\` serves behind ${recipe.host} (docs/deploy/${recipe.file})`,
    ignore: recipe.ignore,
    async fn(t) {
      await withHonoGateway(async (port) => {
        const host = await recipe.start(port);
        try {
          await exampleSteps(t, host.base);
        } finally {
          const log = await host.stop();
          assert.doesNotMatch(log, /\[(alert|emerg|crit)\]/);
        }
      });
    },
  });
}

Deno.test("docs/fetch.md: the CGI command prints the response its comments show", async () => {
  const [block] = fencedBlocks(
    await Deno.readTextFile(`${ROOT}docs/fetch.md`),
    "docs/fetch.md",
  ).filter((block) =>
    block.lang === "sh" && block.content.includes("GATEWAY_INTERFACE=")
  );
  assert.ok(block, "the block is on the page");
  const [command, ...others] = shellCommands(block.content);
  assert.deepEqual(others, []);
  // The comments after the command, one line each, ending in CRLF.
  const shown = block.content.split("\n").filter((line) => line.startsWith("#"))
    .map((line) => line.replace(/^# ?/, ""));
  const { code, stdout, stderr } = await shell(command, ROOT).output();
  assert.equal(code, 0, decoder.decode(stderr));
  assert.equal(decoder.decode(stdout), shown.join("\r\n"));
});
