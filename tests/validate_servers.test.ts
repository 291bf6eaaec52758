/**
 * Every server and handler of the package, run with the test apps wrapped
 * in `validator()`: the server side must pass the checks as the apps do.
 * Expected bytes of the handler outputs come from CPython 3.11's wsgiref
 * (`BaseCGIHandler`/`SimpleHandler` running the same apps under
 * `wsgiref.validate.validator`).
 */

import assert from "node:assert/strict";
import { validator, type ValidatorOptions } from "../validate.ts";
import { BaseCGIHandler, SimpleHandler } from "../handlers.ts";
import {
  makeServer,
  toFetchHandler,
  WSGIRequestHandler,
  type WSGIRequestHandlerClass,
} from "../simple_server.ts";
import { BytesInput, StringErrorStream } from "../_io.ts";
import { app as exampleApp, validatedApp } from "../examples/validated.ts";
import type {
  Application,
  Environ,
  HeaderList,
  InputStream,
  StartResponse,
} from "../types.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const bytes = (s: string): Uint8Array => encoder.encode(s);

/** Longer than the validator's grace period for `close()`. */
const AFTER_CLOSE_GRACE_MS = 150;

const TEXT: HeaderList = [["Content-Type", "text/plain"]];

// --- The test apps: all compliant ------------------------------------------

const hello: Application = (_environ, startResponse) => {
  startResponse("200 OK", [...TEXT, ["Content-Length", "5"]]);
  return [bytes("Hello")];
};

const asyncApp: Application = async (_environ, startResponse) => {
  await new Promise((resolve) => setTimeout(resolve, 1));
  startResponse("200 OK", [...TEXT, ["Content-Length", "5"]]);
  return [bytes("async")];
};

function* generatorApp(_environ: Environ, startResponse: StartResponse) {
  startResponse("200 OK", TEXT);
  yield bytes("one ");
  yield bytes("two ");
  yield bytes("three");
}

const asyncIterableApp: Application = (_environ, startResponse) => {
  startResponse("200 OK", TEXT);
  return (async function* () {
    yield bytes("one ");
    await Promise.resolve();
    yield bytes("two ");
    yield bytes("three");
  })();
};

const writeApp: Application = (_environ, startResponse) => {
  const write = startResponse("200 OK", [...TEXT, ["Content-Length", "4"]]);
  write(bytes("ab"));
  return [bytes("cd")];
};

/** Reads exactly CONTENT_LENGTH bytes and sends them back. */
const echoApp: Application = (environ, startResponse) => {
  const length = Number(environ.CONTENT_LENGTH || "0");
  const body = (environ["wsgi.input"] as InputStream).read(length);
  startResponse("200 OK", [
    ["Content-Type", "application/octet-stream"],
    ["Content-Length", String(body.length)],
  ]);
  return [body];
};

const headAwareApp: Application = (environ, startResponse) => {
  startResponse("200 OK", [...TEXT, ["Content-Length", "5"]]);
  return environ.REQUEST_METHOD === "HEAD" ? [] : [bytes("Hello")];
};

const noContentApp: Application = (_environ, startResponse) => {
  startResponse("204 No Content", []);
  return [];
};

/** Replaces its status with excInfo before any body byte. */
const recoveringApp: Application = (_environ, startResponse) => {
  startResponse("200 OK", TEXT);
  try {
    throw new Error("recovered");
  } catch (error) {
    startResponse("500 Internal Server Error", TEXT, error);
  }
  return [bytes("failed")];
};

/** Sends a file through the server's `wsgi.file_wrapper`. */
function fileApp(path: string, size: number): Application {
  return (environ, startResponse) => {
    startResponse("200 OK", [
      ["Content-Type", "application/octet-stream"],
      ["Content-Length", String(size)],
    ]);
    const Wrapper = environ["wsgi.file_wrapper"]!;
    return new Wrapper(Deno.openSync(path), 4);
  };
}

