import assert from "node:assert/strict";
import { Headers } from "../headers.ts";
import type { HeaderList } from "../types.ts";

/** Assert that `fn` throws a TypeError with exactly `message`. */
function throwsType(fn: () => unknown, message: string): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof TypeError, `not a TypeError: ${e}`);
    assert.equal(e.message, message);
    return true;
  });
}

Deno.test("Headers wraps the list it is given", () => {
  const list: HeaderList = [["Content-Type", "text/plain"]];
  const headers = new Headers(list);
  headers.set("X-A", "1");
  headers.addHeader("X-B", "2");
  headers.setdefault("X-C", "3");
  assert.deepEqual(list, [
    ["Content-Type", "text/plain"],
    ["X-A", "1"],
    ["X-B", "2"],
    ["X-C", "3"],
  ]);
  headers.delete("content-type");
  assert.deepEqual(list, [["X-A", "1"], ["X-B", "2"], ["X-C", "3"]]);
  // Changes to the list show through too.
  list.push(["X-D", "4"]);
  assert.equal(headers.get("x-d"), "4");
  assert.equal(headers.length, 4);
});

Deno.test("Headers starts empty without an argument", () => {
  const headers = new Headers();
  assert.equal(headers.length, 0);
  assert.deepEqual(headers.items(), []);
  assert.equal(headers.toString(), "\r\n");
  assert.deepEqual(headers.toBytes(), new Uint8Array([13, 10]));
  const other = new Headers(undefined);
  other.set("A", "b");
  assert.equal(headers.length, 0, "each instance has its own default list");
});

Deno.test("Headers.get() is case-insensitive and returns the first value", async (t) => {
  const headers = new Headers([
    ["Set-Cookie", "a=1"],
    ["Content-Type", "text/html"],
    ["SET-COOKIE", "b=2"],
    ["X-Empty", ""],
  ]);
  await t.step("first match, any case", () => {
    assert.equal(headers.get("set-cookie"), "a=1");
    assert.equal(headers.get("SeT-CoOkIe"), "a=1");
    assert.equal(headers.get("Content-Type"), "text/html");
  });
  await t.step("absent gives undefined or the default", () => {
    assert.equal(headers.get("Location"), undefined);
    assert.equal(headers.get("Location", "/"), "/");
    assert.equal(headers.get("Location", null), null);
    assert.equal(headers.get("Content-Type", "other"), "text/html");
  });
  await t.step("an empty value is a value", () => {
    assert.equal(headers.get("x-empty", "default"), "");
    assert.equal(headers.has("X-Empty"), true);
  });
  await t.step("latin-1 names fold as Python's lower()", () => {
    const h = new Headers([["X-\u00c9T\u00c9", "v"]]);
    assert.equal(h.get("x-\u00e9t\u00e9"), "v");
    assert.equal(h.has("X-\u00c9t\u00e9"), true);
  });
  await t.step("no prefix or trimmed matches", () => {
    assert.equal(headers.get("Set-Cookie "), undefined);
    assert.equal(headers.get("Set"), undefined);
    assert.equal(headers.get(""), undefined);
  });
});

Deno.test("Headers.set() removes every match and appends one line", () => {
  const headers = new Headers([
    ["X-A", "1"],
    ["Vary", "*"],
    ["x-a", "2"],
    ["Age", "3"],
    ["X-A", "4"],
  ]);
  headers.set("X-a", "new");
  assert.deepEqual(headers.items(), [["Vary", "*"], ["Age", "3"], [
    "X-a",
    "new",
  ]]);
  headers.set("Vary", "");
  assert.deepEqual(headers.items(), [["Age", "3"], ["X-a", "new"], [
    "Vary",
    "",
  ]]);
});

Deno.test("Headers.delete() removes every match and ignores absent names", () => {
  const headers = new Headers([["A", "1"], ["b", "2"], ["a", "3"], ["B", "4"]]);
  headers.delete("a");
  assert.deepEqual(headers.items(), [["b", "2"], ["B", "4"]]);
  headers.delete("missing");
  assert.deepEqual(headers.items(), [["b", "2"], ["B", "4"]]);
  headers.delete("B");
  assert.equal(headers.length, 0);
  headers.delete("B");
  assert.equal(headers.length, 0);
});

