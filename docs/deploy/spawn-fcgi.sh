#!/bin/sh
# spawn-fcgi opens the listening socket, starts two gateways that accept on
# it (fd 0), writes their process ids to the pid file and exits. Stop them
# with: kill $(cat /run/my-app/spawn-fcgi.pid)  (SIGTERM: each finishes the
# requests it has in progress, then exits 0).
# Debian: apt-get install spawn-fcgi. Run as root, add -u my-app -g my-app.

# The web servers that may connect; any other peer is closed at once.
export FCGI_WEB_SERVER_ADDRS=127.0.0.1

exec spawn-fcgi -a 127.0.0.1 -p 9000 -F 2 -P /run/my-app/spawn-fcgi.pid -- \
    /usr/local/bin/deno run --allow-read=/srv/my-app,/tmp --allow-write=/tmp \
    --allow-env=FCGI_WEB_SERVER_ADDRS /opt/wsgiref/fastcgi.ts /srv/my-app/app.ts \
    --quiet
