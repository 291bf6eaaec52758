import assert from "node:assert/strict";
import {
  BytesInput,
  ReaderInput,
  StringErrorStream,
  toErrorStream,
  writeAll,
} from "../_io.ts";
import type { ErrorStream, InputStream, SyncReader } from "../types.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const text = (b: Uint8Array) => decoder.decode(b);

/** A SyncReader over bytes, at most `step` bytes per call, logging calls. */
function reader(
  data: Uint8Array,
  step = Infinity,
): SyncReader & { offset: number; asked: number[] } {
  const r = {
    offset: 0,
    asked: [] as number[],
    readSync(p: Uint8Array): number | null {
      r.asked.push(p.length);
      if (r.offset >= data.length) return null;
      const n = Math.min(p.length, step, data.length - r.offset);
      p.set(data.subarray(r.offset, r.offset + n));
      r.offset += n;
      return n;
    },
  };
  return r;
}

/** Both input kinds over the same bytes, for behaviour they share. */
function inputs(s: string | Uint8Array): [string, () => InputStream][] {
  const data = typeof s === "string" ? encoder.encode(s) : s;
  return [
    ["BytesInput", () => new BytesInput(data)],
    ["ReaderInput", () => new ReaderInput(reader(data))],
    [
      "ReaderInput, 1 byte per readSync",
      () => new ReaderInput(reader(data, 1)),
    ],
    [
      "ReaderInput with a limit past the end",
      () => new ReaderInput(reader(data), data.length + 10),
    ],
  ];
}

Deno.test("InputStream.read() follows Python's binary read()", async (t) => {
  for (const [name, make] of inputs("hello\nworld\n")) {
    await t.step(name, () => {
      const input = make();
      assert.equal(text(input.read(0)), "");
      assert.equal(text(input.read(3)), "hel");
      assert.equal(text(input.read(4)), "lo\nw");
      assert.equal(text(input.read(-5)), "orld\n");
      assert.equal(text(input.read()), "");
      assert.equal(text(input.read(10)), "");
    });
    await t.step(`${name}: read() and read(null) return all the rest`, () => {
      const a = make();
      assert.equal(text(a.read()), "hello\nworld\n");
      const b = make();
      b.read(1);
      assert.equal(text(b.read(null as unknown as number)), "ello\nworld\n");
      const c = make();
      assert.equal(text(c.read(-1)), "hello\nworld\n");
    });
    await t.step(`${name}: read(n) past the end returns what is left`, () => {
      const input = make();
      assert.equal(text(input.read(1e12)), "hello\nworld\n");
    });
  }
});

Deno.test("InputStream.readline() reads up to and including a newline", async (t) => {
  for (const [name, make] of inputs("one\n\nthree\r\nlast")) {
    await t.step(name, () => {
      const input = make();
      assert.equal(text(input.readline()), "one\n");
      assert.equal(text(input.readline()), "\n");
      assert.equal(text(input.readline()), "three\r\n");
      assert.equal(text(input.readline()), "last");
      assert.equal(text(input.readline()), "");
    });
    await t.step(`${name}: with a size`, () => {
      const input = make();
      assert.equal(text(input.readline(2)), "on");
      assert.equal(text(input.readline(2)), "e\n");
      assert.equal(text(input.readline(0)), "");
      assert.equal(text(input.readline(1)), "\n");
      assert.equal(text(input.readline(-1)), "three\r\n");
      assert.equal(text(input.readline(100)), "last");
    });
  }
});

