/**
 * The peers the benchmarks compare against, other servers of the same
 * hello application (`Hello world!\n`, `text/plain`), each from Debian's
 * packages:
 *
 * - HTTP (`bench/server_bench.ts`): uWSGI 2.0 with `--http-socket` (one
 *   request per connection), gunicorn (one sync worker), waitress, and
 *   CPython's own
 *   `wsgiref.simple_server`, all serving `bench/hello_wsgi.py`;
 * - FastCGI and uwsgi behind nginx (`bench/fastcgi_bench.ts`): PHP-FPM 8.2
 *   (`pm = static`, one child) serving `bench/hello.php`, uWSGI with
 *   `--fastcgi-socket`, and uWSGI with `--socket` (its native protocol,
 *   for nginx's `uwsgi_pass`).
 *
 * `ensurePeers` installs the missing packages with `apt-get` (as root,
 * unless `--no-install`); `startPeer` starts one in a process group of its
 * own, pinned like the other backends, or returns `null` after saying why
 * it cannot. The Python peers run Debian's `/usr/bin/python3` with
 * `PYTHONDONTWRITEBYTECODE=1`, so nothing is written into `bench/`.
 *
 * @module
 */

import { type Child, startCommand } from "./_child.ts";
import { onExit } from "./_load.ts";
import { freePort } from "../tests/fixtures/process.ts";

const BENCH = new URL(".", import.meta.url).pathname;
const PYTHON_APP = "hello_wsgi.py";
const PHP_APP = `${BENCH}hello.php`;
const INSTALL_TIMEOUT_MS = 600_000;

/** The protocol a peer speaks to its client. */
export type Protocol = "http" | "fastcgi" | "uwsgi";

/** One peer: how to find it, install it and start it. */
interface Peer {
  label: string;
  protocol: Protocol;
  /** Debian bookworm's packages for it. */
  packages: string[];
  /** Files that must exist for it to run. */
  needs: string[];
  /** The command line to listen on 127.0.0.1:`port`, files in `dir`. */
  command(port: number, dir: string): Promise<string[]>;
}

const UWSGI = "/usr/bin/uwsgi";
const UWSGI_PYTHON = "/usr/lib/uwsgi/plugins/python3_plugin.so";
const PYTHON = "/usr/bin/python3";
const PHP_FPM = "/usr/sbin/php-fpm8.2";

/** uWSGI, one worker under a master, no request log; SIGTERM stops it
 * (uWSGI 2.0 reloads on SIGTERM otherwise). */
function uwsgi(socket: string, port: number): string[] {
  return [
    UWSGI,
    "--plugin",
    "python3",
    socket,
    `127.0.0.1:${port}`,
    "--wsgi-file",
    PYTHON_APP,
    "--master",
    "--processes",
    "1",
    "--disable-logging",
    "--die-on-term",
  ];
}

/** Every peer, by the side name the benchmarks give it. */
export const PEERS: Record<string, Peer> = {
  "uwsgi-http": {
    label: "uWSGI 2.0 --http-socket, Python app",
    protocol: "http",
    packages: ["uwsgi", "uwsgi-plugin-python3"],
    needs: [UWSGI, UWSGI_PYTHON],
    command: (port) => Promise.resolve(uwsgi("--http-socket", port)),
  },
  "gunicorn": {
    label: "gunicorn, 1 sync worker",
    protocol: "http",
    packages: ["gunicorn"],
    needs: ["/usr/bin/gunicorn"],
    command: (port) =>
      Promise.resolve([
        "/usr/bin/gunicorn",
        "--workers",
        "1",
        "--worker-class",
        "sync",
        "--bind",
        `127.0.0.1:${port}`,
        "hello_wsgi:application",
      ]),
  },
  "waitress": {
    label: "waitress (its defaults)",
    protocol: "http",
    packages: ["python3-waitress"],
    needs: ["/usr/bin/waitress-serve"],
    command: (port) =>
      Promise.resolve([
        "/usr/bin/waitress-serve",
        `--listen=127.0.0.1:${port}`,
        "hello_wsgi:application",
      ]),
  },
  "wsgiref-py": {
    label: "CPython wsgiref.simple_server",
    protocol: "http",
    packages: ["python3"],
    needs: [PYTHON],
    command: (port) => Promise.resolve([PYTHON, PYTHON_APP, String(port)]),
  },
  "php-fpm": {
    label: "PHP-FPM 8.2, pm static, 1 child",
    protocol: "fastcgi",
    packages: ["php8.2-fpm"],
    needs: [PHP_FPM],
    async command(port, dir) {
      const root = Deno.uid() === 0;
      await Deno.writeTextFile(
        `${dir}/php-fpm.conf`,
        `[global]
pid = ${dir}/php-fpm.pid
error_log = ${dir}/php-fpm.log
daemonize = no

[hello]
listen = 127.0.0.1:${port}
pm = static
pm.max_children = 1
${root ? "user = root\ngroup = root\n" : ""}`,
      );
      // -R: PHP-FPM refuses to run as root without it.
      return [
        PHP_FPM,
        "-F",
        ...(root ? ["-R"] : []),
        "-y",
        `${dir}/php-fpm.conf`,
      ];
    },
  },
  "uwsgi-fastcgi": {
    label: "uWSGI 2.0 --fastcgi-socket, Python app",
    protocol: "fastcgi",
    packages: ["uwsgi", "uwsgi-plugin-python3"],
    needs: [UWSGI, UWSGI_PYTHON],
    command: (port) => Promise.resolve(uwsgi("--fastcgi-socket", port)),
  },
  "uwsgi-native": {
    label: "uWSGI 2.0 --socket (uwsgi protocol), Python app",
    protocol: "uwsgi",
    packages: ["uwsgi", "uwsgi-plugin-python3"],
    needs: [UWSGI, UWSGI_PYTHON],
    command: (port) => Promise.resolve(uwsgi("--socket", port)),
  },
};

