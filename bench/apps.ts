/**
 * The servers the benchmarks load, each in a process of its own:
 *
 * ```sh
 * deno run -A bench/apps.ts <server> [port]
 * ```
 *
 * `<server>` is one of `SERVERS`' keys: a raw `Deno.serve` baseline
 * (`raw-*`), Hono 4 on `Deno.serve` (`hono-hello`), the same work as a
 * gateway-interface application served by `makeServer` (`wsgi-*`), or a
 * FastCGI backend: the gateway (`fcgi-gateway`), the gateway with a handler
 * that writes canned bytes (`fcgi-gateway-canned`), and the rungs of the
 * raw responder of `bench/fcgi_raw.ts` (`fcgi-raw-*`). Once
 * listening, the process prints `listening <port>` on stdout; it stops on
 * SIGTERM or SIGINT. All listen on 127.0.0.1; port 0 picks a free one.
 *
 * Hono is imported (`npm:hono@4`, dynamically, so that only the
 * `hono-hello` process loads it) from here alone: it is a benchmark
 * baseline, not a dependency of the package, whose published files never
 * import `bench/`.
 *
 * @module
 */

import {
  makeServer,
  ServerHandler,
  WSGIRequestHandler,
} from "../simple_server.ts";
import {
  FastCGIHandler,
  type FastCGIOutput,
  makeFastCGIServer,
} from "../fastcgi.ts";
import type {
  Application,
  Environ,
  ErrorStream,
  InputStream,
} from "../types.ts";
import { RESOLVED } from "../_internal.ts";
import { type RawLevel, serveRaw } from "./fcgi_raw.ts";

const ENCODER = new TextEncoder();
/** The hello body every benchmark side sends, the peers' included. */
export const HELLO_TEXT = "Hello world!\n";
const HELLO = ENCODER.encode(HELLO_TEXT);
const SOFTWARE = `WSGIServer/0.2 Deno/${Deno.version.deno}`;

/** The size of each chunk of the streamed response and of upload reads. */
export const CHUNK_SIZE = 64 * 1024;

/** `GET /`: "Hello world!\n" as `text/plain`. */
export const helloApp: Application = (_environ, startResponse) => {
  startResponse("200 OK", [["Content-Type", "text/plain"]]);
  return [HELLO];
};

/** `POST /`: read the whole body, answer with its length. */
export const postApp: Application = (environ, startResponse) => {
  const body = (environ["wsgi.input"] as InputStream).read();
  startResponse("200 OK", [["Content-Type", "text/plain"]]);
  return [ENCODER.encode(String(body.length))];
};

/** `GET /?bytes=N`: stream N zero bytes (default 1 GiB) in 64 KiB chunks. */
export const streamApp: Application = (environ, startResponse) => {
  const wanted = /(?:^|&)bytes=(\d+)/.exec(String(environ.QUERY_STRING));
  let left = wanted ? Number(wanted[1]) : 1024 ** 3;
  startResponse("200 OK", [
    ["Content-Type", "application/octet-stream"],
    ["Content-Length", String(left)],
  ]);
  const chunk = new Uint8Array(CHUNK_SIZE);
  return (function* () {
    while (left > 0) {
      const size = Math.min(left, CHUNK_SIZE);
      left -= size;
      yield size === CHUNK_SIZE ? chunk : chunk.subarray(0, size);
    }
  })();
};

/**
 * `POST /?chunk=N`: read the body in pieces of N bytes (default 64 KiB) to
 * the end, answer its length. With `&into=1`, into one buffer of N bytes
 * with `wsgi.input.readinto()` (an extension of this package), which makes
 * no new buffer per piece.
 */
export const uploadApp: Application = (environ, startResponse) => {
  const input = environ["wsgi.input"] as InputStream;
  const query = String(environ.QUERY_STRING);
  const asked = /(?:^|&)chunk=(\d+)/.exec(query);
  const size = asked ? Number(asked[1]) : CHUNK_SIZE;
  let total = 0;
  if (/(?:^|&)into=1(?:&|$)/.test(query) && input.readinto !== undefined) {
    const buffer = new Uint8Array(size);
    for (let n; (n = input.readinto(buffer)) > 0;) total += n;
  } else {
    for (;;) {
      const piece = input.read(size);
      if (piece.length === 0) break;
      total += piece.length;
    }
  }
  startResponse("200 OK", [["Content-Type", "text/plain"]]);
  return [ENCODER.encode(String(total))];
};

