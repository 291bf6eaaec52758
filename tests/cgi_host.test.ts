/**
 * `examples/cgi.ts` and a test fixture run as CGI programs under a real
 * lighttpd (mod_cgi), started on 127.0.0.1 with a generated config and
 * stopped in the same test. Without lighttpd (Debian: `apt-get install
 * lighttpd`) the test is ignored, unless `WSGIREF_REQUIRE_LIGHTTPD=1`.
 */

import assert from "node:assert/strict";
import { decodeLatin1, encodeLatin1 } from "../_internal.ts";
import { findLighttpd, startLighttpd } from "./fixtures/lighttpd.ts";
import { startProxy } from "./fixtures/proxy.ts";

const EXAMPLE = new URL("../examples/cgi.ts", import.meta.url).pathname;
const FIXTURE = new URL("./fixtures/cgi_fixture.ts", import.meta.url).pathname;
const ERROR_BODY =
  "A server error occurred.  Please contact the administrator.";
const MIB = 1024 * 1024;

const LIGHTTPD = findLighttpd();
const REQUIRED = Deno.env.get("WSGIREF_REQUIRE_LIGHTTPD") === "1";
if (LIGHTTPD === null) {
  console.warn(
    REQUIRED
      ? "lighttpd not found, and WSGIREF_REQUIRE_LIGHTTPD=1: the CGI host test fails"
      : "lighttpd not found (apt-get install lighttpd): the CGI host test is ignored",
  );
}

/** Send raw bytes, read until the server closes; for what fetch would
 * normalise (raw bytes in the target) or hide (the exact header block). */
async function rawRequest(port: number, request: Uint8Array): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    let written = 0;
    while (written < request.length) {
      written += await conn.write(request.subarray(written));
    }
    const chunks: Uint8Array[] = [];
    const buffer = new Uint8Array(64 * 1024);
    for (;;) {
      const n = await conn.read(buffer);
      if (n === null) break;
      chunks.push(buffer.slice(0, n));
    }
    return chunks.map(decodeLatin1).join("");
  } finally {
    conn.close();
  }
}

function adler32(data: Uint8Array): string {
  let a = 1;
  let b = 0;
  for (let i = 0; i < data.length; i++) {
    a = (a + data[i]) % 65521;
    b = (b + a) % 65521;
  }
  return (((b << 16) | a) >>> 0).toString(16).padStart(8, "0");
}