Deno.test("Headers.has() tells whether a header is present", () => {
  const headers = new Headers([["Content-Length", "0"]]);
  assert.equal(headers.has("content-length"), true);
  assert.equal(headers.has("CONTENT-LENGTH"), true);
  assert.equal(headers.has("Content-Type"), false);
});

Deno.test("Headers.setdefault() adds only when absent", () => {
  const headers = new Headers([["Content-Type", "text/html"], ["X-Empty", ""]]);
  assert.equal(headers.setdefault("content-type", "text/plain"), "text/html");
  assert.equal(headers.setdefault("X-Empty", "filled"), "");
  assert.equal(headers.setdefault("Vary", "*"), "*");
  assert.equal(headers.setdefault("vary", "other"), "*");
  assert.deepEqual(headers.items(), [
    ["Content-Type", "text/html"],
    ["X-Empty", ""],
    ["Vary", "*"],
  ]);
});

Deno.test("Headers.getAll() returns every value in order", () => {
  const headers = new Headers([["Vary", "a"], ["X", "1"], ["vary", "b"], [
    "VARY",
    "",
  ]]);
  assert.deepEqual(headers.getAll("Vary"), ["a", "b", ""]);
  assert.deepEqual(headers.getAll("x"), ["1"]);
  assert.deepEqual(headers.getAll("Link"), []);
});

Deno.test("Headers.keys(), values() and items() return copies in order", () => {
  const list: HeaderList = [["A", "1"], ["b", "2"], ["A", "3"]];
  const headers = new Headers(list);
  const keys = headers.keys();
  const values = headers.values();
  const items = headers.items();
  assert.deepEqual(keys, ["A", "b", "A"]);
  assert.deepEqual(values, ["1", "2", "3"]);
  assert.deepEqual(items, [["A", "1"], ["b", "2"], ["A", "3"]]);
  keys.push("Z");
  values.length = 0;
  items[0][1] = "x\r\nInjected: 1";
  items.pop();
  assert.deepEqual(list, [["A", "1"], ["b", "2"], ["A", "3"]]);
  assert.notEqual(items[0], list[0]);
});

Deno.test("Headers iterates over copies of its pairs", () => {
  const list: HeaderList = [["A", "1"], ["B", "2"]];
  const headers = new Headers(list);
  const pairs = [...headers];
  assert.deepEqual(pairs, [["A", "1"], ["B", "2"]]);
  pairs[0][0] = "Changed";
  assert.equal(list[0][0], "A");
  assert.deepEqual(new Map(headers), new Map([["A", "1"], ["B", "2"]]));
});

Deno.test("Headers.length counts header lines, repeats included", () => {
  const headers = new Headers([["A", "1"], ["a", "2"]]);
  assert.equal(headers.length, 2);
  headers.addHeader("A", "3");
  assert.equal(headers.length, 3);
  headers.set("a", "4");
  assert.equal(headers.length, 1);
});

Deno.test("Headers.addHeader() formats MIME parameters as wsgiref does", async (t) => {
  // Expected values from python3.11 wsgiref.headers.Headers.add_header.
  const cases: [
    string,
    string | null,
    Record<string, string | null>,
    string,
  ][] = [
    ["a value alone", "v", {}, "v"],
    ["an empty value", "", {}, ""],
    [
      "wsgiref's own example",
      "attachment",
      { filename: "bud.gif" },
      'attachment; filename="bud.gif"',
    ],
    ["value null, params only", null, { a: "1" }, 'a="1"'],
    ["value null, no params", null, {}, ""],
    [
      "underscores become dashes",
      "v",
      { file_name_x: "n" },
      'v; file-name-x="n"',
    ],
    ["null param is the bare name", "v", { a_b: null }, "v; a-b"],
    ["empty param is the bare name", "v", { c: "" }, "v; c"],
    ["backslash and quote escaped", "v", { d: 'x"y\\z' }, 'v; d="x\\"y\\\\z"'],
    ["plain values quoted too", "v", { e: "plain" }, 'v; e="plain"'],
    [
      "specials kept inside quotes",
      "v",
      { f: "has space;x=y" },
      'v; f="has space;x=y"',
    ],
    ["tab and latin-1 kept", "v", { g: "\t\u00e9" }, 'v; g="\t\u00e9"'],
    ["order kept", null, { z: "1", a: null, m: "" }, 'z="1"; a; m'],
  ];
  for (const [name, value, params, expected] of cases) {
    await t.step(name, () => {
      const headers = new Headers();
      headers.addHeader("X-P", value, params);
      assert.deepEqual(headers.items(), [["X-P", expected]]);
    });
  }
  await t.step("params left out", () => {
    const headers = new Headers([["X-P", "old"]]);
    headers.addHeader("x-p", "new");
    assert.deepEqual(headers.items(), [["X-P", "old"], ["x-p", "new"]]);
  });
});

