#!/usr/bin/env bash
# Make sure a RabbitMQ broker answers at AMQP_URL (default 127.0.0.1:5672): use the one that
# runs, else start the local rabbitmq-server, installing it from Debian's packages if missing.
# With --management, also enable the management plugin (the tests read queue arguments there,
# the services apply the broker policies through it).
set -euo pipefail

url="${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2F}"
url="${url%%,*}"  # a cluster's node list: its first node
hostport="${url#*://}"; hostport="${hostport#*@}"; hostport="${hostport%%/*}"
host="${hostport%%:*}"; port="${hostport##*:}"; [ "$port" = "$host" ] && port=5672

answers() { timeout 2 bash -c "exec 3<>/dev/tcp/$host/$port" 2>/dev/null; }

if ! answers; then
  case "$host" in
    127.0.0.1|localhost) ;;
    *) echo "no broker answers at $host:$port (AMQP_URL) and it is not local" >&2; exit 1 ;;
  esac
  if ! command -v rabbitmq-server >/dev/null; then
    echo "==> installing rabbitmq-server from Debian's packages"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server
  fi
  echo "==> starting rabbitmq-server"
  rabbitmq-server -detached || true
  for _ in $(seq 1 60); do answers && break; sleep 1; done
  answers || { echo "RabbitMQ did not come up on $host:$port" >&2; exit 1; }
fi

if [ "${1:-}" = "--management" ] && command -v rabbitmq-plugins >/dev/null; then
  if ! timeout 2 bash -c "exec 3<>/dev/tcp/$host/15672" 2>/dev/null; then
    echo "==> enabling the management plugin"
    rabbitmq-plugins enable rabbitmq_management >/dev/null
    for _ in $(seq 1 60); do
      timeout 2 bash -c "exec 3<>/dev/tcp/$host/15672" 2>/dev/null && break; sleep 1
    done
  fi
fi
echo "==> RabbitMQ answers at $host:$port"
