// Tests of _body.ts's request rules that both servers share. Expected
// values come from RFC 9110 §8.6 (Content-Length = 1*DIGIT; the same decimal
// value repeated as a list may be taken as one) and §5.6.1 (list elements
// separated by "," with optional spaces and tabs).

import assert from "node:assert/strict";
import {
  BodyBudget,
  BodySpool,
  BodyTooLarge,
  normalizeContentLength,
  OverBudget,
} from "../_body.ts";

Deno.test("normalizeContentLength() keeps one decimal value, without leading zeros or spaces", async (t) => {
  const rows: [string, string][] = [
    ["0", "0"],
    ["3", "3"],
    ["42", "42"],
    ["003", "3"],
    ["000", "0"],
    [" 3", "3"],
    ["3 ", "3"],
    ["\t3\t", "3"],
    ["100000000000000", "100000000000000"], // 15 digits
    ["1000000000000000", "1000000000000000"], // 16 digits
    ["9007199254740990", "9007199254740990"], // just under the maximum
    ["9007199254740991", "9007199254740991"], // Number.MAX_SAFE_INTEGER
    ["0009007199254740991", "9007199254740991"],
  ];
  for (const [value, expected] of rows) {
    await t.step(JSON.stringify(value), () => {
      assert.equal(normalizeContentLength(value), expected);
    });
  }
});

Deno.test("normalizeContentLength() collapses a list of the same value", async (t) => {
  const rows: [string, string][] = [
    ["3, 3", "3"], // two header lines joined
    ["3,3", "3"],
    ["3 ,\t3", "3"],
    ["3, 3, 3", "3"],
    ["3, 03", "3"], // the same decimal value
    ["0, 0", "0"],
    ["9007199254740991, 9007199254740991", "9007199254740991"],
  ];
  for (const [value, expected] of rows) {
    await t.step(JSON.stringify(value), () => {
      assert.equal(normalizeContentLength(value), expected);
    });
  }
});

Deno.test("normalizeContentLength() refuses what is not one non-negative length", async (t) => {
  const rows: [string, string][] = [
    ["", "empty"],
    [" ", "spaces only"],
    [",", "empty elements"],
    ["3,", "an empty element after"],
    [",3", "an empty element before"],
    ["3,,3", "an empty element between"],
    ["3, 4", "differing values"],
    ["3, 3, 4", "a differing value last"],
    ["+3", "a plus sign"],
    ["-3", "a minus sign"],
    ["-0", "minus zero"],
    ["3.0", "a decimal point"],
    ["0x3", "hexadecimal"],
    ["3e2", "an exponent"],
    ["1_000", "a separator"],
    ["\uff13", "a full-width digit"],
    ["3\v", "a vertical tab (not OWS)"],
    ["3\u00a0", "a no-break space (not OWS)"],
    ["3 3", "a space between digits"],
    ["9007199254740992", "just over Number.MAX_SAFE_INTEGER"],
    ["99999999999999999999", "far over Number.MAX_SAFE_INTEGER"],
    ["3, 9007199254740992", "an element over the maximum"],
  ];
  for (const [value, what] of rows) {
    await t.step(`${JSON.stringify(value)} (${what})`, () => {
      assert.equal(normalizeContentLength(value), null);
    });
  }
});

// --- BodyBudget ------------------------------------------------------------

/** `n` bytes of a pattern. */
function bytes(n: number, seed = 0): Uint8Array {
  return new Uint8Array(n).map((_, i) => (i * 31 + seed) & 0xff);
}

/** Read a spool's input to its end. */
function readAll(spool: BodySpool): Uint8Array {
  return spool.input().read();
}

/** Files of this process open under `dir`, unlinked ones included. */
function filesOpenUnder(dir: string): number {
  let count = 0;
  for (const entry of Deno.readDirSync("/proc/self/fd")) {
    try {
      if (Deno.readLinkSync(`/proc/self/fd/${entry.name}`).startsWith(dir)) {
        count++;
      }
    } catch {
      // Closed meanwhile.
    }
  }
  return count;
}