Deno.test("InputStream.readlines() stops once hint bytes are read", async (t) => {
  for (const [name, make] of inputs("a\nbb\nccc\ndddd")) {
    await t.step(name, () => {
      const cases: [number | undefined, string[]][] = [
        [undefined, ["a\n", "bb\n", "ccc\n", "dddd"]],
        [0, ["a\n", "bb\n", "ccc\n", "dddd"]],
        [-3, ["a\n", "bb\n", "ccc\n", "dddd"]],
        [1, ["a\n"]],
        [2, ["a\n"]],
        [3, ["a\n", "bb\n"]],
        [5, ["a\n", "bb\n"]],
        [6, ["a\n", "bb\n", "ccc\n"]],
        [100, ["a\n", "bb\n", "ccc\n", "dddd"]],
      ];
      for (const [hint, expected] of cases) {
        assert.deepEqual(
          make().readlines(hint).map(text),
          expected,
          `hint ${hint}`,
        );
      }
    });
  }
});

Deno.test("InputStream iterates over its lines", async (t) => {
  for (const [name, make] of inputs("x\ny\n\nz")) {
    await t.step(name, () => {
      const input = make();
      assert.deepEqual([...input].map(text), ["x\n", "y\n", "\n", "z"]);
      assert.deepEqual([...input], []);
    });
    await t.step(`${name}: after a partial read`, () => {
      const input = make();
      input.read(1);
      assert.deepEqual([...input].map(text), ["\n", "y\n", "\n", "z"]);
    });
  }
});

Deno.test("InputStream handles empty input", async (t) => {
  for (const [name, make] of inputs("")) {
    await t.step(name, () => {
      const input = make();
      assert.equal(input.read().length, 0);
      assert.equal(input.read(5).length, 0);
      assert.equal(input.readline().length, 0);
      assert.deepEqual(input.readlines(), []);
      assert.deepEqual([...input], []);
    });
  }
});

Deno.test("InputStream keeps every byte of binary input", async (t) => {
  const data = Uint8Array.from({ length: 70_000 }, (_, i) => (i * 31) & 0xff);
  for (const [name, make] of inputs(data)) {
    await t.step(name, () => {
      const lines = make().readlines();
      const joined = new Uint8Array(data.length);
      let offset = 0;
      for (const line of lines) {
        assert.ok(line.length > 0);
        const newline = line.indexOf(0x0a);
        assert.ok(newline === -1 || newline === line.length - 1);
        joined.set(line, offset);
        offset += line.length;
      }
      assert.equal(offset, data.length);
      assert.deepEqual(joined, data);
    });
  }
});

Deno.test("InputStream refuses non-integer sizes", async (t) => {
  const bad: unknown[] = ["3", 1.5, NaN, Infinity, -Infinity, 3n, true, {}, [
    1,
  ]];
  for (const [name, make] of inputs("abc\n")) {
    for (const value of bad) {
      await t.step(`${name}: ${String(value)}`, () => {
        const input = make();
        assert.throws(
          () => input.read(value as number),
          (e: unknown) =>
            e instanceof TypeError &&
            e.message.startsWith(
              "Cannot read from wsgi.input: size must be an integer, null or undefined, not ",
            ),
        );
        assert.throws(
          () => input.readline(value as number),
          (e: unknown) =>
            e instanceof TypeError &&
            e.message.startsWith(
              "Cannot read a line from wsgi.input: size must be an integer",
            ),
        );
        assert.throws(
          () => input.readlines(value as number),
          (e: unknown) =>
            e instanceof TypeError &&
            e.message.startsWith(
              "Cannot read lines from wsgi.input: hint must be an integer",
            ),
        );
        // Nothing was consumed by the refused calls.
        assert.equal(text(input.read()), "abc\n");
      });
    }
  }
  await t.step("message quotes the value", () => {
    assert.throws(
      () => new BytesInput().read("3" as unknown as number),
      {
        name: "TypeError",
        message:
          'Cannot read from wsgi.input: size must be an integer, null or undefined, not string "3"',
      },
    );
  });
});

Deno.test("BytesInput.read() returns subarrays without copying", () => {
  const data = encoder.encode("abcdef");
  const input = new BytesInput(data);
  const first = input.read(2);
  const rest = input.read();
  assert.equal(first.buffer, data.buffer);
  assert.equal(rest.buffer, data.buffer);
  assert.equal(rest.byteOffset, 2);
  assert.equal(text(rest), "cdef");
});