Deno.test("Headers.toString() and toBytes() give wsgiref's exact header block", () => {
  const headers = new Headers();
  headers.addHeader("content-disposition", "attachment", {
    filename: "bud.gif",
  });
  headers.addHeader("X-P", null, {
    a_b: null,
    c: "",
    d: 'x"y\\z',
    e: "plain",
    f: "has space;x=y",
    g_h_i: "\t\u00e9",
  });
  headers.addHeader("X-Empty", "");
  headers.addHeader("X-Only", "v");
  // str(h) and bytes(h) from python3.11 for the same calls.
  const expected = 'content-disposition: attachment; filename="bud.gif"\r\n' +
    'X-P: a-b; c; d="x\\"y\\\\z"; e="plain"; f="has space;x=y"; g-h-i="\t\u00e9"\r\n' +
    "X-Empty: \r\n" +
    "X-Only: v\r\n" +
    "\r\n";
  assert.equal(headers.toString(), expected);
  assert.equal(String(headers), expected);
  assert.equal(`${headers}`, expected);
  const bytes = headers.toBytes();
  assert.equal(bytes.length, expected.length);
  assert.deepEqual(bytes, Uint8Array.from(expected, (c) => c.charCodeAt(0)));
  assert.equal(bytes[bytes.indexOf(0x09) + 1], 0xe9);
});

Deno.test("Headers.toBytes() encodes latin-1, one byte per character", () => {
  const headers = new Headers([["X", "\u00e9\u00ff\u0080"]]);
  assert.deepEqual(
    headers.toBytes(),
    new Uint8Array([0x58, 0x3a, 0x20, 0xe9, 0xff, 0x80, 13, 10, 13, 10]),
  );
});

Deno.test("Headers names may hold any non-control character, as in wsgiref", () => {
  const headers = new Headers();
  headers.set("X Y:Z", "v");
  assert.equal(headers.toString(), "X Y:Z: v\r\n\r\n");
});

Deno.test("Headers shows as Python's repr in Deno.inspect()", () => {
  const headers = new Headers([["A", "1"], ["X-P", 'a="\t\u00e9\'"']]);
  assert.equal(
    Deno.inspect(headers),
    `Headers([('A', '1'), ('X-P', 'a="\\t\u00e9\\'"')])`,
  );
  assert.equal(Deno.inspect(new Headers()), "Headers([])");
});

Deno.test("Headers handles many headers", () => {
  const list: HeaderList = [];
  const headers = new Headers(list);
  for (let i = 0; i < 5000; i++) headers.addHeader(`X-${i % 100}`, String(i));
  assert.equal(headers.length, 5000);
  assert.equal(headers.getAll("x-7").length, 50);
  headers.set("X-7", "only");
  assert.equal(headers.length, 4951);
  assert.ok(headers.toString().endsWith("X-7: only\r\n\r\n"));
  const big = "v".repeat(1_000_000);
  headers.set("X-Big", big);
  assert.equal(headers.get("x-big"), big);
});

// --- bad input -----------------------------------------------------------