/** The PHP file PHP-FPM serves, for nginx's `SCRIPT_FILENAME`. */
export const PHP_SCRIPT = PHP_APP;

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

async function run(command: string[]): Promise<boolean> {
  const child = new Deno.Command(command[0], {
    args: command.slice(1),
    env: { DEBIAN_FRONTEND: "noninteractive" },
    stdin: "null",
    stdout: "null",
    stderr: "inherit",
  }).spawn();
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch {
      // Gone already.
    }
  }, INSTALL_TIMEOUT_MS);
  try {
    return (await child.status).success;
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Install the Debian packages of the peers in `names` that are missing
 * (`apt-get install -y`, then once more after `apt-get update` if that
 * failed), when `install` and running as root with apt-get; otherwise say
 * what to install.
 */
export async function ensurePeers(
  names: string[],
  install: boolean,
): Promise<void> {
  const missing = new Set<string>();
  for (const name of names) {
    const peer = PEERS[name];
    if (peer !== undefined && !peer.needs.every(exists)) {
      for (const pkg of peer.packages) missing.add(pkg);
    }
  }
  if (missing.size === 0) return;
  const packages = [...missing];
  const line = `apt-get install -y ${packages.join(" ")}`;
  if (!install) {
    console.log(`peers missing, not installed (--no-install): ${line}`);
    return;
  }
  if (Deno.uid() !== 0 || !exists("/usr/bin/apt-get")) {
    console.log(`peers missing; as root on Debian: ${line}`);
    return;
  }
  console.log(
    `installing the missing peers: ${line} (a system service they ship may start; the benchmark runs its own instances)`,
  );
  const apt = ["apt-get", "install", "-y", "-q", ...packages];
  if (!(await run(apt))) {
    if (!(await run(["apt-get", "update", "-q"])) || !(await run(apt))) {
      console.log(`could not install: ${line}`);
    }
  }
}

/**
 * Start peer `name` on a free port, pinned to `cpu`; `null`, after a line
 * that says why, when it is not installed or does not start.
 */
export async function startPeer(
  name: string,
  cpu: number | undefined,
): Promise<Child | null> {
  const peer = PEERS[name];
  const absent = peer.needs.filter((path) => !exists(path));
  if (absent.length > 0) {
    console.log(
      `skipped ${name} (${peer.label}): ${
        absent.join(", ")
      } not found (Debian: apt-get install ${peer.packages.join(" ")})`,
    );
    return null;
  }
  const dir = await Deno.makeTempDir({ prefix: `wsgiref-${name}-` });
  onExit(() => Deno.remove(dir, { recursive: true }));
  const port = freePort();
  try {
    return await startCommand(name, await peer.command(port, dir), {
      port,
      cpu,
      cwd: BENCH,
      env: { PYTHONDONTWRITEBYTECODE: "1" },
    });
  } catch (error) {
    console.log(`skipped ${name} (${peer.label}): ${(error as Error).message}`);
    return null;
  }
}
