/**
 * The gateway as the programs that start FastCGI programs themselves start
 * it, each with the configuration of `docs/deploy/` (ports and paths
 * substituted, nothing else): `spawn-fcgi` and lighttpd's `bin-path` (a
 * listening socket on fd 0), Apache's `mod_fcgid` (a Unix socket on fd 0,
 * the gateway run as Apache's user), and systemd socket activation through
 * `systemd-socket-activate` (fd 3, `LISTEN_FDS`; the units also pass
 * `systemd-analyze verify`). Through each: a query
 * string, `SCRIPT_NAME`/`PATH_INFO`, a multi-MiB POST, a streamed
 * response, a throwing app, concurrent requests, and, on TCP, a peer not in
 * `FCGI_WEB_SERVER_ADDRS` refused. And scale-out: nginx over two gateways
 * (`upstream`, `fastcgi_next_upstream`) loses no request when one is
 * killed under load. The gateway serves
 * `fixtures/fastcgi_app.ts` in program mode, with the permissions the docs
 * give it (not `--allow-all`).
 *
 * Also: how the program tells a listening socket on fd 0 from a terminal,
 * `/dev/null`, a pipe, a file or a connected socket, with and without
 * `--allow-all` (which reading `/proc/self` needs).
 *
 * A missing host's tests are ignored, unless `WSGIREF_REQUIRE_SPAWNERS=1`
 * (spawn-fcgi, systemd-socket-activate), `WSGIREF_REQUIRE_LIGHTTPD=1` or
 * `WSGIREF_REQUIRE_APACHE=1` or `WSGIREF_REQUIRE_NGINX=1` (then they
 * fail).
 */

import assert from "node:assert/strict";
import net from "node:net";
import { adler32, PATTERN } from "./fixtures/fastcgi_app.ts";
import {
  FcgiClient,
  getParams,
  parseCgi,
  requestRecords,
} from "./fixtures/fcgi_client.ts";
import { findBinary, freePort, waitFor } from "./fixtures/process.ts";
import { exited, start, type Started } from "./fixtures/child.ts";
import { findLighttpd, startLighttpd } from "./fixtures/lighttpd.ts";
import { findApache, hasApacheModule, startApache } from "./fixtures/apache.ts";
import { findNginx, startNginx } from "./fixtures/nginx.ts";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const FIXTURES = `${ROOT}/tests/fixtures`;
const APP = `${FIXTURES}/fastcgi_app.ts`;
const DEPLOY = `${ROOT}/docs/deploy`;
const MIB = 1024 * 1024;
const ERROR_BODY =
  "A server error occurred.  Please contact the administrator.";
const decoder = new TextDecoder();

const SPAWN_FCGI = findBinary("spawn-fcgi", ["/usr/bin/spawn-fcgi"]);
const SOCKET_ACTIVATE = findBinary("systemd-socket-activate", [
  "/usr/bin/systemd-socket-activate",
  "/lib/systemd/systemd-socket-activate",
]);
const ANALYZE = findBinary("systemd-analyze", ["/usr/bin/systemd-analyze"]);
const LIGHTTPD = findLighttpd();
const APACHE = findApache();
const FCGID = APACHE !== null && hasApacheModule("fcgid");
const NGINX = findNginx();
const REQUIRE_SPAWNERS = Deno.env.get("WSGIREF_REQUIRE_SPAWNERS") === "1";
const REQUIRE_LIGHTTPD = Deno.env.get("WSGIREF_REQUIRE_LIGHTTPD") === "1";
const REQUIRE_APACHE = Deno.env.get("WSGIREF_REQUIRE_APACHE") === "1";
const REQUIRE_NGINX = Deno.env.get("WSGIREF_REQUIRE_NGINX") === "1";
for (
  const [name, found, required, variable, install] of [
    [
      "spawn-fcgi",
      SPAWN_FCGI !== null,
      REQUIRE_SPAWNERS,
      "WSGIREF_REQUIRE_SPAWNERS",
      "spawn-fcgi",
    ],
    [
      "systemd-socket-activate",
      SOCKET_ACTIVATE !== null,
      REQUIRE_SPAWNERS,
      "WSGIREF_REQUIRE_SPAWNERS",
      "systemd",
    ],
    [
      "lighttpd",
      LIGHTTPD !== null,
      REQUIRE_LIGHTTPD,
      "WSGIREF_REQUIRE_LIGHTTPD",
      "lighttpd",
    ],
    [
      "nginx",
      NGINX !== null,
      REQUIRE_NGINX,
      "WSGIREF_REQUIRE_NGINX",
      "nginx",
    ],
    [
      "Apache mod_fcgid",
      FCGID,
      REQUIRE_APACHE,
      "WSGIREF_REQUIRE_APACHE",
      "apache2 libapache2-mod-fcgid",
    ],
  ] as const
) {
  if (!found) {
    console.warn(
      required
        ? `${name} not found, and ${variable}=1: its tests fail`
        : `${name} not found (apt-get install ${install}): its tests are ignored`,
    );
  }
}

