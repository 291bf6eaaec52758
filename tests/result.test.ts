import assert from "node:assert/strict";
import {
  checkResult,
  ResultLoop,
  sendResult,
  takeBack,
  Unsent,
} from "../_result.ts";
import { BaseCGIHandler } from "../handlers.ts";
import { ServerHandler, toFetchHandler } from "../simple_server.ts";
import { FastCGIHandler, type FastCGIOutput } from "../fastcgi.ts";
import { StringErrorStream } from "../_io.ts";
import { RESOLVED } from "../_internal.ts";
import type { Application, ResponseBody } from "../types.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const enc = (s: string): Uint8Array => encoder.encode(s);

/** A handler stand-in: keeps what `write()` gets, as text. */
class Writer {
  chunks: string[] = [];
  write(data: Uint8Array): void {
    this.chunks.push(decoder.decode(data));
  }
}

/** A result that records what happens to it, as `events`. */
function traced(
  events: string[],
  chunks: unknown[],
  options: { throwAt?: number; returnThrows?: boolean } = {},
): Iterable<unknown> & { close(): void } {
  return {
    [Symbol.iterator]() {
      let i = 0;
      return {
        next() {
          events.push("next");
          if (i === options.throwAt) throw new Error("next failed");
          return i < chunks.length
            ? { done: false, value: chunks[i++] }
            : { done: true, value: undefined };
        },
        return() {
          events.push("return");
          if (options.returnThrows) throw new Error("return failed");
          return { done: true, value: undefined };
        },
      };
    },
    close() {
      events.push("close");
    },
  };
}

// --------------------------------------------------------------- ResultLoop

Deno.test("ResultLoop.pump() writes a synchronous result synchronously", async (t) => {
  const shapes: [string, () => unknown][] = [
    ["an Array", () => [enc("a"), enc("b")]],
    ["a generator", () =>
      (function* () {
        yield enc("a");
        yield enc("b");
      })()],
    ["a Set", () => new Set([enc("a"), enc("b")])],
  ];
  for (const [name, make] of shapes) {
    await t.step(name, () => {
      const writer = new Writer();
      const loop = new ResultLoop(writer, make());
      assert.equal(loop.pump(), undefined);
      assert.ok(loop.done);
      assert.deepEqual(writer.chunks, ["a", "b"]);
      // Over: pumping again does nothing.
      assert.equal(loop.pump(), undefined);
      assert.deepEqual(writer.chunks, ["a", "b"]);
    });
  }
});

Deno.test("ResultLoop.pump() awaits an AsyncIterable's chunks", async () => {
  const writer = new Writer();
  const loop = new ResultLoop(
    writer,
    (async function* () {
      yield enc("a");
      await null;
      yield enc("b");
    })(),
  );
  const pumping = loop.pump();
  assert.ok(pumping instanceof Promise);
  assert.ok(!loop.done);
  await pumping;
  assert.ok(loop.done);
  assert.deepEqual(writer.chunks, ["a", "b"]);
});

Deno.test("ResultLoop.pump() iterates an Array through its own iterator when it has one", () => {
  const result = [enc("not"), enc("this")];
  Object.defineProperty(result, Symbol.iterator, {
    value: function* () {
      yield enc("own");
    },
  });
  const writer = new Writer();
  new ResultLoop(writer, result).pump();
  assert.deepEqual(writer.chunks, ["own"]);
});

Deno.test("ResultLoop.pump() reads an Array as for...of does, length at each step", () => {
  const result = [enc("a")];
  const writer = {
    chunks: [] as string[],
    write(data: Uint8Array) {
      this.chunks.push(decoder.decode(data));
      if (result.length < 3) result.push(enc(String(result.length)));
    },
  };
  new ResultLoop(writer, result).pump();
  const expected: string[] = [];
  const again = [enc("a")];
  for (const chunk of again) {
    expected.push(decoder.decode(chunk));
    if (again.length < 3) again.push(enc(String(again.length)));
  }
  assert.deepEqual(writer.chunks, expected);
});