/** A request for the handler tests, and what CPython answers to it. */
interface Case {
  name: string;
  app: Application;
  method?: string;
  body?: string;
  /** The response after the status line (CGI) or the Date line (origin). */
  expected: string;
}

const CASES: Case[] = [
  {
    name: "a sync list",
    app: hello,
    expected: "Content-Type: text/plain\r\nContent-Length: 5\r\n\r\nHello",
  },
  {
    name: "an async app",
    app: asyncApp,
    expected: "Content-Type: text/plain\r\nContent-Length: 5\r\n\r\nasync",
  },
  {
    name: "a generator",
    app: generatorApp,
    expected: "Content-Type: text/plain\r\n\r\none two three",
  },
  {
    name: "an async iterable",
    app: asyncIterableApp,
    expected: "Content-Type: text/plain\r\n\r\none two three",
  },
  {
    name: "write() then a list",
    app: writeApp,
    expected: "Content-Type: text/plain\r\nContent-Length: 4\r\n\r\nabcd",
  },
  {
    name: "a POST read from wsgi.input",
    app: echoApp,
    method: "POST",
    body: "hello world",
    expected:
      "Content-Type: application/octet-stream\r\nContent-Length: 11\r\n\r\nhello world",
  },
  {
    name: "a HEAD request",
    app: headAwareApp,
    method: "HEAD",
    expected: "Content-Type: text/plain\r\nContent-Length: 5\r\n\r\n",
  },
  {
    name: "a 204",
    app: noContentApp,
    expected: "Content-Length: 0\r\n\r\n",
  },
  {
    name: "an excInfo replacement",
    app: recoveringApp,
    expected: "Content-Type: text/plain\r\n\r\nfailed",
  },
];

const STATUS_OF: Record<string, string> = {
  "a 204": "204 No Content",
  "an excInfo replacement": "500 Internal Server Error",
};

function cgiEnviron(method: string, body: string): Record<string, string> {
  const environ: Record<string, string> = {
    REQUEST_METHOD: method,
    SCRIPT_NAME: "",
    PATH_INFO: "/",
    QUERY_STRING: "",
    SERVER_NAME: "localhost",
    SERVER_PORT: "80",
    SERVER_PROTOCOL: "HTTP/1.0",
  };
  if (body !== "") {
    environ.CONTENT_TYPE = "text/plain";
    environ.CONTENT_LENGTH = String(bytes(body).length);
  }
  return environ;
}

/** Run a validated app through a handler class with in-memory streams. */
async function runHandler(
  Handler: typeof SimpleHandler,
  app: Application,
  method = "GET",
  body = "",
  options: ValidatorOptions = {},
): Promise<{ output: string; errors: StringErrorStream }> {
  const chunks: Uint8Array[] = [];
  const stdout = { write: (p: Uint8Array) => void chunks.push(p.slice()) };
  const errors = new StringErrorStream();
  const handler = new Handler(
    new BytesInput(bytes(body)),
    stdout,
    errors,
    cgiEnviron(method, body),
    false,
    false,
  );
  // The process environment is not part of the test.
  handler.osEnviron = {};
  await handler.run(validator(app, options));
  return { output: chunks.map((c) => decoder.decode(c)).join(""), errors };
}