// --- Deploy files -----------------------------------------------------------

/** A file of `docs/deploy/` with `replace`'s strings replaced; each must
 * occur in it. */
function deployFile(name: string, replace: [string, string][]): string {
  let text = Deno.readTextFileSync(`${DEPLOY}/${name}`);
  for (const [from, to] of replace) {
    assert.ok(text.includes(from), `${name} does not name ${from}`);
    text = text.replaceAll(from, to);
  }
  return text;
}

/** The deno binary, this checkout and the test application, for the paths
 * the deploy files name. */
const PATHS: [string, string][] = [
  ["/usr/local/bin/deno", Deno.execPath()],
  ["/opt/wsgiref/", `${ROOT}/`],
  ["/srv/my-app/app.ts", APP],
  ["/srv/my-app", FIXTURES],
];

let denoDirCache: string | null = null;

/** This user's Deno cache (the gateways share it). */
async function denoDir(): Promise<string> {
  if (denoDirCache !== null) return denoDirCache;
  const info = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json"],
    stdout: "piped",
    stderr: "null",
  }).output();
  return denoDirCache = JSON.parse(decoder.decode(info.stdout)).denoDir;
}

/** Two free ports in a row (lighttpd gives its second process port + 1). */
function freePortPair(): number {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = freePort();
    if (port >= 65535) continue;
    try {
      Deno.listen({ hostname: "127.0.0.1", port: port + 1 }).close();
      return port;
    } catch {
      // Taken: another pair.
    }
  }
  throw new Error("No two free ports in a row");
}

// --- Processes --------------------------------------------------------------

/** Whether a process runs (a zombie does not count). */
function running(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return !/^\d+ \(.*\) [ZX] /.test(stat);
  } catch {
    return false;
  }
}

/** Stop processes this test did not start directly: SIGTERM, then wait. */
async function terminate(pids: number[]): Promise<void> {
  for (const pid of pids) {
    try {
      Deno.kill(pid, "SIGTERM");
    } catch {
      // Gone already.
    }
  }
  try {
    await waitFor(() => pids.every((pid) => !running(pid)), "exit", 10_000);
  } finally {
    for (const pid of pids.filter(running)) Deno.kill(pid, "SIGKILL");
  }
}

// --- Clients ----------------------------------------------------------------

/** A response as the checks see it. */
interface Reply {
  status: number;
  contentType: string | null;
  body: Uint8Array;
}

/** How the checks reach the gateway: through a web server, or as one. */
interface Front {
  request(
    path: string,
    init?: { method?: string; body?: Uint8Array },
  ): Promise<Reply>;
  /** Where the application's error stream went, so far. */
  errorLog(): Promise<string>;
}

/** Through a web server on 127.0.0.1. */
function httpFront(base: string, errorLog: () => Promise<string>): Front {
  return {
    async request(path, init = {}) {
      const response = await fetch(base + path, init as RequestInit);
      return {
        status: response.status,
        contentType: response.headers.get("content-type"),
        body: new Uint8Array(await response.arrayBuffer()),
      };
    },
    errorLog,
  };
}

/** Straight to the gateway over FastCGI, as a web server would send the
 * request for `/app/...`; `STDERR` records make the error log. */
function fcgiFront(
  address: { hostname: string; port: number } | { path: string },
): Front {
  let stderr = "";
  return {
    async request(path, init = {}) {
      const mark = path.indexOf("?");
      const target = mark < 0 ? path : path.slice(0, mark);
      assert.ok(target === "/app" || target.startsWith("/app/"), target);
      const body = init.body ?? new Uint8Array(0);
      const client = await FcgiClient.connect(address);
      try {
        const response = await client.request(
          getParams(path, {
            REQUEST_METHOD: init.method ?? "GET",
            SCRIPT_NAME: "/app",
            PATH_INFO: target.slice(4),
            CONTENT_LENGTH: init.body ? String(body.length) : "",
          }),
          { stdin: body },
        );
        stderr += response.stderr;
        const cgi = parseCgi(response.stdout);
        const type = cgi.headers.find(([name]) =>
          name.toLowerCase() === "content-type"
        );
        return {
          status: Number(cgi.status.slice(0, 3)),
          contentType: type?.[1] ?? null,
          body: cgi.body,
        };
      } finally {
        client.close();
      }
    },
    errorLog: () => Promise.resolve(stderr),
  };
}

