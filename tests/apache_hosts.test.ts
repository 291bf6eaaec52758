/**
 * Behind a real Apache 2.4 (Debian's `apache2`), started on 127.0.0.1 from
 * the recipes of `docs/deploy/` (only ports and paths substituted) and
 * stopped in the same test, the same steps as under lighttpd and nginx:
 *
 * - `mod_proxy_fcgi` (`apache-fastcgi.conf`) to the gateway in this
 *   process, over TCP and over a Unix socket;
 * - `mod_cgid` (`apache-cgi.conf`) running `examples/cgi.ts` bundled by
 *   `docs/cgi.md`'s commands, alone in a fresh directory.
 *
 * Run as root, Apache runs CGI programs as www-data, and connects to the
 * gateway as www-data: over a Unix socket, as `docs/fastcgi.md` sets it up
 * (the socket in a directory of mode 0755, `RuntimeDirectory`'s; its group
 * the web server's, `Group=www-data`; `socketMode` 0o660). Without Apache (Debian: `apt-get install apache2`)
 * these tests are ignored, unless `WSGIREF_REQUIRE_APACHE=1`.
 */

import assert from "node:assert/strict";
import { findApache, hasApacheModule, startApache } from "./fixtures/apache.ts";
import {
  deployCgiBundle,
  deployConfig,
  ignoreWithout,
} from "./fixtures/deploy.ts";
import { startApacheCgi } from "./fixtures/cgi_recipes.ts";
import {
  cgiExampleSteps,
  fastcgiSteps,
  withGateway,
} from "./fixtures/host_steps.ts";

const APACHE = findApache();
const MODULES = ["proxy", "proxy_fcgi", "cgid"];
const FOUND = APACHE !== null && MODULES.every(hasApacheModule) ? APACHE : null;
const IGNORE = ignoreWithout(
  FOUND,
  "Apache 2.4 with mod_proxy_fcgi and mod_cgid",
  "WSGIREF_REQUIRE_APACHE",
  "apache2",
);

for (const address of ["tcp", "unix"] as const) {
  Deno.test({
    name:
      `makeFastCGIServer() serves requests behind Apache mod_proxy_fcgi over ${
        address === "tcp" ? "TCP" : "a Unix socket"
      } (docs/deploy/apache-fastcgi.conf)`,
    ignore: IGNORE,
    async fn(t) {
      assert.ok(FOUND, "Apache is required (WSGIREF_REQUIRE_APACHE=1)");
      await withGateway(address, async (gateway, served) => {
        const path = "path" in gateway.serverAddress
          ? gateway.serverAddress.path
          : null;
        if (path !== null) {
          // /run/my-app as systemd's RuntimeDirectory makes it.
          await Deno.chmod(path.slice(0, path.lastIndexOf("/")), 0o755);
        }
        const target = path !== null
          ? `unix:${path}|fcgi://localhost`
          : `fcgi://127.0.0.1:${gateway.serverPort}`;
        const host = await startApache(FOUND, {
          modules: ["proxy", "proxy_fcgi"],
          config: () =>
            deployConfig("apache-fastcgi.conf", [
              ["fcgi://127.0.0.1:9000", target],
            ]),
        });
        try {
          if (path !== null && host.user !== null) {
            // Group=www-data: the gateway's group, so its socket's, is
            // that of Apache's user (this process is root's).
            const id = await new Deno.Command("id", {
              args: ["-g", host.user],
              stdout: "piped",
            }).output();
            const gid = Number(new TextDecoder().decode(id.stdout).trim());
            await Deno.chown(path, null, gid);
          }
          await fastcgiSteps(t, host, gateway, served, {
            rawQuery: "x=\xc3\xa9",
            connections: 4,
            stderrNewline: "\\n",
            contentLength: false,
          });
        } finally {
          const log = await host.stop();
          assert.doesNotMatch(log, /\[(emerg|alert|crit)\]/);
        }
      }, { socketMode: address === "unix" ? 0o660 : undefined });
    },
  });
}

Deno.test({
  name:
    "a bundled examples/cgi.ts alone in a fresh directory serves under Apache mod_cgid (docs/deploy/apache-cgi.conf)",
  ignore: IGNORE,
  async fn(t) {
    assert.ok(FOUND, "Apache is required (WSGIREF_REQUIRE_APACHE=1)");
    const user = Deno.uid() === 0 ? "www-data" : null;
    const deployed = await deployCgiBundle(user);
    try {
      const program = deployed.program;
      const host = await startApacheCgi(FOUND, deployed);
      try {
        await cgiExampleSteps(t, host, {
          program,
          bareMountPathInfo: "",
          streams: true,
          contentLength: false,
        });
      } finally {
        const log = await host.stop();
        assert.doesNotMatch(log, /\[(emerg|alert|crit)\]/);
      }
    } finally {
      await deployed.remove();
    }
  },
});
