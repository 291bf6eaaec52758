import assert from "node:assert/strict";
import {
  applicationUri,
  FileWrapper,
  guessScheme,
  isHopByHop,
  requestUri,
  setupTestingDefaults,
  shiftPathInfo,
} from "../util.ts";
import type { Environ, FileLike, SyncReader } from "../types.ts";
import { BytesInput, StringErrorStream } from "../_io.ts";

const encoder = new TextEncoder();

// --- shiftPathInfo -------------------------------------------------------

// [SCRIPT_NAME in, PATH_INFO in, result, SCRIPT_NAME out, PATH_INFO out],
// generated with python3.11 wsgiref.util.shift_path_info.
const SHIFT_CASES: [string, string, string | null, string, string][] = [
  ["", "", null, "", ""],
  ["", "/", "", "/", ""],
  ["", "//", "", "/", ""],
  ["", "/x", "x", "/x", ""],
  ["", "/x/", "x", "/x", "/"],
  ["/a", "/x/y", "x", "/a/x", "/y"],
  ["/a", "/x/y/", "x", "/a/x", "/y/"],
  ["/a", "/x//y", "x", "/a/x", "/y"],
  ["/a", "//x", "x", "/a/x", ""],
  ["/a", "/./x", "x", "/a/x", ""],
  ["/a", "/x/./y", "x", "/a/x", "/y"],
  ["/a", "/.", null, "/a", ""],
  ["/a", "/..", "..", "", ""],
  ["/a/b", "/../y", "..", "/a", "/y"],
  ["/a", "/x/../y", "x", "/a/x", "/../y"],
  ["", "/..", "..", "", ""],
  ["", "/.", null, "", ""],
  ["/a", "/x/.", "x", "/a/x", "/."],
  ["/a", "/x/..", "x", "/a/x", "/.."],
  ["/a/", "/x", "x", "/a/x", ""],
  ["//", "/x", "x", "/x", ""],
  ["//a", "/b", "b", "//a/b", ""],
  ["///a", "/b", "b", "/a/b", ""],
  ["a", "/b", "b", "a/b", ""],
  ["", "/a/b/c", "a", "/a", "/b/c"],
  ["/a", "", null, "/a", ""],
  ["/a", "/", "", "/a/", ""],
  ["/a/", "/", "", "/a/", ""],
  ["/", "/", "", "/", ""],
  ["/a", "///", "", "/a/", ""],
  ["/a", "/x///", "x", "/a/x", "/"],
  ["/a", "/ x/y", " x", "/a/ x", "/y"],
  ["/a", "/%2F/y", "%2F", "/a/%2F", "/y"],
  ["/a", "/\u00e9/y", "\u00e9", "/a/\u00e9", "/y"],
  ["/a", "/\u20ac", "\u20ac", "/a/\u20ac", ""],
  ["..", "/x", "x", "../x", ""],
  ["/a/b", "/..", "..", "/a", ""],
  ["/a", "/x;y=1/z", "x;y=1", "/a/x;y=1", "/z"],
];

Deno.test("shiftPathInfo() matches wsgiref on every edge case", async (t) => {
  for (const [scriptIn, pathIn, result, scriptOut, pathOut] of SHIFT_CASES) {
    await t.step(
      `SCRIPT_NAME ${JSON.stringify(scriptIn)}, PATH_INFO ${
        JSON.stringify(pathIn)
      }`,
      () => {
        const environ: Environ = { SCRIPT_NAME: scriptIn, PATH_INFO: pathIn };
        assert.equal(shiftPathInfo(environ), result);
        assert.deepEqual(environ, {
          SCRIPT_NAME: scriptOut,
          PATH_INFO: pathOut,
        });
      },
    );
  }
});

Deno.test("shiftPathInfo() moves one segment from PATH_INFO to SCRIPT_NAME", () => {
  const environ: Environ = { SCRIPT_NAME: "/app", PATH_INFO: "/a/b/c/" };
  const seen: (string | null)[] = [];
  for (let i = 0; i < 6; i++) seen.push(shiftPathInfo(environ));
  assert.deepEqual(seen, ["a", "b", "c", "", null, null]);
  assert.deepEqual(environ, { SCRIPT_NAME: "/app/a/b/c/", PATH_INFO: "" });
});

Deno.test("shiftPathInfo() treats missing keys as empty", async (t) => {
  await t.step("no SCRIPT_NAME", () => {
    const environ: Environ = { PATH_INFO: "/x" };
    assert.equal(shiftPathInfo(environ), "x");
    assert.deepEqual(environ, { PATH_INFO: "", SCRIPT_NAME: "/x" });
  });
  await t.step("no PATH_INFO leaves the environ alone", () => {
    const environ: Environ = {};
    assert.equal(shiftPathInfo(environ), null);
    assert.deepEqual(environ, {});
  });
  await t.step("empty PATH_INFO leaves SCRIPT_NAME missing", () => {
    const environ: Environ = { PATH_INFO: "" };
    assert.equal(shiftPathInfo(environ), null);
    assert.deepEqual(environ, { PATH_INFO: "" });
  });
});