Deno.test("ResultLoop.pump() pauses when the gate says so, and goes on at the next pump()", () => {
  const writer = new Writer();
  const pending: string[] = [];
  const loop = new ResultLoop(
    writer,
    (function* () {
      pending.push("a");
      yield enc("a");
      pending.push("b");
      yield enc("b");
    })(),
  );
  // A gate that lets one chunk through per pump().
  let allowed = 0;
  const gate = () => allowed-- <= 0;
  allowed = 1;
  assert.equal(loop.pump(gate), undefined);
  assert.deepEqual(writer.chunks, ["a"]);
  assert.deepEqual(pending, ["a"]); // the generator went no further
  assert.ok(!loop.done);
  allowed = 1;
  loop.pump(gate);
  assert.deepEqual(writer.chunks, ["a", "b"]);
  allowed = 1;
  loop.pump(gate);
  assert.ok(loop.done);
});

Deno.test("ResultLoop.pump() waits for the gate's promise, then asks it again", async () => {
  const writer = new Writer();
  const asked: string[] = [];
  let ready = false;
  let release!: () => void;
  const gate = () => {
    asked.push(ready ? "ready" : "busy");
    return ready ? false : new Promise<void>((resolve) => {
      release = () => {
        ready = true;
        resolve();
      };
    });
  };
  const loop = new ResultLoop(writer, [enc("a"), enc("b")]);
  const pumping = loop.pump(gate);
  assert.ok(pumping instanceof Promise);
  assert.deepEqual(writer.chunks, []);
  release();
  await pumping;
  assert.deepEqual(writer.chunks, ["a", "b"]);
  assert.deepEqual(asked, ["busy", "ready", "ready", "ready"]);
});

Deno.test("ResultLoop.pump() leaves empty chunks out with skipEmpty", () => {
  const chunks: number[] = [];
  const writer = { write: (data: Uint8Array) => void chunks.push(data.length) };
  const result = [new Uint8Array(0), enc("ab"), new Uint8Array(0)];
  new ResultLoop(writer, result, true).pump();
  assert.deepEqual(chunks, [2]);
  chunks.length = 0;
  new ResultLoop(writer, result).pump();
  assert.deepEqual(chunks, [0, 2, 0]);
});

Deno.test("ResultLoop.pump() refuses a chunk that is not a Uint8Array, naming what the result yielded", async (t) => {
  const rows: [string, unknown, string][] = [
    [
      "a string",
      "text",
      `The application's result yielded a string ("text") at index 1; each chunk must be a Uint8Array, e.g. new TextEncoder().encode(text)`,
    ],
    [
      "a long string",
      "x".repeat(50),
      `The application's result yielded a string ("${
        "x".repeat(40)
      }...") at index 1; each chunk must be a Uint8Array, e.g. new TextEncoder().encode(text)`,
    ],
    [
      "a number",
      42,
      "The application's result yielded number 42 at index 1; each chunk must be a Uint8Array",
    ],
    [
      "null",
      null,
      "The application's result yielded null None at index 1; each chunk must be a Uint8Array",
    ],
    [
      "an ArrayBuffer",
      new ArrayBuffer(2),
      "The application's result yielded ArrayBuffer <ArrayBuffer object> at index 1; each chunk must be a Uint8Array",
    ],
    [
      "a Uint16Array",
      new Uint16Array(2),
      "The application's result yielded Uint16Array <Uint16Array object> at index 1; each chunk must be a Uint8Array",
    ],
  ];
  for (const [name, bad, message] of rows) {
    for (const shape of ["an Array", "a generator", "an async generator"]) {
      await t.step(`${name} in ${shape}`, async () => {
        const writer = new Writer();
        const chunks = [enc("ok"), bad];
        const result = shape === "an Array"
          ? chunks
          : shape === "a generator"
          ? (function* () {
            yield* chunks;
          })()
          : (async function* () {
            yield* chunks;
          })();
        await assert.rejects(
          async () => await new ResultLoop(writer, result).pump(),
          { name: "AssertionError", message },
        );
        assert.deepEqual(writer.chunks, ["ok"]);
      });
    }
  }
});