const CONTROL_NAMES: [string, string, number][] = [
  ["CR", "X-\rA", 2],
  ["LF", "X-A\n", 3],
  ["CRLF injection", "X-A\r\nInjected: 1", 3],
  ["NUL", "\0X", 0],
  ["TAB", "X\tA", 1],
  ["unit separator", "X\x1fA", 1],
  ["DEL", "X\x7f", 1],
];

Deno.test("Headers refuses control characters in names", async (t) => {
  for (const [label, name, index] of CONTROL_NAMES) {
    const ch = JSON.stringify(name[index]);
    const problem = `name contains control character ${ch} at index ${index}`;
    const quoted = JSON.stringify(name);
    await t.step(label, () => {
      const list: HeaderList = [["Keep", "1"]];
      const headers = new Headers(list);
      throwsType(
        () => headers.set(name, "v"),
        `Cannot set header ${quoted}: ${problem}`,
      );
      throwsType(
        () => headers.get(name),
        `Cannot get header ${quoted}: ${problem}`,
      );
      throwsType(
        () => headers.has(name),
        `Cannot look up header ${quoted}: ${problem}`,
      );
      throwsType(
        () => headers.delete(name),
        `Cannot delete header ${quoted}: ${problem}`,
      );
      throwsType(
        () => headers.getAll(name),
        `Cannot get all values of header ${quoted}: ${problem}`,
      );
      throwsType(
        () => headers.setdefault(name, "v"),
        `Cannot set default for header ${quoted}: ${problem}`,
      );
      throwsType(
        () => headers.addHeader(name, "v"),
        `Cannot add header ${quoted}: ${problem}`,
      );
      throwsType(
        () => new Headers([[name, "v"]]),
        `Cannot create Headers with header ${quoted}: ${problem}`,
      );
      assert.deepEqual(list, [["Keep", "1"]]);
    });
  }
});

const CONTROL_VALUES: [string, string, number][] = [
  ["CR", "a\rb", 1],
  ["LF", "a\n", 1],
  ["CRLF injection", "1\r\nSet-Cookie: evil=1", 1],
  ["NUL", "\0", 0],
  ["vertical tab", "a\x0bb", 1],
  ["escape", "\x1b[31m", 0],
  ["DEL", "ab\x7f", 2],
];

Deno.test("Headers refuses control characters in values", async (t) => {
  for (const [label, value, index] of CONTROL_VALUES) {
    const problem = `value contains control character ${
      JSON.stringify(value[index])
    } at index ${index}`;
    await t.step(label, () => {
      const list: HeaderList = [["X-A", "keep"]];
      const headers = new Headers(list);
      throwsType(
        () => headers.set("X-A", value),
        `Cannot set header "X-A": ${problem}`,
      );
      throwsType(
        () => headers.setdefault("X-A", value),
        `Cannot set default for header "X-A": ${problem}`,
      );
      throwsType(
        () => headers.setdefault("X-New", value),
        `Cannot set default for header "X-New": ${problem}`,
      );
      throwsType(
        () => headers.addHeader("X-A", value),
        `Cannot add header "X-A": ${problem}`,
      );
      throwsType(
        () => new Headers([["X-A", value]]),
        `Cannot create Headers with header "X-A": ${problem}`,
      );
      // set() validates before it deletes anything.
      assert.deepEqual(list, [["X-A", "keep"]]);
    });
  }
  await t.step("the documented message", () => {
    throwsType(
      () => new Headers().set("X-A", "abc\rdef"),
      'Cannot set header "X-A": value contains control character "\\r" at index 3',
    );
  });
  await t.step("horizontal tab is allowed in values", () => {
    const headers = new Headers();
    headers.set("X-Tab", "a\tb");
    assert.equal(headers.toString(), "X-Tab: a\tb\r\n\r\n");
  });
});

