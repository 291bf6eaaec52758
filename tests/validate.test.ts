import assert from "node:assert/strict";
import { AssertionError, validator, WSGIWarning } from "../validate.ts";
import { FileWrapper, setupTestingDefaults } from "../util.ts";
import { BytesInput, ReaderInput, StringErrorStream } from "../_io.ts";
import type {
  Application,
  Environ,
  ErrorStream,
  HeaderList,
  InputStream,
  ResponseBody,
  StartResponse,
  Write,
} from "../types.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const bytes = (s: string): Uint8Array => encoder.encode(s);
const TEXT: HeaderList = [["Content-Type", "text/plain"]];

/** The body a dubious-but-allowed case waits for: the close grace, plus. */
const AFTER_CLOSE_GRACE_MS = 150;

type Closable = ResponseBody & { close(): void | Promise<void> };

/** A compliant environ, with an in-memory body and error stream. */
function makeEnviron(extra: Record<string, unknown> = {}): Environ {
  return {
    REQUEST_METHOD: "GET",
    SCRIPT_NAME: "",
    PATH_INFO: "/",
    QUERY_STRING: "",
    SERVER_NAME: "127.0.0.1",
    SERVER_PORT: "80",
    SERVER_PROTOCOL: "HTTP/1.1",
    "wsgi.version": [1, 0],
    "wsgi.url_scheme": "http",
    "wsgi.input": new BytesInput(),
    "wsgi.errors": new StringErrorStream(),
    "wsgi.multithread": false,
    "wsgi.multiprocess": false,
    "wsgi.run_once": false,
    ...extra,
  };
}

/** What a fake server saw. */
interface Recorded {
  status: string | null;
  headers: HeaderList | null;
  written: Uint8Array[];
  starts: number;
}

/**
 * A minimal, correct server side: `startResponse` records, rethrows
 * `excInfo` once body bytes went out, and `write` records.
 */
function fakeServer(): { rec: Recorded; startResponse: StartResponse } {
  const rec: Recorded = { status: null, headers: null, written: [], starts: 0 };
  const startResponse: StartResponse = (status, headers, excInfo) => {
    if (excInfo !== undefined && excInfo !== null && rec.written.length > 0) {
      throw excInfo;
    }
    rec.status = status;
    rec.headers = headers;
    rec.starts++;
    return (data) => void rec.written.push(data);
  };
  return { rec, startResponse };
}

function concat(chunks: Uint8Array[]): string {
  return chunks.map((c) => decoder.decode(c)).join("");
}

/** Run a validated app as a correct server would: iterate all, then close. */
async function serve(
  app: Application,
  environ: Environ = makeEnviron(),
  options: { strict?: boolean } = {},
): Promise<
  {
    status: string | null;
    headers: HeaderList | null;
    body: string;
    errors: string;
  }
> {
  const errors = environ["wsgi.errors"] as StringErrorStream;
  const { rec, startResponse } = fakeServer();
  const result = await validator(app, options)(environ, startResponse);
  try {
    if (Symbol.iterator in result) {
      for (const chunk of result as Iterable<Uint8Array>) {
        rec.written.push(chunk);
      }
    } else {
      for await (const chunk of result as AsyncIterable<Uint8Array>) {
        rec.written.push(chunk);
      }
    }
  } finally {
    await (result as Closable).close();
  }
  return {
    status: rec.status,
    headers: rec.headers,
    body: concat(rec.written),
    errors: errors.value,
  };
}

/** Call a validated app and expect it to throw an AssertionError. */
function throwsAssertion(
  call: () => unknown,
  message: string | RegExp,
): void {
  assert.throws(call, (error: unknown) => {
    assert.ok(
      error instanceof AssertionError,
      `not an AssertionError: ${error}`,
    );
    if (typeof message === "string") assert.equal(error.message, message);
    else assert.match(error.message, message);
    return true;
  });
}

async function rejectsAssertion(
  promise: Promise<unknown>,
  message: string | RegExp,
): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(
      error instanceof AssertionError,
      `not an AssertionError: ${error}`,
    );
    if (typeof message === "string") assert.equal(error.message, message);
    else assert.match(error.message, message);
    return true;
  });
}

const hello: Application = (_environ, startResponse) => {
  startResponse("200 OK", [["Content-Type", "text/plain"]]);
  return [bytes("Hello")];
};

// --- The classes ----------------------------------------------------------

Deno.test("AssertionError has the name AssertionError and keeps a cause", () => {
  const cause = new Error("inner");
  const error = new AssertionError("Headers already set!", { cause });
  assert.equal(error.name, "AssertionError");
  assert.equal(error.message, "Headers already set!");
  assert.equal(error.cause, cause);
  assert.ok(error instanceof Error);
  assert.equal(new AssertionError().message, "");
});

Deno.test("WSGIWarning extends Error with the name WSGIWarning", () => {
  const warning = new WSGIWarning("dubious");
  assert.ok(warning instanceof Error);
  assert.equal(warning.name, "WSGIWarning");
  assert.equal(String(warning), "WSGIWarning: dubious");
});

Deno.test("validator() refuses a non-function app and bad options", () => {
  assert.throws(
    () => validator("app" as unknown as Application),
    new TypeError("Cannot validate: app must be a function, not string 'app'"),
  );
  assert.throws(
    () => validator(hello, null as unknown as { strict: boolean }),
    new TypeError("Cannot validate: options must be an object, not null None"),
  );
  assert.throws(
    () => validator(hello, { strict: "yes" as unknown as boolean }),
    new TypeError(
      "Cannot validate: strict must be a boolean, not string 'yes'",
    ),
  );
});

// --- Compliant applications pass untouched ---------------------------------

Deno.test("validator() passes a compliant sync app untouched", () => {
  const chunks = [bytes("Hel"), bytes("lo")];
  let closed = 0;
  const app: Application = (environ, startResponse) => {
    assert.equal(environ.PATH_INFO, "/");
    startResponse("200 OK", [["Content-Type", "text/plain"], ["X-A", "b"]]);
    return Object.assign([...chunks], { close: () => void closed++ });
  };
  const environ = makeEnviron();
  const errors = environ["wsgi.errors"] as StringErrorStream;
  const { rec, startResponse } = fakeServer();
  const result = validator(app)(environ, startResponse);
  assert.ok(!(result instanceof Promise), "a sync app stays sync");
  const seen = [...(result as Iterable<Uint8Array>)];
  assert.equal(seen[0], chunks[0], "chunks are passed on as they are");
  assert.equal(seen[1], chunks[1]);
  assert.equal(closed, 0);
  (result as Closable).close();
  assert.equal(closed, 1);
  assert.equal(rec.status, "200 OK");
  assert.deepEqual(rec.headers, [["Content-Type", "text/plain"], ["X-A", "b"]]);
  assert.equal(errors.value, "");
});

Deno.test("validator() passes a compliant async app and returns a promise", async () => {
  const app: Application = async (_environ, startResponse) => {
    await Promise.resolve();
    startResponse("201 Created", [["Content-Type", "text/plain"]]);
    return [bytes("made")];
  };
  const environ = makeEnviron();
  const { startResponse } = fakeServer();
  const result = validator(app)(environ, startResponse);
  assert.ok(result instanceof Promise);
  const body = await result;
  assert.deepEqual(
    [...(body as Iterable<Uint8Array>)].map((c) => decoder.decode(c)),
    ["made"],
  );
  (body as Closable).close();
  const served = await serve(app);
  assert.equal(served.status, "201 Created");
  assert.equal(served.body, "made");
  assert.equal(served.errors, "");
});

Deno.test("validator() passes an async iterable result and awaits its async close()", async () => {
  let closed = false;
  const app: Application = (_environ, startResponse) => {
    startResponse("200 OK", TEXT);
    return {
      async *[Symbol.asyncIterator]() {
        yield bytes("a");
        await Promise.resolve();
        yield bytes("b");
      },
      async close() {
        await Promise.resolve();
        closed = true;
      },
    };
  };
  const environ = makeEnviron();
  const { startResponse } = fakeServer();
  const result = validator(app)(environ, startResponse) as Closable;
  assert.ok(Symbol.asyncIterator in result);
  assert.ok(!(Symbol.iterator in result), "an async result stays async");
  const got: string[] = [];
  for await (const c of result as AsyncIterable<Uint8Array>) {
    got.push(decoder.decode(c));
  }
  const closing = result.close();
  assert.ok(
    closing instanceof Promise,
    "close() returns the original's promise",
  );
  assert.equal(closed, false);
  await closing;
  assert.equal(closed, true);
  assert.deepEqual(got, ["a", "b"]);
});

Deno.test("validator() passes a generator app that starts the response lazily", async () => {
  const app = function* (_environ: Environ, startResponse: StartResponse) {
    startResponse("200 OK", TEXT);
    yield bytes("one ");
    yield bytes("two");
  };
  const served = await serve(app);
  assert.equal(served.body, "one two");
  assert.equal(served.errors, "");
});

Deno.test("validator() passes a write()-based app", async () => {
  const app: Application = (_environ, startResponse) => {
    const write = startResponse("200 OK", [
      ["Content-Type", "text/plain"],
      ["Content-Length", "11"],
    ]);
    write(bytes("hello "));
    write(bytes("world"));
    return [];
  };
  const served = await serve(app);
  assert.equal(served.body, "hello world");
  assert.equal(served.errors, "");
});

Deno.test("validator() passes a FileWrapper result and closes the file", async () => {
  let offset = 0;
  let fileClosed = false;
  const data = bytes("abcdefgh");
  const file = {
    read(size: number) {
      const chunk = data.subarray(offset, offset + size);
      offset += chunk.length;
      return chunk;
    },
    close() {
      fileClosed = true;
    },
  };
  const app: Application = (environ, startResponse) => {
    startResponse("200 OK", [["Content-Type", "application/octet-stream"]]);
    const Wrapper = environ["wsgi.file_wrapper"]!;
    return new Wrapper(file, 3);
  };
  const served = await serve(
    app,
    makeEnviron({ "wsgi.file_wrapper": FileWrapper }),
  );
  assert.equal(served.body, "abcdefgh");
  assert.equal(fileClosed, true);
  assert.equal(served.errors, "");
});