Deno.test("ResultLoop.pump() refuses a result that is not iterable", async (t) => {
  const rows: [unknown, string][] = [
    [42, "number 42"],
    [null, "null None"],
    [{ close() {} }, "object <Object object>"],
  ];
  for (const [result, shown] of rows) {
    await t.step(shown, async () => {
      await assert.rejects(
        async () => await new ResultLoop(new Writer(), result).pump(),
        {
          name: "TypeError",
          message:
            `Cannot send the response: the application returned ${shown}, which is not iterable`,
        },
      );
    });
  }
});

Deno.test("ResultLoop.pump() leaves the iterator as for...of does when a chunk fails", async (t) => {
  // The language is the reference: the same result through for...of.
  function forOf(
    chunks: unknown[],
    options: { throwAt?: number; returnThrows?: boolean },
  ): [string[], string] {
    const events: string[] = [];
    let thrown = "";
    try {
      for (const chunk of traced(events, chunks, options)) {
        if (!(chunk instanceof Uint8Array)) throw new Error("bad chunk");
        events.push("write");
      }
    } catch (error) {
      thrown = (error as Error).message;
    }
    return [events, thrown];
  }
  const cases: [
    string,
    unknown[],
    { throwAt?: number; returnThrows?: boolean },
  ][] = [
    ["a bad chunk", [enc("a"), "b", enc("c")], {}],
    ["a bad chunk, return() throws", [enc("a"), "b"], { returnThrows: true }],
    ["the iterator throws", [enc("a"), enc("b")], { throwAt: 1 }],
    ["to the end", [enc("a")], {}],
  ];
  for (const [name, chunks, options] of cases) {
    await t.step(name, async () => {
      const [expected, expectedError] = forOf(chunks, options);
      const events: string[] = [];
      const writer = { write: () => void events.push("write") };
      const loop = new ResultLoop(writer, traced(events, chunks, options));
      let thrown = "";
      try {
        await loop.pump();
      } catch (error) {
        thrown = (error as Error).message;
      }
      // After the loop: the result's close() when it failed.
      const failed = expectedError !== "";
      assert.deepEqual(events, failed ? [...expected, "close"] : expected);
      assert.equal(thrown !== "", failed);
    });
  }
});

Deno.test("ResultLoop.pump() closes the result once before an error goes on; an error of close() wins", async () => {
  let closes = 0;
  const result = {
    *[Symbol.iterator]() {
      yield "not bytes";
    },
    close() {
      closes++;
      throw new Error("close failed");
    },
  };
  const loop = new ResultLoop(new Writer(), result);
  await assert.rejects(async () => await loop.pump(), {
    message: "close failed",
  });
  assert.equal(closes, 1);
  assert.equal(loop.pump(), undefined); // failed: nothing more
  assert.equal(closes, 1);
});

Deno.test("ResultLoop.stop() ends a pump waiting on next(), without waiting for return()", async () => {
  let returned = 0;
  let release!: () => void;
  const writer = new Writer();
  let step = 0;
  const result = {
    [Symbol.asyncIterator]: () => ({
      next: () =>
        step++ === 0
          ? Promise.resolve({ done: false, value: enc("a") })
          : new Promise<IteratorResult<Uint8Array>>((resolve) => {
            release = () => resolve({ done: false, value: enc("late") });
          }),
      // Never settles: stop() must not wait for it.
      return: () => {
        returned++;
        return new Promise<IteratorResult<Uint8Array>>(() => {});
      },
    }),
  };
  const loop = new ResultLoop(writer, result);
  const pumping = loop.pump();
  while (release === undefined) await null;
  const errors: unknown[] = [];
  loop.stop((error) => errors.push(error));
  loop.stop((error) => errors.push(error));
  assert.equal(returned, 1);
  release();
  await pumping;
  assert.ok(loop.stopped && !loop.done);
  assert.deepEqual(writer.chunks, ["a"]); // "late" is dropped
  assert.deepEqual(errors, []);
});