Deno.test({
  name: "examples/cgi.ts serves requests as a CGI program under lighttpd",
  ignore: LIGHTTPD === null && !REQUIRED,
  async fn(t) {
    assert.ok(LIGHTTPD, "lighttpd is required (WSGIREF_REQUIRE_LIGHTTPD=1)");
    for (const script of [EXAMPLE, FIXTURE]) {
      assert.ok(
        (Deno.statSync(script).mode ?? 0) & 0o100,
        `${script} must be executable (chmod +x): lighttpd runs its shebang`,
      );
    }
    const proxy = startProxy();
    const target = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen() {} },
      () => new Response("direct"),
    );
    // /cgi-bin/fixture/proxied/ gets HTTP_PROXY, as from a host that passes
    // a Proxy: request header on (lighttpd itself drops it).
    const host = await startLighttpd(LIGHTTPD, {
      aliases: { "/cgi-bin/example": EXAMPLE, "/cgi-bin/fixture": FIXTURE },
      extraConfig: (setenv) =>
        `$HTTP["url"] =~ "^/cgi-bin/fixture/proxied/" {\n  ${
          setenv({ HTTP_PROXY: proxy.url })
        }\n}`,
    });
    const get = async (path: string, init?: RequestInit) => {
      const response = await fetch(host.base + path, init);
      return { response, text: await response.text() };
    };
    try {
      await t.step("GET /hi: the plain-text hello", async () => {
        const { response, text } = await get("/cgi-bin/example/hi");
        assert.equal(response.status, 200);
        assert.equal(response.headers.get("content-type"), "text/plain");
        assert.equal(response.headers.get("content-length"), "13");
        assert.equal(text, "Hello world!\n");
      });
      await t.step(
        "GET with a query string: SCRIPT_NAME and PATH_INFO as lighttpd sets them",
        async () => {
          const { response, text } = await get(
            "/cgi-bin/example/hello/world?a=1&b=%C3%A9&c",
          );
          assert.equal(response.status, 200);
          assert.equal(
            response.headers.get("content-type"),
            "application/json; charset=utf-8",
          );
          assert.equal(
            response.headers.get("content-length"),
            String(encodeLatin1(text).length),
          );
          assert.deepEqual(JSON.parse(text), {
            method: "GET",
            scriptName: "/cgi-bin/example",
            pathInfo: "/hello/world",
            queryString: "a=1&b=%C3%A9&c",
            requestUri:
              `${host.base}/cgi-bin/example/hello/world?a=1&b=%C3%A9&c`,
            serverProtocol: "HTTP/1.1",
            urlScheme: "http",
            runOnce: true,
          });
        },
      );

      await t.step(
        "no PATH_INFO from lighttpd: rebuilt as empty from REQUEST_URI",
        async () => {
          const { text } = await get("/cgi-bin/example");
          const body = JSON.parse(text);
          assert.equal(body.scriptName, "/cgi-bin/example");
          assert.equal(body.pathInfo, "");
        },
      );

      await t.step(
        "non-ASCII paths arrive as latin-1 strings of their bytes",
        async () => {
          const utf8 = JSON.parse(
            (await get("/cgi-bin/example/caf%C3%A9")).text,
          );
          assert.equal(utf8.pathInfo, "/caf\xc3\xa9");
          // %E9 alone is not UTF-8: Deno drops PATH_INFO, REQUEST_URI restores it.
          const latin1 = JSON.parse(
            (await get("/cgi-bin/example/caf%E9")).text,
          );
          assert.equal(latin1.pathInfo, "/caf\xe9");
          assert.equal(
            latin1.requestUri,
            `${host.base}/cgi-bin/example/caf%E9`,
          );
          // Raw UTF-8 bytes in the request target, which fetch would encode.
          const raw = await rawRequest(
            host.port,
            encodeLatin1(
              "GET /cgi-bin/example/\xe6\x97\xa5?x=\xc3\xa9 HTTP/1.0\r\nHost: test\r\n\r\n",
            ),
          );
          assert.match(raw, /^HTTP\/1\.0 200 OK\r\n/);
          const body = JSON.parse(
            new TextDecoder().decode(
              encodeLatin1(raw.slice(raw.indexOf("\r\n\r\n") + 4)),
            ),
          );
          assert.equal(body.pathInfo, "/\xe6\x97\xa5");
          assert.equal(body.serverProtocol, "HTTP/1.0");
        },
      );

      await t.step("POST a small body", async () => {
        const { response, text } = await get("/cgi-bin/example/echo", {
          method: "POST",
          body: "hello",
        });
        assert.equal(response.status, 200);
        assert.deepEqual(JSON.parse(text), { length: 5, adler32: "062c0215" });
      });

      await t.step(
        "POST 20 MB, read through wsgi.input in pieces",
        async () => {
          const body = new Uint8Array(20 * MIB);
          for (let i = 0; i < body.length; i++) body[i] = i * 31 + (i >> 12);
          const { response, text } = await get("/cgi-bin/example/echo", {
            method: "POST",
            body,
          });
          assert.equal(response.status, 200);
          assert.deepEqual(JSON.parse(text), {
            length: 20 * MIB,
            adler32: adler32(body),
          });
        },
      );

      await t.step("GET on a POST route", async () => {
        const { response, text } = await get("/cgi-bin/example/echo");
        assert.equal(response.status, 405);
        assert.equal(response.headers.get("allow"), "POST");
        assert.equal(text, "");
      });

      await t.step("a streamed 20 MB response", async () => {
        const response = await fetch(
          `${host.base}/cgi-bin/example/download?bytes=${20 * MIB}`,
        );
        assert.equal(response.status, 200);
        assert.equal(response.headers.get("content-length"), String(20 * MIB));
        let offset = 0;
        let chunks = 0;
        let mismatch = -1;
        for await (const chunk of response.body!) {
          chunks++;
          for (let i = 0; i < chunk.length && mismatch < 0; i++) {
            if (chunk[i] !== (offset + i) % 251) mismatch = offset + i;
          }
          offset += chunk.length;
        }
        assert.equal(mismatch, -1);
        assert.equal(offset, 20 * MIB);
        assert.ok(chunks > 1);
      });

      await t.step("the source through wsgi.file_wrapper", async () => {
        const { text } = await get("/cgi-bin/example/source");
        assert.equal(text, await Deno.readTextFile(EXAMPLE));
      });

      await t.step(
        "an app that throws: 500 page, stack in the host's error log",
        async () => {
          const { response, text } = await get("/cgi-bin/example/error");
          assert.equal(response.status, 500);
          assert.equal(response.headers.get("content-type"), "text/plain");
          assert.equal(text, ERROR_BODY);
          const log = await host.errorLog();
          assert.match(
            log,
            /Error: The \/error route always fails\n {4}at app \(file:\/\/\/.*examples\/cgi\.ts:\d+:\d+\)\n/,
          );
        },
      );

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
            encodeLatin1(
              `GET /cgi-bin/fixture/${route} HTTP/1.0\r\nHost: test\r\n\r\n`,
            ),
          );
          const end = raw.indexOf("\r\n\r\n");
          const head = raw.slice(0, end);
          assert.match(head, /^HTTP\/1\.0 500 Internal Server Error\r\n/);
          assert.doesNotMatch(raw, /X-Injected|chunked|should not be sent/i);
          assert.match(head, /\r\nContent-Type: text\/plain\r\n/);
          assert.equal(raw.slice(end + 4), ERROR_BODY);
        });
      }

      await t.step(
        "httpoxy: a Proxy: request header does not redirect the app's fetch",
        async () => {
          const port = target.addr.port;
          // lighttpd drops the Proxy header itself...
          const plain = await get(`/cgi-bin/fixture/fetch?port=${port}`, {
            headers: { Proxy: proxy.url },
          });
          assert.deepEqual(JSON.parse(plain.text), {
            body: "direct",
            earlyBody: null,
            processProxy: null,
            environProxy: null,
          });
          // ...so play a host that passes it on as HTTP_PROXY.
          const passed = await get(
            `/cgi-bin/fixture/proxied/fetch?port=${port}`,
          );
          assert.equal(passed.response.status, 200, passed.text);
          assert.deepEqual(JSON.parse(passed.text), {
            body: "direct",
            earlyBody: null,
            processProxy: null,
            environProxy: proxy.url,
          });
        },
      );
      assert.deepEqual(proxy.requests, []);
    } finally {
      const log = await host.stop();
      await target.shutdown();
      await proxy.close();
      // Every CGI program answered through its handler: none crashed.
      assert.doesNotMatch(log, /Uncaught|error: /);
      assert.match(log, /server stopped/);
    }
  },
});