Deno.test("validator() passes a POST app reading exactly CONTENT_LENGTH bytes", async () => {
  const body = bytes("name=ada&lang=ts");
  const app: Application = (environ, startResponse) => {
    const length = Number(environ.CONTENT_LENGTH);
    const first = environ["wsgi.input"]!.read(4);
    const rest = environ["wsgi.input"]!.read(length - 4);
    startResponse("200 OK", TEXT);
    return [first, rest];
  };
  const served = await serve(
    app,
    makeEnviron({
      REQUEST_METHOD: "POST",
      CONTENT_TYPE: "application/x-www-form-urlencoded",
      CONTENT_LENGTH: String(body.length),
      "wsgi.input": new BytesInput(body),
    }),
  );
  assert.equal(served.body, "name=ada&lang=ts");
  assert.equal(served.errors, "");
});

Deno.test("validator() passes an app on an environ from setupTestingDefaults()", async () => {
  const environ: Environ = { QUERY_STRING: "" };
  setupTestingDefaults(environ);
  const served = await serve(hello, environ);
  assert.equal(served.body, "Hello");
  assert.equal(served.errors, "");
});

Deno.test("validator() passes bodiless responses: HEAD, 1xx, 204 and 304", async (t) => {
  const rows: [string, string, HeaderList][] = [
    ["HEAD", "200 OK", [["Content-Type", "text/plain"], [
      "Content-Length",
      "5",
    ]]],
    ["GET", "204 No Content", []],
    ["GET", "204 No Content", [["Content-Length", "0"]]],
    ["GET", "304 Not Modified", [["Content-Length", "1234"], ["ETag", '"x"']]],
    ["GET", "100 Continue", []],
  ];
  for (const [method, status, headers] of rows) {
    await t.step(`${method} ${status} ${JSON.stringify(headers)}`, async () => {
      const app: Application = (_environ, startResponse) => {
        startResponse(status, headers);
        return [new Uint8Array(0)];
      };
      const served = await serve(app, makeEnviron({ REQUEST_METHOD: method }));
      assert.equal(served.status, status);
      assert.equal(served.body, "");
      assert.equal(served.errors, "");
    });
  }
});

Deno.test("validator() lets an app replace its status with excInfo before the body", async () => {
  const app: Application = (_environ, startResponse) => {
    startResponse("200 OK", TEXT);
    try {
      throw new Error("boom");
    } catch (error) {
      startResponse("500 Internal Server Error", TEXT, error);
    }
    return [bytes("failed")];
  };
  const served = await serve(app);
  assert.equal(served.status, "500 Internal Server Error");
  assert.equal(served.body, "failed");
});

Deno.test("validator() accepts a tab in a header value and token punctuation in names", async () => {
  const app: Application = (_environ, startResponse) => {
    startResponse("200 OK", [
      ["Content-Type", "text/plain"],
      ["X-Tab", "a\tb"],
      ["X.Odd!Name~", "v"],
      ["X-Latin", "caf\u00e9"],
    ]);
    return [];
  };
  const served = await serve(app);
  assert.equal(served.status, "200 OK");
  assert.equal(served.errors, "");
});

Deno.test("validator() lets the app's own errors through unchanged", async () => {
  const boom = new RangeError("app bug");
  const app: Application = () => {
    throw boom;
  };
  const { startResponse } = fakeServer();
  assert.throws(
    () => validator(app)(makeEnviron(), startResponse),
    (e) => e === boom,
  );
  const asyncApp: Application = () => Promise.reject(boom);
  await assert.rejects(
    Promise.resolve(validator(asyncApp)(makeEnviron(), startResponse)),
    (e) => e === boom,
  );
});

// --- The server's call: environ ------------------------------------------

Deno.test("validator() checks how it is called (server side)", () => {
  const app = validator(hello);
  const { startResponse } = fakeServer();
  const call = app as unknown as (...args: unknown[]) => unknown;
  throwsAssertion(() => call(makeEnviron()), "Two arguments required (got 1)");
  throwsAssertion(
    () => call(makeEnviron(), startResponse, {}),
    "Two arguments required (got 3)",
  );
  throwsAssertion(
    () => call(makeEnviron(), "start"),
    "start_response must be a function (got 'start')",
  );
});

class CustomEnviron {}

Deno.test("validator() refuses an environ that is not a plain object", async (t) => {
  const rows: [string, unknown, string][] = [
    [
      "a Map",
      new Map(),
      "Environment is not of the right type: Map (environment: <Map object>)",
    ],
    [
      "null",
      null,
      "Environment is not of the right type: null (environment: None)",
    ],
    [
      "a string",
      "GET /",
      "Environment is not of the right type: string (environment: 'GET /')",
    ],
    [
      "an array",
      [],
      "Environment is not of the right type: array (environment: ())",
    ],
    [
      "a class instance",
      new CustomEnviron(),
      "Environment is not of the right type: CustomEnviron (environment: <CustomEnviron object>)",
    ],
  ];
  for (const [name, environ, message] of rows) {
    await t.step(name, () => {
      const { startResponse } = fakeServer();
      throwsAssertion(
        () => validator(hello)(environ as Environ, startResponse),
        message,
      );
    });
  }
});

Deno.test("validator() refuses a broken environ before calling the app", async (t) => {
  const rows: [string, (env: Record<string, unknown>) => unknown, string][] = [
    ...[
      "REQUEST_METHOD",
      "SERVER_NAME",
      "SERVER_PORT",
      "SERVER_PROTOCOL",
      "wsgi.version",
      "wsgi.input",
      "wsgi.errors",
      "wsgi.multithread",
      "wsgi.multiprocess",
      "wsgi.run_once",
      "wsgi.url_scheme",
    ].map((
      key,
    ): [string, (env: Record<string, unknown>) => unknown, string] => [
      `no ${key}`,
      (env) => delete env[key],
      `Environment missing required key: '${key}'`,
    ]),
    [
      "HTTP_CONTENT_TYPE",
      (env) => (env.HTTP_CONTENT_TYPE = "text/plain"),
      "Environment should not have the key: HTTP_CONTENT_TYPE (use CONTENT_TYPE instead); value: 'text/plain'",
    ],
    [
      "HTTP_CONTENT_LENGTH",
      (env) => (env.HTTP_CONTENT_LENGTH = "5"),
      "Environment should not have the key: HTTP_CONTENT_LENGTH (use CONTENT_LENGTH instead); value: '5'",
    ],
    [
      "a number PATH_INFO",
      (env) => (env.PATH_INFO = 5),
      "Environmental variable PATH_INFO is not a string: number (value: 5)",
    ],
    [
      "an undefined CGI variable",
      (env) => (env.HTTP_X = undefined),
      "Environmental variable HTTP_X is not a string: undefined (value: None)",
    ],
    [
      "bytes as QUERY_STRING",
      (env) => (env.QUERY_STRING = bytes("a=1")),
      "Environmental variable QUERY_STRING is not a string: Uint8Array (value: b'a=1')",
    ],
    [
      "a non-latin-1 PATH_INFO",
      (env) => (env.PATH_INFO = "/\u20ac"),
      "Environmental variable PATH_INFO is not a latin-1 string: '/\u20ac'",
    ],
    [
      "a non-latin-1 header value",
      (env) => (env.HTTP_USER_AGENT = "\u{1F600}"),
      "Environmental variable HTTP_USER_AGENT is not a latin-1 string: '\u{1F600}'",
    ],
    [
      "a non-latin-1 variable name",
      (env) => (env["HTTP_\u0100"] = "x"),
      "Environmental variable name is not latin-1: 'HTTP_\u0100'",
    ],
    [
      "wsgi.version as a string",
      (env) => (env["wsgi.version"] = "1.0"),
      "wsgi.version should be a tuple like [1, 0] (got '1.0')",
    ],
    [
      "wsgi.version [2, 0]",
      (env) => (env["wsgi.version"] = [2, 0]),
      "wsgi.version should be a tuple like [1, 0] (got (2, 0))",
    ],
    [
      "wsgi.version [1]",
      (env) => (env["wsgi.version"] = [1]),
      "wsgi.version should be a tuple like [1, 0] (got (1,))",
    ],
    [
      "wsgi.url_scheme ftp",
      (env) => (env["wsgi.url_scheme"] = "ftp"),
      "wsgi.url_scheme unknown: 'ftp'",
    ],
    [
      "wsgi.url_scheme HTTP",
      (env) => (env["wsgi.url_scheme"] = "HTTP"),
      "wsgi.url_scheme unknown: 'HTTP'",
    ],
    [
      "wsgi.input without readlines",
      (
        env,
      ) => (env["wsgi.input"] = {
        read() {},
        readline() {},
        [Symbol.iterator]() {},
      }),
      "wsgi.input (<Object object>) doesn't have the attribute readlines",
    ],
    [
      "wsgi.input not iterable",
      (
        env,
      ) => (env["wsgi.input"] = { read() {}, readline() {}, readlines() {} }),
      "wsgi.input (<Object object>) doesn't have the attribute [Symbol.iterator]",
    ],
    [
      "wsgi.input as bytes",
      (env) => (env["wsgi.input"] = bytes("x")),
      "wsgi.input (b'x') doesn't have the attribute read",
    ],
    [
      "wsgi.input null",
      (env) => (env["wsgi.input"] = null),
      "wsgi.input (None) doesn't have the attribute read",
    ],
    [
      "wsgi.errors without writelines",
      (env) => (env["wsgi.errors"] = { write() {}, flush() {} }),
      "wsgi.errors (<Object object>) doesn't have the attribute writelines",
    ],
    [
      "wsgi.errors as Deno.stderr",
      (env) => (env["wsgi.errors"] = Deno.stderr),
      "wsgi.errors (<Stderr object>) doesn't have the attribute flush",
    ],
    [
      "wsgi.multithread as 0",
      (env) => (env["wsgi.multithread"] = 0),
      "wsgi.multithread must be a boolean (got 0)",
    ],
    [
      "wsgi.run_once as 'false'",
      (env) => (env["wsgi.run_once"] = "false"),
      "wsgi.run_once must be a boolean (got 'false')",
    ],
    [
      "wsgi.file_wrapper as a string",
      (env) => (env["wsgi.file_wrapper"] = "FileWrapper"),
      "wsgi.file_wrapper must be a class (got 'FileWrapper')",
    ],
    [
      "an empty REQUEST_METHOD",
      (env) => (env.REQUEST_METHOD = ""),
      "Invalid REQUEST_METHOD: ''",
    ],
    [
      "a REQUEST_METHOD with a space",
      (env) => (env.REQUEST_METHOD = "GET /"),
      "Invalid REQUEST_METHOD: 'GET /'",
    ],
    [
      "a REQUEST_METHOD with CR LF",
      (env) => (env.REQUEST_METHOD = "GET\r\nX"),
      "Invalid REQUEST_METHOD: 'GET\\r\\nX'",
    ],
    [
      "an empty SERVER_NAME",
      (env) => (env.SERVER_NAME = ""),
      "SERVER_NAME must not be empty",
    ],
    [
      "a SERVER_PORT of letters",
      (env) => (env.SERVER_PORT = "http"),
      "SERVER_PORT must be a port number: 'http'",
    ],
    [
      "SCRIPT_NAME without a slash",
      (env) => (env.SCRIPT_NAME = "app"),
      "SCRIPT_NAME doesn't start with /: 'app'",
    ],
    [
      "PATH_INFO without a slash",
      (env) => (env.PATH_INFO = "x/y"),
      "PATH_INFO doesn't start with /: 'x/y'",
    ],
    [
      "a negative CONTENT_LENGTH",
      (env) => (env.CONTENT_LENGTH = "-1"),
      "Invalid CONTENT_LENGTH: '-1'",
    ],
    [
      "a CONTENT_LENGTH of letters",
      (env) => (env.CONTENT_LENGTH = "ten"),
      "Invalid CONTENT_LENGTH: 'ten'",
    ],
    [
      "a CONTENT_LENGTH in exponent form",
      (env) => (env.CONTENT_LENGTH = "1e3"),
      "Invalid CONTENT_LENGTH: '1e3'",
    ],
    [
      "a CONTENT_LENGTH with spaces",
      (env) => (env.CONTENT_LENGTH = " 5"),
      "Invalid CONTENT_LENGTH: ' 5'",
    ],
    [
      "SCRIPT_NAME and PATH_INFO both empty",
      (env) => (env.PATH_INFO = ""),
      "One of SCRIPT_NAME or PATH_INFO are required (PATH_INFO should at least be '/' if SCRIPT_NAME is empty)",
    ],
    [
      "SCRIPT_NAME and PATH_INFO both absent",
      (env) => (delete env.SCRIPT_NAME, delete env.PATH_INFO),
      "One of SCRIPT_NAME or PATH_INFO are required (PATH_INFO should at least be '/' if SCRIPT_NAME is empty)",
    ],
    [
      "SCRIPT_NAME '/'",
      (env) => (env.SCRIPT_NAME = "/"),
      "SCRIPT_NAME cannot be '/'; it should instead be '', and PATH_INFO should be '/'",
    ],
    [
      "a closed wsgi.input",
      (
        env,
      ) => (env["wsgi.input"] = Object.assign(new BytesInput(), {
        closed: true,
      })),
      "wsgi.input is closed: neither the server nor the application may close it before the response is over",
    ],
    [
      "a closed wsgi.errors",
      (
        env,
      ) => (env["wsgi.errors"] = Object.assign(new StringErrorStream(), {
        closed: true,
      })),
      "wsgi.errors is closed: neither the server nor the application may close it before the response is over",
    ],
  ];
  for (const [name, breakIt, message] of rows) {
    await t.step(name, () => {
      const env = makeEnviron() as Record<string, unknown>;
      breakIt(env);
      let called = false;
      const app = validator((environ, startResponse) => {
        called = true;
        return hello(environ, startResponse);
      });
      const { startResponse } = fakeServer();
      throwsAssertion(() => app(env as Environ, startResponse), message);
      assert.equal(called, false, "the app must not run");
    });
  }
});

