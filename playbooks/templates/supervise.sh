#!/bin/sh
# tokenmill's own supervisor for the host agent, where systemd is not running (containers, some
# GPU clouds). It runs the agent, restarts it when it exits (backing off while it keeps failing
# fast), and on SIGTERM stops it (the agent drains first) and exits. Nothing starts it at boot.
# Installed by the bootstrap playbook; the teardown playbook stops it and removes it.
run_dir={{ install_dir | sh }}/run
agent={{ install_dir | sh }}/venv/bin/tokenmill-host
config={{ config_file | sh }}
log={{ install_dir | sh }}/logs/agent.log

echo $$ > "$run_dir/supervisor.pid"
stop=0
current=  # the agent, or the sleep before restarting it: what a SIGTERM must interrupt
trap 'stop=1; [ -n "$current" ] && kill -TERM "$current" 2>/dev/null' TERM INT
delay=1
while [ "$stop" = 0 ]; do
    started=$(date +%s)
    "$agent" run --config "$config" >>"$log" 2>&1 &
    child=$!
    current=$child
    echo "$child" > "$run_dir/agent.pid"
    [ "$stop" = 1 ] && kill -TERM "$child" 2>/dev/null  # the signal came before $current was set
    status=0
    # wait returns early when a signal arrives: keep waiting while the agent drains and stops.
    while kill -0 "$child" 2>/dev/null; do
        wait "$child"
        status=$?
    done
    rm -f "$run_dir/agent.pid"
    current=
    [ "$stop" = 1 ] && break
    if [ $(( $(date +%s) - started )) -ge 60 ]; then delay=1; fi
    echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) supervisor: the agent exited (status $status); restarting in $delay s" >>"$log"
    sleep "$delay" &
    current=$!
    wait "$current"  # interruptible by SIGTERM, unlike a plain sleep
    current=
    [ "$delay" -lt 30 ] && delay=$((delay * 2))
done
rm -f "$run_dir/supervisor.pid"
