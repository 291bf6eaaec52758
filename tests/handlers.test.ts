import assert from "node:assert/strict";
import {
  BaseCGIHandler,
  BaseHandler,
  formatDateTime,
  SimpleHandler,
} from "../handlers.ts";
import { Headers } from "../headers.ts";
import { FileWrapper } from "../util.ts";
import { BytesInput, StringErrorStream } from "../_io.ts";
import { AssertionError } from "../validate.ts";
import { decodeLatin1, encodeLatin1 } from "../_internal.ts";
import type {
  Application,
  Environ,
  ErrorStream,
  HeaderList,
  InputStream,
  ResponseBody,
  StartResponse,
} from "../types.ts";
import { startProxy } from "./fixtures/proxy.ts";

// ---------------------------------------------------------------------------
// Helpers

const enc = (s: string): Uint8Array => encodeLatin1(s);

/** A stdout that keeps every chunk and counts flushes. */
class Sink {
  chunks: Uint8Array[] = [];
  flushes = 0;
  writeSync(p: Uint8Array): number {
    this.chunks.push(p.slice());
    return p.length;
  }
  flush(): void {
    this.flushes++;
  }
  get text(): string {
    return this.chunks.map(decodeLatin1).join("");
  }
}

const ENV: Environ = {
  REQUEST_METHOD: "GET",
  SERVER_PROTOCOL: "HTTP/1.0",
  SERVER_NAME: "127.0.0.1",
  SERVER_PORT: "80",
  SCRIPT_NAME: "",
  PATH_INFO: "/",
  QUERY_STRING: "",
};