Deno.test("shiftPathInfo() returns null and leaves the environ alone for a null or undefined PATH_INFO", async (t) => {
  // wsgiref: path_info = environ.get("PATH_INFO", ""); None is false, so it
  // returns None before SCRIPT_NAME is read; nothing is written.
  const cases: [string, Record<string, unknown>][] = [
    ["PATH_INFO null", { SCRIPT_NAME: "/a", PATH_INFO: null }],
    ["PATH_INFO undefined", { SCRIPT_NAME: "/a", PATH_INFO: undefined }],
    ["PATH_INFO null, no SCRIPT_NAME", { PATH_INFO: null }],
    [
      "PATH_INFO null, SCRIPT_NAME not normalised",
      { SCRIPT_NAME: "/a//b/", PATH_INFO: null },
    ],
    [
      "PATH_INFO null, SCRIPT_NAME null",
      { SCRIPT_NAME: null, PATH_INFO: null },
    ],
    [
      "PATH_INFO undefined, SCRIPT_NAME not a string",
      { SCRIPT_NAME: 5, PATH_INFO: undefined },
    ],
  ];
  for (const [name, given] of cases) {
    await t.step(name, () => {
      const environ = { ...given };
      assert.equal(shiftPathInfo(environ as Environ), null);
      assert.deepEqual(environ, given);
      assert.deepEqual(Object.keys(environ), Object.keys(given));
    });
  }
});

Deno.test("shiftPathInfo() keeps other environ keys", () => {
  const environ: Environ = {
    SCRIPT_NAME: "",
    PATH_INFO: "/x",
    QUERY_STRING: "a=1",
    "wsgi.url_scheme": "http",
  };
  shiftPathInfo(environ);
  assert.deepEqual(environ, {
    SCRIPT_NAME: "/x",
    PATH_INFO: "",
    QUERY_STRING: "a=1",
    "wsgi.url_scheme": "http",
  });
});

Deno.test("shiftPathInfo() handles a huge PATH_INFO", () => {
  const segments = Array.from({ length: 10_000 }, (_, i) => `s${i}`);
  const environ: Environ = {
    SCRIPT_NAME: "",
    PATH_INFO: "/" + segments.join("/"),
  };
  assert.equal(shiftPathInfo(environ), "s0");
  assert.equal(environ.SCRIPT_NAME, "/s0");
  assert.equal(environ.PATH_INFO, "/" + segments.slice(1).join("/"));
});

