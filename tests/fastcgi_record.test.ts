/**
 * The FastCGI record codec (`_fastcgi_record.ts`), table by table: record
 * headers and padding, name-value pair lengths, `END_REQUEST`, reading a
 * stream of records split anywhere, and params to environ. Expected bytes
 * are written out from the layouts of the FastCGI 1.0 specification
 * (sections 3.3, 3.4 and 5.5), not computed by the code under test.
 */

import assert from "node:assert/strict";
import {
  BEGIN_REQUEST,
  decodePairs,
  encodePairs,
  END_REQUEST,
  endRequestRecord,
  frame,
  frameBuffer,
  joinFrames,
  latin1Text,
  MAX_CONTENT,
  PARAMS,
  paramsToEnviron,
  ProtocolError,
  putEndRequest,
  record,
  RecordReader,
  releaseFrame,
  STDIN,
  STDOUT,
} from "../_fastcgi_record.ts";

const ascii = (s: string) => Uint8Array.from(s, (c) => c.charCodeAt(0));

/** Bytes from numbers and ASCII strings. */
function bytes(...parts: (number | string | number[])[]): Uint8Array {
  const out: number[] = [];
  for (const part of parts) {
    if (typeof part === "number") out.push(part);
    else if (typeof part === "string") out.push(...ascii(part));
    else out.push(...part);
  }
  return Uint8Array.from(out);
}

const zeros = (n: number) => new Array<number>(n).fill(0);

Deno.test("frame() cuts data into padded records (spec 3.3)", async (t) => {
  // version, type, requestIdB1, requestIdB0, contentLengthB1,
  // contentLengthB0, paddingLength, reserved.
  const cases: [string, number, number, Uint8Array, Uint8Array][] = [
    ["nothing: no record", STDOUT, 1, new Uint8Array(0), new Uint8Array(0)],
    [
      "5 bytes: 3 of padding",
      STDOUT,
      1,
      ascii("hello"),
      bytes(1, 6, 0, 1, 0, 5, 3, 0, "hello", 0, 0, 0),
    ],
    [
      "8 bytes: no padding",
      STDOUT,
      0x0102,
      ascii("12345678"),
      bytes(1, 6, 1, 2, 0, 8, 0, 0, "12345678"),
    ],
    [
      "1 byte, request 65535",
      7,
      65535,
      ascii("!"),
      bytes(1, 7, 0xff, 0xff, 0, 1, 7, 0, "!", zeros(7)),
    ],
  ];
  for (const [name, type, id, data, expected] of cases) {
    await t.step(name, () => {
      const out = frame(type, id, data);
      // Padding bytes may be anything: compare them as zeros.
      const header = out[6];
      const copy = out.slice();
      copy.fill(0, copy.length - header);
      assert.deepEqual(copy, expected);
    });
  }
  await t.step("65,535 and 65,536 bytes: one record, then two", () => {
    const full = frame(STDOUT, 1, new Uint8Array(MAX_CONTENT).fill(9));
    assert.deepEqual([...full.subarray(0, 8)], [1, 6, 0, 1, 0xff, 0xff, 1, 0]);
    assert.equal(full.length, 8 + 65535 + 1);
    const two = frame(STDOUT, 1, new Uint8Array(MAX_CONTENT + 1).fill(9));
    assert.equal(two.length, 8 + 65535 + 1 + 8 + 1 + 7);
    assert.deepEqual(
      [...two.subarray(65544, 65552)],
      [1, 6, 0, 1, 0, 1, 7, 0],
    );
    assert.equal(two[65552], 9);
  });
});