const DATE_LINE =
  /^Date: ([A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT)\r\n/m;

/** Replace the handler's own Date line, after checking that it is now. */
function maskDate(output: string): string {
  const match = DATE_LINE.exec(output);
  if (!match || match[1] === "Mon, 01 Jan 2024 00:00:00 GMT") return output;
  const sent = Date.parse(match[1]);
  assert.ok(Math.abs(sent - Date.now()) < 5000, `Date is not now: ${match[1]}`);
  return output.replace(DATE_LINE, "Date: <date>\r\n");
}

interface RunOptions {
  cgi?: boolean;
  environ?: Environ;
  configure?: (handler: SimpleHandler) => void;
  stdout?: Sink;
}

async function runApp(app: Application, options: RunOptions = {}) {
  const { cgi = true, environ = {}, configure, stdout = new Sink() } = options;
  const errors = new StringErrorStream();
  const Handler = cgi ? BaseCGIHandler : SimpleHandler;
  const handler = new Handler(new BytesInput(), stdout, errors, {
    ...ENV,
    ...environ,
  });
  handler.osEnviron = {};
  configure?.(handler);
  await handler.run(app);
  return { output: maskDate(stdout.text), log: errors.value, handler, stdout };
}

/** A result that counts its close() calls. */
function closable(chunks: Uint8Array[]): ResponseBody & { closed: number } {
  const result = {
    closed: 0,
    *[Symbol.iterator]() {
      yield* chunks;
    },
    close() {
      result.closed++;
    },
  };
  return result;
}

// ---------------------------------------------------------------------------
// formatDateTime

Deno.test("formatDateTime() formats as CPython's format_date_time", async (t) => {
  // Expected values from CPython 3.11's wsgiref.handlers.format_date_time.
  const rows: [number, string][] = [
    [0, "Thu, 01 Jan 1970 00:00:00 GMT"],
    [0.9, "Thu, 01 Jan 1970 00:00:00 GMT"],
    [-0.5, "Wed, 31 Dec 1969 23:59:59 GMT"],
    [-1, "Wed, 31 Dec 1969 23:59:59 GMT"],
    [784111777, "Sun, 06 Nov 1994 08:49:37 GMT"],
    [951782400, "Tue, 29 Feb 2000 00:00:00 GMT"],
    [4107542400, "Mon, 01 Mar 2100 00:00:00 GMT"],
    [253402300799, "Fri, 31 Dec 9999 23:59:59 GMT"],
    [253402300800, "Sat, 01 Jan 10000 00:00:00 GMT"],
    [-62135596800, "Mon, 01 Jan    1 00:00:00 GMT"],
    [-62135596801, "Sun, 31 Dec    0 23:59:59 GMT"],
    [-30610224000, "Wed, 01 Jan 1000 00:00:00 GMT"],
    [1e10, "Sat, 20 Nov 2286 17:46:40 GMT"],
  ];
  for (const [seconds, expected] of rows) {
    await t.step(String(seconds), () => {
      assert.equal(formatDateTime(seconds), expected);
    });
  }
});

Deno.test("formatDateTime() refuses non-numbers and out-of-range times", async (t) => {
  for (const bad of ["0", null, undefined, 0n, new Date(0)]) {
    await t.step(`type ${String(bad)}`, () => {
      assert.throws(() => formatDateTime(bad as never), {
        name: "TypeError",
        message: /^Cannot format a date: seconds must be a number, not /,
      });
    });
  }
  for (const bad of [NaN, Infinity, -Infinity, 8.64e12 + 1, -8.64e12 - 1]) {
    await t.step(`range ${bad}`, () => {
      assert.throws(() => formatDateTime(bad), {
        name: "RangeError",
        message: `Cannot format a date: ${bad} seconds is out of range`,
      });
    });
  }
});

// ---------------------------------------------------------------------------
// Byte-exact output, against CPython

function* generator(
  startResponse: StartResponse,
  chunks: string[],
  error?: Error,
): Generator<Uint8Array> {
  startResponse("200 OK", [["Content-Type", "text/plain"]]);
  for (const chunk of chunks) yield enc(chunk);
  if (error) throw error;
}

const APPS: Record<string, Application> = {
  one: (_e, sr) => {
    sr("200 OK", [["Content-Type", "text/plain"]]);
    return [enc("Hello")];
  },
  several: (_e, sr) => {
    sr("200 OK", [["Content-Type", "text/plain"]]);
    return [enc("a"), enc("bc"), enc("")];
  },
  writeThenIterate: (_e, sr) => {
    const write = sr("200 OK", [["Content-Type", "text/plain"]]);
    write(enc("first "));
    return [enc("second")];
  },
  empty: (_e, sr) => {
    sr("204 No Content", []);
    return [];
  },
  ownLengthEmpty: (_e, sr) => {
    sr("200 OK", [["Content-Type", "text/plain"], ["Content-Length", "42"]]);
    return [];
  },
  ownLengthOne: (_e, sr) => {
    sr("200 OK", [["Content-Length", "3"]]);
    return [enc("abc")];
  },
  generator: (_e, sr) => generator(sr, ["x", "y"]),
  errorBeforeHeaders: () => {
    throw new Error("boom");
  },
  errorAfterHeaders: (_e, sr) => generator(sr, ["partial"], new Error("late")),
  excInfoAfterHeaders: (_e, sr) => {
    const write = sr("200 OK", [["Content-Type", "text/plain"]]);
    write(enc("x"));
    try {
      throw new Error("oops");
    } catch (error) {
      sr("500 Oops", [], error);
    }
    return [enc("never")];
  },
  excInfoBeforeHeaders: (_e, sr) => {
    sr("200 OK", [["Content-Type", "text/plain"]]);
    try {
      throw new Error("oops");
    } catch (error) {
      sr("503 Busy", [["Retry-After", "5"]], error);
    }
    return [enc("busy")];
  },
  startResponseTwice: (_e, sr) => {
    sr("200 OK", []);
    sr("200 OK", []);
    return [enc("no")];
  },
  noStartResponse: () => [],
  noStartResponseWithBody: () => [enc("x")],
  shortStatus: (_e, sr) => {
    sr("200", []);
    return [enc("no")];
  },
  hopByHop: (_e, sr) => {
    sr("200 OK", [["Connection", "close"]]);
    return [enc("no")];
  },
  setsDateAndServer: (_e, sr) => {
    sr("200 OK", [
      ["Date", "Mon, 01 Jan 2024 00:00:00 GMT"],
      ["Server", "mine"],
    ]);
    return [enc("ok")];
  },
  latin1Header: (_e, sr) => {
    sr("200 OK", [["X-Name", "caf\xe9"]]);
    return [enc("ok")];
  },
  // Refused by current CPython (ValueError) and by us: a 500 page.
  controlInStatus: (_e, sr) => {
    sr("200 OK\r\nX-Injected: 1", []);
    return [enc("no")];
  },
  controlInHeader: (_e, sr) => {
    sr("200 OK", [["X-A", "1\r\nX-Injected: 1"]]);
    return [enc("no")];
  },
};

const ERROR_PAGE =
  "Content-Type: text/plain\r\nContent-Length: 59\r\n\r\nA server error occurred.  Please contact the administrator.";

/**
 * [app, CGI output, origin-server output, what the log must contain].
 * Outputs pasted from CPython 3.11's BaseCGIHandler and SimpleHandler run on
 * the same apps and environ (Date masked).
 */
const BYTE_TABLE: [string, string, string, string][] = [
  [
    "one",
    "Status: 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nHello",
    "HTTP/1.0 200 OK\r\nDate: <date>\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nHello",
    "",
  ],
  [
    "several",
    "Status: 200 OK\r\nContent-Type: text/plain\r\n\r\nabc",
    "HTTP/1.0 200 OK\r\nDate: <date>\r\nContent-Type: text/plain\r\n\r\nabc",
    "",
  ],
  [
    "writeThenIterate",
    "Status: 200 OK\r\nContent-Type: text/plain\r\n\r\nfirst second",
    "HTTP/1.0 200 OK\r\nDate: <date>\r\nContent-Type: text/plain\r\n\r\nfirst second",
    "",
  ],
  [
    "empty",
    "Status: 204 No Content\r\nContent-Length: 0\r\n\r\n",
    "HTTP/1.0 204 No Content\r\nDate: <date>\r\nContent-Length: 0\r\n\r\n",
    "",
  ],
  [
    "ownLengthEmpty",
    "Status: 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 42\r\n\r\n",
    "HTTP/1.0 200 OK\r\nDate: <date>\r\nContent-Type: text/plain\r\nContent-Length: 42\r\n\r\n",
    "",
  ],
  [
    "ownLengthOne",
    "Status: 200 OK\r\nContent-Length: 3\r\n\r\nabc",
    "HTTP/1.0 200 OK\r\nDate: <date>\r\nContent-Length: 3\r\n\r\nabc",
    "",
  ],
  [
    "generator",
    "Status: 200 OK\r\nContent-Type: text/plain\r\n\r\nxy",
    "HTTP/1.0 200 OK\r\nDate: <date>\r\nContent-Type: text/plain\r\n\r\nxy",
    "",
  ],
  [
    "errorBeforeHeaders",
    "Status: 500 Internal Server Error\r\n" + ERROR_PAGE,
    "HTTP/1.0 500 Internal Server Error\r\nDate: <date>\r\n" + ERROR_PAGE,
    "Error: boom\n",
  ],
  [
    "errorAfterHeaders",
    "Status: 200 OK\r\nContent-Type: text/plain\r\n\r\npartial",
    "HTTP/1.0 200 OK\r\nDate: <date>\r\nContent-Type: text/plain\r\n\r\npartial",
    "Error: late\n",
  ],
  [
    "excInfoAfterHeaders",
    "Status: 200 OK\r\nContent-Type: text/plain\r\n\r\nx",
    "HTTP/1.0 200 OK\r\nDate: <date>\r\nContent-Type: text/plain\r\n\r\nx",
    "Error: oops\n",
  ],
  [
    "excInfoBeforeHeaders",
    "Status: 503 Busy\r\nRetry-After: 5\r\nContent-Length: 4\r\n\r\nbusy",
    "HTTP/1.0 503 Busy\r\nDate: <date>\r\nRetry-After: 5\r\nContent-Length: 4\r\n\r\nbusy",
    "",
  ],
  [
    "startResponseTwice",
    "Status: 500 Internal Server Error\r\n" + ERROR_PAGE,
    "HTTP/1.0 500 Internal Server Error\r\nDate: <date>\r\n" + ERROR_PAGE,
    "AssertionError: Headers already set!\n",
  ],
  [
    "noStartResponse",
    "Status: 500 Internal Server Error\r\n" + ERROR_PAGE,
    "HTTP/1.0 500 Internal Server Error\r\nDate: <date>\r\n" + ERROR_PAGE,
    "AssertionError: The application returned without calling start_response()\n",
  ],
  [
    "noStartResponseWithBody",
    "Status: 500 Internal Server Error\r\n" + ERROR_PAGE,
    "HTTP/1.0 500 Internal Server Error\r\nDate: <date>\r\n" + ERROR_PAGE,
    "AssertionError: write() before start_response()\n",
  ],
  [
    "shortStatus",
    "Status: 500 Internal Server Error\r\n" + ERROR_PAGE,
    "HTTP/1.0 500 Internal Server Error\r\nDate: <date>\r\n" + ERROR_PAGE,
    "AssertionError: Status must be at least 4 characters\n",
  ],
  [
    "hopByHop",
    "Status: 500 Internal Server Error\r\n" + ERROR_PAGE,
    "HTTP/1.0 500 Internal Server Error\r\nDate: <date>\r\n" + ERROR_PAGE,
    "AssertionError: Hop-by-hop header, 'Connection: close', not allowed\n",
  ],
  [
    "setsDateAndServer",
    "Status: 200 OK\r\nDate: Mon, 01 Jan 2024 00:00:00 GMT\r\nServer: mine\r\nContent-Length: 2\r\n\r\nok",
    "HTTP/1.0 200 OK\r\nDate: Mon, 01 Jan 2024 00:00:00 GMT\r\nServer: mine\r\nContent-Length: 2\r\n\r\nok",
    "",
  ],
  [
    "latin1Header",
    "Status: 200 OK\r\nX-Name: caf\xe9\r\nContent-Length: 2\r\n\r\nok",
    "HTTP/1.0 200 OK\r\nDate: <date>\r\nX-Name: caf\xe9\r\nContent-Length: 2\r\n\r\nok",
    "",
  ],
  [
    "controlInStatus",
    "Status: 500 Internal Server Error\r\n" + ERROR_PAGE,
    "HTTP/1.0 500 Internal Server Error\r\nDate: <date>\r\n" + ERROR_PAGE,
    'TypeError: Cannot start the response: status "200 OK\\r\\nX-Injected: 1" contains control character "\\r" at index 6\n',
  ],
  [
    "controlInHeader",
    "Status: 500 Internal Server Error\r\n" + ERROR_PAGE,
    "HTTP/1.0 500 Internal Server Error\r\nDate: <date>\r\n" + ERROR_PAGE,
    'TypeError: Cannot create Headers with header "X-A": value contains control character "\\r" at index 1\n',
  ],
];

Deno.test("BaseCGIHandler.run() writes the bytes CPython's BaseCGIHandler writes", async (t) => {
  for (const [name, cgi, , log] of BYTE_TABLE) {
    await t.step(name, async () => {
      const result = await runApp(APPS[name], { cgi: true });
      assert.equal(result.output, cgi);
      if (log) assert.ok(result.log.startsWith(log), result.log);
      else assert.equal(result.log, "");
    });
  }
});

Deno.test("SimpleHandler.run() writes the bytes CPython's SimpleHandler writes", async (t) => {
  for (const [name, , origin, log] of BYTE_TABLE) {
    await t.step(name, async () => {
      const result = await runApp(APPS[name], { cgi: false });
      assert.equal(result.output, origin);
      if (log) assert.ok(result.log.startsWith(log), result.log);
      else assert.equal(result.log, "");
    });
  }
});

Deno.test("SimpleHandler.run() follows SERVER_PROTOCOL, httpVersion and serverSoftware as CPython", async (t) => {
  // [label, cgi, environ, configure, app, expected], from CPython 3.11.
  const rows: [
    string,
    boolean,
    Environ,
    (h: SimpleHandler) => void,
    string,
    string,
  ][] = [
    [
      "HTTP/0.9: body only",
      false,
      { SERVER_PROTOCOL: "HTTP/0.9" },
      () => {},
      "one",
      "Hello",
    ],
    [
      "http/0.9 lower case",
      false,
      { SERVER_PROTOCOL: "http/0.9" },
      () => {},
      "one",
      "Hello",
    ],
    [
      "HTTP/0.9, empty body",
      false,
      { SERVER_PROTOCOL: "HTTP/0.9" },
      () => {},
      "empty",
      "",
    ],
    [
      "HTTP/0.9, error page",
      false,
      { SERVER_PROTOCOL: "HTTP/0.9" },
      () => {},
      "errorBeforeHeaders",
      "A server error occurred.  Please contact the administrator.",
    ],
    [
      "HTTP/0.9 through CGI: the host still needs the headers",
      true,
      { SERVER_PROTOCOL: "HTTP/0.9" },
      () => {},
      "one",
      "Status: 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nHello",
    ],
    [
      "httpVersion 1.1",
      false,
      {},
      (h) => (h.httpVersion = "1.1"),
      "one",
      "HTTP/1.1 200 OK\r\nDate: <date>\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nHello",
    ],
    [
      "HTTP/2.0 request, origin server",
      false,
      { SERVER_PROTOCOL: "HTTP/2.0" },
      () => {},
      "one",
      "HTTP/1.0 200 OK\r\nDate: <date>\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nHello",
    ],
    [
      "HTTP/2.0 request, CGI (lighttpd)",
      true,
      { SERVER_PROTOCOL: "HTTP/2.0" },
      () => {},
      "one",
      "Status: 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nHello",
    ],
    [
      "serverSoftware",
      false,
      {},
      (h) => (h.serverSoftware = "Test/1.0"),
      "empty",
      "HTTP/1.0 204 No Content\r\nDate: <date>\r\nServer: Test/1.0\r\nContent-Length: 0\r\n\r\n",
    ],
    [
      "serverSoftware, error page",
      false,
      {},
      (h) => (h.serverSoftware = "Test/1.0"),
      "errorBeforeHeaders",
      "HTTP/1.0 500 Internal Server Error\r\nDate: <date>\r\nServer: Test/1.0\r\n" +
      ERROR_PAGE,
    ],
    [
      "serverSoftware, the app's own Server wins",
      false,
      {},
      (h) => (h.serverSoftware = "Test/1.0"),
      "setsDateAndServer",
      "HTTP/1.0 200 OK\r\nDate: Mon, 01 Jan 2024 00:00:00 GMT\r\nServer: mine\r\nContent-Length: 2\r\n\r\nok",
    ],
    [
      "serverSoftware is not sent by CGI",
      true,
      {},
      (h) => (h.serverSoftware = "Test/1.0"),
      "empty",
      "Status: 204 No Content\r\nContent-Length: 0\r\n\r\n",
    ],
  ];
  for (const [label, cgi, environ, configure, app, expected] of rows) {
    await t.step(label, async () => {
      const result = await runApp(APPS[app], { cgi, environ, configure });
      assert.equal(result.output, expected);
    });
  }
});

// ---------------------------------------------------------------------------
// Content-Length

Deno.test("BaseCGIHandler.run() sets Content-Length only for an Array of one chunk", async (t) => {
  const rows: [string, Application, string][] = [
    ["async app, one chunk", async (_e, sr) => {
      await Promise.resolve();
      sr("200 OK", []);
      return [enc("abc")];
    }, "Status: 200 OK\r\nContent-Length: 3\r\n\r\nabc"],
    ["one empty chunk", (_e, sr) => {
      sr("200 OK", []);
      return [enc("")];
    }, "Status: 200 OK\r\nContent-Length: 0\r\n\r\n"],
    ["Set of one chunk", (_e, sr) => {
      sr("200 OK", []);
      return new Set([enc("abc")]);
    }, "Status: 200 OK\r\n\r\nabc"],
    ["async iterable of one chunk", (_e, sr) => {
      sr("200 OK", []);
      return (async function* () {
        yield enc("abc");
      })();
    }, "Status: 200 OK\r\n\r\nabc"],
    ["app's own length, one chunk of another size", (_e, sr) => {
      sr("200 OK", [["content-length", "10"]]);
      return [enc("abc")];
    }, "Status: 200 OK\r\ncontent-length: 10\r\n\r\nabc"],
    ["HEAD: app's length, no body", (_e, sr) => {
      sr("200 OK", [["Content-Length", "1000"]]);
      return [];
    }, "Status: 200 OK\r\nContent-Length: 1000\r\n\r\n"],
    ["empty async iterable", (_e, sr) => {
      sr("200 OK", []);
      return (async function* () {})();
    }, "Status: 200 OK\r\nContent-Length: 0\r\n\r\n"],
  ];
  for (const [label, app, expected] of rows) {
    await t.step(label, async () => {
      const { output, log } = await runApp(app);
      assert.equal(output, expected);
      assert.equal(log, "");
    });
  }
});

// ---------------------------------------------------------------------------
// startResponse

/** A fresh CGI handler with in-memory streams. */
function handlerFor(environ: Environ = ENV, stdout = new Sink()) {
  const errors = new StringErrorStream();
  const handler = new BaseCGIHandler(new BytesInput(), stdout, errors, environ);
  handler.osEnviron = {};
  return { handler, stdout, errors };
}

Deno.test("BaseHandler.startResponse() refuses bad statuses and headers, recording nothing", async (t) => {
  const rows: [string, unknown, unknown, string, string | RegExp][] = [
    [
      "status not a string",
      200,
      [],
      "AssertionError",
      "Status must be of type str (got 200)",
    ],
    [
      "status as bytes",
      enc("200 OK"),
      [],
      "AssertionError",
      "Status must be of type str (got b'200 OK')",
    ],
    [
      "status null",
      null,
      [],
      "AssertionError",
      "Status must be of type str (got None)",
    ],
    [
      "empty status",
      "",
      [],
      "AssertionError",
      "Status must be at least 4 characters",
    ],
    [
      "three characters",
      "200",
      [],
      "AssertionError",
      "Status must be at least 4 characters",
    ],
    [
      "letters",
      "abc OK",
      [],
      "AssertionError",
      "Status message must begin w/3-digit code",
    ],
    [
      "two digits",
      "20 OK",
      [],
      "AssertionError",
      "Status message must begin w/3-digit code",
    ],
    [
      "superscript digit",
      "2\xb200 OK",
      [],
      "AssertionError",
      "Status message must begin w/3-digit code",
    ],
    [
      "no space",
      "200OK",
      [],
      "AssertionError",
      "Status message must have a space after code",
    ],
    [
      "four digits",
      "2000 OK",
      [],
      "AssertionError",
      "Status message must have a space after code",
    ],
    [
      "tab after code",
      "200\tOK",
      [],
      "TypeError",
      'Cannot start the response: status "200\\tOK" contains control character "\\t" at index 3',
    ],
    [
      "CR LF in status",
      "200 OK\r\nX: y",
      [],
      "TypeError",
      'Cannot start the response: status "200 OK\\r\\nX: y" contains control character "\\r" at index 6',
    ],
    [
      "LF in status",
      "200 OK\nX: y",
      [],
      "TypeError",
      /control character "\\n" at index 6$/,
    ],
    [
      "NUL in status",
      "200 OK\0",
      [],
      "TypeError",
      /control character "\\u0000" at index 6$/,
    ],
    [
      "DEL in status",
      "200 OK\x7f",
      [],
      "TypeError",
      /control character "\x7f" at index 6$/,
    ],
    [
      "status above latin-1",
      "200 \u0100K",
      [],
      "TypeError",
      /status "200 ĀK" contains character "Ā" at index 4, which is not latin-1$/,
    ],
    [
      "headers not an array",
      "200 OK",
      { "X-A": "1" },
      "TypeError",
      /^Cannot create Headers: expected an array/,
    ],
    [
      "headers null",
      "200 OK",
      null,
      "TypeError",
      /^Cannot create Headers: expected an array/,
    ],
    [
      "entry not a pair",
      "200 OK",
      [["X-A"]],
      "TypeError",
      /^Cannot create Headers: entry 0 must be a \[name, value\] pair/,
    ],
    [
      "entry a string",
      "200 OK",
      ["X-A: 1"],
      "TypeError",
      /^Cannot create Headers: entry 0 must be a \[name, value\] pair/,
    ],
    [
      "name not a string",
      "200 OK",
      [[1, "x"]],
      "AssertionError",
      "Header name must be of type str (got 1)",
    ],
    [
      "value not a string",
      "200 OK",
      [["X-A", 1]],
      "AssertionError",
      "Header value must be of type str (got 1)",
    ],
    [
      "value null",
      "200 OK",
      [["X-A", null]],
      "AssertionError",
      "Header value must be of type str (got None)",
    ],
    [
      "CR LF in a value",
      "200 OK",
      [["X-A", "1\r\nSet-Cookie: a=b"]],
      "TypeError",
      'Cannot create Headers with header "X-A": value contains control character "\\r" at index 1',
    ],
    [
      "LF in a value",
      "200 OK",
      [["X-A", "1\nB: 2"]],
      "TypeError",
      /value contains control character "\\n" at index 1$/,
    ],
    [
      "NUL in a value",
      "200 OK",
      [["X-A", "\0"]],
      "TypeError",
      /value contains control character "\\u0000" at index 0$/,
    ],
    [
      "CR LF in a name",
      "200 OK",
      [["X-A\r\nX-B", "1"]],
      "TypeError",
      /name contains control character "\\r" at index 3$/,
    ],
    [
      "tab in a name",
      "200 OK",
      [["X\tA", "1"]],
      "TypeError",
      /name contains control character "\\t" at index 1$/,
    ],
    [
      "value above latin-1",
      "200 OK",
      [["X-A", "\u20ac"]],
      "TypeError",
      /value contains character "€" at index 0, which is not latin-1$/,
    ],
    [
      "name above latin-1",
      "200 OK",
      [["X-\u0100", "1"]],
      "TypeError",
      /name contains character "Ā" at index 2, which is not latin-1$/,
    ],
    [
      "control character after one above latin-1: the control one is named",
      "200 OK",
      [["X-A", "\u20ac a\r"]],
      "TypeError",
      /value contains control character "\\r" at index 3$/,
    ],
    // Past 128 characters the checks use regular expressions instead of a
    // loop: the same answers, at any position.
    [
      "CR at index 128 of a 129-character value",
      "200 OK",
      [["X-A", "a".repeat(128) + "\r"]],
      "TypeError",
      /value contains control character "\\r" at index 128$/,
    ],
    [
      "CR at index 127 of a 128-character value",
      "200 OK",
      [["X-A", "a".repeat(127) + "\r"]],
      "TypeError",
      /value contains control character "\\r" at index 127$/,
    ],
    [
      "NUL at the start of a long value",
      "200 OK",
      [["X-A", "\0" + "a".repeat(300)]],
      "TypeError",
      /value contains control character "\\u0000" at index 0$/,
    ],
    [
      "long value: control character after one above latin-1",
      "200 OK",
      [["X-A", "\u20ac" + "a".repeat(300) + "\x7f"]],
      "TypeError",
      /value contains control character "\x7f" at index 301$/,
    ],
    [
      "long value above latin-1",
      "200 OK",
      [["X-A", "\t" + "\xff".repeat(300) + "\u0100"]],
      "TypeError",
      /value contains character "Ā" at index 301, which is not latin-1$/,
    ],
    [
      "tab in a long name",
      "200 OK",
      [["X" + "-".repeat(200) + "\tA", "1"]],
      "TypeError",
      /name contains control character "\\t" at index 201$/,
    ],
    [
      "long name above latin-1",
      "200 OK",
      [["X" + "-".repeat(200) + "\u0100", "1"]],
      "TypeError",
      /name contains character "Ā" at index 201, which is not latin-1$/,
    ],
    [
      "LF in a long status",
      "200 " + "x".repeat(200) + "\n",
      [],
      "TypeError",
      /control character "\\n" at index 204$/,
    ],
    [
      "long status above latin-1",
      "200 " + "x".repeat(200) + "\u0100",
      [],
      "TypeError",
      /contains character "Ā" at index 204, which is not latin-1$/,
    ],
    ...[
      "Connection",
      "keep-alive",
      "Proxy-Authenticate",
      "PROXY-AUTHORIZATION",
      "TE",
      "Trailers",
      "Transfer-Encoding",
      "Upgrade",
    ].map((name): [string, unknown, unknown, string, string] => [
      `hop-by-hop ${name}`,
      "200 OK",
      [["Content-Type", "text/plain"], [name, "x"]],
      "AssertionError",
      `Hop-by-hop header, '${name}: x', not allowed`,
    ]),
  ];
  for (const [label, status, headers, name, message] of rows) {
    await t.step(label, () => {
      const { handler } = handlerFor();
      const { startResponse } = handler;
      assert.throws(
        () => startResponse(status as string, headers as HeaderList),
        (error: Error) => {
          assert.equal(error.name, name);
          if (name === "AssertionError") {
            assert.ok(error instanceof AssertionError);
          }
          if (typeof message === "string") assert.equal(error.message, message);
          else assert.match(error.message, message);
          return true;
        },
      );
      assert.equal(handler.status, null);
      assert.equal(handler.headers, null);
      // Nothing recorded: a later good call is not "Headers already set!".
      startResponse("200 OK", []);
      assert.equal(handler.status, "200 OK");
    });
  }
});

Deno.test("BaseHandler.startResponse() accepts what wsgiref accepts", async (t) => {
  const rows: [string, string, HeaderList][] = [
    ["minimal status", "200 ", []],
    ["any three digits", "999 Whatever", []],
    ["tab in a value", "200 OK", [["X-A", "a\tb"]]],
    ["latin-1 reason", "200 Tr\xe8s bien", [["X-A", "caf\xe9"]]],
    ["empty value", "200 OK", [["X-Empty", ""]]],
    ["repeated names", "200 OK", [["Set-Cookie", "a=1"], [
      "Set-Cookie",
      "b=2",
    ]]],
    ["huge value", "200 OK", [["X-Big", "x".repeat(1 << 20)]]],
    ["long latin-1 value with tabs", "200 OK", [[
      "X-A",
      "\t\xff".repeat(200),
    ]]],
    ["128-character value", "200 OK", [["X-A", "\xe9".repeat(128)]]],
    ["long status", "200 " + "\xe9".repeat(300), []],
  ];
  for (const [label, status, headers] of rows) {
    await t.step(label, () => {
      const { handler } = handlerFor();
      const write = handler.startResponse(status, headers);
      assert.equal(write, handler.write);
      assert.equal(handler.status, status);
      assert.ok(handler.headers instanceof Headers);
      assert.deepEqual(handler.headers.items(), headers);
    });
  }
});

Deno.test("BaseHandler.startResponse() wraps the list it is given, without copying", () => {
  const { handler } = handlerFor();
  const headers: HeaderList = [["X-A", "1"]];
  handler.startResponse("200 OK", headers);
  handler.headers!.set("X-B", "2");
  assert.deepEqual(headers, [["X-A", "1"], ["X-B", "2"]]);
});

Deno.test("BaseHandler.startResponse() enforces the excInfo rules", async (t) => {
  await t.step("a second call without excInfo is refused", () => {
    const { handler } = handlerFor();
    handler.startResponse("200 OK", []);
    assert.throws(() => handler.startResponse("404 Not Found", []), {
      name: "AssertionError",
      message: "Headers already set!",
    });
    assert.throws(() => handler.startResponse("404 Not Found", [], null), {
      name: "AssertionError",
      message: "Headers already set!",
    });
    assert.equal(handler.status, "200 OK");
  });
  await t.step("with excInfo before headers are sent, it replaces them", () => {
    const { handler } = handlerFor();
    handler.startResponse("200 OK", [["X-A", "1"]]);
    handler.startResponse("500 Oops", [["X-B", "2"]], new Error("x"));
    assert.equal(handler.status, "500 Oops");
    assert.deepEqual(handler.headers!.items(), [["X-B", "2"]]);
  });
  await t.step(
    "with excInfo after headers were sent, it throws excInfo itself",
    () => {
      const { handler } = handlerFor();
      const write = handler.startResponse("200 OK", []);
      write(enc("x"));
      const error = new RangeError("original");
      assert.throws(
        () => handler.startResponse("500 Oops", [], error),
        (e) => e === error,
      );
      const thrownString = "a string";
      assert.throws(
        () => handler.startResponse("500 Oops", [], thrownString),
        (e) => e === thrownString,
      );
      assert.equal(handler.status, "200 OK");
    },
  );
  await t.step("excInfo given first time is fine", () => {
    const { handler } = handlerFor();
    handler.startResponse("500 Oops", [], new Error("x"));
    assert.equal(handler.status, "500 Oops");
  });
});

Deno.test("BaseHandler.startResponse() and write() work unbound, and overrides are used", async () => {
  class Recording extends BaseCGIHandler {
    calls: string[] = [];
    override startResponse(
      status: string,
      headers: HeaderList,
      excInfo?: unknown,
    ) {
      this.calls.push(status);
      return super.startResponse(status, headers, excInfo);
    }
  }
  const stdout = new Sink();
  const handler = new Recording(
    new BytesInput(),
    stdout,
    new StringErrorStream(),
    ENV,
  );
  handler.osEnviron = {};
  let seen: StartResponse | undefined;
  await handler.run((_e, startResponse) => {
    seen = startResponse;
    const write = startResponse("201 Created", []);
    write(enc("made"));
    return [];
  });
  assert.deepEqual(handler.calls, ["201 Created"]);
  assert.equal(seen, handler.startResponse);
  assert.equal(stdout.text, "Status: 201 Created\r\n\r\nmade");
});

// ---------------------------------------------------------------------------
// write

Deno.test("BaseHandler.write() refuses non-bytes and calls before startResponse", async (t) => {
  await t.step("before startResponse", () => {
    const { handler, stdout } = handlerFor();
    assert.throws(() => handler.write(enc("x")), {
      name: "AssertionError",
      message: "write() before start_response()",
    });
    assert.equal(stdout.chunks.length, 0);
  });
  const bad: [string, unknown][] = [
    ["string", "text"],
    ["number array", [104, 105]],
    ["ArrayBuffer", new ArrayBuffer(2)],
    ["DataView", new DataView(new ArrayBuffer(2))],
    ["Uint16Array", new Uint16Array(2)],
    ["null", null],
    ["undefined", undefined],
    ["Blob", new Blob(["x"])],
  ];
  for (const [label, value] of bad) {
    await t.step(label, () => {
      const { handler, stdout } = handlerFor();
      const write = handler.startResponse("200 OK", []);
      assert.throws(() => write(value as Uint8Array), {
        name: "AssertionError",
        message: "write() argument must be a bytes instance",
      });
      assert.equal(stdout.chunks.length, 0);
      assert.equal(handler.headersSent, false);
    });
  }
});

Deno.test("BaseHandler.write() sends headers before the first chunk and flushes each chunk", async () => {
  const { handler, stdout } = handlerFor();
  handler.setupEnviron();
  const write = handler.startResponse("200 OK", [["X-A", "1"]]);
  assert.equal(stdout.chunks.length, 0);
  write(enc("ab"));
  assert.equal(handler.headersSent, true);
  assert.equal(handler.bytesSent, 2);
  assert.equal(stdout.flushes, 1);
  write(enc("cde"));
  assert.equal(handler.bytesSent, 5);
  assert.equal(stdout.flushes, 2);
  write(new Uint8Array(0));
  assert.equal(stdout.flushes, 3);
  assert.equal(stdout.text, "Status: 200 OK\r\nX-A: 1\r\n\r\nabcde");
  // A subclass of Uint8Array is bytes too.
  class Bytes extends Uint8Array {}
  write(new Bytes([0x21]));
  assert.equal(stdout.text.endsWith("abcde!"), true);
  await handler.close();
});

Deno.test("BaseHandler.sendHeaders() writes the preamble and headers at once, or through the methods a subclass replaced", async (t) => {
  const app = APPS.one;
  const head = "Status: 200 OK\r\nContent-Type: text/plain\r\n" +
    "Content-Length: 5\r\n\r\n";
  await t.step("neither replaced: one write", async () => {
    const { output, stdout } = await runApp(app);
    assert.equal(output, head + "Hello");
    assert.deepEqual(stdout.chunks.map(decodeLatin1), [head, "Hello"]);
  });
  await t.step("sendPreamble() replaced", async () => {
    const { output, stdout } = await runApp(app, {
      configure: (handler) => {
        handler.sendPreamble = function (this: SimpleHandler) {
          this._write(enc("Status: 299 Mine\r\n"));
        };
      },
    });
    assert.equal(output, head.replace("200 OK", "299 Mine") + "Hello");
    assert.equal(stdout.chunks.length, 3);
  });
  await t.step("toBytes() replaced through headersClass", async () => {
    class Upper extends Headers {
      override toBytes(): Uint8Array {
        return enc(this.toString().toUpperCase());
      }
    }
    const { output } = await runApp(app, {
      configure: (handler) => void (handler.headersClass = Upper),
    });
    assert.equal(
      output,
      "Status: 200 OK\r\nCONTENT-TYPE: TEXT/PLAIN\r\nCONTENT-LENGTH: 5\r\n\r\nHello",
    );
  });
  await t.step("an origin server's preamble, in one write too", async () => {
    const { output, stdout } = await runApp(app, { cgi: false });
    assert.match(output, /^HTTP\/1\.0 200 OK\r\nDate: <date>\r\n/);
    assert.equal(stdout.chunks.length, 2);
  });
});

// ---------------------------------------------------------------------------
// Errors

Deno.test("BaseHandler.logException() writes the stack, limited by tracebackLimit", async (t) => {
  function frames(log: string): number {
    return log.split("\n").filter((line) => /^\s+at /.test(line)).length;
  }
  function deep(n: number): never {
    if (n === 0) throw new Error("deep");
    return deep(n - 1);
  }
  const app: Application = () => deep(5);
  const all = (await runApp(app)).log;
  assert.ok(all.startsWith("Error: deep\n    at deep ("), all);
  assert.ok(frames(all) >= 7, all);
  const rows: [number | null, number][] = [
    [null, frames(all)],
    [0, 0],
    [1, 1],
    [3, 3],
    [-2, 2],
    [1000, frames(all)],
  ];
  for (const [limit, expected] of rows) {
    await t.step(`tracebackLimit ${limit}`, async () => {
      const { log, output } = await runApp(app, {
        configure: (h) => (h.tracebackLimit = limit),
      });
      assert.ok(log.startsWith("Error: deep\n"), log);
      assert.equal(frames(log), expected);
      assert.ok(log.endsWith("\n"));
      assert.ok(output.startsWith("Status: 500 Internal Server Error\r\n"));
    });
  }
  await t.step(
    "innermost frames first; negative keeps the outermost",
    async () => {
      const inner =
        (await runApp(app, { configure: (h) => (h.tracebackLimit = 1) })).log;
      assert.match(inner, /^Error: deep\n {4}at deep \(/);
      const outer =
        (await runApp(app, { configure: (h) => (h.tracebackLimit = -1) })).log;
      assert.doesNotMatch(outer, /at deep \(/);
    },
  );
  await t.step("causes follow the error", async () => {
    const { log } = await runApp(() => {
      throw new Error("outer", { cause: new TypeError("inner") });
    });
    assert.match(log, /^Error: outer\n[^]*\nCaused by: TypeError: inner\n/);
  });
  await t.step("a thrown string", async () => {
    const { log, output } = await runApp(() => {
      throw "plain string";
    });
    assert.equal(log, 'Uncaught "plain string"\n');
    assert.ok(output.startsWith("Status: 500 Internal Server Error\r\n"));
  });
  await t.step("a multi-line message keeps its lines", async () => {
    const { log } = await runApp(() => {
      throw new Error("line one\nline two");
    }, { configure: (h) => (h.tracebackLimit = 0) });
    assert.equal(log, "Error: line one\nline two\n");
  });
  await t.step("the error stream is flushed", async () => {
    let flushed = 0;
    const errors: ErrorStream = {
      write: () => {},
      writelines: () => {},
      flush: () => void flushed++,
    };
    const handler = new BaseCGIHandler(
      new BytesInput(),
      new Sink(),
      errors,
      ENV,
    );
    handler.osEnviron = {};
    await handler.run(() => {
      throw new Error("x");
    });
    assert.equal(flushed, 1);
  });
});

Deno.test("BaseHandler.run() wraps a thrown null or undefined in an Error for excInfo", async (t) => {
  for (const thrown of [null, undefined]) {
    await t.step(String(thrown), async () => {
      let excInfo: unknown = "not called";
      const { output, log } = await runApp(() => {
        throw thrown;
      }, {
        configure: (h) => {
          const original = h.errorOutput.bind(h);
          h.errorOutput = (environ, startResponse, error) => {
            excInfo = error;
            return original(environ, startResponse, error);
          };
        },
      });
      assert.ok(excInfo instanceof Error);
      assert.equal(excInfo.message, `The application threw ${thrown}`);
      assert.ok(log.startsWith(`Error: The application threw ${thrown}\n`));
      assert.ok(output.startsWith("Status: 500 Internal Server Error\r\n"));
    });
  }
});

Deno.test("BaseHandler.run() answers with errorStatus, errorHeaders and errorBody", async () => {
  const { output } = await runApp(APPS.errorBeforeHeaders, {
    configure: (h) => {
      h.errorStatus = "503 Service Unavailable";
      h.errorHeaders = [["Content-Type", "text/html"], ["Retry-After", "60"]];
      h.errorBody = enc("<p>Later</p>");
    },
  });
  assert.equal(
    output,
    "Status: 503 Service Unavailable\r\nContent-Type: text/html\r\nRetry-After: 60\r\nContent-Length: 12\r\n\r\n<p>Later</p>",
  );
  // errorHeaders is copied: the error page's Content-Length does not stick.
  const handler = handlerFor().handler;
  await handler.run(APPS.errorBeforeHeaders);
  assert.deepEqual(handler.errorHeaders, [["Content-Type", "text/plain"]]);
});

Deno.test("BaseHandler shares one frozen wsgi.version, which no application can change for the next request", async () => {
  const seen: unknown[] = [];
  const app: Application = (environ, startResponse) => {
    const version = environ["wsgi.version"] as number[];
    seen.push(version);
    assert.throws(() => {
      version[0] = 2;
    }, TypeError);
    startResponse("200 OK", []);
    return [];
  };
  for (let i = 0; i < 2; i++) await handlerFor().handler.run(app);
  assert.deepEqual(seen, [[1, 0], [1, 0]]);
  assert.equal(seen[0], seen[1]);
  assert.ok(Object.isFrozen(seen[0]));
  // As wsgiref's class attributes: one default error header list too.
  assert.equal(
    handlerFor().handler.errorHeaders,
    handlerFor().handler.errorHeaders,
  );
});

Deno.test("BaseHandler.run() ends quietly when the client goes away", async (t) => {
  for (
    const ErrorClass of [
      Deno.errors.BrokenPipe,
      Deno.errors.ConnectionReset,
      Deno.errors.ConnectionAborted,
    ]
  ) {
    await t.step(ErrorClass.name, async () => {
      const result = closable([enc("a"), enc("b")]);
      const stdout = {
        writeSync(): number {
          throw new ErrorClass("gone");
        },
      };
      const errors = new StringErrorStream();
      const handler = new BaseCGIHandler(new BytesInput(), stdout, errors, ENV);
      handler.osEnviron = {};
      await handler.run((_e, sr) => {
        sr("200 OK", []);
        return result;
      });
      assert.equal(errors.value, "");
      assert.equal(result.closed, 1);
    });
  }
  await t.step("other errors from the stream are logged", async () => {
    const stdout = {
      writeSync(): number {
        throw new Error("disk full");
      },
    };
    const errors = new StringErrorStream();
    const handler = new BaseCGIHandler(new BytesInput(), stdout, errors, ENV);
    handler.osEnviron = {};
    await handler.run(APPS.one);
    assert.ok(errors.value.startsWith("Error: disk full\n"), errors.value);
  });
});

Deno.test("BaseHandler.run() closes and throws on an error in the error path", async (t) => {
  await t.step("errorOutput() throws", async () => {
    const result = closable([]);
    const { handler } = handlerFor();
    handler.errorOutput = () => {
      throw new Error("second");
    };
    await assert.rejects(
      handler.run((_e, sr) => {
        sr("200 OK", []);
        return {
          *[Symbol.iterator]() {
            yield* [];
            throw new Error("first");
          },
          close: () => void result.closed++,
        };
      }),
      { message: "second" },
    );
    assert.equal(result.closed, 1);
    assert.equal(handler.status, null);
    assert.equal(handler.result, null);
  });
  await t.step("the stream fails while the error page is sent", async () => {
    const result = closable([]);
    let calls = 0;
    const stdout = {
      writeSync(p: Uint8Array): number {
        if (++calls > 0) throw new Error(`write ${calls} failed`);
        return p.length;
      },
    };
    const handler = new BaseCGIHandler(
      new BytesInput(),
      stdout,
      new StringErrorStream(),
      ENV,
    );
    handler.osEnviron = {};
    await assert.rejects(
      handler.run((_e, sr) => {
        sr("200 OK", []);
        return {
          *[Symbol.iterator]() {
            yield* [];
            throw new Error("app failed");
          },
          close: () => void result.closed++,
        };
      }),
      { message: "write 1 failed" },
    );
    assert.equal(result.closed, 1);
    assert.equal(handler.headersSent, false);
  });
  await t.step("logging fails", async () => {
    const errors: ErrorStream = {
      write() {
        throw new Error("log broken");
      },
      writelines() {},
      flush() {},
    };
    const handler = new BaseCGIHandler(
      new BytesInput(),
      new Sink(),
      errors,
      ENV,
    );
    handler.osEnviron = {};
    await assert.rejects(handler.run(APPS.errorBeforeHeaders), {
      message: "log broken",
    });
  });
  await t.step("an abstract BaseHandler", async () => {
    const handler = new BaseHandler();
    handler.osEnviron = {};
    await assert.rejects(handler.run(APPS.one), {
      message: "BaseHandler.getStderr() must be overridden by a subclass",
    });
  });
});

Deno.test("BaseHandler.run() calls the result's close() exactly once on every path", async (t) => {
  const rows: [string, (result: ResponseBody) => Application, string][] = [
    [
      "success",
      (r) => (_e, sr) => (sr("200 OK", []), r),
      "Status: 200 OK\r\n\r\nab",
    ],
    [
      "error before any chunk",
      () => (_e, sr) => {
        sr("200 OK", []);
        return { ...failing(0), close: closeCounter };
      },
      "Status: 500 Internal Server Error\r\n" + ERROR_PAGE,
    ],
    [
      "error after headers",
      () => (_e, sr) => {
        sr("200 OK", []);
        return { ...failing(1), close: closeCounter };
      },
      "Status: 200 OK\r\n\r\nchunk",
    ],
    [
      "bad chunk type",
      (r) => (_e, sr) => {
        sr("200 OK", []);
        return {
          *[Symbol.iterator]() {
            yield "text" as unknown as Uint8Array;
          },
          close: r.close,
        };
      },
      "Status: 500 Internal Server Error\r\n" + ERROR_PAGE,
    ],
    [
      "async close",
      (r) => (_e, sr) => {
        sr("200 OK", []);
        return {
          [Symbol.iterator]: () => [enc("x")][Symbol.iterator](),
          close: async () => {
            await new Promise((resolve) => setTimeout(resolve, 10));
            r.close!();
          },
        };
      },
      "Status: 200 OK\r\n\r\nx",
    ],
    [
      "async iterable",
      (r) => async (_e, sr) => {
        await Promise.resolve();
        sr("200 OK", []);
        return {
          async *[Symbol.asyncIterator]() {
            yield enc("a");
            await Promise.resolve();
            yield enc("b");
          },
          close: r.close,
        };
      },
      "Status: 200 OK\r\n\r\nab",
    ],
  ];
  let closes = 0;
  function closeCounter() {
    closes++;
  }
  function failing(good: number): Iterable<Uint8Array> {
    return {
      *[Symbol.iterator]() {
        for (let i = 0; i < good; i++) yield enc("chunk");
        throw new Error("iteration failed");
      },
    };
  }
  for (const [label, makeApp, expected] of rows) {
    await t.step(label, async () => {
      closes = 0;
      const result = {
        *[Symbol.iterator]() {
          yield enc("a");
          yield enc("b");
        },
        close: closeCounter,
      };
      const { output, handler } = await runApp(makeApp(result));
      assert.equal(output, expected);
      assert.equal(closes, 1);
      if (!label.startsWith("error after")) {
        assert.equal(handler.result, null);
        assert.equal(handler.status, null);
        assert.equal(handler.headers, null);
        assert.equal(handler.environ, null);
        assert.equal(handler.headersSent, false);
        assert.equal(handler.bytesSent, 0);
      }
    });
  }
});

Deno.test("BaseHandler.run() refuses a result that is not iterable", async (t) => {
  for (const value of [undefined, null, 42, {}, Promise.resolve(1)]) {
    await t.step(String(value), async () => {
      const { output, log } = await runApp(
        ((_e: Environ, sr: StartResponse) => {
          sr("200 OK", []);
          return value;
        }) as unknown as Application,
      );
      assert.equal(
        output,
        "Status: 500 Internal Server Error\r\n" + ERROR_PAGE,
      );
      assert.match(
        log,
        /^TypeError: Cannot send the response: the application returned .*, which is not iterable\n/,
      );
    });
  }
  // Both are iterable, but not of chunks: the message names what the
  // application returned rather than a write() it never called.
  const misshapen: [string, unknown, string][] = [
    [
      "a bare Uint8Array",
      enc("abc"),
      "The application returned a bare Uint8Array (3 bytes); it must return an iterable of Uint8Array chunks, e.g. [bytes]",
    ],
    [
      "a string",
      "Hello world!",
      'The application returned a string ("Hello world!"); it must return an iterable of Uint8Array chunks, e.g. [new TextEncoder().encode(text)]',
    ],
    [
      "a long string, cut",
      "x".repeat(100),
      `The application returned a string ("${
        "x".repeat(40)
      }..."); it must return an iterable of Uint8Array chunks, e.g. [new TextEncoder().encode(text)]`,
    ],
  ];
  for (const [label, value, message] of misshapen) {
    for (const later of [false, true]) {
      await t.step(
        `${label}${later ? ", from an async app" : ""}`,
        async () => {
          const { output, log } = await runApp(
            ((_e: Environ, sr: StartResponse) => {
              sr("200 OK", []);
              return later ? Promise.resolve(value) : value;
            }) as unknown as Application,
          );
          assert.equal(
            output,
            "Status: 500 Internal Server Error\r\n" + ERROR_PAGE,
          );
          assert.equal(log.split("\n")[0], `AssertionError: ${message}`);
        },
      );
    }
  }
});

Deno.test("BaseHandler.run() refuses a header list changed into an injection after startResponse", async () => {
  const { output, log } = await runApp((_e, sr) => {
    const headers: HeaderList = [["Content-Type", "text/plain"]];
    sr("200 OK", headers);
    headers.push(["X-A", "1\r\nSet-Cookie: stolen=1"]);
    return [enc("body")];
  });
  assert.equal(output, "Status: 500 Internal Server Error\r\n" + ERROR_PAGE);
  assert.doesNotMatch(output, /Set-Cookie/);
  assert.match(
    log,
    /^TypeError: Cannot format header "X-A": value contains control character "\\r" at index 1\n/,
  );
});

// ---------------------------------------------------------------------------
// Asynchronous applications

Deno.test("BaseHandler.run() takes async apps and AsyncIterable results", async (t) => {
  await t.step("async app, async generator", async () => {
    const { output } = await runApp(async (_e, sr) => {
      await new Promise((resolve) => setTimeout(resolve, 1));
      sr("200 OK", [["Content-Type", "text/plain"]]);
      return (async function* () {
        yield enc("a");
        await new Promise((resolve) => setTimeout(resolve, 1));
        yield enc("b");
      })();
    });
    assert.equal(
      output,
      "Status: 200 OK\r\nContent-Type: text/plain\r\n\r\nab",
    );
  });
  await t.step("async app that rejects", async () => {
    const { output, log } = await runApp(async () => {
      await Promise.resolve();
      throw new RangeError("async failure");
    });
    assert.equal(output, "Status: 500 Internal Server Error\r\n" + ERROR_PAGE);
    assert.ok(log.startsWith("RangeError: async failure\n"));
  });
  await t.step("a thenable that is not a Promise", async () => {
    const { output } = await runApp(
      ((_e: Environ, sr: StartResponse) => ({
        then(resolve: (value: ResponseBody) => void) {
          sr("200 OK", []);
          resolve([enc("thenable")]);
        },
      })) as unknown as Application,
    );
    assert.equal(output, "Status: 200 OK\r\nContent-Length: 8\r\n\r\nthenable");
  });
  await t.step("async iterable that fails after the headers", async () => {
    const { output, log } = await runApp((_e, sr) => {
      sr("200 OK", []);
      return (async function* () {
        yield enc("part");
        throw new Error("async late");
      })();
    });
    assert.equal(output, "Status: 200 OK\r\n\r\npart");
    assert.ok(log.startsWith("Error: async late\n"));
  });
});

Deno.test("BaseHandler.run() iterates a synchronous result without awaiting between chunks", async () => {
  let microtaskRan = false;
  let sawMicrotask = false;
  const { output } = await runApp((_e, sr) => {
    sr("200 OK", []);
    queueMicrotask(() => (microtaskRan = true));
    return (function* () {
      for (let i = 0; i < 100; i++) {
        sawMicrotask ||= microtaskRan;
        yield enc("x");
      }
    })();
  });
  assert.equal(sawMicrotask, false);
  assert.equal(output, "Status: 200 OK\r\n\r\n" + "x".repeat(100));
  // The same check notices the awaits of an async iterable.
  microtaskRan = false;
  await runApp((_e, sr) => {
    sr("200 OK", []);
    queueMicrotask(() => (microtaskRan = true));
    return (async function* () {
      for (let i = 0; i < 3; i++) {
        sawMicrotask ||= microtaskRan;
        yield enc("x");
      }
    })();
  });
  assert.equal(sawMicrotask, true);
});

// ---------------------------------------------------------------------------
// environ

Deno.test("BaseHandler.setupEnviron() builds the environ as wsgiref does", async (t) => {
  await t.step("SimpleHandler", () => {
    const input = new BytesInput();
    const errors = new StringErrorStream();
    const handler = new SimpleHandler(
      input,
      new Sink(),
      errors,
      {
        ...ENV,
        FROM_BASE: "base",
        SHARED: "request",
      },
      false,
      true,
    );
    handler.osEnviron = { FROM_OS: "os", SHARED: "os" };
    handler.setupEnviron();
    const environ = handler.environ!;
    assert.equal(environ["wsgi.input"], input);
    assert.equal(environ["wsgi.errors"], errors);
    assert.equal(environ["wsgi.file_wrapper"], FileWrapper);
    const {
      "wsgi.input": _,
      "wsgi.errors": __,
      "wsgi.file_wrapper": ___,
      ...rest
    } = environ;
    assert.deepEqual(rest, {
      ...ENV,
      FROM_OS: "os",
      FROM_BASE: "base",
      SHARED: "request",
      "wsgi.version": [1, 0],
      "wsgi.run_once": false,
      "wsgi.url_scheme": "http",
      "wsgi.multithread": false,
      "wsgi.multiprocess": true,
    });
  });
  await t.step("HTTPS=on gives https", () => {
    const { handler } = handlerFor({ ...ENV, HTTPS: "on" });
    handler.setupEnviron();
    assert.equal(handler.environ!["wsgi.url_scheme"], "https");
  });
  await t.step("SERVER_SOFTWARE for an origin server only, unless set", () => {
    const origin = new SimpleHandler(
      new BytesInput(),
      new Sink(),
      new StringErrorStream(),
      {},
    );
    origin.osEnviron = {};
    origin.serverSoftware = "Test/1.0";
    origin.setupEnviron();
    assert.equal(origin.environ!.SERVER_SOFTWARE, "Test/1.0");
    const own = new SimpleHandler(
      new BytesInput(),
      new Sink(),
      new StringErrorStream(),
      {
        SERVER_SOFTWARE: "mine",
      },
    );
    own.osEnviron = {};
    own.serverSoftware = "Test/1.0";
    own.setupEnviron();
    assert.equal(own.environ!.SERVER_SOFTWARE, "mine");
    const { handler: cgi } = handlerFor({});
    cgi.serverSoftware = "Test/1.0";
    cgi.setupEnviron();
    assert.equal("SERVER_SOFTWARE" in cgi.environ!, false);
  });
  await t.step("wsgiFileWrapper null leaves the key out", () => {
    const { handler } = handlerFor();
    handler.wsgiFileWrapper = null;
    handler.setupEnviron();
    assert.equal("wsgi.file_wrapper" in handler.environ!, false);
  });
  await t.step(
    "the default osEnviron is the process environment, read once",
    () => {
      const a = new SimpleHandler(
        new BytesInput(),
        new Sink(),
        new StringErrorStream(),
        {},
      );
      const b = new BaseCGIHandler(
        new BytesInput(),
        new Sink(),
        new StringErrorStream(),
        {},
      );
      assert.equal(a.osEnviron, b.osEnviron);
      assert.equal(a.osEnviron.PATH, Deno.env.get("PATH"));
      a.osEnviron = {};
      assert.deepEqual(a.osEnviron, {});
      assert.notDeepEqual(b.osEnviron, {});
    },
  );
});

Deno.test("SimpleHandler reads a reader stdin no further than CONTENT_LENGTH", async (t) => {
  function reader(text: string) {
    const data = enc(text);
    const state = { offset: 0, calls: 0 };
    return {
      state,
      readSync(p: Uint8Array): number | null {
        state.calls++;
        if (state.offset >= data.length) return null;
        const n = Math.min(p.length, data.length - state.offset);
        p.set(data.subarray(state.offset, state.offset + n));
        state.offset += n;
        return n;
      },
    };
  }
  const readBody: Application = (environ, sr) => {
    const input = environ["wsgi.input"] as InputStream;
    const body = input.read();
    sr("200 OK", []);
    return [body];
  };
  const rows: [string, Environ, string][] = [
    ["CONTENT_LENGTH 5", { CONTENT_LENGTH: "5" }, "hello"],
    [
      "CONTENT_LENGTH beyond the data",
      { CONTENT_LENGTH: "100" },
      "hello world, and more",
    ],
    ["CONTENT_LENGTH absent", {}, ""],
    ["CONTENT_LENGTH empty", { CONTENT_LENGTH: "" }, ""],
    ["CONTENT_LENGTH 0", { CONTENT_LENGTH: "0" }, ""],
    ["CONTENT_LENGTH with spaces", { CONTENT_LENGTH: " 3 " }, "hel"],
    [
      "CONTENT_LENGTH of 15 digits",
      { CONTENT_LENGTH: "9".repeat(15) },
      "hello world, and more",
    ],
  ];
  for (const [label, environ, expected] of rows) {
    await t.step(label, async () => {
      const stdin = reader("hello world, and more");
      const stdout = new Sink();
      const handler = new BaseCGIHandler(
        stdin,
        stdout,
        new StringErrorStream(),
        environ,
      );
      handler.osEnviron = {};
      await handler.run(readBody);
      assert.equal(
        stdout.text,
        `Status: 200 OK\r\nContent-Length: ${expected.length}\r\n\r\n${expected}`,
      );
      assert.equal(stdin.state.offset, expected.length);
      if (expected === "") assert.equal(stdin.state.calls, 0);
    });
  }
  for (
    const bad of [
      "abc",
      "-1",
      "+5",
      "1e3",
      "0x10",
      "1.5",
      "5 5",
      "   ",
      "\u0665",
      "9".repeat(16),
    ]
  ) {
    await t.step(`bad CONTENT_LENGTH ${JSON.stringify(bad)}`, async () => {
      const stdin = reader("hello");
      const stdout = new Sink();
      const errors = new StringErrorStream();
      const handler = new BaseCGIHandler(stdin, stdout, errors, {
        CONTENT_LENGTH: bad,
      });
      handler.osEnviron = {};
      await handler.run(readBody);
      assert.equal(
        stdout.text,
        "Status: 500 Internal Server Error\r\n" + ERROR_PAGE,
      );
      assert.ok(
        errors.value.startsWith(
          `RangeError: Cannot read CONTENT_LENGTH: ${
            JSON.stringify(bad)
          } is not a non-negative integer\n`,
        ),
        errors.value,
      );
      assert.equal(stdin.state.calls, 0);
    });
  }
});

// ---------------------------------------------------------------------------
// SimpleHandler streams

Deno.test("SimpleHandler completes partial writes", async (t) => {
  const expected =
    "Status: 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nHello";
  await t.step("writeSync taking 3 bytes at a time", async () => {
    let out = "";
    const stdout = {
      writeSync(p: Uint8Array): number {
        const n = Math.min(3, p.length);
        out += decodeLatin1(p.subarray(0, n));
        return n;
      },
    };
    const handler = new BaseCGIHandler(
      new BytesInput(),
      stdout,
      new StringErrorStream(),
      ENV,
    );
    handler.osEnviron = {};
    await handler.run(APPS.one);
    assert.equal(out, expected);
  });
  await t.step("write taking 1 byte at a time", async () => {
    let out = "";
    const stdout = {
      write(p: Uint8Array): number {
        out += decodeLatin1(p.subarray(0, 1));
        return 1;
      },
    };
    const handler = new BaseCGIHandler(
      new BytesInput(),
      stdout,
      new StringErrorStream(),
      ENV,
    );
    handler.osEnviron = {};
    await handler.run(APPS.one);
    assert.equal(out, expected);
  });
  await t.step("write returning nothing: all written", async () => {
    let out = "";
    const stdout = {
      write(p: Uint8Array): void {
        out += decodeLatin1(p);
      },
    };
    const handler = new BaseCGIHandler(
      new BytesInput(),
      stdout,
      new StringErrorStream(),
      ENV,
    );
    handler.osEnviron = {};
    await handler.run(APPS.one);
    assert.equal(out, expected);
  });
});

Deno.test("SimpleHandler accepts Deno's stdio and refuses streams it cannot use", async (t) => {
  await t.step("Deno.stdin, Deno.stdout, Deno.stderr", () => {
    const handler = new SimpleHandler(Deno.stdin, Deno.stdout, Deno.stderr, {});
    handler.osEnviron = {};
    handler.environ = {};
    const input = handler.getStdin();
    assert.equal(typeof input.readline, "function");
    assert.equal(input.read().length, 0); // no CONTENT_LENGTH: no body
    assert.equal(typeof handler.getStderr().writelines, "function");
    handler.environ = null;
  });
  await t.step("an ErrorStream is used as is", () => {
    const errors = new StringErrorStream();
    const handler = new SimpleHandler(new BytesInput(), new Sink(), errors, {});
    assert.equal(handler.getStderr(), errors);
  });
  await t.step("a byte writer for stderr gets UTF-8 text", async () => {
    const bytes: number[] = [];
    const stderr = {
      writeSync: (p: Uint8Array) => (bytes.push(...p), p.length),
    };
    const handler = new SimpleHandler(
      new BytesInput(),
      new Sink(),
      stderr,
      ENV,
    );
    handler.osEnviron = {};
    handler.tracebackLimit = 0;
    await handler.run(() => {
      throw new Error("café");
    });
    assert.equal(
      new TextDecoder().decode(new Uint8Array(bytes)),
      "Error: café\n",
    );
  });
  const bad: [string, unknown[], RegExp][] = [
    [
      "stdin null",
      [null, new Sink(), new StringErrorStream(), {}],
      /^Cannot create a handler: stdin must be an InputStream or have readSync\(\), not null/,
    ],
    ["stdin async reader", [
      { read: () => Promise.resolve(null) },
      new Sink(),
      new StringErrorStream(),
      {},
    ], /stdin must be an InputStream or have readSync\(\)/],
    [
      "stdout without write",
      [new BytesInput(), {}, new StringErrorStream(), {}],
      /^Cannot create a handler: stdout must have writeSync\(\) or write\(\), not object/,
    ],
    [
      "stdout a string",
      [new BytesInput(), "out", new StringErrorStream(), {}],
      /stdout must have writeSync\(\) or write\(\), not string 'out'/,
    ],
    [
      "stderr a number",
      [new BytesInput(), new Sink(), 2, {}],
      /^Cannot use number 2 as an error stream/,
    ],
    ["environ null", [
      new BytesInput(),
      new Sink(),
      new StringErrorStream(),
      null,
    ], /^Cannot create a handler: environ must be an object, not null/],
    ["environ an array", [
      new BytesInput(),
      new Sink(),
      new StringErrorStream(),
      [],
    ], /environ must be an object, not array/],
  ];
  for (const [label, args, message] of bad) {
    await t.step(label, () => {
      assert.throws(
        () =>
          new (SimpleHandler as unknown as new (...a: unknown[]) => unknown)(
            ...args,
          ),
        { name: "TypeError", message },
      );
    });
  }
});

// ---------------------------------------------------------------------------
// File wrapper and sendfile

Deno.test("BaseCGIHandler streams a FileWrapper of a Deno.FsFile block by block", async () => {
  const path = await Deno.makeTempFile();
  try {
    const content = Uint8Array.from(
      { length: 100_000 },
      (_, i) => (i * 7) % 256,
    );
    await Deno.writeFile(path, content);
    const file = Deno.openSync(path);
    const positions: number[] = [];
    const sizes: number[] = [];
    const stdout = new Sink();
    const realWrite = stdout.writeSync.bind(stdout);
    stdout.writeSync = (p: Uint8Array) => {
      positions.push(file.seekSync(0, Deno.SeekMode.Current));
      sizes.push(p.length);
      return realWrite(p);
    };
    const handler = new BaseCGIHandler(
      new BytesInput(),
      stdout,
      new StringErrorStream(),
      ENV,
    );
    handler.osEnviron = {};
    await handler.run((environ, sr) => {
      sr("200 OK", [["Content-Type", "application/octet-stream"]]);
      return new environ["wsgi.file_wrapper"]!(file);
    });
    const head =
      "Status: 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n";
    assert.equal(stdout.text, head + decodeLatin1(content));
    // The status line and headers in one write, then 13 blocks, each read
    // just before it is sent.
    assert.equal(sizes[0], head.length);
    const body = positions.slice(1);
    assert.equal(body.length, 13);
    assert.deepEqual(
      body,
      body.map((_, i) => Math.min((i + 1) * 8192, 100_000)),
    );
    assert.ok(sizes.slice(1).every((size) => size <= 8192));
    // The handler closed the wrapper, which closed the file.
    assert.throws(
      () => file.seekSync(0, Deno.SeekMode.Current),
      Deno.errors.BadResource,
    );
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("BaseHandler.sendfile() is used for a wsgiFileWrapper result when it returns true", async (t) => {
  function counting() {
    const file = {
      reads: 0,
      closes: 0,
      read(size: number) {
        file.reads++;
        return file.reads === 1
          ? enc("file data".slice(0, size))
          : new Uint8Array(0);
      },
      close() {
        file.closes++;
      },
    };
    return file;
  }
  class SendfileHandler extends BaseCGIHandler {
    sendfileCalls = 0;
    answer: boolean | Promise<boolean> = true;
    override sendfile(): boolean | Promise<boolean> {
      this.sendfileCalls++;
      if (this.answer === true) {
        if (!this.headersSent) this.sendHeaders();
        this._write(enc("[sent by sendfile]"));
      }
      return this.answer;
    }
  }
  const rows: [
    string,
    boolean | (() => Promise<boolean>),
    boolean,
    string,
    number,
  ][] = [
    [
      "true",
      true,
      true,
      "Status: 200 OK\r\nContent-Type: text/plain\r\n\r\n[sent by sendfile]",
      0,
    ],
    [
      "false",
      false,
      true,
      "Status: 200 OK\r\nContent-Type: text/plain\r\n\r\nfile data",
      2,
    ],
    [
      "Promise of false",
      () => Promise.resolve(false),
      true,
      "Status: 200 OK\r\nContent-Type: text/plain\r\n\r\nfile data",
      2,
    ],
    [
      "not a wrapper result",
      true,
      false,
      "Status: 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 9\r\n\r\nfile data",
      0,
    ],
  ];
  for (const [label, answer, wrapped, expected, reads] of rows) {
    await t.step(label, async () => {
      const file = counting();
      const stdout = new Sink();
      const handler = new SendfileHandler(
        new BytesInput(),
        stdout,
        new StringErrorStream(),
        ENV,
      );
      handler.osEnviron = {};
      handler.answer = typeof answer === "function" ? answer() : answer;
      await handler.run((_e, sr) => {
        sr("200 OK", [["Content-Type", "text/plain"]]);
        return wrapped ? new FileWrapper(file) : [enc("file data")];
      });
      assert.equal(stdout.text, expected);
      assert.equal(handler.sendfileCalls, wrapped ? 1 : 0);
      assert.equal(file.reads, reads);
      assert.equal(file.closes, wrapped ? 1 : 0);
    });
  }
  await t.step("resultIsFile() is false with wsgiFileWrapper null", () => {
    const { handler } = handlerFor();
    handler.result = new FileWrapper(counting());
    assert.equal(handler.resultIsFile(), true);
    handler.wsgiFileWrapper = null;
    assert.equal(handler.resultIsFile(), false);
  });
});

// ---------------------------------------------------------------------------
// A subclass in the shape simple_server's ServerHandler takes

Deno.test("BaseHandler's steps can be overridden one by one, as an async server does", async () => {
  class Collecting extends SimpleHandler {
    sent: { status: string; headers: HeaderList; body: string } | null = null;
    body = "";
    override sendHeaders(): void {
      this.cleanupHeaders();
      this.headersSent = true;
      this.sent = {
        status: this.status!,
        headers: this.headers!.items(),
        body: "",
      };
    }
    override _write(data: Uint8Array): void {
      this.body += decodeLatin1(data);
    }
    override _flush(): void {}
    override async finishResponse(): Promise<void> {
      const result = this.result as Iterable<Uint8Array>;
      for (const chunk of result) this.write(chunk);
      this.finishContent();
      await this.close();
    }
  }
  const handler = new Collecting(
    new BytesInput(),
    new Sink(),
    new StringErrorStream(),
    ENV,
  );
  handler.osEnviron = {};
  await handler.run(APPS.one);
  assert.deepEqual(handler.sent, {
    status: "200 OK",
    headers: [["Content-Type", "text/plain"], ["Content-Length", "5"]],
    body: "",
  });
  assert.equal(handler.body, "Hello");
  assert.equal(handler.status, null);
});

// ---------------------------------------------------------------------------
// Process-level: readEnviron, CGIHandler, IISCGIHandler (in child processes)

const FIXTURES = new URL("./fixtures/", import.meta.url);
const EXAMPLE = new URL("../examples/cgi.ts", import.meta.url);
let denoDir: string | undefined;

/** PATH, HOME and Deno's cache for a child with an otherwise clean env. */
async function childEnv(
  extra: Record<string, string>,
): Promise<Record<string, string>> {
  if (denoDir === undefined) {
    const info = await new Deno.Command(Deno.execPath(), {
      args: ["info", "--json"],
      stdout: "piped",
      stderr: "null",
    }).output();
    denoDir = JSON.parse(new TextDecoder().decode(info.stdout))
      .denoDir as string;
  }
  return {
    PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
    HOME: Deno.env.get("HOME") ?? "/tmp",
    DENO_DIR: denoDir,
    NO_COLOR: "1",
    DENO_NO_UPDATE_CHECK: "1",
    ...extra,
  };
}

interface ChildResult {
  code: number;
  stdout: string;
  stderr: string;
}

async function runChild(
  command: string,
  args: string[],
  env: Record<string, string>,
  stdin?: Uint8Array,
): Promise<ChildResult> {
  const child = new Deno.Command(command, {
    args,
    env: await childEnv(env),
    clearEnv: true,
    stdin: stdin ? "piped" : "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (stdin) {
    const writer = child.stdin.getWriter();
    await writer.write(stdin);
    await writer.close();
  }
  const { code, stdout, stderr } = await child.output();
  return {
    code,
    stdout: decodeLatin1(stdout),
    stderr: new TextDecoder().decode(stderr),
  };
}

function denoRun(
  permissions: string[],
  script: URL,
  env: Record<string, string>,
  options: { args?: string[]; stdin?: Uint8Array } = {},
): Promise<ChildResult> {
  return runChild(
    Deno.execPath(),
    [
      "run",
      "--no-prompt",
      ...permissions,
      script.pathname,
      ...(options.args ?? []),
    ],
    env,
    options.stdin,
  );
}

function splitResponse(output: string): { head: string; body: string } {
  const end = output.indexOf("\r\n\r\n");
  assert.ok(end >= 0, output);
  return { head: output.slice(0, end + 2), body: output.slice(end + 4) };
}

Deno.test("readEnviron() re-encodes request variables to latin-1 as CPython", async () => {
  const { stdout, code } = await denoRun(
    ["--allow-env"],
    new URL("environ.ts", FIXTURES),
    {
      HTTP_X_NAME: "é",
      REDIRECT_HTTP_X: "é",
      REDIRECT_OTHER: "é",
      SSL_CLIENT: "é",
      CONTENT_TYPE: "text/é",
      OTHER_VAR: "é",
      PATH_INFO: "/é",
      QUERY_STRING: "q=é",
      REMOTE_USER: "é",
      REMOTE_ADDR: "é",
      // Longer than 128 characters: scanned with a regular expression.
      HTTP_X_LONG: "a".repeat(200) + "é",
      HTTP_X_LONG_ASCII: "a".repeat(200),
      OTHER_LONG: "a".repeat(200) + "é",
    },
    { args: ["read"] },
  );
  assert.equal(code, 0);
  const environ = JSON.parse(new TextDecoder().decode(encodeLatin1(stdout)));
  // Expected from CPython 3.11's read_environ() with the same environment.
  assert.equal(environ.HTTP_X_NAME, "\xc3\xa9");
  assert.equal(environ.REDIRECT_HTTP_X, "\xc3\xa9");
  assert.equal(environ.REDIRECT_OTHER, "é");
  assert.equal(environ.SSL_CLIENT, "\xc3\xa9");
  assert.equal(environ.CONTENT_TYPE, "text/\xc3\xa9");
  assert.equal(environ.OTHER_VAR, "é");
  assert.equal(environ.PATH_INFO, "/\xc3\xa9");
  assert.equal(environ.QUERY_STRING, "q=\xc3\xa9");
  assert.equal(environ.REMOTE_USER, "\xc3\xa9");
  assert.equal(environ.REMOTE_ADDR, "é");
  assert.equal(environ.HTTP_X_LONG, "a".repeat(200) + "\xc3\xa9");
  assert.equal(environ.HTTP_X_LONG_ASCII, "a".repeat(200));
  assert.equal(environ.OTHER_LONG, "a".repeat(200) + "é");
});

Deno.test("readEnviron() rebuilds PATH_INFO and QUERY_STRING from REQUEST_URI", async (t) => {
  const fixture = new URL("environ.ts", FIXTURES).pathname;
  await t.step("PATH_INFO that is not UTF-8 (dropped by Deno)", async () => {
    // sh puts the raw byte 0xE9 into PATH_INFO, as lighttpd does for /caf%E9.
    const { stdout, code } = await runChild("sh", [
      "-c",
      `PATH_INFO="$(printf '/caf\\351')" exec "$0" run --allow-env "$1" read`,
      Deno.execPath(),
      fixture,
    ], {
      SCRIPT_NAME: "/app.cgi",
      REQUEST_URI: "/app.cgi/caf%E9?a=%FF",
      QUERY_STRING: "a=%FF",
    });
    assert.equal(code, 0);
    const environ = JSON.parse(new TextDecoder().decode(encodeLatin1(stdout)));
    assert.equal(environ.PATH_INFO, "/caf\xe9");
    assert.equal(environ.QUERY_STRING, "a=%FF");
  });
  const rows: [string, Record<string, string>, string | null, string | null][] =
    [
      [
        "both missing",
        { SCRIPT_NAME: "/app.cgi", REQUEST_URI: "/app.cgi/a%20b/%C3%A9?x=1&y" },
        "/a b/\xc3\xa9",
        "x=1&y",
      ],
      [
        "no query",
        { SCRIPT_NAME: "/app.cgi", REQUEST_URI: "/app.cgi/a" },
        "/a",
        "",
      ],
      [
        "just the script",
        { SCRIPT_NAME: "/app.cgi", REQUEST_URI: "/app.cgi?q" },
        "",
        "q",
      ],
      ["no SCRIPT_NAME", { REQUEST_URI: "/x/y?q" }, "/x/y", "q"],
      [
        "rewritten URL: PATH_INFO left out",
        { SCRIPT_NAME: "/app.cgi", REQUEST_URI: "/pretty/url?q=1" },
        null,
        "q=1",
      ],
      [
        "prefix that is not a segment",
        { SCRIPT_NAME: "/app", REQUEST_URI: "/application" },
        null,
        "",
      ],
      [
        "no REQUEST_URI: nothing to rebuild",
        { SCRIPT_NAME: "/app.cgi" },
        null,
        null,
      ],
      [
        "present values are kept",
        {
          SCRIPT_NAME: "/app.cgi",
          REQUEST_URI: "/app.cgi/a?b",
          PATH_INFO: "/kept",
          QUERY_STRING: "kept",
        },
        "/kept",
        "kept",
      ],
    ];
  for (const [label, env, pathInfo, queryString] of rows) {
    await t.step(label, async () => {
      const { stdout, code } = await denoRun(
        ["--allow-env"],
        new URL("environ.ts", FIXTURES),
        env,
        {
          args: ["read"],
        },
      );
      assert.equal(code, 0);
      const environ = JSON.parse(
        new TextDecoder().decode(encodeLatin1(stdout)),
      );
      assert.equal(environ.PATH_INFO ?? null, pathInfo);
      assert.equal(environ.QUERY_STRING ?? null, queryString);
    });
  }
});

Deno.test("readEnviron() needs env access; the default osEnviron is {} without it", async () => {
  const fixture = new URL("environ.ts", FIXTURES);
  const read = await denoRun([], fixture, { HTTP_X: "1" }, { args: ["read"] });
  assert.equal(read.stdout, '{"error":"NotCapable"}\n');
  const os = await denoRun([], fixture, { HTTP_X: "1" }, { args: ["os"] });
  assert.equal(os.stdout, "{}\n");
  assert.equal(os.stderr, "");
  const granted = await denoRun(["--allow-env"], fixture, { HTTP_X: "é" }, {
    args: ["os"],
  });
  assert.equal(
    JSON.parse(new TextDecoder().decode(encodeLatin1(granted.stdout))).HTTP_X,
    "\xc3\xa9",
  );
});

const CGI_ENV = {
  GATEWAY_INTERFACE: "CGI/1.1",
  REQUEST_METHOD: "GET",
  SCRIPT_NAME: "/cgi-bin/example",
  PATH_INFO: "/hello",
  QUERY_STRING: "a=1&b=%C3%A9",
  SERVER_NAME: "localhost",
  SERVER_PORT: "80",
  SERVER_PROTOCOL: "HTTP/1.1",
};

Deno.test("CGIHandler() serves the example from the process environment and stdio", async (t) => {
  const permissions = ["--allow-env", "--allow-read"];
  await t.step("GET", async () => {
    const { stdout, stderr, code } = await denoRun(
      permissions,
      EXAMPLE,
      CGI_ENV,
    );
    assert.equal(stderr, "");
    assert.equal(code, 0);
    const { head, body } = splitResponse(stdout);
    assert.equal(
      head,
      `Status: 200 OK\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${body.length}\r\n`,
    );
    assert.deepEqual(JSON.parse(body), {
      method: "GET",
      scriptName: "/cgi-bin/example",
      pathInfo: "/hello",
      queryString: "a=1&b=%C3%A9",
      requestUri: "http://localhost/cgi-bin/example/hello?a=1&b=%C3%A9",
      serverProtocol: "HTTP/1.1",
      urlScheme: "http",
      runOnce: true,
    });
  });
  for (const protocol of ["HTTP/2.0", "HTTP/0.9", "HTTP/1.0"]) {
    await t.step(`SERVER_PROTOCOL ${protocol}`, async () => {
      const { stdout } = await denoRun(permissions, EXAMPLE, {
        ...CGI_ENV,
        SERVER_PROTOCOL: protocol,
      });
      assert.ok(stdout.startsWith("Status: 200 OK\r\n"), stdout);
      assert.equal(
        JSON.parse(splitResponse(stdout).body).serverProtocol,
        protocol,
      );
    });
  }
  const echo = { ...CGI_ENV, REQUEST_METHOD: "POST", PATH_INFO: "/echo" };
  const rows: [string, Record<string, string>, number, string][] = [
    [
      "CONTENT_LENGTH 5 of a longer stdin",
      { CONTENT_LENGTH: "5" },
      5,
      "062c0215",
    ],
    ["CONTENT_LENGTH absent", {}, 0, "00000001"],
    ["CONTENT_LENGTH empty", { CONTENT_LENGTH: "" }, 0, "00000001"],
    ["CONTENT_LENGTH 0", { CONTENT_LENGTH: "0" }, 0, "00000001"],
  ];
  for (const [label, env, length, adler32] of rows) {
    await t.step(label, async () => {
      const { stdout, stderr } = await denoRun(permissions, EXAMPLE, {
        ...echo,
        ...env,
      }, {
        stdin: enc("helloEXTRA"),
      });
      assert.equal(stderr, "");
      assert.deepEqual(JSON.parse(splitResponse(stdout).body), {
        length,
        adler32,
      });
    });
  }
  await t.step(
    "bad CONTENT_LENGTH: error page, message on stderr",
    async () => {
      const { stdout, stderr, code } = await denoRun(permissions, EXAMPLE, {
        ...echo,
        CONTENT_LENGTH: "12abc",
      }, { stdin: enc("hello") });
      assert.equal(code, 0);
      assert.equal(
        stdout,
        "Status: 500 Internal Server Error\r\n" + ERROR_PAGE,
      );
      assert.ok(
        stderr.startsWith(
          'RangeError: Cannot read CONTENT_LENGTH: "12abc" is not a non-negative integer\n',
        ),
        stderr,
      );
    },
  );
  await t.step(
    "an app that throws: error page on stdout, stack on stderr",
    async () => {
      const { stdout, stderr } = await denoRun(permissions, EXAMPLE, {
        ...CGI_ENV,
        PATH_INFO: "/error",
      });
      assert.equal(
        stdout,
        "Status: 500 Internal Server Error\r\n" + ERROR_PAGE,
      );
      assert.match(
        stderr,
        /^Error: The \/error route always fails\n {4}at app \(file:\/\/.*examples\/cgi\.ts:\d+:\d+\)\n/,
      );
    },
  );
  await t.step("the example's source through wsgi.file_wrapper", async () => {
    const { stdout } = await denoRun(permissions, EXAMPLE, {
      ...CGI_ENV,
      PATH_INFO: "/source",
    });
    const { head, body } = splitResponse(stdout);
    assert.equal(
      head,
      "Status: 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n",
    );
    assert.equal(body, decodeLatin1(await Deno.readFile(EXAMPLE)));
  });
  await t.step(
    "wsgi.multithread false, multiprocess and run_once true",
    async () => {
      const { stdout } = await denoRun(
        ["--allow-env"],
        new URL("cgi_fixture.ts", FIXTURES),
        {
          ...CGI_ENV,
          PATH_INFO: "/environ",
        },
      );
      const environ = JSON.parse(splitResponse(stdout).body);
      assert.equal(environ["wsgi.multithread"], false);
      assert.equal(environ["wsgi.multiprocess"], true);
      assert.equal(environ["wsgi.run_once"], true);
    },
  );
});

Deno.test("IISCGIHandler() removes SCRIPT_NAME repeated at the start of PATH_INFO", async (t) => {
  const rows: [string, string, string][] = [
    ["/app.cgi", "/app.cgi/x/y", "/x/y"],
    ["/app.cgi", "/app.cgi", ""],
    ["/app.cgi", "/other/app.cgi", "/other/app.cgi"],
    ["/app", "/application", "/application"],
    ["", "/x", "/x"],
  ];
  for (const [script, path, expected] of rows) {
    await t.step(`${script} + ${path}`, async () => {
      const { stdout, stderr } = await denoRun(
        ["--allow-env"],
        new URL("cgi_fixture.ts", FIXTURES),
        {
          ...CGI_ENV,
          FIXTURE_HANDLER: "iis",
          SCRIPT_NAME: script,
          PATH_INFO: path,
        },
      );
      assert.equal(stderr, "");
      const environ = JSON.parse(splitResponse(stdout).body);
      assert.equal(environ.PATH_INFO, expected);
      assert.equal(environ["wsgi.run_once"], true);
    });
  }
});

Deno.test("CGIHandler() keeps a request's Proxy header away from fetch (httpoxy)", async (t) => {
  const proxy = startProxy();
  const target = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    () => new Response("direct"),
  );
  const port = String(target.addr.port);
  const fixture = new URL("cgi_fixture.ts", FIXTURES);
  const permissions = ["--allow-env", "--allow-net=127.0.0.1"];
  // No REQUEST_METHOD: Deno itself ignores HTTP_PROXY when REQUEST_METHOD is
  // set, so without it only CGIHandler stands between the header and fetch.
  const { REQUEST_METHOD: _, ...withoutMethod } = CGI_ENV;
  const env = {
    ...withoutMethod,
    HTTP_PROXY: proxy.url,
    PATH_INFO: "/fetch",
    QUERY_STRING: `port=${port}`,
  };
  try {
    await t.step(
      "control: after a fetch made before CGIHandler(), it is too late",
      async () => {
        // Deno reads the proxy settings once, at the first fetch: this is why
        // the handler must exist before any fetch (and why the check below
        // would see a proxied request).
        const { stdout, stderr } = await denoRun(permissions, fixture, {
          ...env,
          FIXTURE_FETCH_EARLY: port,
        });
        assert.equal(stderr, "");
        const report = JSON.parse(splitResponse(stdout).body);
        assert.equal(report.earlyBody, "proxy");
        assert.equal(report.body, "proxy");
        assert.deepEqual(proxy.requests, [
          `GET http://127.0.0.1:${port}/ HTTP/1.1`,
          `GET http://127.0.0.1:${port}/ HTTP/1.1`,
        ]);
      },
    );
    proxy.requests.length = 0;
    await t.step(
      "fetch after CGIHandler() goes direct; the app still sees the header",
      async () => {
        const { stdout, stderr } = await denoRun(permissions, fixture, env);
        assert.equal(stderr, "");
        assert.deepEqual(JSON.parse(splitResponse(stdout).body), {
          body: "direct",
          earlyBody: null,
          processProxy: null,
          environProxy: proxy.url,
        });
        assert.deepEqual(proxy.requests, []);
      },
    );
    proxy.requests.length = 0;
    await t.step(
      "with REQUEST_METHOD set, as a real CGI host does",
      async () => {
        const { stdout } = await denoRun(permissions, fixture, {
          ...env,
          REQUEST_METHOD: "GET",
        });
        const report = JSON.parse(splitResponse(stdout).body);
        assert.equal(report.body, "direct");
        // Gone from the process environment too, so that child processes
        // (curl, wget...) cannot be redirected either.
        assert.equal(report.processProxy, null);
        assert.deepEqual(proxy.requests, []);
      },
    );
  } finally {
    await target.shutdown();
    await proxy.close();
  }
});

Deno.test("BaseHandler.run() closes a result reused across requests once per request", async (t) => {
  const shared = closable([enc("same")]);
  const app: Application = (_environ, startResponse) => {
    startResponse("200 OK", [["Content-Type", "text/plain"]]);
    return shared;
  };
  await t.step("two handlers", async () => {
    shared.closed = 0;
    await runApp(app);
    await runApp(app);
    assert.equal(shared.closed, 2);
  });
  await t.step("one handler run twice", async () => {
    shared.closed = 0;
    const stdout = new Sink();
    const handler = new BaseCGIHandler(
      new BytesInput(),
      stdout,
      new StringErrorStream(),
      { ...ENV },
    );
    handler.osEnviron = {};
    await handler.run(app);
    await handler.run(app);
    assert.equal(shared.closed, 2);
    assert.equal(stdout.text.split("same").length - 1, 2);
  });
  await t.step("a failing result, then the same result again", async () => {
    let calls = 0;
    const flaky = {
      closed: 0,
      *[Symbol.iterator]() {
        calls++;
        if (calls === 1) throw new Error("first time fails");
        yield enc("ok");
      },
      close() {
        flaky.closed++;
      },
    };
    const flakyApp: Application = (_environ, startResponse) => {
      startResponse("200 OK", [["Content-Type", "text/plain"]]);
      return flaky;
    };
    const first = await runApp(flakyApp);
    assert.match(first.output, /^Status: 500 /);
    const second = await runApp(flakyApp);
    assert.match(second.output, /ok$/);
    assert.equal(flaky.closed, 2);
  });
});

Deno.test("SimpleHandler reads no body from a reader stdin when CONTENT_LENGTH is null, as when it is absent", async (t) => {
  // wsgiref never reads CONTENT_LENGTH, so a None there cannot fail; here a
  // reader stdin is cut at CONTENT_LENGTH, and null counts as absent.
  const readBody: Application = (environ, sr) => {
    const body = (environ["wsgi.input"] as InputStream).read();
    sr("200 OK", [["Content-Type", "text/plain"]]);
    return [body];
  };
  for (const Handler of [BaseCGIHandler, SimpleHandler]) {
    await t.step(Handler.name, async () => {
      let reads = 0;
      const stdin = {
        readSync(_p: Uint8Array): number | null {
          reads++;
          return null;
        },
      };
      const stdout = new Sink();
      const errors = new StringErrorStream();
      const handler = new Handler(stdin, stdout, errors, {
        ...ENV,
        REQUEST_METHOD: "POST",
        CONTENT_LENGTH: null as unknown as string,
      });
      handler.osEnviron = {};
      await handler.run(readBody);
      const head = Handler === BaseCGIHandler
        ? "Status: 200 OK\r\n"
        : "HTTP/1.0 200 OK\r\nDate: <date>\r\n";
      assert.equal(
        maskDate(stdout.text),
        head + "Content-Type: text/plain\r\nContent-Length: 0\r\n\r\n",
      );
      assert.equal(errors.value, "");
      assert.equal(reads, 0);
    });
  }
});
