/**
 * Applications for the program-mode tests of `simple_server.ts`:
 * `deno run -A simple_server.ts tests/fixtures_server/app.ts[:name]`.
 *
 * `tls_cert.pem`/`tls_key.pem` beside this file are a self-signed
 * certificate for `localhost` and `127.0.0.1` (test use only), made with
 * `openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1
 * -nodes -days 36500 -subj /CN=localhost
 * -addext subjectAltName=DNS:localhost,IP:127.0.0.1`.
 *
 * @module
 */

import type { Application } from "../../types.ts";

function text(body: string): Application {
  return (_environ, startResponse) => {
    startResponse("200 OK", [["Content-Type", "text/plain"]]);
    return [new TextEncoder().encode(body)];
  };
}

/** The default application: `app`. */
export const app: Application = text("fixture app");

/** A named application: `app.ts:named`. */
export const named: Application = text("fixture named");

/** Not an application. */
export const notAnApp = 42;
