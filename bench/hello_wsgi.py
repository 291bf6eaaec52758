"""The hello application of the benchmarks' Python peers (PEP 3333).

uWSGI, gunicorn and waitress load ``application`` from this file; run as a
program, it is served by CPython's own ``wsgiref.simple_server``:

    python3 bench/hello_wsgi.py PORT

which prints ``listening PORT`` once bound, logs no request, and stops on
SIGTERM or SIGINT.
"""

import signal
import sys

BODY = b"Hello world!\n"
# With its length, as makeServer sends it, so that no server chunks the body.
HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))]


def application(environ, start_response):
    start_response("200 OK", HEADERS)
    return [BODY]


if __name__ == "__main__":
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    class QuietHandler(WSGIRequestHandler):
        # The other sides keep no access log either.
        def log_message(self, format, *args):
            pass

    def stop(signum, frame):
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    server = make_server(
        "127.0.0.1", int(sys.argv[1]), application, handler_class=QuietHandler
    )
    print(f"listening {server.server_port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
