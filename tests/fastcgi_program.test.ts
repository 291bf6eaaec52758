/**
 * `deno run -A fastcgi.ts module[:name] ...`: the gateway as a program,
 * started with `Deno.Command` and stopped with a signal, as systemd would.
 * Its memory is read from `/proc/<pid>/status` while it streams 1 GiB.
 */

import assert from "node:assert/strict";
import {
  decodePairs,
  encodePairs,
  FCGI,
  FcgiClient,
  getParams,
  parseCgi,
  record,
  requestRecords,
} from "./fixtures/fcgi_client.ts";
import { exited } from "./fixtures/child.ts";

const FASTCGI = new URL("../fastcgi.ts", import.meta.url).pathname;
const APP = new URL("./fixtures/fastcgi_app.ts", import.meta.url).pathname;
const GIB = 1024 ** 3;
const MIB = 1024 ** 2;
const decoder = new TextDecoder();

/** A gateway program and its output so far. */
interface Program {
  child: Deno.ChildProcess;
  stdout: () => string;
  stderr: () => string;
  /** The first line on stdout. */
  banner: Promise<string>;
  /** Exit code and what it wrote, once it has exited. */
  status: Promise<Deno.CommandStatus>;
}

function start(args: string[]): Program {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--no-lock", FASTCGI, ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  let out = "";
  let err = "";
  let gotLine!: (line: string) => void;
  const banner = new Promise<string>((resolve) => gotLine = resolve);
  const reading = (async () => {
    for await (
      const text of child.stdout.pipeThrough(new TextDecoderStream())
    ) {
      out += text;
      if (out.includes("\n")) gotLine(out.slice(0, out.indexOf("\n")));
    }
    gotLine(out);
  })();
  const readingErr = (async () => {
    for await (
      const text of child.stderr.pipeThrough(new TextDecoderStream())
    ) {
      err += text;
    }
  })();
  const status = (async () => {
    const status = await child.status;
    await reading;
    await readingErr;
    return status;
  })();
  return { child, stdout: () => out, stderr: () => err, banner, status };
}

/** The peak resident memory of a process, in bytes (VmHWM). */
function peakMemory(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  return Number(/^VmHWM:\s+(\d+) kB$/m.exec(status)![1]) * 1024;
}

Deno.test("deno run -A fastcgi.ts streams 1 GiB in bounded memory and stops on SIGTERM", async () => {
  const program = start([
    `${APP}:app`,
    "--host",
    "127.0.0.1",
    "--port",
    "0",
    "--quiet",
  ]);
  try {
    const banner = await program.banner;
    const match = /^Serving FastCGI on 127\.0\.0\.1 port (\d+) \.\.\.$/.exec(
      banner,
    );
    assert.ok(match, `banner: ${banner} ${program.stderr()}`);
    const address = { hostname: "127.0.0.1", port: Number(match[1]) };

    const client = await FcgiClient.connect(address);
    try {
      const hello = await client.request(getParams("/hello"), {
        keepConn: true,
      });
      assert.equal(
        decoder.decode(parseCgi(hello.stdout).body),
        "Hello /hello\n",
      );
      const before = peakMemory(program.child.pid);

      await client.send(
        requestRecords(getParams(`/stream?bytes=${GIB}`), {
          id: 2,
          keepConn: true,
        }),
      );
      let body = 0;
      let head = true;
      for (;;) {
        const record = (await client.nextView())!;
        if (record.type === FCGI.END_REQUEST) break;
        if (record.type !== FCGI.STDOUT) continue;
        if (head && record.content.length > 0) {
          // The first record: Status and headers, then body bytes.
          const text = decoder.decode(record.content.subarray(0, 200));
          assert.match(text, /^Status: 200 OK\r\n/);
          body += record.content.length -
            (new TextDecoder("latin1").decode(record.content).indexOf(
              "\r\n\r\n",
            ) + 4);
          head = false;
        } else body += record.content.length;
      }
      assert.equal(body, GIB);
      const growth = peakMemory(program.child.pid) - before;
      assert.ok(growth < 32 * MIB, `peak memory grew by ${growth} bytes`);
    } finally {
      client.close();
    }

    program.child.kill("SIGTERM");
    const status = await exited(program);
    assert.equal(status.code, 0, program.stderr());
    assert.equal(program.stderr(), "");
  } finally {
    try {
      program.child.kill("SIGKILL");
    } catch {
      // Exited.
    }
    await program.status;
  }
});

