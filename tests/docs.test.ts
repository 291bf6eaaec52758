/**
 * `README.md` and every page of `docs/`, as a newcomer uses them: each code
 * block is run, type-checked or compared with the file it shows, according
 * to its info string (` ```ts `, ` ```sh project `, ` ```nginx
 * deploy/nginx-fastcgi.conf `, ...; `docs/development.md` lists the kinds).
 * A snippet that stops working, a command whose flags changed, or a host
 * configuration that differs from the file the host tests load fails here.
 *
 * jsr.io is not reachable from the tests: the fresh projects they make use
 * the `deno.json` that `deno add jsr:@wsgi/wsgiref` writes, plus a `links`
 * entry to a copy of this checkout, which Deno then uses in place of the
 * registry. Every specifier stays as the documentation writes it.
 */

import assert from "node:assert/strict";
import {
  blocksWith,
  type FencedBlock,
  fencedBlocks,
  markdownFiles,
  ROOT,
  shellCommands,
} from "./fixtures/markdown.ts";
import {
  bundleCgiExample,
  DEPLOY_DIR,
  pathWithDeno,
  shell,
} from "./fixtures/deploy.ts";
import { FcgiClient, getParams, parseCgi } from "./fixtures/fcgi_client.ts";
import { findBinary, freePort } from "./fixtures/process.ts";

const decoder = new TextDecoder();
const PAGES = markdownFiles();
const BLOCKS = PAGES.flatMap((file) =>
  fencedBlocks(Deno.readTextFileSync(ROOT + file), file)
);
/** Pages other engineers are writing: links to them are allowed until
 * they exist. */
const PENDING_PAGES: string[] = [];
const CONFIG_LANGS = ["nginx", "lighttpd", "apache", "ini"];
const TS_RUNNERS = ["http", "fastcgi", "cgi"];
const SH_PLACES = ["checkout", "project", "bundle", "ignore"];
const FILE_ATTR = /^[\w-]+\.ts$/;
const DEPLOY_ATTR = /^deploy\/([\w.@-]+)$/;
/**
 * What the program of each page's `bundle` block answers when run as a
 * CGI program: the `PATH_INFO` it is given, and its whole output.
 */
const BUNDLED: Record<string, [string, string]> = {
  "docs/cgi.md": [
    "/hi",
    "Status: 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello world!\n",
  ],
  "docs/fetch.md": [
    "/hello/world",
    'Status: 200 OK\r\ncontent-type: application/json\r\ncontent-length: 17\r\n\r\n{"hello":"world"}',
  ],
};
/** Commands of `checkout` blocks that CI runs itself (`.ci/run`). */
const RUN_BY_CI = /^deno task (test|check)$/;
/**
 * What an `ignore` block may hold, and why it is not run here.
 */
const NOT_RUN: [RegExp, string][] = [
  [/^deno add jsr:@wsgi\/wsgiref$/, "needs jsr.io; projects here use links"],
  [
    /^cd \/srv\/my-app && deno install$/,
    "needs jsr.io; projects here use links",
  ],
  [/^npx -y deno@[\d.]+ /, "fetches Deno from npm (.ci/run's form)"],
  [/^deno task (test|check)$/, "CI runs it (.ci/run)"],
  [/^bash \.ci\/run$/, "CI itself"],
  [
    /^deno task (bench|soak)(:\w+)?( --[\w-]+( [\w,.-]+)?)*$/,
    "a benchmark: minutes of load",
  ],
  [
    /^deno run -A bench\/\w+\.ts( --[\w-]+( [\w,.-]+)?)*( \d+)?$/,
    "a benchmark: minutes of load",
  ],
  [
    /^install -d -o www-data -g www-data \/var\/cache\/deno-cgi$/,
    "system directories; the host tests deploy to temporary ones",
  ],
  [
    /^install -m 755 dist\/app\.cgi\.js \/usr\/lib\/cgi-bin\/$/,
    "system directories; the host tests deploy to temporary ones",
  ],
  [
    /^install -d -o www-data -g www-data \/var\/cache\/(my-app|lighttpd)\/deno$/,
    "system directories; the host tests give the gateways temporary ones",
  ],
  [/^install -d \/run\/my-app$/, "a system directory"],
  [/^a2enmod (cgid|proxy_fcgi|fcgid)$/, "changes the system's Apache"],
  [/^a2enconf my-app$/, "changes the system's Apache"],
  [/^lighty-enable-mod my-app$/, "changes the system's lighttpd"],
  [
    /^sh \/srv\/my-app\/spawn-fcgi\.sh$/,
    "starts gateways from the deployment's paths; tests/fastcgi_spawned.test.ts runs the script with them replaced",
  ],
  [
    /^kill \$\(cat \/run\/my-app\/spawn-fcgi\.pid\)$/,
    "stops the gateways the script started",
  ],
  [
    /^useradd --system --no-create-home --shell \/usr\/sbin\/nologin my-app$/,
    "adds a user to the system",
  ],
  [
    /^cp my-app-activated\.socket my-app-activated\.service \/etc\/systemd\/system\/$/,
    "installs units into the system's systemd",
  ],
  [
    /^systemctl (reload (apache2|lighttpd|nginx)|daemon-reload|enable --now (my-app|my-app-activated\.socket))$/,
    "needs a running systemd",
  ],
  [/^journalctl -u my-app -f$/, "needs a running systemd"],
];