Deno.test("Headers refuses characters above \\xFF", async (t) => {
  const cases: [string, string, string, number][] = [
    ["euro sign", "\u20ac", "\u20ac", 1],
    ["emoji (surrogate pair)", "\u{1f600}", "\\ud83d", 1],
    ["lone surrogate", "\udc00", "\\udc00", 1],
    ["U+0100", "\u0100", "\u0100", 1],
  ];
  for (const [label, ch, shown, index] of cases) {
    await t.step(label, () => {
      const headers = new Headers();
      const name = "X" + ch;
      const nameQuoted = JSON.stringify(name);
      throwsType(
        () => headers.set(name, "v"),
        `Cannot set header ${nameQuoted}: name contains character "${shown}" at index ${index}, which is not latin-1`,
      );
      throwsType(
        () => headers.set("X-A", "v" + ch),
        `Cannot set header "X-A": value contains character "${shown}" at index ${index}, which is not latin-1`,
      );
      throwsType(
        () => headers.get(name),
        `Cannot get header ${nameQuoted}: name contains character "${shown}" at index ${index}, which is not latin-1`,
      );
      assert.throws(
        () => headers.addHeader("X-A", null, { p: "v" + ch }),
        TypeError,
      );
      assert.equal(headers.length, 0);
    });
  }
});

Deno.test("Headers refuses non-string names and values", async (t) => {
  const cases: [string, unknown, string][] = [
    ["number", 1, "number 1"],
    ["null", null, "null None"],
    ["undefined", undefined, "undefined None"],
    ["bytes", new Uint8Array([65]), "Uint8Array b'A'"],
    ["array", ["A"], "array ('A',)"],
    ["boolean", true, "boolean True"],
    ["String object", new String("A"), "String <String object>"],
  ];
  for (const [label, bad, shown] of cases) {
    await t.step(label, () => {
      const headers = new Headers([["Keep", "1"]]);
      const b = bad as string;
      const q = typeof bad === "string" ? JSON.stringify(bad) : null;
      const nameMsg = (action: string) =>
        `Cannot ${action} header ${
          q ?? reprOf(bad)
        }: name must be a string, not ${shown}`;
      throwsType(() => headers.set(b, "v"), nameMsg("set"));
      throwsType(() => headers.get(b), nameMsg("get"));
      throwsType(() => headers.has(b), nameMsg("look up"));
      throwsType(() => headers.delete(b), nameMsg("delete"));
      throwsType(() => headers.getAll(b), nameMsg("get all values of"));
      throwsType(() => headers.setdefault(b, "v"), nameMsg("set default for"));
      throwsType(() => headers.addHeader(b, "v"), nameMsg("add"));
      throwsType(
        () => headers.set("X-A", b),
        `Cannot set header "X-A": value must be a string, not ${shown}`,
      );
      throwsType(
        () => headers.setdefault("Keep", b),
        `Cannot set default for header "Keep": value must be a string, not ${shown}`,
      );
      throwsType(
        () => new Headers([[b, "v"]]),
        `Cannot create Headers with header ${
          reprOf(bad)
        }: name must be a string, not ${shown}`,
      );
      throwsType(
        () => new Headers([["X-A", b]]),
        `Cannot create Headers with header "X-A": value must be a string, not ${shown}`,
      );
      if (bad !== null) {
        throwsType(
          () => headers.addHeader("X-A", b),
          `Cannot add header "X-A": value must be a string, not ${shown}`,
        );
      }
      assert.deepEqual(headers.items(), [["Keep", "1"]]);
    });
  }
});

/** How the messages quote a non-string (Python's repr, as `_internal.ts`). */
function reprOf(value: unknown): string {
  if (value === null || value === undefined) return "None";
  if (typeof value === "number") return String(value);
  if (typeof value === "boolean") return value ? "True" : "False";
  if (value instanceof Uint8Array) return "b'A'";
  if (Array.isArray(value)) return "('A',)";
  return "<String object>";
}