Deno.test("deno run -A fastcgi.ts serves a Unix socket, logs, and a second signal stops it at once", async () => {
  const dir = await Deno.makeTempDir({ prefix: "wsgiref-fcgi-program-" });
  const path = `${dir}/gateway.sock`;
  const program = start([APP, "--socket", path]);
  try {
    assert.equal(await program.banner, `Serving FastCGI on unix:${path} ...`);
    const client = await FcgiClient.connect({ path });
    const response = await client.request(getParams("/x"), { keepConn: true });
    assert.equal(decoder.decode(parseCgi(response.stdout).body), "Hello /x\n");
    // A response that never ends: the first signal waits for it...
    await client.send(
      requestRecords(getParams("/hang"), { id: 2, keepConn: true }),
    );
    assert.equal((await client.nextView())!.type, FCGI.STDOUT);
    program.child.kill("SIGINT");
    const early = await Promise.race([
      program.status.then(() => "exited"),
      new Promise((resolve) => setTimeout(() => resolve("running"), 300)),
    ]);
    assert.equal(early, "running");
    // It no longer listens.
    await assert.rejects(FcgiClient.connect({ path }));
    // ...the second does not.
    program.child.kill("SIGTERM");
    const status = await exited(program);
    assert.equal(status.code, 130);
    client.close();
    assert.match(
      program.stderr(),
      /^127\.0\.0\.1 - - \[\d\d\/\w{3}\/\d{4} \d\d:\d\d:\d\d\] "GET \/x HTTP\/1\.1" 200 9\n$/,
    );
  } finally {
    try {
      program.child.kill("SIGKILL");
    } catch {
      // Exited.
    }
    await program.status;
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("deno run -A fastcgi.ts removes its socket on SIGTERM", async () => {
  const dir = await Deno.makeTempDir({ prefix: "wsgiref-fcgi-program-" });
  const path = `${dir}/gateway.sock`;
  const program = start([`${APP}:app`, "--socket", path, "--quiet"]);
  try {
    await program.banner;
    program.child.kill("SIGTERM");
    assert.equal((await exited(program)).code, 0);
    assert.deepEqual([...Deno.readDirSync(dir)], []);
  } finally {
    await program.status;
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("deno run -A fastcgi.ts --socket-mode sets the socket's file mode", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "wsgiref-fcgi-program-" });
  try {
    for (const [flag, mode] of [["0660", 0o660], ["600", 0o600]] as const) {
      await t.step(flag, async () => {
        const path = `${dir}/gateway.sock`;
        const program = start([APP, "--socket", path, "--socket-mode", flag]);
        try {
          assert.equal(
            await program.banner,
            `Serving FastCGI on unix:${path} ...`,
          );
          const info = Deno.statSync(path);
          assert.equal(info.mode! & 0o777, mode);
          // The group the web server needs is the gateway's own (systemd's
          // Group=), as the socket is made by the gateway.
          assert.equal(info.gid, Deno.gid());
          const client = await FcgiClient.connect({ path });
          const response = await client.request(getParams("/m"));
          client.close();
          assert.equal(
            decoder.decode(parseCgi(response.stdout).body),
            "Hello /m\n",
          );
          program.child.kill("SIGTERM");
          assert.equal((await exited(program)).code, 0);
        } finally {
          try {
            program.child.kill("SIGKILL");
          } catch {
            // Exited.
          }
          await program.status;
        }
      });
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("deno run -A fastcgi.ts refuses bad command lines", async (t) => {
  for (
    const [args, code, message] of [
      [
        [],
        2,
        /^No application module given\nUsage: deno run -A fastcgi\.ts module\[:name\]/,
      ],
      [[APP, "--port", "x"], 2, /^Not a port: "x"\nUsage: /],
      [[APP, "--bogus"], 2, /^Unexpected argument "--bogus"\nUsage: /],
      [
        [APP, "--socket", "/tmp/x.sock", "--socket-mode", "0999"],
        2,
        /^Not a file mode: "0999"\nUsage: /,
      ],
      [
        [APP, "--socket", "/tmp/x.sock", "--socket-mode", "rw"],
        2,
        /^Not a file mode: "rw"\nUsage: /,
      ],
      [
        [APP, "--socket-mode", "0660"],
        2,
        /^--socket-mode goes with --socket\nUsage: /,
      ],
      [[APP, "--port"], 2, /^Missing a value after --port\nUsage: /],
      [
        [APP, "--socket", "/tmp/x.sock", "--port", "9000"],
        2,
        /^Give --socket or --port, not both\nUsage: /,
      ],
      [
        [APP, "--idle-timeout", "soon"],
        2,
        /^Not a number of seconds: "soon"\nUsage: /,
      ],
      [
        [APP, "--read-timeout", "-1"],
        2,
        /^Not a number of seconds: "-1"\nUsage: /,
      ],
      [
        [APP, "--max-requests", "0"],
        2,
        /^Not a positive integer: "0"\nUsage: /,
      ],
      [
        [APP, "--max-requests-per-connection", "1.5"],
        2,
        /^Not a positive integer: "1\.5"\nUsage: /,
      ],
      [
        [APP, "--memory-budget", "64x"],
        2,
        /^Not a number of bytes: "64x"\nUsage: /,
      ],
      [
        [APP, "--disk-budget", "-4g"],
        2,
        /^Not a number of bytes: "-4g"\nUsage: /,
      ],
      [
        [`${APP}:nothing`],
        1,
        /^Cannot load an application from ".*fastcgi_app\.ts:nothing": The module has no application named "nothing"\n$/,
      ],
      [
        ["/nonexistent/app.ts"],
        1,
        /^Cannot load an application from "\/nonexistent\/app\.ts": /,
      ],
    ] as const
  ) {
    await t.step(args.join(" ") || "no arguments", async () => {
      const program = start([...args]);
      const status = await exited(program);
      assert.equal(status.code, code);
      assert.match(program.stderr(), message);
    });
  }
});

Deno.test("deno run -A fastcgi.ts serves an application module that imports fastcgi.ts", async () => {
  const fixture = new URL(
    "./fixtures/fastcgi_imports_runner.ts",
    import.meta.url,
  ).pathname;
  const program = start([fixture, "--host", "127.0.0.1", "--port", "0"]);
  try {
    const banner = await program.banner;
    const match = /port (\d+) \.\.\.$/.exec(banner);
    assert.ok(match, `banner: ${banner} ${program.stderr()}`);
    const client = await FcgiClient.connect({
      hostname: "127.0.0.1",
      port: Number(match[1]),
    });
    try {
      const response = await client.request(getParams("/"));
      assert.equal(
        decoder.decode(parseCgi(response.stdout).body),
        "runner: function",
      );
    } finally {
      client.close();
    }
    program.child.kill("SIGTERM");
    assert.equal((await exited(program)).code, 0, program.stderr());
  } finally {
    try {
      program.child.kill("SIGKILL");
    } catch {
      // Exited.
    }
    await program.status;
  }
});

Deno.test("deno run -A fastcgi.ts applies its limit flags, and a SIGTERM stops within --graceful-timeout", async (t) => {
  const program = start([
    APP,
    "--host",
    "127.0.0.1",
    "--port",
    "0",
    "--quiet",
    "--max-body-size",
    "1k",
    "--max-requests-per-connection",
    "1",
    "--max-connections",
    "3",
    "--idle-timeout",
    "0.3",
    "--graceful-timeout",
    "0.3",
  ]);
  const post = (length: number) => ({
    ...getParams("/echo"),
    REQUEST_METHOD: "POST",
    CONTENT_LENGTH: String(length),
  });
  try {
    const match = /port (\d+) \.\.\.$/.exec(await program.banner);
    assert.ok(match, program.stderr());
    const address = { hostname: "127.0.0.1", port: Number(match[1]) };
    await t.step(
      "GET_VALUES: --max-connections, one request a connection",
      async () => {
        const client = await FcgiClient.connect(address);
        try {
          await client.send(record(
            FCGI.GET_VALUES,
            0,
            encodePairs({ FCGI_MAX_CONNS: "", FCGI_MPXS_CONNS: "" }),
          ));
          assert.deepEqual(decodePairs((await client.next())!.content), [
            ["FCGI_MAX_CONNS", "3"],
            ["FCGI_MPXS_CONNS", "0"],
          ]);
        } finally {
          client.close();
        }
      },
    );
    await t.step(
      "--max-body-size 1k: 1024 bytes taken, 1025 refused",
      async () => {
        for (
          const [length, status] of [[1024, "200 OK"], [
            1025,
            "413 Request Entity Too Large",
          ]] as const
        ) {
          const client = await FcgiClient.connect(address);
          try {
            const response = await client.request(post(length), {
              stdin: new Uint8Array(length),
            });
            assert.equal(parseCgi(response.stdout).status, status);
          } finally {
            client.close();
          }
        }
      },
    );
    await t.step("--idle-timeout 0.3: an idle connection closed", async () => {
      const client = await FcgiClient.connect(address);
      try {
        assert.deepEqual(await client.untilClosed(5000), []);
      } finally {
        client.close();
      }
    });
    await t.step(
      "--graceful-timeout 0.3: a hung request cut, exit 0",
      async () => {
        const client = await FcgiClient.connect(address);
        try {
          await client.send(
            requestRecords(getParams("/hang"), { keepConn: true }),
          );
          assert.equal((await client.nextView())!.type, FCGI.STDOUT);
          program.child.kill("SIGTERM");
          assert.deepEqual(
            (await client.untilClosed(5000)).map((r) => r.type),
            [],
          );
          const status = await exited(program);
          assert.equal(status.code, 0, program.stderr());
          assert.match(
            program.stderr(),
            /Request cut short at shutdown: still running after 300 ms \(gracefulTimeout\) \(request 1\)\n/,
          );
        } finally {
          client.close();
        }
      },
    );
  } finally {
    try {
      program.child.kill("SIGKILL");
    } catch {
      // Exited.
    }
    await program.status;
  }
});