Deno.test("validator() accepts extension keys of any type and an empty PATH_INFO under a SCRIPT_NAME", async () => {
  const served = await serve(
    hello,
    makeEnviron({
      "myserver.socket": 42,
      "wsgi.input_terminated": true,
      SCRIPT_NAME: "/app",
      PATH_INFO: "",
      CONTENT_LENGTH: "",
    }),
  );
  assert.equal(served.body, "Hello");
  assert.equal(served.errors, "");
});

Deno.test("validator() accepts a null-prototype environ", async () => {
  const environ = Object.assign(Object.create(null), makeEnviron()) as Environ;
  const served = await serve(hello, environ);
  assert.equal(served.body, "Hello");
});

Deno.test("validator() warns about a missing QUERY_STRING", async () => {
  const environ = makeEnviron();
  delete environ.QUERY_STRING;
  const served = await serve(hello, environ);
  assert.equal(served.body, "Hello");
  assert.equal(
    served.errors,
    "WSGIWarning: QUERY_STRING is not in the WSGI environment; applications that parse it will find nothing to parse, so application errors are more likely\n",
  );
});

Deno.test("validator() warns about an unknown REQUEST_METHOD", async (t) => {
  for (const method of ["BREW", "get", "CONNECT", "PROPFIND"]) {
    await t.step(method, async () => {
      const served = await serve(
        hello,
        makeEnviron({ REQUEST_METHOD: method }),
      );
      assert.equal(
        served.errors,
        `WSGIWarning: Unknown REQUEST_METHOD: '${method}'\n`,
      );
    });
  }
  await t.step("known methods do not warn", async () => {
    for (
      const method of [
        "GET",
        "POST",
        "PUT",
        "PATCH",
        "DELETE",
        "OPTIONS",
        "TRACE",
      ]
    ) {
      const served = await serve(
        hello,
        makeEnviron({ REQUEST_METHOD: method }),
      );
      assert.equal(served.errors, "", method);
    }
  });
});

// --- The application's calls: startResponse ------------------------------

/** Run an app that calls startResponse(...args) and expect `message`. */
function expectStartFailure(
  args: unknown[],
  message: string,
  method = "GET",
): void {
  let serverCalled = false;
  const app = validator((_environ, startResponse) => {
    (startResponse as (...a: unknown[]) => unknown)(...args);
    return [];
  });
  const startResponse: StartResponse = () => {
    serverCalled = true;
    return () => {};
  };
  throwsAssertion(
    () => app(makeEnviron({ REQUEST_METHOD: method }), startResponse),
    message,
  );
  assert.equal(serverCalled, false, "the server must not see a refused call");
}

Deno.test("startResponse() refuses the wrong number of arguments", async (t) => {
  await t.step(
    "one",
    () =>
      expectStartFailure(
        ["200 OK"],
        "Invalid number of arguments: ('200 OK',)",
      ),
  );
  await t.step(
    "none",
    () => expectStartFailure([], "Invalid number of arguments: ()"),
  );
  await t.step("four", () =>
    expectStartFailure(
      ["200 OK", TEXT, null, "extra"],
      "Invalid number of arguments: ('200 OK', (('Content-Type', 'text/plain'),), None, 'extra')",
    ));
});

Deno.test("startResponse() refuses a malformed status", async (t) => {
  const rows: [unknown, string][] = [
    [200, "Status must be of type str (got 200)"],
    [null, "Status must be of type str (got None)"],
    [bytes("200 OK"), "Status must be of type str (got b'200 OK')"],
    ["", "Status must be at least 4 characters: ''"],
    ["200", "Status must be at least 4 characters: '200'"],
    ["2000 OK", "Status codes must be three characters: '2000'"],
    ["20 OK", "Status codes must be three characters: '20'"],
    ["abc OK", "Status message must begin w/3-digit code: 'abc OK'"],
    ["OK 200", "Status message must begin w/3-digit code: 'OK 200'"],
    [" 200 OK", "Status message must begin w/3-digit code: ' 200 OK'"],
    ["2x0 OK", "Status message must begin w/3-digit code: '2x0 OK'"],
    ["099 Low", "Status code is invalid: 99 (status: '099 Low')"],
    ["000 Zero", "Status code is invalid: 0 (status: '000 Zero')"],
    ["200OK", "Status message must have a space after code: '200OK'"],
    ["200-OK", "Status message must have a space after code: '200-OK'"],
    [
      "200 ",
      "The status string ('200 ') should be a three-digit integer followed by a single space and a status explanation",
    ],
    [
      "200    ",
      "The status string ('200    ') should be a three-digit integer followed by a single space and a status explanation",
    ],
    [
      "200 OK\r\nSet-Cookie: a=b",
      "Status contains control character \"\\r\" at index 6: '200 OK\\r\\nSet-Cookie: a=b'",
    ],
    [
      "200 OK\n",
      "Status contains control character \"\\n\" at index 6: '200 OK\\n'",
    ],
    [
      "200 O\x00K",
      "Status contains control character \"\\u0000\" at index 5: '200 O\\x00K'",
    ],
    [
      "200 O\tK",
      "Status contains control character \"\\t\" at index 5: '200 O\\tK'",
    ],
    [
      "200 \u20ac",
      "Status contains character \"\u20ac\" at index 4, which is not latin-1: '200 \u20ac'",
    ],
  ];
  for (const [status, message] of rows) {
    await t.step(
      JSON.stringify(status) ?? String(status),
      () => expectStartFailure([status, TEXT], message),
    );
  }
});

Deno.test("startResponse() accepts statuses from 100 to 999 with a reason", async (t) => {
  for (
    const status of [
      "200 OK",
      "404 Not Found",
      "599 Custom",
      "999 Whatever",
      "200 O K",
      "200 caf\u00e9",
    ]
  ) {
    await t.step(status, async () => {
      const served = await serve((_environ, startResponse) => {
        startResponse(status, TEXT);
        return [];
      });
      assert.equal(served.status, status);
    });
  }
});