Deno.test("frameBuffer() reuses released buffers, and frame() and putEndRequest() write each byte of them", async (t) => {
  /** A pooled buffer of `size` bytes full of 0xEE, given back. */
  const dirty = (size: number) => {
    const buffer = frameBuffer(size);
    buffer.fill(0xee);
    releaseFrame(buffer);
    return buffer.buffer;
  };
  await t.step("padding is zeros", () => {
    const used = dirty(16);
    const out = frame(STDOUT, 1, ascii("hello"));
    assert.equal(out.buffer, used);
    assert.deepEqual(out, bytes(1, 6, 0, 1, 0, 5, 3, 0, "hello", 0, 0, 0));
    releaseFrame(out);
  });
  await t.step("END_REQUEST's reserved bytes are zeros", () => {
    const used = dirty(16);
    const out = frameBuffer(16);
    assert.equal(out.buffer, used);
    putEndRequest(out, 0, 1, 0, 0);
    assert.deepEqual(out, bytes(1, END_REQUEST, 0, 1, 0, 8, 0, 0, zeros(8)));
    releaseFrame(out);
  });
  await t.step("joinFrames() joins and releases the frames", () => {
    const a = frame(STDOUT, 1, ascii("ab"));
    const b = frame(STDOUT, 1, ascii("c"));
    const joined = joinFrames([a, b], a.length + b.length);
    assert.deepEqual(
      joined,
      bytes(
        1,
        6,
        0,
        1,
        0,
        2,
        6,
        0,
        "ab",
        zeros(6),
        1,
        6,
        0,
        1,
        0,
        1,
        7,
        0,
        "c",
        zeros(7),
      ),
    );
    assert.equal(frameBuffer(8).buffer, b.buffer);
    assert.equal(frameBuffer(8).buffer, a.buffer);
  });
  await t.step("a large frame, and one too large to pool", () => {
    const large = frameBuffer(20_000);
    assert.equal(large.length, 20_000);
    releaseFrame(large);
    assert.equal(frameBuffer(30_000).buffer, large.buffer);
    const huge = frameBuffer(200_000);
    assert.equal(huge.buffer.byteLength, 200_000);
    releaseFrame(huge);
    assert.notEqual(frameBuffer(200_000).buffer, huge.buffer);
  });
});

Deno.test("record() and endRequestRecord() lay out management and END_REQUEST records (spec 5.5)", () => {
  assert.deepEqual(
    record(10, 0, bytes(14, 1, "FCGI_MAX_CONNSx")).subarray(0, 8),
    bytes(1, 10, 0, 0, 0, 17, 7, 0),
  );
  // appStatusB3..B0, protocolStatus, reserved[3].
  assert.deepEqual(
    endRequestRecord(0x0203, 0x01020304, 2),
    bytes(1, END_REQUEST, 2, 3, 0, 8, 0, 0, 1, 2, 3, 4, 2, 0, 0, 0),
  );
  assert.deepEqual(
    endRequestRecord(1, 0xffffffff, 0),
    bytes(1, END_REQUEST, 0, 1, 0, 8, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0),
  );
});

Deno.test("encodePairs() writes 1-byte lengths under 128, 4-byte ones from 128 (spec 3.4)", async (t) => {
  const cases: [string, [string, string][], Uint8Array][] = [
    ["no pairs", [], new Uint8Array(0)],
    ["one short pair", [["a", "b"]], bytes(1, 1, "ab")],
    ["an empty value", [["EMPTY", ""]], bytes(5, 0, "EMPTY")],
    [
      "a value of 127 bytes",
      [["V", "x".repeat(127)]],
      bytes(1, 127, "V", "x".repeat(127)),
    ],
    [
      "a value of 128 bytes",
      [["V", "x".repeat(128)]],
      bytes(1, 0x80, 0, 0, 128, "V", "x".repeat(128)),
    ],
    [
      "a name of 300 bytes",
      [["N".repeat(300), "v"]],
      bytes(0x80, 0, 1, 0x2c, 1, "N".repeat(300), "v"),
    ],
    [
      "latin-1 chars as single bytes",
      [["X", "\xe9\xff"]],
      bytes(1, 2, "X", 0xe9, 0xff),
    ],
    [
      "two pairs",
      [["A", "1"], ["BB", "22"]],
      bytes(1, 1, "A1", 2, 2, "BB22"),
    ],
  ];
  for (const [name, pairs, expected] of cases) {
    await t.step(name, () => assert.deepEqual(encodePairs(pairs), expected));
  }
});