Deno.test("BytesInput refuses data that is not a Uint8Array", async (t) => {
  for (const value of ["abc", [1, 2], new ArrayBuffer(2), null, 5]) {
    await t.step(Object.prototype.toString.call(value), () => {
      assert.throws(
        () => new BytesInput(value as unknown as Uint8Array),
        (e: unknown) =>
          e instanceof TypeError &&
          e.message.startsWith(
            "Cannot create BytesInput: data must be a Uint8Array, not ",
          ),
      );
    });
  }
  await t.step("undefined means empty", () => {
    assert.equal(new BytesInput(undefined).read().length, 0);
  });
});

Deno.test("ReaderInput never reads past its limit", async (t) => {
  const data = encoder.encode("0123456789abcdef");
  for (const limit of [0, 1, 5, 16]) {
    await t.step(`limit ${limit}`, () => {
      const r = reader(data);
      const input = new ReaderInput(r, limit);
      assert.equal(text(input.read()), text(data.subarray(0, limit)));
      assert.equal(r.offset, limit);
      assert.equal(input.read().length, 0);
      assert.equal(input.readline().length, 0);
      assert.equal(r.offset, limit);
      assert.ok(r.asked.every((n) => n <= limit), `asked ${r.asked}`);
    });
  }
  await t.step("limit 0 never calls readSync", () => {
    const r = reader(data);
    const input = new ReaderInput(r, 0);
    assert.equal(input.read().length, 0);
    assert.deepEqual(r.asked, []);
  });
  await t.step(
    "a large body is read 64 KiB first, then into 1 MiB buffers once pieces are handed out",
    () => {
      const size = 2 * 1024 * 1024 + 200 * 1024;
      const big = new Uint8Array(size).fill(0x61);
      const r = reader(big);
      const input = new ReaderInput(r, big.length);
      assert.equal(input.read(10).length, 10);
      assert.equal(r.offset, 64 * 1024);
      assert.equal(input.read().length, big.length - 10);
      // What is left after each buffer: never a byte past the limit.
      assert.deepEqual(r.asked, [
        65536,
        1048576,
        1048576,
        size - 65536 - 2 * 1048576,
      ]);
    },
  );
  await t.step("readline stops at the limit", () => {
    const r = reader(encoder.encode("abc\ndef\n"));
    const input = new ReaderInput(r, 6);
    assert.deepEqual(input.readlines().map(text), ["abc\n", "de"]);
    assert.equal(r.offset, 6);
  });
});

Deno.test("ReaderInput fills one buffer across short reads without overwriting", () => {
  const data = Uint8Array.from({ length: 100 }, (_, i) => i);
  const r = reader(data, 10);
  const input = new ReaderInput(r);
  const pieces = Array.from({ length: 10 }, () => input.read(10));
  assert.equal(new Set(pieces.map((p) => p.buffer)).size, 1);
  pieces.forEach((piece, i) =>
    assert.deepEqual(piece, data.subarray(i * 10, i * 10 + 10))
  );
  assert.deepEqual(r.asked.slice(0, 3), [65536, 65526, 65516]);
  assert.equal(input.read().length, 0);
});