Deno.test("startResponse() refuses malformed headers", async (t) => {
  const big = "x".repeat(200_000);
  const rows: [string, unknown, string][] = [
    [
      "an object",
      { "Content-Type": "text/plain" },
      "Headers (<Object object>) must be of type list: object",
    ],
    [
      "a web Headers",
      new globalThis.Headers(),
      "Headers (<Headers object>) must be of type list: Headers",
    ],
    [
      "a string line",
      ["Content-Type: text/plain"],
      "Individual headers ('Content-Type: text/plain') must be of type tuple (a [name, value] array): string",
    ],
    [
      "a one-item pair",
      [["Content-Type"]],
      "Individual headers (('Content-Type',)) must be [name, value] pairs, not 1 items",
    ],
    [
      "a three-item pair",
      [["Content-Type", "text/plain", "x"]],
      "Individual headers (('Content-Type', 'text/plain', 'x')) must be [name, value] pairs, not 3 items",
    ],
    ["a number name", [[1, "x"]], "Header name must be of type str (got 1)"],
    [
      "a number value",
      [["Content-Type", "text/plain"], ["Content-Length", 5]],
      "Header value must be of type str (got 5)",
    ],
    [
      "a Status header",
      [["Content-Type", "text/plain"], ["status", "200 OK"]],
      "The Status header cannot be used; it conflicts with CGI script, and HTTP status is not given through headers (value: '200 OK').",
    ],
    [
      "a colon in a name",
      [["X-A:b", "c"]],
      "Header names may not contain ':' or '\\n': 'X-A:b'",
    ],
    [
      "a newline in a name",
      [["X-A\nb", "c"]],
      "Header names may not contain ':' or '\\n': 'X-A\\nb'",
    ],
    ["a space in a name", [["X A", "c"]], "Bad header name: 'X A'"],
    ["a CR in a name", [["X-A\r", "c"]], "Bad header name: 'X-A\\r'"],
    ["an empty name", [["", "c"]], "Bad header name: ''"],
    ["a non-latin-1 name", [["X-\u00e9", "c"]], "Bad header name: 'X-\u00e9'"],
    [
      "a name ending in -",
      [["X-", "c"]],
      "Names may not end in '-' or '_': 'X-'",
    ],
    [
      "a name ending in _",
      [["X_", "c"]],
      "Names may not end in '-' or '_': 'X_'",
    ],
    [
      "CR LF in a value",
      [["Content-Type", "text/plain"], ["X-A", "b\r\nSet-Cookie: x"]],
      "Bad header value: 'b\\r\\nSet-Cookie: x' (value contains control character \"\\r\" at index 1)",
    ],
    [
      "NUL in a value",
      [["X-A", "\x00"]],
      "Bad header value: '\\x00' (value contains control character \"\\u0000\" at index 0)",
    ],
    [
      "DEL in a value",
      [["X-A", "a\x7f"]],
      "Bad header value: 'a\\x7f' (value contains control character \"\x7f\" at index 1)",
    ],
    [
      "a non-latin-1 value",
      [["X-A", "\u20ac"]],
      "Bad header value: '\u20ac' (value contains character \"\u20ac\" at index 0, which is not latin-1)",
    ],
    [
      "a huge value with a control character",
      [["X-A", big + "\n"]],
      `Bad header value: '${
        "x".repeat(196)
      }... (value contains control character "\\n" at index 200000)`,
    ],
    [
      "Connection",
      [["Content-Type", "text/plain"], ["Connection", "close"]],
      "Hop-by-hop header, 'Connection: close', not allowed",
    ],
    ["Transfer-Encoding", [["Content-Type", "text/plain"], [
      "transfer-encoding",
      "chunked",
    ]], "Hop-by-hop header, 'transfer-encoding: chunked', not allowed"],
    ["Keep-Alive", [["Content-Type", "text/plain"], [
      "Keep-Alive",
      "timeout=5",
    ]], "Hop-by-hop header, 'Keep-Alive: timeout=5', not allowed"],
    [
      "Upgrade",
      [["Content-Type", "text/plain"], ["UPGRADE", "websocket"]],
      "Hop-by-hop header, 'UPGRADE: websocket', not allowed",
    ],
    [
      "TE",
      [["Content-Type", "text/plain"], ["TE", "trailers"]],
      "Hop-by-hop header, 'TE: trailers', not allowed",
    ],
    ["an invalid Content-Length", [["Content-Type", "text/plain"], [
      "Content-Length",
      "-1",
    ]], "Invalid Content-Length header: '-1'"],
    ["an empty Content-Length", [["Content-Type", "text/plain"], [
      "Content-Length",
      "",
    ]], "Invalid Content-Length header: ''"],
    [
      "two Content-Length headers",
      [["Content-Type", "text/plain"], ["Content-Length", "1"], [
        "content-length",
        "1",
      ]],
      "Content-Length header given more than once: '1' and '1'",
    ],
  ];
  for (const [name, headers, message] of rows) {
    await t.step(name, () => expectStartFailure(["200 OK", headers], message));
  }
});

Deno.test("startResponse() checks Content-Type and Content-Length against the status", async (t) => {
  const rows: [string, HeaderList, string][] = [
    ["200 OK", [], "No Content-Type header found in headers ([])"],
    [
      "404 Not Found",
      [["X-A", "b"], ["Content-Length", "0"]],
      "No Content-Type header found in headers ([('X-A', 'b'), ('Content-Length', '0')])",
    ],
    [
      "204 No Content",
      [["Content-Type", "text/plain"]],
      "Content-Type header found in a 204 response, which must not return content.",
    ],
    [
      "304 Not Modified",
      [["content-type", "text/plain"]],
      "Content-Type header found in a 304 response, which must not return content.",
    ],
    [
      "101 Switching Protocols",
      [["Content-Type", "text/plain"]],
      "Content-Type header found in a 101 response, which must not return content.",
    ],
    [
      "204 No Content",
      [["Content-Length", "5"]],
      "Content-Length header found in a 204 response, which must not return content: '5' (only '0' is allowed)",
    ],
    [
      "100 Continue",
      [["Content-Length", "1"]],
      "Content-Length header found in a 100 response, which must not return content: '1' (only '0' is allowed)",
    ],
  ];
  for (const [status, headers, message] of rows) {
    await t.step(
      `${status} ${JSON.stringify(headers)}`,
      () => expectStartFailure([status, headers], message),
    );
  }
});

Deno.test("startResponse() may be called again only with excInfo", () => {
  const app = validator((_environ, startResponse) => {
    startResponse("200 OK", TEXT);
    startResponse("500 Internal Server Error", TEXT);
    return [];
  });
  const { rec, startResponse } = fakeServer();
  throwsAssertion(
    () => app(makeEnviron(), startResponse),
    "Headers already set! start_response() may be called again only with excInfo: '500 Internal Server Error'",
  );
  assert.equal(rec.starts, 1);
  assert.equal(rec.status, "200 OK");
});

Deno.test("startResponse() with excInfo after the body started must throw (server side)", async (t) => {
  const appThatFails = (): Application => (_environ, startResponse) => {
    const write = startResponse("200 OK", TEXT);
    write(bytes("partial"));
    startResponse("500 Internal Server Error", TEXT, new Error("late"));
    return [];
  };
  await t.step("a server that rethrows excInfo is compliant", () => {
    const { startResponse } = fakeServer();
    assert.throws(
      () => validator(appThatFails())(makeEnviron(), startResponse),
      new Error("late"),
    );
  });
  await t.step("a server that returns breaks the rule", () => {
    const laxServer: StartResponse = () => () => {};
    throwsAssertion(
      () => validator(appThatFails())(makeEnviron(), laxServer),
      "start_response() called with excInfo after the body started must throw (rethrow excInfo), but the server returned",
    );
  });
});

Deno.test("startResponse() must return a write() callable (server side)", () => {
  const broken = (() => undefined) as unknown as StartResponse;
  throwsAssertion(
    () => validator(hello)(makeEnviron(), broken),
    "start_response() must return a write() callable (got None)",
  );
});

Deno.test("startResponse() refuses a call after the result was closed", () => {
  let later: StartResponse | null = null;
  const app = validator((_environ, startResponse) => {
    startResponse("200 OK", TEXT);
    later = startResponse;
    return [];
  });
  const { startResponse } = fakeServer();
  const result = app(makeEnviron(), startResponse) as
    & Closable
    & Iterable<Uint8Array>;
  assert.deepEqual([...result], []);
  result.close();
  throwsAssertion(
    () => later!("500 Error", TEXT, new Error("x")),
    "start_response() called after the response was closed: '500 Error'",
  );
});

// --- The application's calls: write() -------------------------------------

Deno.test("write() refuses anything but one Uint8Array", async (t) => {
  const rows: [unknown[], string][] = [
    [["text"], "write() argument must be a bytestring (Uint8Array): 'text'"],
    [
      [[104, 105]],
      "write() argument must be a bytestring (Uint8Array): (104, 105)",
    ],
    [
      [new ArrayBuffer(2)],
      "write() argument must be a bytestring (Uint8Array): <ArrayBuffer object>",
    ],
    [
      [new Uint16Array(2)],
      "write() argument must be a bytestring (Uint8Array): <Uint16Array object>",
    ],
    [[null], "write() argument must be a bytestring (Uint8Array): None"],
    [[], "write() takes exactly one argument (got 0)"],
    [[bytes("a"), bytes("b")], "write() takes exactly one argument (got 2)"],
  ];
  for (const [args, message] of rows) {
    await t.step(message, () => {
      const { rec, startResponse } = fakeServer();
      const app = validator((_environ, startResponse) => {
        const write = startResponse("200 OK", TEXT);
        (write as (...a: unknown[]) => void)(...args);
        return [];
      });
      throwsAssertion(() => app(makeEnviron(), startResponse), message);
      assert.deepEqual(rec.written, []);
    });
  }
});

Deno.test("write() refuses a call after the result was closed", () => {
  let write: Write | null = null;
  const app = validator((_environ, startResponse) => {
    write = startResponse("200 OK", TEXT);
    return [];
  });
  const { rec, startResponse } = fakeServer();
  const result = app(makeEnviron(), startResponse) as
    & Closable
    & Iterable<Uint8Array>;
  [...result];
  result.close();
  throwsAssertion(
    () => write!(bytes("late")),
    "write() called after the response was closed",
  );
  assert.deepEqual(rec.written, []);
});

// --- The result ------------------------------------------------------------

/** An app that starts a text response and returns `result`. */
function returning(result: unknown): Application {
  return (_environ, startResponse) => {
    startResponse("200 OK", TEXT);
    return result as ResponseBody;
  };
}