Deno.test("decodePairs() reads both length forms and refuses truncated pairs", async (t) => {
  const decode = (data: Uint8Array) => {
    const pairs: [string, string][] = [];
    const ok = decodePairs(data, (name, value) => {
      pairs.push([
        String.fromCharCode(...name),
        String.fromCharCode(...value),
      ]);
    });
    return { ok, pairs };
  };
  const cases: [string, Uint8Array, boolean, [string, string][]][] = [
    ["nothing", new Uint8Array(0), true, []],
    ["1-byte lengths", bytes(1, 2, "abc"), true, [["a", "bc"]]],
    [
      "4-byte lengths for short values",
      bytes(0x80, 0, 0, 1, 0x80, 0, 0, 2, "abc"),
      true,
      [["a", "bc"]],
    ],
    [
      "a 4-byte length of 128",
      bytes(1, 0x80, 0, 0, 128, "V", "y".repeat(128)),
      true,
      [["V", "y".repeat(128)]],
    ],
    ["a value cut short", bytes(1, 5, "a", "bc"), false, []],
    ["a name length alone", bytes(3), false, []],
    ["a 4-byte length cut short", bytes(0x80, 0, 1), false, []],
    [
      "the largest length, with no bytes behind it",
      bytes(0xff, 0xff, 0xff, 0xff, 0),
      false,
      [],
    ],
    [
      "a good pair, then a bad one",
      bytes(1, 1, "ab", 4, 4, "x"),
      false,
      [["a", "b"]],
    ],
  ];
  for (const [name, data, ok, pairs] of cases) {
    await t.step(name, () => assert.deepEqual(decode(data), { ok, pairs }));
  }
});

Deno.test("paramsToEnviron() makes latin-1 strings and folds nginx's HTTP_CONTENT_*", async (t) => {
  const cases: [string, Uint8Array, Record<string, string> | null][] = [
    [
      "bytes become chars one to one",
      bytes(9, 4, "PATH_INFO", "/", 0xc3, 0xa9, 0xff),
      { PATH_INFO: "/\xc3\xa9\xff" },
    ],
    [
      "HTTP_CONTENT_TYPE fills a missing CONTENT_TYPE",
      bytes(17, 4, "HTTP_CONTENT_TYPE", "text"),
      { CONTENT_TYPE: "text" },
    ],
    [
      "CONTENT_TYPE wins over HTTP_CONTENT_TYPE",
      bytes(12, 1, "CONTENT_TYPE", "a", 17, 1, "HTTP_CONTENT_TYPE", "b"),
      { CONTENT_TYPE: "a" },
    ],
    [
      "HTTP_CONTENT_LENGTH is dropped",
      bytes(19, 1, "HTTP_CONTENT_LENGTH", "5"),
      {},
    ],
    ["__proto__ is dropped", bytes(9, 1, "__proto__", "x"), {}],
    [
      "4-byte lengths",
      bytes(0x80, 0, 0, 1, 0x80, 0, 0, 200, "A", "v".repeat(200)),
      { A: "v".repeat(200) },
    ],
    ["a malformed pair: null", bytes(3, 3, "ab"), null],
    ["a name length alone: null", bytes(3), null],
    ["a 4-byte length cut short: null", bytes(1, 0x80, 0, 0), null],
    ["a good pair, then a bad one: null", bytes(1, 1, "ab", 5, 0), null],
  ];
  for (const [name, data, expected] of cases) {
    await t.step(name, () => {
      const environ = paramsToEnviron(data);
      assert.deepEqual(
        environ === null ? null : { ...environ },
        expected,
      );
      if (environ !== null) {
        assert.equal(Object.getPrototypeOf(environ), Object.prototype);
      }
    });
  }
});

Deno.test("latin1Text() turns each byte into the char of its code, as latin-1 does", async (t) => {
  // The definition of latin-1 (ISO 8859-1): byte n is U+00nn.
  const latin1 = (data: Uint8Array) =>
    Array.from(data, (b) => String.fromCharCode(b)).join("");
  const cases: [string, Uint8Array][] = [
    ["ASCII", ascii("REQUEST_METHOD GET /a?b=c")],
    ["empty", new Uint8Array(0)],
    ["UTF-8 text stays bytes", bytes("/caf", 0xc3, 0xa9)],
    ["C1 controls (windows-1252 maps them elsewhere)", bytes(0x80, 0x9f, 0x8d)],
    ["a leading UTF-8 BOM is kept", bytes(0xef, 0xbb, 0xbf, "x")],
    ["invalid UTF-8", bytes("a", 0xff, 0xfe, "b", 0xc3)],
    ["every byte", Uint8Array.from({ length: 256 }, (_, i) => i)],
    ["long ASCII", ascii("x".repeat(300))],
  ];
  for (const [name, data] of cases) {
    await t.step(name, () => assert.equal(latin1Text(data), latin1(data)));
  }
});

