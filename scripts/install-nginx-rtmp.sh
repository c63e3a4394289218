#!/usr/bin/env bash
# Install Debian's nginx with the RTMP module (libnginx-mod-rtmp) and ffmpeg, which the
# streaming-server integration test (tests/it/ingest.rs) drives: /usr/sbin/nginx,
# /usr/lib/nginx/modules/ngx_rtmp_module.so and /usr/bin/ffmpeg (idempotent).
set -euo pipefail

NGINX=/usr/sbin/nginx
RTMP_MODULE=/usr/lib/nginx/modules/ngx_rtmp_module.so
FFMPEG=/usr/bin/ffmpeg

if [ -x "$NGINX" ] && [ -f "$RTMP_MODULE" ] && [ -x "$FFMPEG" ]; then
    echo "nginx-rtmp and ffmpeg already installed ($("$NGINX" -v 2>&1 | head -n1))"
    exit 0
fi

start=$(date +%s)
bash "$(dirname "$0")/apt-install.sh" nginx libnginx-mod-rtmp ffmpeg

if [ ! -x "$NGINX" ] || [ ! -f "$RTMP_MODULE" ] || [ ! -x "$FFMPEG" ]; then
    echo "error: apt-get succeeded but $NGINX, $RTMP_MODULE or $FFMPEG is missing" >&2
    exit 1
fi
echo "installed $("$NGINX" -v 2>&1 | head -n1) with the RTMP module and ffmpeg in $(( $(date +%s) - start ))s"
