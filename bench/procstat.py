#!/usr/bin/env python3
"""Who used the CPUs during a measured run, from /proc (no tools needed).

    procstat.py snap FILE               write a snapshot of every process's CPU
                                        time, faults and context switches
    procstat.py diff NAME BEFORE AFTER PID...
                                        print `key value` lines: the busiest
                                        processes between the two snapshots, and
                                        the faults and switches of each PID

The bench measures tail latency on a shared 2-core VM; when a p99 is far off, the
first question is what else ran on the servers' core, and whether a server took
major faults (its pages dropped under it). This answers both in the raw lines.
"""
import json
import os
import sys


def read_procs():
    procs = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                s = f.read()
        except OSError:
            continue
        # comm is in parentheses and may hold spaces; the fields follow the last ')'
        r = s.rindex(")")
        comm = s[s.index("(") + 1:r]
        f = s[r + 2:].split()
        # fields from 3 (state): minflt 10, majflt 12, utime 14, stime 15, processor 39
        cswitch = [0, 0]
        try:
            with open("/proc/%s/status" % d) as st:
                for line in st:
                    if line.startswith("voluntary_ctxt_switches:"):
                        cswitch[0] = int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches:"):
                        cswitch[1] = int(line.split()[1])
        except OSError:
            pass
        procs[d] = {
            "comm": comm,
            "ppid": f[4 - 3],
            "majflt": int(f[12 - 3]),
            "minflt": int(f[10 - 3]),
            "ticks": int(f[14 - 3]) + int(f[15 - 3]),
            "vcs": cswitch[0],
            "nvcs": cswitch[1],
        }
    cpus = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                p = line.split()
                v = list(map(int, p[1:]))
                # user nice system idle iowait irq softirq steal ...; guest time is
                # already in user. Steal is time the hypervisor ran something else.
                v = v[:8]
                cpus[p[0]] = {"busy": sum(v) - v[3] - v[4] - v[7], "steal": v[7], "all": sum(v)}
    return {"procs": procs, "cpus": cpus}


def main():
    if sys.argv[1] == "snap":
        with open(sys.argv[2], "w") as f:
            json.dump(read_procs(), f)
        return
    name, before, after = sys.argv[2], sys.argv[3], sys.argv[4]
    watch = sys.argv[5:]
    a = json.load(open(before))
    b = json.load(open(after))
    hz = os.sysconf("SC_CLK_TCK")
    for cpu in sorted(b["cpus"]):
        if cpu in a["cpus"]:
            busy = b["cpus"][cpu]["busy"] - a["cpus"][cpu]["busy"]
            total = b["cpus"][cpu]["all"] - a["cpus"][cpu]["all"]
            steal = b["cpus"][cpu]["steal"] - a["cpus"][cpu]["steal"]
            if total > 0:
                print("%s_%s_busy_pct %.1f" % (name, cpu, 100.0 * busy / total))
                print("%s_%s_steal_pct %.1f" % (name, cpu, 100.0 * steal / total))
    used = []
    for pid, p in b["procs"].items():
        t = p["ticks"] - a["procs"].get(pid, {"ticks": 0})["ticks"]
        if t > 0:
            # A forked child (Redis's snapshot or AOF rewrite) has its parent's name.
            parent = b["procs"].get(p.get("ppid", ""), {})
            comm = p["comm"] + ("-child" if parent.get("comm") == p["comm"] else "")
            used.append((t, comm, pid))
    used.sort(reverse=True)
    print("%s_cpu_top %s" % (name, ",".join("%s/%s:%.2fs" % (c, pid, t / hz) for t, c, pid in used[:6])))
    for pid in watch:
        if pid in a["procs"] and pid in b["procs"]:
            pa, pb = a["procs"][pid], b["procs"][pid]
            print("%s_pid_%s %s cpu %.2fs majflt %d minflt %d vcs %d nvcs %d" % (
                name, pid, pb["comm"], (pb["ticks"] - pa["ticks"]) / hz,
                pb["majflt"] - pa["majflt"], pb["minflt"] - pa["minflt"],
                pb["vcs"] - pa["vcs"], pb["nvcs"] - pa["nvcs"]))


if __name__ == "__main__":
    main()