/** Every record `reader` yields for `data` read in pieces of `sizes`. */
function readAll(
  data: Uint8Array,
  sizes: number[],
): [number, number, string][] {
  const reader = new RecordReader();
  const out: [number, number, string][] = [];
  for (let at = 0, i = 0; at < data.length; i++) {
    const room = reader.room();
    const n = Math.min(room.length, sizes[i % sizes.length], data.length - at);
    room.set(data.subarray(at, at + n));
    reader.filled(n);
    at += n;
    while (reader.next()) {
      out.push([
        reader.type,
        reader.id,
        String.fromCharCode(...reader.content.subarray(0, 20)) +
        `/${reader.content.length}`,
      ]);
    }
  }
  assert.equal(reader.pending, 0);
  return out;
}

Deno.test("RecordReader puts records split anywhere back together and skips padding", async (t) => {
  // Hand-made records: BEGIN_REQUEST (no padding), PARAMS with 5 bytes of
  // padding, an empty PARAMS with 255, STDIN with 0.
  const stream = bytes(
    [1, BEGIN_REQUEST, 0, 1, 0, 8, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0],
    [1, PARAMS, 0, 1, 0, 3, 5, 0],
    "abc",
    [9, 9, 9, 9, 9],
    [1, PARAMS, 0, 1, 0, 0, 255, 0],
    new Array<number>(255).fill(0xa5),
    [1, STDIN, 0, 1, 0, 4, 0, 0],
    "body",
  );
  const expected: [number, number, string][] = [
    [BEGIN_REQUEST, 1, "\x00\x01\x01\x00\x00\x00\x00\x00/8"],
    [PARAMS, 1, "abc/3"],
    [PARAMS, 1, "/0"],
    [STDIN, 1, "body/4"],
  ];
  for (
    const [name, sizes] of [
      ["all at once", [1 << 20]],
      ["one byte at a time", [1]],
      ["in uneven pieces", [3, 7, 8, 1, 13, 200]],
    ] as const
  ) {
    await t.step(name, () => {
      assert.deepEqual(readAll(stream, [...sizes]), expected);
    });
  }
  await t.step("every split point of the stream", () => {
    for (let cut = 1; cut < stream.length; cut++) {
      const reader = new RecordReader();
      const records: number[] = [];
      for (const part of [stream.subarray(0, cut), stream.subarray(cut)]) {
        reader.room().set(part);
        reader.filled(part.length);
        while (reader.next()) records.push(reader.type);
      }
      assert.deepEqual(
        records,
        [BEGIN_REQUEST, PARAMS, PARAMS, STDIN],
        `${cut}`,
      );
    }
  });
  await t.step("the largest record: 65,535 bytes and 255 of padding", () => {
    const content = new Uint8Array(65535).map((_, i) => 65 + i % 26);
    const big = bytes(
      [1, STDIN, 0, 2, 0xff, 0xff, 255, 0],
      [...content],
      new Array<number>(255).fill(1),
      [1, STDIN, 0, 2, 0, 0, 0, 0],
    );
    assert.deepEqual(readAll(big, [4096]), [
      [STDIN, 2, "ABCDEFGHIJKLMNOPQRST/65535"],
      [STDIN, 2, "/0"],
    ]);
  });
});

Deno.test("RecordReader counts the bytes of a record under way, and refuses another version", () => {
  const reader = new RecordReader();
  reader.room().set(bytes(1, STDIN, 0, 1, 0, 10, 0, 0, "abc"));
  reader.filled(11);
  assert.equal(reader.next(), false);
  assert.equal(reader.pending, 11);
  reader.clear();
  assert.equal(reader.pending, 0);
  const garbage = ascii("GET / HTTP/1.1\r\n");
  reader.room().set(garbage);
  reader.filled(garbage.length);
  assert.throws(
    () => reader.next(),
    (error) =>
      error instanceof ProtocolError &&
      error.message ===
        'Cannot read a FastCGI record: version 71 is not 1 (a record header starts with "GET / HT")',
  );
});