const where = (block: FencedBlock) => `${block.file}:${block.line}`;
const fileAttr = (block: FencedBlock) =>
  block.attrs.find((attr) => FILE_ATTR.test(attr)) ?? null;
/** A host configuration, or a script (`sh deploy/spawn-fcgi.sh`): the
 * file of docs/deploy/ it shows, or `null`. */
const deployFile = (block: FencedBlock) =>
  block.attrs.length === 1
    ? DEPLOY_ATTR.exec(block.attrs[0])?.[1] ?? null
    : null;
const isDeployBlock = (block: FencedBlock) =>
  CONFIG_LANGS.includes(block.lang) ||
  (block.lang === "sh" && deployFile(block) !== null);
const projectCommands = BLOCKS.filter((block) =>
  block.lang === "sh" && block.attrs.includes("project")
).flatMap((block) => shellCommands(block.content));

/** The modules of the package, as a user imports them. */
function packageSpecifiers(): string[] {
  const config = JSON.parse(Deno.readTextFileSync(`${ROOT}deno.json`));
  return Object.keys(config.exports).map((key) =>
    key === "." ? config.name : `${config.name}/${key.slice(2)}`
  );
}

/**
 * Copy the files the package publishes into `dir`, as a vendored copy;
 * without its `deno.json` when `bare` (a copy of the modules alone, which
 * only an import map can resolve).
 */
async function copyPackage(dir: string, bare = false): Promise<void> {
  const config = JSON.parse(await Deno.readTextFile(`${ROOT}deno.json`));
  await Deno.mkdir(dir, { recursive: true });
  for (const file of config.publish.include as string[]) {
    if (bare && file === "deno.json") continue;
    // The modules are files at the top; a published folder (docs/, say)
    // is not needed to resolve them.
    if (!(await Deno.stat(ROOT + file)).isFile) continue;
    await Deno.copyFile(ROOT + file, `${dir}/${file}`);
  }
}

/** Run a command with bash, to its end (at most two minutes). */
async function bash(
  command: string,
  cwd: string,
  env: Record<string, string> = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = shell(command, cwd, env).spawn();
  const timer = setTimeout(() => child.kill("SIGKILL"), 120_000);
  const { code, stdout, stderr } = await child.output();
  clearTimeout(timer);
  return {
    code,
    stdout: decoder.decode(stdout),
    stderr: decoder.decode(stderr),
  };
}

/** A fresh project outside the repository, as a newcomer makes one. */
interface Project {
  /** The project directory (`deno.json`, `app.ts`, ...). */
  dir: string;
  /** The scratch directory around it. */
  root: string;
}

/**
 * Make a project as README.md says: its `deno.json` (what `deno add`
 * writes, plus `links` to a copy of this checkout beside it), and every
 * file a block names (`app.ts`, `server.ts`, ...), with the port `8000`
 * of a served file made `0`, so that the program picks a free one.
 */