/** A started server: its port, and how to stop it. */
interface Running {
  port: number;
  stop(): Promise<void>;
}

type Start = (port: number) => Running | Promise<Running>;

function raw(handler: Deno.ServeHandler): Start {
  return (port) => {
    const server = Deno.serve(
      { hostname: "127.0.0.1", port, onListen() {} },
      handler,
    );
    return { port: server.addr.port, stop: () => server.shutdown() };
  };
}

/** A `ServerHandler` that sends no `Server` header. */
class BareServerHandler extends ServerHandler {
  override serverSoftware = null;
}

/** A request handler whose responses carry no `Server` header. */
class BareRequestHandler extends WSGIRequestHandler {
  override serverHandlerClass = BareServerHandler;
}

function wsgi(
  app: Application,
  maxBodySize?: number,
  handlerClass = WSGIRequestHandler,
): Start {
  return (port) => {
    const server = makeServer("127.0.0.1", port, app, {
      quiet: true,
      maxBodySize,
      handlerClass,
    });
    server.serveForever();
    return { port: server.serverPort, stop: () => server.shutdown() };
  };
}

/**
 * A `FastCGIHandler` that skips the application and the handler's work: it
 * writes the bytes the hello application would, and is done at once. The
 * gateway with it costs its records, connections and framing alone.
 */
class CannedHandler extends FastCGIHandler {
  static readonly STDOUT = ENCODER.encode(
    `Status: 200 OK\r\nContent-Type: text/plain\r\nContent-Length: ${HELLO.length}\r\n\r\n${HELLO_TEXT}`,
  );
  #out: FastCGIOutput;

  constructor(
    stdin: InputStream,
    stdout: FastCGIOutput,
    stderr: ErrorStream,
    environ: Environ,
  ) {
    super(stdin, stdout, stderr, environ);
    this.#out = stdout;
  }

  override run(_app: Application): Promise<void> {
    this.#out.write(CannedHandler.STDOUT);
    // The constant a synchronous run returns: the gateway ends the request
    // without a promise hop.
    return RESOLVED;
  }
}

function fastcgi(
  app: Application,
  handlerClass: typeof FastCGIHandler = FastCGIHandler,
): Start {
  return (port) => {
    const server = makeFastCGIServer({ hostname: "127.0.0.1", port }, app, {
      quiet: true,
      handlerClass,
    });
    server.serveForever();
    return { port: server.serverPort, stop: () => server.shutdown() };
  };
}

function rawFastCGI(level: RawLevel): Start {
  return (port) => serveRaw(level, helloApp, port);
}