Deno.test("Headers.addHeader() refuses bad parameters", async (t) => {
  const cases: [string, Record<string, unknown>, string][] = [
    [
      "CR in a param value",
      { p: "a\rb" },
      'parameter "p" value contains control character "\\r" at index 1',
    ],
    [
      "LF in a param name",
      { "p\n": "v" },
      'parameter "p\\n" name contains control character "\\n" at index 1',
    ],
    [
      "non-latin-1 param value",
      { p: "\u20ac" },
      'parameter "p" value contains character "\u20ac" at index 0, which is not latin-1',
    ],
    [
      "number param value",
      { p: 1 },
      'parameter "p" value must be a string, not number 1',
    ],
    [
      "undefined param value",
      { p: undefined },
      'parameter "p" value must be a string, not undefined None',
    ],
    [
      "bytes param value",
      { p: new Uint8Array([1]) },
      "parameter \"p\" value must be a string, not Uint8Array b'\\x01'",
    ],
  ];
  for (const [label, params, problem] of cases) {
    await t.step(label, () => {
      const headers = new Headers();
      throwsType(
        () => headers.addHeader("X-P", "v", params as Record<string, string>),
        `Cannot add header "X-P": ${problem}`,
      );
      assert.equal(headers.length, 0);
    });
  }
  for (const params of [null, "a=1", 5]) {
    await t.step(`params ${JSON.stringify(params)}`, () => {
      const headers = new Headers();
      assert.throws(
        () =>
          headers.addHeader(
            "X-P",
            "v",
            params as unknown as Record<string, string>,
          ),
        (e: unknown) =>
          e instanceof TypeError &&
          e.message.startsWith(
            'Cannot add header "X-P": params must be an object, not ',
          ),
      );
      assert.equal(headers.length, 0);
    });
  }
});

Deno.test("new Headers() refuses what is not a list of pairs", async (t) => {
  const notArrays: [string, unknown, string][] = [
    ["null", null, "null None"],
    ["an object", { "Content-Type": "text/plain" }, "object <Object object>"],
    ["a string", "A: b", "string 'A: b'"],
    [
      "a web Headers",
      new globalThis.Headers({ a: "b" }),
      "Headers <Headers object>",
    ],
    ["a Map", new Map([["a", "b"]]), "Map <Map object>"],
  ];
  for (const [label, value, shown] of notArrays) {
    await t.step(label, () => {
      throwsType(
        () => new Headers(value as HeaderList),
        `Cannot create Headers: expected an array of [name, value] pairs, not ${shown}`,
      );
    });
  }
  const badEntries: [string, unknown[], string][] = [
    [
      "a string entry",
      ["A: b"],
      "entry 0 must be a [name, value] pair, not string 'A: b'",
    ],
    [
      "a one-element entry",
      [["A"]],
      "entry 0 must be a [name, value] pair, not array ('A',)",
    ],
    [
      "a three-element entry",
      [["A", "b"], ["A", "b", "c"]],
      "entry 1 must be a [name, value] pair, not array ('A', 'b', 'c')",
    ],
    [
      "an empty entry",
      [[]],
      "entry 0 must be a [name, value] pair, not array ()",
    ],
    [
      "a null entry",
      [null],
      "entry 0 must be a [name, value] pair, not null None",
    ],
    [
      "an object entry",
      [{ 0: "A", 1: "b", length: 2 }],
      "entry 0 must be a [name, value] pair, not object <Object object>",
    ],
  ];
  for (const [label, list, problem] of badEntries) {
    await t.step(label, () => {
      throwsType(
        () => new Headers(list as HeaderList),
        `Cannot create Headers: ${problem}`,
      );
    });
  }
});

Deno.test("Headers.toString() re-checks a list changed behind its back", async (t) => {
  await t.step("CRLF pushed into the wrapped list", () => {
    const list: HeaderList = [["A", "1"]];
    const headers = new Headers(list);
    list.push(["X-A", "1\r\nInjected: yes"]);
    throwsType(
      () => headers.toString(),
      'Cannot format header "X-A": value contains control character "\\r" at index 1',
    );
    assert.throws(() => headers.toBytes(), TypeError);
  });
  await t.step("a non-pair pushed into the wrapped list", () => {
    const list: HeaderList = [];
    const headers = new Headers(list);
    (list as unknown[]).push("A: b");
    throwsType(
      () => headers.toString(),
      "Cannot format headers: entry must be a [name, value] pair, not string 'A: b'",
    );
  });
  await t.step("a non-latin-1 value pushed into the wrapped list", () => {
    const list: HeaderList = [];
    const headers = new Headers(list);
    list.push(["X", "\u20ac"]);
    assert.throws(() => headers.toBytes(), TypeError);
  });
});
