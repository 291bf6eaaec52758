import assert from "node:assert/strict";
import {
  FastCGIHandler,
  type FastCGIOutput,
  makeFastCGIServer,
} from "../fastcgi.ts";
import { StringErrorStream } from "../_io.ts";
import type { Application, InputStream, ResponseBody } from "../types.ts";
import { FcgiClient, getParams, parseCgi } from "./fixtures/fcgi_client.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** An output whose backlog the test controls: `drain()` settles when the
 * test says so. */
function heldOutput() {
  const state = {
    sent: [] as string[],
    ready: true,
    drains: 0,
    settle: null as null | ((error?: Error) => void),
  };
  const output: FastCGIOutput = {
    write: (data) => void state.sent.push(decoder.decode(data)),
    get ready() {
      return state.ready;
    },
    drain: () => {
      state.drains++;
      return new Promise<void>((resolve, reject) => {
        state.settle = (error) => {
          state.ready = true;
          if (error) reject(error);
          else resolve();
        };
      });
    },
  };
  return { state, output };
}

/** Three chunks; the connection has a backlog after the first. */
function threeChunks(
  state: { ready: boolean },
  counts: { closed: number; returned: number },
): Application {
  return (_environ, startResponse) => {
    startResponse("200 OK", [["Content-Type", "text/plain"]]);
    const generator = (function* () {
      try {
        yield encoder.encode("a");
        state.ready = false;
        yield encoder.encode("b");
        yield encoder.encode("c");
      } finally {
        counts.returned++;
      }
    })();
    return Object.assign(generator, {
      close: () => void counts.closed++,
    }) as unknown as ResponseBody;
  };
}

/** Start `threeChunks` through a handler over a held output. */
function startThree() {
  const { state, output } = heldOutput();
  const errors = new StringErrorStream();
  const handler = new FastCGIHandler(
    { readSync: () => null },
    output,
    errors,
    {},
  );
  const counts = { closed: 0, returned: 0 };
  const running = handler.run(threeChunks(state, counts));
  return { state, errors, handler, counts, running };
}

Deno.test("FastCGIHandler.run() waits on drain() between chunks, then sends the rest", async () => {
  const { state, errors, counts, running } = startThree();
  // "a" and "b" went out; the generator waits for the host to read.
  assert.deepEqual(state.sent, [
    "Status: 200 OK\r\nContent-Type: text/plain\r\n\r\na",
    "b",
  ]);
  assert.equal(state.drains, 1);
  assert.equal(counts.closed, 0);
  state.settle!();
  await running;
  assert.deepEqual(state.sent.slice(2), ["c"]);
  assert.deepEqual(counts, { closed: 1, returned: 1 });
  assert.equal(errors.value, "");
});

Deno.test("FastCGIHandler.abort() while the handler waits on drain() closes the result once and ends quietly", async (t) => {
  for (const drain of ["resolves", "rejects"]) {
    await t.step(`drain() ${drain}`, async () => {
      const { state, errors, handler, counts, running } = startThree();
      assert.equal(state.drains, 1);
      handler.abort();
      assert.deepEqual(counts, { closed: 1, returned: 1 });
      state.settle!(
        drain === "rejects"
          ? new Deno.errors.ConnectionAborted("The FastCGI host ended it")
          : undefined,
      );
      await running;
      assert.equal(state.sent.length, 2); // nothing after the abort
      assert.deepEqual(counts, { closed: 1, returned: 1 });
      assert.equal(errors.value, "");
    });
  }
});

Deno.test("FastCGIHandler.run() closes the result once when drain() fails, and logs the failure", async () => {
  const { state, errors, counts, running } = startThree();
  state.settle!(new Error("socket failed"));
  await running;
  // As for...of: the generator is left (its finally ran), then closed.
  assert.deepEqual(counts, { closed: 1, returned: 1 });
  assert.match(errors.value, /^Error: socket failed\n/);
});

Deno.test("FastCGIHandler.run() names a result's chunk that is not a Uint8Array", async () => {
  const { state, output } = heldOutput();
  const errors = new StringErrorStream();
  await new FastCGIHandler({ readSync: () => null }, output, errors, {}).run(
    (_environ, startResponse) => {
      startResponse("200 OK", [["Content-Type", "text/plain"]]);
      return (function* () {
        yield 42 as unknown as Uint8Array;
      })();
    },
  );
  assert.match(
    errors.value,
    /^AssertionError: The application's result yielded number 42 at index 0; each chunk must be a Uint8Array\n/,
  );
  // Nothing had been written: the error page goes instead.
  assert.match(state.sent.join(""), /^Status: 500 Internal Server Error\r\n/);
});

Deno.test("makeFastCGIServer() gives a wsgi.input with readinto(), in memory and spooled", async (t) => {
  const app: Application = (environ, startResponse) => {
    const input = environ["wsgi.input"] as InputStream;
    const buffer = new Uint8Array(70_000);
    const pieces: Uint8Array[] = [];
    for (let n; (n = input.readinto!(buffer)) > 0;) {
      pieces.push(buffer.slice(0, n));
    }
    startResponse("200 OK", [["Content-Type", "application/octet-stream"]]);
    return pieces;
  };
  await using server = makeFastCGIServer(
    { hostname: "127.0.0.1", port: 0 },
    app,
    { quiet: true, spoolThreshold: 100_000 },
  );
  const serving = server.serveForever();
  for (const [where, size] of [["in memory", 5000], ["spooled", 300_000]]) {
    await t.step(`${where}, ${size} bytes`, async () => {
      const body = Uint8Array.from(
        { length: size as number },
        (_, i) => (i * 7 + (i >> 9)) % 256,
      );
      const client = await FcgiClient.connect({
        hostname: "127.0.0.1",
        port: server.serverPort,
      });
      try {
        const response = await client.request({
          ...getParams("/"),
          REQUEST_METHOD: "POST",
          CONTENT_LENGTH: String(size),
        }, { stdin: body });
        assert.deepEqual(parseCgi(response.stdout).body, body);
      } finally {
        client.close();
      }
    });
  }
  await server.shutdown();
  await serving;
});