/** A FastCGI request to the gateway's port from 127.0.0.2, an address not
 * in `FCGI_WEB_SERVER_ADDRS`: the bytes that came back before it closed. */
function fromStranger(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({
      host: "127.0.0.1",
      port,
      localAddress: "127.0.0.2",
    });
    let received = 0;
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error("The gateway kept a stranger's connection open"));
    }, 5000);
    socket.on("connect", () => {
      socket.write(requestRecords(getParams("/stranger")));
    });
    socket.on("data", (data: Uint8Array) => received += data.length);
    // A reset, after the gateway closed with the request unread.
    socket.on("error", () => {});
    socket.on("close", () => {
      clearTimeout(timer);
      resolve(received);
    });
  });
}

/** Wait until the async `check()` holds (at most 10 s). */
async function eventually(
  check: () => Promise<boolean>,
  what: string,
): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/**
 * The gateways that answer pairs of concurrent slow requests, added to
 * `seen`, until two have (at most `rounds` pairs). Every reply must be a
 * 200.
 */
async function gatewaysSeen(
  front: Front,
  seen: Set<number>,
  rounds = 40,
): Promise<Set<number>> {
  for (let i = 0; i < rounds && seen.size < 2; i++) {
    const replies = await Promise.all(
      [0, 1].map(() => front.request("/app/pid?ms=50")),
    );
    for (const reply of replies) {
      assert.equal(reply.status, 200);
      seen.add(json(reply).pid as number);
    }
  }
  return seen;
}

/** JSON of a reply's body. */
function json(reply: Reply): Record<string, unknown> {
  return JSON.parse(decoder.decode(reply.body));
}

/**
 * Every check through `front`. Returns the process ids that answered the
 * concurrent requests.
 */
async function throughGateway(
  t: Deno.TestContext,
  front: Front,
): Promise<Set<number>> {
  await t.step("a query string; SCRIPT_NAME and PATH_INFO", async () => {
    const reply = await front.request("/app/env/hello/world?a=1&b=%C3%A9&c");
    assert.equal(reply.status, 200);
    assert.equal(reply.contentType, "application/json");
    const environ = json(reply);
    assert.deepEqual(
      [
        environ.REQUEST_METHOD,
        environ.SCRIPT_NAME,
        environ.PATH_INFO,
        environ.QUERY_STRING,
      ],
      ["GET", "/app", "/env/hello/world", "a=1&b=%C3%A9&c"],
    );
    assert.equal(environ["wsgi.multiprocess"], true);
    assert.equal(environ["wsgi.run_once"], false);
    assert.equal(
      decoder.decode((await front.request("/app/x")).body),
      "Hello /x\n",
    );
  });

  await t.step("POST 6 MiB, spooled, read through wsgi.input", async () => {
    const body = new Uint8Array(6 * MIB).map((_, i) => i * 31 + (i >> 12));
    const reply = await front.request("/app/echo", { method: "POST", body });
    assert.equal(reply.status, 200);
    assert.deepEqual(json(reply), { length: 6 * MIB, adler32: adler32(body) });
  });

  await t.step("a streamed 12 MiB response", async () => {
    const size = 12 * MIB;
    const reply = await front.request(`/app/stream?bytes=${size}`);
    assert.equal(reply.status, 200);
    assert.equal(reply.body.length, size);
    let mismatch = -1;
    for (let i = 0; i < size && mismatch < 0; i++) {
      if (reply.body[i] !== PATTERN[i % 251]) mismatch = i;
    }
    assert.equal(mismatch, -1);
  });

  await t.step(
    "an app that throws: 500, the stack in the host's error log",
    async () => {
      const reply = await front.request("/app/error");
      assert.equal(reply.status, 500);
      assert.equal(decoder.decode(reply.body), ERROR_BODY);
      await eventually(
        async () =>
          /Error: The \/error route always fails/.test(await front.errorLog()),
        "the stack in the error log",
      );
    },
  );

  const pids = new Set<number>();
  await t.step("24 concurrent requests", async () => {
    const body = new Uint8Array(200_000).map((_, i) => i % 7);
    const results = await Promise.all(
      Array.from({ length: 24 }, async (_, i) => {
        switch (i % 3) {
          case 0: {
            const reply = await front.request("/app/pid?ms=100");
            pids.add(json(reply).pid as number);
            return reply.status === 200;
          }
          case 1: {
            const reply = await front.request("/app/echo", {
              method: "POST",
              body,
            });
            return JSON.stringify(json(reply)) ===
              JSON.stringify({ length: 200_000, adler32: adler32(body) });
          }
          default: {
            const reply = await front.request("/app/stream?bytes=300000");
            return reply.body.length === 300000;
          }
        }
      }),
    );
    assert.deepEqual(
      results.map((ok, i) => ok ? null : i).filter((i) => i !== null),
      [],
    );
  });
  return pids;
}

