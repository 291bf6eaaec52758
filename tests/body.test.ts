// Tests of _body.ts's request rules that both servers share. Expected
// values come from RFC 9110 §8.6 (Content-Length = 1*DIGIT; the same decimal
// value repeated as a list may be taken as one) and §5.6.1 (list elements
// separated by "," with optional spaces and tabs).

import assert from "node:assert/strict";
import { normalizeContentLength } from "../_body.ts";

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