Deno.test("ResultLoop.stop() hands an error of return() to onError", async () => {
  const errors: string[] = [];
  const loop = new ResultLoop(
    new Writer(),
    traced([], [enc("a"), enc("b")], {
      returnThrows: true,
    }),
  );
  loop.pump(() => true); // open, pull nothing
  loop.stop((error) => errors.push((error as Error).message));
  assert.deepEqual(errors, ["return failed"]);
  const rejecting = new ResultLoop(
    new Writer(),
    (async function* () {
      try {
        yield enc("a");
      } finally {
        // deno-lint-ignore no-unsafe-finally
        throw new Error("finally failed");
      }
    })(),
  );
  let first = true;
  await rejecting.pump(() => !(first && !(first = false))); // one chunk
  await new Promise<void>((resolve) => {
    rejecting.stop((error) => {
      errors.push((error as Error).message);
      resolve();
    });
  });
  assert.deepEqual(errors, ["return failed", "finally failed"]);
});

Deno.test("ResultLoop.leave() calls return() as break does, and throws its error", () => {
  const events: string[] = [];
  const loop = new ResultLoop(
    { write: () => void events.push("write") },
    traced(events, [enc("a"), enc("b")], { returnThrows: true }),
  );
  let first = true;
  loop.pump(() => !(first && !(first = false))); // one chunk
  assert.throws(() => loop.leave(), { message: "return failed" });
  assert.deepEqual(events, ["next", "write", "return"]);
  assert.ok(loop.stopped);
  assert.equal(loop.leave(), undefined); // once
});

// ----------------------------------------------------- checkResult, Unsent

Deno.test("checkResult() refuses a string or a bare Uint8Array, saying what to return", () => {
  assert.throws(() => checkResult("hi" as unknown as ResponseBody), {
    name: "AssertionError",
    message:
      `The application returned a string ("hi"); it must return an iterable of Uint8Array chunks, e.g. [new TextEncoder().encode(text)]`,
  });
  assert.throws(() => checkResult(enc("hi") as unknown as ResponseBody), {
    name: "AssertionError",
    message:
      "The application returned a bare Uint8Array (2 bytes); it must return an iterable of Uint8Array chunks, e.g. [bytes]",
  });
  const ok = [enc("hi")];
  assert.equal(checkResult(ok), ok);
});

Deno.test("Unsent keeps chunks until take(); takeBack() counts the headers as unsent", () => {
  const unsent = new Unsent();
  unsent.push(enc("ab"));
  unsent.push(new Uint8Array(0));
  unsent.push(enc("c"));
  assert.equal(unsent.chunks.length, 2);
  assert.equal(unsent.bytes, 3);
  assert.equal(decoder.decode(unsent.take()), "abc");
  assert.equal(unsent.bytes, 0);
  const one = enc("x");
  unsent.push(one);
  assert.equal(unsent.take(), one); // one chunk: not copied
  const handler = { headersSent: true, bytesSent: 5 };
  unsent.push(enc("y"));
  takeBack(handler, unsent);
  assert.deepEqual(handler, { headersSent: false, bytesSent: 0 });
  assert.equal(unsent.bytes, 0);
});

Deno.test("Unsent.takeShared() joins chunks in one buffer it reuses, one chunk as it is", () => {
  const unsent = new Unsent();
  unsent.push(enc("ab"));
  unsent.push(enc("c"));
  const first = unsent.takeShared();
  assert.equal(decoder.decode(first), "abc");
  assert.equal(unsent.bytes, 0);
  unsent.push(enc("de"));
  unsent.push(enc("f"));
  const second = unsent.takeShared();
  assert.equal(second.buffer, first.buffer); // no new buffer
  assert.equal(decoder.decode(second), "def");
  const one = enc("x");
  unsent.push(one);
  assert.equal(unsent.takeShared(), one);
  // Over the shared buffer's limit: a buffer of their own.
  const big = new Uint8Array(40 * 1024);
  unsent.push(big);
  unsent.push(big);
  const joined = unsent.takeShared();
  assert.equal(joined.length, 80 * 1024);
  assert.notEqual(joined.buffer, first.buffer);
});

// ------------------------------------------------- the loop in each handler

