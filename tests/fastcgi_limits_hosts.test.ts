/**
 * What a client sees of the FastCGI gateway's limits behind real hosts,
 * each started on 127.0.0.1 from its recipe of `docs/deploy/` (only ports
 * substituted) and stopped in the same test: nginx, lighttpd and Apache
 * `mod_proxy_fcgi`, over TCP, to a gateway in this process with small
 * limits.
 *
 * - `idleTimeout` closes the connection a host keeps (nginx `keepalive`,
 *   Apache `enablereuse`): the host's next request is served on a new one.
 * - A body past `diskBudget`: the client gets the gateway's 503.
 * - A request past `maxRequests`: the gateway sends a 503 response before
 *   `END_REQUEST` with `FCGI_OVERLOADED`, and the client gets that 503
 *   (without it, nginx answers 502, lighttpd 500 and Apache an empty 200).
 *
 * A host that is not installed has its test ignored, unless
 * `WSGIREF_REQUIRE_NGINX=1`, `WSGIREF_REQUIRE_LIGHTTPD=1` or
 * `WSGIREF_REQUIRE_APACHE=1`.
 */

import assert from "node:assert/strict";
import { findNginx, startNginx } from "./fixtures/nginx.ts";
import { findLighttpd, startLighttpd } from "./fixtures/lighttpd.ts";
import { findApache, hasApacheModule, startApache } from "./fixtures/apache.ts";
import { deployConfig, ignoreWithout } from "./fixtures/deploy.ts";
import { hostApp, LoggedServer } from "./fixtures/host_steps.ts";
import { fdsUnder, socketsOnPort, waitFor } from "./fixtures/process.ts";

const KIB = 1024;
const BUSY =
  "The server is too busy to take this request now; try again later.\n";
const APACHE = findApache();

/** A host in front of the gateway at `port`. */
interface Host {
  base: string;
  stop(): Promise<string>;
}

const HOSTS: {
  name: string;
  binary: string | null;
  variable: string;
  install: string;
  start: (binary: string, port: number) => Promise<Host>;
}[] = [
  {
    name: "nginx (docs/deploy/nginx-fastcgi.conf)",
    binary: findNginx(),
    variable: "WSGIREF_REQUIRE_NGINX",
    install: "nginx",
    start: (nginx, port) =>
      startNginx(nginx, {
        clientMaxBodySize: null,
        site: (listen) =>
          deployConfig("nginx-fastcgi.conf", [
            ["listen 80;", `listen 127.0.0.1:${listen};`],
            ["server 127.0.0.1:9000;", `server 127.0.0.1:${port};`],
          ]),
      }),
  },
  {
    name: "lighttpd (docs/deploy/lighttpd-fastcgi.conf)",
    binary: findLighttpd(),
    variable: "WSGIREF_REQUIRE_LIGHTTPD",
    install: "lighttpd",
    start: (lighttpd, port) =>
      startLighttpd(lighttpd, {
        config: () =>
          deployConfig("lighttpd-fastcgi.conf", [
            ['"port" => 9000', `"port" => ${port}`],
          ]),
      }),
  },
  {
    name: "Apache mod_proxy_fcgi (docs/deploy/apache-fastcgi.conf)",
    binary: APACHE !== null &&
        ["proxy", "proxy_fcgi"].every(hasApacheModule)
      ? APACHE
      : null,
    variable: "WSGIREF_REQUIRE_APACHE",
    install: "apache2",
    start: (apache, port) =>
      startApache(apache, {
        modules: ["proxy", "proxy_fcgi"],
        config: () =>
          deployConfig("apache-fastcgi.conf", [
            ["fcgi://127.0.0.1:9000", `fcgi://127.0.0.1:${port}`],
          ]),
      }),
  },
];

/** GET or POST through the host: status and body. */
async function fetchText(
  url: string,
  body?: Uint8Array<ArrayBuffer>,
): Promise<[number, string]> {
  const response = await fetch(
    url,
    body === undefined ? {} : { method: "POST", body },
  );
  return [response.status, await response.text()];
}

for (const host of HOSTS) {
  Deno.test({
    name:
      `makeFastCGIServer() limits reach the client as 503s behind ${host.name}`,
    ignore: ignoreWithout(host.binary, host.name, host.variable, host.install),
    async fn(t) {
      assert.ok(host.binary, `${host.name} is required (${host.variable}=1)`);
      const tempDir = await Deno.makeTempDir({ prefix: "wsgiref-limits-" });
      const { app, gate } = hostApp();
      const gateway = new LoggedServer(
        { hostname: "127.0.0.1", port: 0 },
        app,
        {
          tempDir,
          maxRequests: 1,
          spoolThreshold: KIB,
          memoryBudget: KIB,
          diskBudget: 64 * KIB,
          idleTimeout: 300,
        },
      );
      const serving = gateway.serveForever();
      const server = await host.start(host.binary, gateway.serverPort);
      try {
        await t.step(
          "idleTimeout: the kept connection closed, the next request served",
          async () => {
            assert.deepEqual(await fetchText(`${server.base}/app/a`), [
              200,
              "Hello /a\n",
            ]);
            await waitFor(
              () => gateway.openConnections === 0,
              "the idle connection closed",
            );
            assert.deepEqual(await fetchText(`${server.base}/app/b`), [
              200,
              "Hello /b\n",
            ]);
          },
        );
        await t.step("a body past diskBudget: 503", async () => {
          const [status, body] = await fetchText(
            `${server.base}/app/echo`,
            new Uint8Array(100 * KIB),
          );
          assert.deepEqual([status, body], [503, BUSY]);
          assert.equal(gateway.diskUsed, 0);
          assert.equal(fdsUnder(tempDir), 0);
        });
        await t.step("one over maxRequests: 503", async () => {
          const held = fetch(`${server.base}/app/gate`);
          await waitFor(() => gateway.activeRequests === 1, "/gate running");
          assert.deepEqual(await fetchText(`${server.base}/app/x`), [
            503,
            BUSY,
          ]);
          gate.release();
          const response = await held;
          assert.equal(await response.text(), "first\nsecond\n");
          assert.deepEqual(await fetchText(`${server.base}/app/c`), [
            200,
            "Hello /c\n",
          ]);
        });
      } finally {
        gate.release();
        const log = await server.stop();
        await gateway.shutdown();
        await serving;
        await Deno.remove(tempDir, { recursive: true });
        assert.doesNotMatch(log, /\[(emerg|alert|crit)\]/);
      }
      assert.equal(socketsOnPort(gateway.serverPort), 0);
      assert.equal(gateway.activeRequests, 0);
    },
  });
}
