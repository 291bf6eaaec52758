/**
 * The FastCGI gateway behind real hosts, each started on 127.0.0.1 from the
 * recipe of `docs/deploy/` (only ports and paths substituted) and stopped
 * in the same test: lighttpd (`lighttpd-fastcgi.conf`, to the gateway's Unix
 * socket) and nginx (`nginx-fastcgi.conf`, an upstream of kept connections,
 * over TCP). The gateway runs in this process, serving the test application
 * wrapped in `validator()` (but for the routes that try to inject headers,
 * which the validator would refuse before the handler does). Apache:
 * `tests/apache_hosts.test.ts`.
 *
 * Without lighttpd or nginx (Debian: `apt-get install lighttpd nginx`) the
 * host's test is ignored, unless `WSGIREF_REQUIRE_LIGHTTPD=1` or
 * `WSGIREF_REQUIRE_NGINX=1` (then it fails).
 */

import assert from "node:assert/strict";
import {} from "./fixtures/fcgi_client.ts";
import { findLighttpd, startLighttpd } from "./fixtures/lighttpd.ts";
import { findNginx, startNginx } from "./fixtures/nginx.ts";
import { deployConfig, ignoreWithout } from "./fixtures/deploy.ts";
import { fastcgiSteps, withGateway } from "./fixtures/host_steps.ts";

const LIGHTTPD = findLighttpd();
const NGINX = findNginx();

Deno.test({
  name:
    "makeFastCGIServer() serves requests behind lighttpd (docs/deploy/lighttpd-fastcgi.conf)",
  ignore: ignoreWithout(
    LIGHTTPD,
    "lighttpd",
    "WSGIREF_REQUIRE_LIGHTTPD",
    "lighttpd",
  ),
  async fn(t) {
    assert.ok(LIGHTTPD, "lighttpd is required (WSGIREF_REQUIRE_LIGHTTPD=1)");
    await withGateway("unix", async (gateway, served) => {
      const socket = (gateway.serverAddress as { path: string }).path;
      const host = await startLighttpd(LIGHTTPD, {
        config: () =>
          deployConfig("lighttpd-fastcgi.conf", [
            [
              `"host" => "127.0.0.1", "port" => 9000,`,
              `"socket" => "${socket}",`,
            ],
          ]),
      });
      try {
        await fastcgiSteps(t, host, gateway, served, {
          rawQuery: "x=%C3%A9",
          connections: "each",
          stderrNewline: "\n",
          contentLength: true,
        });
      } finally {
        const log = await host.stop();
        assert.match(log, /server stopped/);
      }
    });
  },
});

Deno.test({
  name:
    "makeFastCGIServer() serves requests behind nginx (docs/deploy/nginx-fastcgi.conf)",
  ignore: ignoreWithout(NGINX, "nginx", "WSGIREF_REQUIRE_NGINX", "nginx"),
  async fn(t) {
    assert.ok(NGINX, "nginx is required (WSGIREF_REQUIRE_NGINX=1)");
    await withGateway("tcp", async (gateway, served) => {
      const host = await startNginx(NGINX, {
        // The recipe sets its own body limit: nginx's 1 MiB would refuse
        // the 8 MiB upload.
        clientMaxBodySize: null,
        // nginx would buffer up to 1 GiB of /forever into a temporary file
        // before the gateway feels the client leave.
        http: "  fastcgi_max_temp_file_size 8m;",
        site: (port) =>
          deployConfig("nginx-fastcgi.conf", [
            ["listen 80;", `listen 127.0.0.1:${port};`],
            [
              "server 127.0.0.1:9000;",
              `server 127.0.0.1:${gateway.serverPort};`,
            ],
          ]),
      });
      try {
        await fastcgiSteps(t, host, gateway, served, {
          rawQuery: "x=\xc3\xa9",
          connections: 1,
          stderrNewline: "\n",
          contentLength: true,
        });
      } finally {
        const log = await host.stop();
        assert.doesNotMatch(log, /\[(alert|emerg)\]/);
      }
    });
  },
});
