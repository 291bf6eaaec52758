/**
 * The HTTP server behind a real nginx, as `docs/programs.md` deploys it:
 * `simple_server.ts --socket PATH --quiet` as a program, and nginx started
 * on 127.0.0.1 from `docs/deploy/nginx-proxy-unix.conf` (only its port and
 * the socket's path substituted), both stopped in the same test.
 *
 * Without nginx (Debian: `apt-get install nginx`) the test is ignored,
 * unless `WSGIREF_REQUIRE_NGINX=1` (then it fails).
 */

import assert from "node:assert/strict";
import { findNginx, startNginx } from "./fixtures/nginx.ts";
import { deployConfig, ignoreWithout } from "./fixtures/deploy.ts";
import { waitFor } from "./fixtures/process.ts";

const NGINX = findNginx();
const SIMPLE_SERVER = new URL("../simple_server.ts", import.meta.url).pathname;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** `simple_server.ts` run with `args`, its output collected as it comes. */
function startProgram(args: string[]) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", SIMPLE_SERVER, ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const output = { text: "" };
  const reading = Promise.all(
    [child.stdout, child.stderr].map(async (stream) => {
      for await (const part of stream.pipeThrough(new TextDecoderStream())) {
        output.text += part;
      }
    }),
  );
  let exited = false;
  const status = child.status.then((status) => {
    exited = true;
    return status;
  });
  /** Send `signal`; the exit status (SIGKILL after 15 s) and output. */
  const stop = async (signal: Deno.Signal) => {
    if (!exited) child.kill(signal);
    const timer = setTimeout(() => {
      if (!exited) child.kill("SIGKILL");
    }, 15_000);
    const { code } = await status;
    clearTimeout(timer);
    await reading;
    return { code, output: output.text };
  };
  return { output, stop, exited: () => exited };
}

/** A raw HTTP/1.1 request to 127.0.0.1:`port`, read to the end. */
async function rawRequest(port: number, request: string): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await conn.write(encoder.encode(request));
    let text = "";
    const buffer = new Uint8Array(64 * 1024);
    for (let i = 0; i < 10_000; i++) {
      const n = await conn.read(buffer);
      if (n === null) break;
      text += decoder.decode(buffer.subarray(0, n), { stream: true });
    }
    return text + decoder.decode();
  } finally {
    conn.close();
  }
}

Deno.test({
  name:
    "simple_server.ts --socket serves behind nginx (docs/deploy/nginx-proxy-unix.conf)",
  ignore: ignoreWithout(NGINX, "nginx", "WSGIREF_REQUIRE_NGINX", "nginx"),
  async fn(t) {
    assert.ok(NGINX, "nginx is required (WSGIREF_REQUIRE_NGINX=1)");
    const dir = await Deno.makeTempDir({ prefix: "wsgiref-http-hosts-" });
    const path = `${dir}/http.sock`;
    // The program as the recipe's comment starts it: demoApp, which shows
    // the environ it was given.
    const program = startProgram(["--socket", path, "--quiet"]);
    let stopped: { code: number; output: string } | null = null;
    try {
      await waitFor(
        () =>
          program.output.text.includes(`on unix:${path} ...`) ||
          program.exited(),
        "the banner",
        20_000,
      );
      assert.equal(
        program.output.text,
        `Serving HTTP on unix:${path} ...\n`,
      );
      const host = await startNginx(NGINX, {
        // The recipe sets its own body limit: nginx's 1 MiB would refuse
        // the 2 MiB upload.
        clientMaxBodySize: null,
        site: (port) =>
          deployConfig("nginx-proxy-unix.conf", [
            ["listen 80;", `listen 127.0.0.1:${port};`],
            ["/run/my-app/http.sock", path],
          ]),
      });
      try {
        await t.step("the client's Host, path and address", async () => {
          const response = await rawRequest(
            host.port,
            "GET /a%20b/caf%C3%A9?x=1&y HTTP/1.1\r\n" +
              "Host: example.com:8080\r\nConnection: close\r\n\r\n",
          );
          assert.match(response, /^HTTP\/1.1 200 OK\r\n/);
          const body = response.slice(response.indexOf("\r\n\r\n") + 4);
          const line = (key: string) =>
            new RegExp(`^${key} = (.*)$`, "m").exec(body)?.[1];
          assert.equal(line("SERVER_NAME"), "'example.com'");
          assert.equal(line("SERVER_PORT"), "'8080'");
          assert.equal(line("HTTP_HOST"), "'example.com:8080'");
          // demoApp's repr of the latin-1 string of "/a b/café"'s bytes.
          assert.equal(line("PATH_INFO"), "'/a b/caf\u00c3\u00a9'");
          assert.equal(line("QUERY_STRING"), "'x=1&y'");
          assert.equal(line("REMOTE_ADDR"), undefined);
          assert.equal(line("HTTP_X_FORWARDED_FOR"), "'127.0.0.1'");
          assert.equal(line("HTTP_X_FORWARDED_PROTO"), "'http'");
          assert.equal(line("wsgi.url_scheme"), "'http'");
        });
        await t.step("a body over nginx's default 1 MiB", async () => {
          const size = 2 * 1024 * 1024;
          const response = await fetch(`${host.base}/upload`, {
            method: "POST",
            body: new Uint8Array(size).fill(0x61),
          });
          assert.equal(response.status, 200);
          assert.match(
            await response.text(),
            new RegExp(`^CONTENT_LENGTH = '${size}'$`, "m"),
          );
        });
        await t.step("SIGTERM: exit 0, the socket file removed", async () => {
          stopped = await program.stop("SIGTERM");
          assert.equal(stopped.code, 0, stopped.output);
          assert.throws(() => Deno.lstatSync(path), Deno.errors.NotFound);
          const response = await fetch(`${host.base}/`);
          assert.equal(response.status, 502, "nginx finds no server there");
          await response.body?.cancel();
        });
      } finally {
        const log = await host.stop();
        assert.doesNotMatch(log, /\[(alert|emerg)\]/);
      }
    } finally {
      if (stopped === null) await program.stop("SIGKILL");
      await Deno.remove(dir, { recursive: true });
    }
  },
});