const DATE_LINE =
  /^Date: (Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d{2}:\d{2}:\d{2} GMT\r\n/;

for (
  const [Handler, origin] of [
    [SimpleHandler, true],
    [BaseCGIHandler, false],
  ] as const
) {
  Deno.test(`${Handler.name}.run() passes the validator with every test app`, async (t) => {
    const streams: StringErrorStream[] = [];
    const path = await Deno.makeTempFile();
    try {
      await Deno.writeTextFile(path, "0123456789");
      const cases: Case[] = [...CASES, {
        name: "a file_wrapper",
        app: fileApp(path, 10),
        expected:
          "Content-Type: application/octet-stream\r\nContent-Length: 10\r\n\r\n0123456789",
      }];
      for (const { name, app, method, body, expected } of cases) {
        await t.step(name, async () => {
          const { output, errors } = await runHandler(
            Handler,
            app,
            method,
            body,
          );
          streams.push(errors);
          const status = STATUS_OF[name] ?? "200 OK";
          if (origin) {
            const prefix = `HTTP/1.0 ${status}\r\n`;
            assert.ok(output.startsWith(prefix), output);
            const rest = output.slice(prefix.length);
            assert.match(rest, DATE_LINE);
            assert.equal(rest.replace(DATE_LINE, ""), expected);
          } else {
            assert.equal(output, `Status: ${status}\r\n${expected}`);
          }
          assert.equal(errors.value, "", "no AssertionError, no warning");
        });
      }
      await t.step("no result was left unclosed", async () => {
        await new Promise((resolve) =>
          setTimeout(resolve, AFTER_CLOSE_GRACE_MS)
        );
        for (const errors of streams) assert.equal(errors.value, "");
      });
    } finally {
      await Deno.remove(path);
    }
  });

  Deno.test(`${Handler.name}.run() logs the validator's AssertionError for a broken app`, async () => {
    // The control case: the harness above would see a broken rule.
    const broken: Application = (_environ, startResponse) => {
      startResponse("200 OK", []);
      return [];
    };
    const { output, errors } = await runHandler(Handler, broken);
    assert.match(
      errors.value,
      /AssertionError: No Content-Type header found in headers \(\[\]\)/,
    );
    assert.match(output, /500 Internal Server Error\r\n/);
  });
}

// --- wsgi.input.read() without a size (CPython's test_wsgi_input) ----------

/** Reads the whole body with read() and no size, then echoes it. */
const unsizedReadApp: Application = (environ, startResponse) => {
  const body = (environ["wsgi.input"] as InputStream).read();
  startResponse("200 OK", TEXT);
  return [body];
};

const ERROR_PAGE =
  "Content-Type: text/plain\r\nContent-Length: 59\r\n\r\nA server error occurred.  Please contact the administrator.";
const UNSIZED_REFUSAL =
  "AssertionError: wsgi.input.read() needs a size: validator(app, { strict: true }) refuses read(), which reads all the rest of the input; read at most CONTENT_LENGTH bytes\n";
const UNSIZED_WARNING =
  "WSGIWarning: wsgi.input.read() needs a size to be portable: read() reads all the rest of the input, which wsgiref's validator refuses; read at most CONTENT_LENGTH bytes\n";

for (
  const [Handler, origin] of [
    [SimpleHandler, true],
    [BaseCGIHandler, false],
  ] as const
) {
  /** The output after the status line, without the origin's Date line. */
  const afterStatus = (output: string, status: string): string => {
    const prefix = origin ? `HTTP/1.0 ${status}\r\n` : `Status: ${status}\r\n`;
    assert.ok(output.startsWith(prefix), output);
    const rest = output.slice(prefix.length);
    if (!origin) return rest;
    assert.match(rest, DATE_LINE);
    return rest.replace(DATE_LINE, "");
  };

  Deno.test(`${Handler.name}.run() answers 500 and logs the AssertionError for read() without a size under validator(app, { strict: true })`, async () => {
    const { output, errors } = await runHandler(
      Handler,
      unsizedReadApp,
      "POST",
      "hello world",
      { strict: true },
    );
    assert.equal(
      afterStatus(output, "500 Internal Server Error"),
      ERROR_PAGE,
    );
    assert.ok(errors.value.startsWith(UNSIZED_REFUSAL), errors.value);
    assert.ok(!errors.value.includes("WSGIWarning"), errors.value);
  });

  Deno.test(`${Handler.name}.run() returns the data of read() without a size under validator(app), with one WSGIWarning`, async () => {
    const { output, errors } = await runHandler(
      Handler,
      unsizedReadApp,
      "POST",
      "hello world",
    );
    assert.equal(
      afterStatus(output, "200 OK"),
      // The validator's result is not an Array: no Content-Length is added.
      "Content-Type: text/plain\r\n\r\nhello world",
    );
    assert.equal(errors.value, UNSIZED_WARNING);
  });
}

/** Run a validated app under CGIHandler or IISCGIHandler in a real process. */
async function runCgiProcess(
  handler: "CGIHandler" | "IISCGIHandler",
  env: Record<string, string>,
  body: string,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const script = await Deno.makeTempFile({ suffix: ".ts" });
  try {
    await Deno.writeTextFile(
      script,
      `import { ${handler} } from ${
        JSON.stringify(import.meta.resolve("../handlers.ts"))
      };
import { validator } from ${
        JSON.stringify(import.meta.resolve("../validate.ts"))
      };
const app = validator((environ, startResponse) => {
  const length = Number(environ.CONTENT_LENGTH || "0");
  const body = environ["wsgi.input"].read(length);
  const text = new TextEncoder().encode(environ.PATH_INFO + " " + new TextDecoder().decode(body));
  startResponse("200 OK", [["Content-Type", "text/plain"], ["Content-Length", String(text.length)]]);
  return [text];
});
await new ${handler}().run(app);
`,
    );
    const home = Deno.env.get("HOME");
    const denoDir = Deno.env.get("DENO_DIR");
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "--no-check", "--allow-env", script],
      clearEnv: true,
      env: {
        ...(home ? { HOME: home } : {}),
        ...(denoDir ? { DENO_DIR: denoDir } : {}),
        NO_COLOR: "1",
        ...env,
      },
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const writer = child.stdin.getWriter();
    await writer.write(bytes(body));
    await writer.close();
    const { code, stdout, stderr } = await child.output();
    return {
      code,
      stdout: decoder.decode(stdout),
      stderr: decoder.decode(stderr),
    };
  } finally {
    await Deno.remove(script);
  }
}