Deno.test("ReaderInput refills one buffer for readinto(), never one read() handed out", async (t) => {
  const data = Uint8Array.from({ length: 300 }, (_, i) => i);
  await t.step("readinto() alone: the same buffer from its start", () => {
    const r = reader(data, 10);
    const input = new ReaderInput(r);
    const target = new Uint8Array(10);
    for (let i = 0; i < 30; i++) {
      assert.equal(input.readinto(target), 10);
      assert.deepEqual(target, data.subarray(i * 10, i * 10 + 10));
    }
    assert.equal(input.readinto(target), 0);
    // Each refill asks for the whole 64 KiB buffer again (read() would
    // have asked for what is left of it: 65526, 65516...).
    assert.ok(r.asked.every((n) => n === 65536), `asked ${r.asked}`);
  });
  await t.step("read() then readinto(): the piece read stays intact", () => {
    const r = reader(data, 10);
    const input = new ReaderInput(r, data.length);
    const piece = input.read(10);
    const target = new Uint8Array(10);
    for (let i = 1; i < 30; i++) {
      assert.equal(input.readinto(target), 10);
      assert.deepEqual(target, data.subarray(i * 10, i * 10 + 10));
    }
    assert.deepEqual(piece, data.subarray(0, 10));
  });
  await t.step(
    "readinto() then read(): a new buffer only once one is kept",
    () => {
      const r = reader(data);
      const input = new ReaderInput(r, data.length);
      assert.equal(input.readinto(new Uint8Array(5)), 5);
      const rest = input.read();
      assert.deepEqual(rest, data.subarray(5));
      assert.deepEqual(r.asked, [300]);
    },
  );
});

Deno.test("InputStream.readinto() fills a buffer as read() would", async (t) => {
  const data = encoder.encode("hello\nworld\n");
  for (const [name, make] of inputs(data)) {
    await t.step(name, () => {
      const input = make() as InputStream & {
        readinto(buffer: Uint8Array): number;
      };
      const buffer = new Uint8Array(5);
      assert.equal(input.readinto(buffer), 5);
      assert.equal(text(buffer), "hello");
      assert.equal(input.readinto(new Uint8Array(0)), 0);
      assert.equal(text(input.read(1)), "\n");
      assert.equal(input.readinto(buffer), 5);
      assert.equal(text(buffer), "world");
      buffer.fill(0x2e);
      assert.equal(input.readinto(buffer), 1); // the last byte
      assert.equal(text(buffer), "\n....");
      assert.equal(input.readinto(buffer), 0);
      assert.throws(
        () => input.readinto("abc" as unknown as Uint8Array),
        {
          name: "TypeError",
          message:
            "Cannot read into the buffer: wsgi.input.readinto() takes a Uint8Array, not string 'abc'",
        },
      );
    });
  }
});

Deno.test("ReaderInput.readinto() reads a buffer as large as its own straight into it", () => {
  const data = Uint8Array.from({ length: 200_000 }, (_, i) => i % 251);
  const r = reader(data);
  const input = new ReaderInput(r, data.length);
  const buffer = new Uint8Array(65536);
  let total = 0;
  for (let n; (n = input.readinto(buffer)) > 0;) {
    assert.deepEqual(buffer.subarray(0, n), data.subarray(total, total + n));
    total += n;
  }
  assert.equal(total, data.length);
  // No 64 KiB buffer of its own: the reader filled the caller's each time.
  assert.deepEqual(r.asked, [65536, 65536, 65536, 200_000 - 3 * 65536]);
});

Deno.test("ReaderInput reads lazily", () => {
  const r = reader(encoder.encode("line\nmore"));
  const input = new ReaderInput(r);
  assert.deepEqual(r.asked, []);
  assert.equal(text(input.readline()), "line\n");
  assert.equal(r.asked.length, 1);
});