Deno.test("shiftPathInfo() refuses bad input", async (t) => {
  const cases: [string, unknown, RegExp][] = [
    [
      "PATH_INFO a number",
      { PATH_INFO: 5 },
      /environ\["PATH_INFO"\] must be a string, not number 5/,
    ],
    ["SCRIPT_NAME bytes", {
      PATH_INFO: "/x",
      SCRIPT_NAME: encoder.encode("/a"),
    }, /SCRIPT_NAME"\] must be a string, not Uint8Array b'\/a'/],
    // wsgiref fails too, on None + "/" + name.
    [
      "SCRIPT_NAME null with a segment to move",
      { PATH_INFO: "/x", SCRIPT_NAME: null },
      /environ\["SCRIPT_NAME"\] must be a string, not null None$/,
    ],
    [
      "PATH_INFO without a slash",
      { PATH_INFO: "abc" },
      /PATH_INFO "abc" does not contain "\/"/,
    ],
    ["environ null", null, /environ must be an object, not null/],
    ["environ a string", "/x", /environ must be an object, not string/],
    ["environ an array", [], /environ must be an object, not array/],
  ];
  for (const [name, environ, message] of cases) {
    await t.step(name, () => {
      const before = structuredClone(environ);
      assert.throws(
        () => shiftPathInfo(environ as Environ),
        (e: unknown) =>
          e instanceof TypeError && message.test(e.message) &&
          e.message.startsWith("Cannot shift PATH_INFO: "),
      );
      assert.deepEqual(environ, before);
    });
  }
});

// --- guessScheme ---------------------------------------------------------

Deno.test("guessScheme() returns https only for HTTPS yes, on or 1", async (t) => {
  const cases: [unknown, string][] = [
    ["yes", "https"],
    ["on", "https"],
    ["1", "https"],
    ["YES", "http"],
    ["On", "http"],
    ["true", "http"],
    ["0", "http"],
    ["off", "http"],
    ["", "http"],
    [" on", "http"],
    [1, "http"],
    [true, "http"],
    [null, "http"],
  ];
  for (const [value, expected] of cases) {
    await t.step(`HTTPS ${JSON.stringify(value)}`, () => {
      assert.equal(guessScheme({ HTTPS: value }), expected);
    });
  }
  await t.step("no HTTPS", () => assert.equal(guessScheme({}), "http"));
  await t.step("HTTPS inherited from the prototype is honoured", () => {
    const environ = Object.create({ HTTPS: "on" }) as Environ;
    assert.equal(guessScheme(environ), "https");
  });
});

Deno.test("guessScheme() refuses a non-object environ", () => {
  assert.throws(
    () => guessScheme(undefined as unknown as Environ),
    /^TypeError: Cannot guess the URL scheme: environ must be an object, not undefined None$/,
  );
});

// --- applicationUri / requestUri -----------------------------------------

const BASE: Environ = {
  "wsgi.url_scheme": "http",
  SERVER_NAME: "127.0.0.1",
  SERVER_PORT: "80",
};

// [PATH_INFO, requestUri with SCRIPT_NAME "", with SCRIPT_NAME "/sn"], from
// python3.11 wsgiref.util.request_uri.
const REQUEST_URI_CASES: [string, string, string][] = [
  ["", "http://127.0.0.1/", "http://127.0.0.1/sn"],
  ["/", "http://127.0.0.1/", "http://127.0.0.1/sn/"],
  ["/a b", "http://127.0.0.1/a%20b", "http://127.0.0.1/sn/a%20b"],
  ["/100%", "http://127.0.0.1/100%25", "http://127.0.0.1/sn/100%25"],
  ["/~user", "http://127.0.0.1/~user", "http://127.0.0.1/sn/~user"],
  ["/caf\u00e9", "http://127.0.0.1/caf%E9", "http://127.0.0.1/sn/caf%E9"],
  [
    "/\u00ff\u0080\u0001",
    "http://127.0.0.1/%FF%80%01",
    "http://127.0.0.1/sn/%FF%80%01",
  ],
  ["/a;b=c,d", "http://127.0.0.1/a;b=c,d", "http://127.0.0.1/sn/a;b=c,d"],
  ["/a?b#c", "http://127.0.0.1/a%3Fb%23c", "http://127.0.0.1/sn/a%3Fb%23c"],
  [
    "/a+b&c$d!e'f(g)h*i:j@k",
    "http://127.0.0.1/a%2Bb%26c%24d%21e%27f%28g%29h%2Ai%3Aj%40k",
    "http://127.0.0.1/sn/a%2Bb%26c%24d%21e%27f%28g%29h%2Ai%3Aj%40k",
  ],
  [
    '/"<>\\^`{|}',
    "http://127.0.0.1/%22%3C%3E%5C%5E%60%7B%7C%7D",
    "http://127.0.0.1/sn/%22%3C%3E%5C%5E%60%7B%7C%7D",
  ],
  [
    "/A-Z_a.z-0~9",
    "http://127.0.0.1/A-Z_a.z-0~9",
    "http://127.0.0.1/sn/A-Z_a.z-0~9",
  ],
  ["x", "http://127.0.0.1/", "http://127.0.0.1/snx"],
  [" x", "http://127.0.0.1/20x", "http://127.0.0.1/sn%20x"],
  [
    "/\x7f\t\r\n",
    "http://127.0.0.1/%7F%09%0D%0A",
    "http://127.0.0.1/sn/%7F%09%0D%0A",
  ],
  ["/%2F", "http://127.0.0.1/%252F", "http://127.0.0.1/sn/%252F"],
];

Deno.test("requestUri() quotes PATH_INFO as wsgiref does", async (t) => {
  for (const [pathInfo, withoutScript, withScript] of REQUEST_URI_CASES) {
    await t.step(`PATH_INFO ${JSON.stringify(pathInfo)}`, () => {
      assert.equal(
        requestUri({ ...BASE, SCRIPT_NAME: "", PATH_INFO: pathInfo }),
        withoutScript,
      );
      assert.equal(requestUri({ ...BASE, PATH_INFO: pathInfo }), withoutScript);
      assert.equal(
        requestUri({ ...BASE, SCRIPT_NAME: "/sn", PATH_INFO: pathInfo }),
        withScript,
      );
    });
  }
});

// Every latin-1 character, through urllib.parse.quote(s, encoding="latin1")
// with safe="/" (SCRIPT_NAME) and safe="/;=,"" (PATH_INFO), from python3.11.
const ALL_LATIN1 = Array.from({ length: 256 }, (_, i) => String.fromCharCode(i))
  .join("");
const HIGH_HALF = Array.from(
  { length: 128 },
  (_, i) => "%" + (0x80 + i).toString(16).toUpperCase(),
).join("");
const QUOTED_SAFE_SLASH =
  "%00%01%02%03%04%05%06%07%08%09%0A%0B%0C%0D%0E%0F%10%11%12%13%14%15%16%17%18%19%1A%1B%1C%1D%1E%1F%20%21%22%23%24%25%26%27%28%29%2A%2B%2C-./0123456789%3A%3B%3C%3D%3E%3F%40ABCDEFGHIJKLMNOPQRSTUVWXYZ%5B%5C%5D%5E_%60abcdefghijklmnopqrstuvwxyz%7B%7C%7D~%7F" +
  HIGH_HALF;
const QUOTED_SAFE_PATH =
  "%00%01%02%03%04%05%06%07%08%09%0A%0B%0C%0D%0E%0F%10%11%12%13%14%15%16%17%18%19%1A%1B%1C%1D%1E%1F%20%21%22%23%24%25%26%27%28%29%2A%2B,-./0123456789%3A;%3C=%3E%3F%40ABCDEFGHIJKLMNOPQRSTUVWXYZ%5B%5C%5D%5E_%60abcdefghijklmnopqrstuvwxyz%7B%7C%7D~%7F" +
  HIGH_HALF;

Deno.test("applicationUri() and requestUri() quote every latin-1 byte", async (t) => {
  await t.step("SCRIPT_NAME with safe '/'", () => {
    assert.equal(
      applicationUri({ ...BASE, SCRIPT_NAME: ALL_LATIN1 }),
      "http://127.0.0.1" + QUOTED_SAFE_SLASH,
    );
  });
  await t.step("PATH_INFO with safe '/;=,'", () => {
    assert.equal(
      requestUri({ ...BASE, SCRIPT_NAME: "/s", PATH_INFO: ALL_LATIN1 }),
      "http://127.0.0.1/s" + QUOTED_SAFE_PATH,
    );
  });
});

// [SCRIPT_NAME, applicationUri], from python3.11 wsgiref.util.application_uri.
const APPLICATION_URI_CASES: [string, string][] = [
  ["", "http://127.0.0.1/"],
  ["/", "http://127.0.0.1/"],
  ["/a b", "http://127.0.0.1/a%20b"],
  ["/a;b=c,d", "http://127.0.0.1/a%3Bb%3Dc%2Cd"],
  ["/caf\u00e9", "http://127.0.0.1/caf%E9"],
  ["/100%", "http://127.0.0.1/100%25"],
  ["/~u", "http://127.0.0.1/~u"],
  ["/a?b#c", "http://127.0.0.1/a%3Fb%23c"],
  [
    "/a+b&c$d!e'f(g)h*i:j@k",
    "http://127.0.0.1/a%2Bb%26c%24d%21e%27f%28g%29h%2Ai%3Aj%40k",
  ],
];

Deno.test("applicationUri() quotes SCRIPT_NAME with only '/' safe", async (t) => {
  for (const [scriptName, expected] of APPLICATION_URI_CASES) {
    await t.step(`SCRIPT_NAME ${JSON.stringify(scriptName)}`, () => {
      assert.equal(
        applicationUri({
          ...BASE,
          SCRIPT_NAME: scriptName,
          PATH_INFO: "/ignored",
        }),
        expected,
      );
    });
  }
  await t.step("no SCRIPT_NAME", () => {
    assert.equal(applicationUri(BASE), "http://127.0.0.1/");
  });
});

Deno.test("applicationUri() omits the default port and prefers HTTP_HOST", async (t) => {
  const cases: [string, Environ, string][] = [
    ["http on 80", BASE, "http://127.0.0.1/"],
    [
      "http on 8080",
      { ...BASE, SERVER_PORT: "8080" },
      "http://127.0.0.1:8080/",
    ],
    ["http on 443", { ...BASE, SERVER_PORT: "443" }, "http://127.0.0.1:443/"],
    ["https on 443", {
      "wsgi.url_scheme": "https",
      SERVER_NAME: "h",
      SERVER_PORT: "443",
    }, "https://h/"],
    ["https on 80", {
      "wsgi.url_scheme": "https",
      SERVER_NAME: "h",
      SERVER_PORT: "80",
    }, "https://h:80/"],
    ["https on 8443", {
      "wsgi.url_scheme": "https",
      SERVER_NAME: "h",
      SERVER_PORT: "8443",
    }, "https://h:8443/"],
    ["other scheme on 80", {
      "wsgi.url_scheme": "ftp",
      SERVER_NAME: "h",
      SERVER_PORT: "80",
    }, "ftp://h/"],
    ["other scheme on 21", {
      "wsgi.url_scheme": "ftp",
      SERVER_NAME: "h",
      SERVER_PORT: "21",
    }, "ftp://h:21/"],
    [
      "HTTP_HOST wins",
      { ...BASE, HTTP_HOST: "example.com:81" },
      "http://example.com:81/",
    ],
    [
      "empty HTTP_HOST ignored",
      { ...BASE, HTTP_HOST: "" },
      "http://127.0.0.1/",
    ],
    [
      "HTTP_HOST alone",
      { "wsgi.url_scheme": "http", HTTP_HOST: "h2" },
      "http://h2/",
    ],
  ];
  for (const [name, environ, expected] of cases) {
    await t.step(name, () => assert.equal(applicationUri(environ), expected));
  }
});

Deno.test("requestUri() appends QUERY_STRING unless told not to", async (t) => {
  const cases: [string, string, string][] = [
    ["", "http://127.0.0.1/s/p", "http://127.0.0.1/s/p"],
    ["a=1", "http://127.0.0.1/s/p?a=1", "http://127.0.0.1/s/p"],
    ["a b", "http://127.0.0.1/s/p?a b", "http://127.0.0.1/s/p"],
    [
      "%20&x=\u00e9#f",
      "http://127.0.0.1/s/p?%20&x=\u00e9#f",
      "http://127.0.0.1/s/p",
    ],
  ];
  for (const [query, withQuery, withoutQuery] of cases) {
    await t.step(`QUERY_STRING ${JSON.stringify(query)}`, () => {
      const environ = {
        ...BASE,
        SCRIPT_NAME: "/s",
        PATH_INFO: "/p",
        QUERY_STRING: query,
      };
      assert.equal(requestUri(environ), withQuery);
      assert.equal(requestUri(environ, true), withQuery);
      assert.equal(requestUri(environ, false), withoutQuery);
    });
  }
});

Deno.test("requestUri() works on a setupTestingDefaults() environ", () => {
  const environ: Environ = { PATH_INFO: "/x y", QUERY_STRING: "q" };
  setupTestingDefaults(environ);
  assert.equal(requestUri(environ), "http://127.0.0.1/x%20y?q");
  assert.equal(applicationUri(environ), "http://127.0.0.1/");
});

Deno.test("applicationUri() and requestUri() treat a null or undefined HTTP_HOST, SCRIPT_NAME, QUERY_STRING or HTTPS as wsgiref treats None", async (t) => {
  const full: Environ = {
    ...BASE,
    HTTP_HOST: "example.com",
    SCRIPT_NAME: "/s",
    PATH_INFO: "/p",
    QUERY_STRING: "q=1",
  };
  // [key, applicationUri, requestUri] for that key set to null/undefined.
  const cases: [string, string, string][] = [
    ["HTTP_HOST", "http://127.0.0.1/s", "http://127.0.0.1/s/p?q=1"],
    ["SCRIPT_NAME", "http://example.com/", "http://example.com/p?q=1"],
    ["QUERY_STRING", "http://example.com/s", "http://example.com/s/p"],
    ["HTTPS", "http://example.com/s", "http://example.com/s/p?q=1"],
  ];
  for (const [key, application, request] of cases) {
    for (const value of [null, undefined]) {
      await t.step(`${key} ${value}`, () => {
        const environ = { ...full, [key]: value } as Environ;
        assert.equal(applicationUri(environ), application);
        assert.equal(requestUri(environ), request);
      });
    }
  }
});

Deno.test("applicationUri() and requestUri() refuse bad input", async (t) => {
  const cases: [string, unknown, RegExp][] = [
    [
      "no wsgi.url_scheme",
      { SERVER_NAME: "h", SERVER_PORT: "80" },
      /^Cannot build the application URI: environ has no "wsgi\.url_scheme"$/,
    ],
    ["no SERVER_NAME without HTTP_HOST", {
      "wsgi.url_scheme": "http",
      SERVER_PORT: "80",
    }, /environ has no "SERVER_NAME"$/],
    ["no SERVER_PORT without HTTP_HOST", {
      "wsgi.url_scheme": "http",
      SERVER_NAME: "h",
    }, /environ has no "SERVER_PORT"$/],
    [
      "SERVER_PORT a number",
      { ...BASE, SERVER_PORT: 80 },
      /environ\["SERVER_PORT"\] must be a string, not number 80$/,
    ],
    [
      "HTTP_HOST a number",
      { ...BASE, HTTP_HOST: 1 },
      /environ\["HTTP_HOST"\] must be a string, not number 1$/,
    ],
    [
      "wsgi.url_scheme null",
      { ...BASE, "wsgi.url_scheme": null },
      /environ\["wsgi\.url_scheme"\] must be a string, not null None$/,
    ],
    // wsgiref fails on these too: url += None, ":" + None.
    [
      "SERVER_NAME null without HTTP_HOST",
      { ...BASE, SERVER_NAME: null },
      /environ\["SERVER_NAME"\] must be a string, not null None$/,
    ],
    [
      "SERVER_PORT null without HTTP_HOST",
      { ...BASE, SERVER_PORT: null },
      /environ\["SERVER_PORT"\] must be a string, not null None$/,
    ],
    [
      "SERVER_PORT undefined without HTTP_HOST",
      { ...BASE, SERVER_PORT: undefined },
      /environ\["SERVER_PORT"\] must be a string, not undefined None$/,
    ],
    [
      "SCRIPT_NAME an array",
      { ...BASE, SCRIPT_NAME: ["/a"] },
      /environ\["SCRIPT_NAME"\] must be a string, not array/,
    ],
    [
      "SCRIPT_NAME not latin-1",
      { ...BASE, SCRIPT_NAME: "/\u20ac" },
      /^Cannot build the application URI: SCRIPT_NAME contains character "\u20ac" at index 1, which is not latin-1$/,
    ],
    [
      "SCRIPT_NAME with a lone surrogate",
      { ...BASE, SCRIPT_NAME: "/\ud800" },
      /SCRIPT_NAME contains character "\\ud800" at index 1/,
    ],
    ["environ null", null, /environ must be an object, not null/],
  ];
  for (const [name, environ, message] of cases) {
    await t.step(`applicationUri(), ${name}`, () => {
      assert.throws(
        () => applicationUri(environ as Environ),
        (e: unknown) => e instanceof TypeError && message.test(e.message),
      );
      assert.throws(
        () => requestUri(environ as Environ),
        (e: unknown) => e instanceof TypeError && message.test(e.message),
      );
    });
  }
  const requestCases: [string, Record<string, unknown>, RegExp][] = [
    [
      "PATH_INFO not latin-1",
      { ...BASE, PATH_INFO: "/caf\u00e9/\u{1f600}" },
      /^Cannot build the request URI: PATH_INFO contains character "\\ud83d" at index 6, which is not latin-1$/,
    ],
    [
      "PATH_INFO a number",
      { ...BASE, PATH_INFO: 1 },
      /^Cannot build the request URI: environ\["PATH_INFO"\] must be a string, not number 1$/,
    ],
    // wsgiref fails too: quote(None, encoding="latin1") raises TypeError.
    [
      "PATH_INFO null",
      { ...BASE, PATH_INFO: null },
      /^Cannot build the request URI: environ\["PATH_INFO"\] must be a string, not null None$/,
    ],
    [
      "QUERY_STRING bytes",
      { ...BASE, QUERY_STRING: new Uint8Array([97]) },
      /^Cannot build the request URI: environ\["QUERY_STRING"\] must be a string, not Uint8Array b'a'$/,
    ],
  ];
  for (const [name, environ, message] of requestCases) {
    await t.step(`requestUri(), ${name}`, () => {
      assert.throws(
        () => requestUri(environ as Environ),
        (e: unknown) => e instanceof TypeError && message.test(e.message),
      );
    });
  }
});

// --- setupTestingDefaults ------------------------------------------------

Deno.test("setupTestingDefaults() fills an empty environ as wsgiref does", () => {
  const environ: Environ = {};
  setupTestingDefaults(environ);
  const input = environ["wsgi.input"];
  const errors = environ["wsgi.errors"];
  assert.ok(input instanceof BytesInput);
  assert.equal(input.read().length, 0);
  assert.ok(errors instanceof StringErrorStream);
  errors.write("x");
  assert.equal(errors.value, "x");
  delete environ["wsgi.input"];
  delete environ["wsgi.errors"];
  assert.deepEqual(environ, {
    SERVER_NAME: "127.0.0.1",
    SERVER_PROTOCOL: "HTTP/1.0",
    HTTP_HOST: "127.0.0.1",
    REQUEST_METHOD: "GET",
    SCRIPT_NAME: "",
    PATH_INFO: "/",
    "wsgi.version": [1, 0],
    "wsgi.run_once": false,
    "wsgi.multithread": false,
    "wsgi.multiprocess": false,
    "wsgi.url_scheme": "http",
    SERVER_PORT: "80",
  });
});

Deno.test("setupTestingDefaults() gives each environ its own streams", () => {
  const a: Environ = {};
  const b: Environ = {};
  setupTestingDefaults(a);
  setupTestingDefaults(b);
  assert.notEqual(a["wsgi.input"], b["wsgi.input"]);
  assert.notEqual(a["wsgi.errors"], b["wsgi.errors"]);
  assert.notEqual(a["wsgi.version"], b["wsgi.version"]);
});

Deno.test("setupTestingDefaults() fills only missing keys", async (t) => {
  await t.step("HTTPS on gives https and port 443", () => {
    const environ: Environ = { HTTPS: "on" };
    setupTestingDefaults(environ);
    assert.equal(environ["wsgi.url_scheme"], "https");
    assert.equal(environ.SERVER_PORT, "443");
  });
  await t.step("SERVER_NAME is copied to HTTP_HOST", () => {
    const environ: Environ = { SERVER_NAME: "x" };
    setupTestingDefaults(environ);
    assert.equal(environ.HTTP_HOST, "x");
  });
  await t.step("PATH_INFO alone leaves SCRIPT_NAME missing", () => {
    const environ: Environ = { PATH_INFO: "/p" };
    setupTestingDefaults(environ);
    assert.equal("SCRIPT_NAME" in environ, false);
    assert.equal(environ.PATH_INFO, "/p");
  });
  await t.step("SCRIPT_NAME alone leaves PATH_INFO missing", () => {
    const environ: Environ = { SCRIPT_NAME: "/s" };
    setupTestingDefaults(environ);
    assert.equal("PATH_INFO" in environ, false);
  });
  await t.step("an unknown scheme gets no SERVER_PORT", () => {
    const environ: Environ = { "wsgi.url_scheme": "ftp" };
    setupTestingDefaults(environ);
    assert.equal("SERVER_PORT" in environ, false);
  });
  await t.step("keys present with falsy or odd values are kept", () => {
    const input = new BytesInput(encoder.encode("body"));
    const errors = new StringErrorStream();
    const given: Environ = {
      SERVER_NAME: "",
      SERVER_PROTOCOL: "HTTP/1.1",
      HTTP_HOST: "",
      REQUEST_METHOD: "POST",
      SCRIPT_NAME: "",
      PATH_INFO: "",
      "wsgi.version": [1, 1],
      "wsgi.run_once": true,
      "wsgi.multithread": true,
      "wsgi.multiprocess": true,
      "wsgi.input": input,
      "wsgi.errors": errors,
      "wsgi.url_scheme": "https",
      SERVER_PORT: "",
    };
    const environ: Environ = { ...given };
    setupTestingDefaults(environ);
    assert.deepEqual(environ, given);
    assert.equal(environ["wsgi.input"], input);
    assert.equal(environ["wsgi.errors"], errors);
  });
  await t.step("a key set to undefined counts as present", () => {
    const environ: Environ = {
      REQUEST_METHOD: undefined,
      SERVER_NAME: undefined,
    };
    setupTestingDefaults(environ);
    assert.equal(environ.REQUEST_METHOD, undefined);
    assert.equal(environ.HTTP_HOST, undefined);
    assert.equal("HTTP_HOST" in environ, true);
  });
  await t.step(
    "explicit wsgi.url_scheme decides SERVER_PORT over HTTPS",
    () => {
      const environ: Environ = { HTTPS: "on", "wsgi.url_scheme": "http" };
      setupTestingDefaults(environ);
      assert.equal(environ.SERVER_PORT, "80");
    },
  );
});

Deno.test("setupTestingDefaults() refuses a non-object environ", async (t) => {
  for (const value of [null, undefined, "env", 1, []]) {
    await t.step(String(JSON.stringify(value)), () => {
      assert.throws(
        () => setupTestingDefaults(value as unknown as Environ),
        (e: unknown) =>
          e instanceof TypeError &&
          e.message.startsWith(
            "Cannot set up testing defaults: environ must be an object",
          ),
      );
    });
  }
});

// --- isHopByHop ----------------------------------------------------------

Deno.test("isHopByHop() recognises the RFC 2616 hop-by-hop headers", async (t) => {
  const hop = [
    "Connection",
    "Keep-Alive",
    "Proxy-Authenticate",
    "Proxy-Authorization",
    "TE",
    "Trailers",
    "Transfer-Encoding",
    "Upgrade",
  ];
  for (const name of hop) {
    await t.step(name, () => {
      assert.equal(isHopByHop(name), true);
      assert.equal(isHopByHop(name.toLowerCase()), true);
      assert.equal(isHopByHop(name.toUpperCase()), true);
    });
  }
  const notHop = [
    "Content-Type",
    "Content-Length",
    "Trailer",
    "Proxy-Connection",
    "Connection ",
    " connection",
    "",
    "Host",
    "Set-Cookie",
    "connection\r\n",
  ];
  for (const name of notHop) {
    await t.step(`not ${JSON.stringify(name)}`, () => {
      assert.equal(isHopByHop(name), false);
    });
  }
});

Deno.test("isHopByHop() refuses a non-string name", async (t) => {
  for (
    const value of [
      null,
      undefined,
      1,
      ["Connection"],
      encoder.encode("Connection"),
    ]
  ) {
    await t.step(Object.prototype.toString.call(value), () => {
      assert.throws(
        () => isHopByHop(value as unknown as string),
        (e: unknown) =>
          e instanceof TypeError &&
          e.message.startsWith(
            "Cannot check for a hop-by-hop header: name must be a string, not ",
          ),
      );
    });
  }
});

// --- FileWrapper ---------------------------------------------------------

/** A FileLike over bytes that records each size asked for. */
function fileLike(
  data: Uint8Array,
): FileLike & { sizes: number[]; closed: number } {
  let offset = 0;
  const file = {
    sizes: [] as number[],
    closed: 0,
    read(size: number): Uint8Array {
      file.sizes.push(size);
      const chunk = data.slice(offset, offset + size);
      offset += chunk.length;
      return chunk;
    },
    close(): void {
      file.closed++;
    },
  };
  return file;
}

/** A SyncReader that returns at most `step` bytes per call. */
function trickleReader(
  data: Uint8Array,
  step: number,
): SyncReader & { calls: number } {
  let offset = 0;
  const reader = {
    calls: 0,
    readSync(p: Uint8Array): number | null {
      reader.calls++;
      if (offset >= data.length) return null;
      const n = Math.min(p.length, step, data.length - offset);
      p.set(data.subarray(offset, offset + n));
      offset += n;
      return n;
    },
  };
  return reader;
}

function bytes(n: number): Uint8Array {
  return Uint8Array.from({ length: n }, (_, i) => (i * 7 + 3) & 0xff);
}

function join(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.length;
  }
  return out;
}