Deno.test("validator() refuses a result that is not an iterable of chunks", async (t) => {
  const notIterable =
    "The application must return an iterator, if only an empty list";
  const stringResult =
    "You should not return a string as your application iterator, instead return a single-item list containing a bytestring.";
  const rows: [string, unknown, string][] = [
    ["undefined", undefined, `${notIterable} (got None)`],
    ["null", null, `${notIterable} (got None)`],
    ["false", false, `${notIterable} (got False)`],
    ["a number", 42, `${notIterable} (got 42)`],
    [
      "a plain object",
      { chunk: bytes("x") },
      `${notIterable} (got <Object object>)`,
    ],
    ["a Response", new Response("x"), `${notIterable} (got <Response object>)`],
    ["a string", "Hello", `${stringResult} (got 'Hello')`],
    ["a Uint8Array", bytes("Hello"), `${stringResult} (got b'Hello')`],
    [
      "a close that is not a function",
      Object.assign([bytes("x")], { close: "yes" }),
      "The application's result has a close property that is not a function: 'yes'",
    ],
  ];
  for (const [name, result, message] of rows) {
    await t.step(name, async () => {
      const { startResponse } = fakeServer();
      throwsAssertion(
        () => validator(returning(result))(makeEnviron(), startResponse),
        message,
      );
      await rejectsAssertion(
        Promise.resolve(
          validator(async (e, s) => await returning(result)(e, s))(
            makeEnviron(),
            startResponse,
          ),
        ),
        message,
      );
    });
  }
});

Deno.test("validator() refuses a chunk that is not a Uint8Array", async (t) => {
  const rows: [unknown, string][] = [
    ["text", "Iterator yielded non-bytestring ('text')"],
    [104, "Iterator yielded non-bytestring (104)"],
    [null, "Iterator yielded non-bytestring (None)"],
    [
      new ArrayBuffer(1),
      "Iterator yielded non-bytestring (<ArrayBuffer object>)",
    ],
    [
      Promise.resolve(bytes("x")),
      "Iterator yielded non-bytestring (<Promise object>)",
    ],
  ];
  for (const [chunk, message] of rows) {
    await t.step(message, async () => {
      const { startResponse } = fakeServer();
      const result = validator(returning([bytes("ok"), chunk]))(
        makeEnviron(),
        startResponse,
      ) as Closable & Iterator<Uint8Array>;
      assert.equal(decoder.decode(result.next().value), "ok");
      throwsAssertion(() => result.next(), message);
      result.close();
      // A hand-made async iterator: an async generator would await a
      // yielded promise.
      const asyncResult = validator(returning({
        [Symbol.asyncIterator]: () => ({
          next: () => Promise.resolve({ done: false, value: chunk }),
        }),
      }))(makeEnviron(), startResponse) as Closable & AsyncIterator<Uint8Array>;
      await rejectsAssertion(asyncResult.next(), message);
      await asyncResult.close();
    });
  }
});

Deno.test("validator() refuses an iterator whose next() returns no result object", () => {
  const weird = { [Symbol.iterator]: () => ({ next: () => 5 }) };
  const { startResponse } = fakeServer();
  const result = validator(returning(weird))(makeEnviron(), startResponse) as
    & Closable
    & Iterator<Uint8Array>;
  throwsAssertion(
    () => result.next(),
    "The result's iterator must return an iterator result object, not 5",
  );
  result.close();
  const noNext = { [Symbol.iterator]: () => ({}) };
  const result2 = validator(returning(noNext))(makeEnviron(), startResponse) as
    & Closable
    & Iterator<Uint8Array>;
  throwsAssertion(
    () => result2.next(),
    "The application's result must give an iterator with next() (got <Object object>)",
  );
  result2.close();
});

const NOT_STARTED =
  "The application returns and we started iterating over its body, but start_response has not yet been called";

Deno.test("validator() refuses a body chunk before startResponse()", () => {
  const { startResponse } = fakeServer();
  const forgetful: Application = () => [bytes("x")];
  const result = validator(forgetful)(makeEnviron(), startResponse) as
    & Closable
    & Iterator<Uint8Array>;
  throwsAssertion(() => result.next(), NOT_STARTED);
  result.close();
});

Deno.test("validator() refuses an empty body that ends before startResponse()", async () => {
  const { startResponse } = fakeServer();
  const result = validator(() => [])(makeEnviron(), startResponse) as
    & Closable
    & Iterator<Uint8Array>;
  throwsAssertion(() => result.next(), NOT_STARTED);
  result.close();
  const asyncResult = await validator(() =>
    Promise.resolve({
      async *[Symbol.asyncIterator]() {},
    })
  )(makeEnviron(), startResponse) as Closable & AsyncIterator<Uint8Array>;
  await rejectsAssertion(asyncResult.next(), NOT_STARTED);
  await asyncResult.close();
});

Deno.test("validator() refuses iteration after close() (server side)", async () => {
  const { startResponse } = fakeServer();
  const result = validator(returning([bytes("a"), bytes("b")]))(
    makeEnviron(),
    startResponse,
  ) as Closable & Iterator<Uint8Array>;
  result.next();
  result.close();
  throwsAssertion(() => result.next(), "Iterator read after closed");
  const asyncResult = validator(returning({
    async *[Symbol.asyncIterator]() {
      yield bytes("a");
    },
  }))(makeEnviron(), startResponse) as Closable & AsyncIterator<Uint8Array>;
  await asyncResult.close();
  await rejectsAssertion(asyncResult.next(), "Iterator read after closed");
});

Deno.test("validator() forwards return() to the app's generator when the server breaks off", () => {
  let finished = false;
  const app = function* (_environ: Environ, startResponse: StartResponse) {
    try {
      startResponse("200 OK", TEXT);
      yield bytes("a");
      yield bytes("b");
    } finally {
      finished = true;
    }
  };
  const { startResponse } = fakeServer();
  const result = validator(app)(makeEnviron(), startResponse) as
    & Closable
    & Iterable<Uint8Array>;
  for (const _chunk of result) break;
  assert.equal(finished, true);
  result.close();
});

Deno.test("validator() with strict: true refuses the async extension", async () => {
  const { startResponse } = fakeServer();
  const asyncApp: Application = async (environ, startResponse) =>
    await hello(environ, startResponse);
  throwsAssertion(
    () => validator(asyncApp, { strict: true })(makeEnviron(), startResponse),
    "validator(app, { strict: true }) refuses an application that returns a Promise",
  );
  const asyncIterable = {
    async *[Symbol.asyncIterator]() {
      yield bytes("x");
    },
  };
  throwsAssertion(
    () =>
      validator(returning(asyncIterable), { strict: true })(
        makeEnviron(),
        startResponse,
      ),
    "validator(app, { strict: true }) refuses an AsyncIterable result: <Object object>",
  );
  const served = await serve(hello, makeEnviron(), { strict: true });
  assert.equal(served.body, "Hello");
  // A rejected promise refused by strict mode must not surface as unhandled.
  const failing: Application = () => Promise.reject(new Error("never seen"));
  throwsAssertion(
    () => validator(failing, { strict: true })(makeEnviron(), startResponse),
    "validator(app, { strict: true }) refuses an application that returns a Promise",
  );
  await new Promise((resolve) => setTimeout(resolve, 0));
});

// --- Response-level rules (Rack::Lint, Werkzeug lint) --------------------

/** Run `app` to the end and expect `message` from the result's iterator. */
async function expectBodyFailure(
  app: Application,
  message: string,
  method = "GET",
): Promise<void> {
  const { startResponse } = fakeServer();
  const errors = new StringErrorStream();
  await assert.rejects(
    async () => {
      const result = await validator(app)(
        makeEnviron({ REQUEST_METHOD: method, "wsgi.errors": errors }),
        startResponse,
      );
      try {
        if (Symbol.iterator in result) {
          for (const _ of result as Iterable<Uint8Array>);
        } else {
          for await (const _ of result as AsyncIterable<Uint8Array>);
        }
      } finally {
        await (result as Closable).close();
      }
    },
    (error: unknown) => {
      assert.ok(error instanceof AssertionError, String(error));
      assert.equal(error.message, message);
      return true;
    },
  );
  assert.equal(errors.value, "", "the server closed the result: no warning");
}

function responding(
  status: string,
  headers: HeaderList,
  chunks: string[],
  written: string[] = [],
): Application {
  return (_environ, startResponse) => {
    const write = startResponse(status, headers);
    for (const w of written) write(bytes(w));
    return chunks.map(bytes);
  };
}

Deno.test("validator() checks the body length against Content-Length", async (t) => {
  const withLength = (
    n: string,
  ): HeaderList => [["Content-Type", "text/plain"], ["Content-Length", n]];
  await t.step("longer body", () =>
    expectBodyFailure(
      responding("200 OK", withLength("3"), ["ab", "cd"]),
      "Response body is longer than its Content-Length header ('3'): 4 bytes sent",
    ));
  await t.step("shorter body", () =>
    expectBodyFailure(
      responding("200 OK", withLength("10"), ["ab", "cd"]),
      "Response body is shorter than its Content-Length header ('10'): 4 bytes sent",
    ));
  await t.step("body missing entirely", () =>
    expectBodyFailure(
      responding("200 OK", withLength("1"), []),
      "Response body is shorter than its Content-Length header ('1'): 0 bytes sent",
    ));
  await t.step("write() and chunks count together", () =>
    expectBodyFailure(
      responding("200 OK", withLength("4"), ["cd", "e"], ["ab"]),
      "Response body is longer than its Content-Length header ('4'): 5 bytes sent",
    ));
  await t.step("write() alone past the length", () =>
    expectBodyFailure(
      responding("200 OK", withLength("1"), [], ["ab"]),
      "Response body is longer than its Content-Length header ('1'): 2 bytes sent",
    ));
  await t.step("async body, shorter", () =>
    expectBodyFailure(
      (_environ, startResponse) => {
        startResponse("200 OK", withLength("5"));
        return (async function* () {
          yield bytes("abc");
        })();
      },
      "Response body is shorter than its Content-Length header ('5'): 3 bytes sent",
    ));
  await t.step("exact length passes, written and iterated", async () => {
    const served = await serve(
      responding("200 OK", withLength("5"), ["cd", "e"], ["ab"]),
    );
    assert.equal(served.body, "abcde");
  });
  await t.step("a server that closes early is not blamed", () => {
    const { startResponse } = fakeServer();
    const result = validator(
      responding("200 OK", withLength("10"), ["ab", "cd"]),
    )(makeEnviron(), startResponse) as Closable & Iterator<Uint8Array>;
    result.next();
    result.close();
  });
});