async function withProject(body: (project: Project) => Promise<void>) {
  const root = await Deno.makeTempDir({ prefix: "wsgiref-docs-" });
  try {
    const dir = `${root}/project`;
    await copyPackage(`${root}/wsgiref`);
    await Deno.mkdir(dir);
    const added = BLOCKS.find((block) =>
      block.lang === "json" && block.file === "README.md" &&
      /"jsr:@wsgi\/wsgiref@/.test(block.content) && !/links/.test(block.content)
    );
    assert.ok(added, "README.md shows the deno.json that deno add writes");
    const config = JSON.parse(added.content);
    await Deno.writeTextFile(
      `${dir}/deno.json`,
      JSON.stringify({ ...config, links: ["../wsgiref"] }, null, 2),
    );
    for (const block of BLOCKS) {
      const name = fileAttr(block);
      if (block.lang !== "ts" || name === null) continue;
      await Deno.writeTextFile(
        `${dir}/${name}`,
        block.content.replace(/\b8000\b/, "0"),
      );
    }
    await body({ dir, root });
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

/** How a served program is reached. */
type Address = { hostname: string; port: number } | { path: string };
/** The test certificate (for `localhost` and `127.0.0.1`) and its key,
 * which a documented `--cert`/`--key` command is given instead of its
 * own. */
const TEST_CERT = `${ROOT}tests/fixtures_server/tls_cert.pem`;
const TEST_KEY = `${ROOT}tests/fixtures_server/tls_key.pem`;

/** Wait (at most 30 s) until a program's output says where it listens. */
async function listening(
  output: () => string,
  exited: () => boolean,
  known: Address | null,
): Promise<Address> {
  for (let i = 0; i < 600; i++) {
    if (known !== null) {
      try {
        const conn = "path" in known
          ? await Deno.connect({ transport: "unix", path: known.path })
          : await Deno.connect(known);
        conn.close();
        return known;
      } catch {
        // Not listening yet.
      }
    } else {
      // The last banner: a program under --watch prints one per start.
      const match = [
        ...output().matchAll(
          /port (\d+) \.\.\.|http:\/\/127\.0\.0\.1:(\d+)\/|on unix:(\S+) \.\.\./g,
        ),
      ].at(-1);
      if (match?.[3]) return { path: match[3] };
      if (match) {
        return { hostname: "127.0.0.1", port: Number(match[1] ?? match[2]) };
      }
    }
    if (exited()) break;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`The program did not start listening: ${output()}`);
}

/**
 * Ask a served program for `/hello`; it must answer 200. Over HTTPS when
 * `caCert` (a PEM file) is given.
 */
async function request(
  kind: "http" | "fastcgi",
  address: Address,
  caCert?: string,
) {
  if (kind === "http" && "path" in address) {
    const conn = await Deno.connect({ transport: "unix", path: address.path });
    let text = "";
    try {
      await conn.write(
        new TextEncoder().encode(
          "GET /hello HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        ),
      );
      const buffer = new Uint8Array(64 * 1024);
      for (let i = 0; i < 10_000; i++) {
        const n = await conn.read(buffer);
        if (n === null) break;
        text += decoder.decode(buffer.subarray(0, n), { stream: true });
      }
    } finally {
      conn.close();
    }
    assert.match(text, /^HTTP\/1\.1 200 OK\r\n/);
    assert.ok(!text.endsWith("\r\n\r\n"), "a body");
    return;
  }
  if (kind === "http") {
    assert.ok("port" in address);
    const scheme = caCert === undefined ? "http" : "https";
    using client = Deno.createHttpClient({
      caCerts: caCert === undefined ? [] : [Deno.readTextFileSync(caCert)],
    });
    const response = await fetch(
      `${scheme}://127.0.0.1:${address.port}/hello`,
      { client },
    );
    assert.equal(response.status, 200);
    assert.notEqual(await response.text(), "");
    return;
  }
  const client = await FcgiClient.connect(address);
  try {
    const response = await client.request(getParams("/hello"));
    assert.match(parseCgi(response.stdout).status, /^200 /);
  } finally {
    client.close();
  }
}

/**
 * Start a program that serves (through bash's `exec`, so that signals
 * reach it), request it, then stop it with Ctrl-C's SIGINT. With
 * `touch`, also change that file and check that the program (under
 * `--watch`) restarts and answers again.
 */
async function serveOnce(
  command: string,
  cwd: string,
  kind: "http" | "fastcgi",
  options: {
    known?: Address;
    touch?: string;
    env?: Record<string, string>;
    caCert?: string;
  } = {},
): Promise<{ code: number; output: string }> {
  const child = shell(`exec ${command}`, cwd, options.env).spawn();
  let output = "";
  let exited = false;
  const reading = Promise.all(
    [child.stdout, child.stderr].map(async (stream) => {
      for await (const text of stream.pipeThrough(new TextDecoderStream())) {
        output += text;
      }
    }),
  );
  const status = child.status.then((status) => {
    exited = true;
    return status;
  });
  try {
    const address = await listening(
      () => output,
      () => exited,
      options.known ?? null,
    );
    await request(kind, address, options.caCert);
    if (options.touch) {
      const banners = () => output.split("Serving").length;
      const before = banners();
      await Deno.writeTextFile(`${cwd}/${options.touch}`, "\n", {
        append: true,
      });
      for (let i = 0; i < 400 && banners() === before; i++) {
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
      assert.ok(banners() > before, `no restart after a change: ${output}`);
      await request(
        kind,
        await listening(() => output, () => exited, null),
        options.caCert,
      );
    }
  } finally {
    if (!exited) child.kill("SIGINT");
    const timer = setTimeout(() => {
      if (!exited) child.kill("SIGKILL");
    }, 10_000);
    await status;
    clearTimeout(timer);
    await reading;
  }
  return { code: (await status).code, output };
}

/**
 * A documented command that serves, made to serve on 127.0.0.1 and a free
 * port: a port it names becomes `0` (or a free one for `deno serve`, which
 * does not say which it took), a socket path a temporary one, a
 * certificate and key the test's own (`caCert`: then it is asked over
 * HTTPS); a command that leaves the port to its default is given one.
 */
function servingCommand(
  command: string,
  tmp: string,
): {
  command: string;
  kind: "http" | "fastcgi";
  known?: Address;
  caCert?: string;
} | null {
  if (/^deno serve\b/.test(command)) {
    const port = freePort();
    assert.match(command, /--host 127\.0\.0\.1 --port \d+/);
    return {
      command: command.replace(/--port \d+/, `--port ${port}`),
      kind: "http",
      known: { hostname: "127.0.0.1", port },
    };
  }
  const program =
    /^deno run .*?(\S*(simple_server|fastcgi)\S*|examples\/\w+\.ts|server\.ts)/
      .exec(command);
  if (program === null) return null;
  const kind = program[2] === "fastcgi" ? "fastcgi" : "http";
  let rewritten = command;
  if (/--port \d+/.test(rewritten)) {
    rewritten = rewritten.replace(/--port \d+/, "--port 0");
  } else if (/--socket \S+/.test(rewritten)) {
    rewritten = rewritten.replace(/--socket \S+/, `--socket ${tmp}/app.sock`);
  } else if (program[2]) {
    rewritten += " --port 0";
  } else if (/examples\/(hello|hono)\.ts$/.test(rewritten)) {
    rewritten += " 0"; // its port argument
  }
  if (
    program[2] === "simple_server" && !/--(host|socket) /.test(rewritten)
  ) {
    rewritten += " --host 127.0.0.1";
  }
  if (/--cert \S+/.test(rewritten)) {
    rewritten = rewritten.replace(/--cert \S+/, `--cert ${TEST_CERT}`)
      .replace(/--key \S+/, `--key ${TEST_KEY}`);
    return { command: rewritten, kind, caCert: TEST_CERT };
  }
  return { command: rewritten, kind };
}

/** The application module a `--watch` command serves. */
function watchedModule(command: string): string {
  const module = command.split(" ").find((word) =>
    /^[\w./-]+\.ts$/.test(word) && !/simple_server|fastcgi/.test(word)
  );
  assert.ok(module, `no application module in "${command}"`);
  return module;
}

// ------------------------------------------------------------------ blocks

Deno.test("README.md and docs/: every code block is of a kind this test checks", () => {
  const problems: string[] = [];
  for (const block of BLOCKS) {
    const at = where(block);
    const file = fileAttr(block);
    const others = block.attrs.filter((attr) => attr !== file);
    switch (block.lang) {
      case "ts": {
        const runners = others.filter((attr) => TS_RUNNERS.includes(attr));
        const rest = others.filter((a) =>
          a !== "ignore" && !runners.includes(a)
        );
        if (rest.length > 0) problems.push(`${at}: unknown ${rest.join(" ")}`);
        if (!others.includes("ignore")) break;
        if (runners.length + (file ? 1 : 0) !== 1) {
          problems.push(
            `${at}: a ts ignore block needs one of ${
              TS_RUNNERS.join(", ")
            } or a file name`,
          );
        }
        if (file && !projectCommands.some((c) => c.includes(file))) {
          problems.push(`${at}: no sh project command runs ${file}`);
        }
        break;
      }
      case "sh":
        // A script of docs/deploy/ (spawn-fcgi.sh) is checked as the host
        // configurations are: its host test runs it.
        if (deployFile(block) !== null) break;
        if (block.attrs.length !== 1 || !SH_PLACES.includes(block.attrs[0])) {
          problems.push(
            `${at}: sh needs one of ${SH_PLACES.join(", ")} or deploy/<file>`,
          );
        }
        break;
      case "json":
        if (block.attrs.join(" ") !== "deno.json") {
          problems.push(`${at}: json blocks are deno.json files`);
        }
        break;
      default: {
        if (!CONFIG_LANGS.includes(block.lang)) {
          problems.push(`${at}: no check for "${block.lang}" blocks`);
          break;
        }
        if (deployFile(block) === null) {
          problems.push(`${at}: name the file of docs/deploy/ it shows`);
        }
      }
    }
  }
  assert.deepEqual(problems, []);
});

Deno.test("README.md and docs/: the ts blocks run as written (deno test --doc)", async () => {
  const expected =
    BLOCKS.filter((block) =>
      block.lang === "ts" && !block.attrs.includes("ignore")
    ).length;
  const { code, stdout, stderr } = await bash(
    `deno test --allow-all --doc ${PAGES.join(" ")}`,
    ROOT,
  );
  assert.equal(code, 0, stdout + stderr);
  assert.match(
    stdout,
    new RegExp(`^ok \\| ${expected} passed \\| 0 failed`, "m"),
  );
});

Deno.test("README.md and docs/: the ts ignore blocks type-check in a fresh project and run", async (t) => {
  await withProject(async (project) => {
    const ignored = BLOCKS.filter((block) =>
      block.lang === "ts" && block.attrs.includes("ignore")
    );
    const files: string[] = [];
    for (const block of ignored) {
      const name = fileAttr(block) ??
        `${block.file.replaceAll(/\W/g, "_")}_${block.line}.ts`;
      if (!fileAttr(block)) {
        await Deno.writeTextFile(`${project.dir}/${name}`, block.content);
      }
      files.push(name);
    }
    await t.step("deno check", async () => {
      const { code, stderr } = await bash(
        `deno check ${files.join(" ")}`,
        project.dir,
      );
      assert.equal(code, 0, stderr);
    });
    for (const [i, block] of ignored.entries()) {
      const kind = block.attrs.find((attr) => TS_RUNNERS.includes(attr));
      if (kind === undefined) continue;
      await t.step(`${where(block)} (${kind})`, async () => {
        if (kind === "cgi") {
          const program = `${project.dir}/${files[i]}`;
          await Deno.chmod(program, 0o755);
          const { code, stdout, stderr } = await bash(
            `./${files[i]}`,
            project.dir,
            {
              REQUEST_METHOD: "GET",
              PATH_INFO: "/hello",
              SERVER_NAME: "localhost",
              SERVER_PORT: "80",
              SERVER_PROTOCOL: "HTTP/1.1",
            },
          );
          assert.equal(code, 0, stderr);
          assert.match(stdout, /^Status: 200 OK\r\n/);
          return;
        }
        const port = freePort();
        const source = block.content;
        const literal = kind === "http" ? /\b8000\b/ : /\b9000\b/;
        assert.match(source, literal, "the port the block serves on");
        await Deno.writeTextFile(
          `${project.dir}/${files[i]}`,
          source.replace(literal, String(port)),
        );
        await serveOnce(
          `deno run -A ${files[i]}`,
          project.dir,
          kind as "http" | "fastcgi",
          {
            known: { hostname: "127.0.0.1", port },
          },
        );
      });
    }
  });
});

Deno.test("README.md and docs/: the sh commands run as written", async (t) => {
  const ciRun = await Deno.readTextFile(`${ROOT}.ci/run`);
  await withProject(async (project) => {
    const shBlocks = BLOCKS.filter((block) =>
      block.lang === "sh" && deployFile(block) === null
    );
    for (const block of shBlocks) {
      const place = block.attrs[0];
      await t.step(`${where(block)} (${place})`, async () => {
        // A block that says nothing of where it runs may hold anything
        // (apt-get, useradd): it is not run, and fails here.
        assert.ok(
          block.attrs.length === 1 && SH_PLACES.includes(place),
          `${where(block)}: not run: sh needs one of ${SH_PLACES.join(", ")}`,
        );
        const tmp = await Deno.makeTempDir({
          dir: project.root,
          prefix: "run-",
        });
        if (place === "bundle") {
          // This block's own commands, with dist/ in a temporary directory.
          const expected = BUNDLED[block.file];
          assert.ok(expected, `${where(block)}: add it to BUNDLED`);
          assert.equal(
            blocksWith(block.file, "bundle")[0].line,
            block.line,
            `${where(block)}: one bundle block per page`,
          );
          await Deno.mkdir(`${tmp}/dist`);
          const program = await bundleCgiExample(`${tmp}/dist`, block.file);
          const { code, stdout, stderr } = await bash(program, tmp, {
            GATEWAY_INTERFACE: "CGI/1.1",
            REQUEST_METHOD: "GET",
            PATH_INFO: expected[0],
            SERVER_NAME: "localhost",
            SERVER_PORT: "80",
            SERVER_PROTOCOL: "HTTP/1.1",
          });
          assert.equal(code, 0, stderr);
          assert.equal(stdout, expected[1]);
          return;
        }
        for (const command of shellCommands(block.content)) {
          if (place === "ignore") {
            assert.ok(
              NOT_RUN.some(([pattern]) => pattern.test(command)),
              `${where(block)}: "${command}" is not one this test may skip`,
            );
            continue;
          }
          if (RUN_BY_CI.test(command)) {
            assert.ok(ciRun.includes(command.replace(/^deno /, "")));
            continue;
          }
          const cwd = place === "checkout" ? ROOT : project.dir;
          const serving = servingCommand(command, tmp);
          if (serving !== null) {
            const watched = /--watch\b/.test(command);
            const { code, output } = await serveOnce(
              serving.command,
              cwd,
              serving.kind,
              {
                known: serving.known,
                touch: watched ? watchedModule(command) : undefined,
                caCert: serving.caCert,
              },
            );
            // Our programs stop cleanly on Ctrl-C (a snippet with no
            // signal handler ends with 130, as any program would).
            if (!watched && /simple_server|fastcgi|examples\//.test(command)) {
              assert.equal(code, 0, output);
            }
            continue;
          }
          const { code, stdout, stderr } = await bash(command, cwd);
          assert.equal(code, 0, `${command}: ${stderr}`);
          if (/^REQUEST_METHOD=/.test(command)) {
            assert.match(stdout, /^Status: 200 OK\r\n/);
          }
        }
      });
    }
  });
});

// ---------------------------------------------------------- configurations

Deno.test("README.md and docs/: each host configuration is the file of docs/deploy/ a test loads", async () => {
  const tests = [...Deno.readDirSync(`${ROOT}tests`)]
    .filter((entry) => entry.name.endsWith(".test.ts"))
    .map((entry) => Deno.readTextFileSync(`${ROOT}tests/${entry.name}`))
    .join("\n");
  const problems: string[] = [];
  for (const block of BLOCKS.filter(isDeployBlock)) {
    const name = deployFile(block);
    if (name === null) {
      problems.push(`${where(block)}: name the file of docs/deploy/ it shows`);
      continue;
    }
    const file = await Deno.readTextFile(DEPLOY_DIR + name).catch(() => null);
    if (file === null) problems.push(`${where(block)}: no docs/deploy/${name}`);
    else if (file !== block.content) {
      problems.push(`${where(block)}: differs from docs/deploy/${name}`);
    }
    if (!tests.includes(name)) {
      problems.push(`${where(block)}: no test loads docs/deploy/${name}`);
    }
  }
  assert.deepEqual(problems, []);
});

Deno.test("README.md and docs/: each deno.json resolves every module of the package", async (t) => {
  const specifiers = packageSpecifiers();
  for (const block of BLOCKS.filter((b) => b.lang === "json")) {
    await t.step(where(block), async () => {
      const root = await Deno.makeTempDir({ prefix: "wsgiref-docs-json-" });
      try {
        const project = `${root}/project`;
        await Deno.mkdir(project);
        const config = JSON.parse(block.content);
        // The package goes where the file's relative paths say: a checkout
        // for links and workspace members, the modules alone for an
        // import map (so that it must name every module).
        const packages = new Set<string>([
          ...(config.links ?? []),
          ...(config.workspace ?? []),
        ]);
        const mapped = new Set<string>(
          Object.values(config.imports ?? {})
            .map(String)
            .filter((target) => target.startsWith("."))
            .map((target) =>
              target.slice(0, target.indexOf("wsgiref") + "wsgiref".length)
            ),
        );
        if (packages.size === 0 && mapped.size === 0) {
          // Only jsr: specifiers: a local copy stands in for jsr.io.
          config.links = ["../wsgiref"];
          packages.add("../wsgiref");
        }
        for (const place of packages) await copyPackage(`${project}/${place}`);
        for (const place of mapped) {
          if (!packages.has(place)) {
            await copyPackage(`${project}/${place}`, true);
          }
        }
        await Deno.writeTextFile(
          `${project}/deno.json`,
          JSON.stringify(config),
        );
        await Deno.writeTextFile(
          `${project}/main.ts`,
          specifiers.map((s, i) => `import * as m${i} from "${s}";\n`).join(
            "",
          ) +
            `console.log([${
              specifiers.map((_, i) => `m${i}`).join(", ")
            }].map((m) => typeof m === "object").join(" "));\n`,
        );
        const { code, stdout, stderr } = await bash(
          "deno run main.ts",
          project,
        );
        assert.equal(code, 0, stderr);
        assert.equal(stdout, specifiers.map(() => "true").join(" ") + "\n");
      } finally {
        await Deno.remove(root, { recursive: true });
      }
    });
  }
});

/** The `[Service]` settings of a systemd unit, continuation lines joined. */
function unitSettings(text: string): Map<string, string> {
  const settings = new Map<string, string>();
  let section = "";
  let pending = "";
  for (const raw of text.split("\n")) {
    const line = pending + raw.trim();
    if (line.endsWith("\\")) {
      pending = line.slice(0, -1).trim() + " ";
      continue;
    }
    pending = "";
    if (/^\[.*\]$/.test(line)) section = line;
    else if (section === "[Service]" && /^\w+=/.test(line)) {
      const at = line.indexOf("=");
      settings.set(line.slice(0, at), line.slice(at + 1));
    }
  }
  return settings;
}

Deno.test("docs/deploy/my-app.service passes systemd-analyze verify and its command serves", async (t) => {
  const unit = await Deno.readTextFile(`${DEPLOY_DIR}my-app.service`);
  const deno = Deno.execPath();
  const analyze = findBinary("systemd-analyze", ["/usr/bin/systemd-analyze"]);
  await withProject(async (project) => {
    await t.step({
      name: "systemd-analyze verify",
      ignore: analyze === null,
      fn: async () => {
        const copy = `${project.root}/my-app.service`;
        await Deno.writeTextFile(
          copy,
          unit.replaceAll("/usr/local/bin/deno", deno),
        );
        const { code, stdout, stderr } = await bash(
          `systemd-analyze verify ${copy}`,
          project.root,
        );
        assert.equal(code, 0, stderr);
        assert.equal(stdout + stderr, "");
      },
    });
    await t.step("ExecStart, run as the unit says", async () => {
      // The unit's paths, moved to temporary directories; /tmp too, as
      // PrivateTmp=true gives the service a /tmp of its own.
      const tmp = `${project.root}/tmp`;
      const paths: [string, string][] = [
        [",/tmp ", `,${tmp} `], // first: the others are under /tmp
        ["/usr/local/bin/deno", deno],
        ["/srv/my-app", project.dir],
        ["/run/my-app", `${project.root}/run`],
        ["/var/cache/my-app", `${project.root}/cache`],
      ];
      for (const dir of ["run", "cache", "tmp"]) {
        await Deno.mkdir(`${project.root}/${dir}`);
      }
      const moved = (value: string) =>
        paths.reduce((text, [from, to]) => text.replaceAll(from, to), value);
      const settings = unitSettings(unit);
      const env: Record<string, string> = {
        NO_COLOR: "1",
        PATH: pathWithDeno(),
        TMPDIR: tmp,
      };
      for (const pair of (settings.get("Environment") ?? "").split(/\s+/)) {
        const at = pair.indexOf("=");
        if (at > 0) env[pair.slice(0, at)] = moved(pair.slice(at + 1));
      }
      const command = moved(settings.get("ExecStart")!);
      const socket = /--socket (\S+)/.exec(command)![1];
      const child = new Deno.Command("bash", {
        args: ["-c", `exec ${command}`],
        cwd: moved(settings.get("WorkingDirectory")!),
        stdin: "null",
        stdout: "null",
        stderr: "piped",
        clearEnv: true,
        env,
      }).spawn();
      const errors = child.stderr.pipeThrough(new TextDecoderStream());
      const log = (async () => {
        let all = "";
        for await (const text of errors) all += text;
        return all;
      })();
      try {
        await listening(() => "", () => false, { path: socket });
        const client = await FcgiClient.connect({ path: socket });
        try {
          const hello = await client.request(getParams("/hello"), {
            keepConn: true,
          });
          assert.match(parseCgi(hello.stdout).status, /^200 /);
          // Over the spool threshold: the body goes to the unit's /tmp.
          const body = new Uint8Array(3 * 1024 * 1024).fill(65);
          const upload = await client.request(
            getParams("/upload", {
              REQUEST_METHOD: "POST",
              CONTENT_LENGTH: String(body.length),
            }),
            { id: 2, stdin: body },
          );
          assert.match(parseCgi(upload.stdout).status, /^200 /);
        } finally {
          client.close();
        }
      } finally {
        // systemctl stop: SIGTERM, and TimeoutStopSec before a kill.
        try {
          child.kill("SIGTERM");
        } catch {
          // It has exited: its status and log say why.
        }
        const status = await child.status;
        const text = await log;
        assert.equal(status.code, 0, text);
        assert.doesNotMatch(text, /PermissionDenied|NotCapable|Requires/);
      }
    });
  });
});

// ----------------------------------------------------------------- prose

/** GitHub's anchor for a heading. */
function slug(heading: string): string {
  return heading
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, "")
    .replace(/\s/g, "-");
}

/** The anchors of a page's headings. */
function anchors(text: string, file: string): Set<string> {
  const seen = new Map<string, number>();
  const found = new Set<string>();
  const inCode = codeLines(text, file);
  text.split("\n").forEach((line, i) => {
    const heading = /^#{1,6}\s+(.*)$/.exec(line);
    if (heading === null || inCode.has(i)) return;
    const base = slug(heading[1]);
    const count = seen.get(base) ?? 0;
    seen.set(base, count + 1);
    found.add(count === 0 ? base : `${base}-${count}`);
  });
  return found;
}

/** The 0-based numbers of the lines inside fenced blocks, fences too. */
function codeLines(text: string, file: string): Set<number> {
  const lines = new Set<number>();
  for (const block of fencedBlocks(text, file)) {
    const length = block.content.split("\n").length;
    for (let i = 0; i <= length; i++) lines.add(block.line - 1 + i);
  }
  return lines;
}

Deno.test("README.md and docs/: links reach their pages and headings, tables keep their columns, lines fit a terminal", () => {
  const problems: string[] = [];
  for (const file of PAGES) {
    const text = Deno.readTextFileSync(ROOT + file);
    const inCode = codeLines(text, file);
    const dir = file.includes("/")
      ? file.slice(0, file.lastIndexOf("/") + 1)
      : "";
    let columns = -1;
    text.split("\n").forEach((line, i) => {
      if (inCode.has(i)) return;
      const at = `${file}:${i + 1}`;
      if (line.length > 100) problems.push(`${at}: ${line.length} characters`);
      // A table row's cells: GitHub splits at every unescaped |, even in
      // code.
      if (line.startsWith("|")) {
        const cells = line.replaceAll("\\|", "").split("|").length;
        if (columns < 0) columns = cells;
        else if (cells !== columns) {
          problems.push(
            `${at}: ${cells - 2} cells, the header has ${columns - 2}`,
          );
        }
      } else columns = -1;
      for (
        const [, target] of line.replaceAll(/`[^`]*`/g, "").matchAll(
          /\]\(([^)\s]+)\)/g,
        )
      ) {
        if (/^[a-z]+:/.test(target)) continue;
        const [path, anchor] = target.split("#");
        const resolved = path === ""
          ? file
          : new URL(path, `file:///${dir}`).pathname.slice(1);
        let page: string;
        try {
          page = Deno.readTextFileSync(ROOT + resolved);
        } catch {
          if (!PENDING_PAGES.includes(resolved)) {
            problems.push(`${at}: ${target}: no such file`);
          }
          continue;
        }
        if (anchor && !anchors(page, resolved).has(anchor)) {
          problems.push(`${at}: ${target}: no such heading`);
        }
      }
    });
  }
  assert.deepEqual(problems, []);
});