Deno.test("FileWrapper yields read(blksize) blocks until an empty read", () => {
  const data = bytes(20);
  const file = fileLike(data);
  const wrapper = new FileWrapper(file, 8);
  assert.equal(wrapper.filelike, file);
  assert.equal(wrapper.blksize, 8);
  const blocks = [...wrapper];
  assert.deepEqual(blocks.map((b) => b.length), [8, 8, 4]);
  assert.deepEqual(join(blocks), data);
  assert.deepEqual(file.sizes, [8, 8, 8, 8]);
});

Deno.test("FileWrapper defaults to 8192-byte blocks", () => {
  const file = fileLike(bytes(8192 * 2 + 1));
  const wrapper = new FileWrapper(file);
  assert.equal(wrapper.blksize, 8192);
  assert.deepEqual([...wrapper].map((b) => b.length), [8192, 8192, 1]);
});

Deno.test("FileWrapper is its own iterator", () => {
  const wrapper = new FileWrapper(fileLike(encoder.encode("abcdef")), 4);
  assert.equal(wrapper[Symbol.iterator](), wrapper);
  const first = wrapper.next();
  assert.equal(first.done, false);
  assert.deepEqual(first.value, encoder.encode("abcd"));
  // A second loop continues where the first stopped.
  assert.deepEqual([...wrapper], [encoder.encode("ef")]);
  assert.deepEqual(wrapper.next(), { done: true, value: undefined });
});