Deno.test("validator() refuses body bytes where none are allowed", async (t) => {
  await t.step("HEAD", () =>
    expectBodyFailure(
      responding("200 OK", TEXT, ["Hello"]),
      "Response body given for a HEAD request, which must not return content: 5 bytes",
      "HEAD",
    ));
  await t.step("HEAD through write()", () =>
    expectBodyFailure(
      responding("200 OK", TEXT, [], ["Hi"]),
      "Response body given for a HEAD request, which must not return content: 2 bytes",
      "HEAD",
    ));
  for (
    const status of [
      "100 Continue",
      "103 Early Hints",
      "204 No Content",
      "304 Not Modified",
    ]
  ) {
    await t.step(status, () =>
      expectBodyFailure(
        responding(status, [], ["", "x"]),
        `Response body given in a ${
          status.slice(0, 3)
        } response, which must not return content: 1 bytes`,
      ));
  }
});

// --- wsgi.input and wsgi.errors ------------------------------------------

/** Run `use(environ)` inside a validated app and return the warnings. */
async function withStreams(
  use: (environ: Environ) => void,
  extra: Record<string, unknown> = {},
): Promise<string> {
  const app: Application = (environ, startResponse) => {
    use(environ);
    startResponse("200 OK", TEXT);
    return [];
  };
  return (await serve(app, makeEnviron(extra))).errors;
}

function postEnviron(body: string): Record<string, unknown> {
  return {
    REQUEST_METHOD: "POST",
    CONTENT_LENGTH: String(bytes(body).length),
    "wsgi.input": new BytesInput(bytes(body)),
  };
}

Deno.test("wsgi.input methods pass data through and check their arguments", async (t) => {
  await t.step("read, readline, readlines, iteration", async () => {
    const seen: string[] = [];
    const warnings = await withStreams((environ) => {
      const input = environ["wsgi.input"]!;
      seen.push(decoder.decode(input.read(2)));
      seen.push(decoder.decode(input.readline()));
      seen.push(decoder.decode(input.readline(2)));
      seen.push(...input.readlines(1).map((l) => decoder.decode(l)));
      seen.push(decoder.decode(input.read(0)));
      seen.push(...[...input].map((l) => decoder.decode(l)));
    }, postEnviron("abcd\nefgh\nij\nkl"));
    assert.deepEqual(seen, ["ab", "cd\n", "ef", "gh\n", "", "ij\n", "kl"]);
    assert.equal(
      warnings,
      "WSGIWarning: wsgi.input read past CONTENT_LENGTH ('15'): the application should not read more than CONTENT_LENGTH bytes\n",
    );
  });
  const rows: [string, (input: InputStream) => unknown, string][] = [
    [
      "read with a string size",
      (i) => i.read("10" as unknown as number),
      "wsgi.input.read() size must be an integer (got '10')",
    ],
    [
      "read with a fraction",
      (i) => i.read(1.5),
      "wsgi.input.read() size must be an integer (got 1.5)",
    ],
    [
      "read with NaN",
      (i) => i.read(NaN),
      "wsgi.input.read() size must be an integer (got NaN)",
    ],
    [
      "read with two arguments",
      (i) => (i.read as (...a: unknown[]) => unknown)(1, 2),
      "wsgi.input.read() takes at most one argument (got 2)",
    ],
    [
      "readline with a string size",
      (i) => i.readline("1" as unknown as number),
      "wsgi.input.readline() size must be an integer (got '1')",
    ],
    [
      "readline with two arguments",
      (i) => (i.readline as (...a: unknown[]) => unknown)(1, 2),
      "wsgi.input.readline() takes at most one argument (got 2)",
    ],
    [
      "readlines with an object hint",
      (i) => i.readlines({} as unknown as number),
      "wsgi.input.readlines() hint must be an integer (got <Object object>)",
    ],
    [
      "readlines with two arguments",
      (i) => (i.readlines as (...a: unknown[]) => unknown)(1, 2),
      "wsgi.input.readlines() takes at most one argument (got 2)",
    ],
    [
      "close",
      (i) => (i as unknown as { close(): void }).close(),
      "input.close() must not be called",
    ],
  ];
  for (const [name, use, message] of rows) {
    await t.step(name, async () => {
      await assert.rejects(
        () =>
          withStreams(
            (environ) => void use(environ["wsgi.input"]!),
            postEnviron("data"),
          ),
        new AssertionError(message),
      );
    });
  }
});

Deno.test("wsgi.input refuses what a broken server returns (server side)", async (t) => {
  const line = (s: string) => bytes(s);
  const fakeInput = (overrides: Partial<Record<string, unknown>>) => ({
    read: () => line(""),
    readline: () => line(""),
    readlines: () => [],
    [Symbol.iterator]: () => [][Symbol.iterator](),
    ...overrides,
  });
  const rows: [
    string,
    Record<string, unknown>,
    (input: InputStream) => unknown,
    string,
  ][] = [
    [
      "read returns a string",
      { read: () => "text" },
      (i) => i.read(4),
      "wsgi.input.read() must return a Uint8Array (got 'text')",
    ],
    [
      "read returns too much",
      { read: () => line("abcdefg") },
      (i) => i.read(5),
      "wsgi.input.read(5) returned 7 bytes, more than asked for",
    ],
    [
      "readline returns null",
      { readline: () => null },
      (i) => i.readline(),
      "wsgi.input.readline() must return Uint8Array lines (got None)",
    ],
    [
      "readline returns two lines",
      { readline: () => line("a\nb\n") },
      (i) => i.readline(),
      "wsgi.input.readline() returned a line with \"\\n\" before its end: b'a\\nb\\n'",
    ],
    [
      "readline returns too much",
      { readline: () => line("abcde") },
      (i) => i.readline(3),
      "wsgi.input.readline(3) returned 5 bytes, more than asked for",
    ],
    [
      "readlines returns a string",
      { readlines: () => "a\nb\n" },
      (i) => i.readlines(),
      "wsgi.input.readlines() must return an array (got 'a\\nb\\n')",
    ],
    [
      "readlines returns strings",
      { readlines: () => ["a\n"] },
      (i) => i.readlines(),
      "wsgi.input.readlines() must return Uint8Array lines (got 'a\\n')",
    ],
    [
      "readlines returns an empty line",
      { readlines: () => [line("a\n"), line("")] },
      (i) => i.readlines(),
      "wsgi.input.readlines() returned an empty line",
    ],
    [
      "iteration yields strings",
      { [Symbol.iterator]: () => ["a\n"][Symbol.iterator]() },
      (i) => [...i],
      "wsgi.input.[Symbol.iterator]() must return Uint8Array lines (got 'a\\n')",
    ],
    [
      "iteration yields an empty line",
      { [Symbol.iterator]: () => [line("")][Symbol.iterator]() },
      (i) => [...i],
      "wsgi.input iteration yielded an empty line",
    ],
    [
      "iteration yields joined lines",
      { [Symbol.iterator]: () => [line("a\nb")][Symbol.iterator]() },
      (i) => [...i],
      "wsgi.input.[Symbol.iterator]() returned a line with \"\\n\" before its end: b'a\\nb'",
    ],
  ];
  for (const [name, overrides, use, message] of rows) {
    await t.step(name, async () => {
      await assert.rejects(
        () =>
          withStreams((environ) => void use(environ["wsgi.input"]!), {
            "wsgi.input": fakeInput(overrides),
            CONTENT_LENGTH: "100",
          }),
        new AssertionError(message),
      );
    });
  }
});

Deno.test("wsgi.input warns about reading past CONTENT_LENGTH", async (t) => {
  const pastWarning = (length: string) =>
    `WSGIWarning: wsgi.input read past CONTENT_LENGTH (${length}): the application should not read more than CONTENT_LENGTH bytes\n`;
  await t.step("read(1) on a request with CONTENT_LENGTH 0", async () => {
    assert.equal(
      await withStreams((e) => void e["wsgi.input"]!.read(1), {
        CONTENT_LENGTH: "0",
      }),
      pastWarning("'0'"),
    );
  });
  await t.step("a read loop that waits for an empty read", async () => {
    const warnings = await withStreams((e) => {
      while (e["wsgi.input"]!.read(3).length > 0);
    }, postEnviron("abcdefg"));
    assert.equal(warnings, pastWarning("'7'"));
  });
  await t.step("iterating the lines", async () => {
    assert.equal(
      await withStreams(
        (e) => void [...e["wsgi.input"]!],
        postEnviron("a\nb\n"),
      ),
      pastWarning("'4'"),
    );
  });
  await t.step("warns once per request", async () => {
    const warnings = await withStreams((e) => {
      const input = e["wsgi.input"]!;
      input.read(5);
      input.read(5);
      input.readline();
      input.readlines();
    }, postEnviron("ab"));
    assert.equal(warnings, pastWarning("'2'"));
  });
  await t.step(
    "reading exactly CONTENT_LENGTH bytes does not warn",
    async () => {
      assert.equal(
        await withStreams(
          (e) => void e["wsgi.input"]!.read(7),
          postEnviron("abcdefg"),
        ),
        "",
      );
      assert.equal(
        await withStreams((e) => {
          e["wsgi.input"]!.read(3);
          e["wsgi.input"]!.read(4);
        }, postEnviron("abcdefg")),
        "",
      );
      assert.equal(
        await withStreams((e) => void e["wsgi.input"]!.read(0), {
          CONTENT_LENGTH: "0",
        }),
        "",
      );
    },
  );
  await t.step("a server returning bytes past CONTENT_LENGTH", async () => {
    const warnings = await withStreams(
      (e) => void e["wsgi.input"]!.read(100),
      { CONTENT_LENGTH: "3", "wsgi.input": new BytesInput(bytes("abcdef")) },
    );
    assert.equal(
      warnings,
      "WSGIWarning: wsgi.input returned 3 bytes past CONTENT_LENGTH ('3'): the server should simulate the end of input there\n",
    );
  });
});