Deno.test("BodySpool.append() charges a BodyBudget: memory up to its limit, then disk", async (t) => {
  const tempDir = Deno.makeTempDirSync({ prefix: "wsgiref-body-test-" });
  try {
    const budget = new BodyBudget(100, 1000);
    const limits = {
      spoolThreshold: 500,
      maxBodySize: 10_000,
      tempDir,
      budget,
    };
    const first = new BodySpool(limits);
    const second = new BodySpool(limits);
    await t.step("at the memory budget: in memory", () => {
      first.append(bytes(60));
      first.append(bytes(40, 1));
      assert.equal(first.spooled, false);
      assert.deepEqual([budget.memory, budget.disk], [100, 0]);
    });
    await t.step("one byte over: to a file, under spoolThreshold", () => {
      second.append(bytes(1));
      assert.equal(second.spooled, true);
      assert.deepEqual([budget.memory, budget.disk], [100, 1]);
      second.append(bytes(99, 2));
      assert.deepEqual([budget.memory, budget.disk], [100, 100]);
      assert.equal(filesOpenUnder(tempDir), 1);
    });
    await t.step("the bodies read back whole", () => {
      const one = new Uint8Array(100);
      one.set(bytes(60));
      one.set(bytes(40, 1), 60);
      assert.deepEqual(readAll(first), one);
      const two = new Uint8Array(100);
      two.set(bytes(1));
      two.set(bytes(99, 2), 1);
      assert.deepEqual(readAll(second), two);
    });
    await t.step("released: refunded, the file gone", () => {
      first.release();
      assert.deepEqual([budget.memory, budget.disk], [0, 100]);
      second.release();
      second.release();
      assert.deepEqual([budget.memory, budget.disk], [0, 0]);
      assert.equal(filesOpenUnder(tempDir), 0);
    });
    await t.step("a body moved to a file gives its memory back", () => {
      const spool = new BodySpool({ ...limits, spoolThreshold: 50 });
      spool.append(bytes(40));
      assert.deepEqual([budget.memory, budget.disk], [40, 0]);
      spool.append(bytes(20));
      assert.equal(spool.spooled, true);
      assert.deepEqual([budget.memory, budget.disk], [0, 60]);
      spool.release();
      assert.deepEqual([budget.memory, budget.disk], [0, 0]);
    });
  } finally {
    Deno.removeSync(tempDir, { recursive: true });
  }
});

Deno.test("BodySpool.append() throws OverBudget past the disk budget; release() refunds all", async (t) => {
  const tempDir = Deno.makeTempDirSync({ prefix: "wsgiref-body-test-" });
  try {
    const budget = new BodyBudget(0, 100);
    const limits = { spoolThreshold: 10, maxBodySize: 1000, tempDir, budget };
    const held = new BodySpool(limits);
    await t.step("at the disk budget: taken", () => {
      held.append(bytes(100));
      assert.deepEqual([budget.memory, budget.disk], [0, 100]);
    });
    await t.step("one byte over: OverBudget, nothing more charged", () => {
      const refused = new BodySpool(limits);
      assert.throws(() => refused.append(bytes(1)), OverBudget);
      assert.throws(() => held.append(bytes(1)), (error: unknown) => {
        assert.ok(error instanceof OverBudget);
        assert.equal(error.diskBudget, 100);
        assert.equal(
          error.message,
          "The request bodies in flight would take more than 100 bytes of disk",
        );
        return true;
      });
      assert.deepEqual([budget.memory, budget.disk], [0, 100]);
      refused.release();
      assert.equal(filesOpenUnder(tempDir), 1);
    });
    await t.step("over maxBodySize: BodyTooLarge, as without a budget", () => {
      const big = new BodySpool({ ...limits, maxBodySize: 5, budget });
      assert.throws(() => big.append(bytes(6)), BodyTooLarge);
      big.release();
      assert.deepEqual([budget.memory, budget.disk], [0, 100]);
    });
    await t.step("released: all refunded", () => {
      held.release();
      assert.deepEqual([budget.memory, budget.disk], [0, 0]);
      assert.equal(filesOpenUnder(tempDir), 0);
    });
  } finally {
    Deno.removeSync(tempDir, { recursive: true });
  }
});

Deno.test("BodyBudget.takeMemory() charges up to its limit", () => {
  const budget = new BodyBudget(10, 0);
  assert.equal(budget.takeMemory(6), true);
  assert.equal(budget.takeMemory(4), true);
  assert.equal(budget.takeMemory(1), false);
  assert.equal(budget.memory, 10);
  budget.refundMemory(10);
  assert.equal(budget.memory, 0);
  assert.equal(budget.takeDisk(1), false);
  assert.equal(new BodyBudget(Infinity, Infinity).takeMemory(2 ** 40), true);
});