const CGI_ENV = {
  REQUEST_METHOD: "POST",
  QUERY_STRING: "",
  CONTENT_TYPE: "text/plain",
  CONTENT_LENGTH: "11",
  SERVER_NAME: "localhost",
  SERVER_PORT: "80",
  SERVER_PROTOCOL: "HTTP/1.1",
  GATEWAY_INTERFACE: "CGI/1.1",
};

Deno.test("CGIHandler.run() passes the validator in a CGI process", async () => {
  const { code, stdout, stderr } = await runCgiProcess("CGIHandler", {
    ...CGI_ENV,
    SCRIPT_NAME: "/cgi-bin/app",
    PATH_INFO: "/echo",
  }, "hello world");
  assert.equal(code, 0, stderr);
  assert.equal(
    stdout,
    "Status: 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 17\r\n\r\n/echo hello world",
  );
  assert.equal(stderr, "");
});

Deno.test("IISCGIHandler.run() passes the validator in a CGI process", async () => {
  const { code, stdout, stderr } = await runCgiProcess("IISCGIHandler", {
    ...CGI_ENV,
    SERVER_SOFTWARE: "Microsoft-IIS/10.0",
    SCRIPT_NAME: "/app",
    PATH_INFO: "/app/echo",
  }, "hello world");
  assert.equal(code, 0, stderr);
  assert.equal(
    stdout,
    "Status: 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 17\r\n\r\n/echo hello world",
  );
  assert.equal(stderr, "");
});

// --- toFetchHandler and makeServer ----------------------------------------

/** A request handler class whose error stream is `errors`. */
function capturing(errors: StringErrorStream): WSGIRequestHandlerClass {
  return class extends WSGIRequestHandler {
    override getStderr(): StringErrorStream {
      return errors;
    }
  };
}

/** A request over HTTP, and the response it must get. */
interface HttpCase {
  name: string;
  app: Application;
  method?: string;
  body?: string;
  status: number;
  responseBody: string;
  contentType?: string | null;
}