Deno.test("wsgi.input with an absent or empty CONTENT_LENGTH reads to its end without a warning", async (t) => {
  // Unknown length (a chunked upload), not zero: nothing to read past.
  const unknownLength = (contentLength: string | undefined) => ({
    REQUEST_METHOD: "POST",
    ...(contentLength === undefined ? {} : { CONTENT_LENGTH: contentLength }),
    "wsgi.input": new BytesInput(bytes("ab\ncd\nef")),
  });
  const readers: [string, (input: InputStream) => string[]][] = [
    ["read(n) until an empty read", (input) => {
      const seen: string[] = [];
      for (;;) {
        const chunk = input.read(3);
        seen.push(decoder.decode(chunk));
        if (chunk.length === 0) return seen;
      }
    }],
    ["readline() until an empty line", (input) => {
      const seen: string[] = [];
      for (;;) {
        const line = input.readline();
        seen.push(decoder.decode(line));
        if (line.length === 0) return seen;
      }
    }],
    ["readlines()", (input) => input.readlines().map((l) => decoder.decode(l))],
    ["iteration", (input) => [...input].map((l) => decoder.decode(l))],
  ];
  for (const contentLength of [undefined, ""]) {
    for (const [name, use] of readers) {
      const label = contentLength === undefined ? "absent" : "empty";
      await t.step(`CONTENT_LENGTH ${label}, ${name}`, async () => {
        let seen: string[] = [];
        const warnings = await withStreams(
          (e) => void (seen = use(e["wsgi.input"]!)),
          unknownLength(contentLength),
        );
        assert.equal(seen.join(""), "ab\ncd\nef");
        assert.equal(warnings, "");
      });
    }
  }
  await t.step("a numeric CONTENT_LENGTH still warns", async () => {
    const warnings = await withStreams((e) => {
      while (e["wsgi.input"]!.read(3).length > 0);
    }, unknownLength("8"));
    assert.equal(
      warnings,
      "WSGIWarning: wsgi.input read past CONTENT_LENGTH ('8'): the application should not read more than CONTENT_LENGTH bytes\n",
    );
  });
});

/** The warning a read() without a size draws, for the call shown. */
const unsizedWarning = (call: string) =>
  `WSGIWarning: wsgi.input.read() needs a size to be portable: ${call} reads all the rest of the input, which wsgiref's validator refuses; read at most CONTENT_LENGTH bytes\n`;

/** The AssertionError message strict mode gives for the call shown. */
const unsizedRefusal = (call: string) =>
  `wsgi.input.read() needs a size: validator(app, { strict: true }) refuses ${call}, which reads all the rest of the input; read at most CONTENT_LENGTH bytes`;

/** The ways to call read() without a size argument: name, as a message
 * shows it, the call. */
const UNSIZED_READS: [string, string, (input: InputStream) => Uint8Array][] = [
  ["read()", "read()", (input) => input.read()],
  ["read(undefined)", "read(None)", (input) => input.read(undefined)],
];

/** Reads with a size argument that still mean "all the rest": CPython's
 * validator only counts the arguments, so these pass silently. */
const SIZED_REST_READS: [string, (input: InputStream) => Uint8Array][] = [
  ["read(-1)", (input) => input.read(-1)],
  ["read(-5)", (input) => input.read(-5)],
  ["read(null)", (input) => input.read(null as unknown as number)],
];

Deno.test("wsgi.input.read() without a size returns the data and writes one WSGIWarning by default", async (t) => {
  for (const [name, call, read] of UNSIZED_READS) {
    await t.step(name, async () => {
      let data = "";
      const warnings = await withStreams(
        (e) => void (data = decoder.decode(read(e["wsgi.input"]!))),
        postEnviron("hello"),
      );
      assert.equal(data, "hello");
      assert.equal(warnings, unsizedWarning(call));
    });
  }
  await t.step("on an input of unknown length", async () => {
    let data = "";
    const warnings = await withStreams(
      (e) => void (data = decoder.decode(e["wsgi.input"]!.read())),
      { "wsgi.input": new BytesInput(bytes("chunked")) },
    );
    assert.equal(data, "chunked");
    assert.equal(warnings, unsizedWarning("read()"));
  });
  await t.step("warns once per request", async () => {
    const warnings = await withStreams((e) => {
      const input = e["wsgi.input"]!;
      input.read();
      input.read(undefined);
      input.read();
    }, { "wsgi.input": new BytesInput(bytes("chunked")) });
    assert.equal(warnings, unsizedWarning("read()"));
  });
  for (const [name, read] of SIZED_REST_READS) {
    await t.step(`${name} returns the rest with no warning`, async () => {
      let data = "";
      const warnings = await withStreams(
        (e) => void (data = decoder.decode(read(e["wsgi.input"]!))),
        postEnviron("hello"),
      );
      assert.equal(data, "hello");
      assert.equal(warnings, "");
    });
  }
  await t.step("read(0) and read(n) draw no such warning", async () => {
    const warnings = await withStreams((e) => {
      e["wsgi.input"]!.read(0);
      e["wsgi.input"]!.read(5);
    }, postEnviron("hello"));
    assert.equal(warnings, "");
  });
});

Deno.test("validator(app, { strict: true }) refuses wsgi.input.read() without a size", async (t) => {
  for (const [name, call, read] of UNSIZED_READS) {
    await t.step(name, () => {
      const raw = new BytesInput(bytes("hello"));
      const app: Application = (environ, startResponse) => {
        read(environ["wsgi.input"]!);
        startResponse("200 OK", TEXT);
        return [];
      };
      const environ = makeEnviron({
        ...postEnviron("hello"),
        "wsgi.input": raw,
      });
      const errors = environ["wsgi.errors"] as StringErrorStream;
      const { startResponse } = fakeServer();
      throwsAssertion(
        () => validator(app, { strict: true })(environ, startResponse),
        unsizedRefusal(call),
      );
      // Refused before the server's stream was touched; no warning either.
      assert.equal(decoder.decode(raw.read()), "hello");
      assert.equal(errors.value, "");
    });
  }
});

Deno.test("wsgi.input.readinto() passes through the validator when the server's input has it", async (t) => {
  type WithReadinto = InputStream & { readinto?(b: Uint8Array): number };
  await t.step(
    "reads and counts the bytes against CONTENT_LENGTH",
    async () => {
      const seen: string[] = [];
      const warnings = await withStreams((environ) => {
        const input = environ["wsgi.input"] as WithReadinto;
        const buffer = new Uint8Array(3);
        for (let n; (n = input.readinto!(buffer)) > 0;) {
          seen.push(decoder.decode(buffer.subarray(0, n)));
        }
        input.readinto!(buffer); // past the end: warned once
      }, postEnviron("abcdefg"));
      assert.deepEqual(seen, ["abc", "def", "g"]);
      assert.equal(
        warnings,
        "WSGIWarning: wsgi.input read past CONTENT_LENGTH ('7'): the application should not read more than CONTENT_LENGTH bytes\n",
      );
    },
  );
  await t.step("absent when the server's input has none", async () => {
    let present: unknown = null;
    const plain: InputStream = {
      read: () => new Uint8Array(0),
      readline: () => new Uint8Array(0),
      readlines: () => [],
      [Symbol.iterator]: () => [][Symbol.iterator](),
    };
    await withStreams((environ) => {
      present = (environ["wsgi.input"] as WithReadinto).readinto;
    }, { "wsgi.input": plain });
    assert.equal(present, undefined);
  });
  const bad: [string, (input: WithReadinto) => unknown, string][] = [
    [
      "a string",
      (i) => i.readinto!("abc" as unknown as Uint8Array),
      "wsgi.input.readinto() takes one Uint8Array (got 'abc')",
    ],
    [
      "no argument",
      (i) => (i.readinto as () => number)(),
      "wsgi.input.readinto() takes one Uint8Array (got 0 arguments)",
    ],
  ];
  for (const [name, call, message] of bad) {
    await t.step(`refuses ${name}`, () => {
      const app: Application = (environ, startResponse) => {
        call(environ["wsgi.input"] as WithReadinto);
        startResponse("200 OK", TEXT);
        return [];
      };
      throwsAssertion(
        () =>
          validator(app)(
            makeEnviron(postEnviron("x")),
            fakeServer().startResponse,
          ),
        message,
      );
    });
  }
  /** Reads two bytes with readinto(). */
  const readsTwo: Application = (environ, startResponse) => {
    (environ["wsgi.input"] as WithReadinto).readinto!(new Uint8Array(2));
    startResponse("200 OK", TEXT);
    return [];
  };
  await t.step("refuses a server's count out of range", () => {
    const lying = Object.assign(new BytesInput(bytes("xyz")), {
      readinto: () => 5,
    });
    throwsAssertion(
      () =>
        validator(readsTwo)(
          makeEnviron({ ...postEnviron("xyz"), "wsgi.input": lying }),
          fakeServer().startResponse,
        ),
      "wsgi.input.readinto() must return a byte count from 0 to 2 (got 5)",
    );
  });
  await t.step("refused in strict mode: PEP 3333 servers lack it", () => {
    throwsAssertion(
      () =>
        validator(readsTwo, { strict: true })(
          makeEnviron(postEnviron("xyz")),
          fakeServer().startResponse,
        ),
      "wsgi.input.readinto() is an extension of @wsgi/wsgiref: validator(app, { strict: true }) refuses it; use read(size)",
    );
  });
});

Deno.test("validator(app, { strict: true }) accepts read(-1), read(-5) and read(null) silently, as CPython's validator does", async (t) => {
  for (const [name, read] of SIZED_REST_READS) {
    await t.step(name, () => {
      let data = "";
      const app: Application = (environ, startResponse) => {
        data = decoder.decode(read(environ["wsgi.input"]!));
        startResponse("200 OK", TEXT);
        return [];
      };
      const environ = makeEnviron({
        ...postEnviron("hello"),
        "wsgi.input": new BytesInput(bytes("hello")),
      });
      const errors = environ["wsgi.errors"] as StringErrorStream;
      const { startResponse } = fakeServer();
      validator(app, { strict: true })(environ, startResponse);
      assert.equal(data, "hello");
      assert.equal(errors.value, "");
    });
  }
});

Deno.test("validator(app, { strict: true }) lets readline(), readlines(), iteration and read(n) through", async (t) => {
  const joinLines = (lines: Uint8Array[]) =>
    lines.map((line) => decoder.decode(line)).join("|");
  const readers: [string, (input: InputStream) => string, string][] = [
    ["read(n)", (input) => decoder.decode(input.read(5)), "ab\ncd"],
    ["read(0)", (input) => decoder.decode(input.read(0)), ""],
    ["readline()", (input) => decoder.decode(input.readline()), "ab\n"],
    ["readline(-1)", (input) => decoder.decode(input.readline(-1)), "ab\n"],
    ["readlines()", (input) => joinLines(input.readlines()), "ab\n|cd"],
    ["readlines(-1)", (input) => joinLines(input.readlines(-1)), "ab\n|cd"],
    ["iteration", (input) => joinLines([...input]), "ab\n|cd"],
  ];
  for (const [name, use, expected] of readers) {
    await t.step(name, async () => {
      // Strict and default modes see the same data and the same warnings.
      const outcomes: [string, string][] = [];
      for (const strict of [false, true]) {
        for (
          const extra of [postEnviron("ab\ncd"), {
            "wsgi.input": new BytesInput(bytes("ab\ncd")),
          }]
        ) {
          let seen = "";
          const app: Application = (environ, startResponse) => {
            seen = use(environ["wsgi.input"]!);
            startResponse("200 OK", TEXT);
            return [];
          };
          const served = await serve(app, makeEnviron(extra), { strict });
          assert.equal(served.status, "200 OK");
          assert.equal(seen, expected);
          assert.ok(!served.errors.includes("needs a size"), served.errors);
          outcomes.push([seen, served.errors]);
        }
      }
      assert.deepEqual(outcomes.slice(2), outcomes.slice(0, 2));
      // With an unknown length, no warning at all.
      assert.equal(outcomes[3][1], "");
    });
  }
});