// --- spawn-fcgi ---------------------------------------------------------------

Deno.test({
  name: "spawn-fcgi starts gateways on fd 0 (docs/deploy/spawn-fcgi.sh)",
  ignore: SPAWN_FCGI === null && !REQUIRE_SPAWNERS,
  async fn(t) {
    assert.ok(
      SPAWN_FCGI,
      "spawn-fcgi is required (WSGIREF_REQUIRE_SPAWNERS=1)",
    );
    const dir = await Deno.makeTempDir({ prefix: "wsgiref-spawn-fcgi-" });
    const port = freePort();
    const script = deployFile("spawn-fcgi.sh", [
      ...PATHS,
      ["/run/my-app/spawn-fcgi.pid", `${dir}/spawn-fcgi.pid`],
      ["-p 9000", `-p ${port}`],
    ]);
    await Deno.writeTextFile(`${dir}/spawn-fcgi.sh`, script);
    // spawn-fcgi exits once it has started the gateways; they keep its
    // stdout and stderr, which are read until they exit.
    const spawner = start("sh", [`${dir}/spawn-fcgi.sh`], {
      PATH: `${SPAWN_FCGI.slice(0, SPAWN_FCGI.lastIndexOf("/"))}:/usr/bin:/bin`,
    });
    let pids: number[] = [];
    try {
      await waitFor(
        () => {
          try {
            pids = Deno.readTextFileSync(`${dir}/spawn-fcgi.pid`).trim()
              .split(/\s+/).map(Number);
            return pids.length === 2;
          } catch {
            return false;
          }
        },
        "the pid file",
        10_000,
      );
      await waitFor(
        () => spawner.output().includes("child spawned successfully"),
        "spawn-fcgi's report",
      );
      const answered = await throughGateway(
        t,
        fcgiFront({ hostname: "127.0.0.1", port }),
      );
      await t.step("both gateways accept on the one socket", async () => {
        const front = fcgiFront({ hostname: "127.0.0.1", port });
        assert.deepEqual(
          [...await gatewaysSeen(front, answered)].sort(),
          [...pids].sort(),
        );
      });
      await t.step("a peer not in FCGI_WEB_SERVER_ADDRS: refused", async () => {
        // spawn-fcgi gives the gateways /dev/null for stdout and stderr:
        // the refusal is logged there.
        assert.equal(await fromStranger(port), 0);
        const reply = await fcgiFront({ hostname: "127.0.0.1", port })
          .request("/app/after");
        assert.equal(decoder.decode(reply.body), "Hello /after\n");
      });
    } finally {
      await terminate(pids);
      await exited(spawner);
      await Deno.remove(dir, { recursive: true });
    }
  },
});

// --- systemd socket activation ----------------------------------------------

/** `Key=value` settings of a unit file (continuation lines joined). */
function unitSettings(text: string): Map<string, string> {
  const settings = new Map<string, string>();
  for (const line of text.replaceAll("\\\n", " ").split("\n")) {
    const match = /^([A-Za-z]+)=(.*)$/.exec(line.trim());
    if (match) settings.set(match[1], match[2].trim());
  }
  return settings;
}

/** The `systemd-socket-activate` arguments that run `my-app-activated.service` as
 * `my-app-activated.socket` would start it, listening on `listen`. */
async function activationArgs(
  listen: string,
  extraEnv: string[] = [],
): Promise<string[]> {
  const socket = unitSettings(deployFile("my-app-activated.socket", []));
  const service = unitSettings(deployFile("my-app-activated.service", [
    ...PATHS,
    ["/var/cache/my-app", await denoDir()],
  ]));
  assert.equal(socket.get("ListenStream"), "/run/my-app.sock");
  const env = service.get("Environment")!.split(/\s+/);
  return [
    "-l",
    listen,
    ...[...env, ...extraEnv].flatMap((pair) => ["-E", pair]),
    "--",
    ...service.get("ExecStart")!.split(/\s+/),
  ];
}