function httpCases(filePath: string): HttpCase[] {
  return [
    {
      name: "a sync list",
      app: hello,
      status: 200,
      responseBody: "Hello",
      contentType: "text/plain",
    },
    { name: "an async app", app: asyncApp, status: 200, responseBody: "async" },
    {
      name: "a generator",
      app: generatorApp,
      status: 200,
      responseBody: "one two three",
    },
    {
      name: "an async iterable",
      app: asyncIterableApp,
      status: 200,
      responseBody: "one two three",
    },
    {
      name: "write() then a list",
      app: writeApp,
      status: 200,
      responseBody: "abcd",
    },
    {
      name: "a POST read from wsgi.input",
      app: echoApp,
      method: "POST",
      body: "hello world",
      status: 200,
      responseBody: "hello world",
      contentType: "application/octet-stream",
    },
    {
      name: "a HEAD request",
      app: headAwareApp,
      method: "HEAD",
      status: 200,
      responseBody: "",
    },
    {
      name: "a 204",
      app: noContentApp,
      status: 204,
      responseBody: "",
      contentType: null,
    },
    {
      name: "an excInfo replacement",
      app: recoveringApp,
      status: 500,
      responseBody: "failed",
    },
    {
      name: "a file_wrapper",
      app: fileApp(filePath, 10),
      status: 200,
      responseBody: "0123456789",
    },
    {
      name: "the example app",
      app: exampleApp,
      status: 200,
      responseBody: "Hello from /\n",
    },
  ];
}

async function checkResponse(response: Response, c: HttpCase): Promise<void> {
  const text = await response.text();
  assert.equal(response.status, c.status, text);
  assert.equal(text, c.responseBody);
  if (c.contentType !== undefined) {
    assert.equal(response.headers.get("content-type"), c.contentType);
  }
}

async function withFile<T>(run: (path: string) => Promise<T>): Promise<T> {
  const path = await Deno.makeTempFile();
  try {
    await Deno.writeTextFile(path, "0123456789");
    return await run(path);
  } finally {
    await Deno.remove(path);
  }
}

Deno.test("toFetchHandler() passes the validator with every test app", async (t) => {
  await withFile(async (path) => {
    const errors = new StringErrorStream();
    for (const c of httpCases(path)) {
      await t.step(c.name, async () => {
        const fetchHandler = toFetchHandler(validator(c.app), {
          handlerClass: capturing(errors),
          quiet: true,
        });
        const response = await fetchHandler(
          new Request("http://127.0.0.1/", {
            method: c.method ?? "GET",
            body: c.body,
          }),
        );
        await checkResponse(response, c);
        assert.equal(errors.value, "", "no AssertionError, no warning");
      });
    }
    await t.step("no result was left unclosed", async () => {
      await new Promise((resolve) => setTimeout(resolve, AFTER_CLOSE_GRACE_MS));
      assert.equal(errors.value, "");
    });
  });
});

Deno.test("toFetchHandler() logs the validator's AssertionError for a broken app", async () => {
  const errors = new StringErrorStream();
  const fetchHandler = toFetchHandler(
    validator((_environ, startResponse) => {
      startResponse("200 OK", [["Content-Type", "text/plain"], [
        "Connection",
        "close",
      ]]);
      return [];
    }),
    { handlerClass: capturing(errors), quiet: true },
  );
  const response = await fetchHandler(new Request("http://127.0.0.1/"));
  await response.body?.cancel();
  assert.equal(response.status, 500);
  assert.match(
    errors.value,
    /AssertionError: Hop-by-hop header, 'Connection: close', not allowed/,
  );
});