Deno.test("wsgi.input closed by the server while the response runs (server side)", async (t) => {
  const message =
    "wsgi.input is closed: neither the server nor the application may close it before the response is over";
  await t.step("a closed flag seen by the app's read", async () => {
    const input = Object.assign(new BytesInput(bytes("abc")), {
      closed: false,
    });
    await assert.rejects(
      () =>
        withStreams((e) => {
          input.closed = true;
          e["wsgi.input"]!.read(1);
        }, { CONTENT_LENGTH: "3", "wsgi.input": input }),
      new AssertionError(message),
    );
  });
  await t.step("a closed flag seen while iterating the body", () => {
    const input = Object.assign(new BytesInput(), { closed: false });
    const { startResponse } = fakeServer();
    const result = validator(returning([bytes("a"), bytes("b")]))(
      makeEnviron({ "wsgi.input": input }),
      startResponse,
    ) as Closable & Iterator<Uint8Array>;
    result.next();
    input.closed = true;
    throwsAssertion(() => result.next(), message);
    input.closed = false;
    result.close();
  });
  await t.step("a real file closed under a ReaderInput", async () => {
    const path = await Deno.makeTempFile();
    try {
      await Deno.writeTextFile(path, "hello");
      const file = Deno.openSync(path);
      const input = new ReaderInput(file, 5);
      file.close();
      await assert.rejects(
        () =>
          withStreams((e) => void e["wsgi.input"]!.read(5), {
            CONTENT_LENGTH: "5",
            "wsgi.input": input,
          }),
        (error: unknown) => {
          assert.ok(error instanceof AssertionError);
          assert.equal(error.message, message);
          assert.ok(error.cause instanceof Deno.errors.BadResource);
          return true;
        },
      );
    } finally {
      await Deno.remove(path);
    }
  });
});

Deno.test("wsgi.errors takes strings only and refuses close()", async (t) => {
  await t.step(
    "write, writelines and flush reach the server's stream",
    async () => {
      let flushed = 0;
      const lines: string[] = [];
      const errors = {
        write: (s: string) => void lines.push(`write:${s}`),
        writelines: (seq: Iterable<string>) =>
          void lines.push(`writelines:${[...seq].join("|")}`),
        flush: () => void flushed++,
      };
      await withStreams((e) => {
        const stream = e["wsgi.errors"]!;
        stream.write("a\n");
        stream.writelines(["b\n", "c\n"]);
        stream.writelines((function* () {
          yield "d\n";
        })());
        stream.flush();
      }, { "wsgi.errors": errors });
      assert.deepEqual(lines, [
        "write:a\n",
        "writelines:b\n|c\n",
        "writelines:d\n",
      ]);
      assert.equal(flushed, 1);
    },
  );
  const rows: [string, (errors: ErrorStream) => unknown, string][] = [
    [
      "write bytes",
      (e) => e.write(bytes("x") as unknown as string),
      "wsgi.errors.write() argument must be a string: b'x'",
    ],
    [
      "write a number",
      (e) => e.write(5 as unknown as string),
      "wsgi.errors.write() argument must be a string: 5",
    ],
    [
      "write nothing",
      (e) => (e.write as () => void)(),
      "wsgi.errors.write() takes exactly one argument (got 0)",
    ],
    [
      "writelines with bytes",
      (e) => e.writelines(["ok", bytes("x")] as unknown as string[]),
      "wsgi.errors.writelines() lines must be strings: b'x'",
    ],
    [
      "writelines with a number",
      (e) => e.writelines(5 as unknown as string[]),
      "wsgi.errors.writelines() argument must be iterable: 5",
    ],
    [
      "writelines with null",
      (e) => e.writelines(null as unknown as string[]),
      "wsgi.errors.writelines() argument must be iterable: None",
    ],
    [
      "writelines with two arguments",
      (e) => (e.writelines as (...a: unknown[]) => void)([], []),
      "wsgi.errors.writelines() takes exactly one argument (got 2)",
    ],
    [
      "flush with an argument",
      (e) => (e.flush as (...a: unknown[]) => void)(true),
      "wsgi.errors.flush() takes no arguments (got 1)",
    ],
    [
      "close",
      (e) => (e as unknown as { close(): void }).close(),
      "errors.close() must not be called",
    ],
  ];
  for (const [name, use, message] of rows) {
    await t.step(name, async () => {
      const errors = new StringErrorStream();
      await assert.rejects(
        () =>
          withStreams((e) => void use(e["wsgi.errors"]!), {
            "wsgi.errors": errors,
          }),
        new AssertionError(message),
      );
      assert.equal(errors.value, "", "nothing reaches the server's stream");
    });
  }
  await t.step("a closed wsgi.errors", async () => {
    const errors = Object.assign(new StringErrorStream(), { closed: false });
    await assert.rejects(
      () =>
        withStreams((e) => {
          errors.closed = true;
          e["wsgi.errors"]!.write("x");
        }, { "wsgi.errors": errors }),
      new AssertionError(
        "wsgi.errors is closed: neither the server nor the application may close it before the response is over",
      ),
    );
  });
});

// --- close() called by the server ------------------------------------------

Deno.test("validator() warns when the server never closes an exhausted result", async (t) => {
  const warning =
    "WSGIWarning: Iterator exhausted without being closed: the server must call the result's close()\n";
  await t.step("sync result", async () => {
    const environ = makeEnviron();
    const errors = environ["wsgi.errors"] as StringErrorStream;
    const { startResponse } = fakeServer();
    const result = validator(hello)(environ, startResponse) as Iterable<
      Uint8Array
    >;
    assert.equal([...result].length, 1);
    assert.equal(errors.value, "");
    await new Promise((resolve) => setTimeout(resolve, AFTER_CLOSE_GRACE_MS));
    assert.equal(errors.value, warning);
  });
  await t.step("async result", async () => {
    const environ = makeEnviron();
    const errors = environ["wsgi.errors"] as StringErrorStream;
    const { startResponse } = fakeServer();
    const result = validator(returning({
      async *[Symbol.asyncIterator]() {
        yield bytes("x");
      },
    }))(environ, startResponse) as AsyncIterable<Uint8Array>;
    for await (const _ of result);
    await new Promise((resolve) => setTimeout(resolve, AFTER_CLOSE_GRACE_MS));
    assert.equal(errors.value, warning);
  });
  await t.step("a result whose iterator failed", async () => {
    const environ = makeEnviron();
    const errors = environ["wsgi.errors"] as StringErrorStream;
    const { startResponse } = fakeServer();
    const result = validator(returning(["not bytes"]))(
      environ,
      startResponse,
    ) as Closable & Iterator<Uint8Array>;
    throwsAssertion(
      () => result.next(),
      "Iterator yielded non-bytestring ('not bytes')",
    );
    await new Promise((resolve) => setTimeout(resolve, AFTER_CLOSE_GRACE_MS));
    assert.equal(errors.value, warning);
  });
  await t.step(
    "a server that closes after awaiting does not draw the warning",
    async () => {
      const environ = makeEnviron();
      const errors = environ["wsgi.errors"] as StringErrorStream;
      const { startResponse } = fakeServer();
      const result = validator(hello)(environ, startResponse) as
        & Closable
        & Iterable<Uint8Array>;
      [...result];
      await new Promise((resolve) => setTimeout(resolve, 10));
      result.close();
      await new Promise((resolve) => setTimeout(resolve, AFTER_CLOSE_GRACE_MS));
      assert.equal(errors.value, "");
    },
  );
});

Deno.test("validator() warns when an unclosed result is garbage collected", async () => {
  const script = await Deno.makeTempFile({ suffix: ".ts" });
  try {
    await Deno.writeTextFile(
      script,
      `import { validator } from ${
        JSON.stringify(import.meta.resolve("../validate.ts"))
      };
const lines: string[] = [];
const environ = {
  REQUEST_METHOD: "GET", SCRIPT_NAME: "", PATH_INFO: "/", QUERY_STRING: "",
  SERVER_NAME: "localhost", SERVER_PORT: "80", SERVER_PROTOCOL: "HTTP/1.1",
  "wsgi.version": [1, 0], "wsgi.url_scheme": "http",
  "wsgi.input": { read: () => new Uint8Array(0), readline: () => new Uint8Array(0), readlines: () => [], [Symbol.iterator]: () => [][Symbol.iterator]() },
  "wsgi.errors": { write: (s: string) => void lines.push(s), writelines() {}, flush() {} },
  "wsgi.multithread": false, "wsgi.multiprocess": false, "wsgi.run_once": true,
};
(() => {
  const app = validator((_e, startResponse) => {
    startResponse("200 OK", [["Content-Type", "text/plain"]]);
    return [new Uint8Array(1), new Uint8Array(1)];
  });
  const result = app(environ, () => () => {}) as Iterator<Uint8Array>;
  result.next(); // abandoned half way: never exhausted, never closed
})();
for (let i = 0; i < 50 && lines.length === 0; i++) {
  (globalThis as unknown as { gc(): void }).gc();
  await new Promise((resolve) => setTimeout(resolve, 10));
}
console.log(JSON.stringify(lines));
`,
    );
    const output = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--no-check",
        "--allow-read",
        "--v8-flags=--expose-gc",
        script,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(output.code, 0, new TextDecoder().decode(output.stderr));
    assert.deepEqual(JSON.parse(decoder.decode(output.stdout)), [
      "WSGIWarning: Iterator garbage collected without being closed\n",
    ]);
  } finally {
    await Deno.remove(script);
  }
});