Deno.test("FileWrapper stops at the first empty read", async (t) => {
  await t.step("empty file", () => {
    assert.deepEqual([...new FileWrapper(fileLike(new Uint8Array(0)))], []);
  });
  await t.step("data after an empty read is not reached", () => {
    const reads = [encoder.encode("a"), new Uint8Array(0), encoder.encode("b")];
    const file: FileLike = { read: () => reads.shift() ?? new Uint8Array(0) };
    assert.deepEqual([...new FileWrapper(file)], [encoder.encode("a")]);
  });
  await t.step("null from read() ends too", () => {
    const file = { read: () => null } as unknown as FileLike;
    assert.deepEqual([...new FileWrapper(file)], []);
  });
});

Deno.test("FileWrapper splits a read() that returns more than blksize", () => {
  const big = bytes(10);
  let calls = 0;
  const file: FileLike = {
    read: () => (calls++ === 0 ? big : new Uint8Array(0)),
  };
  const blocks = [...new FileWrapper(file, 4)];
  assert.deepEqual(blocks.map((b) => b.length), [4, 4, 2]);
  assert.deepEqual(join(blocks), big);
  assert.equal(calls, 2);
});

Deno.test("FileWrapper fills whole blocks from a readSync reader", async (t) => {
  const data = bytes(1000);
  for (const step of [1, 7, 100, 1000]) {
    await t.step(`reader returning ${step} bytes at a time`, () => {
      const blocks = [...new FileWrapper(trickleReader(data, step), 300)];
      assert.deepEqual(blocks.map((b) => b.length), [300, 300, 300, 100]);
      assert.deepEqual(join(blocks), data);
    });
  }
  await t.step("blocks are fresh buffers, not reused", () => {
    const blocks = [...new FileWrapper(trickleReader(data, 1000), 100)];
    assert.equal(new Set(blocks.map((b) => b.buffer)).size, blocks.length);
    assert.deepEqual(join(blocks), data);
  });
  await t.step("a reader returning 0 counts as the end", () => {
    let calls = 0;
    const reader: SyncReader = { readSync: () => (calls++, 0) };
    assert.deepEqual([...new FileWrapper(reader, 16)], []);
    assert.equal(calls, 1);
  });
});

