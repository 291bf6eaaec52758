import assert from "node:assert/strict";
import type {
  Application,
  Environ,
  ErrorStream,
  FileWrapperClass,
  HeaderList,
  InputStream,
  ResponseBody,
  StartResponse,
  Write,
} from "../types.ts";
import { FileWrapper, setupTestingDefaults } from "../util.ts";
import { Headers } from "../headers.ts";
import { BytesInput, ReaderInput, StringErrorStream } from "../_io.ts";

const encoder = new TextEncoder();

/** Run an application to completion, collecting status, headers and body. */
async function call(app: Application, environ: Environ) {
  let status = "";
  let headers: HeaderList = [];
  const body: Uint8Array[] = [];
  const startResponse: StartResponse = (s, h) => {
    status = s;
    headers = h;
    const write: Write = (data) => void body.push(data);
    return write;
  };
  const result: ResponseBody = await app(environ, startResponse);
  try {
    if (Symbol.asyncIterator in result) {
      for await (const chunk of result) body.push(chunk);
    } else {
      for (const chunk of result) body.push(chunk);
    }
  } finally {
    await result.close?.();
  }
  return { status, headers, body: new TextDecoder().decode(concat(body)) };
}

function concat(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.length;
  }
  return out;
}

Deno.test("setupTestingDefaults({}) type-checks and yields a typed Environ", () => {
  const environ: Environ = {};
  setupTestingDefaults(environ);
  setupTestingDefaults({});
  const input: InputStream | undefined = environ["wsgi.input"];
  const errors: ErrorStream | undefined = environ["wsgi.errors"];
  const version: [number, number] | undefined = environ["wsgi.version"];
  const method: string | undefined = environ.REQUEST_METHOD;
  assert.ok(input);
  assert.ok(errors);
  assert.deepEqual(version, [1, 0]);
  assert.equal(method, "GET");
  assert.equal(environ["wsgi.multithread"], false);
});

Deno.test("a sync and an async application both satisfy Application", async () => {
  const syncApp: Application = (environ, startResponse) => {
    startResponse("200 OK", [["Content-Type", "text/plain"]]);
    return [encoder.encode(`sync ${environ.PATH_INFO}`)];
  };
  let closed = 0;
  const asyncApp: Application = async (environ, startResponse) => {
    await Promise.resolve();
    const headers = new Headers([]);
    headers.set("Content-Type", "text/plain");
    startResponse("201 Created", headers.items());
    async function* body() {
      yield encoder.encode("async ");
      yield encoder.encode(String(environ.PATH_INFO));
    }
    return Object.assign(body(), {
      close(): Promise<void> {
        closed++;
        return Promise.resolve();
      },
    });
  };
  const environ: Environ = { PATH_INFO: "/p" };
  setupTestingDefaults(environ);
  assert.deepEqual(await call(syncApp, environ), {
    status: "200 OK",
    headers: [["Content-Type", "text/plain"]],
    body: "sync /p",
  });
  assert.deepEqual(await call(asyncApp, environ), {
    status: "201 Created",
    headers: [["Content-Type", "text/plain"]],
    body: "async /p",
  });
  assert.equal(closed, 1);
});

Deno.test("an application may use write() and return a FileWrapper", async () => {
  const data = encoder.encode("file body");
  const app: Application = (environ, startResponse) => {
    const write = startResponse("200 OK", []);
    write(encoder.encode("head "));
    const Wrapper: FileWrapperClass = environ["wsgi.file_wrapper"] ??
      FileWrapper;
    return new Wrapper(new BytesInput(data), 4);
  };
  const environ: Environ = { "wsgi.file_wrapper": FileWrapper };
  setupTestingDefaults(environ);
  const { body } = await call(app, environ);
  assert.equal(body, "head file body");
});

Deno.test("the _io.ts streams satisfy the stream interfaces", () => {
  const inputs: InputStream[] = [
    new BytesInput(),
    new ReaderInput({ readSync: () => null }),
  ];
  const errors: ErrorStream = new StringErrorStream();
  const environ: Environ = { "wsgi.input": inputs[1], "wsgi.errors": errors };
  setupTestingDefaults(environ);
  assert.equal(environ["wsgi.input"], inputs[1]);
  assert.deepEqual(inputs.map((i) => i.read().length), [0, 0]);
});