Deno.test("sendResult() settles with RESOLVED itself when everything is synchronous", () => {
  const calls: string[] = [];
  const handler = {
    write: () => void calls.push("write"),
    resultIsFile: () => false,
    sendfile: () => false,
    finishContent: () => void calls.push("finishContent"),
    close: () => (calls.push("close"), RESOLVED),
  };
  const loop = new ResultLoop(handler, [enc("a")]);
  assert.equal(sendResult(handler, loop), RESOLVED);
  assert.deepEqual(calls, ["write", "finishContent", "close"]);
});

/** A FastCGIOutput that keeps what it gets. */
function fastcgiOutput(): FastCGIOutput & { text: string } {
  return {
    text: "",
    write(data) {
      this.text += decoder.decode(data);
    },
    ready: true,
    drain: () => Promise.resolve(),
  };
}

Deno.test("A synchronous application's Array result settles without a promise hop in every handler", () => {
  const app: Application = (_environ, startResponse) => {
    startResponse("200 OK", [["Content-Type", "text/plain"]]);
    return [enc("hi")];
  };
  const cgi = new BaseCGIHandler(
    { readSync: () => null },
    { write: () => {} },
    new StringErrorStream(),
    {},
  );
  cgi.osEnviron = {};
  assert.equal(cgi.run(app), RESOLVED);
  const fastcgi = new FastCGIHandler(
    { readSync: () => null },
    fastcgiOutput(),
    new StringErrorStream(),
    {},
  );
  assert.equal(fastcgi.run(app), RESOLVED);
  const server = new ServerHandler(
    { readSync: () => null },
    { write: () => {} },
    new StringErrorStream(),
    { REQUEST_METHOD: "GET", SERVER_PROTOCOL: "HTTP/1.1" },
  );
  assert.equal(server.run(app), RESOLVED);
  assert.equal(server.response?.status, 200);
});

/** Run `app` through one of the handlers; the log and the output. */
async function runIn(
  kind: string,
  app: Application,
): Promise<{ log: string; output: string }> {
  const errors = new StringErrorStream();
  if (kind === "BaseCGIHandler") {
    let output = "";
    const handler = new BaseCGIHandler(
      { readSync: () => null },
      { write: (p: Uint8Array) => void (output += decoder.decode(p)) },
      errors,
      {},
    );
    handler.osEnviron = {};
    await handler.run(app);
    return { log: errors.value, output };
  }
  if (kind === "FastCGIHandler") {
    const out = fastcgiOutput();
    await new FastCGIHandler({ readSync: () => null }, out, errors, {}).run(
      app,
    );
    return { log: errors.value, output: out.text };
  }
  const handler = new ServerHandler(
    { readSync: () => null },
    { write: () => {} },
    errors,
    { REQUEST_METHOD: "GET", SERVER_PROTOCOL: "HTTP/1.1" },
  );
  await handler.run(app);
  const response = handler.response!;
  let output = `${response.status} `;
  try {
    output += await response.text();
  } catch {
    output += "<cut>";
  }
  return { log: errors.value, output };
}

const HANDLERS = ["BaseCGIHandler", "ServerHandler", "FastCGIHandler"];

Deno.test("Every handler closes the result once on every path", async (t) => {
  type Outcome = "ends" | "throws at once" | "throws later" | "yields text";
  const outcomes: Outcome[] = [
    "ends",
    "throws at once",
    "throws later",
    "yields text",
  ];
  const closes: [string, () => unknown][] = [
    ["returns", () => {}],
    ["throws", () => {
      throw new Error("close failed");
    }],
    ["rejects", () => Promise.reject(new Error("close rejected"))],
  ];
  for (const kind of HANDLERS) {
    for (const shape of ["an Array", "a generator", "an async generator"]) {
      for (const outcome of outcomes) {
        if (shape === "an Array" && outcome.startsWith("throws")) continue;
        for (const [how, close] of closes) {
          const name = `${kind}, ${shape} that ${outcome}, close() ${how}`;
          await t.step(name, async () => {
            let closed = 0;
            const chunks = (): unknown[] =>
              outcome === "yields text" ? [enc("a"), "b"] : [enc("a")];
            const app: Application = (_environ, startResponse) => {
              startResponse("200 OK", [["Content-Type", "text/plain"]]);
              const result = shape === "an Array"
                ? chunks()
                : shape === "a generator"
                ? (function* () {
                  if (outcome === "throws at once") throw new Error("failed");
                  yield* chunks();
                  if (outcome === "throws later") throw new Error("failed");
                })()
                : (async function* () {
                  if (outcome === "throws at once") throw new Error("failed");
                  yield* chunks();
                  if (outcome === "throws later") throw new Error("failed");
                })();
              return Object.assign(result, {
                close: () => {
                  closed++;
                  return close();
                },
              }) as unknown as ResponseBody;
            };
            const { log, output } = await runIn(kind, app);
            assert.equal(closed, 1);
            if (outcome === "ends" && how === "returns") {
              assert.equal(log, "");
              assert.match(output, /a$/);
            } else {
              assert.notEqual(log, "");
            }
          });
        }
      }
    }
  }
});