Deno.test("FileWrapper reads a real Deno.FsFile in exact blocks", async () => {
  const path = await Deno.makeTempFile();
  try {
    const data = bytes(8192 * 3 + 5);
    await Deno.writeFile(path, data);
    using file = Deno.openSync(path);
    const wrapper = new FileWrapper(file);
    const blocks = [...wrapper];
    assert.deepEqual(blocks.map((b) => b.length), [8192, 8192, 8192, 5]);
    assert.deepEqual(join(blocks), data);
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("FileWrapper.close() closes a Deno.FsFile once", async () => {
  const path = await Deno.makeTempFile();
  try {
    await Deno.writeFile(path, encoder.encode("hello"));
    const file = Deno.openSync(path);
    const wrapper = new FileWrapper(file, 2);
    assert.deepEqual(wrapper.next().value, encoder.encode("he"));
    wrapper.close();
    wrapper.close();
    assert.throws(
      () => file.readSync(new Uint8Array(1)),
      Deno.errors.BadResource,
    );
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("FileWrapper.close() closes the file-like object if it can", async (t) => {
  await t.step("with close()", () => {
    const file = fileLike(encoder.encode("x"));
    const wrapper = new FileWrapper(file);
    wrapper.close();
    assert.equal(file.closed, 1);
    wrapper.close();
    assert.equal(file.closed, 1);
  });
  await t.step("without close()", () => {
    const wrapper = new FileWrapper({ read: () => new Uint8Array(0) });
    wrapper.close();
  });
  await t.step("close() errors reach the caller", () => {
    const wrapper = new FileWrapper({
      read: () => new Uint8Array(0),
      close() {
        throw new Error("boom");
      },
    });
    assert.throws(() => wrapper.close(), /boom/);
  });
});

Deno.test("FileWrapper prefers readSync() over an async read()", () => {
  const data = encoder.encode("sync");
  const reader = {
    ...trickleReader(data, 100),
    read(): Promise<number | null> {
      throw new Error("read() must not be called");
    },
  };
  assert.deepEqual([...new FileWrapper(reader as unknown as SyncReader)], [
    data,
  ]);
});

Deno.test("FileWrapper refuses bad arguments", async (t) => {
  const file = fileLike(new Uint8Array(0));
  const typeCases: [string, unknown, unknown, RegExp][] = [
    [
      "filelike null",
      null,
      8,
      /filelike must have a read or readSync method, not null None$/,
    ],
    [
      "filelike a string",
      "file.txt",
      8,
      /filelike must have a read or readSync method, not string 'file\.txt'$/,
    ],
    [
      "filelike without methods",
      {},
      8,
      /filelike must have a read or readSync method, not object/,
    ],
    [
      "read not a function",
      { read: new Uint8Array(1) },
      8,
      /must have a read or readSync method/,
    ],
    [
      "blksize a string",
      file,
      "8",
      /^Cannot create FileWrapper: blksize must be a number, not string "8"$/,
    ],
    ["blksize null", file, null, /blksize must be a number, not null None$/],
    ["blksize a bigint", file, 8n, /blksize must be a number, not bigint 8$/],
  ];
  for (const [name, filelike, blksize, message] of typeCases) {
    await t.step(name, () => {
      assert.throws(
        () => new FileWrapper(filelike as FileLike, blksize as number),
        (e: unknown) => e instanceof TypeError && message.test(e.message),
      );
    });
  }
  for (const blksize of [0, -1, 1.5, NaN, Infinity, 2 ** 53]) {
    await t.step(`blksize ${blksize}`, () => {
      assert.throws(
        () => new FileWrapper(file, blksize),
        (e: unknown) =>
          e instanceof RangeError &&
          e.message ===
            `Cannot create FileWrapper: blksize must be a positive integer, not ${blksize}`,
      );
    });
  }
});

Deno.test("FileWrapper refuses what a bad file-like object returns", async (t) => {
  await t.step("read() returning a string", () => {
    const wrapper = new FileWrapper(
      { read: () => "text" } as unknown as FileLike,
    );
    assert.throws(
      () => wrapper.next(),
      /^TypeError: Cannot read a block: read\(\) returned string 'text', not a Uint8Array$/,
    );
  });
  await t.step("read() returning an array of numbers", () => {
    const wrapper = new FileWrapper(
      { read: () => [1, 2] } as unknown as FileLike,
    );
    assert.throws(() => wrapper.next(), TypeError);
  });
  await t.step("readSync() claiming more than the buffer", () => {
    const wrapper = new FileWrapper({
      readSync: (p: Uint8Array) => p.length + 1,
    }, 4);
    assert.throws(
      () => wrapper.next(),
      /^RangeError: Cannot read a block: readSync\(\) returned 5 for a buffer of 4 bytes$/,
    );
  });
  await t.step("readSync() returning a negative or fractional count", () => {
    for (const n of [-1, 0.5, NaN]) {
      const wrapper = new FileWrapper({ readSync: () => n }, 4);
      assert.throws(() => wrapper.next(), RangeError);
    }
  });
  await t.step("read() errors reach the caller", () => {
    const wrapper = new FileWrapper({
      read(): Uint8Array {
        throw new Deno.errors.Interrupted("stop");
      },
    });
    assert.throws(() => [...wrapper], Deno.errors.Interrupted);
  });
});