Deno.test("toFetchHandler() answers 500 and logs the AssertionError for read() without a size under validator(app, { strict: true })", async () => {
  const errors = new StringErrorStream();
  const fetchHandler = toFetchHandler(
    validator(unsizedReadApp, { strict: true }),
    { handlerClass: capturing(errors), quiet: true },
  );
  const response = await fetchHandler(
    new Request("http://127.0.0.1/", { method: "POST", body: "hello world" }),
  );
  const body = new Uint8Array(await response.arrayBuffer());
  assert.equal(response.status, 500);
  assert.equal(response.headers.get("content-type"), "text/plain");
  assert.deepEqual(
    body,
    bytes("A server error occurred.  Please contact the administrator."),
  );
  assert.ok(errors.value.startsWith(UNSIZED_REFUSAL), errors.value);
  assert.ok(!errors.value.includes("WSGIWarning"), errors.value);
});

Deno.test("toFetchHandler() returns the data of read() without a size under validator(app), with one WSGIWarning", async (t) => {
  const bodies: [string, () => BodyInit][] = [
    ["a body of known length", () => "hello world"],
    ["a chunked upload", () =>
      new ReadableStream<Uint8Array>({
        start(controller) {
          controller.enqueue(bytes("hello "));
          controller.enqueue(bytes("world"));
          controller.close();
        },
      })],
  ];
  for (const [name, body] of bodies) {
    await t.step(name, async () => {
      const errors = new StringErrorStream();
      const fetchHandler = toFetchHandler(validator(unsizedReadApp), {
        handlerClass: capturing(errors),
        quiet: true,
      });
      const response = await fetchHandler(
        new Request("http://127.0.0.1/", { method: "POST", body: body() }),
      );
      assert.equal(response.status, 200);
      assert.equal(await response.text(), "hello world");
      assert.equal(errors.value, UNSIZED_WARNING);
    });
  }
});

Deno.test("makeServer() passes the validator with every test app over real HTTP", async (t) => {
  await withFile(async (path) => {
    const errors = new StringErrorStream();
    const cases = httpCases(path);
    const router: Application = (environ, startResponse) => {
      const index = Number((environ.PATH_INFO ?? "/").slice(1));
      environ.PATH_INFO = "/";
      return cases[index].app(environ, startResponse);
    };
    await using server = makeServer("127.0.0.1", 0, validator(router), {
      handlerClass: capturing(errors),
      quiet: true,
    });
    const serving = server.serveForever();
    try {
      for (const [index, c] of cases.entries()) {
        await t.step(c.name, async () => {
          const response = await fetch(
            `http://127.0.0.1:${server.serverPort}/${index}`,
            { method: c.method ?? "GET", body: c.body },
          );
          await checkResponse(response, c);
          assert.equal(errors.value, "", "no AssertionError, no warning");
        });
      }
    } finally {
      await server.shutdown();
      await serving;
    }
    await t.step("no result was left unclosed", async () => {
      await new Promise((resolve) => setTimeout(resolve, AFTER_CLOSE_GRACE_MS));
      assert.equal(errors.value, "");
    });
  });
});

Deno.test("the validated example app answers HEAD, POST and the broken route", async () => {
  const errors = new StringErrorStream();
  const fetchHandler = toFetchHandler(validatedApp, {
    handlerClass: capturing(errors),
    quiet: true,
  });
  const head = await fetchHandler(
    new Request("http://127.0.0.1/hello", { method: "HEAD" }),
  );
  assert.equal(head.status, 200);
  assert.equal(await head.text(), "");
  const post = await fetchHandler(
    new Request("http://127.0.0.1/echo", { method: "POST", body: "abc" }),
  );
  assert.equal(await post.text(), "3 bytes: abc\n");
  const empty = await fetchHandler(new Request("http://127.0.0.1/empty"));
  assert.equal(empty.status, 204);
  assert.equal(await empty.text(), "");
  assert.equal(errors.value, "");
  const broken = await fetchHandler(new Request("http://127.0.0.1/broken"));
  await broken.body?.cancel();
  assert.equal(broken.status, 500);
  assert.match(
    errors.value,
    /AssertionError: No Content-Type header found in headers \(\[\]\)/,
  );
});