Deno.test({
  name:
    "systemd-socket-activate passes a socket on fd 3 (docs/deploy/my-app-activated.socket, my-app-activated.service)",
  ignore: SOCKET_ACTIVATE === null && !REQUIRE_SPAWNERS,
  async fn(t) {
    assert.ok(
      SOCKET_ACTIVATE,
      "systemd-socket-activate is required (WSGIREF_REQUIRE_SPAWNERS=1)",
    );
    const dir = await Deno.makeTempDir({ prefix: "wsgiref-activate-" });
    try {
      await t.step({
        name: "the units pass systemd-analyze verify",
        ignore: ANALYZE === null,
        fn: async () => {
          // systemd checks that ExecStart's program exists: this Deno.
          const units = await Deno.makeTempDir({ dir, prefix: "units-" });
          await Deno.writeTextFile(
            `${units}/my-app-activated.socket`,
            deployFile("my-app-activated.socket", []),
          );
          await Deno.writeTextFile(
            `${units}/my-app-activated.service`,
            deployFile("my-app-activated.service", [
              ["/usr/local/bin/deno", Deno.execPath()],
            ]),
          );
          const { code, stdout, stderr } = await new Deno.Command(ANALYZE!, {
            args: [
              "verify",
              `${units}/my-app-activated.socket`,
              `${units}/my-app-activated.service`,
            ],
            stdout: "piped",
            stderr: "piped",
          }).output();
          // An unknown key or section is only a warning: none may appear.
          const output = decoder.decode(stdout) + decoder.decode(stderr);
          assert.equal(code, 0, output);
          assert.equal(output, "");
        },
      });

      await t.step("on the unit's Unix socket", async (t) => {
        const path = `${dir}/my-app.sock`;
        const gateway = start(SOCKET_ACTIVATE, await activationArgs(path));
        try {
          await waitFor(() => {
            try {
              return Deno.lstatSync(path).isSocket === true;
            } catch {
              return false;
            }
          }, "the socket");
          // The first connection starts the gateway.
          await throughGateway(t, fcgiFront({ path }));
          assert.match(
            gateway.output(),
            /Serving FastCGI on fd 3 \(a Unix socket\) \.\.\./,
          );
        } finally {
          gateway.child.kill("SIGTERM");
          const status = await exited(gateway);
          assert.equal(status.code, 0, gateway.output());
        }
      });

      await t.step(
        "on TCP: a stranger refused; SIGTERM lets a request in progress finish, then exit 0",
        async () => {
          const port = freePort();
          const gateway = start(
            SOCKET_ACTIVATE,
            await activationArgs(`127.0.0.1:${port}`, [
              "FCGI_WEB_SERVER_ADDRS=127.0.0.1",
            ]),
          );
          let stopped = false;
          try {
            const front = fcgiFront({ hostname: "127.0.0.1", port });
            await waitFor(
              () => /Listening on/.test(gateway.output()),
              "the socket",
            );
            assert.equal((await front.request("/app/hi")).status, 200);
            assert.equal(await fromStranger(port), 0);
            await waitFor(
              () =>
                gateway.output().includes(
                  'Refused the connection: "127.0.0.2" is not in FCGI_WEB_SERVER_ADDRS',
                ),
              "the refusal in the log",
            );
            const slow = front.request("/app/pid?ms=600");
            await new Promise((resolve) => setTimeout(resolve, 200));
            gateway.child.kill("SIGTERM");
            stopped = true;
            const reply = await slow;
            assert.equal(reply.status, 200);
            assert.deepEqual(json(reply), { pid: gateway.child.pid });
            const status = await exited(gateway);
            assert.equal(status.code, 0, gateway.output());
          } finally {
            if (!stopped) gateway.child.kill("SIGTERM");
            await exited(gateway);
          }
        },
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

// --- What fd 0 is -------------------------------------------------------------

Deno.test({
  name:
    "inheritedSocket() takes fd 0 only when it is a listening socket, with and without --allow-all",
  ignore: SOCKET_ACTIVATE === null && !REQUIRE_SPAWNERS,
  async fn(t) {
    assert.ok(
      SOCKET_ACTIVATE,
      "systemd-socket-activate is required (WSGIREF_REQUIRE_SPAWNERS=1)",
    );
    const dir = await Deno.makeTempDir({ prefix: "wsgiref-fd0-" });
    // What the program's choice comes to, without binding port 9000.
    const probe = `${dir}/probe.ts`;
    await Deno.writeTextFile(
      probe,
      `import { inheritedSocket } from ${
        JSON.stringify(new URL("../_fastcgi_listen.ts", import.meta.url).href)
      };\n// stderr: an inetd-style socket is stdout too.\nconsole.error("inherited:", inheritedSocket());\n// A listener found stays open: end here.\nDeno.exit(0);\n`,
    );
    const deno = Deno.execPath();
    /** Run the probe with `permissions`, fd 0 set up by `wrap`. */
    const run = async (
      wrap: (command: string[]) => [string, string[]],
      permissions: string[],
      connect?: () => Promise<void>,
    ): Promise<string> => {
      const [command, args] = wrap([deno, "run", ...permissions, probe]);
      const started = start(command, args);
      await connect?.();
      // systemd-socket-activate --accept stays, starting a probe for each
      // connection: stopped once the probe has spoken.
      if (command === SOCKET_ACTIVATE && args.includes("--accept")) {
        await waitFor(
          () => started.output().includes("inherited:"),
          "the probe's answer",
        );
        started.child.kill("SIGTERM");
      }
      await exited(started);
      const match = /inherited: (\S+)/.exec(started.output());
      assert.ok(match, started.output());
      return match[1];
    };
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const accepting = (async () => {
      for await (const conn of listener) {
        // Held until the probe is done with it.
        setTimeout(() => conn.close(), 3000);
      }
    })();
    const connectTo = (where: string) => async () => {
      // systemd-socket-activate starts the program on the first connection.
      let conn: Deno.Conn | null = null;
      for (let attempt = 0; conn === null && attempt < 100; attempt++) {
        try {
          conn = where.startsWith("/")
            ? await Deno.connect({ transport: "unix", path: where })
            : await Deno.connect({
              hostname: "127.0.0.1",
              port: Number(where.split(":")[1]),
            });
        } catch {
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
      }
      assert.ok(conn, `no connection to ${where}`);
      setTimeout(() => conn!.close(), 2000);
    };
    const sh =
      (redirect: string) => (command: string[]): [string, string[]] => [
        "bash",
        ["-c", `exec "$@" ${redirect}`, "bash", ...command],
      ];
    const activated = (where: string, extra: string[] = []) =>
    (
      command: string[],
    ): [string, string[]] => [
      SOCKET_ACTIVATE!,
      [
        ...extra,
        "-l",
        where,
        "--",
        "bash",
        "-c",
        'exec "$@" 0<&3 3<&-',
        "bash",
        ...command,
      ],
    ];
    const cases: [
      string,
      (command: string[]) => [string, string[]],
      string,
      boolean,
      (() => Promise<void>) | undefined,
    ][] = [
      ["/dev/null", sh("</dev/null"), "null", true, undefined],
      ["a pipe", sh("< <(echo)"), "null", true, undefined],
      ["a file", sh(`<${probe}`), "null", true, undefined],
      [
        "a terminal",
        (command) => ["script", ["-qec", command.join(" "), "/dev/null"]],
        "null",
        true,
        undefined,
      ],
      [
        "a connected TCP socket",
        sh(`0<>/dev/tcp/127.0.0.1/${listener.addr.port}`),
        "null",
        true,
        undefined,
      ],
      [
        "a connected Unix socket (inetd style)",
        (command) => [SOCKET_ACTIVATE!, [
          "--accept",
          "--inetd",
          "-l",
          `${dir}/inetd.sock`,
          "--",
          ...command,
        ]],
        "null",
        // Without /proc, a connected Unix socket passes for a listening one.
        false,
        connectTo(`${dir}/inetd.sock`),
      ],
    ];
    const tcpPort = freePort();
    cases.push(
      [
        "a listening TCP socket",
        activated(`127.0.0.1:${tcpPort}`),
        "0",
        true,
        connectTo(`127.0.0.1:${tcpPort}`),
      ],
      [
        "a listening Unix socket",
        activated(`${dir}/listening.sock`),
        "0",
        true,
        connectTo(`${dir}/listening.sock`),
      ],
    );
    try {
      for (const [name, wrap, expected, alsoLimited, connect] of cases) {
        await t.step(`${name}, --allow-all`, async () => {
          assert.equal(await run(wrap, ["-A"], connect), expected);
        });
        if (alsoLimited) {
          await t.step(`${name}, no permissions`, async () => {
            assert.equal(await run(wrap, [], connect), expected);
          });
        }
      }
      const activation = `127.0.0.1:${freePort()}`;
      await t.step("systemd's fd 3 (LISTEN_PID, LISTEN_FDS)", async () => {
        const wrap = (command: string[]): [string, string[]] => [
          SOCKET_ACTIVATE!,
          ["-l", activation, "--", ...command],
        ];
        assert.equal(
          await run(wrap, ["--allow-env"], connectTo(activation)),
          "3",
        );
      });
      await t.step("LISTEN_PID of another process: none", async () => {
        const started = start(deno, ["run", "--allow-env", probe], {
          LISTEN_PID: "1",
          LISTEN_FDS: "1",
        });
        await exited(started);
        assert.match(started.output(), /inherited: null/);
      });
    } finally {
      listener.close();
      await accepting;
      await Deno.remove(dir, { recursive: true });
    }
  },
});

// --- lighttpd bin-path -----------------------------------------------------------

Deno.test({
  name:
    "lighttpd starts max-procs gateways with bin-path (docs/deploy/lighttpd-bin-path.conf)",
  ignore: LIGHTTPD === null && !REQUIRE_LIGHTTPD,
  async fn(t) {
    assert.ok(LIGHTTPD, "lighttpd is required (WSGIREF_REQUIRE_LIGHTTPD=1)");
    const port = freePortPair();
    const config = deployFile("lighttpd-bin-path.conf", [
      ...PATHS,
      ["/var/cache/lighttpd/deno", await denoDir()],
      ['"port" => 9000', `"port" => ${port}`],
    ]);
    const host = await startLighttpd(LIGHTTPD, { extraConfig: () => config });
    let pids: number[] = [];
    try {
      const front = httpFront(host.base, host.errorLog);
      pids = [...await throughGateway(t, front)];
      await t.step("max-procs 2: two gateways answer", async () => {
        pids = [...await gatewaysSeen(front, new Set(pids))];
        assert.equal(pids.length, 2, `pids ${pids}`);
      });
      await t.step("a peer not in FCGI_WEB_SERVER_ADDRS: refused", async () => {
        for (const gatewayPort of [port, port + 1]) {
          assert.equal(await fromStranger(gatewayPort), 0);
        }
        await eventually(
          async () =>
            /Refused the connection: "127\.0\.0\.2" is not in FCGI_WEB_SERVER_ADDRS/
              .test(await host.errorLog()),
          "the refusal in the log",
        );
      });
      await t.step(
        "a gateway stopped with SIGTERM finishes its request; lighttpd starts another",
        async () => {
          const slow = Array.from(
            { length: 4 },
            () => front.request("/app/pid?ms=700"),
          );
          await new Promise((resolve) => setTimeout(resolve, 250));
          const [victim] = pids;
          Deno.kill(victim, "SIGTERM");
          const replies = await Promise.all(slow);
          assert.deepEqual(replies.map((reply) => reply.status), [
            200,
            200,
            200,
            200,
          ]);
          assert.ok(
            replies.some((reply) => json(reply).pid === victim),
            "the stopped gateway answered its request",
          );
          await waitFor(() => !running(victim), "the gateway to exit");
          // Requests go on; a new gateway takes the stopped one's place.
          const seen = await gatewaysSeen(front, new Set(), 100);
          assert.equal(seen.size, 2, `pids ${[...seen]}`);
          assert.ok(!seen.has(victim));
          pids = [...seen];
        },
      );
    } finally {
      const log = await host.stop();
      assert.match(log, /server stopped/);
      // lighttpd stopped its gateways with it.
      await waitFor(() => !pids.some(running), "the gateways to exit");
    }
  },
});

// --- Apache mod_fcgid --------------------------------------------------------------

Deno.test({
  name:
    "Apache mod_fcgid starts gateways as its own user (docs/deploy/apache-fcgid.conf)",
  ignore: !FCGID && !REQUIRE_APACHE,
  async fn(t) {
    assert.ok(
      APACHE && FCGID,
      "Apache and mod_fcgid are required (WSGIREF_REQUIRE_APACHE=1)",
    );
    let shared = "";
    const host = await startApache(APACHE, {
      modules: ["fcgid"],
      config: (dir) => {
        shared = dir;
        // Apache's user writes the gateway's Deno cache; mod_fcgid makes
        // its sockets in the other.
        for (const sub of ["deno", "fcgid"]) {
          Deno.mkdirSync(`${dir}/${sub}`);
          Deno.chmodSync(`${dir}/${sub}`, 0o777);
        }
        return `
# Test-only: mod_fcgid's sockets and process table, and its log lines.
FcgidIPCDir ${dir}/fcgid
FcgidProcessTableFile ${dir}/fcgid/shm
LogLevel warn fcgid:info
${
          deployFile("apache-fcgid.conf", [
            ...PATHS,
            ["/var/cache/my-app/deno", `${dir}/deno`],
          ])
        }`;
      },
    });
    let pids: number[] = [];
    try {
      assert.ok(shared !== "");
      const front = httpFront(host.base, host.errorLog);
      pids = [...await throughGateway(t, front)];
      await t.step("each gateway runs as Apache's user", () => {
        for (const pid of pids) {
          const status = Deno.readTextFileSync(`/proc/${pid}/status`);
          const uid = Number(/^Uid:\s+(\d+)/m.exec(status)![1]);
          if (host.user !== null) assert.notEqual(uid, 0);
        }
      });
    } finally {
      const log = await host.stop();
      await waitFor(() => !pids.some(running), "the gateways to exit");
      // mod_fcgid stops its gateways with SIGTERM: each exits 0.
      assert.match(
        log,
        /mod_fcgid: process .*\(\d+\) exit\(.*\), terminated by calling exit\(\), return code: 0/,
      );
      assert.doesNotMatch(log, /return code: [1-9]|get unexpected signal/);
    }
  },
});

// --- Scale-out: nginx over two gateways ----------------------------------------

/** A gateway in program mode on a free port, and that port. */
async function startGateway(): Promise<{ gateway: Started; port: number }> {
  const gateway = start(Deno.execPath(), [
    "run",
    "-A",
    `${ROOT}/fastcgi.ts`,
    APP,
    "--host",
    "127.0.0.1",
    "--port",
    "0",
    "--quiet",
  ]);
  let port = 0;
  await waitFor(
    () => {
      const match = /Serving FastCGI on 127\.0\.0\.1 port (\d+)/.exec(
        gateway.output(),
      );
      if (match) port = Number(match[1]);
      return match !== null;
    },
    "the gateway's banner",
    10_000,
  );
  return { gateway, port };
}

Deno.test({
  name:
    "nginx over two gateways loses no request when one is killed under load (docs/deploy/nginx-upstream.conf)",
  ignore: NGINX === null && !REQUIRE_NGINX,
  async fn() {
    assert.ok(NGINX, "nginx is required (WSGIREF_REQUIRE_NGINX=1)");
    const [one, two] = [await startGateway(), await startGateway()];
    const port = freePort();
    const params = "/etc/nginx/fastcgi_params";
    const dir = await Deno.makeTempDir({ prefix: "wsgiref-upstream-" });
    let paramsFile = params;
    try {
      Deno.statSync(params);
    } catch {
      // nginx built elsewhere: Debian's list of parameters, as the nginx
      // fixture has it.
      const { FASTCGI_PARAMS } = await import("./fixtures/nginx.ts");
      paramsFile = `${dir}/fastcgi_params`;
      await Deno.writeTextFile(paramsFile, FASTCGI_PARAMS);
    }
    const http = deployFile("nginx-upstream.conf", [
      ["127.0.0.1:9001", `127.0.0.1:${one.port}`],
      ["127.0.0.1:9002", `127.0.0.1:${two.port}`],
      ["listen 80;", `listen 127.0.0.1:${port};`],
      [params, paramsFile],
    ]);
    const host = await startNginx(NGINX, { http, server: "" });
    let killed = false;
    try {
      const base = `http://127.0.0.1:${port}`;
      // Bounded load: 4 clients, 600 requests; the first gateway is killed
      // after 150.
      const total = 600;
      let sent = 0;
      const failures: string[] = [];
      const before = new Set<number>();
      const after = new Set<number>();
      const client = async () => {
        while (sent < total) {
          const n = ++sent;
          if (n === 150) {
            one.gateway.child.kill("SIGKILL");
            killed = true;
          }
          const wasKilled = killed;
          try {
            const response = await fetch(`${base}/app/pid?ms=2`);
            const text = await response.text();
            if (response.status !== 200) {
              failures.push(`${n}: ${response.status} ${text.slice(0, 80)}`);
              continue;
            }
            const { pid } = JSON.parse(text);
            (wasKilled ? after : before).add(pid);
          } catch (error) {
            failures.push(`${n}: ${error}`);
          }
        }
      };
      await Promise.all([client(), client(), client(), client()]);
      assert.deepEqual(failures, []);
      assert.deepEqual(
        [...before].sort(),
        [one.gateway.child.pid, two.gateway.child.pid].sort(),
        "both gateways served before the kill",
      );
      // Requests sent at the moment of the kill may still have reached the
      // first gateway; those after went to the second.
      assert.ok(after.has(two.gateway.child.pid));
      const status = await exited(one.gateway);
      assert.equal(status.signal, "SIGKILL");
    } finally {
      if (!killed) one.gateway.child.kill("SIGTERM");
      await exited(one.gateway);
      const log = await host.stop();
      assert.doesNotMatch(log, /\[(alert|emerg)\]/);
      two.gateway.child.kill("SIGTERM");
      assert.equal((await exited(two.gateway)).code, 0);
      await Deno.remove(dir, { recursive: true });
    }
  },
});
