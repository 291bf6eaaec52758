/**
 * Helpers shared by several modules of this package; not exported by
 * `deno.json`.
 *
 * @module
 */

/**
 * Encode a latin-1 string (each char code one byte) to bytes.
 * Throws `TypeError` when a character is above `\xFF`.
 */
export function encodeLatin1(s: string, what = "String"): Uint8Array {
  const length = s.length;
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) {
    const code = s.charCodeAt(i);
    if (code > 0xff) {
      throw new TypeError(
        `${what} is not latin-1: character ${
          quote(s[i])
        } at index ${i} is above \\xFF`,
      );
    }
    bytes[i] = code;
  }
  return bytes;
}

/** Decode bytes to a latin-1 string: each byte becomes one char code. */
export function decodeLatin1(bytes: Uint8Array): string {
  let out = "";
  const CHUNK = 8192;
  for (let i = 0; i < bytes.length; i += CHUNK) {
    out += String.fromCharCode.apply(
      null,
      bytes.subarray(i, i + CHUNK) as unknown as number[],
    );
  }
  return out;
}

/** Whether every char code of `s` is at most 0xFF. */
export function isLatin1(s: string): boolean {
  // deno-lint-ignore no-control-regex
  return !/[^\x00-\xff]/.test(s);
}

const UTF8 = new TextDecoder();
const UTF8_ENCODER = new TextEncoder();

/** Re-encode a Unicode string as UTF-8 bytes viewed as a latin-1 string. */
export function utf8ToLatin1(s: string): string {
  return isAscii(s) ? s : decodeLatin1(UTF8_ENCODER.encode(s));
}

/** View a latin-1 string's bytes as UTF-8 text (invalid bytes become U+FFFD). */
export function latin1ToUtf8(s: string): string {
  return isAscii(s) ? s : UTF8.decode(encodeLatin1(s));
}

/** Whether every char code of `s` is below 0x80. */
export function isAscii(s: string): boolean {
  // deno-lint-ignore no-control-regex
  return !/[^\x00-\x7f]/.test(s);
}

/** Quote a value for an error message: strings JSON-quoted, others by repr. */
export function quote(value: unknown): string {
  return typeof value === "string" ? JSON.stringify(value) : repr(value);
}

/** A short description of a value's type for `TypeError` messages. */
export function typeName(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  if (value instanceof Uint8Array) return "Uint8Array";
  if (typeof value === "object") {
    const name = (value as object).constructor?.name;
    return name && name !== "Object" ? name : "object";
  }
  return typeof value;
}

// Python's str.isprintable(): everything but the C* and Z* categories,
// except the ASCII space.
const NON_PRINTABLE = /[\p{C}\p{Z}]/u;

function reprString(s: string): string {
  const useDouble = s.includes("'") && !s.includes('"');
  const q = useDouble ? '"' : "'";
  let out = q;
  for (const ch of s) {
    const code = ch.codePointAt(0)!;
    if (ch === q || ch === "\\") out += "\\" + ch;
    else if (ch === "\t") out += "\\t";
    else if (ch === "\n") out += "\\n";
    else if (ch === "\r") out += "\\r";
    else if (code < 0x20 || code === 0x7f) out += "\\x" + hex(code, 2);
    else if (code < 0x7f || ch === " ") out += ch;
    else if (NON_PRINTABLE.test(ch)) {
      out += code <= 0xff
        ? "\\x" + hex(code, 2)
        : code <= 0xffff
        ? "\\u" + hex(code, 4)
        : "\\U" + hex(code, 8);
    } else out += ch;
  }
  return out + q;
}

function hex(n: number, width: number): string {
  return n.toString(16).padStart(width, "0");
}

/**
 * Python's `repr()` for the values an environ holds: strings quoted as
 * Python quotes them, `true`/`false` as `True`/`False`, `null` as `None`,
 * arrays as tuples, bytes as `b'...'`, other objects as `<Name object>`.
 */
export function repr(value: unknown): string {
  switch (typeof value) {
    case "string":
      return reprString(value);
    case "boolean":
      return value ? "True" : "False";
    case "number":
    case "bigint":
      return String(value);
    case "undefined":
      return "None";
    case "function":
      return `<function ${value.name || "<anonymous>"}>`;
    case "symbol":
      return value.toString();
  }
  if (value === null) return "None";
  if (value instanceof Uint8Array) {
    return "b" + reprString(decodeLatin1(value)).replace(
      /[\x80-\xff]/g,
      (c) => "\\x" + hex(c.charCodeAt(0), 2),
    );
  }
  if (Array.isArray(value)) {
    const items = value.map(repr);
    return items.length === 1 ? `(${items[0]},)` : `(${items.join(", ")})`;
  }
  const name = (value as object).constructor?.name ?? "object";
  return `<${name} object>`;
}

// RFC 9110 §5.5: field names and values exclude CTLs; values may hold HTAB.
// deno-lint-ignore no-control-regex
const NAME_DISALLOWED = /[\x00-\x1f\x7f]/;
// deno-lint-ignore no-control-regex
const VALUE_DISALLOWED = /[\x00-\x08\x0a-\x1f\x7f]/;
// deno-lint-ignore no-control-regex
const NOT_LATIN1 = /[^\x00-\xff]/;

function charProblem(s: string, disallowed: RegExp): string | null {
  const control = disallowed.exec(s);
  if (control) {
    return `contains control character ${
      quote(control[0])
    } at index ${control.index}`;
  }
  const wide = NOT_LATIN1.exec(s);
  if (wide) {
    return `contains character ${
      quote(wide[0])
    } at index ${wide.index}, which is not latin-1`;
  }
  return null;
}

/**
 * Why `name` cannot be a header name (not a string, a control character, a
 * character above `\xFF`), or `null` when it can.
 */
export function headerNameProblem(name: unknown): string | null {
  if (typeof name !== "string") {
    return `name must be a string, not ${typeName(name)} ${repr(name)}`;
  }
  const problem = charProblem(name, NAME_DISALLOWED);
  return problem && `name ${problem}`;
}

/** As `headerNameProblem`, for a header value (horizontal tab allowed). */
export function headerValueProblem(value: unknown): string | null {
  if (typeof value !== "string") {
    return `value must be a string, not ${typeName(value)} ${repr(value)}`;
  }
  const problem = charProblem(value, VALUE_DISALLOWED);
  return problem && `value ${problem}`;
}

/** As `headerNameProblem`, for a status line (no control character). */
export function statusProblem(status: string): string | null {
  return charProblem(status, NAME_DISALLOWED);
}

/**
 * Python's `urllib.parse.unquote(s, "iso-8859-1")` for a latin-1 string:
 * each `%XX` becomes the char with code `XX`, a `%` not followed by two hex
 * digits stays as it is.
 */
export function percentDecodeLatin1(s: string): string {
  let i = s.indexOf("%");
  if (i < 0) return s;
  let out = "";
  let from = 0;
  const length = s.length;
  for (; i >= 0 && i + 2 < length; i = s.indexOf("%", i + 1)) {
    const hi = hexDigit(s.charCodeAt(i + 1));
    const lo = hexDigit(s.charCodeAt(i + 2));
    if (hi < 0 || lo < 0) continue;
    out += s.slice(from, i) + String.fromCharCode(hi * 16 + lo);
    from = i + 3;
    i += 2;
  }
  return from === 0 ? s : out + s.slice(from);
}

function hexDigit(code: number): number {
  if (code >= 0x30 && code <= 0x39) return code - 0x30;
  code |= 0x20; // lower case
  return code >= 0x61 && code <= 0x66 ? code - 0x61 + 10 : -1;
}