Deno.test("ReaderInput reads a real file as Deno.FsFile", async () => {
  const path = await Deno.makeTempFile();
  try {
    const data = Uint8Array.from({ length: 150_000 }, (_, i) => i % 251);
    await Deno.writeFile(path, data);
    using file = Deno.openSync(path);
    const input = new ReaderInput(file, 100_000);
    const head = input.read(1);
    const rest = input.read();
    assert.equal(head[0], 0);
    assert.equal(rest.length, 99_999);
    assert.deepEqual(rest, data.subarray(1, 100_000));
    // The file position is exactly at the limit.
    const next = new Uint8Array(1);
    assert.equal(file.readSync(next), 1);
    assert.equal(next[0], data[100_000]);
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("ReaderInput.read() has V8 scavenge as it hands out a large body", async () => {
  // 256 MiB read in 64 KiB pieces that the reader drops, in a process of
  // its own, against the same process reading nothing: left to itself V8
  // scavenges about once per 64 MiB of young array buffers (2-4 times for
  // the read), letting the dropped pieces pile up; with the heap pacing of
  // read()'s buffers it scavenges every few MiB (46 times). The peak
  // memory this keeps down is bench:memory's to measure: it also depends on
  // how soon V8's sweeper thread gets a CPU.
  const io = new URL("../_io.ts", import.meta.url).href;
  const script = String.raw`
    import { ReaderInput } from ${JSON.stringify(io)};
    const size = Number(Deno.env.get("READ_BYTES"));
    let left = size;
    const input = new ReaderInput({
      readSync(p) {
        if (left === 0) return null;
        const n = Math.min(p.length, left);
        left -= n;
        return n;
      },
    });
    let total = 0;
    for (let b; (b = input.read(65536)).length > 0;) total += b.length;
    if (total !== size) Deno.exit(3);
  `;
  const scavenges = async (bytes: number) => {
    const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
      args: ["eval", "--v8-flags=--trace-gc", script],
      env: { READ_BYTES: String(bytes) },
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(code, 0, text(stderr));
    return text(stdout).split("\n").filter((l) => l.includes("Scavenge"))
      .length;
  };
  const [idle, reading] = await Promise.all([
    scavenges(0),
    scavenges(256 * 1024 * 1024),
  ]);
  assert.ok(reading - idle >= 16, `${idle} scavenges idle, ${reading} reading`);
});

Deno.test("ReaderInput treats a readSync() of 0 as the end", () => {
  let calls = 0;
  const input = new ReaderInput({ readSync: () => (calls++, 0) });
  assert.equal(input.read().length, 0);
  assert.equal(input.read().length, 0);
  assert.equal(calls, 1);
});

Deno.test("ReaderInput refuses bad readers, limits and counts", async (t) => {
  const readerCases: unknown[] = [
    null,
    undefined,
    {},
    { readSync: 1 },
    "stdin",
    { read: () => null },
  ];
  for (const value of readerCases) {
    await t.step(`reader ${Deno.inspect(value)}`, () => {
      assert.throws(
        () => new ReaderInput(value as SyncReader),
        (e: unknown) =>
          e instanceof TypeError &&
          e.message.startsWith(
            "Cannot create ReaderInput: reader must have a readSync method, not ",
          ),
      );
    });
  }
  for (const limit of ["10", 10n, true]) {
    await t.step(`limit ${String(limit)}`, () => {
      assert.throws(
        () =>
          new ReaderInput(
            reader(new Uint8Array(0)),
            limit as unknown as number,
          ),
        (e: unknown) =>
          e instanceof TypeError &&
          e.message.startsWith(
            "Cannot create ReaderInput: limit must be a number, null or undefined, not ",
          ),
      );
    });
  }
  for (const limit of [-1, 1.5, NaN, Infinity, 2 ** 53]) {
    await t.step(`limit ${limit}`, () => {
      assert.throws(
        () => new ReaderInput(reader(new Uint8Array(0)), limit),
        {
          name: "RangeError",
          message:
            `Cannot create ReaderInput: limit must be a non-negative integer, not ${limit}`,
        },
      );
    });
  }
  for (const n of [-1, 2.5, 65537, "1"]) {
    await t.step(`readSync() returning ${JSON.stringify(n)}`, () => {
      const input = new ReaderInput({ readSync: () => n as number });
      assert.throws(() => input.read(), RangeError);
    });
  }
  await t.step("readSync() errors reach the caller", () => {
    const input = new ReaderInput({
      readSync(): number {
        throw new Deno.errors.ConnectionReset("gone");
      },
    });
    assert.throws(() => input.read(), Deno.errors.ConnectionReset);
  });
});

Deno.test("StringErrorStream collects what is written", () => {
  const errors = new StringErrorStream();
  assert.equal(errors.value, "");
  errors.write("a\n");
  errors.writelines(["b", "c\n"]);
  errors.writelines(new Set(["d"]));
  errors.write("\u00e9\u20ac\r\n\0");
  errors.flush();
  assert.equal(errors.value, "a\nbc\nd\u00e9\u20ac\r\n\0");
});

Deno.test("StringErrorStream refuses non-strings", async (t) => {
  for (const value of [encoder.encode("x"), 1, null, undefined, ["x"]]) {
    await t.step(Object.prototype.toString.call(value), () => {
      const errors = new StringErrorStream();
      assert.throws(
        () => errors.write(value as unknown as string),
        (e: unknown) =>
          e instanceof TypeError &&
          e.message.startsWith(
            "Cannot write to wsgi.errors: expected a string, not ",
          ),
      );
      assert.throws(
        () => errors.writelines(["ok", value as unknown as string]),
        TypeError,
      );
      assert.equal(errors.value, "ok");
    });
  }
});

/** A writer that takes at most `step` bytes per writeSync call. */
function byteWriter(step = Infinity) {
  const w = {
    chunks: [] as number[][],
    flushed: 0,
    writeSync(p: Uint8Array): number {
      const n = Math.min(p.length, step);
      w.chunks.push([...p.subarray(0, n)]);
      return n;
    },
    flush(): void {
      w.flushed++;
    },
  };
  return w;
}

Deno.test("writeAll() completes partial writes", async (t) => {
  await t.step("writeSync one byte at a time", () => {
    const w = byteWriter(1);
    writeAll(w, new Uint8Array([1, 2, 3]));
    assert.deepEqual(w.chunks, [[1], [2], [3]]);
  });
  await t.step("writeSync all at once", () => {
    const w = byteWriter();
    writeAll(w, new Uint8Array([1, 2, 3]));
    assert.deepEqual(w.chunks, [[1, 2, 3]]);
  });
  await t.step("write() returning counts", () => {
    const got: number[][] = [];
    writeAll({
      write: (p: Uint8Array) => (got.push([...p]), Math.min(2, p.length)),
    }, new Uint8Array([1, 2, 3, 4, 5]));
    assert.deepEqual(got, [[1, 2, 3, 4, 5], [3, 4, 5], [5]]);
  });
  await t.step("write() returning nothing wrote everything", () => {
    const got: number[][] = [];
    writeAll(
      { write: (p: Uint8Array) => void got.push([...p]) },
      new Uint8Array([1, 2]),
    );
    assert.deepEqual(got, [[1, 2]]);
  });
  await t.step("writeSync preferred over an async write", () => {
    const w = {
      ...byteWriter(),
      write: () => Promise.reject(new Error("async")),
    };
    writeAll(w, new Uint8Array([9]));
    assert.deepEqual(w.chunks, [[9]]);
  });
  await t.step("empty data writes nothing", () => {
    const w = byteWriter();
    writeAll(w, new Uint8Array(0));
    assert.deepEqual(w.chunks, []);
  });
});

Deno.test("writeAll() writes to a real file", async () => {
  const path = await Deno.makeTempFile();
  try {
    const data = Uint8Array.from({ length: 100_000 }, (_, i) => i & 0xff);
    {
      using file = Deno.openSync(path, { write: true });
      writeAll(file, data);
    }
    assert.deepEqual(await Deno.readFile(path), data);
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("writeAll() refuses bad writers", async (t) => {
  for (const value of [null, undefined, {}, "stdout", { writeSync: 1 }]) {
    await t.step(`writer ${Deno.inspect(value)}`, () => {
      assert.throws(
        () => writeAll(value, new Uint8Array(1)),
        (e: unknown) =>
          e instanceof TypeError &&
          e.message.startsWith(
            "Cannot write: the writer must have a writeSync or write method, not ",
          ),
      );
    });
  }
  await t.step("write() returning a promise", () => {
    assert.throws(
      () => writeAll({ write: () => Promise.resolve(1) }, new Uint8Array(1)),
      {
        name: "TypeError",
        message:
          "Cannot write: write() returned a promise; a synchronous writer is needed",
      },
    );
  });
  await t.step("writeSync() returning 0 is an error, not a loop", () => {
    assert.throws(
      () => writeAll({ writeSync: () => 0 }, new Uint8Array(3)),
      {
        name: "RangeError",
        message: "Cannot write: writeSync() returned 0 for 3 bytes",
      },
    );
  });
  await t.step("writeSync() returning too much", () => {
    assert.throws(
      () => writeAll({ writeSync: () => 4 }, new Uint8Array(3)),
      RangeError,
    );
  });
  await t.step("writeSync() returning a string", () => {
    assert.throws(
      () =>
        writeAll(
          { writeSync: () => "3" as unknown as number },
          new Uint8Array(3),
        ),
      {
        name: "TypeError",
        message:
          "Cannot write: writeSync() returned string '3', not a byte count",
      },
    );
  });
  await t.step("writeSync() returning nothing", () => {
    assert.throws(
      () =>
        writeAll(
          { writeSync: () => undefined as unknown as number },
          new Uint8Array(3),
        ),
      {
        name: "TypeError",
        message:
          "Cannot write: writeSync() returned undefined None, not a byte count",
      },
    );
  });
  await t.step("writer errors reach the caller", () => {
    const w = {
      writeSync(): number {
        throw new Deno.errors.BrokenPipe("closed");
      },
    };
    assert.throws(() => writeAll(w, new Uint8Array(1)), Deno.errors.BrokenPipe);
  });
});

Deno.test("toErrorStream() returns an ErrorStream as is", () => {
  const errors = new StringErrorStream();
  assert.equal(toErrorStream(errors), errors);
  const custom: ErrorStream = { write() {}, writelines() {}, flush() {} };
  assert.equal(toErrorStream(custom), custom);
});

Deno.test("toErrorStream() wraps a byte writer, encoding UTF-8", () => {
  const w = byteWriter(2);
  const errors = toErrorStream(w);
  errors.write("h\u00e9\u20ac");
  errors.writelines(["a", "", "b\n"]);
  errors.write("");
  errors.flush();
  assert.deepEqual(
    w.chunks.flat(),
    [...encoder.encode("h\u00e9\u20ac"), ...encoder.encode("ab\n")],
  );
  assert.equal(w.flushed, 1);
  assert.throws(
    () => errors.write(encoder.encode("x") as unknown as string),
    TypeError,
  );
});

Deno.test("toErrorStream() wraps a writer with only write()", () => {
  const got: string[] = [];
  const errors = toErrorStream({
    write: (p: Uint8Array) => void got.push(decoder.decode(p)),
  });
  errors.write("one\n");
  errors.flush(); // no flush method: nothing to do
  assert.deepEqual(got, ["one\n"]);
});

Deno.test("toErrorStream() writes to a real file writer", async () => {
  const path = await Deno.makeTempFile();
  try {
    {
      using file = Deno.openSync(path, { write: true });
      const errors = toErrorStream(file);
      errors.write("caf\u00e9\n");
      errors.writelines(["x", "y\n"]);
    }
    assert.equal(await Deno.readTextFile(path), "caf\u00e9\nxy\n");
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("toErrorStream() refuses what is not a stream", async (t) => {
  for (
    const value of [null, undefined, "stderr", 2, {}, { writelines() {} }, {
      flush() {},
    }]
  ) {
    await t.step(Deno.inspect(value), () => {
      assert.throws(
        () => toErrorStream(value),
        (e: unknown) =>
          e instanceof TypeError &&
          / as an error stream: it has no writelines, writeSync or write method$/
            .test(e.message),
      );
    });
  }
});