Deno.test("Every handler names the result's chunk that is not a Uint8Array; write() keeps wsgiref's message", async (t) => {
  for (const kind of HANDLERS) {
    await t.step(`${kind}, a result yielding text`, async () => {
      const { log, output } = await runIn(kind, (_environ, startResponse) => {
        startResponse("200 OK", [["Content-Type", "text/plain"]]);
        return ["text" as unknown as Uint8Array];
      });
      assert.match(
        log,
        /^AssertionError: The application's result yielded a string \("text"\) at index 0; each chunk must be a Uint8Array, e\.g\. new TextEncoder\(\)\.encode\(text\)\n/,
      );
      assert.match(output, /500|A server error occurred/);
    });
    await t.step(`${kind}, write() given text`, async () => {
      const { log } = await runIn(kind, (_environ, startResponse) => {
        const write = startResponse("200 OK", []);
        write("text" as unknown as Uint8Array);
        return [];
      });
      assert.match(
        log,
        /^AssertionError: write\(\) argument must be a bytes instance\n/,
      );
    });
  }
});

Deno.test("toFetchHandler() closes a streamed result once when the client cancels or the request times out", async (t) => {
  for (const how of ["cancel", "requestTimeout"]) {
    await t.step(how, async () => {
      let closed = 0;
      let returned = 0;
      const fetchHandler = toFetchHandler((_environ, startResponse) => {
        startResponse("200 OK", [["Content-Type", "text/plain"]]);
        return {
          [Symbol.asyncIterator]: () => {
            let step = 0;
            return {
              next: () =>
                step++ === 0
                  ? Promise.resolve({ done: false, value: enc("a") })
                  : new Promise<IteratorResult<Uint8Array>>(() => {}),
              return: () => {
                returned++;
                return Promise.resolve({ done: true, value: undefined });
              },
            };
          },
          close: () => void closed++,
        };
      }, { quiet: true, requestTimeout: how === "cancel" ? 0 : 50 });
      const response = await fetchHandler(new Request("http://localhost/"));
      const reader = response.body!.getReader();
      assert.equal(decoder.decode((await reader.read()).value), "a");
      if (how === "cancel") {
        await reader.cancel();
      } else {
        await assert.rejects(() => reader.read(), /cut short/);
      }
      assert.equal(closed, 1);
      assert.equal(returned, 1);
    });
  }
});

Deno.test("ServerHandler logs an error of close() when the client cancels a stream", async () => {
  const errors = new StringErrorStream();
  const handler = new ServerHandler(
    { readSync: () => null },
    { write: () => {} },
    errors,
    { REQUEST_METHOD: "GET", SERVER_PROTOCOL: "HTTP/1.1" },
  );
  let closed = 0;
  await handler.run((_environ, startResponse) => {
    startResponse("200 OK", [["Content-Type", "text/plain"]]);
    return Object.assign(
      (function* () {
        yield enc("a");
        yield enc("b");
      })(),
      {
        close: () => {
          closed++;
          throw new Error("close failed");
        },
      },
    );
  });
  const reader = handler.response!.body!.getReader();
  assert.equal(decoder.decode((await reader.read()).value), "a");
  await reader.cancel();
  assert.equal(closed, 1);
  assert.match(errors.value, /^Error: close failed\n/);
});
