import { readFileSync, readdirSync } from 'node:fs';

/** Resident memory of one process in bytes (VmRSS of /proc/<pid>/status); 0 when it is gone. */
export function rssOf(pid: number): number {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = Number(/^VmRSS:\s+(\d+)\s+kB/m.exec(status)?.[1] ?? 0);
    return kb * 1024;
  } catch {
    return 0;
  }
}

/** The pid and every descendant of it, from the parent pids in /proc/<pid>/stat. */
export function processTree(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      // Fields after the command (in parentheses, may contain spaces): state, ppid, ...
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      const list = children.get(ppid) ?? [];
      list.push(Number(entry));
      children.set(ppid, list);
    } catch {
      // the process ended while we looked
    }
  }
  const tree: number[] = [];
  const queue = [root];
  while (queue.length > 0) {
    const pid = queue.shift()!;
    tree.push(pid);
    queue.push(...(children.get(pid) ?? []));
  }
  return tree;
}

/** RSS summed over a process tree (the pid and its descendants). */
export function treeRss(root: number): { bytes: number; processes: number } {
  const pids = processTree(root);
  return { bytes: pids.reduce((sum, pid) => sum + rssOf(pid), 0), processes: pids.length };
}

/**
 * CPU time of one process in ms, all its threads: the scheduler's own count
 * (/proc/<pid>/task/<tid>/schedstat, nanoseconds), so short spans are measured
 * too; threads that ended are not in it. 0 when the process is gone.
 */
export function cpuMsOf(pid: number): number {
  try {
    let ns = 0;
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      try {
        ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
      } catch {
        // the thread ended while we looked
      }
    }
    return ns / 1e6;
  } catch {
    return ticksCpuMsOf(pid);
  }
}

/** CPU time (user + system) of one process in ms from /proc/<pid>/stat (10 ms clock ticks, ended threads included); 0 when it is gone. */
function ticksCpuMsOf(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // utime and stime are fields 14 and 15 of stat; fields[] starts at field 3 (state).
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return 0;
  }
}

/** Pids whose command name (/proc/<pid>/comm) matches. */
export function pidsByName(pattern: RegExp): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (pattern.test(readFileSync(`/proc/${entry}/comm`, 'utf8').trim())) pids.push(Number(entry));
    } catch {
      // gone
    }
  }
  return pids;
}

/**
 * CPU used by groups of processes between `start()` and `stop()`. Groups are
 * given as functions that list pids, read at both ends (Postgres backends come and go:
 * a backend that ended in between is not counted, so Postgres is a lower bound).
 */
export function cpuMeter(groups: Record<string, () => number[]>) {
  const read = () => {
    const totals: Record<string, Map<number, number>> = {};
    for (const [name, list] of Object.entries(groups)) totals[name] = new Map(list().map((pid) => [pid, cpuMsOf(pid)]));
    return totals;
  };
  const before = read();
  return {
    stop(): Record<string, number> {
      const after = read();
      const used: Record<string, number> = {};
      for (const name of Object.keys(groups)) {
        let sum = 0;
        for (const [pid, ms] of after[name]) sum += ms - (before[name].get(pid) ?? 0);
        used[name] = sum;
      }
      return used;
    },
  };
}

/** CPU time the whole machine spent busy (all cores, /proc/stat), in ms. */
export function machineBusyMs(): number {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0];
  const [user, nice, system, , , irq, softirq, steal] = line.trim().split(/\s+/).slice(1).map(Number);
  return (user + nice + system + irq + softirq + steal) * 10;
}

/** CPU time (ms) used so far by a process and its descendants. */
export function treeCpuMs(root: number): number {
  return processTree(root).reduce((sum, pid) => sum + cpuMsOf(pid), 0);
}
