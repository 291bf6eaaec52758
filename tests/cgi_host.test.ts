/**
 * `examples/cgi.ts` run as a CGI program behind real hosts, each started on
 * 127.0.0.1 with a generated config and stopped in the same test:
 *
 * - lighttpd (mod_cgi), the example as shipped, in place, beside a test
 *   fixture that tries to inject headers and to be redirected through a
 *   proxy (httpoxy);
 * - lighttpd, from `docs/deploy/lighttpd-cgi.conf`, and nginx + fcgiwrap,
 *   from `docs/deploy/nginx-fcgiwrap.conf`: the example bundled by
 *   `docs/cgi.md`'s commands, alone in a fresh directory.
 *
 * (Apache mod_cgid: `tests/apache_hosts.test.ts`.) Without a host (Debian:
 * `apt-get install lighttpd nginx fcgiwrap`) its test is ignored, unless
 * `WSGIREF_REQUIRE_LIGHTTPD=1` or `WSGIREF_REQUIRE_NGINX=1`.
 */

import assert from "node:assert/strict";
import { findLighttpd, startLighttpd } from "./fixtures/lighttpd.ts";
import { findNginx } from "./fixtures/nginx.ts";
import { startProxy } from "./fixtures/proxy.ts";
import {
  type Fcgiwrap,
  findFcgiwrap,
  startFcgiwrap,
} from "./fixtures/fcgiwrap.ts";
import { deployCgiBundle, ignoreWithout } from "./fixtures/deploy.ts";
import {
  startLighttpdCgi,
  startNginxFcgiwrap,
} from "./fixtures/cgi_recipes.ts";
import {
  cgiExampleSteps,
  injectionSteps,
  rawBody,
  rawRequest,
} from "./fixtures/host_steps.ts";

const EXAMPLE = new URL("../examples/cgi.ts", import.meta.url).pathname;
const FIXTURE = new URL("./fixtures/cgi_fixture.ts", import.meta.url).pathname;

const LIGHTTPD = findLighttpd();
const NGINX = findNginx();
const FCGIWRAP = findFcgiwrap();
const IGNORE_LIGHTTPD = ignoreWithout(
  LIGHTTPD,
  "lighttpd",
  "WSGIREF_REQUIRE_LIGHTTPD",
  "lighttpd",
);
const IGNORE_NGINX = ignoreWithout(
  NGINX && FCGIWRAP,
  "nginx or fcgiwrap",
  "WSGIREF_REQUIRE_NGINX",
  "nginx fcgiwrap",
);

Deno.test({
  name: "examples/cgi.ts serves requests as a CGI program under lighttpd",
  ignore: IGNORE_LIGHTTPD,
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
      aliases: { "/app": EXAMPLE, "/cgi-bin/fixture": FIXTURE },
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
      await cgiExampleSteps(t, host, {
        program: EXAMPLE,
        // lighttpd passes no PATH_INFO: rebuilt as empty from REQUEST_URI.
        bareMountPathInfo: "",
        streams: true,
        contentLength: true,
      });

      await t.step(
        "raw UTF-8 bytes in the request target",
        async () => {
          const raw = await rawRequest(
            host.port,
            "GET /app/\xe6\x97\xa5?x=\xc3\xa9 HTTP/1.0\r\nHost: test\r\n\r\n",
          );
          assert.match(raw, /^HTTP\/1\.0 200 OK\r\n/);
          const body = JSON.parse(rawBody(raw));
          assert.equal(body.pathInfo, "/\xe6\x97\xa5");
          assert.equal(body.serverProtocol, "HTTP/1.0");
        },
      );

      await t.step("the stack names the example's own file", async () => {
        assert.match(
          await host.errorLog(),
          /Error: The \/error route always fails\n {4}at app \(file:\/\/\/.*examples\/cgi\.ts:\d+:\d+\)\n/,
        );
      });

      await injectionSteps(t, host, "/cgi-bin/fixture");

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

Deno.test({
  name:
    "a bundled examples/cgi.ts alone in a fresh directory serves under lighttpd (docs/deploy/lighttpd-cgi.conf)",
  ignore: IGNORE_LIGHTTPD,
  async fn(t) {
    assert.ok(LIGHTTPD, "lighttpd is required (WSGIREF_REQUIRE_LIGHTTPD=1)");
    const deployed = await deployCgiBundle(null);
    try {
      const host = await startLighttpdCgi(LIGHTTPD, deployed);
      try {
        // Its errorLog() is the recipe's breakage log, where the programs'
        // stderr goes.
        await cgiExampleSteps(t, host, {
          program: deployed.program,
          bareMountPathInfo: "",
          streams: true,
          contentLength: true,
        });
      } finally {
        const log = await host.stop();
        assert.doesNotMatch(log, /Uncaught|error: /);
      }
    } finally {
      await deployed.remove();
    }
  },
});

Deno.test({
  name:
    "a bundled examples/cgi.ts alone in a fresh directory serves under nginx + fcgiwrap (docs/deploy/nginx-fcgiwrap.conf)",
  ignore: IGNORE_NGINX,
  async fn(t) {
    assert.ok(NGINX && FCGIWRAP, "nginx and fcgiwrap are required");
    const deployed = await deployCgiBundle(
      Deno.uid() === 0 ? "www-data" : null,
    );
    let fcgiwrap: Fcgiwrap | null = null;
    try {
      fcgiwrap = await startFcgiwrap(FCGIWRAP, deployed.root);
      const host = await startNginxFcgiwrap(NGINX, deployed, fcgiwrap.socket);
      try {
        await cgiExampleSteps(t, host, {
          program: deployed.program,
          bareMountPathInfo: "",
          // fcgiwrap buffers a program's output (libfcgi's stream buffer).
          streams: false,
          contentLength: true,
        });
      } finally {
        const log = await host.stop();
        assert.doesNotMatch(log, /\[(alert|emerg)\]/);
      }
    } finally {
      const log = await fcgiwrap?.stop();
      await deployed.remove();
      assert.doesNotMatch(log ?? "", /error/i);
    }
  },
});
