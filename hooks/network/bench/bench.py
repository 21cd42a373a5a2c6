#!/usr/bin/env python3
"""Time husk-net against Debian's CNI plugins (bridge + host-local + portmap) doing the same job:
a bridge, a veth into a new network namespace, an IPv4 address, masquerade and one TCP port
forward per container. Runs inside a throwaway network + mount namespace (see run.sh): every
link, rule and process it makes dies with it.

Both sides are timed the same way: wall-clock around the plugin/hook process invocations.
husk-net-hook also writes and bind-mounts a resolv.conf (CNI has no such step)."""

import json, os, shutil, statistics, subprocess, sys, tempfile, time

HOOK = sys.argv[1]
N = int(sys.argv[2]) if len(sys.argv) > 2 else 50
CNI_PATH = "/usr/lib/cni"
work = tempfile.mkdtemp(prefix="husk-net-bench-")


def container():
    p = subprocess.Popen(["unshare", "-n", "-m", "--propagation", "private", "--",
                          "/bin/busybox", "sh", "-c", "echo ready; exec /bin/busybox sleep 3600"],
                         stdout=subprocess.PIPE)
    p.stdout.readline()
    return p


def timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def run(cmd, stdin, env=None):
    r = subprocess.run(cmd, input=stdin, capture_output=True, env=env)
    if r.returncode != 0:
        sys.exit(f"{cmd} failed: {r.stdout!r} {r.stderr!r}")
    return r.stdout


def husk(procs):
    state = os.path.join(work, "husk-state")
    ups, downs, states = [], [], []
    for i, p in enumerate(procs):
        bundle = os.path.join(work, f"husk-{i}")
        os.makedirs(os.path.join(bundle, "rootfs", "etc"))
        with open(os.path.join(bundle, "config.json"), "w") as f:
            json.dump({"root": {"path": "rootfs"}, "annotations": {
                "io.husk.net.bridge": "hbench", "io.husk.net.subnet": "10.33.0.0/16",
                "io.husk.net.ports": f"{10000 + i}:80", "io.husk.net.dns": "198.51.100.53"}}, f)
        st = json.dumps({"id": f"h{i}", "pid": p.pid, "bundle": bundle}).encode()
        states.append(st)
        ups.append(timed(lambda: run([HOOK, "createRuntime", "--state-dir", state], st)))
    for st in states:
        downs.append(timed(lambda: run([HOOK, "poststop", "--state-dir", state], st)))
    return ups, downs


def cni(procs):
    ups, downs, calls = [], [], []
    for i, p in enumerate(procs):
        env = dict(os.environ, CNI_CONTAINERID=f"c{i}", CNI_NETNS=f"/proc/{p.pid}/ns/net",
                   CNI_IFNAME="eth0", CNI_PATH=CNI_PATH)
        bridge = {"cniVersion": "1.0.0", "name": "bench", "type": "bridge", "bridge": "cbench",
                  "isGateway": True, "ipMasq": True, "hairpinMode": True,
                  "ipam": {"type": "host-local", "subnet": "10.44.0.0/16",
                           "dataDir": os.path.join(work, "cni-ipam")}}
        portmap = {"cniVersion": "1.0.0", "name": "bench", "type": "portmap",
                   "capabilities": {"portMappings": True},
                   "runtimeConfig": {"portMappings": [{"hostPort": 20000 + i, "containerPort": 80,
                                                       "protocol": "tcp"}]}}
        add = dict(env, CNI_COMMAND="ADD")
        t = time.perf_counter()
        result = json.loads(run([f"{CNI_PATH}/bridge"], json.dumps(bridge).encode(), add))
        t_bridge = time.perf_counter() - t
        pm = dict(portmap, prevResult=result)
        t_portmap = timed(lambda: run([f"{CNI_PATH}/portmap"], json.dumps(pm).encode(), add))
        ups.append(t_bridge + t_portmap)
        calls.append((dict(env, CNI_COMMAND="DEL"), bridge, pm))
    for env, bridge, pm in calls:
        downs.append(timed(lambda: run([f"{CNI_PATH}/portmap"], json.dumps(pm).encode(), env))
                     + timed(lambda: run([f"{CNI_PATH}/bridge"], json.dumps(bridge).encode(), env)))
    return ups, downs


def ms(x):
    return f"{x * 1000:.1f} ms"


def main():
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    procs = [container() for _ in range(2 * N)]
    try:
        h_up, h_down = husk(procs[:N])
        c_up, c_down = cni(procs[N:])
    finally:
        for p in procs:
            p.kill()
            p.wait()
        shutil.rmtree(work, ignore_errors=True)
    h = [a + b for a, b in zip(h_up, h_down)]
    c = [a + b for a, b in zip(c_up, c_down)]
    print(f"containers per system: {N}")
    print(f"husk-net  setup median {ms(statistics.median(h_up))}  teardown median {ms(statistics.median(h_down))}")
    print(f"CNI       setup median {ms(statistics.median(c_up))}  teardown median {ms(statistics.median(c_down))}")
    print(f"setup+teardown median: husk-net {ms(statistics.median(h))}, CNI {ms(statistics.median(c))}, "
          f"CNI/husk-net = {statistics.median(c) / statistics.median(h):.2f}")
    k = max(1, N // 10)
    print(f"husk-net setup: 1st {ms(h_up[0])}, {N}th {ms(h_up[-1])}; "
          f"median of first {k} {ms(statistics.median(h_up[:k]))}, last {k} {ms(statistics.median(h_up[-k:]))}")
    print(f"CNI setup:      1st {ms(c_up[0])}, {N}th {ms(c_up[-1])}; "
          f"median of first {k} {ms(statistics.median(c_up[:k]))}, last {k} {ms(statistics.median(c_up[-k:]))}")


main()