/** Every server the benchmarks start, by name. */
export const SERVERS: Record<string, Start> = {
  // Deno's hello world takes the request, as any real handler does (with no
  // parameter at all, Deno.serve skips building the Request).
  "raw-hello": raw((_request) => new Response(HELLO_TEXT)),
  // The same with a bytes body (one Uint8Array, shared, as helloApp's).
  "raw-hello-bytes": raw((_request) => new Response(HELLO)),
  // The same work as wsgi-hello minus the adapter: read what an environ
  // needs, send the same headers.
  "raw-hello-same-work": raw((request, info) => {
    void request.url;
    void request.method;
    request.headers.forEach(() => {});
    void info.remoteAddr;
    return new Response(HELLO_TEXT, {
      headers: [["Server", SOFTWARE], ["Content-Type", "text/plain"]],
    });
  }),
  // The same again, but the two headers appended to the Response after it
  // is made: Deno's constructor costs more with a headers record of two
  // than the two appends (the way makeServer builds its Response).
  "raw-hello-same-work-appended": raw((request, info) => {
    void request.url;
    void request.method;
    request.headers.forEach(() => {});
    void info.remoteAddr;
    const response = new Response(HELLO_TEXT);
    const headers = response.headers;
    headers.delete("Content-Type");
    headers.append("Server", SOFTWARE);
    headers.append("Content-Type", "text/plain");
    return response;
  }),
  // The same again, the Response made once and cloned for each request (as
  // makeServer sends the same response made again in a row).
  "raw-hello-same-work-cloned": (() => {
    const template = new Response(HELLO_TEXT);
    const headers = template.headers;
    headers.delete("Content-Type");
    headers.append("Server", SOFTWARE);
    headers.append("Content-Type", "text/plain");
    return raw((request, info) => {
      void request.url;
      void request.method;
      request.headers.forEach(() => {});
      void info.remoteAddr;
      return template.clone();
    });
  })(),
  // The two halves of that work, apart (the "costs" scenario): reading
  // what an environ needs, with a response Deno.serve sends on its fast
  // path (a lone Content-Type); and the two headers without the reading.
  "raw-hello-reads": raw((request, info) => {
    void request.url;
    void request.method;
    request.headers.forEach(() => {});
    void info.remoteAddr;
    return new Response(HELLO_TEXT, {
      headers: { "Content-Type": "text/plain" },
    });
  }),
  "raw-hello-server-header": raw((_request) =>
    new Response(HELLO_TEXT, {
      headers: { "Server": SOFTWARE, "Content-Type": "text/plain" },
    })
  ),
  // Hono's hello world: `c.text` sends `Content-Type: text/plain;
  // charset=UTF-8`.
  "hono-hello": async (port) => {
    // Inline on purpose: a baseline for bench/ only, not a dependency of
    // the package, so not in deno.json's imports.
    // deno-lint-ignore no-import-prefix
    const { Hono } = await import("npm:hono@4");
    const app = new Hono();
    app.get("/", (c) => c.text(HELLO_TEXT));
    const server = Deno.serve(
      { hostname: "127.0.0.1", port, onListen() {} },
      app.fetch,
    );
    return { port: server.addr.port, stop: () => server.shutdown() };
  },
  "wsgi-hello": wsgi(helloApp),
  "wsgi-hello-bare": wsgi(helloApp, undefined, BareRequestHandler),
  "raw-post": raw(async (request) => {
    try {
      const body = await request.bytes();
      return new Response(String(body.length));
    } catch {
      return new Response(null, { status: 400 }); // wrk hung up mid-body
    }
  }),
  // raw-post plus what the adapter must do: read what an environ needs,
  // send the same two headers.
  "raw-post-same-work": raw(async (request, info) => {
    void request.url;
    void request.method;
    request.headers.forEach(() => {});
    void info.remoteAddr;
    try {
      const body = await request.bytes();
      return new Response(String(body.length), {
        headers: { "Server": SOFTWARE, "Content-Type": "text/plain" },
      });
    } catch {
      return new Response(null, { status: 400 });
    }
  }),
  "wsgi-post": wsgi(postApp),
  "wsgi-stream": wsgi(streamApp),
  "wsgi-upload": wsgi(uploadApp, Infinity),
  // FastCGI (bench/fastcgi_bench.ts): the gateway, the gateway without the
  // handler's work, and the rungs of bench/fcgi_raw.ts.
  "fcgi-gateway": fastcgi(helloApp),
  "fcgi-gateway-canned": fastcgi(helloApp, CannedHandler),
  "fcgi-raw-canned": rawFastCGI("canned"),
  "fcgi-raw-environ": rawFastCGI("environ"),
  "fcgi-raw-handler": rawFastCGI("handler"),
  "fcgi-raw-hops": rawFastCGI("hops"),
};

if (import.meta.main) {
  const [name, port = "0"] = Deno.args;
  const start = SERVERS[name];
  if (start === undefined) {
    console.error(
      `Usage: deno run -A bench/apps.ts <${
        Object.keys(SERVERS).join("|")
      }> [port]`,
    );
    Deno.exit(2);
  }
  const server = await start(Number(port));
  const stop = () => {
    server.stop().then(() => Deno.exit(0));
  };
  Deno.addSignalListener("SIGTERM", stop);
  Deno.addSignalListener("SIGINT", stop);
  console.log(`listening ${server.port}`);
}
